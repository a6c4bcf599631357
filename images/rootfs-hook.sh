#!/usr/bin/env bash
# mmdebstrap extract hook for the images' base root filesystem (scripts/images.sh runs
# `mmdebstrap --variant=extract ... --extract-hook=images/rootfs-hook.sh`); $1 is the
# root. In the extract variant no maintainer script runs (there is no shell in the images to
# run one), so this hook does on the host what dpkg and the postinsts would have done:
#   - unpacks the data-only packages (RUCHE_DATA_PACKAGES: base-files, ca-certificates)
#     without their dependencies, which only their maintainer scripts use (awk, openssl,
#     debconf);
#   - writes the CA bundle update-ca-certificates would have written;
#   - records every unpacked package in /var/lib/dpkg/status (and its file list), so that
#     scanners and `make sbom` see what the image holds;
#   - adds the non-root user 65532 the images run as.
# (/dev is left out of the tarball by mmdebstrap's --skip=output/dev: the runtime provides it.)
set -euo pipefail
root=$1
archives=$root/var/cache/apt/archives

# The data-only packages: downloaded with apt (the chroot's sources and keys), no dependencies.
read -r -a data_packages <<<"${RUCHE_DATA_PACKAGES:-}"
if [ ${#data_packages[@]} -gt 0 ]; then
  (cd "$archives" && APT_CONFIG=$MMDEBSTRAP_APT_CONFIG apt-get download --quiet=2 -o APT::Sandbox::User=root "${data_packages[@]}")
  for pkg in "${data_packages[@]}"; do
    dpkg-deb --extract "$(echo "$archives/${pkg}"_*.deb)" "$root"
  done
fi

# ca-certificates' postinst: every Mozilla root, one PEM bundle (the path rustls-native-certs
# and OpenSSL look at first).
if [ -d "$root/usr/share/ca-certificates/mozilla" ]; then
  mkdir -p "$root/etc/ssl/certs"
  bundle=$root/etc/ssl/certs/ca-certificates.crt
  : >"$bundle"
  while IFS= read -r crt; do
    awk 1 "$crt" >>"$bundle"  # each file ends with a newline
  done < <(find "$root/usr/share/ca-certificates/mozilla" -name '*.crt' | LC_ALL=C sort)
  chmod 0644 "$bundle"
fi

# dpkg's database: each package as installed, with its file list and checksums.
status=$root/var/lib/dpkg/status
info=$root/var/lib/dpkg/info
mkdir -p "$info"
: >"$status"
ctrl=$(mktemp -d)
trap 'rm -rf "$ctrl"' EXIT
for deb in "$archives"/*.deb; do
  pkg=$(dpkg-deb --field "$deb" Package)
  name=$pkg
  if [ "$(dpkg-deb --field "$deb" Multi-Arch)" = same ]; then
    name=$pkg:$(dpkg-deb --field "$deb" Architecture)
  fi
  dpkg-deb --field "$deb" | awk 'NR == 1 { print; print "Status: install ok installed"; next } { print }' >>"$status"
  echo >>"$status"
  dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -e 's|^\./|/|' -e 's|/$||' -e 's|^$|/.|' >"$info/$name.list"
  rm -rf "${ctrl:?}"/*
  dpkg-deb --control "$deb" "$ctrl"
  if [ -f "$ctrl/md5sums" ]; then cp "$ctrl/md5sums" "$info/$name.md5sums"; fi
done

# The user the images run as (the distroless convention: 65532, "nonroot"), and root.
printf '%s\n' 'root:x:0:0:root:/root:/usr/sbin/nologin' \
  'nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin' >"$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"
install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
install -d -m 1777 "$root/tmp"

# Host files mmdebstrap copied in for apt's use: the runtime provides its own.
rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
