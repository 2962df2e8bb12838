#!/usr/bin/env bash
# npm test: works on a fresh clone. Installs the Debian packages the tests need (docker-registry,
# skopeo, htpasswd, openssl, containerd) and the npm dependencies when missing, builds, runs AVA.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prepare.sh
exec npx ava "$@"
