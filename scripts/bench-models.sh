#!/usr/bin/env bash
# Writes the benchmark models of docs/PERFORMANCE.md (Llama shapes of ~140M and
# ~1.1B parameters, in F32, F16 and Q8_0, random weights, Llama tokenizer) into
# DIR (default /tmp/attnd-bench) and runs `attnd bench` on each.
# Usage: scripts/bench-models.sh [DIR] [140m|1.1b|all] [f32|f16|q8_0|all]
# Needs about 9 GB of disk for all six models.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/attnd-bench}
sizes=${2:-all}
types=${3:-all}
[ "$sizes" = all ] && sizes="140m 1.1b"
[ "$types" = all ] && types="f32 f16 q8_0"
vocab=${ATTND_SHARED:-../shared}/vocab/ggml-vocab-llama-spm.gguf
bin=build/release/cli/attnd
[ -x "$bin" ] || scripts/build.sh Release
mkdir -p "$dir"
for size in $sizes; do
  case $size in
    140m) shape="--dim 576 --layers 30 --heads 9 --kv-heads 3 --ff 1536" ;;
    1.1b) shape="--dim 2048 --layers 22 --heads 32 --kv-heads 4 --ff 5632" ;;
    *) echo "unknown size $size" >&2; exit 2 ;;
  esac
  for t in $types; do
    m="$dir/llama-$size-$t.gguf"
    # shellcheck disable=SC2086
    [ -f "$m" ] || "$bin" mkmodel -o "$m" --arch llama $shape --ctx 2048 --type "$t" \
      --vocab "$vocab" --seed 1
    echo "== $m"
    "$bin" bench -m "$m"
  done
done
