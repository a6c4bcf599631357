#!/usr/bin/env bash
# Checks the OCI archives scripts/images.sh wrote, without a container runtime: each image's
# root filesystem is unpacked from its layers (scripts/oci_image.py), its config is checked
# (non-root numeric user, OCI labels, the commit and version images.sh recorded, no shell), and
# its binaries run in it under unshare (mount and PID namespaces) and chroot as the image's
# user: `--version` of each, then a real media node on loopback whose /readyz must answer 200,
# stopped with SIGTERM as Kubernetes would. Prints PASS/FAIL lines; exits 1 on any failure.
# Needs root (chroot, mounts). Environment: OUT (default out), CARGO_TARGET_DIR (the host's
# release build of ruche-operator, to compare a simulation with).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-out}
images=$OUT/images
RELEASE=$(realpath -m "${CARGO_TARGET_DIR:-target}")/release
info=$images/build-info.json
failures=0
pass() { echo "PASS  $*"; }
fail() {
  echo "FAIL  $*"
  failures=$((failures + 1))
}
# check DESCRIPTION COMMAND...: PASS or FAIL on the command's status.
check() {
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

[ "$(id -u)" = 0 ] || { echo "image-check: needs root (chroot, mount namespaces)" >&2; exit 1; }
[ -f "$info" ] || { echo "image-check: no $info: run make images first" >&2; exit 1; }
revision=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["revision"])' "$info")

