"""Hostile archives (issue 4 §2): every one is refused with a typed :class:`ocitar.OcitarError` whose message
names the culprit entry or digest, within 5 s and bounded memory, leaving the target store byte-identical
(or, when it did not exist, absent) and nothing anywhere else: not beside the archive, not in the working
directory, not in the temporary directory.

Each archive is built in code (``_archives``): crafted tar headers for what ``tarfile`` will not write,
documents bent at one level with every digest above them recomputed, bombs written as multi-member gzip
or hand-made zstd RLE frames without materialising what they expand to. Each is loaded from a path, from
``bytes``, from a non-seekable stream and (uncompressed cases) gzip-compressed, into an existing store and
into a store path that does not exist yet. Unsafe names and types are refused whatever the platform
selection. Every input checked in under ``tests/regressions/`` (found by the fuzzers in ``fuzz/``) loads
or fails with a typed error, never a panic.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import _archives as A
import ocitar
import pytest
from _guards import PanicWatch, assert_no_panic, is_panic, no_panic  # noqa: F401
from ocitar import DigestMismatchError, InvalidArchiveError, OcitarError
from ocitar.testing import Image, build_store, tree_digest

REGRESSIONS = Path(__file__).parent / "regressions"
TIME_LIMIT = 5.0
MEMORY_LIMIT = 256 << 20
G = 1 << 30


@dataclass(frozen=True)
class Hostile:
    """A hostile archive: its bytes, the error it must raise and what the message must name."""

    data: bytes
    error: type[OcitarError]
    #: Text the message must hold; ``ARCHIVE`` stands for the archive's label (its path, ``<bytes>``,
    #: ``<stream>``).
    culprit: tuple[str, ...]


ARCHIVE = "{archive}"
COMPRESSED = ("gzip-", "zstd-", "xz-", "bzip2-")


# --------------------------------------------------------------------------
# the cases
# --------------------------------------------------------------------------

IMG = A.Oci()
ARM_LAYER = A.blob_name(IMG.layers["linux/arm64"])
AMD_LAYER = A.blob_name(IMG.layers["linux/amd64"])


def _add(*members: A.Member) -> bytes:
    return IMG.tar(lambda ms: ms + list(members))


def _replace(name: str, new: A.Member) -> bytes:
    return IMG.tar(lambda ms: [new if m.name == name else m for m in ms])


def _short(digest: str) -> str:
    return digest.split(":", 1)[1]


def _raw_headers(n: int) -> bytes:
    """``n`` empty regular-file entries ``f0``, ``f1``, … as raw ustar headers (tarfile is too slow for
    262,145 of them)."""
    base = bytearray(A.header(A.Member("f", format=tarfile.USTAR_FORMAT)))
    base[0:100] = bytes(100)
    base[148:156] = b" " * 8
    base_sum = sum(base)
    out = bytearray()
    for i in range(n):
        name = b"f%d" % i
        h = bytearray(base)
        h[0 : len(name)] = name
        h[148:156] = b"%06o\0 " % (base_sum + sum(name))
        out += h
    return bytes(out)


def _nested_indexes(depth: int) -> bytes:
    """An image whose index nests ``depth`` indexes around the platform manifests."""
    inner_blobs: dict[str, bytes] = {}

    def wrap(_: str, index: dict) -> dict:
        for _ in range(depth):
            inner = A.canonical(index)
            inner_blobs[A.sha256(inner)] = inner
            index = {
                "schemaVersion": 2,
                "mediaType": A.OCI_INDEX,
                "manifests": [{"mediaType": A.OCI_INDEX, "digest": A.sha256(inner), "size": len(inner)}],
            }
        return index

    img = A.Oci(index=wrap)
    img.blobs.update(inner_blobs)
    return img.tar()


def _pax_raw(key: bytes, value: bytes, kind: bytes = tarfile.XHDTYPE) -> A.Member:
    """A PAX extended header (local, or global with ``kind``) holding one record ``key=value``."""
    return A.Member(raw=A.pax_header(A.pax_record(key.decode(), value), kind))


def _listed_twice(_: str, index: dict) -> dict:
    """The index with its first manifest listed a second time, under another platform."""
    first = index["manifests"][0]
    again = {**first, "platform": {"os": "linux", "architecture": "s390x"}}
    return {**index, "manifests": [first, again, *index["manifests"][1:]]}


def _gz_trailer(at: int) -> bytes:
    """The image gzip-compressed with one byte of its trailer (CRC-32, then length) changed."""
    data = bytearray(gzip.compress(IMG.tar(), mtime=0))
    data[at] ^= 0x55
    return bytes(data)


def _gnu_sparse(real_size: int) -> A.Member:
    """A GNU sparse entry (type ``S``) of ``real_size`` bytes, all but its last 512 a hole: 512 bytes in
    the archive expand to ``real_size``."""
    data = b"s" * 512
    h = bytearray(A.header(A.Member("sparse.bin", data=data, format=tarfile.GNU_FORMAT)))
    h[156:157] = b"S"
    h[386:398] = b"%011o\0" % (real_size - 512)  # sparse[0].offset
    h[398:410] = b"%011o\0" % 512  # sparse[0].numbytes
    h[483:495] = b"%011o\0" % real_size  # realsize
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    assert len(h) == A.BLOCK
    return A.Member(raw=bytes(h) + data)


def _docker(entry: dict, files: list[A.Member] | None = None) -> bytes:
    base = A.read_members(A.docker_archive(A.DOCKER_OK))[:-1]
    return A.docker_archive([{**A.DOCKER_OK[0], **entry}], base + (files or []))


def _cut(data: bytes, name: str, where: str) -> bytes:
    """``data`` (an uncompressed tar) cut inside the header or the data of member ``name``."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for ti in tf.getmembers():
            if ti.name.rstrip("/") == name:
                if where == "header":
                    return data[: ti.offset + 100]
                return data[: ti.offset_data + max(1, ti.size // 2)]
    raise KeyError(name)


def _gz(chunks: list[A.Chunk]) -> bytes:
    return b"".join(A.gzip_members(chunks))


def _zst(chunks: list[A.Chunk]) -> bytes:
    return b"".join(A.zstd_frames(chunks))


def _flip(data: bytes, at: int, n: int = 8) -> bytes:
    b = bytearray(data)
    for i in range(at, min(at + n, len(b))):
        b[i] ^= 0x5A
    return bytes(b)


def _cases() -> dict[str, Callable[[], Hostile]]:
    arc = InvalidArchiveError
    dig = DigestMismatchError
    image = "hostile:1"
    amd_manifest = IMG.manifests["linux/amd64"]
    cases: dict[str, Callable[[], Hostile]] = {
        # ---- entry names
        "name-dotdot-prefix": lambda: Hostile(_add(A.file("../evil", b"x")), arc, ("../evil", "..")),
        "name-dotdot-inside": lambda: Hostile(_add(A.file("blobs/../../evil", b"x")), arc, ("blobs/../../evil",)),
        "name-dotdot-blob": lambda: Hostile(_add(A.file("blobs/sha256/../../x", b"x")), arc, ("blobs/sha256/../../x",)),
        "name-dotdot-last": lambda: Hostile(_add(A.file("a/b/..", b"x")), arc, ("a/b/..",)),
        "name-absolute": lambda: Hostile(_add(A.file("/etc/evil", b"x")), arc, ("/etc/evil", "absolute")),
        "name-absolute-blob": lambda: Hostile(
            IMG.tar(lambda ms: [A.file("/" + m.name, m.data) if m.name == ARM_LAYER else m for m in ms]),
            arc,
            ("/" + ARM_LAYER, "absolute"),
        ),
        "name-long-pax-duplicate": lambda: Hostile(
            _add(A.file("./" * 1_000 + "index.json", b"{}")), arc, ("index.json", "duplicate")
        ),
        "name-long-pax-blob": lambda: Hostile(
            _add(A.file("blobs/sha256/" + "a" * 4_000, b"x")), arc, ("blobs/sha256/aaaa", "not a blob name")
        ),
        "name-pax-over-limit": lambda: Hostile(
            _add(A.file("x" * (2 << 20), b"x")), arc, ("PaxHeader", "over the 65536-byte limit")
        ),
        "name-pax-over-4-kib": lambda: Hostile(
            _add(A.file("x" * 5_000, b"x")), arc, ("xxxxxxxx", "PAX path of 5000 bytes is over the 4096-byte limit")
        ),
        "name-gnu-over-4-kib": lambda: Hostile(
            _add(A.file("x" * 5_000, b"x", format=tarfile.GNU_FORMAT)), arc, ("LongLink", "over the 4097-byte limit")
        ),
        "pax-global-path": lambda: Hostile(
            _add(_pax_raw(b"path", b"index.json", tarfile.XGLTYPE), A.file("x", b"x")), arc, ("PAX global header",)
        ),
        "pax-sparse-records": lambda: Hostile(
            _add(_pax_raw(b"GNU.sparse.major", b"1"), A.file("sparse", b"x")), arc, ("GNU sparse file",)
        ),
        "pax-malformed-record": lambda: Hostile(
            _add(A.Member(raw=_pax_raw(b"path", b"x").raw.replace(b"9 path", b"7 path")), A.file("x", b"x")),  # type: ignore[union-attr]
            arc,
            ("malformed PAX record",),
        ),
        "lone-zero-block": lambda: Hostile(
            A.tar_bytes([A.file("junk", b"x")], end=False) + bytes(A.BLOCK) + IMG.tar(),
            arc,
            ("ends early", "lone zero block"),
        ),
        "layout-version-2": lambda: Hostile(
            _replace("oci-layout", A.file("oci-layout", b'{"imageLayoutVersion":"2.0.0"}')),
            arc,
            ("oci-layout", '"2.0.0" is not a 1.x layout'),
        ),
        "gzip-trailer-bad-crc": lambda: Hostile(_gz_trailer(-8), arc, (ARCHIVE, "trailer does not check", "checksum")),
        "gzip-trailer-bad-length": lambda: Hostile(_gz_trailer(-2), arc, (ARCHIVE, "trailer does not check")),
        "gzip-trailer-cut": lambda: Hostile(
            gzip.compress(IMG.tar(), mtime=0)[:-3], arc, (ARCHIVE, "trailer does not check")
        ),
        "descriptor-says-index-for-a-manifest": lambda: Hostile(
            A.Oci(manifest_desc=lambda p, d: {**d, "mediaType": A.OCI_INDEX} if p == "linux/amd64" else d).tar(),
            arc,
            (amd_manifest, "the descriptor says application/vnd.oci.image.index.v1+json", "is an image manifest"),
        ),
        "manifest-under-two-platforms": lambda: Hostile(
            A.Oci(index=_listed_twice).tar(),
            arc,
            (amd_manifest, "listed under two platforms, linux/amd64 and linux/s390x"),
        ),
        "compressed-twice": lambda: Hostile(
            gzip.compress(gzip.compress(IMG.tar(), mtime=0), mtime=0), arc, ("compressed twice (gzip inside gzip)",)
        ),
        "name-long-gnu-dotdot": lambda: Hostile(
            _add(A.file("x/" * 1000 + "../y", b"x", format=tarfile.GNU_FORMAT)), arc, ("x/x/x", "..")
        ),
        "name-not-utf8-blob": lambda: Hostile(
            _add(A.file(b"blobs/\xff\xfe", b"x", format=tarfile.GNU_FORMAT)), arc, ("blobs/", "UTF-8")
        ),
        "name-not-utf8-unneeded": lambda: Hostile(
            _add(A.file(b"junk\xff", b"x", format=tarfile.GNU_FORMAT)), arc, ("junk", "UTF-8")
        ),
        "name-dot-slash-duplicate": lambda: Hostile(
            _add(A.file("./index.json", b"{}")), arc, ("index.json", "duplicate")
        ),
        "name-trailing-slash-duplicate": lambda: Hostile(
            _add(A.file("oci-layout/", A.OCI_LAYOUT)), arc, ("oci-layout", "duplicate")
        ),
        "name-double-slash-duplicate": lambda: Hostile(
            _add(A.file(ARM_LAYER.replace("/", "//"), b"other")), arc, (ARM_LAYER, "duplicate")
        ),
        # ---- entry types where a blob or a JSON file is expected, and anywhere else
        "type-symlink-blob": lambda: Hostile(
            _replace(ARM_LAYER, A.Member(ARM_LAYER, type=tarfile.SYMTYPE, linkname=_short(IMG.layers["linux/amd64"]))),
            arc,
            (ARM_LAYER, "regular file"),
        ),
        "type-hardlink-blob": lambda: Hostile(
            _replace(ARM_LAYER, A.Member(ARM_LAYER, type=tarfile.LNKTYPE, linkname=AMD_LAYER)),
            arc,
            (ARM_LAYER, "regular file"),
        ),
        "type-chardev-blob": lambda: Hostile(
            _replace(ARM_LAYER, A.Member(ARM_LAYER, type=tarfile.CHRTYPE, devmajor=1, devminor=3)),
            arc,
            (ARM_LAYER, "device"),
        ),
        "type-blockdev-blob": lambda: Hostile(
            _replace(ARM_LAYER, A.Member(ARM_LAYER, type=tarfile.BLKTYPE, devmajor=8)), arc, (ARM_LAYER, "device")
        ),
        "type-fifo-blob": lambda: Hostile(
            _replace(ARM_LAYER, A.Member(ARM_LAYER, type=tarfile.FIFOTYPE)), arc, (ARM_LAYER, "fifo")
        ),
        "type-directory-blob": lambda: Hostile(
            _replace(ARM_LAYER, A.directory(ARM_LAYER + "/")), arc, (ARM_LAYER, "regular file")
        ),
        "type-symlink-index-json": lambda: Hostile(
            _replace("index.json", A.Member("index.json", type=tarfile.SYMTYPE, linkname="oci-layout")),
            arc,
            ("index.json", "regular file"),
        ),
        "type-hardlink-oci-layout": lambda: Hostile(
            IMG.tar(
                lambda ms: (
                    [A.file("x", A.OCI_LAYOUT)]
                    + [
                        A.Member("oci-layout", type=tarfile.LNKTYPE, linkname="x") if m.name == "oci-layout" else m
                        for m in ms
                    ]
                )
            ),
            arc,
            ("oci-layout", "regular file"),
        ),
        "type-fifo-manifest-json": lambda: Hostile(
            _add(A.Member("manifest.json", type=tarfile.FIFOTYPE)), arc, ("manifest.json",)
        ),
        "type-directory-index-json": lambda: Hostile(
            IMG.tar(lambda ms: [A.directory("index.json/") if m.name == "index.json" else m for m in ms]),
            arc,
            ("index.json", "regular file"),
        ),
        "type-chardev-unneeded": lambda: Hostile(
            _add(A.Member("dev/null", type=tarfile.CHRTYPE, devmajor=1, devminor=3)), arc, ("dev/null", "device")
        ),
        "type-fifo-unneeded": lambda: Hostile(_add(A.Member("junk", type=tarfile.FIFOTYPE)), arc, ("junk", "fifo")),
        "type-symlink-leaves-archive": lambda: Hostile(
            _add(A.Member("junk", type=tarfile.SYMTYPE, linkname="../../etc/passwd")),
            arc,
            ("junk", "leaves the archive"),
        ),
        "type-symlink-absolute": lambda: Hostile(
            _add(A.Member("junk", type=tarfile.SYMTYPE, linkname="/etc/passwd")), arc, ("junk", "absolute")
        ),
        "type-hardlink-leaves-archive": lambda: Hostile(
            _add(A.Member("junk", type=tarfile.LNKTYPE, linkname="../x")), arc, ("junk", "..")
        ),
        "type-gnu-sparse-4gib": lambda: Hostile(_add(_gnu_sparse(4 * G)), arc, ("sparse.bin", "GNU sparse file")),
        "type-unknown": lambda: Hostile(_add(A.Member("junk", type=b"Z", data=b"x")), arc, ("junk", "'Z'")),
        # ---- blob names
        "blob-unknown-algorithm": lambda: Hostile(
            _add(A.file("blobs/md5/" + "a" * 32, b"x")), arc, ("blobs/md5/", "algorithm")
        ),
        "blob-unknown-algorithm-dir": lambda: Hostile(
            _add(A.directory("blobs/sha384/")), arc, ("blobs/sha384", "algorithm")
        ),
        "blob-hex-too-short": lambda: Hostile(_add(A.file("blobs/sha256/" + "a" * 63, b"x")), arc, ("a" * 63,)),
        "blob-hex-too-long": lambda: Hostile(_add(A.file("blobs/sha256/" + "a" * 65, b"x")), arc, ("a" * 65,)),
        "blob-hex-sha512-length-under-sha256": lambda: Hostile(
            _add(A.file("blobs/sha256/" + "a" * 128, b"x")), arc, ("a" * 128,)
        ),
        "blob-hex-upper-case": lambda: Hostile(
            _add(A.file("blobs/sha256/" + _short(IMG.layers["linux/arm64"]).upper(), b"x")), arc, ("lowercase",)
        ),
        "blob-hex-not-hex": lambda: Hostile(_add(A.file("blobs/sha256/" + "g" * 64, b"x")), arc, ("g" * 64,)),
        "blob-name-suffix": lambda: Hostile(_add(A.file(ARM_LAYER + ".tmp", b"x")), arc, (ARM_LAYER + ".tmp",)),
        "blob-nested-path": lambda: Hostile(_add(A.file("blobs/sha256/x/y", b"x")), arc, ("blobs/sha256/x/y",)),
        "blob-dir-is-a-file": lambda: Hostile(
            IMG.tar(lambda ms: [A.file("blobs", b"x")] + ms[2:]), arc, ("blobs", "directory")
        ),
        # ---- content
        "content-blob-does-not-hash-to-its-name": lambda: Hostile(
            IMG.tar(lambda ms: [A.file(m.name, _flip(m.data, 100, 1)) if m.name == AMD_LAYER else m for m in ms]),
            dig,
            (IMG.layers["linux/amd64"],),
        ),
        "content-manifest-does-not-hash-to-its-name": lambda: Hostile(
            IMG.tar(
                lambda ms: [
                    A.file(m.name, m.data.replace(b'"schemaVersion":2', b'"schemaVersion":3'))
                    if m.name == A.blob_name(amd_manifest)
                    else m
                    for m in ms
                ]
            ),
            dig,
            (amd_manifest,),
        ),
        "content-layer-size-one-more": lambda: Hostile(
            A.Oci(layer_desc=lambda p, d: {**d, "size": d["size"] + 1}).tar(), dig, (IMG.layers["linux/amd64"],)
        ),
        "content-layer-size-1tib": lambda: Hostile(
            A.Oci(layer_desc=lambda p, d: {**d, "size": 1 << 40}).tar(), dig, (IMG.layers["linux/amd64"], str(1 << 40))
        ),
        "content-config-size-1tib": lambda: Hostile(
            A.Oci(config_desc=lambda p, d: {**d, "size": 1 << 40}).tar(), dig, (IMG.configs["linux/amd64"],)
        ),
        "content-manifest-size-1tib": lambda: Hostile(
            A.Oci(manifest_desc=lambda p, d: {**d, "size": 1 << 40}).tar(), arc, (amd_manifest, "limit")
        ),
        "content-manifest-size-one-less": lambda: Hostile(
            A.Oci(manifest_desc=lambda p, d: {**d, "size": d["size"] - 1}).tar(), dig, (amd_manifest,)
        ),
        "content-index-size-1tib": lambda: Hostile(
            A.Oci(index_desc=lambda p, d: {**d, "size": 1 << 40}).tar(), arc, (IMG.digest, "limit")
        ),
        "content-size-negative": lambda: Hostile(
            A.Oci(layer_desc=lambda p, d: {**d, "size": -1}).tar(), arc, (IMG.layers["linux/amd64"], "size")
        ),
        "content-size-not-an-integer": lambda: Hostile(
            A.Oci(layer_desc=lambda p, d: {**d, "size": "3000"}).tar(), arc, (IMG.layers["linux/amd64"], "size")
        ),
        "content-digest-unparseable-layer": lambda: Hostile(
            A.Oci(layer_desc=lambda p, d: {**d, "digest": "sha256:xyz"}).tar(), arc, ("sha256:xyz",)
        ),
        "content-digest-unparseable-config": lambda: Hostile(
            A.Oci(config_desc=lambda p, d: {**d, "digest": "sha256"}).tar(), arc, ('"sha256"',)
        ),
        "content-digest-unknown-algorithm-manifest": lambda: Hostile(
            A.Oci(manifest_desc=lambda p, d: {**d, "digest": "md5:" + "a" * 32}).tar(), arc, ("md5:" + "a" * 32,)
        ),
        "content-digest-upper-case-in-index-json": lambda: Hostile(
            A.Oci(index_desc=lambda p, d: {**d, "digest": "sha256:" + _short(d["digest"]).upper()}).tar(),
            arc,
            ("index.json", "lowercase"),
        ),
        "content-digest-missing": lambda: Hostile(
            A.Oci(layer_desc=lambda p, d: {k: v for k, v in d.items() if k != "digest"}).tar(), arc, ("digest",)
        ),
        "content-one-digest-two-sizes": lambda: Hostile(
            A.Oci(
                layer=lambda p, layer: A._layer("same"),
                layer_desc=lambda p, d: {**d, "size": d["size"] + (p == "linux/arm64")},
            ).tar(),
            dig,
            (A.sha256(A._layer("same")),),
        ),
        "content-one-digest-two-sizes-across-images": pytest.param(
            lambda: Hostile(
                A.combine(
                    A.Oci(name="docker.io/library/one:1", layer=lambda p, layer: A._layer("same")),
                    A.Oci(
                        name="docker.io/library/two:1",
                        layer=lambda p, layer: A._layer("same"),
                        layer_desc=lambda p, d: {**d, "size": d["size"] + 1},
                        config=lambda p, c: {**c, "two": True},
                    ),
                ),
                dig,
                (A.sha256(A._layer("same")),),
            ),
        ),
        "content-duplicate-entry-different-content": lambda: Hostile(
            _add(A.file(ARM_LAYER, b"other bytes")), arc, (ARM_LAYER, "duplicate")
        ),
        "content-duplicate-entry-same-content": lambda: Hostile(
            _add(A.file(ARM_LAYER, IMG.blobs[IMG.layers["linux/arm64"]])), arc, (ARM_LAYER, "duplicate")
        ),
        # ---- index.json
        "index-json-missing": lambda: Hostile(A.Oci(index_json=lambda p, j: None).tar(), arc, ("index.json",)),
        "index-json-empty": lambda: Hostile(A.Oci(index_json=lambda p, j: b"").tar(), arc, ("index.json", "JSON")),
        "index-json-not-json": lambda: Hostile(A.Oci(index_json=lambda p, j: b"{nope").tar(), arc, ("index.json",)),
        "index-json-null": lambda: Hostile(A.Oci(index_json=lambda p, j: b"null").tar(), arc, ("index.json",)),
        "index-json-array": lambda: Hostile(A.Oci(index_json=lambda p, j: []).tar(), arc, ("index.json",)),
        "index-json-manifests-object": lambda: Hostile(
            A.Oci(index_json=lambda p, j: {**j, "manifests": {}}).tar(), arc, ("index.json", "manifests")
        ),
        "index-json-descriptor-not-object": lambda: Hostile(
            A.Oci(index_json=lambda p, j: {**j, "manifests": [5]}).tar(), arc, ("index.json", "descriptor")
        ),
        "index-json-over-20mib": lambda: Hostile(
            A.Oci(index_json=lambda p, j: A.canonical(j) + b" " * (20 << 20)).tar(), arc, ("index.json", "limit")
        ),
        "index-json-nested-17": lambda: Hostile(
            A.Oci(index_json=lambda p, j: {**j, "x": json.loads("[" * 16 + "]" * 16)}).tar(), arc, ("index.json", "16")
        ),
        "index-json-values-bomb": lambda: Hostile(
            A.Oci(index_json=lambda p, j: b'{"manifests":[' + b"0," * 1_000_000 + b"0]}").tar(),
            arc,
            ("index.json", "values"),
        ),
        "index-json-objects-bomb": lambda: Hostile(
            A.Oci(index_json=lambda p, j: b'{"manifests":[' + b'{"a":0},' * 100_000 + b"{}]}").tar(),
            arc,
            ("index.json", "objects"),
        ),
        "index-json-top-level-blob-absent": lambda: Hostile(
            A.Oci(index=lambda p, i: None).tar(), arc, (A.sha256(b"absent:" + A.OCI_INDEX.encode()), "absent")
        ),
        # ---- the image index blob
        "index-empty": lambda: Hostile(A.Oci(index=lambda p, i: b"").tar(), arc, ("JSON",)),
        "index-null": lambda: Hostile(A.Oci(index=lambda p, i: b"null").tar(), arc, ("not a JSON object",)),
        "index-array": lambda: Hostile(A.Oci(index=lambda p, i: []).tar(), arc, ("not a JSON object",)),
        "index-manifests-object": lambda: Hostile(
            A.Oci(index=lambda p, i: {**i, "manifests": {}}).tar(), arc, ("manifests",)
        ),
        "index-lists-nothing": lambda: Hostile(A.Oci(index=lambda p, i: {}).tar(), arc, (image,)),
        "index-nested-17-indexes": lambda: Hostile(_nested_indexes(17), arc, ("nested deeper than 16",)),
        "index-json-nested-17-in-blob": lambda: Hostile(
            A.Oci(index=lambda p, i: {**i, "x": json.loads("[" * 16 + "]" * 16)}).tar(), arc, ("16",)
        ),
        # ---- manifests
        "manifest-empty": lambda: Hostile(A.Oci(manifest=lambda p, m: b"").tar(), arc, ("JSON",)),
        "manifest-not-json": lambda: Hostile(A.Oci(manifest=lambda p, m: b"\xff\xfe").tar(), arc, ("JSON",)),
        "manifest-null": lambda: Hostile(A.Oci(manifest=lambda p, m: b"null").tar(), arc, ("not a JSON object",)),
        "manifest-array": lambda: Hostile(A.Oci(manifest=lambda p, m: []).tar(), arc, ("not a JSON object",)),
        "manifest-layers-object": lambda: Hostile(
            A.Oci(manifest=lambda p, m: {**m, "layers": {}}).tar(), arc, ("layers",)
        ),
        "manifest-config-string": lambda: Hostile(
            A.Oci(manifest=lambda p, m: {**m, "config": "x"}).tar(), arc, ("config",)
        ),
        "manifest-nested-17": lambda: Hostile(
            A.Oci(manifest=lambda p, m: {**m, "x": json.loads("[" * 16 + "]" * 16)}).tar(), arc, ("16",)
        ),
        "manifest-over-20mib": lambda: Hostile(
            A.Oci(manifest=lambda p, m: A.canonical(m) + b" " * (20 << 20)).tar(), arc, ("limit",)
        ),
        "manifest-all-absent": lambda: Hostile(A.Oci(manifest=lambda p, m: None).tar(), arc, (image, "absent")),
        "manifest-wrong-shape": lambda: Hostile(A.Oci(manifest=lambda p, m: {}).tar(), arc, ("manifest",)),
        # ---- configs
        "config-all-absent": lambda: Hostile(A.Oci(config=lambda p, c: None).tar(), arc, (image, "absent")),
        "config-empty": lambda: Hostile(A.Oci(config=lambda p, c: b"").tar(), arc, (A.sha256(b""), "JSON")),
        "config-not-json": lambda: Hostile(A.Oci(config=lambda p, c: b"{nope").tar(), arc, ("config",)),
        "config-null": lambda: Hostile(A.Oci(config=lambda p, c: b"null").tar(), arc, ("config",)),
        "config-array": lambda: Hostile(A.Oci(config=lambda p, c: []).tar(), arc, ("config",)),
        "config-nested-17": lambda: Hostile(
            A.Oci(config=lambda p, c: {**c, "x": json.loads("[" * 16 + "]" * 16)}).tar(), arc, ("16",)
        ),
        "config-over-20mib": lambda: Hostile(
            A.Oci(config=lambda p, c: A.canonical(c) + b" " * (20 << 20)).tar(), arc, ("limit",)
        ),
        # ---- Docker archives
        "docker-config-absolute": lambda: Hostile(_docker({"Config": "/cfg.json"}), arc, ("/cfg.json", "leaves")),
        "docker-layer-dotdot": lambda: Hostile(
            _docker({"Layers": ["../abc/layer.tar"]}), arc, ("../abc/layer.tar", "leaves")
        ),
        "docker-layer-dotdot-inside": lambda: Hostile(
            _docker({"Layers": ["abc/../abc/layer.tar"]}), arc, ("abc/../abc/layer.tar",)
        ),
        "docker-layer-absolute": lambda: Hostile(
            _docker({"Layers": ["/abc/layer.tar"]}), arc, ("/abc/layer.tar", "leaves")
        ),
        "docker-layer-directory": lambda: Hostile(_docker({"Layers": ["abc"]}), arc, ('"abc"', "regular file")),
        "docker-config-directory": lambda: Hostile(_docker({"Config": "abc/"}), arc, ("abc", "regular file")),
        "docker-layer-missing": lambda: Hostile(
            _docker({"Layers": ["nope/layer.tar"]}), arc, ("nope/layer.tar", "not in the archive")
        ),
        "docker-config-missing": lambda: Hostile(_docker({"Config": "nope.json"}), arc, ("nope.json",)),
        "docker-layer-symlink-leaves": lambda: Hostile(
            _docker({"Layers": ["l.tar"]}, [A.Member("l.tar", type=tarfile.SYMTYPE, linkname="../x")]),
            arc,
            ("l.tar", "leaves the archive"),
        ),
        "docker-layer-symlink-loop": lambda: Hostile(
            _docker(
                {"Layers": ["a.tar"]},
                [
                    A.Member("a.tar", type=tarfile.SYMTYPE, linkname="b.tar"),
                    A.Member("b.tar", type=tarfile.SYMTYPE, linkname="a.tar"),
                ],
            ),
            arc,
            ("a.tar", "loop"),
        ),
        "docker-layer-symlink-to-itself": lambda: Hostile(
            _docker({"Layers": ["a.tar"]}, [A.Member("a.tar", type=tarfile.SYMTYPE, linkname="a.tar")]),
            arc,
            ("a.tar", "loop"),
        ),
        "docker-layer-hardlink-to-directory": lambda: Hostile(
            _docker({"Layers": ["l.tar"]}, [A.Member("l.tar", type=tarfile.LNKTYPE, linkname="abc")]),
            arc,
            ("l.tar", "regular file"),
        ),
        "docker-manifest-null": lambda: Hostile(A.docker_archive(b"null"), arc, ("manifest.json", "null")),
        "docker-manifest-empty": lambda: Hostile(A.docker_archive(b""), arc, ("manifest.json",)),
        "docker-manifest-object": lambda: Hostile(A.docker_archive({}), arc, ("manifest.json",)),
        "docker-manifest-empty-list": lambda: Hostile(A.docker_archive([]), arc, ("manifest.json", "no image")),
        "docker-manifest-wrong-types": lambda: Hostile(_docker({"Config": 5}), arc, ("manifest.json",)),
        "docker-manifest-nested-17": lambda: Hostile(
            A.docker_archive(b"[" * 17 + b"]" * 17), arc, ("manifest.json", "16")
        ),
        "docker-manifest-over-20mib": lambda: Hostile(
            A.docker_archive(b" " * (20 << 20) + A.canonical(A.DOCKER_OK)), arc, ("manifest.json", "limit")
        ),
        "docker-config-not-json": lambda: Hostile(A.docker_archive(A.DOCKER_OK, config=b"{x"), arc, ("cfg.json",)),
        "docker-config-nested-17": lambda: Hostile(
            A.docker_archive(A.DOCKER_OK, config=b"[" * 17 + b"]" * 17), arc, ("cfg.json", "16")
        ),
        "docker-config-null": lambda: Hostile(A.docker_archive(A.DOCKER_OK, config=b"null"), arc, ("cfg.json",)),
        "docker-repo-tag-invalid": lambda: Hostile(_docker({"RepoTags": ["UPPER:x"]}), arc, ("RepoTags", "UPPER")),
        # ---- framing
        "frame-empty-file": lambda: Hostile(b"", arc, (ARCHIVE, "index.json")),
        "frame-random-bytes": lambda: Hostile(random.Random(4).randbytes(8192), arc, (ARCHIVE, "tar")),
        "frame-random-short": lambda: Hostile(random.Random(4).randbytes(100), arc, (ARCHIVE, "not a tar archive")),
        "frame-cut-inside-first-header": lambda: Hostile(IMG.tar()[:300], arc, (ARCHIVE, "truncated")),
        "frame-cut-inside-a-header": lambda: Hostile(
            _cut(IMG.tar(), "index.json", "header"), arc, (ARCHIVE, "truncated", "after entry")
        ),
        "frame-cut-inside-blob-data": lambda: Hostile(
            _cut(IMG.tar(), AMD_LAYER, "data"), arc, (AMD_LAYER, "truncated")
        ),
        "frame-cut-inside-index-json": lambda: Hostile(
            _cut(IMG.tar(), "index.json", "data"), arc, ("index.json", "truncated")
        ),
        "frame-size-past-the-end": lambda: Hostile(
            A.tar_bytes(IMG.members()[:-1] + [A.file("oci-layout", A.OCI_LAYOUT, declared=100_000)], end=False),
            arc,
            ("oci-layout", "truncated"),
        ),
        "frame-bad-checksum": lambda: Hostile(_flip(IMG.tar(), 2, 1), arc, (ARCHIVE, "checksum")),
        "frame-too-many-entries": lambda: Hostile(
            _raw_headers(262_145) + bytes(1024), arc, ("f262144", "262144 entries")
        ),
        # ---- compression
        "gzip-bomb-index-json-4gib": lambda: Hostile(
            _gz(A.bomb_chunks(A.Member("index.json"), 4 * G)), arc, ("index.json", "limit")
        ),
        "zstd-bomb-index-json-4gib": lambda: Hostile(
            _zst(A.bomb_chunks(A.Member("index.json"), 4 * G)), arc, ("index.json", "limit")
        ),
        "gzip-bomb-manifest-json-4gib": lambda: Hostile(
            _gz(A.bomb_chunks(A.Member("manifest.json"), 4 * G)), arc, ("manifest.json", "limit")
        ),
        "zstd-bomb-pax-header-4gib": lambda: Hostile(
            _zst(A.bomb_chunks(A.Member("././@PaxHeader", type=tarfile.XHDTYPE, format=tarfile.USTAR_FORMAT), 4 * G)),
            arc,
            ("PaxHeader", "limit"),
        ),
        "gzip-bomb-gnu-long-name-4gib": lambda: Hostile(
            _gz(
                A.bomb_chunks(
                    A.Member("././@LongLink", type=tarfile.GNUTYPE_LONGNAME, format=tarfile.GNU_FORMAT), 4 * G
                )
            ),
            arc,
            ("LongLink", "limit"),
        ),
        "zstd-bomb-pax-global-header-4gib": lambda: Hostile(
            _zst(
                A.bomb_chunks(A.Member("pax_global_header", type=tarfile.XGLTYPE, format=tarfile.USTAR_FORMAT), 4 * G)
            ),
            arc,
            ("pax_global_header", "limit"),
        ),
        "gzip-corrupt-stream": lambda: Hostile(_flip(gzip.compress(IMG.tar(), mtime=0), 40, 16), arc, (ARCHIVE,)),
        "gzip-truncated-stream": lambda: Hostile(gzip.compress(IMG.tar(), mtime=0)[:1500], arc, ("truncated",)),
        "gzip-header-only": lambda: Hostile(b"\x1f\x8b", arc, (ARCHIVE, "truncated")),
        "zstd-corrupt-stream": lambda: Hostile(_flip(_zst([IMG.tar()]), 600, 3), arc, (ARCHIVE,)),
        "zstd-truncated-stream": lambda: Hostile(_zst([IMG.tar()])[:4000], arc, ("truncated",)),
        "zstd-window-too-large": lambda: Hostile(
            _zst([IMG.tar()])[:5] + bytes([31 << 3]) + _zst([IMG.tar()])[6:],
            arc,
            ("decoder window over the 134217728-byte limit",),
        ),
        "xz-truncated-stream": lambda: Hostile(_xz(IMG.tar())[:600], arc, ("truncated",)),
        "bzip2-corrupt-stream": lambda: Hostile(_bz2(IMG.tar())[:60] + b"x" * 60, arc, ("bzip2",)),
    }
    return cases


def _xz(data: bytes) -> bytes:
    import lzma

    return lzma.compress(data)


def _bz2(data: bytes) -> bytes:
    import bz2

    return bz2.compress(data)


CASES = _cases()


def _fn(name: str) -> Callable[[], Hostile]:
    c = CASES[name]
    return c.values[0] if hasattr(c, "values") else c  # type: ignore[return-value]


def _marks(name: str) -> tuple:
    return tuple(getattr(CASES[name], "marks", ()))


@lru_cache(maxsize=16)
def build(name: str) -> Hostile:
    return _fn(name)()


# --------------------------------------------------------------------------
# fixtures and the checks every case goes through
# --------------------------------------------------------------------------


class Pipe(io.RawIOBase):
    """A readable, non-seekable binary stream (what a pipe looks like to ocitar)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        return self._data.readinto(b)


@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("base") / "store", [Image(names=("present:1",))]).path


@dataclass
class Place:
    """Where a test loads into and what must stay as it was."""

    tmp: Path
    store: Path
    existing: bool
    archive_dir: Path
    cwd: Path
    tmpdir: Path

    def snapshot(self) -> tuple:
        return (
            tree_digest(self.store) if self.existing else None,
            sorted(os.listdir(self.archive_dir)),
            sorted(os.listdir(self.cwd)),
            sorted(os.listdir(self.tmpdir)),
            sorted(os.listdir(self.store.parent if self.existing else self.tmp)),
        )

    def check_unchanged(self, before: tuple) -> None:
        if self.existing:
            assert self.store.is_dir()
            assert tree_digest(self.store) == before[0], f"{self.store} changed"
        else:
            assert not self.store.exists(), f"{self.store} was left behind"
            assert not (self.tmp / "new").exists(), "the new store's parent directories were left behind"
        assert sorted(os.listdir(self.archive_dir)) == before[1], "files appeared beside the archive"
        assert sorted(os.listdir(self.cwd)) == before[2], "files appeared in the working directory"
        assert sorted(os.listdir(self.tmpdir)) == before[3], "files appeared in the temporary directory"
        assert sorted(os.listdir(self.store.parent if self.existing else self.tmp)) == before[4]


@pytest.fixture(params=["existing-store", "new-store"])
def place(request: pytest.FixtureRequest, base_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Place:
    existing = request.param == "existing-store"
    if existing:
        store = tmp_path / "store"
        shutil.copytree(base_store, store)
    else:
        store = tmp_path / "new" / "deeper" / "store"
    p = Place(tmp_path, store, existing, tmp_path / "in", tmp_path / "cwd", tmp_path / "tmp")
    for d in (p.archive_dir, p.cwd, p.tmpdir):
        d.mkdir()
    monkeypatch.chdir(p.cwd)
    monkeypatch.setenv("TMPDIR", str(p.tmpdir))
    return p


def source(data: bytes, mode: str, place: Place) -> object:
    """The archive as ``load`` takes it in ``mode``."""
    if mode == "path":
        path = place.archive_dir / "archive.tar"
        path.write_bytes(data)
        return path
    if mode == "bytes":
        return data
    if mode == "stream":
        return io.BufferedReader(Pipe(data))
    if mode == "gzip":
        path = place.archive_dir / "archive.tar.gz"
        path.write_bytes(gzip.compress(data, compresslevel=1, mtime=0))
        return path
    raise ValueError(mode)


def expect_refused(case: Hostile, mode: str, place: Place, platforms: list[str] | None = None) -> OcitarError:
    before = place.snapshot()
    src = source(case.data, mode, place)
    label = {"bytes": "<bytes>", "stream": "<stream>"}.get(mode, str(src))
    start = time.monotonic()
    with pytest.raises(case.error) as info:
        ocitar.load(src, platforms, store=place.store)
    elapsed = time.monotonic() - start
    assert elapsed < TIME_LIMIT, f"took {elapsed:.1f} s"
    message = str(info.value)
    for culprit in case.culprit:
        culprit = label if culprit == ARCHIVE else culprit
        assert culprit in message, f"{culprit!r} not named in: {message}"
    if isinstance(src, Path):
        src.unlink()
    place.check_unchanged(before)
    return info.value


#: How the archive reaches ``load``: a path (read by offset), bytes, a non-seekable stream, and the same
#: archive gzip-compressed (read as a stream).
MODES = ["path", "bytes", "stream", "gzip"]


def _params(modes: list[str], names: list[str] | None = None) -> list:
    out = []
    for name in names if names is not None else list(CASES):
        for mode in modes:
            if mode == "gzip" and name.startswith(COMPRESSED):
                continue  # already compressed
            out.append(pytest.param(name, mode, id=f"{name}-{mode}", marks=_marks(name)))
    return out


# --------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "mode"), _params(MODES))
def test_hostile_archive_is_refused_and_changes_nothing(name: str, mode: str, place: Place) -> None:
    expect_refused(build(name), mode, place)


UNSAFE = [
    n
    for n in CASES
    if n.startswith(("name-", "type-", "blob-")) and n not in ("name-long-pax-duplicate", "name-dot-slash-duplicate")
]


@pytest.mark.parametrize(("name", "mode"), _params(["path", "stream"], UNSAFE))
def test_unsafe_entries_are_refused_whatever_the_selection(name: str, mode: str, place: Place) -> None:
    """The unsafe entries sit at the arm64 layer or outside the image: loading only linux/amd64, which
    needs none of them, is refused the same way."""
    expect_refused(build(name), mode, place, platforms=["linux/amd64"])


BOMBS = [n for n in CASES if "bomb" in n or n in ("frame-too-many-entries", "index-json-over-20mib")]

_CHILD = textwrap.dedent(
    """
    import json, sys, time
    import ocitar
    start = time.monotonic()
    try:
        ocitar.load(sys.argv[1], store=sys.argv[2])
        out = {"error": None}
    except BaseException as e:
        out = {"error": type(e).__name__, "message": str(e)[:2000]}
    out["seconds"] = time.monotonic() - start
    # VmHWM: this process's peak resident memory since exec (ru_maxrss would include the parent's, which
    # the kernel carries over across fork and exec).
    with open("/proc/self/status") as f:
        out["maxrss"] = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("name", BOMBS)
def test_bombs_stay_within_time_and_memory(name: str, tmp_path: Path) -> None:
    """Peak memory of a process that loads the bomb (the interpreter included) stays under 256 MiB."""
    case = build(name)
    path = tmp_path / "bomb"
    path.write_bytes(case.data)
    store = tmp_path / "store"
    p = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(store)], capture_output=True, text=True, timeout=60
    )
    assert_no_panic(p.stderr, "the loading process")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["error"] == case.error.__name__, out
    for culprit in case.culprit:
        assert culprit in out["message"]
    assert out["seconds"] < TIME_LIMIT, out
    assert out["maxrss"] < MEMORY_LIMIT, f"peak RSS {out['maxrss'] >> 20} MiB"
    assert not store.exists()


