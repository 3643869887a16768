#!/usr/bin/env bash
# Sets up, builds and runs the attnd server on a default model.
# Until a trained default model ships, the default is a small synthetic demo
# model written by attnd's own GGUF writer (random weights, built-in
# vocabulary: its text is gibberish). Set ATTND_MODEL to serve another GGUF
# file (e.g. ../shared/models/aidreams260K.gguf); every other ATTND_* setting
# and any flags given to this script are passed to `attnd serve`.
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
port=${ATTND_PORT:-8080}
cat <<MSG
Serving $model on http://127.0.0.1:$port (Ctrl-C drains and stops). Try:
  curl -N http://127.0.0.1:$port/generate -d '{"prompt": "Hello world", "max_tokens": 32, "stream": true}'
MSG
exec "$bin" serve -m "$model" --port "$port" "$@"
