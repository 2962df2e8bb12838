#!/usr/bin/env bash
# What npm test, npm run demo and npm run bench need before they start, on a fresh clone:
# the Debian packages, the npm dependencies (when missing), and a build of the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run -s build
