#!/usr/bin/env python3
"""CycloneDX SBOM of a container image that scripts/images.sh built:

    image_sbom.py --out DIR ARCHIVE...   writes DIR/<archive name>.image.cdx.json for each

The image's root filesystem is unpacked from the OCI archive (scripts/oci_image.py); its
components are the Debian packages /var/lib/dpkg/status lists (images/rootfs-hook.sh writes it,
one entry per unpacked package) and the Ruche binaries in /usr/local/bin, each with its SHA-256
and a reference to its cargo-cyclonedx SBOM (DIR/<binary>_bin.cdx.json, `make sbom`), which
lists the binary's Rust dependencies.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import sys
import tempfile
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oci_image  # noqa: E402 (beside this script)

COPYRIGHT_FORMAT = "https://www.debian.org/doc/packaging-manuals/copyright-format/"


def dpkg_status(root):
    """The paragraphs of /var/lib/dpkg/status, installed packages only."""
    path = os.path.join(root, "var/lib/dpkg/status")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    packages = []
    for block in text.split("\n\n"):
        fields, last = {}, None
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and last:
                fields[last] += "\n" + line
            elif ":" in line:
                last, _, value = line.partition(":")
                fields[last] = value.strip()
        if fields.get("Package") and fields.get("Status", "").endswith(" installed"):
            packages.append(fields)
    return packages


def debian_licenses(root, package):
    """The licence names of a machine-readable debian/copyright, if the package ships one."""
    path = os.path.join(root, "usr/share/doc", package, "copyright")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    if not text.startswith("Format:") or COPYRIGHT_FORMAT.split("://")[1] not in text.splitlines()[0]:
        return []
    names = []
    for match in re.finditer(r"^License:[ \t]*(\S[^\n]*)", text, re.MULTILINE):
        name = match.group(1).strip()
        if name not in names:
            names.append(name)
    return names


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def deb_component(root, fields, distro):
    name, version = fields["Package"], fields["Version"]
    arch = fields.get("Architecture", "all")
    purl = f"pkg:deb/debian/{name}@{urllib.parse.quote(version, safe='')}?arch={arch}&distro={distro}"
    component = {
        "type": "library",
        "bom-ref": purl,
        "name": name,
        "version": version,
        "purl": purl,
        "description": fields.get("Description", "").split("\n")[0],
        "supplier": {"name": fields.get("Maintainer", "Debian")},
        "properties": [{"name": "deb:architecture", "value": arch}],
    }
    if fields.get("Source"):
        component["properties"].append({"name": "deb:source", "value": fields["Source"]})
    licenses = debian_licenses(root, name)
    if licenses:
        component["licenses"] = [{"license": {"name": n}} for n in licenses]
    return component


def binary_component(root, path, version, sbom_dir):
    name = os.path.basename(path)
    component = {
        "type": "application",
        "bom-ref": f"binary:{path}",
        "name": name,
        "version": version,
        "hashes": [{"alg": "SHA-256", "content": sha256(os.path.join(root, path.lstrip("/")))}],
        "properties": [{"name": "path", "value": path}],
    }
    cargo_bom = os.path.join(sbom_dir, f"{name}_bin.cdx.json")
    if os.path.exists(cargo_bom):
        with open(cargo_bom, encoding="utf-8") as f:
            bom = json.load(f)
        # The file's name, relative to this SBOM (both are in DIR): cargo-cyclonedx gives the
        # SBOMs of one crate's binaries the same serial number, so a BOM-Link would not tell
        # ruche-operator's from kubectl-ruche's.
        reference = {
            "type": "bom",
            "url": os.path.basename(cargo_bom),
            "comment": f"the Rust crates {name} is built from (cargo-cyclonedx, serial number {bom.get('serialNumber', 'none')})",
            "hashes": [{"alg": "SHA-256", "content": sha256(cargo_bom)}],
        }
        component["externalReferences"] = [reference]
    return component


def image_sbom(archive_path, sbom_dir):
    archive = oci_image.Archive(archive_path)
    manifest_descriptor, _ = archive.manifest()
    config = archive.config()
    labels = config.get("config", {}).get("Labels") or {}
    ref = (manifest_descriptor.get("annotations") or {}).get("org.opencontainers.image.ref.name", "")
    repository, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
    digest = manifest_descriptor["digest"]
    with tempfile.TemporaryDirectory(prefix="ruche-image-sbom.") as root:
        for _, data in archive.layers():
            oci_image.apply_layer(data, root)
        packages = dpkg_status(root)
        with open(os.path.join(root, "etc/debian_version"), encoding="utf-8") as f:
            debian_version = f.read().strip()
        distro = f"debian-{debian_version.split('.')[0]}"
        components = [
            {
                "type": "operating-system",
                "bom-ref": f"os:debian@{debian_version}",
                "name": "debian",
                "version": debian_version,
                "description": labels.get("org.opencontainers.image.base.name", ""),
            }
        ]
        components += [deb_component(root, p, distro) for p in sorted(packages, key=lambda p: p["Package"])]
        bin_dir = os.path.join(root, "usr/local/bin")
        for name in sorted(os.listdir(bin_dir)):
            components.append(binary_component(root, f"/usr/local/bin/{name}", labels.get("org.opencontainers.image.version", ""), sbom_dir))
    name = repository.rsplit("/", 1)[-1] or os.path.basename(archive_path)
    image_ref = f"image:{ref or archive_path}"
    purl = f"pkg:oci/{name}@{urllib.parse.quote(digest, safe='')}?" + urllib.parse.urlencode(
        {"repository_url": repository, "tag": tag} if repository else {}
    )
    created = config.get("created") or datetime.datetime.now(datetime.timezone.utc).isoformat()
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, purl)}",
        "version": 1,
        "metadata": {
            "timestamp": created,
            "tools": {"components": [{"type": "application", "name": "scripts/image_sbom.py", "group": "ruche"}]},
            "component": {
                "type": "container",
                "bom-ref": image_ref,
                "name": repository or name,
                "version": tag or labels.get("org.opencontainers.image.version", ""),
                "purl": purl.rstrip("?"),
                "hashes": [{"alg": "SHA-256", "content": digest.split(":", 1)[1]}],
                "licenses": [{"expression": labels["org.opencontainers.image.licenses"]}]
                if labels.get("org.opencontainers.image.licenses")
                else [],
                "properties": [{"name": k, "value": v} for k, v in sorted(labels.items())],
            },
        },
        "components": components,
        "dependencies": [{"ref": image_ref, "dependsOn": [c["bom-ref"] for c in components]}],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the SBOM directory (out/sbom)")
    parser.add_argument("archives", nargs="+")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for archive in args.archives:
        bom = image_sbom(archive, args.out)
        base = os.path.basename(archive).removesuffix(".oci.tar")
        path = os.path.join(args.out, f"{base}.image.cdx.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(bom, f, indent=2)
            f.write("\n")
        debs = [c for c in bom["components"] if c["type"] == "library"]
        print(f"{path}: {bom['metadata']['component']['name']}:{bom['metadata']['component']['version']}, "
              f"{len(debs)} Debian packages ({', '.join(c['name'] + ' ' + c['version'] for c in debs)}), "
              f"{sum(c['type'] == 'application' for c in bom['components'])} binaries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