JSON_WITHIN_LIMITS = {
    # Documents just under the value and object limits: refused for their shape, parsed in bounded memory.
    "values": b'{"manifests":[' + b",".join([b"0"] * 999_000) + b"]}",
    "objects": b'{"manifests":[' + b",".join([b'{"a":0}'] * 99_990) + b"]}",
    "strings": b'{"manifests":[' + b",".join([b'["abcdefghijklmnopqrstuvwxyz"]'] * 499_000) + b"]}",
    "wide-objects": b'{"manifests":['
    + b",".join(b"{" + b",".join(b'"k%d":"%d"' % (j, i) for j in range(30)) + b"}" for i in range(16_000))
    + b"]}",
}


@pytest.mark.parametrize("shape", list(JSON_WITHIN_LIMITS))
def test_json_at_the_limits_parses_in_bounded_memory(shape: str, tmp_path: Path) -> None:
    path = tmp_path / "archive.tar"
    path.write_bytes(A.Oci(index_json=lambda p, j: JSON_WITHIN_LIMITS[shape]).tar())
    p = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(tmp_path / "store")], capture_output=True, text=True, timeout=60
    )
    assert_no_panic(p.stderr, "the loading process")
    out = json.loads(p.stdout)
    assert out["error"] == "InvalidArchiveError" and "index.json" in out["message"], out
    assert out["maxrss"] < MEMORY_LIMIT, f"peak RSS {out['maxrss'] >> 20} MiB"


