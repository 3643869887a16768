#!/usr/bin/env bash
# Installs the Debian 12 packages attnd builds and tests with. Idempotent: when every
# package is already installed it installs nothing and does not touch the network.
# The test-only ones (Criterion, libcurl, clang for the fuzzers) are always included;
# a build configured with -DATTND_BUILD_TESTS=OFF does not need them.
# Usage: scripts/setup-deps.sh (no options)
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config git
  libopenblas-dev libmicrohttpd-dev libcjson-dev libuv1-dev libpcre2-dev
  libcriterion-dev libcurl4-openssl-dev curl
  clang libclang-rt-14-dev
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-deps: all ${#pkgs[@]} packages present"
  exit 0
fi

echo "setup-deps: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
