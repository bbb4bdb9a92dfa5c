"""ocitar.load: round trips, every input form, and the load rules (platform requirement, sparse archives,
attestations, name moves, idempotence, the default store, reading only what is needed).

Peer-tool fixtures and oracles are in test_load_fixtures.py; failure atomicity, hostile archives and
concurrent loads in test_load_safety.py."""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import io
import json
import lzma
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import ocitar
import pytest
from _helpers import ATTESTATION_TYPE, IMAGE_NAME, REF_NAME, blobs, entries, store_blob
from ocitar import (
    InvalidArchiveError,
    InvalidPlatformError,
    LoadReport,
    OcitarError,
    PlatformNotFoundError,
)
from ocitar.testing import BuiltStore, Image, Layer, Platform, build_store, tree_digest

# The platforms of "app" as built; reports show them as the image writes them.
APP_PLATFORMS = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/s390x")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def named(store: str | os.PathLike[str]) -> dict[str, str]:
    """io.containerd.image.name -> digest, asserting each name is listed once."""
    out: dict[str, str] = {}
    for e in entries(store):
        name = e.get("annotations", {}).get(IMAGE_NAME)
        if name is not None:
            assert name not in out, f"{name} listed twice in {store}/index.json"
            out[name] = e["digest"]
    return out


def archive_blobs(data: bytes) -> set[str]:
    """Digests of every blob entry of an (uncompressed) archive."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {
            "sha256:" + m.name.rsplit("/", 1)[1]
            for m in tf.getmembers()
            if m.isfile() and m.name.lstrip("./").startswith("blobs/sha256/")
        }


def blob_json(store: str | os.PathLike[str], digest: str) -> dict:
    return json.loads(store_blob(store, digest))


def retar(data: bytes, rename=lambda n: n, drop=lambda n: False) -> bytes:
    """Copy an uncompressed archive, renaming or dropping members (content and order kept)."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(data)) as src,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst,
    ):
        for m in src.getmembers():
            if drop(m.name):
                continue
            f = src.extractfile(m) if m.isfile() else None
            m.name = rename(m.name)
            dst.addfile(m, f)
    return out.getvalue()


def pipe_reader(data: bytes, chunk: int = 7919) -> tuple[io.RawIOBase, threading.Thread]:
    """A real, non-seekable pipe whose writer thread feeds `data` in odd-sized chunks."""
    r, w = os.pipe()

    def feed() -> None:
        try:
            with os.fdopen(w, "wb", buffering=0) as f:
                for i in range(0, len(data), chunk):
                    f.write(data[i : i + chunk])
        except BrokenPipeError:
            pass

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    reader = os.fdopen(r, "rb", buffering=0)
    assert not reader.seekable()
    return reader, t


# --------------------------------------------------------------------------
# a source store and its archives
# --------------------------------------------------------------------------

BASE = Layer(size=4096, seed="base")


def source_images() -> list[Image]:
    return [
        Image(
            names=("app:1.0", "app:latest"),
            platforms=(
                Platform("linux/amd64", layers=(BASE, Layer(size=200_000, seed="app-amd64")), attestation=True),
                Platform("linux/arm64/v8", layers=(BASE, Layer(size=3000, seed="app-arm64")), attestation=True),
                Platform("linux/arm/v7", layers=(Layer(size=2000, seed="app-armv7"),)),
                Platform("linux/s390x", layers=(Layer(size=2500, seed="app-s390x"),)),
            ),
        ),
        Image(names=("tools:0.3",), platforms=("linux/amd64", "linux/arm/v7"), media_types="docker", shape="nested"),
        Image(names=("registry.example.com/team/single:7",), platforms=("linux/arm64",), shape="manifest"),
    ]


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> BuiltStore:
    return build_store(tmp_path_factory.mktemp("src") / "store", source_images())


@pytest.fixture(scope="module")
def app_archive(src: BuiltStore) -> bytes:
    """app:1.0 (4 platforms, 2 attestations), tools:0.3 (docker, nested), all platforms, index kept."""
    return ocitar.save(src.path, ["app:1.0", "tools:0.3"], prefer="linux/amd64")


@pytest.fixture(scope="module")
def app_archive_file(tmp_path_factory: pytest.TempPathFactory, app_archive: bytes) -> Path:
    p = tmp_path_factory.mktemp("archives") / "app.tar"
    p.write_bytes(app_archive)
    return p


@pytest.fixture(scope="module")
def reference_load(tmp_path_factory: pytest.TempPathFactory, app_archive_file: Path) -> tuple[str, LoadReport]:
    """tree_digest and report of app_archive loaded from its path into an empty store."""
    store = tmp_path_factory.mktemp("ref") / "store"
    report = ocitar.load(app_archive_file, store=store)
    return tree_digest(store), report


