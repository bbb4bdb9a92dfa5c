"""Inputs whose cost grows with a count, not with bytes (issue 11, "time that does not explode"): each must
cost linear or n·log n time in that count. Run by ``run.py`` (``--cases scale``; ``--smoke`` runs the
small sizes), each case a fresh process under ``/usr/bin/time`` like the other cases:

- ``names``: load one small image under N names (an OCI archive whose ``index.json`` lists it N times)
  into a new store: the names are merged into ``index.json`` under the store lock.
- ``docker-shared``: a Docker archive whose N ``manifest.json`` entries share one layer (and one config),
  named by path as ``docker save`` before 25 writes them: load from the path, and inspect.
- ``absent-layers``: an image index with a complete platform and one whose manifest lists N layers the
  archive lacks: load (the complete platform), and inspect.
- ``sparse``: an image index of K nested indexes, each listing N platforms whose manifests are absent,
  and one complete platform: load, and inspect.
- ``index-limit``: two loads that each pass every limit while together they would make ``index.json``
  larger than ocitar reads: the second is refused (``StoreError``), and ``ls`` still reads the store.

Every archive is generated here, deterministically; a kept work dir reuses them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1 << 20
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
IMAGE_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"

# One operation in a fresh process: `load ARCHIVE STORE` or `inspect ARCHIVE`; prints {"op": seconds,
# "result": ...} (or the error's class name, for an operation expected to fail).
OP = (
    "import sys,json,time,ocitar\n"
    "op,src=sys.argv[1],sys.argv[2]\n"
    "t=time.perf_counter()\n"
    "try:\n"
    "    r=ocitar.load(src,store=sys.argv[3]) if op=='load' else ocitar.inspect(src)\n"
    "    res='ok'\n"
    "except ocitar.OcitarError as e:\n"
    "    res=type(e).__name__+': '+str(e)[:200]\n"
    "print(json.dumps({'op':time.perf_counter()-t,'result':res}))"
)


@dataclass(frozen=True)
class Sizes:
    names: int
    docker_entries: int
    docker_layer: int
    absent_layers: int
    sparse_indexes: int
    sparse_platforms: int


FULL = Sizes(
    names=20_000,
    docker_entries=1_200,
    docker_layer=64 * MIB,
    absent_layers=99_000,
    sparse_indexes=4,
    sparse_platforms=45_000,
)
#: A quarter of the full counts and layer size: the old quadratic paths finish in seconds to minutes.
QUARTER = Sizes(
    names=5_000,
    docker_entries=300,
    docker_layer=16 * MIB,
    absent_layers=25_000,
    sparse_indexes=4,
    sparse_platforms=11_250,
)
SIZES = {"full": FULL, "quarter": QUARTER}
SMOKE = Sizes(
    names=2_000, docker_entries=50, docker_layer=1 * MIB, absent_layers=5_000, sparse_indexes=4, sparse_platforms=2_000
)


class ScaleError(Exception):
    """An operation gave another result than the case expects."""


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def desc(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha(data), "size": len(data), **extra}


def write_tar(path: Path, files: dict[str, bytes]) -> None:
    tmp = path.with_suffix(".part")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    tmp.rename(path)


class Oci:
    """Blobs and ``index.json`` of an OCI layout archive."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}

    def put(self, media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
        d = desc(media_type, data, **extra)
        self.files["blobs/sha256/" + d["digest"][7:]] = data
        return d

    def platform(self, seed: str, arch: str = "amd64") -> dict[str, Any]:
        """A complete one-layer platform manifest; returns its descriptor."""
        layer = self.put(OCI_LAYER, gzip.compress(seed.encode() * 64, mtime=0))
        config = self.put(OCI_CONFIG, canonical({"architecture": arch, "os": "linux", "rootfs": {"type": "layers"}}))
        m = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]})
        return self.put(OCI_MANIFEST, m, platform={"architecture": arch, "os": "linux"})

    def write(self, path: Path, entries: list[dict[str, Any]]) -> None:
        self.files["index.json"] = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
        write_tar(path, self.files)


def named(d: dict[str, Any], repo: str, tag: str) -> dict[str, Any]:
    return {**d, "annotations": {IMAGE_NAME: f"docker.io/{repo}:{tag}", REF_NAME: tag}}


def names_archive(path: Path, n: int, prefix: str = "bench/names", pad: int = 0) -> None:
    """One small image named ``n`` times (``pad`` characters longer tags make each entry larger)."""
    oci = Oci()
    top = oci.platform("names")
    tag = "t" + "x" * pad
    oci.write(path, [named(top, f"{prefix}{i}", tag) for i in range(n)])


def docker_shared(path: Path, entries: int, layer_size: int) -> None:
    """A Docker archive: ``entries`` images sharing one path-named layer and one config."""
    layer = random.Random(11).randbytes(layer_size)
    config = canonical({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    manifest = [
        {"Config": "cfg.json", "RepoTags": [f"bench/docker{i}:1"], "Layers": ["0123abcd/layer.tar"]}
        for i in range(entries)
    ]
    write_tar(path, {"cfg.json": config, "0123abcd/layer.tar": layer, "manifest.json": canonical(manifest)})


def absent_layers(path: Path, n: int) -> None:
    """amd64 complete; arm64's manifest present, its ``n`` layers absent."""
    oci = Oci()
    amd = oci.platform("absent")
    config = oci.put(OCI_CONFIG, canonical({"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers"}}))
    layers = [{"mediaType": OCI_LAYER, "digest": sha(b"absent %d" % i), "size": 1000 + i} for i in range(n)]
    m = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers})
    arm = oci.put(OCI_MANIFEST, m, platform={"architecture": "arm64", "os": "linux"})
    index = oci.put(OCI_INDEX, canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd, arm]}))
    oci.write(path, [named(index, "bench/absent", "1")])


