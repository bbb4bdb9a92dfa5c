"""Helpers shared by the ``test_save_*`` suites: read archives the way a user would (tarfile, json,
hashlib), independently of ocitar, and build the stores the suites save from.

This module holds no tests; it is named ``test_save_*`` only so that it belongs with the save suites."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ocitar
from _helpers import blob_name, root, sha, store_blob
from ocitar.testing import BuiltImage, BuiltStore, Image, Layer, Platform

#: The host's platform as ocitar sees it (an OS alone takes the host's architecture).
HOST = ocitar.normalize_platform("linux")

BASE = Layer(size=2048, seed="base")
#: Three platforms, two with attestations; amd64 and arm64 share BASE. Two names.
APP = Image(
    names=("app:1.0", "app:latest"),
    platforms=(
        Platform("linux/amd64", layers=(BASE, Layer(seed="app-amd64")), attestation=True),
        Platform("linux/arm64/v8", layers=(BASE, Layer(seed="app-arm64")), attestation=True),
        Platform("linux/arm/v7"),
    ),
)
#: Docker media types, a nested index, and a registry with a port.
TOOLS = Image(
    names=("registry.example.com:5000/team/tools:0.3",),
    platforms=("linux/amd64", "linux/s390x"),
    media_types="docker",
    shape="nested",
)
#: Windows with os.version beside linux.
WIN = Image(names=("win:ltsc2022",), platforms=("windows(10.0.20348.2113)/amd64", "linux/amd64"))
#: An unnamed single-manifest image.
SOLO = Image(names=(), platforms=(Platform("linux/arm64/v8", layers=(Layer(seed="solo"),)),), shape="manifest")


def standard_store(factory: Any, name: str = "store") -> BuiltStore:
    """APP, TOOLS, WIN and SOLO in one store."""
    return factory(APP, TOOLS, WIN, SOLO, name=name)


def open_tar(data: bytes) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:")


def member_names(data: bytes) -> list[str]:
    """Entry names exactly as stored in the headers (directories keep their trailing slash)."""
    return [h["name"] for h in raw_headers(data)]


def read_member(data: bytes, name: str) -> bytes:
    with open_tar(data) as t:
        f = t.extractfile(name)
        assert f is not None, f"{name} is not a regular file"
        return f.read()


def index_json(data: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(read_member(data, "index.json"))
    return doc


def manifest_json(data: bytes) -> list[dict[str, Any]]:
    doc: list[dict[str, Any]] = json.loads(read_member(data, "manifest.json"))
    return doc


def blob_digests(data: bytes) -> set[str]:
    """Digests of the blob entries of an archive."""
    out = set()
    for n in member_names(data):
        parts = n.split("/")
        if len(parts) == 3 and parts[0] == "blobs" and parts[2]:
            out.add(f"{parts[1]}:{parts[2]}")
    return out


def archive_blob(data: bytes, digest: str) -> bytes:
    return read_member(data, blob_name(digest))


def raw_headers(data: bytes) -> list[dict[str, Any]]:
    """Parse the tar headers by hand (ustar plus GNU long names), in order, with their raw fields."""
    out: list[dict[str, Any]] = []
    pos = 0
    long_name: str | None = None
    while pos + 512 <= len(data):
        block = data[pos : pos + 512]
        if block == bytes(512):
            break

        def field(a: int, b: int, block: bytes = block) -> bytes:
            return block[a:b].split(b"\0", 1)[0]

        size = int(field(124, 136).strip() or b"0", 8)
        typeflag = block[156:157]
        body = data[pos + 512 : pos + 512 + size]
        pos += 512 + (size + 511) // 512 * 512
        if typeflag == b"L":
            long_name = body.split(b"\0", 1)[0].decode()
            continue
        name = field(0, 100).decode()
        prefix = field(345, 500).decode()
        if prefix:
            name = prefix + "/" + name
        out.append(
            {
                "name": long_name or name,
                "mode": int(field(100, 108).strip() or b"0", 8),
                "uid": int(field(108, 116).strip() or b"0", 8),
                "gid": int(field(116, 124).strip() or b"0", 8),
                "size": size,
                "mtime": int(field(136, 148).strip() or b"0", 8),
                "type": typeflag,
                "magic": block[257:263],
                "uname": field(265, 297),
                "gname": field(297, 329),
            }
        )
        long_name = None
    return out


def manifest_blobs(store: BuiltStore | Path, manifest_digest: str) -> set[str]:
    """The manifest and the config and layers it names."""
    doc = json.loads(store_blob(store, manifest_digest))
    out = {manifest_digest}
    if doc.get("config"):
        out.add(doc["config"]["digest"])
    out.update(layer["digest"] for layer in doc.get("layers") or [])
    return out


def expected_blobs(store: BuiltStore, image: BuiltImage, specs: Iterable[str], with_indexes: bool = True) -> set[str]:
    """The blobs a keep-shaped save of ``image`` with platforms ``specs`` (as the builder spells them) holds:
    the image's index blobs, each platform's manifest, config and layers, and its attestation's."""
    out: set[str] = set(image.index_digests) if with_indexes else set()
    for spec in specs:
        out |= manifest_blobs(store, image.manifests[spec])
        if spec in image.attestations:
            out |= manifest_blobs(store, image.attestations[spec])
    return out


def store_index(store: BuiltStore | Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((root(store) / "index.json").read_text())
    return doc


def write_store_index(store: BuiltStore | Path, doc: dict[str, Any]) -> None:
    (root(store) / "index.json").write_text(json.dumps(doc, indent=2))


def put_blob(store: BuiltStore | Path, data: bytes) -> str:
    d = sha(data)
    p = root(store) / blob_name(d)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return d


def check_archive(data: bytes, store: BuiltStore | Path | None = None) -> None:
    """What holds for every archive save writes: each blob entry hashes to its name (and equals the store's
    copy when it is a store blob), each blob appears once, and manifest.json names only entries present."""
    names = member_names(data)
    assert len(names) == len(set(names)), f"duplicate entries: {names}"
    for d in blob_digests(data):
        content = archive_blob(data, d)
        alg, hexd = d.split(":", 1)
        assert hashlib.new(alg, content).hexdigest() == hexd, f"{d} does not hash to its name"
        if store is not None:
            p = root(store) / blob_name(d)
            if p.exists():
                assert p.read_bytes() == content, f"{d} differs from the store's blob"
    present = set(names)
    for entry in manifest_json(data):
        assert entry["Config"] in present, f"manifest.json names {entry['Config']}, not in the archive"
        for layer in entry["Layers"]:
            assert layer in present, f"manifest.json names {layer}, not in the archive"
    for desc in index_json(data)["manifests"]:
        assert blob_name(desc["digest"]) in present, f"index.json names {desc['digest']}, not in the archive"
        assert len(archive_blob(data, desc["digest"])) == desc["size"]


def listing(path: Path) -> list[str]:
    """Every file below ``path`` (hidden ones too), relative, sorted."""
    out = []
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            out.append(os.path.relpath(os.path.join(dirpath, f), path))
    return sorted(out)


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Corrupt a file in place without changing its size."""
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    os.chmod(path, 0o644)
    path.write_bytes(data[: len(data) - 1])
