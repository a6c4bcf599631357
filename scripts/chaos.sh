#!/usr/bin/env bash
# chaos.sh: `make chaos`. Starts a control plane of its own (../shared/k8s/up --dir, through
# scripts/audited-k8s.sh, so that its API server audits the operators' requests), runs the
# chaos suite (e2e/tests/chaos.rs) on it within CHAOS_TIMEOUT, checks that no request of the
# operators was refused (least-privilege --used-only), and stops the control plane whatever
# happened. The suite's output is also in out/chaos.log.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
OUT=${OUT:-out}
K8S=$(cd "${RUCHE_K8S_HOME:-../shared/k8s}" 2>/dev/null && pwd) || {
  echo "make chaos: no control plane scripts (../shared/k8s, or set RUCHE_K8S_HOME)" >&2; exit 1; }
mkdir -p "$OUT"
# The binaries the pod runner and the suite start, and the suite itself.
$CARGO build --locked -p ruche-operator -p ruche-media-node --bins
$CARGO test --locked -p ruche-e2e --test chaos --no-run

parent=$(mktemp -d "${TMPDIR:-/tmp}/ruche-chaos.XXXXXX")
dir=$parent/k8s
trap '"$K8S/down" --dir "$dir" >/dev/null 2>&1 || true; rm -rf "$parent"' EXIT
scripts/audited-k8s.sh "$dir" >/dev/null
status=0
# A participant's join at a dead node's address panics in its own task (and is retried): no
# backtrace for each.
RUST_BACKTRACE=0 RUCHE_CHAOS_K8S_DIR=$dir RUCHE_E2E_KUBECONFIG=$dir/kubeconfig \
  timeout --kill-after=30s "${CHAOS_TIMEOUT:-45m}" \
  $CARGO test --locked -p ruche-e2e --test chaos -- --nocapture 2>&1 | tee "$OUT/chaos.log" || status=$?
if [ "$status" != 0 ]; then
  echo "make chaos: FAILED (status $status; see $OUT/chaos.log)" >&2
  exit 1
fi
if grep -q 'SKIPPED' "$OUT/chaos.log"; then
  echo "make chaos: the suite skipped (see $OUT/chaos.log)" >&2
  exit 1
fi
cp "$dir/audit.log" "$OUT/chaos-audit.log"
$CARGO run --quiet --locked -p ruche-e2e --bin least-privilege -- --used-only "$OUT/chaos-audit.log" | tee "$OUT/chaos-least-privilege.log"
echo "make chaos: every fault passed; the table is in $OUT/chaos.log"
