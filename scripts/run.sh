#!/usr/bin/env bash
# Sets up, builds and runs attnd on a default model.
# Until a trained default model ships, the default is a small synthetic demo
# model written by attnd's own GGUF writer (random weights, built-in
# vocabulary, so its text is gibberish). Until the HTTP server lands, "run"
# means: describe the model, tokenize a sample text and generate from a prompt.
# Set ATTND_MODEL to use another GGUF file (e.g. ../shared/models/aidreams260K.gguf).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh Release
bin=build/release/cli/attnd
model=${ATTND_MODEL:-build/demo/demo.gguf}
if [ -z "${ATTND_MODEL:-}" ] && [ ! -f "$model" ]; then
  mkdir -p build/demo
  "$bin" mkmodel -o "$model" --arch llama --dim 128 --layers 2 --heads 4 --kv-heads 2 \
    --ff 256 --ctx 512 --type f16 --seed 1 --name "attnd demo"
fi
"$bin" info "$model"
echo "--- tokenize 'Hello world, this is attnd.':"
printf 'Hello world, this is attnd.' | "$bin" tokenize -m "$model" --pieces
echo "--- generate -p 'Hello world' -n 32 --temp 0:"
"$bin" generate -m "$model" -p "Hello world" -n 32 --temp 0
echo
