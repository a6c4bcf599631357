#!/usr/bin/env python3
"""Reads an OCI image archive (`oci-archive:`, as scripts/images.sh writes them) without a
container runtime.

    oci_image.py config ARCHIVE          the image config (entrypoint, user, labels...) as JSON
    oci_image.py unpack ARCHIVE DEST     its root filesystem into DEST (an empty directory),
                                         layer after layer; prints the config as JSON

Every blob is checked against its sha256 digest on the way. The archive's layout:
oci-layout, index.json -> the image manifest -> its config and layers (tar, optionally gzip or
zstd compressed), applied in order, honouring whiteouts (`.wh.NAME` deletes NAME,
`.wh..wh..opq` empties the directory it is in).
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import tarfile

MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class Archive:
    """An OCI image layout inside a tar archive."""

    def __init__(self, path):
        self.tar = tarfile.open(path)
        layout = json.loads(self._member("oci-layout"))
        if layout.get("imageLayoutVersion") != "1.0.0":
            raise SystemExit(f"{path}: not an OCI image layout: {layout}")
        self.index = json.loads(self._member("index.json"))

    def _member(self, name):
        for candidate in (name, "./" + name):
            try:
                f = self.tar.extractfile(candidate)
            except KeyError:
                continue
            if f is not None:
                return f.read()
        raise SystemExit(f"no {name} in the archive")

    def blob(self, descriptor):
        """A blob's bytes, checked against the descriptor's digest and size."""
        algorithm, _, hexdigest = descriptor["digest"].partition(":")
        if algorithm != "sha256":
            raise SystemExit(f"unsupported digest {descriptor['digest']}")
        data = self._member(f"blobs/sha256/{hexdigest}")
        if hashlib.sha256(data).hexdigest() != hexdigest:
            raise SystemExit(f"blob {descriptor['digest']}: content does not match its digest")
        if "size" in descriptor and len(data) != descriptor["size"]:
            raise SystemExit(f"blob {descriptor['digest']}: {len(data)} bytes, not {descriptor['size']}")
        return data

    def manifest(self):
        """The (only) image manifest, following nested indexes."""
        manifests = self.index.get("manifests", [])
        while True:
            if len(manifests) != 1:
                raise SystemExit(f"expected one image in the archive, found {len(manifests)}")
            descriptor = manifests[0]
            document = json.loads(self.blob(descriptor))
            media_type = descriptor.get("mediaType") or document.get("mediaType")
            if media_type in INDEX_TYPES:
                manifests = document.get("manifests", [])
                continue
            if media_type not in MANIFEST_TYPES:
                raise SystemExit(f"unsupported manifest type {media_type}")
            return descriptor, document

    def config(self):
        _, manifest = self.manifest()
        return json.loads(self.blob(manifest["config"]))

    def layers(self):
        _, manifest = self.manifest()
        for descriptor in manifest["layers"]:
            data = self.blob(descriptor)
            media_type = descriptor.get("mediaType", "")
            if media_type.endswith("+zstd"):
                try:
                    import zstandard  # noqa: PLC0415 (only zstd layers need it)
                except ImportError:
                    raise SystemExit("a zstd layer needs the zstandard module") from None
                data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
            elif media_type.endswith("gzip") or data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            yield descriptor, data


def inside(dest, name, follow_last=False):
    """DEST/name with every symbolic link on the way resolved inside DEST (an absolute link
    target starts at DEST, `..` stops at DEST), as the path would resolve in the container:
    a layer entry can never reach outside DEST."""
    pending = [p for p in name.split("/") if p not in ("", ".")]
    resolved = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        path = os.path.join(dest, *resolved, part)
        if os.path.islink(path) and (pending or follow_last):
            hops += 1
            if hops > 40:
                raise SystemExit(f"layer entry {name!r}: too many symbolic links")
            target = os.readlink(path)
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            continue
        resolved.append(part)
    return os.path.join(dest, *resolved)


def remove(path):
    if os.path.islink(path) or not os.path.isdir(path):
        if os.path.lexists(path):
            os.unlink(path)
    else:
        shutil.rmtree(path)


def apply_layer(data, dest):
    """Unpacks one layer tarball over DEST, as a container runtime's snapshotter would."""
    with tarfile.open(fileobj=io.BytesIO(data)) as layer:
        members = layer.getmembers()
        # Whiteouts first: they delete what lower layers put there, not this layer's files.
        for member in members:
            directory, base = os.path.split(member.name)
            if base == OPAQUE:
                target = inside(dest, directory)
                if os.path.isdir(target) and not os.path.islink(target):
                    for entry in os.listdir(target):
                        remove(os.path.join(target, entry))
            elif base.startswith(WHITEOUT):
                remove(inside(dest, os.path.join(directory, base[len(WHITEOUT):])))
        for member in members:
            base = os.path.basename(member.name)
            if base.startswith(WHITEOUT):
                continue
            target = inside(dest, member.name)
            # A file replaces whatever a lower layer had at its path; a directory over a
            # directory keeps the lower layer's contents.
            if os.path.lexists(target) and not (member.isdir() and os.path.isdir(target) and not os.path.islink(target)):
                remove(target)
            # Extract under the resolved names, so that nothing is written through a link.
            member.name = os.path.relpath(target, dest)
            if member.islnk():
                member.linkname = os.path.relpath(inside(dest, member.linkname), dest)
            layer.extract(member, dest, set_attrs=True, numeric_owner=True, **extract_filter())


def extract_filter():
    # Python 3.12+ warns without a filter; the archive is checked against its digests and the
    # names against leaving the root, and the image's modes (setuid, sticky /tmp) must stay.
    return {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}


def main(argv):
    if len(argv) == 3 and argv[1] == "config":
        print(json.dumps(Archive(argv[2]).config(), indent=2))
        return 0
    if len(argv) == 4 and argv[1] == "unpack":
        archive, dest = Archive(argv[2]), argv[3]
        os.makedirs(dest, exist_ok=True)
        if os.listdir(dest):
            raise SystemExit(f"{dest} is not empty")
        count = 0
        for _, data in archive.layers():
            apply_layer(data, dest)
            count += 1
        # The root itself: the runtime's, not the layers'.
        os.chmod(dest, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        print(f"{argv[2]}: {count} layers unpacked into {dest}", file=sys.stderr)
        print(json.dumps(archive.config(), indent=2))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
