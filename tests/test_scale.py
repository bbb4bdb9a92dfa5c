"""Paths whose cost grows with a count (many names, entries sharing a layer, many absent layers or
platforms): what they compute, at small counts. Their time and memory at large counts are measured by
``benches/run.py --cases scale``, not here.

Also: a load that would make ``index.json`` larger than ocitar reads is refused, the store unchanged, so a
store ocitar wrote can always be read again.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import _archives as A
import ocitar
import pytest
from ocitar import PlatformNotFoundError, StoreError

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
#: The largest index.json (and any JSON document) ocitar reads.
MAX_DOCUMENT = 20 << 20


def put(blobs: dict[str, bytes], media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    d = {"mediaType": media_type, "digest": A.sha256(data), "size": len(data), **extra}
    blobs[d["digest"]] = data
    return d


def platform(blobs: dict[str, bytes], arch: str, layers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A platform manifest (one present layer, then ``layers``); returns its descriptor."""
    layer = put(blobs, OCI_LAYER, gzip.compress(arch.encode() * 100, mtime=0))
    config = put(blobs, A.OCI_CONFIG, A.canonical({"architecture": arch, "os": "linux", "rootfs": {"type": "layers"}}))
    doc = {"schemaVersion": 2, "mediaType": A.OCI_MANIFEST, "config": config, "layers": [layer, *(layers or [])]}
    return put(blobs, A.OCI_MANIFEST, A.canonical(doc), platform={"architecture": arch, "os": "linux"})


def index(blobs: dict[str, bytes], children: list[dict[str, Any]]) -> dict[str, Any]:
    return put(blobs, A.OCI_INDEX, A.canonical({"schemaVersion": 2, "mediaType": A.OCI_INDEX, "manifests": children}))


def named(d: dict[str, Any], name: str) -> dict[str, Any]:
    """``d`` as an index.json entry named ``name`` (a familiar name with a tag, on docker.io)."""
    full = f"docker.io/{name}" if "/" in name else f"docker.io/library/{name}"
    return {**d, "annotations": {A.IMAGE_NAME: full, A.REF_NAME: name.rsplit(":", 1)[1]}}


def oci_archive(blobs: dict[str, bytes], entries: list[dict[str, Any]]) -> bytes:
    members = [A.file(A.blob_name(d), blobs[d]) for d in sorted(blobs)]
    doc = {"schemaVersion": 2, "mediaType": A.OCI_INDEX, "manifests": entries}
    return A.tar_bytes([*members, A.file("index.json", A.canonical(doc)), A.file("oci-layout", A.OCI_LAYOUT)])


def store_entries(store: Path) -> list[tuple[str, str | None]]:
    """(digest, io.containerd.image.name) of every index.json entry, in order."""
    doc = json.loads((store / "index.json").read_bytes())
    return [(e["digest"], e.get("annotations", {}).get(A.IMAGE_NAME)) for e in doc["manifests"]]


def store_blobs(store: Path) -> set[str]:
    return {"sha256:" + p.name for p in (store / "blobs" / "sha256").iterdir()}


# --------------------------------------------------------------------------
# many names for one image
# --------------------------------------------------------------------------


def test_many_names_merge_into_the_index_and_move_off_other_images(tmp_path: Path) -> None:
    blobs: dict[str, bytes] = {}
    old, new = platform(blobs, "amd64"), platform(blobs, "arm64")
    store = tmp_path / "s"
    # The store: `old` under n0..n199 (even ones) and as an unnamed entry.
    ocitar.load(oci_archive(blobs, [named(old, f"n{i}:1") for i in range(0, 200, 2)] + [old]), store=store)
    assert len(store_entries(store)) == 100
    # One archive naming `new` 300 times: n0..n299. The even names below 200 move off `old`.
    report = ocitar.load(oci_archive(blobs, [named(new, f"n{i}:1") for i in range(300)]), store=store)
    (img,) = report.images
    assert img.moved == tuple(sorted(f"n{i}:1" for i in range(0, 200, 2)))
    assert img.names == tuple(f"n{i}:1" for i in range(300))
    got = store_entries(store)
    # `old` keeps one unnamed entry; every name is listed once, on `new`, in the order loaded.
    assert got == [(old["digest"], None)] + [(new["digest"], f"docker.io/library/n{i}:1") for i in range(300)]
    # Loading the same names again changes nothing.
    before = (store / "index.json").read_bytes()
    again = ocitar.load(oci_archive(blobs, [named(new, f"n{i}:1") for i in range(300)]), store=store)
    assert again.images[0].moved == ()
    assert (store / "index.json").read_bytes() == before