@pytest.fixture
def private_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """TMPDIR pointed at an empty directory that must stay empty: loads write only inside the store."""
    d = tmp_path / "tmpdir"
    d.mkdir()
    monkeypatch.setenv("TMPDIR", str(d))
    yield d
    assert sorted(os.listdir(d)) == [], "load wrote temporary files outside the store"


# --------------------------------------------------------------------------
# round trip: save -> load -> save is byte-identical
# --------------------------------------------------------------------------

ROUND_TRIPS = [
    pytest.param(["app:1.0", "tools:0.3", "registry.example.com/team/single:7"], None, "keep", id="keep-all"),
    pytest.param(["app:1.0", "tools:0.3"], ["linux/amd64"], "keep", id="keep-amd64"),
    pytest.param(["app:1.0"], ["linux/arm64", "linux/arm/v7"], "keep", id="keep-arm64-armv7"),
    pytest.param(["app:1.0", "tools:0.3"], None, "subset", id="subset-all"),
    pytest.param(["app:1.0", "tools:0.3"], ["linux/arm/v7"], "subset", id="subset-armv7"),
    pytest.param(["app:1.0"], ["linux/amd64", "linux/s390x"], "subset", id="subset-amd64-s390x"),
    pytest.param(["app:1.0", "tools:0.3"], ["linux/amd64"], "manifest", id="manifest-amd64"),
    pytest.param(["registry.example.com/team/single:7"], None, "manifest", id="manifest-single"),
]


@pytest.mark.parametrize(("refs", "platforms", "shape"), ROUND_TRIPS)
def test_round_trip_is_byte_identical(
    src: BuiltStore, tmp_path: Path, refs: list[str], platforms: list[str] | None, shape: str
) -> None:
    first = tmp_path / "first.tar"
    saved = ocitar.save(src.path, refs, platforms, output=first, index=shape, prefer="linux/amd64")
    data = first.read_bytes()
    store = tmp_path / "loaded"
    report = ocitar.load(first, store=store)

    # The report names each saved image with the digest save wrote, and the platforms it holds.
    assert [i.digest for i in report.images] == [i.digest for i in saved.images]
    assert [i.names for i in report.images] == [i.names for i in saved.images]
    assert [i.platforms for i in report.images] == [i.platforms for i in saved.images]
    for img, saved_img, ref in zip(report.images, saved.images, refs):
        built = src.image(ref)
        if shape == "keep" or platforms is None and shape == "subset":
            assert img.digest == built.digest
        if saved_img.original_digest is not None:
            assert saved_img.original_digest == built.digest
            assert img.digest != built.digest
        else:
            assert img.digest == built.digest
    # Every blob of the archive is in the store, and nothing else.
    assert blobs(store) == archive_blobs(data)
    assert report.blobs_written == len(archive_blobs(data))
    assert report.blobs_present == 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert report.bytes_written == sum(
            m.size for m in tf.getmembers() if m.isfile() and m.name.startswith("blobs/sha256/")
        )
    # index.json: one entry per name with the full name and its tag.
    by_name = named(store)
    for img, ref in zip(report.images, refs):
        full = ref if ref.startswith("registry.") else f"docker.io/library/{ref}"
        assert by_name[full] == img.digest
        entry = next(e for e in entries(store) if e["annotations"].get(IMAGE_NAME) == full)
        assert entry["annotations"][REF_NAME] == ref.rsplit(":", 1)[1]
    assert len(entries(store)) == len(refs)

    again = ocitar.save(store, refs, platforms, index=shape, prefer="linux/amd64")
    assert again == data, "save -> load -> save changed the archive"
    if platforms:
        # The loaded store holds just those platforms: saving it without a list gives the same bytes too.
        assert ocitar.save(store, refs, None, index=shape, prefer="linux/amd64") == data


def test_round_trip_by_digest_is_unnamed(src: BuiltStore, tmp_path: Path) -> None:
    app = src.image("app:1.0")
    data = ocitar.save(src.path, [app.digest], ["linux/s390x"])
    store = tmp_path / "loaded"
    report = ocitar.load(data, store=store)
    (img,) = report.images
    assert img.names == ()
    assert img.digest == app.digest
    assert img.platforms == ("linux/s390x",)
    assert set(img.absent) == {"linux/amd64", "linux/arm64", "linux/arm/v7"}
    (entry,) = entries(store)
    assert entry["digest"] == app.digest
    assert IMAGE_NAME not in entry.get("annotations", {}) and REF_NAME not in entry.get("annotations", {})
    assert ocitar.save(store, [app.digest]) == data


# --------------------------------------------------------------------------
# inputs: every form gives the same store
# --------------------------------------------------------------------------


def _dot_slash(data: bytes) -> bytes:
    return retar(data, rename=lambda n: "./" + n)


