"""``ocitar.verify`` (issue 4 §1): re-hash every blob of a store or an archive, check every size and that
every descriptor reachable from ``index.json`` is present (a sparse image's absent platforms are reported,
not faults), check ``oci-layout``, and raise on the first fault with a typed error naming the blob, its
path, and what was expected and found. A store a killed load left staging files in still verifies.
``verify`` reads only: the store is byte-identical afterwards, and nothing is left in the temporary
directory."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import _archives as A
import ocitar
import pytest
from _guards import assert_no_panic, no_panic  # noqa: F401
from _helpers import app_blob, sha
from ocitar import DigestMismatchError, InvalidArchiveError, OcitarError, StoreError
from ocitar.testing import BuiltStore, Image, Layer, Platform, build_store, tree_digest

IMAGES = [
    Image(
        names=("app:1.0", "app:latest"),
        platforms=(
            Platform("linux/amd64", layers=(Layer(4096, "base"), Layer(2048, "amd64")), attestation=True),
            Platform("linux/arm64/v8", layers=(Layer(4096, "base"), Layer(2048, "arm64"))),
        ),
    ),
    Image(names=("tools:0.3",), platforms=("linux/amd64", "linux/arm/v7"), media_types="docker", shape="nested"),
    Image(names=("single:1",), platforms=("linux/s390x",), shape="manifest"),
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> BuiltStore:
    return build_store(tmp_path_factory.mktemp("verify") / "store", IMAGES)


@pytest.fixture
def store(pristine: BuiltStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BuiltStore:
    """A private copy of the store (with TMPDIR private too, to see that verify leaves nothing there)."""
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    path = tmp_path / "store"
    shutil.copytree(pristine.path, path)
    return BuiltStore(path=path, images=pristine.images)


def verify_raises(path: Path, error: type[OcitarError], *names: str) -> str:
    """``verify(path)`` raises ``error`` naming every one of ``names``, and changes nothing."""
    before = tree_digest(path) if path.is_dir() else path.read_bytes()
    with pytest.raises(error) as info:
        ocitar.verify(path)
    message = str(info.value)
    for n in names:
        assert n in message, f"{n!r} not in: {message}"
    assert (tree_digest(path) if path.is_dir() else path.read_bytes()) == before
    return message


def tmp_is_empty() -> None:
    assert os.listdir(os.environ["TMPDIR"]) == []


# --------------------------------------------------------------------------
# what passes
# --------------------------------------------------------------------------


def test_a_good_store_verifies_and_is_described(store: BuiltStore) -> None:
    before = tree_digest(store.path)
    inv = ocitar.verify(store.path)
    assert tree_digest(store.path) == before
    assert inv.verified is True and inv.kind == "store"
    files = list((store.path / "blobs" / "sha256").iterdir())
    assert inv.blobs == len(files)
    assert inv.bytes == sum(f.stat().st_size for f in files)
    d = inv.to_dict()
    assert d["verified"] is True and d["path"] == str(store.path)
    assert {tuple(i["names"]) for i in d["images"]} == {("app:1.0", "app:latest"), ("tools:0.3",), ("single:1",)}
    app = next(i for i in d["images"] if "app:1.0" in i["names"])
    assert app["digest"] == store.image("app:1.0").digest
    assert all(p["present"] for p in app["platforms"])
    text = repr(inv)
    assert str(store.path) in text and "app:1.0" in text
    json.dumps(d)  # plain data
    tmp_is_empty()


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_a_saved_archive_verifies(store: BuiltStore, tmp_path: Path, compression: str | None) -> None:
    path = tmp_path / "all.tar"
    ocitar.save(store.path, ["app:1.0", "tools:0.3", "single:1"], output=path, compression=compression)
    inv = ocitar.verify(path)
    assert inv.verified and inv.kind == "archive" and inv.compression == compression
    assert {i.digest for i in inv.images} == {i.digest for i in store.images}
    tmp_is_empty()


def test_a_sparse_archive_reports_absent_platforms_without_failing(store: BuiltStore, tmp_path: Path) -> None:
    path = tmp_path / "sparse.tar"
    ocitar.save(store.path, "app:1.0", ["linux/arm64"], output=path, index="keep")
    inv = ocitar.verify(path)
    [image] = inv.images
    assert image.digest == store.image("app:1.0").digest
    present = {p.platform: p.present for p in image.platforms}
    assert present == {"linux/amd64": False, "linux/arm64": True}


def test_a_sparse_store_reports_absent_platforms_without_failing(store: BuiltStore) -> None:
    app = store.image("app:1.0")
    for blob in (app.manifests["linux/arm64/v8"],):
        store.blob_path(blob).unlink()
    inv = ocitar.verify(store.path)
    image = next(i for i in inv.images if "app:1.0" in i.names)
    assert {p.platform: p.present for p in image.platforms} == {"linux/amd64": True, "linux/arm64": False}


def test_staging_left_by_a_killed_load_is_ignored(store: BuiltStore) -> None:
    """What a SIGKILLed load leaves: a staging directory with partial files, a temporary index."""
    staging = store.path / ".ocitar-ingest-999999-0-123"
    staging.mkdir()
    (staging / "tmp-1").write_bytes(b"half a blob")
    (staging / "tmp-2").write_bytes(b"")
    (store.path / ".ocitar-ingest-999999-index.json.tmp").write_bytes(b'{"manifests": [')
    inv = ocitar.verify(store.path)
    assert inv.verified


def test_progress_reaches_the_total(store: BuiltStore) -> None:
    calls: list[tuple[int, int]] = []
    ocitar.verify(store.path, progress=lambda done, total: calls.append((done, total)))
    total = sum(f.stat().st_size for f in (store.path / "blobs" / "sha256").iterdir())
    assert calls and calls[-1] == (total, total)
    assert all(0 <= d <= t == total for d, t in calls)


# --------------------------------------------------------------------------
# store faults
# --------------------------------------------------------------------------


def _flip(path: Path, at: int = 100) -> bytes:
    b = bytearray(path.read_bytes())
    b[min(at, len(b) - 1)] ^= 0x01
    path.write_bytes(bytes(b))
    return bytes(b)


def _layer(store: BuiltStore) -> str:
    return app_blob(store, "layer", "linux/amd64")


@pytest.mark.parametrize("what", ["layer", "shared-layer", "config", "manifest", "index", "attestation"])
def test_a_flipped_byte_is_a_digest_mismatch_naming_blob_path_and_what_it_hashes_to(
    store: BuiltStore, what: str
) -> None:
    digest = app_blob(store, what, "linux/amd64" if what in ("layer", "attestation") else "linux/arm64/v8")
    path = store.blob_path(digest)
    found = sha(_flip(path))
    verify_raises(store.path, DigestMismatchError, digest, str(path), found)
    tmp_is_empty()


def test_a_flipped_byte_in_an_unreferenced_blob_is_found_too(store: BuiltStore) -> None:
    data = b"an unreferenced blob"
    path = store.path / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()
    path.write_bytes(data)
    ocitar.verify(store.path)
    found = sha(_flip(path, 3))
    verify_raises(store.path, DigestMismatchError, sha(data), str(path), found)


@pytest.mark.parametrize("change", ["truncated", "extended", "emptied"])
def test_a_blob_whose_size_differs_is_a_size_mismatch_naming_both_sizes(store: BuiltStore, change: str) -> None:
    digest = _layer(store)
    path = store.blob_path(digest)
    data = path.read_bytes()
    new = {"truncated": data[:-10], "extended": data + b"\0" * 7, "emptied": b""}[change]
    path.write_bytes(new)
    verify_raises(store.path, DigestMismatchError, digest, str(path.name), f"expected {len(data)} bytes", str(len(new)))


def test_a_descriptor_whose_size_differs_from_its_blob(tmp_path: Path) -> None:
    """The blob is intact; the manifest says it is one byte longer."""
    img = A.Oci(layer_desc=lambda p, d: {**d, "size": d["size"] + 1})
    store = A.write_store(tmp_path / "store", img.members())
    digest = img.layers["linux/amd64"]
    size = len(img.blobs[digest])
    verify_raises(store, DigestMismatchError, digest, f"expected {size + 1} bytes", f"found {size}")


@pytest.mark.parametrize("what", ["layer", "config"])
def test_a_missing_blob_is_a_store_error_naming_it(store: BuiltStore, what: str) -> None:
    app = store.image("app:1.0")
    digest = _layer(store) if what == "layer" else app.configs["linux/amd64"]
    path = store.blob_path(digest)
    path.unlink()
    verify_raises(store.path, StoreError, digest, str(path), "missing")


def test_a_missing_top_level_blob_is_a_store_error(store: BuiltStore) -> None:
    digest = store.image("tools:0.3").digest
    store.blob_path(digest).unlink()
    verify_raises(store.path, StoreError, digest.split(":")[1], "absent")


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (None, "missing"),
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"null", "found null"),
        (b"[]", "found []"),
        (b"{}", "found {}"),
        (b'{"imageLayoutVersion": 1}', "found"),
        (b'{"imageLayoutVersion": "2.0.0"}', '"2.0.0"'),
    ],
    ids=["missing", "empty", "not-json", "null", "array", "no-version", "number", "version-2"],
)
def test_a_bad_oci_layout_is_a_store_error_naming_expected_and_found(
    store: BuiltStore, content: bytes | None, found: str
) -> None:
    layout = store.path / "oci-layout"
    if content is None:
        layout.unlink()
    else:
        layout.write_bytes(content)
    message = verify_raises(store.path, StoreError, str(layout), found)
    if content is not None:
        assert '{"imageLayoutVersion":"1.0.0"}' in message


@pytest.mark.parametrize(("content", "found"), [(None, "missing"), (b"{", "JSON"), (b'{"manifests": 5}', "manifests")])
def test_a_bad_index_json_is_a_store_error(store: BuiltStore, content: bytes | None, found: str) -> None:
    index = store.path / "index.json"
    if content is None:
        index.unlink()
    else:
        index.write_bytes(content)
    verify_raises(store.path, StoreError, str(index), found)


def test_a_file_not_named_by_a_digest_is_a_store_error(store: BuiltStore) -> None:
    path = store.path / "blobs" / "sha256" / "not-a-digest"
    path.write_bytes(b"x")
    verify_raises(store.path, StoreError, str(path), "not a blob name")


def test_an_upper_case_blob_name_is_a_store_error(store: BuiltStore) -> None:
    digest = _layer(store)
    src = store.blob_path(digest)
    path = src.with_name(src.name.upper())
    shutil.copy(src, path)
    verify_raises(store.path, StoreError, str(path), "lowercase")


def test_a_symlinked_blob_is_a_store_error(store: BuiltStore, tmp_path: Path) -> None:
    digest = _layer(store)
    path = store.blob_path(digest)
    outside = tmp_path / "outside"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside)
    verify_raises(store.path, StoreError, str(path), "regular file")


def test_a_directory_named_like_a_blob_is_a_store_error(store: BuiltStore) -> None:
    path = store.path / "blobs" / "sha256" / ("0" * 64)
    path.mkdir()
    verify_raises(store.path, StoreError, str(path), "regular file")


def test_blobs_algorithm_entry_that_is_a_file_is_a_store_error(store: BuiltStore) -> None:
    path = store.path / "blobs" / "sha512"
    path.write_bytes(b"")
    verify_raises(store.path, StoreError, str(path), "directory")


def test_a_fault_among_many_blobs_is_found_wherever_it_is(tmp_path: Path) -> None:
    """Fifty layers hashed in parallel: the one corrupt blob is the one named."""
    layers = tuple(Layer(20_000, f"l{i}") for i in range(50))
    built = build_store(
        tmp_path / "many", [Image(names=("many:1",), platforms=(Platform("linux/amd64", layers=layers),))]
    )
    digests = built.image("many:1").layers["linux/amd64"]
    ocitar.verify(built.path)
    for victim in (digests[0], digests[31], digests[-1]):
        path = built.blob_path(victim)
        original = path.read_bytes()
        found = sha(_flip(path, 5000))
        verify_raises(built.path, DigestMismatchError, victim, found)
        path.write_bytes(original)
    ocitar.verify(built.path)


# --------------------------------------------------------------------------
# archive faults
# --------------------------------------------------------------------------


def _write(tmp_path: Path, data: bytes, compression: str | None) -> Path:
    if compression == "gzip":
        path = tmp_path / "archive.tar.gz"
        path.write_bytes(gzip.compress(data, mtime=0))
    elif compression == "zstd":
        path = tmp_path / "archive.tar.zst"
        path.write_bytes(b"".join(A.zstd_frames([data])))
    else:
        path = tmp_path / "archive.tar"
        path.write_bytes(data)
    return path


COMPRESSIONS = [None, "gzip", "zstd"]


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_an_archive_blob_that_does_not_hash_to_its_name(tmp_path: Path, compression: str | None) -> None:
    img = A.Oci()
    digest = img.layers["linux/arm64"]
    bad = bytearray(img.blobs[digest])
    bad[50] ^= 1
    data = img.tar(lambda ms: [A.file(m.name, bytes(bad)) if m.name == A.blob_name(digest) else m for m in ms])
    path = _write(tmp_path, data, compression)
    verify_raises(path, DigestMismatchError, digest, str(path), sha(bytes(bad)))


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_an_archive_without_a_listed_layer(tmp_path: Path, compression: str | None) -> None:
    img = A.Oci()
    digest = img.layers["linux/amd64"]
    path = _write(tmp_path, img.tar(lambda ms: [m for m in ms if m.name != A.blob_name(digest)]), compression)
    verify_raises(path, InvalidArchiveError, digest, str(path), "missing")


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_an_archive_descriptor_whose_size_differs(tmp_path: Path, compression: str | None) -> None:
    img = A.Oci(layer_desc=lambda p, d: {**d, "size": d["size"] - 1})
    digest = img.layers["linux/amd64"]
    size = len(img.blobs[digest])
    path = _write(tmp_path, img.tar(), compression)
    verify_raises(path, DigestMismatchError, digest, f"expected {size - 1} bytes", str(size))


@pytest.mark.parametrize(
    ("layout", "found"),
    [(None, "missing"), (b"{}", "found {}"), (b'{"imageLayoutVersion":"9"}', '"9"'), (b"oops", "JSON")],
    ids=["missing", "no-version", "version-9", "not-json"],
)
def test_an_oci_archive_needs_a_good_oci_layout(tmp_path: Path, layout: bytes | None, found: str) -> None:
    img = A.Oci()

    def edit(ms: list[A.Member]) -> list[A.Member]:
        out = [m for m in ms if m.name != "oci-layout"]
        return out if layout is None else [*out, A.file("oci-layout", layout)]

    path = _write(tmp_path, img.tar(edit), None)
    verify_raises(path, InvalidArchiveError, "oci-layout", found)


def test_a_docker_archive_needs_no_oci_layout(tmp_path: Path) -> None:
    path = _write(tmp_path, A.docker_archive(A.DOCKER_OK), None)
    inv = ocitar.verify(path)
    assert inv.format == "docker" and inv.verified


def test_a_truncated_archive(tmp_path: Path) -> None:
    data = A.Oci().tar()
    path = _write(tmp_path, data[: len(data) // 2], None)
    verify_raises(path, InvalidArchiveError, "truncated")


# --------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------


def _cli(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [sys.executable, "-m", "ocitar", *map(os.fspath, args)], capture_output=True, text=True, timeout=60
    )
    assert_no_panic(p.stderr, "ocitar verify")
    return p


def test_cli_verify_exits_zero_on_a_good_store_and_non_zero_naming_the_fault(store: BuiltStore) -> None:
    ok = _cli("verify", store.path)
    assert ok.returncode == 0, ok.stderr
    digest = _layer(store)
    _flip(store.blob_path(digest))
    bad = _cli("verify", store.path)
    assert bad.returncode != 0
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and digest in lines[0], bad.stderr
