#!/usr/bin/env bash
# Sets up, builds and runs every attnd test:
#   1. the Criterion suite in a Release build,
#   2. the same suite under ASan+UBSan,
#   3. the threaded code under TSan: Criterion itself cannot run under TSan, so
#      a TSan-built attnd runs multi-threaded engine steps on the shared models
#      and serves the whole server suite (test_server with ATTND_BIN pointing
#      at it),
#   4. the official OpenAI Node client against a served model (tests/openai),
#      the page in Debian's chromium driven by puppeteer-core (tests/web),
#      deployment: Kubernetes manifests checked, two replicas behind nginx
#      (deploy/test-lb.sh), the Dockerfile built with podman and its image
#      served from (deploy/test-image.sh); then a benchmark smoke run,
#   5. three libFuzzer targets for $ATTND_FUZZ_SECONDS each (default 60): the
#      GGUF reader (seeded with small valid models), the HTTP request
#      parsing and validation (seeded with valid bodies) and the chat-template
#      parser and renderer (seeded with the committed templates).
# Reference data is read from $ATTND_SHARED (default: ../shared beside the repo).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export ATTND_SHARED=${ATTND_SHARED:-$root/../shared}
[ -d "$ATTND_SHARED/models" ] || { echo "test.sh: reference data not found in $ATTND_SHARED (set ATTND_SHARED)" >&2; exit 1; }

scripts/setup-deps.sh

suites=0
for type in Release Asan; do
  echo "== build and test: $type"
  scripts/build.sh "$type"
  dir=build/$(echo "$type" | tr '[:upper:]' '[:lower:]')
  ATTND_BIN="$root/$dir/cli/attnd" ctest --test-dir "$dir" --output-on-failure | tee build/ctest.log
  n=$(sed -n 's/.*tests passed, 0 tests failed out of \([0-9]*\).*/\1/p' build/ctest.log)
  suites=$((suites + ${n:-0}))
done

echo "== TSan: threaded engine steps"
scripts/build.sh Tsan attnd
tsan=build/tsan/cli/attnd
export TSAN_OPTIONS="halt_on_error=1 exitcode=66"
for m in stories260K gpt2-synth-64x2 llama-synth-128x2-q8_0 llama-synth-64x2-gqa4; do
  "$tsan" logits -m "$ATTND_SHARED/models/$m.gguf" --tokens 1,2,3,4,5,6,7,8,9,10,11,12 \
    --steps 40 --chunk --threads 2 -o /dev/null
  "$tsan" logits -m "$ATTND_SHARED/models/$m.gguf" --tokens 1,2,3 --steps 20 --threads 2 \
    --kv-type f16 -o /dev/null
done
"$tsan" generate -m "$ATTND_SHARED/models/aidreams260K.gguf" -p "Echoes of" -n 40 --threads 2 \
  --seed 7 >/dev/null
ATTND_BIN="$root/$tsan" build/release/tests/test_server --jobs 1
unset TSAN_OPTIONS
echo "TSan: clean"
suites=$((suites + 1))

echo "== the official OpenAI client (node) against attnd"
bash tests/openai/run.sh
suites=$((suites + 1))

echo "== the page in a real browser (Debian's chromium through puppeteer-core)"
bash tests/web/run.sh
suites=$((suites + 1))

echo "== deployment: manifests, load balancer, container image"
bash deploy/check-manifests.sh
bash deploy/test-lb.sh
bash deploy/test-image.sh
suites=$((suites + 3))

echo "== benchmark smoke run (figures are not checked: speed is never asserted)"
build/release/cli/attnd bench -m "$ATTND_SHARED/models/stories260K.gguf" --quick --json > build/bench.json
grep -q '"decode, 1 stream"' build/bench.json
build/release/cli/attnd bench -m "$ATTND_SHARED/models/gpt2-synth-64x2.gguf" --quick
build/release/bench/kernels --mib 4 --reps 2 --json > build/kernels.json
grep -q '"Q4_K"' build/kernels.json
build/release/bench/kernels --mib 2 --reps 1 --rows 3 --pages 4k F16 q8_0
if build/release/bench/kernels --rows 5 2>/dev/null; then echo "kernels took --rows 5" >&2; exit 1; fi
. scripts/free-port.sh
serve_on_free_port bench_pid bench_port build/release/cli/attnd \
  -m "$ATTND_SHARED/models/aidreams260K.gguf" --log-level warn ||
  { echo "bench server did not start" >&2; exit 1; }