INPUTS = {
    "str-path": lambda data, path: str(path),
    "pathlib": lambda data, path: path,
    "bytes": lambda data, path: data,
    "bytearray": lambda data, path: bytearray(data),
    "bytesio": lambda data, path: io.BytesIO(data),
    "open-file": lambda data, path: open(path, "rb"),  # noqa: SIM115
    "gzip-bytes": lambda data, path: gzip.compress(data, mtime=0),
    "xz-bytes": lambda data, path: lzma.compress(data),
    "bzip2-bytes": lambda data, path: bz2.compress(data),
    "dot-slash-bytes": lambda data, path: _dot_slash(data),
}


@pytest.mark.parametrize("form", sorted(INPUTS))
def test_every_input_form_loads_the_same(
    form: str, app_archive: bytes, app_archive_file: Path, reference_load, tmp_path: Path, private_tmpdir: Path
) -> None:
    src_obj = INPUTS[form](app_archive, app_archive_file)
    store = tmp_path / "store"
    try:
        report = ocitar.load(src_obj, store=store)
    finally:
        if hasattr(src_obj, "close"):
            src_obj.close()
    want_tree, want = reference_load
    assert report.images == want.images
    assert tree_digest(store) == want_tree


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compressed_save_loads_from_path_and_pipe(
    src: BuiltStore, tmp_path: Path, reference_load, compression: str, private_tmpdir: Path
) -> None:
    data = ocitar.save(src.path, ["app:1.0", "tools:0.3"], prefer="linux/amd64", compression=compression)
    magic = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd"}[compression]
    assert data.startswith(magic)
    path = tmp_path / f"app.tar.{compression}"
    path.write_bytes(data)
    want_tree, want = reference_load
    a = ocitar.load(path, store=tmp_path / "a")
    reader, writer = pipe_reader(data)
    with reader:
        b = ocitar.load(reader, store=tmp_path / "b")
    writer.join(10)
    assert a.images == b.images == want.images
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b") == want_tree


@pytest.mark.parametrize("compress", ["none", "xz", "bzip2"])
def test_pipe_input(app_archive: bytes, tmp_path: Path, reference_load, compress: str, private_tmpdir: Path) -> None:
    data = {"none": lambda d: d, "xz": lzma.compress, "bzip2": bz2.compress}[compress](app_archive)
    reader, writer = pipe_reader(data)
    with reader:
        report = ocitar.load(reader, store=tmp_path / "store")
    writer.join(10)
    assert not writer.is_alive(), "load did not read the pipe to its end"
    want_tree, want = reference_load
    assert report.images == want.images
    assert tree_digest(tmp_path / "store") == want_tree


def test_subprocess_stdout_input(app_archive_file: Path, tmp_path: Path, reference_load, private_tmpdir: Path) -> None:
    with subprocess.Popen(["cat", str(app_archive_file)], stdout=subprocess.PIPE) as p:
        assert p.stdout is not None
        report = ocitar.load(p.stdout, store=tmp_path / "store")
    assert p.returncode == 0
    want_tree, want = reference_load
    assert report.images == want.images
    assert tree_digest(tmp_path / "store") == want_tree


def test_dot_slash_names_with_root_entry_from_a_pipe(app_archive: bytes, tmp_path: Path, reference_load) -> None:
    # As `tar -C dir -cf x.tar .` writes: a "./" root directory entry, then "./"-prefixed names.
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(app_archive)) as s, tarfile.open(fileobj=out, mode="w") as d:
        root = tarfile.TarInfo("./")
        root.type = tarfile.DIRTYPE
        root.mode = 0o755
        d.addfile(root)
        for m in s.getmembers():
            f = s.extractfile(m) if m.isfile() else None
            m.name = "./" + m.name
            d.addfile(m, f)
    data = out.getvalue()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert all(n.startswith("./") or n == "." for n in tf.getnames())
    reader, writer = pipe_reader(gzip.compress(data, mtime=0))
    with reader:
        report = ocitar.load(reader, store=tmp_path / "store")
    writer.join(10)
    want_tree, want = reference_load
    assert report.images == want.images
    assert tree_digest(tmp_path / "store") == want_tree


def test_docker_archive_with_symlinked_layer_loads_the_same_from_every_input(fixtures: Path, tmp_path: Path) -> None:
    path = fixtures / "go-containerregistry" / "tarball" / "test_link.tar"
    data = path.read_bytes()
    trees = {}
    reports = {}
    for form, obj in [
        ("path", path),
        ("bytes", data),
        ("gzip", gzip.compress(data, mtime=0)),
        ("dot-slash", _dot_slash(data)),
    ]:
        reports[form] = ocitar.load(obj, store=tmp_path / form)
        trees[form] = tree_digest(tmp_path / form)
    reader, writer = pipe_reader(bz2.compress(data))
    with reader:
        reports["pipe"] = ocitar.load(reader, store=tmp_path / "pipe")
    writer.join(10)
    trees["pipe"] = tree_digest(tmp_path / "pipe")
    assert len(set(trees.values())) == 1, trees
    assert len({r.images for r in reports.values()}) == 1
    assert [i.names for i in reports["path"].images] == [
        ("bazel/v1/tarball:test_image_1",),
        ("bazel/v1/tarball:test_image_3",),
    ]


