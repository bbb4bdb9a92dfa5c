"""Archives built in code for the hostile-input suites: OCI layout and Docker archives whose every document,
header and byte can be bent, and compression bombs written without materialising what they expand to.

- :func:`tar_bytes` writes members exactly as described (any name, type, declared size, raw header), which
  ``tarfile.TarFile.addfile`` would refuse or normalise;
- :class:`Oci` builds a small two-platform image (index, manifests, configs, gzip layers) bottom up, with a
  hook at each level, so a test can change one field and have every digest above it follow;
- :func:`docker_archive` writes a ``docker save``-style archive with a ``manifest.json`` of any content;
- :func:`gzip_members` and :func:`zstd_frames` compress a stream of chunks where long runs of zeros cost a
  few bytes (multi-member gzip, zstd RLE blocks), so a 4 GiB bomb is written in milliseconds.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import struct
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from _helpers import (
    IMAGE_NAME,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYOUT,
    OCI_MANIFEST,
    REF_NAME,
    blob_name,
)
from _helpers import sha as sha256

BLOCK = 512


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


# --------------------------------------------------------------------------
# tar members
# --------------------------------------------------------------------------


@dataclass
class Member:
    """One tar member. ``name`` may be ``bytes`` (not UTF-8); ``declared`` overrides the header's size
    (the data written stays ``data``); ``raw`` replaces header and data with these bytes verbatim."""

    name: str | bytes = ""
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    declared: int | None = None
    raw: bytes | None = None
    format: int = tarfile.PAX_FORMAT
    devmajor: int = 0
    devminor: int = 0
    mode: int = 0o644


def _pad(n: int) -> bytes:
    return bytes(-n % BLOCK)


def header(m: Member) -> bytes:
    """The header block(s) of ``m`` (with PAX or GNU extension blocks for long or binary names)."""
    name = m.name.decode("utf-8", "surrogateescape") if isinstance(m.name, bytes) else m.name
    ti = tarfile.TarInfo(name)
    ti.type = m.type
    ti.size = m.declared if m.declared is not None else len(m.data)
    ti.linkname = m.linkname
    ti.mode = m.mode if m.type != tarfile.DIRTYPE else 0o755
    ti.devmajor, ti.devminor = m.devmajor, m.devminor
    ti.mtime = 0
    if m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE) and m.declared is None:
        ti.size = len(m.data)
    return ti.tobuf(format=m.format, encoding="utf-8", errors="surrogateescape")


def member_bytes(m: Member) -> bytes:
    if m.raw is not None:
        return m.raw
    return header(m) + m.data + _pad(len(m.data))


def tar_bytes(members: Iterable[Member], end: bool = True) -> bytes:
    """A tar stream of ``members`` in order, with the end-of-archive marker unless ``end`` is false."""
    out = b"".join(member_bytes(m) for m in members)
    return out + (bytes(2 * BLOCK) if end else b"")


def pax_record(key: str, value: bytes) -> bytes:
    """One PAX record, ``LEN KEY=VALUE\\n`` with LEN counting the whole record."""
    body = b" " + key.encode() + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


def pax_header(records: bytes, kind: bytes = tarfile.XHDTYPE) -> bytes:
    """A PAX extended header (local, or global with ``kind``) holding ``records`` verbatim."""
    x = tarfile.TarInfo("PaxHeader")
    x.type, x.size = kind, len(records)
    return x.tobuf(format=tarfile.USTAR_FORMAT) + records + _pad(len(records))


def file(name: str | bytes, data: bytes = b"", **kw: Any) -> Member:
    return Member(name=name, data=data, **kw)


def directory(name: str) -> Member:
    return Member(name=name, type=tarfile.DIRTYPE)


def read_members(data: bytes) -> list[Member]:
    """The members of a plain tar (regular files and directories), to rebuild it changed."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for ti in tf.getmembers():
            if ti.isdir():
                out.append(directory(ti.name))
            else:
                f = tf.extractfile(ti)
                assert f is not None
                out.append(file(ti.name, f.read()))
    return out


# --------------------------------------------------------------------------
# an OCI image built bottom up
# --------------------------------------------------------------------------

Doc = Union[dict, list, bytes, None]
Hook = Callable[[str, Any], Any]


