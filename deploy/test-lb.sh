#!/usr/bin/env bash
# Load-balancer test: two `attnd serve` replicas behind nginx running deploy/nginx.conf
# (upstream addresses and listen port substituted for loopback ports), all on 127.0.0.1.
#
#   1. 16 concurrent streamed /generate requests through nginx: every one is HTTP 200
#      with a final {"done":true...} line, and both replicas served some (their own
#      /metrics, queried directly).
#   2. Long streams (6000 tokens on a 16k-context model: each reads its growing KV
#      cache at every step, seconds of work on any CPU) are sent until replica 1
#      reports one running; then 20 short streams start and replica 1 gets SIGTERM, and
#      new requests keep coming for a few seconds. Every response must be 200 with the
#      final "done" line: the in-flight streams on replica 1 finish (it drains), new
#      ones go to replica 2 (nginx retries 503 / refused connections). Replica 1 must
#      exit 0, and its own account must agree: at the signal it logged N >= 1
#      requests in flight, at the end "N were in flight, N finished, 0 cut off".
#      Nothing here depends on how fast the machine is: the long stream cannot end
#      between the metrics read that saw it running and the signal.
#   3. After nginx's fail_timeout (10 s) it tries the exited replica again: the
#      connection is refused and the requests must still succeed on replica 2.
#
# Takes about 20 s.
# Usage (from the repo root):  bash deploy/test-lb.sh
# Needs build/release/cli/attnd (scripts/build.sh Release), which also writes the
# synthetic model the replicas serve. Installs nginx and curl with apt-get when missing.
# Env: LB_KEEP=1 keeps the temp dir (logs, configs, responses) for inspection.
# Exit status 0 when every check passed.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=$ROOT/build/release/cli/attnd
CONF_SRC=$ROOT/deploy/nginx.conf

