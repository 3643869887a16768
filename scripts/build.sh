#!/usr/bin/env bash
# Configures and builds attnd. Usage: scripts/build.sh [Release|Debug|Asan|Tsan|Fuzz]
# Build trees go to build/<type> (lower case).
set -euo pipefail
cd "$(dirname "$0")/.."
type=${1:-Release}
dir=build/$(echo "$type" | tr '[:upper:]' '[:lower:]')
extra=()
if [ "$type" = Fuzz ]; then
  export CC=clang
  extra=(-DATTND_FUZZ=ON)
  type=Debug
fi
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" "${extra[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
