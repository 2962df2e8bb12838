#!/usr/bin/env bash
# npm run demo: the whole job end to end on loopback registries, with the sample app in testdata/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prepare.sh
exec node --import=tsx scripts/demo.ts "$@"