def test_load_rejects_an_unsupported_argument(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        ocitar.load(12345, store=tmp_path / "store")  # type: ignore[arg-type]
    assert not (tmp_path / "store").exists()


def test_missing_archive_path_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as e:
        ocitar.load(tmp_path / "nope.tar", store=tmp_path / "store")
    assert "nope.tar" in str(e.value)
    assert not (tmp_path / "store").exists()


# --------------------------------------------------------------------------
# platforms: a list is a requirement
# --------------------------------------------------------------------------


def test_platform_missing_in_one_image_refuses_everything(
    src: BuiltStore, app_archive: bytes, tmp_path: Path, unchanged
) -> None:
    store = build_store(tmp_path / "store", [Image(names=("other:1",))]).path
    with unchanged(store, outside=tmp_path), pytest.raises(PlatformNotFoundError) as e:
        # app has linux/arm64; tools (amd64, arm/v7) does not.
        ocitar.load(app_archive, ["linux/arm64"], store=store)
    msg = str(e.value)
    assert isinstance(e.value, LookupError) and isinstance(e.value, OcitarError)
    assert "tools:0.3" in msg
    assert "linux/arm64" in msg
    assert "linux/amd64" in msg and "linux/arm/v7" in msg  # what it has
    assert "app:1.0" not in msg


def test_platform_requirement_with_missing_store_creates_nothing(app_archive: bytes, tmp_path: Path) -> None:
    with pytest.raises(PlatformNotFoundError):
        ocitar.load(app_archive, ["windows/amd64"], store=tmp_path / "a" / "b" / "store")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "platforms",
    [
        ["linux/amd64,linux/arm/v7"],
        ["linux/arm/v7", "linux/amd64"],
        ["linux/x86_64", "linux/armhf", "linux/amd64", "linux/arm/v7"],  # duplicates after normalization
        ("linux/amd64", "linux/arm"),
    ],
)
def test_platform_lists_select_exactly_those(
    src: BuiltStore, app_archive: bytes, tmp_path: Path, platforms: list[str]
) -> None:
    store = tmp_path / "store"
    report = ocitar.load(app_archive, platforms, store=store)
    app, tools = report.images
    assert app.names == ("app:1.0",) and tools.names == ("tools:0.3",)
    assert app.platforms == ("linux/amd64", "linux/arm/v7")
    assert set(tools.platforms) == {"linux/amd64", "linux/arm/v7"}
    # Left out by the list: the store's index lists them without content, so the report flags them.
    assert app.absent == ("linux/arm64", "linux/s390x")
    built = src.image("app:1.0")
    assert built.manifests["linux/amd64"] in blobs(store)
    assert built.manifests["linux/arm/v7"] in blobs(store)
    assert built.manifests["linux/arm64/v8"] not in blobs(store)
    assert built.manifests["linux/s390x"] not in blobs(store)
    assert not set(built.layers["linux/s390x"]) & blobs(store)
    # The image keeps its digest: the index is stored as is, with the platforms it lists but lacks.
    assert named(store)["docker.io/library/app:1.0"] == built.digest


def test_platform_normalization_matches_variant(src: BuiltStore, tmp_path: Path) -> None:
    # app has linux/arm64/v8 but tools lacks it: load only app's archive.
    data = ocitar.save(src.path, ["app:1.0"])
    report = ocitar.load(data, ["linux/aarch64"], store=tmp_path / "s")
    (img,) = report.images
    assert img.platforms == ("linux/arm64",)  # normalized, as normalize_platform spells it
    assert src.image("app:1.0").manifests["linux/arm64/v8"] in blobs(tmp_path / "s")


@pytest.mark.parametrize("bad", ["linux/amd64/v8/extra", "", "linux//amd64", "linux/amd 64", "/amd64"])
def test_invalid_platform(app_archive: bytes, tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidPlatformError) as e:
        ocitar.load(app_archive, [bad], store=tmp_path / "store")
    assert isinstance(e.value, ValueError)
    if bad:
        assert bad in str(e.value)
    assert not (tmp_path / "store").exists()