work=$(mktemp -d "${TMPDIR:-/tmp}/ruche-image-check.XXXXXX")
unshare_pid=
node_pid=
extra_env=()
cleanup() {
  # Only the processes this script started, by their ids: the media node is PID 1 of its
  # namespace, and its end ends the namespace.
  if [ -n "$unshare_pid" ] && kill -0 "$unshare_pid" 2>/dev/null; then
    if [ -n "$node_pid" ]; then kill -KILL "$node_pid" 2>/dev/null || true; fi
    kill -KILL "$unshare_pid" 2>/dev/null || true
    wait "$unshare_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# config FIELD: one field of the current image's config ($config), as python prints it.
config_get() {
  python3 -c 'import json, sys
c = json.load(open(sys.argv[1]))
v = c
for k in sys.argv[2].split("."):
    v = (v or {}).get(k) if k != "Labels" else (v or {}).get(k) or {}
print("" if v is None else (json.dumps(v) if isinstance(v, (list, dict)) else v))' "$config" "$1"
}
label() {
  python3 -c 'import json, sys; print((json.load(open(sys.argv[1]))["config"].get("Labels") or {}).get(sys.argv[2], ""))' "$config" "$1"
}

# image_command ROOT COMMAND...: sets run_cmd to a command that runs COMMAND in ROOT as the
# image's user with only the image's environment, in fresh mount and PID namespaces (COMMAND
# is PID 1 there), with its own /proc and the /dev nodes a runtime gives (the image has no
# /dev), on the host's network, plus the variables of extra_env. in_image runs it in the
# foreground.
image_command() {
  local root=$1
  shift
  local -a env_args
  mapfile -t env_args < <(python3 -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["config"].get("Env") or []))' "$config")
  # The inner shell is the host's, and runs before the chroot.
  # shellcheck disable=SC2016
  run_cmd=(unshare --mount --pid --fork --mount-proc="$root/proc" -- sh -c '
    root=$1
    shift
    mkdir -p "$root/dev"
    mount -t tmpfs -o mode=0755,nosuid tmpfs "$root/dev"
    for node in null zero random urandom full; do
      touch "$root/dev/$node"
      mount --bind "/dev/$node" "$root/dev/$node"
    done
    exec "$@"
  ' sh "$root" env -i "${env_args[@]}" "${extra_env[@]}" "$(command -v chroot)" --userspec="$user" "$root" "$@")
}
in_image() {
  image_command "$@"
  "${run_cmd[@]}"
}

for archive in "$images"/ruche-operator.oci.tar "$images"/ruche-media-node.oci.tar; do
  name=$(basename "$archive" .oci.tar)
  echo "== $name ($archive)"
  if [ ! -f "$archive" ]; then
    fail "$name: $archive exists"
    continue
  fi
  root=$work/$name/rootfs
  config=$work/$name/config.json
  mkdir -p "$root"
  if python3 scripts/oci_image.py unpack "$archive" "$root" >"$config"; then
    pass "$name: layers unpacked (digests checked) into a root filesystem"
  else
    fail "$name: unpack"
    continue
  fi
  expected_version=$(python3 -c 'import json, sys
print(next(i["version"] for i in json.load(open(sys.argv[1]))["images"] if i["archive"].endswith("/" + sys.argv[2] + ".oci.tar")))' "$info" "$name")

  user=$(config_get config.User)
  uid=${user%%:*}
  check "$name: runs as a non-root numeric user ($user)" test -n "$uid" -a "$uid" != 0 -a -z "${uid//[0-9]/}"
  source=$(label org.opencontainers.image.source)
  check "$name: label org.opencontainers.image.source ($source)" test -n "$source"
  image_revision=$(label org.opencontainers.image.revision)
  check "$name: label org.opencontainers.image.revision is the built commit ($image_revision)" \
    test "${#image_revision}" = 40 -a -z "${image_revision//[0-9a-f]/}" -a "$image_revision" = "$revision"
  image_version=$(label org.opencontainers.image.version)
  check "$name: label org.opencontainers.image.version ($image_version) is the crate's" test "$image_version" = "$expected_version"
  for l in title licenses description base.name; do
    value=$(label "org.opencontainers.image.$l")
    check "$name: label org.opencontainers.image.$l ($value)" test -n "$value"
  done
  entrypoint=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["config"]["Entrypoint"][0])' "$config")
  check "$name: entrypoint $entrypoint is an executable in the image" test -x "$root$entrypoint" -a -f "$root$entrypoint"
  shells=$(find "$root" \( -name sh -o -name bash -o -name dash -o -name busybox \) -not -type d -printf '/%P\n')
  check "$name: no shell in the image${shells:+ (found: $shells)}" test -z "$shells"
  managers=$(find "$root" \( -name dpkg -o -name apt -o -name apt-get \) -not -type d -printf '/%P\n')
  check "$name: no package manager in the image${managers:+ (found: $managers)}" test -z "$managers"
  certs=$(grep -c 'BEGIN CERTIFICATE' "$root/etc/ssl/certs/ca-certificates.crt" 2>/dev/null || true)
  check "$name: CA bundle /etc/ssl/certs/ca-certificates.crt (${certs:-0} roots)" test "${certs:-0}" -gt 100

  binaries=("$entrypoint")
  if [ "$name" = ruche-operator ]; then binaries+=(/usr/local/bin/kubectl-ruche); fi
  for bin in "${binaries[@]}"; do
    out=$(in_image "$root" "$bin" --version 2>&1) && rc=0 || rc=$?
    check "$name: $bin --version in the image as $user prints $expected_version ($out, exit $rc)" \
      test "$rc" = 0 -a "${out##* }" = "$expected_version"
  done

  if [ "$name" = ruche-operator ]; then
    # The CA bundle is the one the binaries load: with a kubeconfig that names no CA, the
    # client trusts the system's roots, and fails without any ("No CA certificates were
    # loaded from the system") before it tries to connect. Here it must get as far as
    # connecting (to a closed port).
    cat >"$root/run/kubeconfig" <<'EOF_KUBECONFIG'
apiVersion: v1
kind: Config
clusters: [{name: closed, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: nobody, user: {token: none}}]
contexts: [{name: closed, context: {cluster: closed, user: nobody}}]
current-context: closed
EOF_KUBECONFIG
    chmod 0644 "$root/run/kubeconfig"
    extra_env=(KUBECONFIG=/run/kubeconfig)
    out=$(in_image "$root" /usr/local/bin/kubectl-ruche status 2>&1) || true
    extra_env=()
    check "$name: kubectl-ruche loads the image's CA roots (a kubeconfig without CA: \"${out%%(*}...\")" \
      grep -q 'cannot reach the API server' <<<"$out"

    # A real run that needs no cluster: the simulator, whose schedule windows are in
    # Europe/Paris (the time zone database is compiled in; the image has no tzdata). Its
    # report (less the timing and chart path lines) and chart must be the host's.
    in_image "$root" "$entrypoint" simulate ministry-day --chart /tmp/ministry-day.svg >"$work/simulate.image" 2>&1 && rc=0 || rc=$?
    "$RELEASE/ruche-operator" simulate ministry-day --chart "$work/ministry-day.svg" >"$work/simulate.host" 2>&1 || true
    same_report() {
      test "$rc" = 0 &&
        cmp -s <(grep -v '^Decisions:\|^Chart:' "$work/simulate.image") <(grep -v '^Decisions:\|^Chart:' "$work/simulate.host") &&
        cmp -s "$root/tmp/ministry-day.svg" "$work/ministry-day.svg"
    }
    check "$name: simulate ministry-day in the image (exit $rc): same report and chart as on the host ($(grep -m1 'requested' "$work/simulate.image" | tr -s ' ' | sed 's/^ //'))" same_report
  fi

  if [ "$name" = ruche-media-node ]; then
    # A real start, with the configuration the operator gives a media node pod (the token
    # key and admin token as files), on loopback ports nobody uses.
    read -r media_port http_port admin_port < <(python3 -c 'import socket
socks = [socket.socket(socket.AF_INET, t) for t in (socket.SOCK_DGRAM, socket.SOCK_STREAM, socket.SOCK_STREAM)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
    secrets=$root/run/secrets/ruche
    mkdir -p "$secrets"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secrets/token-key"
    admin_token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
    printf '%s\n' "$admin_token" >"$secrets/admin-token"
    chown -R "$user" "$secrets"
    chmod 0400 "$secrets"/*
    extra_env=(RUST_LOG=info NO_COLOR=1)
    image_command "$root" "$entrypoint" --media-bind "127.0.0.1:$media_port" \
      --http-bind "127.0.0.1:$http_port" --admin-bind "127.0.0.1:$admin_port" \
      --token-key-file /run/secrets/ruche/token-key --admin-token-file /run/secrets/ruche/admin-token
    started=$SECONDS
    extra_env=()
    "${run_cmd[@]}" >"$work/media-node.log" 2>&1 &
    unshare_pid=$!
    # The node's host PID: unshare's one child (the inner shell execs into it).
    for _ in $(seq 50); do
      node_pid=$(tr -d ' ' <"/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null || true)
      [ -n "$node_pid" ] && [ "$(cat "/proc/$node_pid/comm" 2>/dev/null)" = ruche-media-nod ] && break
      sleep 0.1
    done
    # /readyz from outside, until 200 or 30 s (or the process is gone).
    ready=$(python3 - "http://127.0.0.1:$admin_port/readyz" "$unshare_pid" <<'PY'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            print(r.status)
            sys.exit(0)
    except urllib.error.HTTPError as e:
        last = e.code
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(0.2)
print("none")
PY
)
    check "$name: started in the image, /readyz on 127.0.0.1:$admin_port answered $ready after $((SECONDS - started)) s" test "$ready" = 200
    http_status() {
      python3 - "$@" <<'PY'
import sys, urllib.request
url = sys.argv[1]
req = urllib.request.Request(url, headers={"Authorization": "Bearer " + sys.argv[2]} if len(sys.argv) > 2 else {})
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except OSError as e:
    print("error:", e)
PY
    }
    admin=http://127.0.0.1:$admin_port
    check "$name: /livez answers 200" test "$(http_status "$admin/livez")" = 200
    check "$name: /v1/status refuses a request without the admin token ($(http_status "$admin/v1/status"))" test "$(http_status "$admin/v1/status")" = 401
    check "$name: /v1/status answers 200 with the admin token read from its file" test "$(http_status "$admin/v1/status" "$admin_token")" = 200
    uid_line=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$node_pid/status" 2>/dev/null || true)
    check "$name: the process runs as uid ${uid%%:*} (Uid: $uid_line)" test "$uid_line" = "$uid $uid $uid $uid"
    # SIGTERM as the kubelet sends it: an empty node drains at once and exits 0.
    stop_start=$SECONDS
    kill -TERM "$node_pid" 2>/dev/null || true
    for _ in $(seq 150); do
      kill -0 "$unshare_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$unshare_pid" 2>/dev/null; then
      fail "$name: exits within 15 s of SIGTERM"
    else
      wait "$unshare_pid" && rc=0 || rc=$?
      stopped() { test "$rc" = 0 && grep -q "media node stopped" "$work/media-node.log"; }
      check "$name: exited $rc $((SECONDS - stop_start)) s after SIGTERM, having drained (\"media node stopped\")" stopped
    fi
    unshare_pid=
    node_pid=
  fi
done

echo
if [ "$failures" -gt 0 ]; then
  echo "image-check: $failures check(s) FAILED"
  if [ -s "$work/media-node.log" ]; then
    echo "the media node's log:"
    sed 's/^/  media-node | /' "$work/media-node.log"
  fi
  exit 1
fi
echo "image-check: every check passed"
