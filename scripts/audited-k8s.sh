#!/usr/bin/env bash
# audited-k8s.sh DIR: the loopback control plane of ../shared/k8s in DIR, its API server
# writing an audit log of every ServiceAccount's requests (e2e/audit-policy.yaml) to
# DIR/audit.log, which the end-to-end suite's least-privilege check reads.
#
# `up` starts the control plane (unpacking its binaries the first time); this then restarts it
# with the same binaries, data and certificates, through a kube-apiserver wrapper that adds the
# audit flags and the OwnerReferencesPermissionEnforcement admission (on by default in
# OpenShift: it checks that whoever sets blockOwnerDeletion may update the owner's finalizers). Running it again on DIR keeps it running. `../shared/k8s/down --dir DIR` stops it.
set -euo pipefail
DIR=${1:?usage: audited-k8s.sh DIR}
HERE=$(cd "$(dirname "$0")/.." && pwd)
K8S=${RUCHE_K8S_HOME:-$HERE/../shared/k8s}
POLICY=$HERE/e2e/audit-policy.yaml
BIN=$DIR/audited-bin

"$K8S/up" --dir "$DIR" >/dev/null
pid=$(cat "$DIR/kube-apiserver.pid")
if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "--audit-log-path=$DIR/audit.log"; then
  echo "audited-k8s: already auditing to $DIR/audit.log" >&2
else
  mkdir -p "$BIN"
  real() { readlink -f "/proc/$(cat "$DIR/$1.pid")/exe"; }
  ln -sfn "$(real etcd)" "$BIN/etcd"
  ln -sfn "$(real kube-controller-manager)" "$BIN/kube-controller-manager"
  cat > "$BIN/kube-apiserver" <<WRAP
#!/bin/sh
exec "$(real kube-apiserver)" "\$@" --enable-admission-plugins=OwnerReferencesPermissionEnforcement --audit-policy-file="$POLICY" --audit-log-path="$DIR/audit.log" --audit-log-format=json --audit-log-maxbackup=0 --audit-log-mode=blocking
WRAP
  chmod +x "$BIN/kube-apiserver"
  kill -TERM "$pid"
  for _ in $(seq 1 100); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
  RUCHE_K8S_BIN=$BIN "$K8S/up" --dir "$DIR" >/dev/null
  echo "audited-k8s: auditing ServiceAccounts' requests to $DIR/audit.log" >&2
fi
echo "export KUBECONFIG=$DIR/kubeconfig"
echo "export RUCHE_E2E_AUDIT_LOG=$DIR/audit.log"
