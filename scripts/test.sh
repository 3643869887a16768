#!/usr/bin/env bash
# Sets up, builds and runs every attnd test:
#   1. the Criterion suite in a Release build,
#   2. the same suite under ASan+UBSan,
#   3. the GGUF-reader fuzzer for $ATTND_FUZZ_SECONDS (default 60) from a seed
#      corpus of small valid files.
# Reference data is read from $ATTND_SHARED (default: ../shared beside the repo).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export ATTND_SHARED=${ATTND_SHARED:-$root/../shared}
[ -d "$ATTND_SHARED/models" ] || { echo "test.sh: reference data not found in $ATTND_SHARED (set ATTND_SHARED)" >&2; exit 1; }

scripts/setup-deps.sh

for type in Release Asan; do
  echo "== build and test: $type"
  scripts/build.sh "$type"
  dir=build/$(echo "$type" | tr '[:upper:]' '[:lower:]')
  ATTND_BIN="$root/$dir/cli/attnd" ctest --test-dir "$dir" --output-on-failure
done

echo "== fuzz: GGUF reader, ${ATTND_FUZZ_SECONDS:-60} s"
scripts/build.sh Fuzz
corpus=build/fuzz/corpus
rm -rf "$corpus" && mkdir -p "$corpus"
bin=build/release/cli/attnd
"$bin" mkmodel -o "$corpus/llama-f32.gguf" --dim 16 --layers 1 --heads 2 --kv-heads 1 --ff 16 --ctx 8
"$bin" mkmodel -o "$corpus/llama-q8.gguf" --dim 32 --layers 1 --heads 2 --ff 32 --ctx 8 --type q8_0
"$bin" mkmodel -o "$corpus/gpt2-f16.gguf" --arch gpt2 --dim 16 --layers 1 --heads 2 --ff 16 --ctx 8 --type f16
build/fuzz/tests/fuzz_gguf -max_total_time="${ATTND_FUZZ_SECONDS:-60}" -rss_limit_mb=4096 \
  -print_final_stats=1 "$corpus" 2>&1 | tail -n 12
echo "test.sh: all tests passed"
