"""What a user writes without ocitar: a verified, platform-filtered save and load with ``tarfile`` + ``hashlib``.

The baseline of ``benches/run.py``. It does the same work ocitar does for the benchmark's store (OCI image
indexes of platform manifests), and no more:

* ``save STORE REF OUT [--platform P]...``: resolve ``REF`` against the store's ``index.json`` name
  annotations, walk the image index through the selected platforms (attestations of selected manifests are
  kept), and write a tar with ``blobs/sha256/...``, ``index.json``, ``manifest.json`` and ``oci-layout``
  in sorted order. Every blob is hashed while it is copied (one pass, 1 MiB buffers) and checked against
  its digest and size; a mismatch removes the half-written output. The output is written to a temporary
  file and renamed; it is not fsynced (save does not promise durability).
* ``load ARCHIVE|- STORE [--platform P]...``: a path is read as a seekable tar (only the selected blobs are
  read); ``-`` reads a stream from stdin (gzip detected by ``tarfile``'s ``r|*``), in order, spooling each
  blob into the store's staging directory. Every kept blob is hashed, checked, fsynced, then renamed into
  ``blobs/sha256/``; the blob directory is fsynced and ``index.json`` is replaced atomically (fsynced) last.

Prints one JSON line ``{"op": seconds, ...}`` (the time of the operation itself, without interpreter
start-up) on stdout. Exits non-zero with a message on any failure.

Only the standard library; it does not import ocitar.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

BUF = 1 << 20
MT_INDEXES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
ANN_NAME = "io.containerd.image.name"
ANN_REF = "org.opencontainers.image.ref.name"
_ARCH = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386"}


class Fault(Exception):
    """A verification or lookup failure."""


# --------------------------------------------------------------------------- names and platforms


def normalize_ref(ref: str) -> str:
    """Docker's normalization, enough for the benchmark: ``img:t`` -> ``docker.io/library/img:t``."""
    name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
    tag = tag or "latest"
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = "docker.io/library/" + name
    elif "." not in first and ":" not in first and first != "localhost":
        name = "docker.io/" + name
    return f"{name}:{tag}"


def norm_platform(p: dict[str, Any] | str) -> tuple[str, str, str]:
    if isinstance(p, str):
        parts = p.split("/")
        os_, arch, variant = parts[0], parts[1], parts[2] if len(parts) > 2 else ""
    else:
        os_, arch, variant = p.get("os", ""), p.get("architecture", ""), p.get("variant", "")
    arch = _ARCH.get(arch, arch)
    if (arch, variant) in (("arm64", "v8"), ("amd64", "v1")):
        variant = ""
    if arch == "arm" and not variant:
        variant = "v7"
    return os_.lower(), arch, variant


# --------------------------------------------------------------------------- walking an image


def select(
    top: dict[str, Any], read_doc: Callable[[dict[str, Any]], bytes], platforms: Iterable[str]
) -> list[dict[str, Any]]:
    """Descriptors of every blob to move for ``top`` (itself included), platform-filtered.

    ``read_doc(descriptor)`` returns a JSON document's bytes, verified. Raises :class:`Fault` when a listed
    platform is absent.
    """
    wanted = {norm_platform(p) for p in platforms}
    out: dict[str, dict[str, Any]] = {}
    found: set[tuple[str, str, str]] = set()

    def manifest(d: dict[str, Any]) -> None:
        out[d["digest"]] = d
        m = json.loads(read_doc(d))
        for c in [m["config"], *m.get("layers", [])]:
            out[c["digest"]] = c

    def visit(d: dict[str, Any]) -> None:
        if d.get("mediaType") not in MT_INDEXES:
            manifest(d)
            return
        out[d["digest"]] = d
        children = json.loads(read_doc(d)).get("manifests") or []
        kept = set()
        for c in children:
            if c.get("mediaType") in MT_INDEXES:
                visit(c)
                continue
            p = c.get("platform")
            if p is None:
                manifest(c)
                continue
            if p.get("os") == "unknown":
                continue  # attestations, below
            key = norm_platform(p)
            if not wanted or key in wanted:
                found.add(key)
                kept.add(c["digest"])
                manifest(c)
        for c in children:
            ann = c.get("annotations") or {}
            if ann.get("vnd.docker.reference.digest") in kept:
                manifest(c)

    visit(top)
    missing = wanted - found
    if missing:
        raise Fault(f"platforms {sorted('/'.join(x for x in m if x) for m in missing)} not in the image")
    return sorted(out.values(), key=lambda d: d["digest"])


def blob_name(digest: str) -> str:
    alg, hexd = digest.split(":", 1)
    return f"blobs/{alg}/{hexd}"