def _layer(seed: str, size: int = 3000) -> bytes:
    """A gzip-compressed layer tar holding one file of pseudo-random bytes."""
    content = b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(size // 32 + 1))[:size]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        ti = tarfile.TarInfo(f"data/{seed}.bin")
        ti.size = len(content)
        tf.addfile(ti, io.BytesIO(content))
    return gzip.compress(buf.getvalue(), mtime=0)


def _doc_bytes(doc: Doc) -> bytes:
    if isinstance(doc, bytes):
        return doc
    return canonical(doc)


def _keep(_: str, x: Any) -> Any:
    return x


@dataclass
class Oci:
    """A two-platform image (``linux/amd64``, ``linux/arm64``) as an OCI layout archive.

    Hooks get ``(platform, value)`` (``("", value)`` for index-level ones) and return the value to write:
    a dict or list (written canonically), ``bytes`` (written as they are) or ``None`` (the blob is left
    out of the archive; its descriptor stays). Descriptor hooks change a descriptor after it is computed
    from the content (to lie about a size or a digest)."""

    name: str = "docker.io/library/hostile:1"
    platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64")
    layer: Hook = _keep
    config: Hook = _keep
    config_desc: Hook = _keep
    layer_desc: Hook = _keep
    manifest: Hook = _keep
    manifest_desc: Hook = _keep
    index: Hook = _keep
    index_desc: Hook = _keep
    index_json: Hook = _keep
    blobs: dict[str, bytes] = field(default_factory=dict, init=False)
    layers: dict[str, str] = field(default_factory=dict, init=False)
    configs: dict[str, str] = field(default_factory=dict, init=False)
    manifests: dict[str, str] = field(default_factory=dict, init=False)
    digest: str = field(default="", init=False)

    def __post_init__(self) -> None:
        manifest_descs = []
        for p in self.platforms:
            os_, arch = p.split("/")[:2]
            layer = self.layer(p, _layer(p))
            ldesc = {"mediaType": OCI_LAYER_GZIP, "digest": sha256(layer or b""), "size": len(layer or b"")}
            self._put(layer, ldesc["digest"])
            self.layers[p] = ldesc["digest"]
            ldesc = self.layer_desc(p, ldesc)
            config = self.config(
                p,
                {
                    "architecture": arch,
                    "os": os_,
                    "rootfs": {"type": "layers", "diff_ids": [sha256(gzip.decompress(_layer(p)))]},
                },
            )
            cdesc = self._blob(config, OCI_CONFIG, p)
            self.configs[p] = cdesc["digest"]
            cdesc = self.config_desc(p, cdesc)
            manifest = self.manifest(
                p, {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc, "layers": [ldesc]}
            )
            mdesc = self._blob(manifest, OCI_MANIFEST, p)
            self.manifests[p] = mdesc["digest"]
            mdesc["platform"] = {"architecture": arch, "os": os_}
            manifest_descs.append(self.manifest_desc(p, mdesc))
        index = self.index("", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifest_descs})
        idesc = self._blob(index, OCI_INDEX)
        self.digest = idesc["digest"]
        idesc["annotations"] = {IMAGE_NAME: self.name, REF_NAME: self.name.rsplit(":", 1)[1]}
        idesc = self.index_desc("", idesc)
        self.index_json_doc = self.index_json("", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [idesc]})

    def _put(self, data: bytes | None, digest: str) -> None:
        if data is not None:
            self.blobs[digest] = data

    def _blob(self, doc: Doc, media_type: str, platform: str = "") -> dict:
        if doc is None:
            # Left out of the archive: describe what would have been there (one per platform).
            absent = f"absent:{media_type}{':' + platform if platform else ''}".encode()
            return {"mediaType": media_type, "digest": sha256(absent), "size": 2}
        data = _doc_bytes(doc)
        d = sha256(data)
        self.blobs[d] = data
        return {"mediaType": media_type, "digest": d, "size": len(data)}

    def members(self) -> list[Member]:
        """Every member, as ocitar's writer orders them (blobs, index.json, oci-layout)."""
        out = [directory("blobs/"), directory("blobs/sha256/")]
        out += [file(blob_name(d), self.blobs[d]) for d in sorted(self.blobs)]
        if self.index_json_doc is not None:
            out.append(file("index.json", _doc_bytes(self.index_json_doc)))
        out.append(file("oci-layout", OCI_LAYOUT))
        return out

    def tar(self, edit: Callable[[list[Member]], list[Member]] | None = None) -> bytes:
        members = self.members()
        if edit is not None:
            members = edit(members)
        return tar_bytes(members)