def test_trailing_bomb_after_the_end_of_archive_is_not_read_whole(tmp_path: Path) -> None:
    """4 GiB of zeros after the end-of-archive marker (a few kilobytes of zstd): the archive loads, and
    what follows it is not decompressed to its end."""
    path = tmp_path / "archive.tar.zst"
    path.write_bytes(_zst([IMG.tar(), 4 * G]))
    start = time.monotonic()
    report = ocitar.load(path, store=tmp_path / "store")
    assert time.monotonic() - start < TIME_LIMIT
    assert [i.digest for i in report.images] == [IMG.digest]


def test_a_descriptor_size_is_checked_against_a_blob_already_in_the_store(tmp_path: Path) -> None:
    """The store has the layer; the archive's manifest says it is one byte longer (and the archive holds
    the layer with its real bytes): refused like any size mismatch, the store unchanged."""
    store = tmp_path / "store"
    ocitar.load(IMG.tar(), store=store)
    before = tree_digest(store)
    bent = A.Oci(name="docker.io/library/other:1", layer_desc=lambda p, d: {**d, "size": d["size"] + 1})
    with pytest.raises(DigestMismatchError) as info:
        ocitar.load(bent.tar(), store=store)
    assert IMG.layers["linux/amd64"] in str(info.value)
    assert tree_digest(store) == before
    ocitar.verify(store)


