#!/usr/bin/env bash
# Offline checks of the deployment files in deploy/:
#   1. yamllint on deploy/k8s/*.yaml and deploy/docker-compose.yml
#   2. structure (python3 + PyYAML): the Deployment has liveness -> /health, readiness
#      -> /ready, resource requests and limits, terminationGracePeriodSeconds above
#      the drain timeout, the models volume read-only at /models, ATTND_HOST=0.0.0.0 and
#      a port matching containerPort, only ATTND_* keys that README.md's Configuration
#      table knows; the Service, HPA (autoscaling/v2, CPU), PVC and PDB point at it;
#      docker-compose.yml has attnd-1, attnd-2 and nginx wired as described
#      (and `docker-compose config` / `docker compose config` when installed)
#   3. with build/release/cli/attnd present: the ATTND_* values of the Deployment and
#      of docker-compose.yml are accepted by attnd's own config parser
#   4. attnd.service: `systemd-analyze verify` (when systemd is installed) must print
#      nothing, and the stop timeout must exceed the drain timeout
#   5. nginx.conf: `nginx -t` (when nginx is installed) on a copy with the upstreams
#      pointed at 127.0.0.1, plus the streaming directives
#
# Why not `kubectl apply --dry-run=client`: even client-side dry runs ask an API server
# for discovery (kubectl falls back to http://localhost:8080), so they fail offline.
#
# Usage (from anywhere): bash deploy/check-manifests.sh    Installs yamllint and
# python3-yaml with apt-get when missing. Prints PASS/FAIL lines, exits 1 on a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

need=()
command -v yamllint >/dev/null || need+=(yamllint)
PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3 || true)
if [ -z "$PY" ] || ! "$PY" -c 'import yaml' 2>/dev/null; then
  need+=(python3 python3-yaml)
  PY=/usr/bin/python3
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "check-manifests: installing ${need[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "FAIL: need root or sudo to install ${need[*]}"; exit 1; }
    sudo_cmd=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
    { "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null &&
      "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${need[@]}" >/dev/null; } ||
    { echo "FAIL: cannot install ${need[*]}"; exit 1; }
fi

