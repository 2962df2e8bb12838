#!/usr/bin/env bash
# npm run demo: the whole job end to end on loopback registries, with the sample app in testdata/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run -s build
exec node --import=tsx scripts/demo.ts "$@"
