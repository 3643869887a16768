#!/usr/bin/env bash
# Prefix cache, through the server: the same long prompt twice, cold (cache_prompt false:
# every position computed) and warm (the cached blocks reused), reporting the time to the
# first token of each and checking that the first token's log-probabilities (top 20) are
# the same to the last digit. Speed is reported, never asserted; the exit status is 1 only
# when the answers differ or the cache was not used.
#
# Usage: scripts/bench-prefix.sh [--tokens N] [--model GGUF] [--json OUT]
#   default model: a synthetic Llama (dim 1024, 8 layers, GQA 16:4, Q8_0, Llama 3
#   vocabulary, context 2048) written to build/bench/prefix-llama.gguf by attnd mkmodel.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/free-port.sh
tokens=1000 model= json=
while [ $# -gt 0 ]; do
  case $1 in
    --tokens) tokens=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    *) echo "bench-prefix: unknown option $1" >&2; exit 2 ;;
  esac
done
bin=build/release/cli/attnd
[ -x "$bin" ] || scripts/build.sh Release >/dev/null
shared=${ATTND_SHARED:-../shared}
if [ -z "$model" ]; then
  model=build/bench/prefix-llama.gguf
  mkdir -p build/bench
  [ -f "$model" ] || "$bin" mkmodel -o "$model" --dim 1024 --layers 8 --heads 16 --kv-heads 4 \
    --ff 2816 --ctx 2048 --type q8_0 --vocab "$shared/vocab/ggml-vocab-llama3.gguf" >/dev/null
fi
serve_on_free_port pid port "$bin" -m "$model" --host 127.0.0.1 --log-level warn --max-seqs 1 ||
  { echo "bench-prefix: the server did not start" >&2; exit 1; }
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
prompt=$(printf 'the %.0s' $(seq 1 "$tokens"))
ask() { # cache_prompt -> "seconds body"
  local body="{\"prompt\":\"${prompt% }\",\"max_tokens\":1,\"temperature\":0,\"logprobs\":true,\"top_logprobs\":20,\"cache_prompt\":$1}"
  curl -s -o build/bench/prefix-answer.json -w '%{time_total}' "http://127.0.0.1:$port/generate" -d "$body"
}
field() { /usr/bin/python3 -c "import json,sys; d=json.load(open('build/bench/prefix-answer.json')); print($1)"; }
ask false >/dev/null # warm-up: pages touched, threads up (and the prompt's blocks published)
cold_s=$(ask false); cold_lp=$(field 'json.dumps(d["logprobs"])'); cold_pre=$(field 'd["timings"]["prefill_ms"]')
n_prompt=$(field 'd["usage"]["prompt_tokens"]')
warm_s=$(ask true); warm_lp=$(field 'json.dumps(d["logprobs"])'); warm_pre=$(field 'd["timings"]["prefill_ms"]')
cached=$(field 'd["usage"]["cached_tokens"]')
ratio=$(awk -v a="$cold_s" -v b="$warm_s" 'BEGIN { printf "%.1f", a / b }')
printf '%-34s %10s %10s\n' "prompt of $n_prompt tokens" cold warm
printf '%-34s %10.1f %10.1f\n' "time to first token, ms (client)" "$(awk -v s="$cold_s" 'BEGIN{print s*1000}')" \
  "$(awk -v s="$warm_s" 'BEGIN{print s*1000}')"
printf '%-34s %10s %10s\n' "prefill, ms (server)" "$cold_pre" "$warm_pre"
printf '%-34s %10s %10s\n' "prompt tokens from the cache" 0 "$cached"
echo "TTFT cold / warm: ${ratio}x"
same=no
[ "$cold_lp" = "$warm_lp" ] && same=yes
echo "first token's top-20 log-probabilities identical: $same"
if [ -n "$json" ]; then
  printf '{"prompt_tokens":%s,"cached_tokens":%s,"ttft_cold_ms":%s,"ttft_warm_ms":%s,"ratio":%s,"identical":%s}\n' \
    "$n_prompt" "$cached" "$(awk -v s="$cold_s" 'BEGIN{print s*1000}')" "$(awk -v s="$warm_s" 'BEGIN{print s*1000}')" \
    "$ratio" "$([ $same = yes ] && echo true || echo false)" >"$json"
fi
[ "$same" = yes ] && [ "$cached" -gt 0 ]