@pytest.mark.parametrize("where", ["index", "index-json"])
def test_a_child_listed_10000_times_loads_once(where: str, tmp_path: Path) -> None:
    if where == "index":
        img = A.Oci(index=lambda p, i: {**i, "manifests": i["manifests"] * 5000})
    else:
        img = A.Oci(index_json=lambda p, j: {**j, "manifests": j["manifests"] * 10_000})
    start = time.monotonic()
    report = ocitar.load(img.tar(), store=tmp_path / "store")
    assert time.monotonic() - start < TIME_LIMIT
    assert [i.digest for i in report.images] == [img.digest]
    doc = json.loads((tmp_path / "store" / "index.json").read_bytes())
    assert [e["digest"] for e in doc["manifests"]] == [img.digest]
    ocitar.verify(tmp_path / "store")


def test_the_base_archive_loads(tmp_path: Path) -> None:
    """The archives the cases bend are valid: unchanged, each loads from every input form."""
    for mode, data in [
        ("bytes", IMG.tar()),
        ("stream", io.BufferedReader(Pipe(IMG.tar()))),
        ("docker", A.docker_archive(A.DOCKER_OK)),
    ]:
        report = ocitar.load(data, store=tmp_path / mode)
        assert report.images, mode
    ocitar.verify(tmp_path / "bytes")


