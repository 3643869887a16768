#!/usr/bin/env bash
# The official OpenAI Node client against attnd (tests/openai/client.mjs):
# installs the pinned `openai` package with npm into build/openai, serves a
# synthetic Qwen 3 model with the real Qwen 3 vocabulary and chat template
# (the family golden's model), and runs the client's checks.
# usage: tests/openai/run.sh   (after a Release build; needs node and npm)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
shared=${ATTND_SHARED:-$root/../shared}
bin=$root/build/release/cli/attnd
work=$root/build/openai
mkdir -p "$work"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "openai test: installing Debian's nodejs and npm"
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get install -y -q nodejs npm >/dev/null
fi
cp tests/openai/package.json tests/openai/package-lock.json tests/openai/client.mjs "$work/"
(cd "$work" && npm ci --no-audit --no-fund --loglevel=error)
model=$work/qwen3-chat.gguf
"$bin" mkmodel -o "$model" --vocab "$shared/vocab/ggml-vocab-qwen3.gguf" --arch qwen3 --dim 64 \
  --layers 2 --heads 6 --kv-heads 2 --head-dim 32 --ff 128 --tied --seed 14
. scripts/free-port.sh
serve_on_free_port pid port "$bin" -m "$model" --threads 2 --log-level warn ||
  { echo "openai test: the server did not start" >&2; exit 1; }
trap 'kill "$pid" 2>/dev/null || true' EXIT
node "$work/client.mjs" "http://127.0.0.1:$port"
kill -TERM "$pid"
wait "$pid"
trap - EXIT
