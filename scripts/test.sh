#!/usr/bin/env bash
# npm test: works on a fresh clone. scripts/prepare.sh installs what the tests need (Debian
# packages, npm dependencies) when missing and builds; then AVA runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prepare.sh
exec npx ava "$@"
