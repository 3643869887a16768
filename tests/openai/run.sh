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
pid=''
for attempt in 1 2 3 4 5; do  # another process may take the port first: retry on another
  free_port port
  "$bin" serve -m "$model" --port "$port" --threads 2 --log-level warn &
  pid=$!
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break 2
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "openai test: server did not come up on port $port (attempt $attempt)"
  pid=''
done
[ -n "$pid" ] || exit 1
trap 'kill "$pid" 2>/dev/null || true' EXIT
node "$work/client.mjs" "http://127.0.0.1:$port"
kill -TERM "$pid"
wait "$pid"
trap - EXIT
