#!/usr/bin/env bash
# `make bench-media`: ruche-media-node and Janus (VideoRoom) forwarding the same synthetic
# load, side by side, on loopback. Installs Debian's janus package if it is missing, builds
# the benchmark (and with it ruche-media-node, optimised), then runs it inside a network
# namespace of its own so nothing leaves the machine and both SFUs see the same loopback:
#
#   lo up (127.0.0.1: ruche-media-node, Janus's API and ruche's signaling), and a veth pair
#   whose end v0 carries 127.0.0.2. libnice (Janus's ICE) gathers no candidate on the loopback
#   interface itself, so Janus gathers on v0 (nat.ice_enforce_list = "v0") and offers
#   127.0.0.2; it also pins its sockets to v0 (IP_UNICAST_IF), from where the kernel refuses
#   to send to 127.0.0.1 (EINVAL) but delivers to v0's own 127.0.0.2. So the load generator's
#   WebRTC sockets bind 127.0.0.2 too (BENCH_CLIENT_IP), for both SFUs alike.
#
# The load shape and the rest are environment variables: see media-node/benches/forward.rs.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
cargo=${CARGO:-cargo}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
[ -x "${JANUS_BIN:-/usr/bin/janus}" ] || missing+=(janus)
command -v ip >/dev/null || missing+=(iproute2)
command -v taskset >/dev/null || missing+=(util-linux)
command -v unshare >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench-media: installing ${missing[*]} (Debian packages)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Build outside the namespace (it has no network, and cargo may need the registry).
"$cargo" bench -p ruche-media-node --bench forward --locked --no-run

# Network namespace as above; a PID namespace (with its own /proc) too, so that whatever
# happens to the benchmark, neither SFU outlives it. Root makes them plainly; anyone else gets
# them inside a user namespace.
ns=(unshare --net --pid --fork --mount-proc --kill-child)
[ "$(id -u)" -eq 0 ] || ns+=(--map-root-user)

export CARGO_BIN="$cargo"
export BENCH_CLIENT_IP=${BENCH_CLIENT_IP:-127.0.0.2}
exec "${ns[@]}" bash -euo pipefail -c '
    ip link set lo up
    ip link add v0 type veth peer name v1
    ip link set v1 up
    ip addr add 127.0.0.2/32 dev v0
    ip link set v0 up
    # This shell stays PID 1 of the namespace: when it exits, the kernel kills whatever is
    # left in it (an SFU of an interrupted run). It ends the benchmark on INT or TERM.
    "$CARGO_BIN" bench --offline --locked -p ruche-media-node --bench forward &
    bench=$!
    trap "kill -TERM $bench 2>/dev/null; exit 130" INT TERM
    status=0
    wait "$bench" || status=$?
    exit "$status"
'
