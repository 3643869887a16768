#!/usr/bin/env bash
# Makes the model-family goldens in tests/data/golden/ (committed; tests read them).
#
# Each golden is a synthetic model (`attnd mkmodel`, real vocabulary from
# ../shared, random weights) teacher-forced on a chat-formatted prompt by an
# independent implementation. F32 files: llama.cpp (built from source outside
# the repository, with tests/ref/llama_logits.c) for llama and qwen2, and the
# float64 numpy reference tests/ref/ref_forward.py for qwen3, which the
# llama.cpp snapshot does not know; the numpy reference is checked against
# llama.cpp on every llama/qwen2 file (printed). F16 files: the numpy
# reference, exact arithmetic on the file's half-precision weights, because
# llama.cpp rounds activations to half precision for some F16 matmuls (on the
# tied Qwen 2 file, logits of magnitude ~20 move by ~5e-3, beyond the 1e-3 the
# tests allow); the llama.cpp figure is printed for the record. The json
# records the mkmodel arguments, so the tests rebuild the identical model
# instead of committing it; the logits keep every STRIDE-th vocabulary column
# of each position.
#
# usage: tests/ref/make-goldens.sh LLAMA_CPP_DIR   (its build/ holds libllama)
# needs: a Release build of attnd (scripts/build.sh Release), python3-numpy
set -euo pipefail
cd "$(dirname "$0")/../.."
llama=${1:?usage: $0 LLAMA_CPP_DIR}
shared=${ATTND_SHARED:-$PWD/../shared}
attnd=$PWD/build/release/cli/attnd
out=tests/data/golden
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
stride=509

gcc -O2 -o "$tmp/llama_logits" tests/ref/llama_logits.c -I"$llama/include" -I"$llama/ggml/include" \
  -L"$llama/build/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$llama/build/bin"

llama3_prompt=$'<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nThe quick brown fox, 1234567 jumps over the lazy dog\'s tail. It\'s 2026! Count: one, two, three, four, five.<|eot_id|>'
qwen_prompt=$'<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 12345 + 678? Think <think>step by step</think>, please.<|im_end|>\n<|im_start|>assistant\n'

# name | vocab | reference | prompt | mkmodel arguments
# (qwen2's FFN is 208 wide, not 200: llama.cpp c392e5094 computes F16 matrices
# whose rows are not a multiple of 16 elements ~10% off from float64 numpy and
# from attnd, which agree; F32 is right there)
cases=(
  "llama3-rope-freqs|ggml-vocab-llama3.gguf|llama.cpp|llama3|--arch llama --dim 96 --layers 2 --heads 3 --kv-heads 1 --ff 160 --rope-base 500000 --rope-freqs --seed 11"
  "llama3-key-length|ggml-vocab-llama3.gguf|llama.cpp|llama3|--arch llama --dim 80 --layers 2 --heads 5 --kv-heads 1 --head-dim 24 --ff 144 --rope-scale 2 --seed 12"
  "qwen2-bias-tied|ggml-vocab-qwen3.gguf|llama.cpp|qwen|--arch qwen2 --dim 96 --layers 2 --heads 6 --kv-heads 2 --ff 208 --tied --seed 13"
  "qwen3-qk-norm|ggml-vocab-qwen3.gguf|numpy|qwen|--arch qwen3 --dim 64 --layers 2 --heads 6 --kv-heads 2 --head-dim 32 --ff 128 --tied --seed 14"
)

for c in "${cases[@]}"; do
  IFS='|' read -r name vocab ref which args <<<"$c"
  for type in f32 f16; do
    g=$name-$type
    model=$tmp/$g.gguf
    # shellcheck disable=SC2086
    "$attnd" mkmodel -o "$model" --vocab "$shared/vocab/$vocab" --type $type $args
    if [ "$which" = llama3 ]; then prompt=$llama3_prompt; else prompt=$qwen_prompt; fi
    ids=$(printf '%s' "$prompt" | "$attnd" tokenize -m "$model" --special --no-special)
    np_res=$(/usr/bin/python3 tests/ref/ref_forward.py "$model" $stride "$tmp/np.f32" $ids)
    if [ "$ref" = llama.cpp ]; then
      # shellcheck disable=SC2086
      cpp_res=$("$tmp/llama_logits" "$model" $stride "$tmp/cpp.f32" $ids 2>/dev/null)
      cpp_src="llama.cpp $(git -C "$llama" rev-parse --short HEAD 2>/dev/null || echo c392e5094) (fp32 KV cache, one batch)"
      echo "$g: llama.cpp vs numpy: $(/usr/bin/python3 -c 'import sys, numpy as np; a, b = (np.fromfile(f, "<f4") for f in sys.argv[1:]); print("max |diff| %.3g" % abs(a - b).max())' "$tmp/cpp.f32" "$tmp/np.f32")"
    fi
    if [ "$ref" = llama.cpp ] && [ "$type" = f32 ]; then
      res=$cpp_res src=$cpp_src
      cp "$tmp/cpp.f32" "$out/$g.logits.f32"
    else
      res=$np_res src="tests/ref/ref_forward.py (float64, numpy)"
      cp "$tmp/np.f32" "$out/$g.logits.f32"
    fi
    /usr/bin/python3 - "$out/$g.json" "$g" "$vocab" "$type $args" "$src" "$stride" "$prompt" "$ids" "$res" <<'PY'
import json, sys
path, name, vocab, args, src, stride, prompt, ids, res = sys.argv[1:]
r = json.loads(res)
json.dump({"name": name, "vocab_file": "vocab/" + vocab, "mkmodel": "--type " + args,
           "source": src, "stride": int(stride), "vocab": r["vocab"], "positions": r["positions"],
           "prompt": prompt, "input_tokens": [int(x) for x in ids.split()],
           "argmax": r["argmax"]}, open(path, "w"), indent=1)
open(path, "a").write("\n")
PY
    echo "$g: $src, $(wc -c <"$out/$g.logits.f32") bytes"
  done
done