fails=0 passes=0
pass() { echo "PASS: $*"; passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
die() { echo "FAIL: $*" >&2; exit 1; }
log() { echo "test-lb: $*"; }

[ -x "$BIN" ] || die "$BIN not found: build it first with scripts/build.sh Release"
[ -r "$CONF_SRC" ] || die "$CONF_SRC not found"

# ------------------------------------------------------------------ tools
find_nginx() {
  command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true
}
apt_install() {
  local sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "need root or sudo to install: $*"
    sudo_cmd=(sudo)
  fi
  # Installing nginx must not start a system nginx service: when no policy-rc.d is
  # in place, put a temporary one that forbids starting services.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee $policy >/dev/null
    "${sudo_cmd[@]}" chmod 755 $policy
    made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  local rc=0
  "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "$@" >/dev/null 2>&1 ||
    { "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null &&
      "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "$@" >/dev/null; } || rc=$?
  [ $made_policy -eq 1 ] && "${sudo_cmd[@]}" rm -f $policy
  return $rc
}
if ! command -v curl >/dev/null; then
  log "installing curl"
  apt_install curl || die "cannot install curl"
fi
NGINX=$(find_nginx)
if [ -z "$NGINX" ]; then
  log "installing nginx"
  apt_install nginx-light || apt_install nginx || die "cannot install nginx"
  NGINX=$(find_nginx)
  [ -n "$NGINX" ] || die "nginx installed but its binary was not found"
fi

# ------------------------------------------------------------------ state, cleanup
T0=$(date +%s)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/attnd-lb.XXXXXX")
chmod 755 "$TMP" # nginx workers run as an unprivileged user when started as root
PIDS=()       # replicas and nginx
CLIENTS=()    # background curl jobs
R1_PID='' R2_PID='' NGINX_PID=''
cleanup() {
  local rc=$?
  set +e
  # background client jobs first, then the servers; each by its own pid
  for j in "${CLIENTS[@]}"; do kill "$j" 2>/dev/null; done
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 1 50); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ $rc -ne 0 ] || [ $fails -ne 0 ]; then
    for f in "$TMP"/r1.log "$TMP"/r2.log "$TMP"/nginx/error.log; do
      [ -s "$f" ] && { echo "--- tail of $f"; tail -n 20 "$f"; }
    done
  fi
  if [ "${LB_KEEP:-0}" = 1 ]; then
    echo "test-lb: kept $TMP"
  else
    rm -rf "$TMP"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A synthetic Llama with a 16384-token context (random weights, built-in vocabulary):
# long requests on it take seconds whatever the machine (see phase 2).
MODEL=$TMP/long.gguf
"$BIN" mkmodel -o "$MODEL" --dim 64 --layers 2 --heads 4 --kv-heads 4 --ff 128 --ctx 16384 \
  >/dev/null || die "attnd mkmodel failed"

# ------------------------------------------------------------------ helpers
# free_port VAR: a port below the ephemeral range (see the file for why)
. "$ROOT/scripts/free-port.sh"

wait_http() { # url, seconds, pid that must stay alive
  local url=$1 secs=$2 pid=$3 i
  for i in $(seq 1 $((secs * 10))); do
    kill -0 "$pid" 2>/dev/null || return 1
    curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# start_replica N -> sets R<N>_PID and P<N>; retries on another port if the bind failed
start_replica() {
  local n=$1 port pid attempt
  for attempt in 1 2 3 4 5; do
    free_port port || die "no free loopback port"
    # --threads 1: two replicas share this machine's cores. --max-seqs 2: short
    # requests queue behind the long ones, so the drain serves running and queued
    # requests. Drain timeout: the default (30 s).
    "$BIN" serve -m "$MODEL" --host 127.0.0.1 --port "$port" --log-level warn \
      --threads 1 --max-seqs 2 --kv-bytes 64M --max-tokens-cap 8000 >>"$TMP/r$n.log" 2>&1 &
    pid=$!
    if wait_http "http://127.0.0.1:$port/ready" 20 "$pid"; then
      PIDS+=("$pid")
      eval "R${n}_PID=$pid P$n=$port"
      return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    log "replica $n did not come up on port $port (attempt $attempt)"
  done
  die "replica $n did not start; see $TMP/r$n.log"
}

metric() { # port, metric line prefix -> value (empty when unreachable)
  curl -fsS --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null |
    awk -v k="$2" 'index($0, k " ") == 1 { print $2 }'
}
GEN200='attnd_requests_total{endpoint="generate",status="200"}'

# one streamed request through nginx: writes DIR/NAME.out (body) and DIR/NAME.code
stream_req() { # dir name max_tokens
  local body
  body=$(printf '{"prompt": "Echoes of %s", "max_tokens": %d, "temperature": 0, "stream": true, "ignore_eos": true}' "$2" "$3")
  curl -sS -N --max-time 90 -o "$1/$2.out" -w '%{http_code}' \
    -H 'Content-Type: application/json' -d "$body" \
    "http://127.0.0.1:$PN/generate" >"$1/$2.code" 2>"$1/$2.err" || true
}

check_responses() { # dir label -> counts ok/bad, prints FAIL lines for bad ones
  local dir=$1 label=$2 n=0 bad=0 f name code last
  for f in "$dir"/*.code; do
    [ -e "$f" ] || continue
    n=$((n + 1))
    name=$(basename "$f" .code)
    code=$(cat "$f")
    last=$(tail -n 1 "$dir/$name.out" 2>/dev/null || true)
    if [ "$code" != 200 ] || ! printf '%s' "$last" | grep -q '"done": *true'; then
      bad=$((bad + 1))
      [ $bad -le 5 ] && echo "  $label request $name: http $code, last line: ${last:0:160} $(head -c 200 "$dir/$name.err" 2>/dev/null)"
    fi
  done
  if [ $n -eq 0 ]; then
    fail "$label: no responses recorded"
  elif [ $bad -eq 0 ]; then
    pass "$label: all $n responses are 200 and end with \"done\":true"
  else
    fail "$label: $bad of $n responses failed"
  fi
}

# ------------------------------------------------------------------ start everything
start_replica 1
start_replica 2
log "replica 1 pid $R1_PID port $P1, replica 2 pid $R2_PID port $P2"

NG=$TMP/nginx
mkdir -p "$NG"
chmod 755 "$NG"
PN=''
for attempt in 1 2 3 4 5; do
  free_port PN || die "no free loopback port"
  sed -e "s/server attnd-1:8080 /server 127.0.0.1:$P1 /" \
      -e "s/server attnd-2:8080 /server 127.0.0.1:$P2 /" \
      -e "s/^\( *\)listen 80;/\1listen 127.0.0.1:$PN;/" \
      -e "s#access_log /dev/stdout#access_log $NG/access.log#" \
      -e "s#/tmp/nginx-#$NG/tmp-#" \
      "$CONF_SRC" >"$NG/nginx.conf"
  # the substitutions must all have applied: the source config is the template
  grep -q "server 127.0.0.1:$P1 " "$NG/nginx.conf" &&
    grep -q "server 127.0.0.1:$P2 " "$NG/nginx.conf" &&
    grep -q "listen 127.0.0.1:$PN;" "$NG/nginx.conf" &&
    ! grep -v '^ *#' "$NG/nginx.conf" | grep -Eq 'attnd-[0-9]+:8080|listen +80;|/dev/stdout|/tmp/nginx-' ||
    die "deploy/nginx.conf no longer has the expected 'server attnd-N:8080', 'listen 80;', access_log or temp path lines"
  NGARGS=(-p "$NG" -e "$NG/error.log" -c "$NG/nginx.conf" -g "pid $NG/nginx.pid; daemon off;")
  "$NGINX" -t -q "${NGARGS[@]}" >>"$NG/error.log" 2>&1 || die "nginx -t rejected the config: $(tail -n 3 "$NG/error.log")"
  "$NGINX" "${NGARGS[@]}" >>"$NG/error.log" 2>&1 &
  NGINX_PID=$!
  if wait_http "http://127.0.0.1:$PN/nginx-health" 10 "$NGINX_PID"; then
    PIDS+=("$NGINX_PID")
    break
  fi
  kill -KILL "$NGINX_PID" 2>/dev/null || true
  wait "$NGINX_PID" 2>/dev/null || true
  NGINX_PID=''
  log "nginx did not come up on port $PN (attempt $attempt)"
done
[ -n "$NGINX_PID" ] || die "nginx did not start; see $NG/error.log"
log "nginx pid $NGINX_PID port $PN ($("$NGINX" -v 2>&1 | sed 's/.*: //'))"

if curl -fsS --max-time 2 "http://127.0.0.1:$PN/ready" >/dev/null; then
  pass "nginx forwards /ready to the replicas"
else
  fail "GET /ready through nginx"
fi

# ------------------------------------------------------------------ phase 1: spread
D1=$TMP/phase1
mkdir -p "$D1"
CLIENTS=()
for i in $(seq 1 16); do stream_req "$D1" "$i" 40 & CLIENTS+=($!); done
wait "${CLIENTS[@]}" # (a bare `wait` would wait for the servers too)
check_responses "$D1" "phase 1 (16 concurrent streams)"
a=$(metric "$P1" "$GEN200")
b=$(metric "$P2" "$GEN200")
if [ "${a:-0}" -gt 0 ] && [ "${b:-0}" -gt 0 ]; then
  pass "both replicas served /generate (replica 1: $a, replica 2: $b)"
else
  fail "both replicas should serve /generate (replica 1: ${a:-none}, replica 2: ${b:-none})"
fi

# ------------------------------------------------------------------ phase 2: SIGTERM under load
D2=$TMP/phase2
mkdir -p "$D2"
CLIENTS=()
# long streams until replica 1 reports one running (least_conn spreads them; bounded)
run=0
for i in $(seq 1 8); do
  stream_req "$D2" "long-$i" 6000 & CLIENTS+=($!)
  for _ in $(seq 1 50); do
    run=$(metric "$P1" attnd_running_sequences)
    [ "${run:-0}" -ge 1 ] && break
    sleep 0.02
  done
  [ "${run:-0}" -ge 1 ] && break
done
for i in $(seq 1 20); do stream_req "$D2" "burst-$i" 40 & CLIENTS+=($!); done
kill -TERM "$R1_PID"
T_TERM=$(date +%s.%N)
if [ "${run:-0}" -ge 1 ]; then
  pass "replica 1 got SIGTERM while it reported a long stream running"
else
  fail "replica 1 never reported a running stream before SIGTERM"
fi

# new requests keep coming for 3 s after the SIGTERM: 4 senders, sequential requests
sender() { # id
  local k=0 end=$(($(date +%s) + 3))
  while [ "$(date +%s)" -lt $end ] && [ $k -lt 100 ]; do
    k=$((k + 1))
    stream_req "$D2" "late-$1-$k" 40
    sleep 0.05
  done
}
for s in 1 2 3 4; do sender "$s" & CLIENTS+=($!); done

# replica 1 must drain and exit 0 (drain timeout 30 s + up to 5 s of flushing)
r1_rc=''
for _ in $(seq 1 400); do
  kill -0 "$R1_PID" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$R1_PID" 2>/dev/null; then
  fail "replica 1 still running 40 s after SIGTERM"
else
  r1_rc=0
  wait "$R1_PID" || r1_rc=$?
  T_EXIT=$(date +%s.%N)
  if [ "$r1_rc" -eq 0 ]; then
    pass "replica 1 drained and exited 0 ($(awk -v a="$T_TERM" -v b="$T_EXIT" 'BEGIN{printf "%.2f", b-a}') s after SIGTERM)"
  else
    fail "replica 1 exited $r1_rc"
  fi
fi
wait "${CLIENTS[@]}" # the burst and the senders (each curl has its own --max-time)

check_responses "$D2" "phase 2 (20-stream burst + new requests during and after the drain)"
n_late=$(find "$D2" -name 'late-*.code' | wc -l)
n_burst=$(find "$D2" -name 'burst-*.code' | wc -l)
log "phase 2: $n_burst burst requests, $n_late requests sent after SIGTERM"
[ "$n_late" -gt 0 ] || fail "no request was sent after SIGTERM"
if grep -q 'draining' "$TMP/r1.log" && grep -q 'drained, exiting' "$TMP/r1.log"; then
  pass "replica 1 logged the drain"
else
  fail "replica 1 log lacks the drain lines"
fi
# replica 1's own account of the drain: what it held at the signal all finished
sig_line=$(grep -m1 'SIGTERM: draining' "$TMP/r1.log" || true)
end_line=$(grep -m1 'drain complete:' "$TMP/r1.log" || true)
in_flight=$(printf '%s' "$sig_line" | sed -n 's/.*draining \([0-9]*\) requests in flight.*/\1/p')
if [ "${in_flight:-0}" -ge 1 ] &&
   printf '%s' "$end_line" | grep -q "drain complete: $in_flight requests were in flight, $in_flight finished, 0 cut off"; then
  pass "replica 1 drained what it held: $in_flight requests in flight at SIGTERM, all finished, none cut off"
else
  fail "replica 1's drain report: '${sig_line:-no SIGTERM line}' / '${end_line:-no drain complete line}'"
fi
n_long=$(grep -l '"done": *true' "$D2"/long-*.out 2>/dev/null | wc -l)
log "phase 2: $n_long long streams completed (each ran seconds; some on replica 1 across its drain)"

# informational: how nginx handled the drain (retries show as several upstream addresses)
retried=$(grep -c 'upstream=[^ ]*, ' "$NG/access.log" || true)
r503=$(grep -c "ustatus=503" "$NG/access.log" || true)
log "nginx: $retried requests retried on another replica, $r503 upstream 503 answers seen"

# replica 2 still healthy and served the rest
b2=$(metric "$P2" "$GEN200")
if [ "${b2:-0}" -gt "${b:-0}" ]; then
  pass "replica 2 served the requests after the drain ($b2 in total)"
else
  fail "replica 2 did not serve more requests (before ${b:-none}, after ${b2:-none})"
fi

# ------------------------------------------------------------------ phase 3: replica gone
# nginx took replica 1 out of rotation (max_fails=3 fail_timeout=10s). Once fail_timeout
# has passed it tries replica 1 again: the connection is refused and the request must
# be retried on replica 2 (proxy_next_upstream error ... non_idempotent).
if [ -n "$r1_rc" ]; then
  FT=$(grep -o 'server attnd-1:8080 [^;]*fail_timeout=[0-9]*s' "$CONF_SRC" | grep -o '[0-9]*s$' | tr -d s)
  FT=${FT:-10}
  log "phase 3: waiting $((FT + 1)) s (fail_timeout) for nginx to try the exited replica again"
  sleep $((FT + 1)) &
  CLIENTS+=($!)
  wait $! # (interruptible, unlike a foreground sleep)
  lines_before=$(wc -l <"$NG/access.log")
  D3=$TMP/phase3
  mkdir -p "$D3"
  CLIENTS=()
  for i in $(seq 1 8); do stream_req "$D3" "$i" 40 & CLIENTS+=($!); done
  wait "${CLIENTS[@]}"
  check_responses "$D3" "phase 3 (8 streams with replica 1 gone)"
  refused=$(tail -n +$((lines_before + 1)) "$NG/access.log" | grep -c "upstream=127.0.0.1:$P1, 127.0.0.1:$P2 " || true)
  if [ "$refused" -gt 0 ]; then
    pass "phase 3: $refused requests refused by the exited replica were retried on replica 2"
  else
    fail "phase 3: nginx did not try the exited replica (no retry seen in the access log)"
  fi
fi

echo "test-lb: $(($(date +%s) - T0)) s"
echo "test-lb: $passes passed, $fails failed"
if [ $fails -eq 0 ]; then
  echo "test-lb: PASS"
  exit 0
fi
echo "test-lb: FAIL ($fails checks failed)"
exit 1