def test_incomplete_platform_is_absent_without_a_list_and_missing_with_one(
    src: BuiltStore, app_archive: bytes, tmp_path: Path, unchanged
) -> None:
    app = src.image("app:1.0")
    gone = app.layers["linux/s390x"][0]
    data = retar(app_archive, drop=lambda n: n == "blobs/sha256/" + gone.split(":")[1])
    empty = tmp_path / "empty"
    empty.mkdir()
    with unchanged(empty), pytest.raises(PlatformNotFoundError) as e:
        ocitar.load(data, ["linux/s390x"], store=empty)
    assert "app:1.0" in str(e.value) and "linux/s390x" in str(e.value)
    assert os.listdir(empty) == []

    report = ocitar.load(data, store=tmp_path / "s")
    img = report.images[0]
    assert "linux/s390x" not in img.platforms
    assert img.absent == ("linux/s390x",)
    assert app.manifests["linux/s390x"] not in blobs(tmp_path / "s")
    assert app.configs["linux/s390x"] not in blobs(tmp_path / "s")


# --------------------------------------------------------------------------
# sparse archives
# --------------------------------------------------------------------------


def test_sparse_archive_loads_what_is_present_and_reports_the_rest(src: BuiltStore, tmp_path: Path) -> None:
    data = ocitar.save(src.path, ["app:1.0", "tools:0.3"], ["linux/arm/v7"])  # index kept: sparse
    store = tmp_path / "store"
    report = ocitar.load(data, store=store)
    app, tools = report.images
    assert app.digest == src.image("app:1.0").digest
    assert app.platforms == ("linux/arm/v7",)
    assert app.absent == ("linux/amd64", "linux/arm64", "linux/s390x")
    assert tools.platforms == ("linux/arm/v7",) and tools.absent == ("linux/amd64",)
    assert app.attestations == 0
    built = src.image("app:1.0")
    want = set(built.index_digests) | {built.manifests["linux/arm/v7"], built.configs["linux/arm/v7"]}
    want |= set(built.layers["linux/arm/v7"])
    t = src.image("tools:0.3")
    want |= set(t.index_digests) | {t.manifests["linux/arm/v7"], t.configs["linux/arm/v7"], *t.layers["linux/arm/v7"]}
    assert blobs(store) == want
    # A listed platform that is absent is refused when required.
    with pytest.raises(PlatformNotFoundError) as e:
        ocitar.load(data, ["linux/amd64"], store=tmp_path / "other")
    assert "linux/amd64" in str(e.value) and "linux/arm/v7" in str(e.value)
    assert not (tmp_path / "other").exists()
    d = report.to_dict()
    assert d["images"][0]["absent"] == ["linux/amd64", "linux/arm64", "linux/s390x"]
    assert "linux/amd64 (absent)\n    linux/arm64 (absent)\n    linux/s390x (absent)" in repr(report)


# --------------------------------------------------------------------------
# attestations
# --------------------------------------------------------------------------


def _attestations_in_store(store: Path, index_digest: str) -> dict[str, str]:
    """subject manifest digest -> attestation manifest digest, from the stored index."""
    out = {}
    for m in blob_json(store, index_digest)["manifests"]:
        if m.get("annotations", {}).get(ATTESTATION_TYPE) == "attestation-manifest":
            out[m["annotations"]["vnd.docker.reference.digest"]] = m["digest"]
    return out


@pytest.mark.parametrize(
    ("platforms", "with_attestation"),
    [
        (None, ("linux/amd64", "linux/arm64/v8")),
        (["linux/amd64"], ("linux/amd64",)),
        (["linux/arm64", "linux/s390x"], ("linux/arm64/v8",)),
        (["linux/arm/v7"], ()),
    ],
)
def test_attestations_follow_their_subject(
    src: BuiltStore, tmp_path: Path, platforms: list[str] | None, with_attestation: tuple[str, ...]
) -> None:
    data = ocitar.save(src.path, "app:1.0")
    store = tmp_path / "store"
    report = ocitar.load(data, platforms, store=store)
    (img,) = report.images
    built = src.image("app:1.0")
    assert img.attestations == len(with_attestation)
    att = _attestations_in_store(store, built.digest)
    have = blobs(store)
    for p, a in built.attestations.items():
        assert att[built.manifests[p]] == a
        if p in with_attestation:
            assert a in have, f"attestation of {p} not loaded"
            doc = blob_json(store, a)
            assert doc["config"]["digest"] in have
            assert all(layer["digest"] in have for layer in doc["layers"])
        else:
            assert a not in have, f"attestation of unloaded {p} was loaded"
    assert "unknown/unknown" not in img.platforms and "unknown" not in img.platforms


# --------------------------------------------------------------------------
# names: from annotations, moved off older images, never duplicated
# --------------------------------------------------------------------------


def _single(tmp_path: Path, dirname: str, seed: str, names=("app:1",)) -> tuple[bytes, str]:
    s = build_store(
        tmp_path / dirname,
        [Image(names=names, platforms=(Platform("linux/amd64", layers=(Layer(seed=seed),)),))],
    )
    return ocitar.save(s.path, list(names)), s.images[0].digest