build/release/bench/load --url "http://127.0.0.1:$bench_port" --clients 4 --requests 2 --max-tokens 16
kill -TERM "$bench_pid" && wait "$bench_pid"
# the prefix cache through the server: a 1000-token prompt cold and warm; the ratio is
# reported, the identical first-token log-probabilities and the cache hit are checked
scripts/bench-prefix.sh --json build/bench-prefix.json
suites=$((suites + 1))

secs=${ATTND_FUZZ_SECONDS:-60}
echo "== fuzz: GGUF reader, HTTP request parsing and chat templates, $secs s each"
scripts/build.sh Fuzz
corpus=build/fuzz/corpus
rm -rf "$corpus" && mkdir -p "$corpus/gguf" "$corpus/request" "$corpus/jinja"
cp tests/data/templates/*.jinja "$corpus/jinja/"
bin=build/release/cli/attnd
"$bin" mkmodel -o "$corpus/gguf/llama-f32.gguf" --dim 16 --layers 1 --heads 2 --kv-heads 1 --ff 16 --ctx 8
"$bin" mkmodel -o "$corpus/gguf/llama-q8.gguf" --dim 32 --layers 1 --heads 2 --ff 32 --ctx 8 --type q8_0
"$bin" mkmodel -o "$corpus/gguf/gpt2-f16.gguf" --arch gpt2 --dim 16 --layers 1 --heads 2 --ff 16 --ctx 8 --type f16
# one file per quantization preset: every block layout the loader reads
for q in q4_0 q4_1 q5_0 q5_1 q2_k q3_k_m q4_k_m q5_k_m q6_k iq4_nl iq4_xs; do
  "$bin" mkmodel -o "$corpus/gguf/llama-$q.gguf" --dim 256 --layers 1 --heads 2 --ff 256 --ctx 8 --type "$q"
done
printf '%s' '{"prompt":"Hello","max_tokens":8,"temperature":0.7,"top_k":40,"top_p":0.9,"min_p":0.05,"repeat_penalty":1.1,"seed":42,"stop":["\n","END"],"ignore_eos":false,"stream":true}' > "$corpus/request/full.json"
printf '%s' '{"prompt":"Echoes","max_tokens":3,"layers":[0,2],"heads":[1],"format":"json","top_k":2}' > "$corpus/request/attention.json"
printf '%s' '{"prompt":"a","stop":"x"}' > "$corpus/request/min.json"
printf '%s' '{"text":"caf\u00e9 \ud83d\ude00"}' > "$corpus/request/tokenize.json"
printf '%s' '{"tokens":[1,2,3]}' > "$corpus/request/detokenize.json"
printf '%s' '{"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_completion_tokens":8,"logprobs":true,"top_logprobs":2,"logit_bias":{"5":-1},"stream":true,"stream_options":{"include_usage":true}}' > "$corpus/request/chat.json"
printf '%s' '{"prompt":[1,2,3],"echo":true,"logprobs":2,"presence_penalty":0.5,"n":3,"cache_prompt":false}' > "$corpus/request/completion.json"
build/fuzz/tests/fuzz_gguf -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 \
  "$corpus/gguf" 2>&1 | tail -n 8
build/fuzz/tests/fuzz_request -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 \
  "$corpus/request" 2>&1 | tail -n 8
build/fuzz/tests/fuzz_jinja -max_total_time="$secs" -rss_limit_mb=4096 -max_len=16384 \
  -print_final_stats=1 "$corpus/jinja" 2>&1 | tail -n 8
suites=$((suites + 3))
echo "test.sh: all tests passed (Criterion suites in Release and ASan+UBSan, TSan engine and server, deployment, benchmark smoke, three fuzzers)"
echo "suites: $suites passed, 0 failed"
