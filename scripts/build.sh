#!/usr/bin/env bash
# Configures and builds attnd. Usage: scripts/build.sh [Release|Debug|Asan|Tsan|Fuzz] [TARGET]
# Build trees go to build/<type> (lower case).
set -euo pipefail
cd "$(dirname "$0")/.."
type=${1:-Release}
dir=build/$(echo "$type" | tr '[:upper:]' '[:lower:]')
extra=()
target=()
[ -n "${2:-}" ] && target=(--target "$2")
if [ "$type" = Fuzz ]; then
  # clang's libFuzzer, with ASan+UBSan; only the fuzz targets are built.
  export CC=clang
  extra=(-DATTND_FUZZ=ON)
  target=(--target fuzz_gguf fuzz_request fuzz_jinja)
  type=Debug
fi
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" "${extra[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)" "${target[@]}"