def check(d: dict[str, Any], h: Any, n: int, where: str) -> None:
    if n != d["size"]:
        raise Fault(f"{where}: size {n}, expected {d['size']} for {d['digest']}")
    if "sha256:" + h.hexdigest() != d["digest"]:
        raise Fault(f"{where}: digest sha256:{h.hexdigest()}, expected {d['digest']}")


class HashingReader(io.RawIOBase):
    """Reads from ``f``, hashing and counting what passes."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.h, self.n = f, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.h.update(data)
        self.n += len(data)
        return data


# --------------------------------------------------------------------------- save


def store_doc(store: str) -> Callable[[dict[str, Any]], bytes]:
    def read_doc(d: dict[str, Any]) -> bytes:
        with open(os.path.join(store, blob_name(d["digest"])), "rb") as f:
            data = f.read()
        check(d, hashlib.sha256(data), len(data), store)
        return data

    return read_doc


def resolve(store: str, ref: str) -> dict[str, Any]:
    with open(os.path.join(store, "index.json"), "rb") as f:
        entries = json.load(f).get("manifests") or []
    full = normalize_ref(ref)
    for e in entries:
        ann = e.get("annotations") or {}
        if ann.get(ANN_NAME) == full or ann.get(ANN_REF) in (ref, full):
            return dict(e)
    raise Fault(f"{ref}: not in {store}")


def save(store: str, ref: str, platforms: list[str], out: str) -> int:
    top = resolve(store, ref)
    read_doc = store_doc(store)
    blobs = select(top, read_doc, platforms)
    entry = dict(top)
    entry["annotations"] = {ANN_NAME: normalize_ref(ref), ANN_REF: normalize_ref(ref).rsplit(":", 1)[1]}
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]}
    ).encode()
    manifests = [d for d in blobs if "manifest" in d.get("mediaType", "") and "index" not in d["mediaType"]]
    docker = []
    if manifests:
        m = json.loads(read_doc(manifests[0]))
        docker.append(
            {
                "Config": blob_name(m["config"]["digest"]),
                "RepoTags": [normalize_ref(ref).replace("docker.io/library/", "").replace("docker.io/", "")],
                "Layers": [blob_name(x["digest"]) for x in m["layers"]],
            }
        )
    tmp = f"{out}.plain-{os.getpid()}.tmp"
    moved = 0
    try:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT, copybufsize=BUF) as tf:

            def member(name: str, size: int, mode: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode, ti.mtime, ti.type = size, mode, 0, kind
                return ti

            tf.addfile(member("blobs/", 0, 0o755, tarfile.DIRTYPE))
            tf.addfile(member("blobs/sha256/", 0, 0o755, tarfile.DIRTYPE))
            for d in blobs:
                path = os.path.join(store, blob_name(d["digest"]))
                with open(path, "rb", buffering=0) as f:
                    if os.fstat(f.fileno()).st_size != d["size"]:
                        raise Fault(f"{path}: size differs from {d['size']}")
                    r = HashingReader(f)
                    tf.addfile(member(blob_name(d["digest"]), d["size"], 0o444), r)
                    check(d, r.h, r.n, path)
                moved += d["size"]
            for name, data, mode in (
                ("index.json", index, 0o644),
                ("manifest.json", json.dumps(docker).encode(), 0o644),
                ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o444),
            ):
                tf.addfile(member(name, len(data), mode), io.BytesIO(data))
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return moved


# --------------------------------------------------------------------------- load


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def spool(src: IO[bytes], dst: str, d: dict[str, Any] | None, where: str) -> tuple[Any, int]:
    """Copy ``src`` into the new file ``dst`` hashing it; fsync; check against ``d`` when given."""
    h, n = hashlib.sha256(), 0
    with open(dst, "wb", buffering=0) as f:
        while True:
            chunk = src.read(BUF)
            if not chunk:
                break
            h.update(chunk)
            f.write(chunk)
            n += len(chunk)
        if d is not None:
            os.fsync(f.fileno())
    if d is not None:
        check(d, h, n, where)
    return h, n


def commit(store: str, staged: dict[str, str], entries: list[dict[str, Any]]) -> None:
    """Rename staged blobs into place, fsync the blob directory, replace index.json atomically."""
    blob_dir = os.path.join(store, "blobs", "sha256")
    os.makedirs(blob_dir, exist_ok=True)
    for digest, tmp in staged.items():
        os.replace(tmp, os.path.join(store, blob_name(digest)))
    fsync_dir(blob_dir)
    old: list[dict[str, Any]] = []
    if os.path.exists(os.path.join(store, "index.json")):
        with open(os.path.join(store, "index.json"), "rb") as f:
            old = json.load(f).get("manifests") or []
    names = {(e.get("annotations") or {}).get(ANN_NAME) for e in entries}
    old = [e for e in old if (e.get("annotations") or {}).get(ANN_NAME) not in names]
    for name, data in (
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ("index.json", json.dumps({"schemaVersion": 2, "manifests": old + entries}).encode()),
    ):
        tmp = os.path.join(store, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(store, name))
    fsync_dir(store)


def load(archive: str, store: str, platforms: list[str]) -> int:
    os.makedirs(store, exist_ok=True)
    stage = os.path.join(store, f".plain-ingest-{os.getpid()}")
    os.makedirs(stage)
    try:
        if archive == "-":
            return _load_stream(sys.stdin.buffer, store, stage, platforms)
        return _load_seekable(archive, store, stage, platforms)
    finally:
        for f in os.listdir(stage):
            os.unlink(os.path.join(stage, f))
        os.rmdir(stage)


def _plan(index: bytes, read_doc: Callable[[dict[str, Any]], bytes], platforms: list[str]):
    entries = json.loads(index).get("manifests") or []
    tops: dict[str, dict[str, Any]] = {}
    for e in entries:
        tops.setdefault(e["digest"], e)
    needed: dict[str, dict[str, Any]] = {}
    for top in tops.values():
        for d in select(top, read_doc, platforms):
            needed[d["digest"]] = d
    return entries, needed


def _load_seekable(archive: str, store: str, stage: str, platforms: list[str]) -> int:
    with tarfile.open(archive, "r:") as tf:
        members = {m.name.lstrip("./").rstrip("/"): m for m in tf.getmembers()}

        def data(name: str) -> IO[bytes]:
            m = members.get(name)
            if m is None or not m.isfile():
                raise Fault(f"{archive}: no file {name}")
            f = tf.extractfile(m)
            assert f is not None
            return f

        def read_doc(d: dict[str, Any]) -> bytes:
            b = data(blob_name(d["digest"])).read()
            check(d, hashlib.sha256(b), len(b), archive)
            return b

        entries, needed = _plan(data("index.json").read(), read_doc, platforms)
        staged, moved = {}, 0
        for i, d in enumerate(needed.values()):
            if os.path.exists(os.path.join(store, blob_name(d["digest"]))):
                continue
            tmp = os.path.join(stage, f"b{i}")
            spool(data(blob_name(d["digest"])), tmp, d, archive)
            staged[d["digest"]] = tmp
            moved += d["size"]
    commit(store, staged, entries)
    return moved


def _load_stream(src: IO[bytes], store: str, stage: str, platforms: list[str]) -> int:
    spooled: dict[str, tuple[str, int]] = {}
    index = None
    with tarfile.open(fileobj=src, mode="r|*", bufsize=BUF) as tf:
        for i, m in enumerate(tf):
            name = m.name.lstrip("./").rstrip("/")
            if not m.isfile():
                continue
            f = tf.extractfile(m)
            assert f is not None
            if name == "index.json":
                index = f.read()
            elif name.startswith("blobs/sha256/"):
                digest = "sha256:" + name.rsplit("/", 1)[1]
                tmp = os.path.join(stage, f"s{i}")
                h, n = spool(f, tmp, None, "<stream>")
                if "sha256:" + h.hexdigest() != digest:
                    raise Fault(f"<stream>:{name}: digest sha256:{h.hexdigest()}")
                spooled[digest] = (tmp, n)
    if index is None:
        raise Fault("<stream>: no index.json")

    def read_doc(d: dict[str, Any]) -> bytes:
        if d["digest"] not in spooled:
            raise Fault(f"<stream>: missing {d['digest']}")
        with open(spooled[d["digest"]][0], "rb") as f:
            return f.read()

    entries, needed = _plan(index, read_doc, platforms)
    staged, moved = {}, 0
    for d in needed.values():
        tmp, n = spooled[d["digest"]]
        if n != d["size"]:
            raise Fault(f"<stream>: size {n}, expected {d['size']} for {d['digest']}")
        if os.path.exists(os.path.join(store, blob_name(d["digest"]))):
            continue
        fd = os.open(tmp, os.O_RDONLY)  # durable before it is named, as ocitar
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        staged[d["digest"]] = tmp
        moved += d["size"]
    commit(store, staged, entries)
    return moved


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("store")
    s.add_argument("ref")
    s.add_argument("out")
    s.add_argument("--platform", action="append", default=[])
    ld = sub.add_parser("load")
    ld.add_argument("archive")
    ld.add_argument("store")
    ld.add_argument("--platform", action="append", default=[])
    a = ap.parse_args(argv)
    t = time.perf_counter()
    try:
        moved = save(a.store, a.ref, a.platform, a.out) if a.cmd == "save" else load(a.archive, a.store, a.platform)
    except (Fault, OSError, tarfile.TarError, KeyError, ValueError) as e:
        print(f"plain_python: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"op": time.perf_counter() - t, "bytes": moved}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
