# Sourced by the shell tests (scripts/test.sh, tests/openai/run.sh, deploy/test-lb.sh,
# deploy/test-image.sh):
# `free_port VAR` sets VAR to a loopback TCP port that nothing listens on.
#
# Why not any random port: Linux hands outgoing connections their local port from the
# ephemeral range (/proc/sys/net/ipv4/ip_local_port_range, 32768-60999 by default). A
# port held that way by a curl or nginx connection answers no connect probe, yet a
# server's bind() on it fails with EADDRINUSE; that broke a CI run. So ports come from
# below that range. Still not proof against a race with another process: callers
# that start a server retry on another port when it does not come up.
free_port() {
  local var=$1 lo=32768 base=20000 span p _
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
  span=$((lo - base))
  if [ "$span" -lt 2000 ]; then base=$((lo > 12000 ? lo - 10000 : 1024)); span=$((lo - base)); fi
  if [ "$span" -lt 100 ]; then echo "free_port: ephemeral ports start at $lo: no room below" >&2; return 1; fi
  for _ in $(seq 1 200); do
    p=$((base + (RANDOM * 32768 + RANDOM) % span))
    case " ${FREE_PORT_USED:-} " in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      FREE_PORT_USED="${FREE_PORT_USED:-} $p"
      printf -v "$var" '%s' "$p"
      return 0
    fi
  done
  echo "free_port: no free loopback port in $base-$((base + span - 1))" >&2
  return 1
}

# `serve_on_free_port PID_VAR PORT_VAR BIN ARGS...` runs `BIN serve ARGS --port P` in the
# background on a free port and waits for /ready; when it does not come up (another
# process may take the port first) it tries another, five times in all. Sets PID_VAR and
# PORT_VAR (the caller waits for the pid); returns 1 when no attempt came up.
serve_on_free_port() {
  local _sofp_pid_var=$1 _sofp_port_var=$2 _sofp_bin=$3 _sofp_port _sofp_pid _sofp_try _
  shift 3
  for _sofp_try in 1 2 3 4 5; do
    free_port _sofp_port || return 1
    "$_sofp_bin" serve "$@" --port "$_sofp_port" &
    _sofp_pid=$!
    for _ in $(seq 100); do
      kill -0 "$_sofp_pid" 2>/dev/null || break
      if curl -sf "http://127.0.0.1:$_sofp_port/ready" >/dev/null; then
        printf -v "$_sofp_pid_var" '%s' "$_sofp_pid"
        printf -v "$_sofp_port_var" '%s' "$_sofp_port"
        return 0
      fi
      sleep 0.1
    done
    kill -KILL "$_sofp_pid" 2>/dev/null || true
    wait "$_sofp_pid" 2>/dev/null || true
    echo "server did not come up on port $_sofp_port (attempt $_sofp_try)" >&2
  done
  return 1
}