def test_name_moves_and_the_older_image_stays_unnamed(tmp_path: Path) -> None:
    a_data, a = _single(tmp_path, "a", "A")
    b_data, b = _single(tmp_path, "b", "B")
    store = tmp_path / "store"
    first = ocitar.load(a_data, store=store)
    assert first.images[0].moved == ()
    a_blobs = blobs(store)

    second = ocitar.load(b_data, store=store)
    assert second.images[0].names == ("app:1",)
    assert second.images[0].moved == ("app:1",)
    assert named(store) == {"docker.io/library/app:1": b}
    by_digest = {e["digest"]: e for e in entries(store)}
    assert set(by_digest) == {a, b}
    assert len(entries(store)) == 2
    assert IMAGE_NAME not in by_digest[a].get("annotations", {})
    assert REF_NAME not in by_digest[a].get("annotations", {})
    assert by_digest[b]["annotations"] == {IMAGE_NAME: "docker.io/library/app:1", REF_NAME: "1"}
    assert a_blobs <= blobs(store), "the older image lost content"
    assert "app:1" in str(second.to_dict()["images"][0]["moved"])

    # And back: A takes the name again, B stays unnamed; still one entry per image.
    third = ocitar.load(a_data, store=store)
    assert third.images[0].moved == ("app:1",)
    assert third.blobs_written == 0
    assert named(store) == {"docker.io/library/app:1": a}
    assert sorted(e["digest"] for e in entries(store)) == sorted([a, b])


def test_name_moves_off_an_image_that_keeps_another_name(tmp_path: Path) -> None:
    a_data, a = _single(tmp_path, "a", "A", names=("app:1", "app:stable"))
    b_data, b = _single(tmp_path, "b", "B", names=("app:1",))
    store = tmp_path / "store"
    ocitar.load(a_data, store=store)
    assert named(store) == {"docker.io/library/app:1": a, "docker.io/library/app:stable": a}
    report = ocitar.load(b_data, store=store)
    assert report.images[0].moved == ("app:1",)
    assert named(store) == {"docker.io/library/app:1": b, "docker.io/library/app:stable": a}
    # No extra unnamed entry for A: it is still reachable by its other name.
    assert len(entries(store)) == 2


