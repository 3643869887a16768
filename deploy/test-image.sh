#!/usr/bin/env bash
# Builds the top-level Dockerfile for real and runs the image, without a Docker engine:
#   1. installs podman, debootstrap and curl from Debian when missing;
#   2. makes the base image docker.io/library/debian:bookworm-slim from
#      `debootstrap --variant=minbase bookworm` (the tarball is cached in
#      /var/cache/attnd-ci and reused; podman's own copy is reused when present);
#   3. `podman build --pull=never --isolation=chroot` of the Dockerfile;
#   4. `podman create` + `podman export` of the image into a directory, which must hold
#      no test libraries (Criterion, libcurl: files, dpkg packages, or in attnd's ldd);
#   5. starts the image's ENTRYPOINT there with `chroot`, as the image's USER, with the
#      image's ENV (plus ATTND_HOST=127.0.0.1 and a free ATTND_PORT, as `docker run -e`
#      would), the model copied to the image's ATTND_MODEL path (/models/model.gguf);
#   6. waits for /ready, runs the image's HEALTHCHECK command in the image, streams a
#      completion with `curl -N` over loopback and checks its token lines and final done
#      line; SIGTERM, and the server must exit 0.
# Idempotent; run as root from anywhere: `bash deploy/test-image.sh`.
# Environment: ATTND_SHARED (default ../shared beside the checkout), ATTND_CI_CACHE
# (default /var/cache/attnd-ci), ATTND_TEST_IMAGE (default localhost/attnd:test),
# ATTND_DEBIAN_MIRROR (default: the host's Debian mirror, else http://deb.debian.org/debian),
# ATTND_REBUILD_BASE=1 to make the base image anew, ATTND_PODMAN_VFS=1 to use podman's
# vfs storage driver (what the script falls back to when overlay does not work).
set -euo pipefail