def sparse(path: Path, indexes: int, platforms: int) -> None:
    """A top index of one complete platform and ``indexes`` nested indexes of ``platforms`` absent ones."""
    oci = Oci()
    children = [oci.platform("sparse")]
    for k in range(indexes):
        absent = [
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha(b"sparse %d %d" % (k, i)),
                "size": 500,
                "platform": {"architecture": f"arch{i}", "os": "linux", "variant": f"v{k}"},
            }
            for i in range(platforms)
        ]
        children.append(
            oci.put(OCI_INDEX, canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": absent}))
        )
    top = oci.put(OCI_INDEX, canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}))
    oci.write(path, [named(top, "bench/sparse", "1")])


def index_entries(store: Path) -> int:
    return len(json.loads((store / "index.json").read_bytes())["manifests"])


# --------------------------------------------------------------------------- running


@dataclass
class Result:
    case: str
    what: str
    wall: float
    op: float | None
    rss_kib: int
    result: str


def build_all(work: Path, s: Sizes) -> dict[str, Path]:
    """Generate (or reuse, when their sizes match) every archive under ``work/scale``."""
    d = work / "scale"
    d.mkdir(parents=True, exist_ok=True)
    marker = d / "params"
    params = json.dumps({**s.__dict__, "v": 2})
    paths = {k: d / f"{k}.tar" for k in ("names", "docker-shared", "absent-layers", "sparse", "limit-a", "limit-b")}
    if marker.exists() and marker.read_text() == params and all(p.exists() for p in paths.values()):
        return paths
    marker.unlink(missing_ok=True)
    names_archive(paths["names"], s.names)
    docker_shared(paths["docker-shared"], s.docker_entries, s.docker_layer)
    absent_layers(paths["absent-layers"], s.absent_layers)
    sparse(paths["sparse"], s.sparse_indexes, s.sparse_platforms)
    # Each about 11 MiB of index.json (long names and tags, as a reference allows), together over 20 MiB.
    long = "bench/" + "n" * 200 + "/"
    names_archive(paths["limit-a"], 15_000, prefix=long + "a", pad=120)
    names_archive(paths["limit-b"], 15_000, prefix=long + "b", pad=120)
    marker.write_text(params)
    return paths


def run(work: Path, s: Sizes, measure: Any, env: dict[str, str], py: str) -> list[Result]:
    """Measure every case once at sizes ``s``; ``measure(cmd, env)`` is run.py's (fresh process, peak RSS)."""
    paths = build_all(work, s)
    out = work / "out" / "scale-store"
    results: list[Result] = []

    def one(case: str, what: str, op: str, src: Path, store: Path | None = None, fresh: bool = True) -> str:
        if fresh and store is not None and store.exists():
            shutil.rmtree(store)
        cmd = [py, "-c", OP, op, str(src)] + ([str(store)] if store is not None else [])
        sample = measure(cmd, env)
        result = str(sample.out.get("result", "?"))
        results.append(Result(case, what, sample.wall, sample.op, sample.rss_kib, result))
        print(f"\n  {case}: {what}: {sample.op or 0:.2f} s, {sample.rss_kib // 1024} MiB", end="", flush=True)
        return result

    def expect(got: str, want: str, case: str) -> None:
        if not got.startswith(want):
            raise ScaleError(f"scale case {case}: expected {want}, got {got}")

    n = s
    expect(one("names", f"load, one image under {n.names} names", "load", paths["names"], out), "ok", "names")
    if index_entries(out) != n.names:
        raise ScaleError(f"names: {index_entries(out)} index.json entries, expected {n.names}")
    what = f"{n.docker_entries} entries sharing one {n.docker_layer // MIB} MiB layer"
    expect(one("docker-shared", "load, " + what, "load", paths["docker-shared"], out), "ok", "docker-shared")
    expect(one("docker-shared", "inspect, " + what, "inspect", paths["docker-shared"]), "ok", "docker-shared")
    what = f"a manifest of {n.absent_layers} absent layers"
    expect(one("absent-layers", "load, " + what, "load", paths["absent-layers"], out), "ok", "absent-layers")
    expect(one("absent-layers", "inspect, " + what, "inspect", paths["absent-layers"]), "ok", "absent-layers")
    what = f"{n.sparse_indexes} nested indexes x {n.sparse_platforms} absent platforms"
    expect(one("sparse", "load, " + what, "load", paths["sparse"], out), "ok", "sparse")
    expect(one("sparse", "inspect, " + what, "inspect", paths["sparse"]), "ok", "sparse")
    expect(one("index-limit", "load 15 000 long names", "load", paths["limit-a"], out), "ok", "index-limit")
    got = one("index-limit", "load 15 000 more (over 20 MiB)", "load", paths["limit-b"], out, fresh=False)
    expect(got, "StoreError", "index-limit")
    expect(one("index-limit", "inspect the store after", "inspect", out), "ok", "index-limit")
    return results


def table(results: list[Result], fmt_s: Any) -> str:
    rows = ["| case | operation | time (op) | whole process | peak RSS |", "|---|---|---:|---:|---:|"]
    for r in results:
        rows.append(f"| {r.case} | {r.what} | {fmt_s(r.op)} | {fmt_s(r.wall)} | {r.rss_kib / 1024:.0f} MiB |")
    return "\n".join(rows)
