#!/usr/bin/env bash
# Builds the two container images from Debian packages, with neither a registry nor a container
# runtime: mmdebstrap makes a Debian bookworm root filesystem (cached in out/images/), buildah
# adds the release binaries to it (images/*/Containerfile) and writes each image as an OCI
# archive:
#   out/images/ruche-operator.oci.tar    registry.example.gouv.fr/ruche/operator:VERSION
#   out/images/ruche-media-node.oci.tar  registry.example.gouv.fr/ruche/media-node:VERSION
# (the names charts/ruche/values.yaml uses); both share their first layer, the root filesystem. out/images/build-info.json records the commit and
# digests for scripts/image-check.sh. Environment: CARGO, CARGO_TARGET_DIR (as the Makefile),
# OUT (default out), MIRROR (a Debian mirror for mmdebstrap; its default otherwise),
# REFRESH_ROOTFS=1 to make the root filesystem again even when the cached one matches.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
OUT=${OUT:-out}
images=$OUT/images
release=$(realpath -m "${CARGO_TARGET_DIR:-target}")/release
registry=registry.example.gouv.fr/ruche
start=$SECONDS

# The root filesystem. mmdebstrap's extract variant unpacks packages and runs no maintainer
# script, so the images need no shell: apt resolves the dependencies of $include (what the
# binaries link: libc6 and libgcc_s, see `ldd`), and images/rootfs-hook.sh adds $data_packages
# without their dependencies, which only their maintainer scripts need (awk, openssl, debconf).
suite=bookworm
include=libc6,libgcc-s1
data_packages="base-files ca-certificates"
base_name="debian:$suite (mmdebstrap --variant=extract: $include,${data_packages// /,})"

step() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - start)); }

step "tools"
scripts/install-debian-packages.sh mmdebstrap mmdebstrap buildah buildah dpkg-deb dpkg

step "release binaries"
"$CARGO" build --release --locked -p ruche-operator -p ruche-media-node

mkdir -p "$images"
rootfs=$images/rootfs.tar
# The cache key: everything that decides what the root filesystem holds.
key=$({
  echo "$suite ${MIRROR:-} $include $data_packages"
  cat images/rootfs-hook.sh
} | sha256sum | cut -d' ' -f1)
if [ "${REFRESH_ROOTFS:-0}" != 1 ] && [ -f "$rootfs" ] && [ "$(cat "$images/rootfs.key" 2>/dev/null)" = "$key" ]; then
  step "root filesystem: reusing $rootfs (same package list; REFRESH_ROOTFS=1 to make it again)"
else
  step "root filesystem: mmdebstrap $suite, variant extract"
  rm -rf "$rootfs" "$rootfs.partial" "$images/rootfs.key"
  # --skip=output/dev: no device nodes in the image, the runtime provides /dev;
  # chroot/mount: nothing runs inside the root, so nothing is mounted there.
  mirror=()
  if [ -n "${MIRROR:-}" ]; then mirror=("$MIRROR"); fi
  RUCHE_DATA_PACKAGES=$data_packages mmdebstrap --variant=extract --format=tar --include="$include" \
    --skip=output/dev,chroot/mount --extract-hook="$PWD/images/rootfs-hook.sh" \
    "$suite" "$rootfs.partial" "${mirror[@]}"
  mv "$rootfs.partial" "$rootfs"
  echo "$key" >"$images/rootfs.key"
fi
# What the root filesystem holds, from the dpkg status the hook wrote.
tar -xOf "$rootfs" ./var/lib/dpkg/status |
  awk '/^Package:/ { p = $2 } /^Version:/ { v = $2 } /^Architecture:/ { a = $2 } /^$/ { print p, v, a }' \
    >"$images/rootfs.packages"
echo "$rootfs: $(du -h "$rootfs" | cut -f1), packages:"
sed 's/^/  /' "$images/rootfs.packages"

# The crates' version, description, licence and repository, for the labels.
metadata=$("$CARGO" metadata --format-version 1 --no-deps --locked)
field() {
  python3 -c 'import json, sys
pkg = next(p for p in json.load(sys.stdin)["packages"] if p["name"] == sys.argv[1])
print(pkg[sys.argv[2]])' "$1" "$2" <<<"$metadata"
}
revision=$(git rev-parse HEAD)
# Reproducible layers and creation time: both are the commit's time.
epoch=$(git log -1 --format=%ct)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "images: warning: the work tree has uncommitted changes; the images are labelled with HEAD ($revision)" >&2
fi

# buildah's storage, run state and temporary files stay under out/images.
buildah_global=(--root "$PWD/$images/storage" --runroot "$PWD/$images/runroot" --storage-driver vfs)
export TMPDIR=$PWD/$images/tmp
mkdir -p "$TMPDIR"

info_entries=()
# image directory, crate, repository name, binaries
build() {
  local dir=$1 crate=$2 name=$3
  shift 3
  local version tag context archive
  version=$(field "$crate" version)
  tag=$registry/$name:$version
  context=$images/context/$dir
  archive=$images/$crate.oci.tar
  step "image $tag"
  rm -rf "$context"
  mkdir -p "$context"
  ln "$rootfs" "$context/rootfs.tar" 2>/dev/null || cp "$rootfs" "$context/rootfs.tar"
  for bin in "$@"; do cp "$release/$bin" "$context/"; done
  buildah "${buildah_global[@]}" bud --isolation chroot --format oci --pull=false --layers \
    --timestamp "$epoch" --tag "$tag" --file "images/$dir/Containerfile" \
    --build-arg VERSION="$version" \
    --build-arg REVISION="$revision" \
    --build-arg SOURCE="$(field "$crate" repository)" \
    --build-arg LICENSES="$(field "$crate" license)" \
    --build-arg DESCRIPTION="$(field "$crate" description)" \
    --build-arg BASE_NAME="$base_name" \
    "$context"
  rm -f "$archive" "$archive.digest"
  buildah "${buildah_global[@]}" push --quiet --digestfile "$archive.digest" "$tag" "oci-archive:$archive:$tag"
  rm -rf "$context"
  info_entries+=("$(python3 -c 'import json, sys; print(json.dumps(dict(zip(["archive", "tag", "version", "digest"], sys.argv[1:]))))' \
    "$archive" "$tag" "$version" "$(cat "$archive.digest")")")
}
build operator ruche-operator operator ruche-operator kubectl-ruche
build media-node ruche-media-node media-node ruche-media-node
# Earlier builds of the same tags: the archives are the product, not buildah's storage.
buildah "${buildah_global[@]}" rmi --prune >/dev/null || true

python3 -c 'import json, sys
print(json.dumps({"revision": sys.argv[1], "source_date_epoch": int(sys.argv[2]), "images": [json.loads(a) for a in sys.argv[3:]]}, indent=2))' \
  "$revision" "$epoch" "${info_entries[@]}" >"$images/build-info.json"

step "done"
for archive in "$images"/ruche-operator.oci.tar "$images"/ruche-media-node.oci.tar; do
  printf '%s  %s (%s bytes)  image %s  archive sha256:%s\n' "$archive" "$(du -h "$archive" | cut -f1)" \
    "$(stat -c %s "$archive")" "$(cat "$archive.digest")" "$(sha256sum "$archive" | cut -d' ' -f1)"
done