def docker_archive(manifest: Doc, files: Iterable[Member] = (), config: bytes | None = None) -> bytes:
    """A Docker archive: ``files`` (default: ``cfg.json`` and ``abc/layer.tar``) then ``manifest.json``."""
    files = list(files)
    if not files:
        layer = _layer("docker")
        cfg = config or canonical(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [sha256(gzip.decompress(layer))]},
            }
        )
        files = [file("cfg.json", cfg), directory("abc/"), file("abc/layer.tar", layer)]
    return tar_bytes([*files, file("manifest.json", _doc_bytes(manifest))])


DOCKER_OK = [{"Config": "cfg.json", "RepoTags": ["hostile:docker"], "Layers": ["abc/layer.tar"]}]


# --------------------------------------------------------------------------
# compression of mostly-zero streams
# --------------------------------------------------------------------------

#: A chunk of the stream: bytes, or an int meaning that many zero bytes.
Chunk = Union[bytes, int]
_ZERO_RUN = 64 << 20


def gzip_members(chunks: Iterable[Chunk]) -> Iterator[bytes]:
    """Gzip ``chunks`` as concatenated members (valid gzip, as ``MultiGzDecoder`` and ``gzip -d`` read it);
    a run of zeros costs one ~65 KiB member per 64 MiB, compressed once."""
    zero_member = None
    for c in chunks:
        if isinstance(c, int):
            full, rest = divmod(c, _ZERO_RUN)
            if full:
                if zero_member is None:
                    zero_member = gzip.compress(bytes(_ZERO_RUN), compresslevel=9, mtime=0)
                for _ in range(full):
                    yield zero_member
            if rest:
                yield gzip.compress(bytes(rest), compresslevel=9, mtime=0)
        elif c:
            yield gzip.compress(c, mtime=0)


def zstd_frames(chunks: Iterable[Chunk]) -> Iterator[bytes]:
    """Zstandard frames (RFC 8878) written by hand: raw blocks for bytes, RLE blocks for zeros (4 bytes per
    128 KiB), no content size, no checksum, a 128 KiB window. One frame per chunk."""
    block_max = 128 << 10

    def frame(blocks: list[bytes]) -> bytes:
        # magic, frame header descriptor 0 (no FCS, not single-segment, no checksum, no dictionary),
        # window descriptor: exponent 7 -> 2^(10+7) = 128 KiB.
        return struct.pack("<I", 0xFD2FB528) + bytes([0x00, 7 << 3]) + b"".join(blocks)

    def block_header(last: bool, kind: int, size: int) -> bytes:
        v = int(last) | (kind << 1) | (size << 3)
        return v.to_bytes(3, "little")

    for c in chunks:
        blocks = []
        if isinstance(c, int):
            n = c
            while n > 0:
                k = min(n, block_max)
                n -= k
                blocks.append(block_header(n == 0, 1, k) + b"\0")
        else:
            for i in range(0, len(c), block_max):
                part = c[i : i + block_max]
                blocks.append(block_header(i + block_max >= len(c), 0, len(part)) + part)
        if blocks:
            yield frame(blocks)


def bomb_chunks(m: Member, zeros: int, tail: Iterable[Member] = ()) -> list[Chunk]:
    """A tar stream whose member ``m`` declares ``zeros`` bytes of zeros, then ``tail`` and the end."""
    hdr = header(Member(name=m.name, type=m.type, declared=zeros, format=m.format))
    rest = tar_bytes(list(tail))
    return [hdr, zeros, bytes(-zeros % BLOCK) + rest]


def write_store(path: os.PathLike[str] | str, members: Iterable[Member]) -> Path:
    """Write archive members as a store directory (regular files and directories only), for stores that
    no loader would write: wrong sizes, missing blobs, bad ``oci-layout``."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    for m in members:
        name = m.name.decode() if isinstance(m.name, bytes) else m.name
        target = root / name
        if m.type == tarfile.DIRTYPE:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(m.data)
    return root


def combine(*images: Oci) -> bytes:
    """One archive holding several images: every blob once, every ``index.json`` entry."""
    blobs: dict[str, bytes] = {}
    entries: list[Any] = []
    for img in images:
        blobs.update(img.blobs)
        doc = img.index_json_doc
        entries += doc["manifests"] if isinstance(doc, dict) else []
    index_json = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    members = [directory("blobs/"), directory("blobs/sha256/")]
    members += [file(blob_name(d), blobs[d]) for d in sorted(blobs)]
    members += [file("index.json", canonical(index_json)), file("oci-layout", OCI_LAYOUT)]
    return tar_bytes(members)
