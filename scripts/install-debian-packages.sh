#!/usr/bin/env bash
# Installs Debian packages the checks need (for example `prometheus`, for promtool) when the
# commands they bring are missing: install-debian-packages.sh COMMAND PACKAGE [COMMAND PACKAGE...]
# With --always, the arguments are packages, installed whatever is on PATH.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "install-debian-packages: need root to run: $* (or install it yourself)" >&2
    exit 1
  fi
}
missing=()
if [ "${1:-}" = --always ]; then
  shift
  missing=("$@")
else
  while [ $# -ge 2 ]; do
    command -v "$1" >/dev/null || missing+=("$2")
    shift 2
  done
fi
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-debian-packages: installing ${missing[*]}"
if ! as_root apt-get install -y --no-install-recommends "${missing[@]}"; then
  as_root apt-get update
  as_root apt-get install -y --no-install-recommends "${missing[@]}"
fi