@pytest.mark.parametrize("name", [n for n in CASES if not _marks(n)])
def test_inspect_and_verify_refuse_hostile_archives(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``verify`` of a hostile archive raises a typed error (``inspect`` may describe what it can read),
    within the time limit, and neither leaves anything in the temporary directory it spools into."""
    case = build(name)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    path = tmp_path / "archive"
    path.write_bytes(case.data)
    start = time.monotonic()
    with contextlib.suppress(OcitarError):
        ocitar.inspect(path)
    assert os.listdir(tmpdir) == []
    if name in VERIFY_PASSES:
        ocitar.verify(path)
    else:
        with pytest.raises(OcitarError):
            ocitar.verify(path)
    assert time.monotonic() - start < 2 * TIME_LIMIT
    assert os.listdir(tmpdir) == []


#: Cases whose fault only ``load`` meets: the archive itself is consistent, so ``verify`` passes.
VERIFY_PASSES = {
    # an image whose index lists nothing, or only absent manifests: a consistent (sparse) archive
    "index-lists-nothing",
    "manifest-all-absent",
}


def _regression_files() -> list[Path]:
    if not REGRESSIONS.is_dir():
        return []
    return sorted(p for p in REGRESSIONS.iterdir() if p.is_file() and p.name != "README.md")


#: Regression inputs of bugs found and not fixed yet (the file names the fuzzer gave them).
KNOWN_REGRESSIONS: dict[str, str] = {}


def _regression_params() -> list:
    return [
        pytest.param(
            p,
            id=p.name,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_REGRESSIONS[p.name])]
            if p.name in KNOWN_REGRESSIONS
            else [],
        )
        for p in _regression_files()
    ]


@pytest.mark.parametrize("path", _regression_params())
def test_fuzz_regressions_never_panic(path: Path, tmp_path: Path) -> None:
    """Inputs the fuzzers found (``fuzz/``, listed in ``tests/regressions/README.md``): ``archive-*`` files
    load from every input form or fail with a typed error, and a store they load into verifies;
    ``json-*`` documents go in as an ``index.json``, an index, a manifest and a config, and their lines
    as platform specifiers."""
    data = path.read_bytes()
    kind = path.name.split("-", 1)[0]
    if kind == "archive":
        inputs: list[object] = [data, io.BufferedReader(Pipe(data)), path]
    elif kind == "json":
        inputs = [
            A.Oci(index_json=lambda p, j: data).tar(),
            A.Oci(index=lambda p, i: data).tar(),
            A.Oci(manifest=lambda p, m: data).tar(),
            A.Oci(config=lambda p, c: data).tar(),
        ]
        for line in data.decode("utf-8", "replace").splitlines()[:64]:
            with contextlib.suppress(OcitarError):
                ocitar.normalize_platform(line)
            with contextlib.suppress(OcitarError):
                ocitar.load(IMG.tar(), [line], store=tmp_path / "platforms")
    else:
        pytest.fail(f"unknown regression kind {kind!r} ({path.name}): name files archive-* or json-*")
    for i, src in enumerate(inputs):
        store = tmp_path / f"store{i}"
        start = time.monotonic()
        try:
            ocitar.load(src, store=store)
        except OcitarError:
            assert not store.exists()
        else:
            ocitar.verify(store)
        assert time.monotonic() - start < TIME_LIMIT


def test_there_are_regression_inputs() -> None:
    assert _regression_files(), f"no fuzz regression inputs under {REGRESSIONS}"


# --------------------------------------------------------------------------
# the panic guard itself
# --------------------------------------------------------------------------


def test_panic_guard_sees_a_swallowed_panic() -> None:
    """The guard this suite relies on records a PanicException even when the code under test swallows
    it, and through exception chains."""
    PanicException = type("PanicException", (BaseException,), {"__module__": "pyo3_runtime"})

    def panics() -> None:
        raise PanicException("called `Option::unwrap()` on a `None` value")

    watch = PanicWatch()
    wrapped = watch.wrap("load", panics)
    with pytest.raises(BaseException):  # noqa: B017 - the test swallows it, as a careless one would
        wrapped()
    assert watch.seen and "unwrap" in watch.seen[0]
    try:
        try:
            panics()
        except BaseException as inner:
            raise OcitarError("wrapped") from inner
    except OcitarError as outer:
        assert is_panic(outer)
    assert not is_panic(OcitarError("plain"))
    with pytest.raises(pytest.fail.Exception):
        assert_no_panic("thread '<unnamed>' panicked at src/engine/x.rs:1:1")