def test_loading_twice_adds_nothing(app_archive: bytes, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = ocitar.load(app_archive, store=store)
    tree = tree_digest(store)
    index_bytes = (store / "index.json").read_bytes()
    reader, writer = pipe_reader(app_archive)
    with reader:
        second = ocitar.load(reader, store=store)
    writer.join(10)
    assert second.blobs_written == 0
    assert second.bytes_written == 0
    assert second.blobs_present == first.blobs_written > 0
    assert [i.digest for i in second.images] == [i.digest for i in first.images]
    assert all(i.moved == () for i in second.images)
    assert (store / "index.json").read_bytes() == index_bytes
    assert tree_digest(store) == tree
    digests = [e["digest"] for e in entries(store)]
    assert len(digests) == 2  # app:1.0 and tools:0.3
    names = [e["annotations"][IMAGE_NAME] for e in entries(store)]
    assert len(set(names)) == len(names)


def test_one_image_with_two_names(src: BuiltStore, tmp_path: Path) -> None:
    data = ocitar.save(src.path, ["app:1.0", "app:latest"])
    empty = tmp_path / "store"
    empty.mkdir()  # an existing empty directory becomes the store
    report = ocitar.load(data, store=empty)
    (img,) = report.images
    assert img.names == ("app:1.0", "app:latest")
    digest = src.image("app:1.0").digest
    assert named(empty) == {"docker.io/library/app:1.0": digest, "docker.io/library/app:latest": digest}
    assert sorted(os.listdir(empty)) == ["blobs", "index.json", "oci-layout"]
    assert ocitar.save(empty, ["app:1.0", "app:latest"]) == data


def test_docker_archive_loaded_twice_is_listed_once(fixtures: Path, tmp_path: Path) -> None:
    path = fixtures / "go-containerregistry" / "tarball" / "test_bundle.tar"
    store = tmp_path / "store"
    first = ocitar.load(path, store=store)
    tree = tree_digest(store)
    second = ocitar.load(path, store=store)
    assert [i.digest for i in second.images] == [i.digest for i in first.images]
    assert second.blobs_written == 0 and second.blobs_present == first.blobs_written == 6
    assert tree_digest(store) == tree
    assert len(entries(store)) == 2


def test_loading_into_a_store_that_has_some_blobs_writes_only_the_rest(src: BuiltStore, tmp_path: Path) -> None:
    store = tmp_path / "store"
    one = ocitar.load(ocitar.save(src.path, "app:1.0", ["linux/amd64"]), store=store)
    before = blobs(store)
    two = ocitar.load(ocitar.save(src.path, "app:1.0"), store=store)
    assert two.blobs_present == len(before) == one.blobs_written
    assert two.blobs_written == len(blobs(store) - before) > 0
    assert len(entries(store)) == 1
    assert two.images[0].absent == ()


def test_unnamed_image_loaded_twice_is_listed_once(fixtures: Path, tmp_path: Path) -> None:
    path = fixtures / "go-containerregistry" / "tarball" / "hello-world-v25.tar"
    store = tmp_path / "store"
    ocitar.load(path, store=store)
    ocitar.load(path, store=store)
    assert len(entries(store)) == 1


def test_store_entry_keeps_the_archive_annotations(src: BuiltStore, tmp_path: Path) -> None:
    s = build_store(
        tmp_path / "a",
        [Image(names=("web:2",), annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"})],
    )
    data = ocitar.save(s.path, "web:2")
    store = tmp_path / "store"
    ocitar.load(data, store=store)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        f = tf.extractfile("index.json")
        assert f is not None
        (archived,) = json.loads(f.read())["manifests"]
    (entry,) = entries(store)
    assert entry["annotations"] == archived["annotations"]
    assert entry["annotations"][IMAGE_NAME] == "docker.io/library/web:2"


# --------------------------------------------------------------------------
# the default store
# --------------------------------------------------------------------------


def _clear_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("OCITAR_STORE", "XDG_DATA_HOME"):
        monkeypatch.delenv(k, raising=False)


def test_default_store_from_ocitar_store(app_archive: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_store_env(monkeypatch)
    target = tmp_path / "deep" / "er" / "store"
    monkeypatch.setenv("OCITAR_STORE", str(target))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # OCITAR_STORE wins
    assert Path(ocitar.default_store()) == target
    report = ocitar.load(app_archive)
    assert (target / "oci-layout").is_file()
    assert set(named(target).values()) == {i.digest for i in report.images}
    assert not (tmp_path / "xdg").exists()


def test_default_store_from_xdg_data_home(app_archive: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_store_env(monkeypatch)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    target = tmp_path / "xdg" / "ocitar" / "store"
    assert Path(ocitar.default_store()) == target
    # A failing load does not create it.
    with pytest.raises(PlatformNotFoundError):
        ocitar.load(app_archive, ["linux/ppc64le"])
    assert not (tmp_path / "xdg").exists()
    report = ocitar.load(app_archive)
    assert json.loads((target / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    assert set(named(target).values()) == {i.digest for i in report.images}


def test_default_store_from_home(app_archive: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_store_env(monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    target = tmp_path / "home" / ".local" / "share" / "ocitar" / "store"
    assert Path(ocitar.default_store()) == target
    ocitar.load(app_archive)
    assert len(entries(target)) == 2


def test_explicit_store_beats_the_environment(
    app_archive: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCITAR_STORE", str(tmp_path / "env"))
    ocitar.load(app_archive, store=str(tmp_path / "given"))
    assert (tmp_path / "given" / "index.json").is_file()
    assert not (tmp_path / "env").exists()


# --------------------------------------------------------------------------
# reading only what is needed
# --------------------------------------------------------------------------


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


@pytest.fixture(scope="module")
def four_platforms(tmp_path_factory: pytest.TempPathFactory) -> tuple[BuiltStore, Path]:
    specs = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/s390x")
    s = build_store(
        tmp_path_factory.mktemp("four") / "store",
        [
            Image(
                names=("big:1",),
                platforms=tuple(
                    Platform(p, layers=(Layer(size=1 << 20, seed=f"{p}-1"), Layer(size=1 << 19, seed=f"{p}-2")))
                    for p in specs
                ),
            )
        ],
    )
    path = s.path.parent / "big.tar"
    ocitar.save(s.path, "big:1", output=path)
    return s, path


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/self/io")
def test_one_platform_of_four_from_a_seekable_archive(four_platforms, tmp_path: Path) -> None:
    s, path = four_platforms
    big = s.image("big:1")
    size = path.stat().st_size
    store = tmp_path / "store"
    before = _rchar()
    report = ocitar.load(path, ["linux/s390x"], store=store)
    read = _rchar() - before
    want = {big.digest, big.manifests["linux/s390x"], big.configs["linux/s390x"], *big.layers["linux/s390x"]}
    assert blobs(store) == want
    assert report.blobs_written == len(want) == 5
    assert report.bytes_written == sum(big.blobs[d] for d in want)
    assert report.images[0].absent == ("linux/amd64", "linux/arm64", "linux/arm/v7")
    # About a quarter of the archive is read, never the whole of it. Each needed byte is read twice:
    # copied out of the archive (copy_file_range counts as a read) and read back from the staged copy,
    # to hash what was written.
    assert read < 2 * report.bytes_written + 0.1 * size < size, f"read {read} of {size} bytes for one platform of four"
    assert read >= report.bytes_written

    before = _rchar()
    ocitar.load(path, store=tmp_path / "all")
    read_all = _rchar() - before
    assert blobs(tmp_path / "all") == set(big.blobs)
    assert read_all >= 0.9 * sum(big.blobs.values())


def test_one_platform_of_four_from_a_stream_writes_only_that_platform(four_platforms, tmp_path: Path) -> None:
    s, path = four_platforms
    big = s.image("big:1")
    reader, writer = pipe_reader(gzip.compress(path.read_bytes(), compresslevel=1, mtime=0), chunk=1 << 16)
    with reader:
        report = ocitar.load(reader, ["linux/arm/v7"], store=tmp_path / "store")
    writer.join(10)
    want = {big.digest, big.manifests["linux/arm/v7"], big.configs["linux/arm/v7"], *big.layers["linux/arm/v7"]}
    assert blobs(tmp_path / "store") == want
    assert report.blobs_written == len(want)
    assert sorted(os.listdir(tmp_path / "store")) == ["blobs", "index.json", "oci-layout"]


# VmHWM (kB): the peak resident memory of this process since exec. ru_maxrss would also count the pytest
# process it was forked from (Linux keeps the larger across fork and exec), which grows as tests run.
MAXRSS = (
    "import sys, ocitar\n"
    "src = sys.stdin.buffer if sys.argv[2] == '-' else sys.argv[2]\n"
    "ocitar.load(src, store=sys.argv[1])\n"
    "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))\n"
)


@pytest.mark.parametrize("how", ["path", "pipe", "gzip-pipe"])
def test_memory_does_not_grow_with_the_archive(tmp_path: Path, how: str) -> None:
    s = build_store(
        tmp_path / "src",
        [
            Image(
                names=("big:1",),
                platforms=(Platform("linux/amd64", layers=(Layer(size=48 << 20, compression="none"),)),),
            ),
            Image(names=("small:1",)),
        ],
    )
    peaks = {}
    for name in ("small:1", "big:1"):
        archive = tmp_path / f"{name.split(':')[0]}.tar"
        ocitar.save(s.path, name, output=archive, compression="gzip" if how == "gzip-pipe" else None)
        store = tmp_path / f"store-{name.split(':')[0]}"
        if how == "path":
            p = subprocess.run([sys.executable, "-c", MAXRSS, str(store), str(archive)], capture_output=True, text=True)
        else:
            with open(archive, "rb") as f:
                p = subprocess.run(
                    [sys.executable, "-c", MAXRSS, str(store), "-"], stdin=f, capture_output=True, text=True
                )
        assert p.returncode == 0, p.stderr
        peaks[name] = int(p.stdout) * 1024
        assert set(named(store).values()) == {s.image(name).digest}
    assert peaks["big:1"] - peaks["small:1"] < 16 << 20, (
        f"peak memory grew by {peaks['big:1'] - peaks['small:1']} bytes"
    )


# --------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------


def test_report_fields_and_forms(src: BuiltStore, app_archive: bytes, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    report = ocitar.load(app_archive, store=tmp_path / "store", progress=lambda d, t: calls.append((d, t)))
    assert isinstance(report, LoadReport)
    app, tools = report.images
    built = src.image("app:1.0")
    assert app.names == ("app:1.0",)
    assert app.digest == built.digest
    assert app.media_type == built.media_type
    assert app.platforms == tuple(map(ocitar.normalize_platform, APP_PLATFORMS))
    assert app.absent == () and app.moved == ()
    assert app.attestations == 2
    assert tools.digest == src.image("tools:0.3").digest
    assert tools.media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert report.blobs_written == len(blobs(tmp_path / "store"))
    assert report.bytes_written == sum(p.stat().st_size for p in (tmp_path / "store" / "blobs" / "sha256").iterdir())
    d = report.to_dict()
    json.dumps(d)
    assert d["images"][0]["names"] == ["app:1.0"]
    assert d["blobs_written"] == report.blobs_written
    r = repr(report)
    assert "app:1.0" in r and built.digest[7:19] in r and "tools:0.3" in r
    assert "app:1.0" in report._repr_html_()
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.blobs_written = 0  # type: ignore[misc]
    # progress: called, ends at done == total == bytes written.
    assert calls and calls[-1][0] == calls[-1][1] == report.bytes_written


def test_not_an_archive(tmp_path: Path) -> None:
    p = tmp_path / "x.tar"
    p.write_bytes(b"hello, this is not a tar archive at all" * 100)
    with pytest.raises(InvalidArchiveError) as e:
        ocitar.load(p, store=tmp_path / "store")
    assert str(p) in str(e.value)
    assert not (tmp_path / "store").exists()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
