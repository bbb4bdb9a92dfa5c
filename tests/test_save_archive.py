"""save: the archive itself (deterministic bytes, entry order, headers), where it goes (path, file object,
bytes), compression, verification of store blobs, the GIL, and SaveReport (issue 2 §3; README "Guarantees",
docs/ARCHITECTURE.md "Save")."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading

import ocitar
import pytest
from _helpers import OCI_LAYOUT, OCI_MANIFEST, app_blob, blob_name, store_blob
from ocitar.testing import Image, Layer, Platform, build_store
from test_save_helpers import (
    APP,
    blob_digests,
    check_archive,
    flip_byte,
    index_json,
    listing,
    manifest_json,
    member_names,
    open_tar,
    put_blob,
    raw_headers,
    read_member,
    truncate,
    write_store_index,
)

# determinism, order, headers ------------------------------------------------------------------------


def test_same_save_twice_gives_identical_bytes(store, out):
    refs = ["app:1.0", "app:latest", "win:ltsc2022", store.images[3].digest]
    a = ocitar.save(store.path, refs, prefer="linux/amd64")
    b = ocitar.save(store.path, refs, prefer="linux/amd64")
    assert a == b
    ocitar.save(store.path, refs, prefer="linux/amd64", output=out / "a.tar")
    assert (out / "a.tar").read_bytes() == a
    buf = io.BytesIO()
    ocitar.save(store.path, refs, prefer="linux/amd64", output=buf)
    assert buf.getvalue() == a


def test_bytes_do_not_depend_on_store_location_or_file_times(tmp_path):
    one = build_store(tmp_path / "one", [APP])
    two = build_store(tmp_path / "elsewhere" / "two", [APP])
    for root, _dirs, files in os.walk(two.path):
        for f in files:
            os.utime(os.path.join(root, f), (1_700_000_000, 1_700_000_000))
            os.chmod(os.path.join(root, f), 0o600)
    a = ocitar.save(one.path, "app:1.0", ["linux/arm64"], prefer="linux/arm64")
    b = ocitar.save(two.path, "app:1.0", ["linux/arm64"], prefer="linux/arm64")
    assert a == b


def test_entry_order(store):
    data = ocitar.save(store.path, ["app:1.0", "win:ltsc2022"])
    names = member_names(data)
    blobs = sorted(blob_name(d) for d in blob_digests(data))
    assert len(blobs) == len(set(store.image("app:1.0").blobs) | set(store.image("win:ltsc2022").blobs))
    assert names == ["blobs/", "blobs/sha256/", *blobs, "index.json", "manifest.json", "oci-layout"]


def test_headers(store):
    data = ocitar.save(store.path, "app:1.0")
    headers = raw_headers(data)
    assert headers, "no entries"
    for h in headers:
        assert (h["uid"], h["gid"], h["mtime"]) == (0, 0, 0), h["name"]
        assert (h["uname"], h["gname"]) == (b"", b""), h["name"]
        assert h["magic"] == b"ustar\0", h["name"]
        if h["name"].endswith("/"):
            assert (h["type"], h["mode"], h["size"]) == (b"5", 0o755, 0), h["name"]
        elif h["name"] in ("index.json", "manifest.json"):
            assert (h["type"], h["mode"]) == (b"0", 0o644), h["name"]
        else:
            assert (h["type"], h["mode"]) == (b"0", 0o444), h["name"]
    # tarfile agrees.
    with open_tar(data) as t:
        for m in t.getmembers():
            assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0)
    # The archive ends with the two zero blocks of a tar end marker.
    assert len(data) % 512 == 0 and data.endswith(bytes(1024))


def test_oci_layout_file(store):
    data = ocitar.save(store.path, "app:1.0")
    assert read_member(data, "oci-layout") == OCI_LAYOUT


def test_every_blob_is_the_store_blob(store):
    data = ocitar.save(store.path, ["app:1.0", "registry.example.com:5000/team/tools:0.3"])
    check_archive(data, store)
    for d in blob_digests(data):
        assert read_member(data, blob_name(d)) == store_blob(store, d)


# outputs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_str", [True, False])
def test_output_path(store, out, as_str):
    target = out / "app.tar"
    report = ocitar.save(store.path, "app:1.0", output=str(target) if as_str else target)
    assert isinstance(report, ocitar.SaveReport)
    assert listing(out) == ["app.tar"]
    data = target.read_bytes()
    assert data == ocitar.save(store.path, "app:1.0")
    assert report.archive_bytes == len(data)


def test_output_path_is_written_beside_and_renamed(store, out):
    target = out / "app.tar"
    seen: list[list[str]] = []

    def progress(done: int, total: int) -> None:
        seen.append(listing(out))

    ocitar.save(store.path, "app:1.0", output=target, progress=progress)
    assert seen, "progress was never called"
    during = seen[0]
    assert "app.tar" not in during, "the final name appears only once the archive is complete"
    assert len(during) == 1 and during[0].startswith("."), during
    assert listing(out) == ["app.tar"]


def test_output_path_replaces_an_existing_file(store, out):
    target = out / "app.tar"
    target.write_bytes(b"old")
    ocitar.save(store.path, "app:1.0", output=target)
    assert target.read_bytes() == ocitar.save(store.path, "app:1.0")
    assert listing(out) == ["app.tar"]


def test_output_in_missing_directory(store, tmp_path, unchanged):
    target = tmp_path / "no" / "such" / "app.tar"
    with unchanged(store.path, outside=tmp_path), pytest.raises(FileNotFoundError) as e:
        ocitar.save(store.path, "app:1.0", output=target)
    assert str(tmp_path / "no" / "such") in str(e.value)


def test_output_onto_a_directory(store, out, unchanged):
    (out / "app.tar").mkdir()
    with unchanged(store.path, outside=out), pytest.raises(IsADirectoryError) as e:
        ocitar.save(store.path, "app:1.0", output=out / "app.tar")
    assert "app.tar" in str(e.value)
    assert listing(out) == [], "no temporary file is left"


def test_relative_output_path(store, out, monkeypatch):
    monkeypatch.chdir(out)
    ocitar.save(store.path, "app:1.0", output="rel.tar")
    assert listing(out) == ["rel.tar"]
    assert (out / "rel.tar").read_bytes() == ocitar.save(store.path, "app:1.0")


def test_output_file_objects(store, out):
    want = ocitar.save(store.path, "app:1.0")
    buf = io.BytesIO()
    report = ocitar.save(store.path, "app:1.0", output=buf)
    assert isinstance(report, ocitar.SaveReport)
    assert buf.getvalue() == want
    with open(out / "f.tar", "wb") as f:
        ocitar.save(store.path, "app:1.0", output=f)
    assert (out / "f.tar").read_bytes() == want


def test_output_none_returns_bytes(store):
    data = ocitar.save(store.path, "app:1.0")
    assert type(data) is bytes
    assert data[257:263] == b"ustar\0"


def test_progress_error_cancels_and_leaves_nothing(store, out, unchanged):
    class Stop(Exception):
        pass

    def progress(done: int, total: int) -> None:
        raise Stop(f"{done}/{total}")

    with unchanged(store.path, outside=out), pytest.raises(Stop):
        ocitar.save(store.path, "app:1.0", output=out / "app.tar", progress=progress)
    assert listing(out) == []


def test_progress_reports_blob_bytes(store):
    calls: list[tuple[int, int]] = []
    report = ocitar.save(
        store.path, "app:1.0", output=io.BytesIO(), progress=lambda d, t: calls.append((d, t))
    )
    assert calls and calls[-1] == (report.blob_bytes, report.blob_bytes)
    assert all(t == report.blob_bytes and 0 <= d <= t for d, t in calls)


# compression ----------------------------------------------------------------------------------------


def test_gzip(store, out):
    plain = ocitar.save(store.path, "app:1.0")
    gz = ocitar.save(store.path, "app:1.0", compression="gzip")
    assert gz[:2] == b"\x1f\x8b"
    assert gz[4:8] == bytes(4), "gzip header mtime is 0"
    assert gzip.decompress(gz) == plain
    assert ocitar.save(store.path, "app:1.0", compression="gzip") == gz
    report = ocitar.save(store.path, "app:1.0", compression="gzip", output=out / "a.tar.gz")
    assert (out / "a.tar.gz").read_bytes() == gz
    assert report.archive_bytes == len(plain)


def test_zstd(store, out, tmp_path):
    app = store.image("app:1.0")
    plain = ocitar.save(store.path, "app:1.0")
    zst = ocitar.save(store.path, "app:1.0", compression="zstd")
    assert zst[:4] == b"\x28\xb5\x2f\xfd"
    assert ocitar.save(store.path, "app:1.0", compression="zstd") == zst
    ocitar.save(store.path, "app:1.0", compression="zstd", output=out / "a.tar.zst")
    assert (out / "a.tar.zst").read_bytes() == zst
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        zstandard = None
    if zstandard is not None:
        assert zstandard.ZstdDecompressor().decompressobj().decompress(zst) == plain
    elif shutil.which("zstd"):
        p = subprocess.run(["zstd", "-dc"], input=zst, capture_output=True, check=True)
        assert p.stdout == plain
    # Round trip through load.
    report = ocitar.load(out / "a.tar.zst", store=tmp_path / "loaded")
    (img,) = report.images
    assert img.digest == app.digest
    assert img.names == ("app:1.0",)
    for d in app.blobs:
        assert store_blob(tmp_path / "loaded", d) == store_blob(store, d)


def test_gzip_round_trip_through_load(store, tmp_path):
    app = store.image("app:1.0")
    gz = ocitar.save(store.path, "app:1.0", ["linux/arm/v7"], compression="gzip", index="subset")
    report = ocitar.load(gz, store=tmp_path / "loaded")
    (img,) = report.images
    assert img.platforms == ("linux/arm/v7",)
    assert store_blob(tmp_path / "loaded", app.manifests["linux/arm/v7"]) == store_blob(
        store, app.manifests["linux/arm/v7"]
    )


@pytest.mark.parametrize("compression", ["xz", "bzip2", "GZIP", "none", ""])
def test_invalid_compression(store, out, unchanged, compression):
    with unchanged(store.path, outside=out), pytest.raises(ValueError) as e:
        ocitar.save(store.path, "app:1.0", output=out / "a.tar", compression=compression)  # type: ignore[arg-type]
    assert json.dumps(compression) in str(e.value)
    assert listing(out) == []


@pytest.mark.parametrize("index", ["Keep", "full", ""])
def test_invalid_index_shape(store, out, unchanged, index):
    with unchanged(store.path, outside=out), pytest.raises(ValueError) as e:
        ocitar.save(store.path, "app:1.0", output=out / "a.tar", index=index)  # type: ignore[arg-type]
    assert "keep" in str(e.value) and json.dumps(index) in str(e.value)
    assert listing(out) == []


# verification of store blobs ------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["layer", "config", "manifest", "index", "attestation"])
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_store_blob(store, out, unchanged, which, damage):
    digest = app_blob(store, which)
    path = store.blob_path(digest)
    (flip_byte if damage == "flip" else truncate)(path)
    target = out / "app.tar"
    target.write_bytes(b"previous archive")
    with unchanged(store.path, outside=out), pytest.raises(ocitar.DigestMismatchError) as e:
        ocitar.save(store.path, "app:1.0", ["linux/arm64"], output=target)
    msg = str(e.value)
    assert digest in msg
    assert str(path) in msg
    assert ("digest mismatch" if damage == "flip" else "size mismatch") in msg
    assert listing(out) == ["app.tar"], "no temporary file is left"
    assert target.read_bytes() == b"previous archive"
    with pytest.raises(ocitar.DigestMismatchError):
        ocitar.save(store.path, "app:1.0", ["linux/arm64"])


def test_damaged_blob_of_unsaved_platform_does_not_matter(store):
    app = store.image("app:1.0")
    flip_byte(store.blob_path(app.layers["linux/arm64/v8"][1]))
    data = ocitar.save(store.path, "app:1.0", ["linux/amd64"])
    check_archive(data, store)
    assert app.layers["linux/amd64"][1] in blob_digests(data)


def test_damaged_shared_layer_leaves_no_output(store, out, unchanged):
    app = store.image("app:1.0")
    flip_byte(store.blob_path(app.layers["linux/amd64"][0]), offset=0)
    with unchanged(store.path, outside=out), pytest.raises(ocitar.DigestMismatchError):
        ocitar.save(store.path, ["win:ltsc2022", "app:1.0"], output=out / "a.tar", compression="gzip")
    assert listing(out) == []


# GIL ------------------------------------------------------------------------------------------------


def test_gil_is_released_during_save(tmp_path):
    """While a save of a 24 MiB store runs in a thread, the main thread keeps running Python code.

    The switch interval is raised for the test, so a save that held the GIL would not let the main thread
    run a single iteration before it finished (measured: 0); with the GIL released the main thread reaches
    the target while the save is still running."""
    big = Layer(size=24 << 20, seed="big", compression="none")
    store = build_store(tmp_path / "big", [Image(names=("big:1",), platforms=(Platform("linux/amd64", layers=(big,)),))])
    target = tmp_path / "big.tar"
    started = threading.Event()
    result: dict[str, object] = {}

    def work() -> None:
        started.set()
        try:
            result["report"] = ocitar.save(store.path, "big:1", output=target)
        except BaseException as e:  # pragma: no cover - surfaced below
            result["error"] = e

    goal = 20_000
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.2)
    try:
        t = threading.Thread(target=work)
        t.start()
        started.wait()
        count = 0
        while count < goal and t.is_alive():
            count += 1
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert "error" not in result, result.get("error")
    assert target.stat().st_size > 24 << 20
    assert count == goal, f"the main thread ran {count} iterations while the save ran"


# SaveReport -----------------------------------------------------------------------------------------


def test_report_counts(store, out):
    report = ocitar.save(store.path, ["app:1.0", "win:ltsc2022"], output=out / "a.tar")
    data = (out / "a.tar").read_bytes()
    blobs = blob_digests(data)
    assert report.blobs == len(blobs)
    assert report.blob_bytes == sum(len(read_member(data, blob_name(d))) for d in blobs)
    assert report.archive_bytes == len(data)
    assert [i.digest for i in report.images] == [e["digest"] for e in index_json(data)["manifests"]]
    assert len(manifest_json(data)) == 2


def test_report_is_frozen(store, out):
    report = ocitar.save(store.path, "app:1.0", output=out / "a.tar")
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.blobs = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.images[0].names = ()  # type: ignore[misc]
    assert isinstance(report.images, tuple) and isinstance(report.images[0].platforms, tuple)


def test_report_to_dict(store, out):
    app = store.image("app:1.0")
    report = ocitar.save(store.path, ["app:1.0", "app:latest"], ["linux/arm64"], output=out / "a.tar", index="subset")
    d = report.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d) == {"images", "blobs", "blob_bytes", "archive_bytes", "output"}
    (img,) = d["images"]
    assert set(img) == {"names", "digest", "original_digest", "media_type", "platforms", "absent", "attestations"}
    assert img["names"] == ["app:1.0", "app:latest"]
    assert img["platforms"] == ["linux/arm64"]
    assert img["original_digest"] == app.digest
    assert img["digest"] == report.images[0].digest != app.digest
    assert (d["blobs"], d["blob_bytes"], d["archive_bytes"]) == (
        report.blobs,
        report.blob_bytes,
        report.archive_bytes,
    )


def test_report_repr(store, out):
    app = store.image("app:1.0")
    report = ocitar.save(store.path, ["app:1.0", "app:latest"], ["linux/arm64", "linux/arm/v7"], output=out / "a.tar")
    text = repr(report)
    assert "app:1.0" in text and "app:latest" in text
    assert "linux/arm64" in text and "linux/arm/v7" in text
    assert "linux/amd64 (absent)" in text, "the kept index lists it without content"
    assert app.digest[7:19] in text
    html = report._repr_html_()
    assert "app:1.0" in html and "linux/arm/v7" in html


# other digest algorithms ----------------------------------------------------------------------------


def test_sha512_blob_and_long_entry_names(tmp_path):
    """A sha512-addressed layer: its entry name is over 100 bytes (a GNU long-name record), it sorts after
    the sha256 entries with its own directory, and it is verified like any blob."""
    root = build_store(tmp_path / "s512", []).path
    layer = bytes(range(256)) * 4
    hex512 = hashlib.sha512(layer).hexdigest()
    (root / "blobs" / "sha512").mkdir()
    (root / "blobs" / "sha512" / hex512).write_bytes(layer)
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": ["sha512:" + hex512]}}
    ).encode()
    config_digest = put_blob(root, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha512:" + hex512, "size": 1024}],
        }
    ).encode()
    manifest_digest = put_blob(root, manifest)
    entry = {
        "mediaType": OCI_MANIFEST,
        "digest": manifest_digest,
        "size": len(manifest),
        "annotations": {"io.containerd.image.name": "docker.io/library/s512:1", "org.opencontainers.image.ref.name": "1"},
    }
    write_store_index(root, {"schemaVersion": 2, "manifests": [entry]})
    data = ocitar.save(root, "s512:1")
    check_archive(data, root)
    long_name = f"blobs/sha512/{hex512}"
    assert len(long_name) > 100
    assert member_names(data) == [
        "blobs/",
        "blobs/sha256/",
        *sorted(blob_name(d) for d in (config_digest, manifest_digest)),
        "blobs/sha512/",
        long_name,
        "index.json",
        "manifest.json",
        "oci-layout",
    ]
    assert read_member(data, long_name) == layer
    assert manifest_json(data)[0]["Layers"] == [long_name]
    flip_byte(root / "blobs" / "sha512" / hex512)
    with pytest.raises(ocitar.DigestMismatchError, match="sha512:" + hex512):
        ocitar.save(root, "s512:1")


class _DiskFull(OSError):
    pass


class _FailingFile(io.RawIOBase):
    """A writable file object that raises once ``limit`` bytes have been written to it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def]
        self.written += len(b)
        if self.written > self.limit:
            raise _DiskFull("disk full")
        return len(b)


@pytest.mark.parametrize("limit", [0, 1 << 20])
@pytest.mark.parametrize("compression", ["gzip", "zstd", None])
def test_a_file_object_that_fails_mid_archive_raises_its_error(tmp_path, unchanged, compression, limit):
    # Larger than a compression piece, so the failure comes while pieces are still being compressed.
    big = Layer(size=6 << 20, seed="fail-mid", compression="none")
    store = build_store(tmp_path / "s", [Image(names=("big:1",), platforms=(Platform("linux/amd64", layers=(big,)),))])
    with unchanged(store.path), pytest.raises(OSError, match="disk full"):
        ocitar.save(store.path, "big:1", output=_FailingFile(limit), compression=compression)