def test_many_images_in_one_archive_each_keep_their_names(tmp_path: Path) -> None:
    blobs: dict[str, bytes] = {}
    tops = [platform(blobs, f"arch{i}") for i in range(40)]
    # Each image named three times, the names of one image not adjacent in index.json.
    entries = [named(tops[i], f"img{i}-{k}:1") for k in range(3) for i in range(40)]
    report = ocitar.load(oci_archive(blobs, entries), store=tmp_path / "s")
    assert [i.digest for i in report.images] == [t["digest"] for t in tops]
    assert [i.names for i in report.images] == [tuple(f"img{i}-{k}:1" for k in range(3)) for i in range(40)]
    inv = ocitar.inspect(tmp_path / "s")
    assert [i.names for i in inv.images] == [tuple(f"img{i}-{k}:1" for k in range(3)) for i in range(40)]


# --------------------------------------------------------------------------
# Docker archives whose entries share a layer
# --------------------------------------------------------------------------


def docker_shared(entries: int) -> tuple[bytes, bytes, bytes]:
    """A Docker archive of ``entries`` images sharing one path-named layer and one config; and those."""
    layer = gzip.compress(b"shared layer " * 1000, mtime=0)
    cfg = A.canonical({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    manifest = [
        {"Config": "c/cfg.json", "RepoTags": [f"shared{i}:1"], "Layers": ["l/layer.tar"]} for i in range(entries)
    ]
    files = [A.directory("c/"), A.file("c/cfg.json", cfg), A.directory("l/"), A.file("l/layer.tar", layer)]
    return A.docker_archive(manifest, files), layer, cfg


@pytest.mark.parametrize("how", ["path", "bytes"])
def test_docker_entries_sharing_a_layer_load_it_once(tmp_path: Path, how: str) -> None:
    data, layer, cfg = docker_shared(5)
    archive = tmp_path / "a.tar"
    archive.write_bytes(data)
    store = tmp_path / "s"
    report = ocitar.load(archive if how == "path" else data, store=store)
    assert [i.names for i in report.images] == [(f"shared{i}:1",) for i in range(5)]
    # One synthesized manifest for all five (same config and layer): one image, five names.
    assert len({i.digest for i in report.images}) == 1
    manifest = json.loads((store / A.blob_name(str(report.images[0].digest))).read_bytes())
    assert manifest["layers"] == [
        {
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "size": len(layer),
            "digest": A.sha256(layer),
        }
    ]
    assert store_blobs(store) == {A.sha256(layer), A.sha256(cfg), str(report.images[0].digest)}
    assert (store / A.blob_name(A.sha256(layer))).read_bytes() == layer
    ocitar.verify(store)
    inv = ocitar.inspect(archive)
    assert inv.format == "docker" and inv.blobs == 3
    assert [i.platforms[0].layers for i in inv.images] == [1] * 5


def test_docker_layers_hashed_to_learn_their_digest_leave_nothing_behind(tmp_path: Path, unchanged: Any) -> None:
    data, layer, cfg = docker_shared(3)
    archive = tmp_path / "a.tar"
    archive.write_bytes(data)
    store = tmp_path / "s"
    # Refused after the layer was hashed (and copied aside): no store, nothing left.
    with pytest.raises(PlatformNotFoundError):
        ocitar.load(archive, ["linux/arm64"], store=store)
    assert not store.exists()
    first = ocitar.load(archive, store=store)
    assert first.blobs_written == 3
    # Loaded again: every blob is there already; the store is unchanged, no staging file is left.
    with unchanged(store):
        again = ocitar.load(archive, store=store)
    assert (again.blobs_written, again.blobs_present) == (0, 3)
    assert sorted(p.name for p in store.iterdir()) == ["blobs", "index.json", "oci-layout"]
    ocitar.verify(store)


# --------------------------------------------------------------------------
# many absent layers, many absent platforms
# --------------------------------------------------------------------------


def test_a_manifest_of_many_absent_layers_is_an_absent_platform(tmp_path: Path) -> None:
    blobs: dict[str, bytes] = {}
    absent = [{"mediaType": OCI_LAYER, "digest": A.sha256(b"gone %d" % (i % 150)), "size": 7} for i in range(300)]
    amd, arm = platform(blobs, "amd64"), platform(blobs, "arm64", absent)
    top = index(blobs, [amd, arm])
    archive = tmp_path / "a.tar"
    archive.write_bytes(oci_archive(blobs, [named(top, "absent:1")]))
    store = tmp_path / "s"
    report = ocitar.load(archive, store=store)
    assert report.images[0].platforms == ("linux/amd64",)
    assert report.images[0].absent == ("linux/arm64",)
    assert arm["digest"] not in store_blobs(store)
    inv = ocitar.inspect(archive)
    assert [(p.platform, p.present) for p in inv.images[0].platforms] == [("linux/amd64", True), ("linux/arm64", False)]


def test_nested_sparse_indexes_list_platforms_in_index_order(tmp_path: Path) -> None:
    blobs: dict[str, bytes] = {}

    def gone(k: int, i: int) -> dict[str, Any]:
        return {
            "mediaType": A.OCI_MANIFEST,
            "digest": A.sha256(b"sparse %d %d" % (k, i)),
            "size": 100,
            "platform": {"architecture": f"a{k}x{i}", "os": "linux"},
        }

    present = platform(blobs, "amd64")
    nested = [index(blobs, [gone(k, i) for i in range(50)]) for k in range(3)]
    # The complete platform sits between two nested indexes.
    top = index(blobs, [nested[0], present, nested[1], nested[2]])
    archive = tmp_path / "a.tar"
    archive.write_bytes(oci_archive(blobs, [named(top, "sparse:1")]))
    want = (
        [f"linux/a0x{i}" for i in range(50)] + ["linux/amd64"] + [f"linux/a{k}x{i}" for k in (1, 2) for i in range(50)]
    )
    inv = ocitar.inspect(archive)
    assert [p.platform for p in inv.images[0].platforms] == want
    assert [p.present for p in inv.images[0].platforms] == [p == "linux/amd64" for p in want]
    report = ocitar.load(archive, store=tmp_path / "s")
    assert report.images[0].platforms == ("linux/amd64",)
    assert report.images[0].absent == tuple(p for p in want if p != "linux/amd64")


# --------------------------------------------------------------------------
# a store ocitar can always read again
# --------------------------------------------------------------------------


def padded_store(path: Path, size: int) -> Path:
    """A store holding one image, its index.json padded (an unknown field ocitar keeps) to ``size`` bytes."""
    blobs: dict[str, bytes] = {}
    top = named(platform(blobs, "amd64"), "base:1")
    ocitar.load(oci_archive(blobs, [top]), store=path)
    doc = json.loads((path / "index.json").read_bytes())
    doc["x-pad"] = ""
    fill = size - len(json.dumps(doc, separators=(",", ":")).encode())
    doc["x-pad"] = "p" * fill
    (path / "index.json").write_bytes(json.dumps(doc, separators=(",", ":")).encode())
    assert (path / "index.json").stat().st_size == size
    return path


def test_a_load_that_would_make_index_json_unreadable_is_refused(tmp_path: Path, unchanged: Any) -> None:
    # Room for one more entry (about 330 bytes), not for three.
    store = padded_store(tmp_path / "s", MAX_DOCUMENT - 600)
    assert [i.names for i in ocitar.inspect(store).images] == [("base:1",)]
    blobs: dict[str, bytes] = {}
    more = [named(platform(blobs, "arm64"), f"more{i}:1") for i in range(3)]
    with unchanged(store), pytest.raises(StoreError) as e:
        ocitar.load(oci_archive(blobs, more), store=store)
    msg = str(e.value)
    assert "index.json" in msg and str(MAX_DOCUMENT) in msg
    # The store still reads, and takes what fits.
    assert [i.names for i in ocitar.inspect(store).images] == [("base:1",)]
    ocitar.load(oci_archive(blobs, more[:1]), store=store)
    assert [i.names for i in ocitar.inspect(store).images] == [("base:1",), ("more0:1",)]
    assert (store / "index.json").stat().st_size <= MAX_DOCUMENT


def test_two_loads_cannot_grow_index_json_past_the_read_limit(tmp_path: Path, unchanged: Any) -> None:
    blobs: dict[str, bytes] = {}
    top = platform(blobs, "amd64")
    # Long names (as references allow): about 11 MiB of index.json per archive, 22 MiB together.
    repo = "team/" + "r" * 200

    def archive(part: str) -> bytes:
        return oci_archive(blobs, [named(top, f"{repo}{part}{i}:{'t' * 120}") for i in range(15_000)])

    store = tmp_path / "s"
    ocitar.load(archive("a"), store=store)
    assert (store / "index.json").stat().st_size > 10 << 20
    second = archive("b")
    with unchanged(store), pytest.raises(StoreError) as e:
        ocitar.load(second, store=store)
    assert str(MAX_DOCUMENT) in str(e.value)
    assert len(ocitar.inspect(store).images[0].names) == 15_000
