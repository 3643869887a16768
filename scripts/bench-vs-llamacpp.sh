#!/usr/bin/env bash
# attnd beside llama.cpp on this machine, on the same GGUF files, in one run:
# the figures docs/PERFORMANCE.md carries (issue 11's targets are ratios).
#
#   LLAMA_SRC=/path/to/llama.cpp scripts/bench-vs-llamacpp.sh [DIR] [TYPES...]
#
# llama.cpp: LLAMA_BIN names a directory that already holds llama-bench,
# llama-batched-bench and llama-server, or LLAMA_SRC a source tree, built
# here (Release, -DGGML_NATIVE=ON, no curl) into LLAMA_BUILD (default
# DIR/llama.cpp-build). Its source and build stay outside the repository.
# Models: the 1.1B Llama shape (dim 2048, 22 layers, GQA 32:4, FFN 5632)
# written by `attnd mkmodel --seed 1` in each type, in DIR (default
# /tmp/attnd-bench), reused when present. Types default to f16 q8_0 q4_k_m.
#
# Per type, back to back so both tools see the machine in the same state:
#   engine: `attnd bench --json` against `llama-bench -t T -fa 1 -p 128,512
#     -n 64` (decode 1 stream = tg64, prefill = pp128/pp512) and
#     `llama-batched-bench -t T -fa -npp 8 -ntg 64 -npl 1,8,16` (S_TG: the
#     same 8-token prompts then 64 steps of K streams as attnd bench's rows);
#   server (SERVER=0 skips it): `attnd serve` and `llama-server -np 8 -fa`
#     (same threads, greedy, no prompt cache), each under bench/load with 1
#     client then 8 (P-token prompts, M tokens each, ignore_eos).
# Prints one table of ratios (attnd / llama.cpp; TTFT: llama.cpp / attnd,
# so above 1 is better for attnd everywhere) and writes DIR/vs-llamacpp.json.
# Needs python3 for the table (test tooling, not the server). Nothing else
# should run meanwhile: speed is only comparable within one run.
# Env: THREADS (default 2), SERVER (1), PROMPT (32), MAXTOK (64),
#      REQS1 (4 requests for 1 client), REQS8 (2 per client for 8).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=${1:-/tmp/attnd-bench}
shift || true
types=${*:-f16 q8_0 q4_k_m}
threads=${THREADS:-2}
server=${SERVER:-1}
prompt=${PROMPT:-32}
maxtok=${MAXTOK:-64}
reqs1=${REQS1:-4}
reqs8=${REQS8:-2}
vocab=${ATTND_SHARED:-../shared}/vocab/ggml-vocab-llama-spm.gguf
bin=$root/build/release/cli/attnd
load=$root/build/release/bench/load
die() { echo "bench-vs-llamacpp: $*" >&2; exit 1; }
log() { echo "[bench-vs-llamacpp $(date +%H:%M:%S)] $*" >&2; }
command -v python3 >/dev/null || die "python3 is needed for the table (apt-get install python3)"
[ -x "$bin" ] && [ -x "$load" ] || scripts/build.sh Release
mkdir -p "$dir"

# ---- llama.cpp
need="llama-bench llama-batched-bench"
[ "$server" = 1 ] && need="$need llama-server"
have_all() { for t in $need; do [ -x "$1/$t" ] || return 1; done; }
if [ -n "${LLAMA_BIN:-}" ] && have_all "$LLAMA_BIN"; then
  lbin=$LLAMA_BIN