t0=$SECONDS
log() { printf '[test-image %4ds] %s\n' $((SECONDS - t0)) "$*"; }
die() { printf '[test-image %4ds] FAIL: %s\n' $((SECONDS - t0)) "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (podman build, debootstrap, chroot)"

# Paths given relative to where the script was started from stay so.
shared=${ATTND_SHARED:-}
[ -n "$shared" ] && shared=$(realpath -m -- "$shared")
cd "$(dirname "$0")/.."
repo=$(pwd)
[ -f Dockerfile ] || die "no Dockerfile in $repo"
[ -n "$shared" ] || shared=$(realpath -m -- "$repo/../shared")
model_src=$shared/models/aidreams260K.gguf
[ -f "$model_src" ] || die "model not found: $model_src (set ATTND_SHARED)"

cache_dir=${ATTND_CI_CACHE:-/var/cache/attnd-ci}
base_tar=$cache_dir/bookworm-minbase.tar
base_image=docker.io/library/debian:bookworm-slim
image=${ATTND_TEST_IMAGE:-localhost/attnd:test}
work_parent=${TMPDIR:-/var/tmp}

# ---- cleanup ------------------------------------------------------------------------
work=""
server_pid=""
cid=""
cleanup() {
  local rc=$?
  set +e
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  [ -n "$cid" ] && "${podman[@]}" rm -f "$cid" >/dev/null 2>&1
  # The server's mounts (proc, sys, dev) lived in its own mount namespace and are gone
  # with it; --one-file-system guards against anything left mounted all the same.
  [ -n "$work" ] && rm -rf --one-file-system "$work"
  if [ "$rc" -eq 0 ]; then
    log "PASS in $((SECONDS - t0)) s"
  else
    printf '[test-image %4ds] FAILED (exit %d) after %d s\n' $((SECONDS - t0)) "$rc" $((SECONDS - t0)) >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. tools -------------------------------------------------------------------------
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v curl >/dev/null || missing+=(curl)
command -v unshare >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || apt-get install -y "${missing[@]}" || die "apt-get install ${missing[*]} failed"
fi
log "tools: $(podman --version), debootstrap $(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null)"

# podman as root with overlay storage where the kernel allows it, else vfs in a store of
# its own (a store's driver cannot change once it holds images). No container is ever
# started, so no OCI runtime, cgroups or networking are needed.
podman=(podman --cgroup-manager=cgroupfs --events-backend=file)
if [ "${ATTND_PODMAN_VFS:-0}" = 1 ] || ! "${podman[@]}" info >/dev/null 2>&1; then
  log "using podman's vfs storage driver in /var/lib/containers/storage-vfs"
  podman+=(--storage-driver=vfs --root=/var/lib/containers/storage-vfs)
  "${podman[@]}" info >/dev/null 2>&1 || { "${podman[@]}" info || true; die "podman does not work here"; }
fi
export BUILDAH_ISOLATION=chroot

# ---- 2. base image --------------------------------------------------------------------
host_mirror() {  # first Debian archive URI of the host's apt sources
  local f line u
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    [ -r "$f" ] || continue
    while read -r line; do
      for u in $line; do
        case "$u" in http://*/debian|https://*/debian|http://*/debian/|https://*/debian/) echo "${u%/}"; return 0 ;; esac
      done
    done < <(grep -E '^(URIs:|deb )' "$f")
  done
  return 1
}
mirror=${ATTND_DEBIAN_MIRROR:-$(host_mirror || echo http://deb.debian.org/debian)}

make_base_tar() {
  local dir
  mkdir -p "$cache_dir"
  dir=$(mktemp -d "$cache_dir/rootfs.XXXXXX")
  log "debootstrap --variant=minbase bookworm from $mirror (about a minute)"
  if ! debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$cache_dir/debootstrap.log" 2>&1; then
    tail -n 30 "$cache_dir/debootstrap.log" >&2
    rm -rf --one-file-system "$dir"
    die "debootstrap failed (log: $cache_dir/debootstrap.log)"
  fi
  # Make it look like the official slim image: deb822 sources with updates and
  # security, no docs/man pages/locales (now or from later installs), no apt lists.
  rm -f "$dir/etc/apt/sources.list" "$dir/etc/resolv.conf" "$dir/etc/hostname"
  cat >"$dir/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat >"$dir/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  echo 'Acquire::Languages "none";' >"$dir/etc/apt/apt.conf.d/docker-no-languages"
  find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$dir"/usr/share/{groff,info,linda,lintian/overrides,locale,man}/*
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb \
         "$dir"/var/log/* "$dir"/tmp/* "$dir"/var/tmp/*
  tar --numeric-owner -C "$dir" -cf "$base_tar.tmp" .
  mv "$base_tar.tmp" "$base_tar"
  rm -rf --one-file-system "$dir"
  log "base tarball cached: $base_tar ($(du -h "$base_tar" | cut -f1))"
}

import_base() {
  local out
  out=$("${podman[@]}" import --change 'CMD ["bash"]' - "$base_image" <"$base_tar" 2>&1) \
    || { printf '%s\n' "$out" >&2; return 1; }
}

if [ "${ATTND_REBUILD_BASE:-0}" = 1 ]; then
  rm -f "$base_tar"
  "${podman[@]}" rmi -f "$base_image" >/dev/null 2>&1 || true
fi
if "${podman[@]}" image exists "$base_image"; then
  log "base image $base_image present in podman's store"
else
  if [ -s "$base_tar" ]; then
    log "base image from cached $base_tar"
  else
    make_base_tar
  fi
  if ! import_base; then
    log "import of $base_tar failed; making the tarball anew"
    rm -f "$base_tar"
    make_base_tar
    import_base || die "podman import failed"
  fi
  log "imported $base_image"
fi

# ---- 3. build -------------------------------------------------------------------------
mkdir -p "$work_parent"
work=$(mktemp -d "$work_parent/attnd-image.XXXXXX")
build_log=$work/build.log
build() {  # build ARGS...: podman build, its steps shown, the full log on failure
  local rc
  set +e
  # --format docker: the OCI format has no HEALTHCHECK and podman would drop it.
  "${podman[@]}" build --pull=never --isolation=chroot --format docker -f Dockerfile "$@" . 2>&1 \
    | tee "$build_log" | grep --line-buffered -E '^\[[0-9]+/[0-9]+\] STEP|Using cache'
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ]; then
    tail -n 60 "$build_log" >&2
    die "podman build $* failed (exit $rc)"
  fi
}
tb=$SECONDS
# The build stage gets a tag of its own so that the prune below keeps its layers (the
# apt-get layer above all) for the next run's cache, and drops only what earlier runs of
# this Dockerfile left untagged; the second build takes that stage from the cache.
log "podman build --target build -t $image-build"
build --target build -t "$image-build"
log "podman build -t $image"
build -t "$image"
"${podman[@]}" image prune -f --filter label=attnd.stage >/dev/null 2>&1 || true
log "built $image in $((SECONDS - tb)) s, size $("${podman[@]}" image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"

# ---- 4. what the image says -----------------------------------------------------------
inspect() { "${podman[@]}" image inspect --format "$1" "$image"; }
mapfile -t entrypoint < <(inspect '{{range .Config.Entrypoint}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t cmd < <(inspect '{{range .Config.Cmd}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t img_env < <(inspect '{{range .Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t healthcheck < <(inspect '{{if .HealthCheck}}{{range .HealthCheck.Test}}{{println .}}{{end}}{{end}}' | sed '/^$/d')
user=$(inspect '{{.Config.User}}')
workdir=$(inspect '{{.Config.WorkingDir}}')
ports=$(inspect '{{range $p, $v := .Config.ExposedPorts}}{{$p}} {{end}}')
volumes=$(inspect '{{range $p, $v := .Config.Volumes}}{{$p}} {{end}}')

[ "${entrypoint[*]}" = "/usr/local/bin/attnd serve" ] || die "ENTRYPOINT is '${entrypoint[*]}'"
for want in ATTND_HOST=0.0.0.0 ATTND_PORT=8080 ATTND_MODEL=/models/model.gguf; do
  printf '%s\n' "${img_env[@]}" | grep -qxF "$want" || die "image ENV lacks $want"
done
case " $ports " in *" 8080/tcp "*) ;; *) die "image does not EXPOSE 8080 (exposes: $ports)" ;; esac
case " $volumes " in *" /models "*) ;; *) die "image has no /models volume (volumes: $volumes)" ;; esac
[ ${#healthcheck[@]} -ge 2 ] || die "image has no HEALTHCHECK"
[ -n "$user" ] || die "image has no USER: it would run as root"
log "image: ENTRYPOINT [${entrypoint[*]}] USER $user EXPOSE $ports VOLUME $volumes"

# ---- 5. export the image into a directory ---------------------------------------------
root=$work/rootfs
mkdir -p "$root"
# Only a filesystem to export: no healthcheck timer for podman to set up.
cid=$("${podman[@]}" create --no-healthcheck "$image")
"${podman[@]}" export "$cid" | tar --numeric-owner -C "$root" -xf -
"${podman[@]}" rm "$cid" >/dev/null
cid=""
log "exported to $root ($(du -sh "$root" | cut -f1))"

# The build stage has no test libraries (ATTND_BUILD_TESTS=OFF) and the runtime stage
# must not gain them either, not even as another package's dependency: no Criterion or
# libcurl files, no such dpkg packages, and the binary does not load them.
test_libs=$(find "$root/usr/lib" "$root/usr/local" "$root/lib" \( -name 'libcriterion*' -o -name 'libcurl*' \) \
              -printf '%p ' 2>/dev/null || true)
[ -z "$test_libs" ] || die "the image holds test libraries: ${test_libs//$root/}"
test_pkgs=$(awk '/^Package: /{p=$2} /^Status: .* installed$/ && p ~ /^(libcriterion|libcurl|curl$)/ {print p}' \
              "$root/var/lib/dpkg/status" | tr '\n' ' ')
[ -z "$test_pkgs" ] || die "the image has test packages installed: $test_pkgs"
needed=$(chroot "$root" /usr/bin/ldd /usr/local/bin/attnd) || die "ldd of the image's attnd failed"
! grep -Eiq 'curl|criterion' <<<"$needed" || die "the image's attnd loads test libraries: $needed"
log "no test libraries in the image (Criterion, libcurl, curl)"

# USER as the runtime resolves it: uid[:gid], names looked up in the image's files.
uspec_user=${user%%:*}
uspec_group=""
[ "$uspec_user" != "$user" ] && uspec_group=${user#*:}
if [[ "$uspec_user" =~ ^[0-9]+$ ]]; then
  uid=$uspec_user
  gid=$(awk -F: -v u="$uid" '$3 == u { print $4; exit }' "$root/etc/passwd")
else
  uid=$(awk -F: -v u="$uspec_user" '$1 == u { print $3; exit }' "$root/etc/passwd")
  gid=$(awk -F: -v u="$uspec_user" '$1 == u { print $4; exit }' "$root/etc/passwd")
fi
if [ -n "$uspec_group" ]; then
  if [[ "$uspec_group" =~ ^[0-9]+$ ]]; then gid=$uspec_group
  else gid=$(awk -F: -v g="$uspec_group" '$1 == g { print $3; exit }' "$root/etc/group"); fi
fi
[ -n "$uid" ] || die "USER $user is not in the image's /etc/passwd"
gid=${gid:-$uid}
[ "$uid" -ne 0 ] || die "USER $user is root"
log "runs as uid $uid gid $gid"

# The model, where the image's ATTND_MODEL says, readable by that user (a volume mount).
model_path=$(printf '%s\n' "${img_env[@]}" | sed -n 's/^ATTND_MODEL=//p' | tail -n 1)
mkdir -p "$root$(dirname "$model_path")"
cp "$model_src" "$root$model_path"
chmod 0644 "$root$model_path"

# ---- 6. run it ------------------------------------------------------------------------
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
port=""
for _ in $(seq 1 100); do
  p=$((20000 + RANDOM % 40000))
  if ! port_in_use "$p"; then port=$p; break; fi
done
[ -n "$port" ] || die "no free loopback port found"

# `docker run -e ATTND_HOST=127.0.0.1 -e ATTND_PORT=$port`: loopback only, a free port.
# HOME as a runtime sets it: the user's home in the image's /etc/passwd, else /.
. scripts/free-port.sh
home=$(awk -F: -v u="$uid" '$3 == u { print $6; exit }' "$root/etc/passwd")
server_log=$work/server.log
# chroot starts in /; another WORKDIR needs a shell to cd there first.
cd_workdir=()
[ -n "$workdir" ] && [ "$workdir" != / ] && cd_workdir=(/bin/sh -c 'cd "$0" && exec "$@"' "$workdir")
in_image() {  # in_image COMMAND...: runs a command of the image like the runtime would
  chroot --userspec="$uid:$gid" --groups="$gid" "$root" /usr/bin/env -i "${run_env[@]}" \
    "${cd_workdir[@]}" "$@"
}
show_log() { echo "---- server log ----" >&2; cat "$server_log" >&2; echo "--------------------" >&2; }
# A mount namespace of its own gives the chroot /proc, /sys and /dev (as a container has)
# and takes them away when the server exits. The image's file system is mounted
# read-only there, as deploy/k8s/deployment.yaml runs it (readOnlyRootFilesystem).
# unshare, bash, chroot and env all exec, so $! is the server's own pid.
export root uid gid
ready=0
for attempt in 1 2 3 4 5; do
  free_port port || die "no free loopback port found"
  run_env=("HOME=${home:-/}" "${img_env[@]}" ATTND_HOST=127.0.0.1 "ATTND_PORT=$port")
  log "starting [${entrypoint[*]} ${cmd[*]}] in the image on 127.0.0.1:$port"
  ts=$SECONDS
  unshare --mount --propagation private -- bash -c '
    set -e
    mkdir -p "$root/proc" "$root/sys" "$root/dev"
    mount --bind "$root" "$root"
    mount -o remount,bind,ro "$root"
    mount -t proc proc "$root/proc"
    mount -t sysfs -o ro sysfs "$root/sys"
    mount --rbind /dev "$root/dev"
    exec chroot --userspec="$uid:$gid" --groups="$gid" "$root" /usr/bin/env -i "$@"
  ' run-image "${run_env[@]}" "${cd_workdir[@]}" \
    "${entrypoint[@]}" "${cmd[@]}" >"$server_log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 300); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      wait "$server_pid" && rc=0 || rc=$?
      server_pid=""
      # Someone took the port between the probe and the bind: try another one.
      if grep -q 'Address already in use' "$server_log" && [ "$attempt" -lt 5 ]; then
        log "port $port was taken before the server bound it (attempt $attempt); another port"
        continue 2
      fi
      show_log
      die "server exited (status $rc) before /ready"
    fi
    if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/ready" 2>/dev/null; then ready=1; break; fi
    sleep 0.2
  done
  break
done
[ "$ready" = 1 ] || { show_log; die "/ready did not answer 200 within 60 s"; }
log "ready after $((SECONDS - ts)) s"

# The server really is the image's binary, as the image's user.
exe=$(readlink "/proc/$server_pid/exe" || true)
[ "$(stat -L -c %i "/proc/$server_pid/exe")" = "$(stat -c %i "$root/usr/local/bin/attnd")" ] \
  || die "pid $server_pid runs $exe, not the image's /usr/local/bin/attnd"
[ "$(stat -c %u "/proc/$server_pid")" = "$uid" ] || die "server does not run as uid $uid"
root_opts=$(awk '$5 == "/" { print $6; exit }' "/proc/$server_pid/mountinfo")
case ",$root_opts," in *,ro,*) ;; *) die "the server's / is not read-only ($root_opts)" ;; esac

# The image's HEALTHCHECK, run in the image as the runtime would.
case "${healthcheck[0]}" in
  CMD-SHELL) hc=(/bin/sh -c "${healthcheck[1]}") ;;
  CMD) hc=("${healthcheck[@]:1}") ;;
  *) die "unknown HEALTHCHECK type ${healthcheck[0]}" ;;
esac
in_image "${hc[@]}" || die "the image's HEALTHCHECK failed against the running server"
log "HEALTHCHECK passes"

# A streamed completion over loopback.
out=$work/stream.ndjson
curl -sS -N --fail-with-body --max-time 120 "http://127.0.0.1:$port/generate" \
  -H 'Content-Type: application/json' \
  -d '{"prompt": "Echoes of", "max_tokens": 40, "temperature": 0, "stream": true}' >"$out" \
  || { cat "$out" >&2; show_log; die "POST /generate failed"; }
n_tok=$(grep -cE '^\{ *"token": *[0-9]+ *, *"text": *"' "$out" || true)
last=$(tail -n 1 "$out")
if [ "$n_tok" -lt 1 ] || ! grep -qE '"done": *true' <<<"$last" || ! grep -q '"finish_reason"' <<<"$last"; then
  echo "---- stream ----" >&2; cat "$out" >&2
  show_log
  die "stream lacks token lines ($n_tok) or a final done line"
fi
[ "$(grep -c '"done"' "$out")" = 1 ] || die "more than one done line"
log "streamed $n_tok token lines; first: $(head -n 1 "$out")"
log "last: $last"

# SIGTERM: drain and exit 0.
log "SIGTERM"
kill -TERM "$server_pid"
rc=""
for _ in $(seq 1 200); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.2
done
if kill -0 "$server_pid" 2>/dev/null; then show_log; die "server still running 40 s after SIGTERM"; fi
wait "$server_pid" && rc=0 || rc=$?
server_pid=""
[ "$rc" = 0 ] || { show_log; die "server exited with status $rc after SIGTERM"; }
log "server exited 0 after SIGTERM"
echo "---- server log ----"; cat "$server_log"; echo "--------------------"
