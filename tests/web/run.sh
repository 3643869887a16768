#!/usr/bin/env bash
# attnd's page in a real browser (tests/web/page.mjs): installs Debian's chromium when it
# is missing and the pinned puppeteer-core into build/web, serves the shared
# aidreams260K model (with a one-line chat template, since it has none of its own) and
# runs the checks; screenshots land in build/web/.
# usage: tests/web/run.sh   (after a Release build; needs node and npm)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
shared=${ATTND_SHARED:-$root/../shared}
bin=$root/build/release/cli/attnd
work=$root/build/web
mkdir -p "$work"
sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
if [ ! -x /usr/bin/chromium ]; then
  echo "web test: installing Debian's chromium"
  "${sudo_cmd[@]}" apt-get install -y -q chromium >/dev/null
fi
cp tests/web/package.json tests/web/package-lock.json tests/web/page.mjs "$work/"
(cd "$work" && npm ci --no-audit --no-fund --loglevel=error)
printf '%s' '{% for m in messages %}{{ m.role }}: {{ m.content }}
{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}' >"$work/chat.jinja"
. scripts/free-port.sh
serve_on_free_port pid port "$bin" -m "$shared/models/aidreams260K.gguf" --threads 2 --log-level warn \
  --chat-template "$work/chat.jinja" ||
  { echo "web test: the server did not start" >&2; exit 1; }
serve_on_free_port kpid kport "$bin" -m "$shared/models/aidreams260K.gguf" --threads 1 --log-level warn \
  --api-key k ||
  { echo "web test: the server with an API key did not start" >&2; kill "$pid"; exit 1; }
trap 'kill "$pid" "$kpid" 2>/dev/null || true' EXIT
node "$work/page.mjs" "http://127.0.0.1:$port" "$work" "http://127.0.0.1:$kport"
kill -TERM "$pid" "$kpid"
wait "$pid" "$kpid"