fails=0 passes=0
pass() { echo "PASS: $*"; passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

YAMLS=(deploy/k8s/*.yaml deploy/docker-compose.yml)

# ------------------------------------------------------------------ 1. yamllint
YL_CONF='{extends: default, rules: {line-length: {max: 110}, document-start: disable,
  comments: {min-spaces-from-content: 1}, truthy: {check-keys: true}}}'
if out=$(yamllint -f parsable -d "$YL_CONF" "${YAMLS[@]}" 2>&1); then
  pass "yamllint: ${YAMLS[*]}"
else
  fail "yamllint:"
  echo "$out" | sed 's/^/  /'
fi

# ------------------------------------------------------------------ 2. structure
# Writes the ATTND_* settings it found to $TMPD/*.env for step 3.
TMPD=$(mktemp -d)
trap 'rm -rf "$TMPD"' EXIT
py_rc=0
"$PY" - "$ROOT" "$TMPD" >"$TMPD/structure.out" 2>&1 <<'PYEOF' || py_rc=$?
import glob, os, re, sys
import yaml

root, tmpd = sys.argv[1], sys.argv[2]
failed = 0

def check(cond, msg):
    global failed
    print(("PASS: " if cond else "FAIL: ") + msg)
    if not cond:
        failed += 1
    return cond

def dig(obj, *path, default=None):
    for p in path:
        if isinstance(obj, dict) and p in obj:
            obj = obj[p]
        elif isinstance(obj, list) and isinstance(p, int) and -len(obj) <= p < len(obj):
            obj = obj[p]
        else:
            return default
    return obj

# Keys attnd knows: the Configuration table of README.md.
readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()
known = set(re.findall(r"`(ATTND_[A-Z0-9_]+)`", readme))
check(len(known) >= 15, f"README.md lists the ATTND_* variables ({len(known)} found)")

def load_all(path):
    try:
        return list(yaml.safe_load_all(open(path, encoding="utf-8")))
    except (OSError, yaml.YAMLError) as e:
        print(f"FAIL: {os.path.relpath(path, root)}: {' '.join(str(e).split())}")
        sys.exit(1)

docs = {}
for path in sorted(glob.glob(os.path.join(root, "deploy/k8s/*.yaml"))):
    for d in load_all(path):
        if d is None:
            continue
        name = os.path.relpath(path, root)
        ok = check(all(k in d for k in ("apiVersion", "kind", "metadata")) and
                   dig(d, "metadata", "name"), f"{name}: {d.get('kind')} has apiVersion, kind, metadata.name")
        if ok:
            docs.setdefault(d["kind"], []).append((name, d))

def one(kind):
    got = docs.get(kind, [])
    check(len(got) == 1, f"exactly one {kind} in deploy/k8s ({len(got)} found)")
    return got[0][1] if got else {}

def to_seconds_duration(v):
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(v))
    return (int(m.group(1) or 0) * 60 + int(m.group(2) or 0)) if m and v else None

dep = one("Deployment")
svc = one("Service")
hpa = one("HorizontalPodAutoscaler")

# ---- Deployment
check(dep.get("apiVersion") == "apps/v1", "Deployment apiVersion apps/v1")
labels = dig(dep, "spec", "template", "metadata", "labels", default={}) or {}
sel = dig(dep, "spec", "selector", "matchLabels", default={}) or {}
check(sel and all(labels.get(k) == v for k, v in sel.items()),
      "Deployment selector matches the pod template labels")
pod = dig(dep, "spec", "template", "spec", default={}) or {}
cs = pod.get("containers") or []
check(len(cs) >= 1, "Deployment has a container")
c = next((x for x in cs if x.get("image", "").startswith("attnd")), cs[0] if cs else {})
check(c.get("image") == "attnd:latest", f"container image attnd:latest ({c.get('image')})")
check(not c.get("command"), "no command override (the image's ENTRYPOINT is `attnd serve`)")
ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
env = {e["name"]: e for e in c.get("env") or [] if "name" in e}
envv = {k: str(e["value"]) for k, e in env.items() if "value" in e}
unknown = sorted(k for k in env if k not in known)
check(not unknown, f"every env variable is a known ATTND_* key (unknown: {unknown or 'none'})")
check(envv.get("ATTND_HOST") == "0.0.0.0", "ATTND_HOST=0.0.0.0")
port = int(envv.get("ATTND_PORT", "8080"))
check(port in ports.values(), f"containerPort {port} declared (ports: {ports})")
check(envv.get("ATTND_MODEL", "").startswith("/models/"), "ATTND_MODEL is a file under /models")

def probe_ok(pr, path):
    g = (pr or {}).get("httpGet") or {}
    p = g.get("port")
    return g.get("path") == path and (p == port or (p in ports and ports[p] == port))

check(probe_ok(c.get("livenessProbe"), "/health"), "livenessProbe: httpGet /health on the server port")
check(probe_ok(c.get("readinessProbe"), "/ready"), "readinessProbe: httpGet /ready on the server port")
if c.get("startupProbe"):
    check(probe_ok(c.get("startupProbe"), "/health"), "startupProbe: httpGet /health")
res = c.get("resources") or {}
check(all(dig(res, a, b) for a in ("requests", "limits") for b in ("cpu", "memory")),
      "resources: cpu and memory requests and limits")
drain = int(envv.get("ATTND_DRAIN_TIMEOUT_S", "30"))
prestop = dig(c, "lifecycle", "preStop", "exec", "command", default=[]) or []
pre_s = int(prestop[-1]) if prestop and "sleep" in prestop[0] and str(prestop[-1]).isdigit() else 0
grace = pod.get("terminationGracePeriodSeconds")
check(isinstance(grace, int) and grace > drain + pre_s,
      f"terminationGracePeriodSeconds {grace} > preStop {pre_s} s + drain timeout {drain} s")
mounts = [m for m in c.get("volumeMounts") or [] if m.get("mountPath") == "/models"]
check(len(mounts) == 1 and mounts[0].get("readOnly") is True, "a volume is mounted read-only at /models")
vols = {v.get("name"): v for v in pod.get("volumes") or []}
vol = vols.get(mounts[0].get("name")) if mounts else None
check(vol is not None, "the /models mount names a volume of the pod")
claim = dig(vol or {}, "persistentVolumeClaim", "claimName")
if claim:
    pvcs = [d for _, d in docs.get("PersistentVolumeClaim", [])]
    check(any(dig(p, "metadata", "name") == claim for p in pvcs),
          f"PersistentVolumeClaim {claim} is defined in deploy/k8s")
with open(os.path.join(tmpd, "k8s.env"), "w") as f:
    for k, v in envv.items():
        f.write(f"{k}={v}\n")

# ---- Service
check(svc.get("apiVersion") == "v1", "Service apiVersion v1")
ssel = dig(svc, "spec", "selector", default={}) or {}
check(ssel and all(labels.get(k) == v for k, v in ssel.items()), "Service selector matches the pods")
sports = dig(svc, "spec", "ports", default=[]) or []
check(any(p.get("targetPort") == port or ports.get(p.get("targetPort")) == port for p in sports),
      "Service targets the server port")

# ---- HPA
check(hpa.get("apiVersion") == "autoscaling/v2", "HPA apiVersion autoscaling/v2")
ref = dig(hpa, "spec", "scaleTargetRef", default={}) or {}
check(ref.get("kind") == "Deployment" and ref.get("name") == dig(dep, "metadata", "name"),
      "HPA scales the Deployment")
mn, mx = dig(hpa, "spec", "minReplicas", default=1), dig(hpa, "spec", "maxReplicas")
check(isinstance(mx, int) and 1 <= mn <= mx, f"HPA replicas {mn}..{mx}")
cpu = [m for m in dig(hpa, "spec", "metrics", default=[]) or []
       if m.get("type") == "Resource" and dig(m, "resource", "name") == "cpu"]
check(len(cpu) == 1 and dig(cpu[0], "resource", "target", "averageUtilization"),
      "HPA scales on CPU utilization")

# ---- PDB (optional)
for name, pdb in docs.get("PodDisruptionBudget", []):
    psel = dig(pdb, "spec", "selector", "matchLabels", default={}) or {}
    check(psel and all(labels.get(k) == v for k, v in psel.items()), f"{name}: selector matches the pods")

# ---- docker-compose.yml
cpath = os.path.join(root, "deploy/docker-compose.yml")
comp = (load_all(cpath) or [None])[0] or {}
services = comp.get("services") or {}
reps = sorted(k for k in services if re.fullmatch(r"attnd-\d+", k))
check(reps == ["attnd-1", "attnd-2"] and "nginx" in services,
      f"compose services attnd-1, attnd-2, nginx ({sorted(services)})")
nginx_conf = open(os.path.join(root, "deploy/nginx.conf"), encoding="utf-8").read()
upstreams = re.findall(r"^\s*server\s+(attnd-\d+):(\d+)", nginx_conf, re.M)
check(sorted(u[0] for u in upstreams) == reps,
      f"nginx.conf upstream lists the compose replicas ({upstreams})")

def interp(v):  # ${VAR:-default} / ${VAR} -> the environment or the default
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: os.environ.get(m.group(1), m.group(2) or ""), str(v))

for r in reps:
    s = services[r]
    check(s.get("image") == "attnd:latest" and dig(s, "build", "context") == "..",
          f"{r}: image attnd:latest built from the repository root")
    check("./models:/models:ro" in (s.get("volumes") or []), f"{r}: ./models:/models:ro")
    e = s.get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) for x in e)
    e = {k: interp(v) for k, v in e.items()}
    bad = sorted(k for k in e if k not in known)
    check(not bad, f"{r}: only known ATTND_* variables (unknown: {bad or 'none'})")
    check(e.get("ATTND_HOST") == "0.0.0.0" and e.get("ATTND_PORT", "8080") == "8080"
          and e.get("ATTND_MODEL", "").startswith("/models/"),
          f"{r}: ATTND_HOST=0.0.0.0, port 8080, model under /models")
    g = to_seconds_duration(s.get("stop_grace_period"))
    d = int(e.get("ATTND_DRAIN_TIMEOUT_S", "30"))
    check(g is not None and g > d and (s.get("stop_signal") in (None, "SIGTERM")),
          f"{r}: SIGTERM and stop_grace_period {s.get('stop_grace_period')} > drain timeout {d} s")
    with open(os.path.join(tmpd, f"compose-{r}.env"), "w") as f:
        for k, v in e.items():
            if v != "":
                f.write(f"{k}={v}\n")
ng = services.get("nginx") or {}
check(str(ng.get("image", "")).startswith("nginx:") and
      any(str(v).startswith("./nginx.conf:/etc/nginx/nginx.conf") for v in ng.get("volumes") or []),
      "compose nginx: official image with ./nginx.conf mounted as /etc/nginx/nginx.conf")

sys.exit(1 if failed else 0)
PYEOF
cat "$TMPD/structure.out"
n_pass=$(grep -c '^PASS: ' "$TMPD/structure.out" || true)
n_fail=$(grep -c '^FAIL: ' "$TMPD/structure.out" || true)
passes=$((passes + n_pass))
fails=$((fails + n_fail))
if [ $py_rc -ne 0 ] && [ "$n_fail" -eq 0 ]; then
  fail "structure check stopped (exit $py_rc)"
fi

# compose's own schema check, when a compose client is installed (not installed here on
# purpose: Debian's docker-compose pulls in a lot; the structure checks above suffice)
if command -v docker-compose >/dev/null; then
  if out=$(docker-compose -f deploy/docker-compose.yml config -q 2>&1); then
    pass "docker-compose config accepts deploy/docker-compose.yml"
  else
    fail "docker-compose config: $out"
  fi
elif docker compose version >/dev/null 2>&1; then
  if out=$(docker compose -f deploy/docker-compose.yml config -q 2>&1); then
    pass "docker compose config accepts deploy/docker-compose.yml"
  else
    fail "docker compose config: $out"
  fi
fi

# ------------------------------------------------------------------ 3. values
BIN=$ROOT/build/release/cli/attnd
if [ -x "$BIN" ]; then
  for f in "$TMPD"/*.env; do
    [ -e "$f" ] || continue
    # attnd parses the whole configuration before opening the model: with a model path
    # that does not exist, a valid configuration fails on the model (exit 1), a bad
    # value on its key (exit 2). Flags pin host and port to loopback, just in case.
    args=()
    while IFS= read -r line; do
      case "$line" in ATTND_MODEL=*) continue ;; esac
      args+=("$line")
    done <"$f"
    rc=0
    out=$(env -i PATH="$PATH" "${args[@]}" ATTND_MODEL=/nonexistent/check-manifests.gguf \
      "$BIN" serve --host 127.0.0.1 --port 1 2>&1) || rc=$?
    if [ $rc -eq 1 ] && printf '%s' "$out" | grep -q 'nonexistent/check-manifests.gguf'; then
      pass "attnd accepts the ATTND_* values of $(basename "$f" .env)"
    else
      fail "attnd rejects the ATTND_* values of $(basename "$f" .env) (exit $rc): $out"
    fi
  done
else
  echo "SKIP: $BIN not built: ATTND_* values not checked by attnd's parser"
fi

# ------------------------------------------------------------------ 4. systemd unit
UNIT=deploy/attnd.service
drain=30 # the unit leaves ATTND_DRAIN_TIMEOUT_S to /etc/attnd/attnd.env: the default
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\?$/\1/p' $UNIT)
if [ -n "$stop" ] && [ "$stop" -gt "$drain" ]; then
  pass "$UNIT: TimeoutStopSec $stop > drain timeout $drain s"
else
  fail "$UNIT: TimeoutStopSec (${stop:-missing}) must exceed the drain timeout ($drain s)"
fi
for kv in 'ExecStart=/usr/local/bin/attnd serve' 'EnvironmentFile=-/etc/attnd/attnd.env' 'User=attnd' \
  'KillSignal=SIGTERM' 'Restart=on-failure' 'NoNewPrivileges=yes' 'ProtectSystem=strict'; do
  grep -qxF "$kv" $UNIT || fail "$UNIT: missing '$kv'"
done
if command -v systemd-analyze >/dev/null; then
  # verify wants ExecStart to exist: check a copy that runs /bin/true instead
  sed 's|^ExecStart=/usr/local/bin/attnd|ExecStart=/bin/true|' $UNIT >"$TMPD/attnd.service"
  out=$(systemd-analyze verify "$TMPD/attnd.service" 2>&1) || true
  if [ -z "$out" ]; then
    pass "$UNIT: systemd-analyze verify"
  else
    fail "$UNIT: systemd-analyze verify:"
    echo "$out" | sed 's/^/  /'
  fi
else
  echo "SKIP: systemd-analyze not installed: $UNIT only checked by grep"
fi

# ------------------------------------------------------------------ 5. nginx.conf
CONF=deploy/nginx.conf
for d in 'proxy_buffering off;' 'proxy_http_version 1.1;' 'proxy_set_header Connection "";' \
  'proxy_read_timeout' 'keepalive ' 'max_fails=' 'fail_timeout=' \
  'proxy_next_upstream error timeout http_503 non_idempotent;'; do
  grep -v '^ *#' $CONF | grep -qF "$d" || fail "$CONF: missing '$d'"
done
NGINX=$(command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
if [ -n "$NGINX" ]; then
  mkdir -p "$TMPD/ng"
  sed -e 's/server attnd-\([0-9]*\):8080 /server 127.0.0.\1:8080 /' \
    -e "s#/tmp/nginx-#$TMPD/ng/tmp-#" -e "s#access_log /dev/stdout#access_log $TMPD/ng/access.log#" \
    $CONF >"$TMPD/ng/nginx.conf"
  if out=$("$NGINX" -t -q -p "$TMPD/ng" -e "$TMPD/ng/error.log" -c "$TMPD/ng/nginx.conf" \
    -g "pid $TMPD/ng/nginx.pid;" 2>&1); then
    pass "$CONF: nginx -t"
  else
    fail "$CONF: nginx -t: $out $(cat "$TMPD/ng/error.log" 2>/dev/null)"
  fi
else
  echo "SKIP: nginx not installed: $CONF not checked with nginx -t (deploy/test-lb.sh runs it)"
fi

echo "check-manifests: $passes passed, $fails failed"
if [ $fails -eq 0 ]; then
  echo "check-manifests: PASS"
  exit 0
fi
echo "check-manifests: FAIL ($fails)"
exit 1
