#!/usr/bin/env bash
# Installs what the browser test needs (Debian's Chromium, playwright-core from the lockfile),
# builds ruche-media-node (debug, in the workspace's target directory) and runs the test:
# two headless Chromium pages meet on the node and must see, hear and chat with each other.
# Idempotent: what is already there is kept, so a second run only builds and tests.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
CARGO="${CARGO:-cargo}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export CHROMIUM

say() { printf 'browser-test: %s\n' "$*"; }
die() { printf 'browser-test: %s\n' "$*" >&2; exit 1; }
now() { date +%s; }
started="$(now)"

# Debian packages, installed (as root, or through sudo) when missing.
apt_install() { "$root/scripts/install-debian-packages.sh" --always "$@"; }

# 1. Node.js 20 or later (playwright-core needs it).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  say "node or npm is missing: installing nodejs and npm"
  apt_install nodejs npm
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "Node.js $(node --version) is too old: the test needs 20 or later"
say "node $(node --version)"

# 2. Chromium, and what the network steps use (iproute2's tc, iptables) when run as root.
if [ "$(id -u)" = 0 ]; then
  for tool in tc:iproute2 iptables:iptables; do
    command -v "${tool%%:*}" >/dev/null || apt_install "${tool##*:}"
  done
fi
if [ -x "$CHROMIUM" ]; then
  say "chromium already installed: $CHROMIUM"
else
  [ "$CHROMIUM" = /usr/bin/chromium ] || die "CHROMIUM=$CHROMIUM is not an executable"
  say "installing Debian's chromium"
  apt_install chromium
  [ -x "$CHROMIUM" ] || die "apt-get installed chromium but $CHROMIUM is not there"
fi
# The launcher script prints a harmless shell warning on some machines: keep it out of the log.
say "$("$CHROMIUM" --version 2>/dev/null)"

# 3. playwright-core, exactly as the lockfile pins it. A stamp with the lockfile's hash
#    skips npm when node_modules already matches.
cd "$here"
stamp=node_modules/.ruche-lock-sha256
if [ -f package-lock.json ]; then
  want="$(sha256sum package-lock.json | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d node_modules/playwright-core ]; then
    say "node_modules matches package-lock.json"
  else
    say "npm ci"
    npm ci --no-audit --no-fund
    echo "$want" > "$stamp"
  fi
else
  say "no package-lock.json: npm install"
  npm install --no-audit --no-fund
fi

# 4. The node, in the debug profile the workspace's other tests share.
# The same build as `cargo test --workspace --all-targets` (one feature resolution), so after
# `make unit` this compiles nothing: building the package alone would build its dependency
# tree a second time with other features.
say "cargo test --workspace --all-targets --no-run (builds ruche-media-node)"
build_started="$(now)"
(cd "$root" && "$CARGO" test --workspace --all-targets --locked --no-run)
say "built in $(( $(now) - build_started )) s"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
export RUCHE_MEDIA_NODE="${RUCHE_MEDIA_NODE:-$target_dir/debug/ruche-media-node}"
[ -x "$RUCHE_MEDIA_NODE" ] || die "no binary at $RUCHE_MEDIA_NODE after the build"

# 5. The test.
say "node --test meeting.test.mjs (node: $RUCHE_MEDIA_NODE)"
test_started="$(now)"
status=0
# As root, in a network namespace of its own (loopback only): the test shapes a participant's
# link with tc and blocks UDP with iptables there, touching nothing outside. Otherwise those
# two steps are skipped, and say so.
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && command -v tc >/dev/null && command -v iptables >/dev/null; then
  say "in a network namespace of its own (tc and iptables steps on)"
  RUCHE_BROWSER_NETNS=1 unshare --net -- bash -c 'ip link set lo up && exec node --test meeting.test.mjs' || status=$?
else
  say "not root, or tc/iptables/unshare missing: the shaped-link and blocked-UDP steps are skipped"
  node --test meeting.test.mjs || status=$?
fi
if [ "$status" = 0 ]; then
  say "passed: test $(( $(now) - test_started )) s, all $(( $(now) - started )) s"
else
  say "FAILED (exit $status) after $(( $(now) - started )) s: the pages' consoles and the node's log are above"
fi
exit "$status"
