#!/usr/bin/env bash
# The per-type benchmark of docs/PERFORMANCE.md: the 1.1B Llama shape written
# by `attnd mkmodel` in each quantization preset, `attnd bench` on each, and
# beside it llama.cpp on the same file in the same run when LLAMA_BIN names a
# directory with llama-bench and llama-batched-bench (built outside the
# repository, see docs/DEVELOPERS.md). One type at a time, attnd then
# llama.cpp, so both see the machine in the same state.
# Usage: LLAMA_BIN=/tmp/llama.cpp/build/bin scripts/bench-quant.sh [DIR] [TYPES...]
# Default types: q4_0 q4_k_m q5_k_m q6_k q8_0 iq4_xs. Writes DIR/results-*.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/attnd-bench}
shift || true
types=${*:-q4_0 q4_k_m q5_k_m q6_k q8_0 iq4_xs}
vocab=${ATTND_SHARED:-../shared}/vocab/ggml-vocab-llama-spm.gguf
bin=build/release/cli/attnd
[ -x "$bin" ] || scripts/build.sh Release
mkdir -p "$dir"
shape="--dim 2048 --layers 22 --heads 32 --kv-heads 4 --ff 5632"
for t in $types; do
  m="$dir/llama-1.1b-$t.gguf"
  # shellcheck disable=SC2086
  [ -f "$m" ] || "$bin" mkmodel -o "$m" --arch llama $shape --ctx 2048 --type "$t" \
    --vocab "$vocab" --seed 1
  out="$dir/results-$t.txt"
  {
    echo "== $m"
    "$bin" info "$m" | grep -iE 'bits per weight|^  [A-Z0-9_]+ +[0-9]+ tensors' || true
    "$bin" bench -m "$m"
    if [ -n "${LLAMA_BIN:-}" ]; then
      echo "-- llama.cpp llama-bench -t 2 -fa 1"
      "$LLAMA_BIN/llama-bench" -m "$m" -t 2 -fa 1 -p 128,512 -n 64 -r 3
      if [ -x "$LLAMA_BIN/llama-batched-bench" ]; then
        echo "-- llama.cpp llama-batched-bench (8-token prompts, 64 steps, 1/8/16 streams)"
        "$LLAMA_BIN/llama-batched-bench" -m "$m" -t 2 -fa -c 4096 -npp 8 -ntg 64 \
          -npl 1,8,16 2>/dev/null | grep -E '^\|'
      fi
    fi
  } 2>&1 | tee "$out"
done
