#!/usr/bin/env bash
# npm test: works on a fresh clone. scripts/prepare.sh installs what the tests need (Debian
# packages, npm dependencies, the tests' helm) when missing and builds; then AVA runs with
# .tools/bin on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prepare.sh
# The helm prepare.sh extracted (the chart tests run it).
export PATH="$PWD/.tools/bin:$PATH"
exec npx ava "$@"