else
  [ -n "${LLAMA_SRC:-}" ] && [ -f "$LLAMA_SRC/CMakeLists.txt" ] ||
    die "set LLAMA_SRC to a llama.cpp source tree (or LLAMA_BIN to its built binaries)"
  lbuild=${LLAMA_BUILD:-$dir/llama.cpp-build}
  case "$(realpath -m "$lbuild")/" in "$root"/*) die "LLAMA_BUILD must be outside the repository" ;; esac
  log "building llama.cpp from $LLAMA_SRC in $lbuild"
  cmake -S "$LLAMA_SRC" -B "$lbuild" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=ON >/dev/null
  # shellcheck disable=SC2086
  cmake --build "$lbuild" -j"$(nproc)" --target $need >/dev/null
  lbin=$lbuild/bin
fi
llama_rev=$(git -C "${LLAMA_SRC:-$lbin}" rev-parse --short HEAD 2>/dev/null || echo unknown)

# ---- servers
. scripts/free-port.sh
srv_pid=''
stop_server() {
  if [ -n "$srv_pid" ]; then
    kill -TERM "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
    srv_pid=''
  fi
}
trap stop_server EXIT
# start_server LOG READY_PATH FUNC: FUNC execs the server on $port; waits for
# READY_PATH to answer 200, retrying on another port.
start_server() {
  local logf=$1 ready=$2 fn=$3 attempt
  for attempt in 1 2 3; do
    free_port port
    "$fn" >"$logf" 2>&1 &
    srv_pid=$!
    for _ in $(seq 1 900); do
      kill -0 "$srv_pid" 2>/dev/null || break
      if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port$ready" 2>/dev/null; then
        return 0
      fi
      sleep 0.2
    done
    stop_server
    log "server did not come up on port $port (attempt $attempt); see $logf"
  done
  die "server did not start: $(tail -n 3 "$logf")"
}
# Both: THREADS engine threads, 8 sequences at once, room for 8 requests.
run_attnd() {
  exec "$bin" serve -m "$m" --host 127.0.0.1 --port "$port" --threads "$threads" \
    --max-seqs 8 --log-level warn
}
run_llama() {
  exec "$lbin/llama-server" -m "$m" --host 127.0.0.1 --port "$port" -t "$threads" -np 8 -fa \
    -c $((8 * ctx)) --log-disable
}
# load_run API OUT: 1 client, then 8, against the server on $port
load_run() {
  "$load" --url "http://127.0.0.1:$port" --api "$1" --clients 1 --requests "$reqs1" \
    --prompt-tokens "$prompt" --max-tokens "$maxtok" --json >"$2-1.json"
  "$load" --url "http://127.0.0.1:$port" --api "$1" --clients 8 --requests "$reqs8" \
    --prompt-tokens "$prompt" --max-tokens "$maxtok" --json >"$2-8.json"
}

shape="--dim 2048 --layers 22 --heads 32 --kv-heads 4 --ff 5632"
ctx=$((prompt + maxtok + 16))
for t in $types; do
  m="$dir/llama-1.1b-$t.gguf"
  # shellcheck disable=SC2086
  [ -f "$m" ] || "$bin" mkmodel -o "$m" --arch llama $shape --ctx 2048 --type "$t" \
    --vocab "$vocab" --seed 1 >/dev/null
  out="$dir/vs-$t"
  mkdir -p "$out"
  log "$t: attnd bench"
  "$bin" bench -m "$m" --threads "$threads" --json >"$out/attnd-bench.json"
  log "$t: llama-bench"
  "$lbin/llama-bench" -m "$m" -t "$threads" -fa 1 -p 128,512 -n 64 -r 3 -o json \
    >"$out/llama-bench.json" 2>/dev/null
  log "$t: llama-batched-bench"
  "$lbin/llama-batched-bench" -m "$m" -t "$threads" -fa -c 4096 -npp 8 -ntg 64 -npl 1,8,16 \
    --output-format jsonl 2>/dev/null | grep '^{' >"$out/llama-batched.jsonl"
  if [ "$server" = 1 ]; then
    log "$t: attnd serve under bench/load"
    start_server "$out/attnd-serve.log" /ready run_attnd
    load_run attnd "$out/attnd-load"
    stop_server
    log "$t: llama-server under bench/load"
    start_server "$out/llama-server.log" /health run_llama
    load_run llama "$out/llama-load"
    stop_server
  fi
done

flags=$(grep -o -w 'avx2\|avx512f\|avx512_vnni\|avx512bw\|avx512vl' /proc/cpuinfo | sort -u | tr '\n' ' ')
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
python3 - "$dir" "$llama_rev" "$threads" "$cpu" "$flags" "$server" $types <<'PY'
import json, sys
d, rev, threads, cpu, flags, server, *types = sys.argv[1:]
def load(p):
    with open(p) as f:
        return json.load(f)
rows, out = [], {"cpu": cpu, "flags": flags.split(), "threads": int(threads),
                 "llama_cpp": rev, "types": {}}
for t in types:
    v = f"{d}/vs-{t}"
    a = {r["name"]: r["value"] for r in load(f"{v}/attnd-bench.json")["results"]}
    ab = load(f"{v}/attnd-bench.json")
    lb = load(f"{v}/llama-bench.json")
    if rev == "unknown" and lb:
        rev = out["llama_cpp"] = f'{lb[0].get("build_commit", "unknown")} (build {lb[0].get("build_number", "?")})'
    def lts(p, n):
        for r in lb:
            if r["n_prompt"] == p and r["n_gen"] == n:
                return r["avg_ts"]
        return None
    bb = {}
    with open(f"{v}/llama-batched.jsonl") as f:
        for line in f:
            r = json.loads(line)
            bb[r["pl"]] = r["speed_tg"]
    fig = {
        "decode 1 stream": (a.get("decode, 1 stream"), lts(0, 64)),
        "prefill 128": (a.get("prefill 128 tokens"), lts(128, 0)),
        "prefill 512": (a.get("prefill 512 tokens"), lts(512, 0)),
        "decode 8 streams": (a.get("decode, 8 streams (total)"), bb.get(8)),
        "decode 16 streams": (a.get("decode, 16 streams (total)"), bb.get(16)),
    }
    if server == "1":
        for c in ("1", "8"):
            x, y = load(f"{v}/attnd-load-{c}.json"), load(f"{v}/llama-load-{c}.json")
            fig[f"server {c} client{'s' if c != '1' else ''}, tokens/s"] = (
                x["tokens_per_s"], y["tokens_per_s"])
            # lower is better: the ratio is llama.cpp's over attnd's
            fig[f"server {c} client{'s' if c != '1' else ''}, TTFT p99 s"] = (
                x["ttft_p99_ms"] / 1e3, y["ttft_p99_ms"] / 1e3)
    entry = {"bandwidth_gbs": a.get("memory read bandwidth"),
             "decode_fraction_of_paired_bandwidth": next(
                 (r.get("fraction_of_ceiling") for r in ab["results"]
                  if r["name"] == "decode, 1 stream"), None),
             "figures": {}}
    for k, (x, y) in fig.items():
        ratio = None
        if x and y:
            ratio = y / x if "TTFT" in k else x / y
        entry["figures"][k] = {"attnd": x, "llama_cpp": y, "ratio": ratio}
        rows.append((t, k, x, y, ratio))
    out["types"][t] = entry
with open(f"{d}/vs-llamacpp.json", "w") as f:
    json.dump(out, f, indent=1)
print(f"cpu: {cpu}; flags: {flags}; {threads} threads; llama.cpp {rev}")
print(f"{'type':8} {'figure':32} {'attnd':>10} {'llama.cpp':>10} {'ratio':>7}")
for t, k, x, y, r in rows:
    fx = lambda z: f"{z:10.2f}" if isinstance(z, (int, float)) else f"{'-':>10}"
    print(f"{t:8} {k:32} {fx(x)} {fx(y)} {r:7.2f}" if r else f"{t:8} {k:32} {fx(x)} {fx(y)}       -")
print("ratio: attnd / llama.cpp (TTFT: llama.cpp / attnd); above 1 favours attnd")
print(f"written: {d}/vs-llamacpp.json")
PY
