"""ocitar.load against other tools' archives and layouts (../shared/fixtures and archives skopeo writes in
the test), the deliberately broken fixtures, and peer tools reading the store afterwards."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import ocitar
import pytest
from _helpers import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    IMAGE_NAME,
    REF_NAME,
    blobs,
    entries,
    sha,
    store_blob,
)
from conftest import run
from ocitar import DigestMismatchError, InvalidArchiveError, OcitarError, PlatformNotFoundError
from ocitar.testing import BuiltStore, Image, Layer, Platform, build_store, tree_digest

IMG0 = "sha256:c188e7a25aa762995b6150e56f8269455a3606d1d256d16dc67cdb00b6cf5c2b"
IMG1 = "sha256:c4fca9b17ed7c12cfa417afb24c8419540d7c2561a3c87942f288f2535554f31"
FIVE = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/s390x", "windows(10.0.20348.2113)/amd64")


def member(tf: tarfile.TarFile, name: str) -> bytes | None:
    """A member's bytes (links followed, "./" prefix tolerated), or None."""
    for n in (name, "./" + name):
        try:
            f = tf.extractfile(n)
        except KeyError:
            continue
        if f is not None:
            return f.read()
    return None


def familiar(full: str) -> str:
    for prefix in ("docker.io/library/", "docker.io/"):
        if full.startswith(prefix):
            return full[len(prefix) :]
    return full


def normalize(tag: str) -> tuple[str, str]:
    """(full name, tag) of a Docker RepoTag, as Docker normalizes it."""
    name, t = tag, "latest"
    if ":" in tag.rsplit("/", 1)[-1]:
        name, t = tag.rsplit(":", 1)
    first, sep, _ = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        full = name
    elif sep:
        full = "docker.io/" + name
    else:
        full = "docker.io/library/" + name
    return f"{full}:{t}", t


def tar_dir(directory: Path, out: Path) -> Path:
    with tarfile.open(out, "w") as tf:
        tf.add(directory, arcname=".")
    return out


# --------------------------------------------------------------------------
# OCI layout archives from containerd and skopeo
# --------------------------------------------------------------------------

PEER = "generated/peer-outputs"

# archive -> [(names, digest, platforms, absent)]
OCI_ARCHIVES = {
    f"{PEER}/ctr/img0-all-platforms.tar": [(("example.test/peers/img0:latest",), IMG0, FIVE, ())],
    f"{PEER}/ctr/img0-all-platforms-skip-manifest-json.tar": [(("example.test/peers/img0:latest",), IMG0, FIVE, ())],
    f"{PEER}/ctr/img0-img1-all-platforms.tar": [
        (("example.test/peers/img0:latest",), IMG0, FIVE, ()),
        (("example.test/peers/img1:latest",), IMG1, FIVE, ()),
    ],
    f"{PEER}/ctr/img0-s390x-manifest-ref.tar": [
        (
            ("example.test/peers/img0:linux-s390x",),
            "sha256:e8cfb68a6f694eb142b3e2d44599090cf59a1c630cadb9382265f7fb0bb5ca0c",
            ("linux/s390x",),
            (),
        )
    ],
    f"{PEER}/ctr/img0-default-amd64-PARTIAL.tar": [
        (("example.test/peers/img0:latest",), IMG0, ("linux/amd64",), tuple(p for p in FIVE if p != "linux/amd64"))
    ],
    f"{PEER}/ctr/img0-platform-arm64-v8-PARTIAL.tar": [
        (
            ("example.test/peers/img0:latest",),
            IMG0,
            ("linux/arm64/v8",),
            tuple(p for p in FIVE if p != "linux/arm64/v8"),
        )
    ],
    f"{PEER}/skopeo/img0-multiarch-all.oci.tar": [(("img0:latest",), IMG0, FIVE, ())],
    f"{PEER}/skopeo/img0-system-amd64.oci.tar": [
        (
            ("img0:latest",),
            "sha256:578278da945d09e4ceba9ad9acb5af565310bce7d5c7f32cc04ded148748b446",
            ("linux/amd64",),
            (),
        )
    ],
    f"{PEER}/skopeo/img0-override-arm-v7.oci.tar": [
        (
            ("img0:latest",),
            "sha256:8e87ddc7e24bca1cfe7965b4eb928e098d60dc6fa2f6d90b707e3ac0153b6d30",
            ("linux/arm/v7",),
            (),
        )
    ],
}


def _open(path: Path, how: str) -> object:
    return path if how == "path" else io.BytesIO(gzip.compress(path.read_bytes(), compresslevel=1, mtime=0))


@pytest.mark.parametrize("how", ["path", "gzip-stream"])
@pytest.mark.parametrize("rel", sorted(OCI_ARCHIVES), ids=lambda r: r.rsplit("/", 1)[1])
def test_peer_oci_archives_load(fixtures: Path, tmp_path: Path, rel: str, how: str) -> None:
    path = fixtures / rel
    store = tmp_path / "store"
    report = ocitar.load(_open(path, how), store=store)
    n = ocitar.normalize_platform
    want = [(names, d, tuple(map(n, p)), tuple(map(n, a))) for names, d, p, a in OCI_ARCHIVES[rel]]
    got = [(i.names, i.digest, i.platforms, i.absent) for i in report.images]
    assert got == want
    assert report.blobs_present == 0
    with tarfile.open(path) as tf:
        index = json.loads(member(tf, "index.json") or b"")
        archived = {n.split("/")[-1] for n in tf.getnames() if n.startswith("blobs/sha256/") and n.count("/") == 2}
    # index.json: the archive's entries, annotations kept.
    assert sorted(json.dumps(e, sort_keys=True) for e in entries(store)) == sorted(
        json.dumps(e, sort_keys=True) for e in index["manifests"]
    )
    if "PARTIAL" not in rel:
        assert {d.split(":")[1] for d in blobs(store)} == archived
    else:
        assert {d.split(":")[1] for d in blobs(store)} <= archived
    # Every stored blob hashes to its name.
    for d in blobs(store):
        assert sha(store_blob(store, d)) == d


def test_partial_export_requires_present_platforms(fixtures: Path, tmp_path: Path, unchanged) -> None:
    path = fixtures / PEER / "ctr" / "img0-platform-arm64-v8-PARTIAL.tar"
    store = tmp_path / "store"
    report = ocitar.load(path, ["linux/arm64/v8"], store=store)
    assert report.images[0].platforms == ("linux/arm64",)
    # The rest are listed without content (absent from the export, left out by the list): flagged.
    assert len(report.images[0].absent) == 4 and "linux/arm64" not in report.images[0].absent
    with unchanged(store), pytest.raises(PlatformNotFoundError) as e:
        ocitar.load(path, ["linux/arm64", "linux/amd64"], store=store)
    msg = str(e.value)
    assert "example.test/peers/img0:latest" in msg
    assert "linux/amd64" in msg
    assert "linux/arm64" in msg  # what it has


WINDOWS = "windows(10.0.20348.2113)/amd64"


@pytest.mark.parametrize(
    ("platform", "shown"),
    [
        ("windows/amd64", WINDOWS),  # a side without os.version matches any
        ("windows(10.0.20348)/amd64", WINDOWS),
        ("windows(10.0.20348.9999)/amd64", WINDOWS),  # major.minor.build compared
        ("windows(10.0.17763)/amd64", None),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm/v6", None),  # no fallback to another variant
        ("linux/arm64/v9", None),
    ],
)
def test_platform_matching_on_peer_export(fixtures: Path, tmp_path: Path, platform: str, shown: str | None) -> None:
    path = fixtures / PEER / "ctr" / "img0-all-platforms.tar"
    store = tmp_path / "store"
    if shown is not None:
        (img,) = ocitar.load(path, [platform], store=store).images
        assert img.platforms == (shown,)
        # The index keeps listing the other four: the report flags them as absent.
        assert len(img.absent) == 4 and shown not in img.absent
    else:
        with pytest.raises(PlatformNotFoundError) as e:
            ocitar.load(path, [platform], store=store)
        assert "example.test/peers/img0:latest" in str(e.value)
        assert WINDOWS in str(e.value)  # listed among what it has
        assert not store.exists()


def test_two_partial_exports_complete_each_other(fixtures: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    ocitar.load(fixtures / PEER / "ctr" / "img0-default-amd64-PARTIAL.tar", store=store)
    r = ocitar.load(fixtures / PEER / "ctr" / "img0-platform-arm64-v8-PARTIAL.tar", store=store)
    assert r.images[0].moved == ()
    assert len(entries(store)) == 1
    assert {
        "sha256:578278da945d09e4ceba9ad9acb5af565310bce7d5c7f32cc04ded148748b446",  # linux/amd64
        "sha256:d9722eb7a4061489aef2c6dac2251482f7a65d990c105d43309cd86627d16156",  # linux/arm64/v8
    } <= blobs(store)
    # Both platforms are now complete in the store: a platform list naming them is satisfied.
    report = ocitar.load(
        ocitar.save(store, "example.test/peers/img0:latest", ["linux/amd64", "linux/arm64"]), store=tmp_path / "t"
    )
    assert report.images[0].platforms == ("linux/amd64", "linux/arm64")


# --------------------------------------------------------------------------
# Docker archives (manifest.json, no usable index.json)
# --------------------------------------------------------------------------

DOCKER_ARCHIVES = {
    f"{PEER}/skopeo/img0-arm64-v8.docker.tar": [(("example.test/peers/img0:latest",), "linux/arm64")],
    "go-containerregistry/tarball/test_bundle.tar": [
        (("test_image_2:latest",), "linux/amd64"),
        (("test_image_1:latest",), "linux/amd64"),
    ],
    "go-containerregistry/tarball/test_link.tar": [
        (("bazel/v1/tarball:test_image_1",), "linux/amd64"),
        (("bazel/v1/tarball:test_image_3",), "linux/amd64"),
    ],
    "go-containerregistry/tarball/hello-world-v25.tar": [((), "linux/arm64")],
    "go-containerregistry/tarball/test_image_1.tar": [(("bazel/v1/tarball:test_image_1",), "linux/amd64")],
    "go-containerregistry/tarball/test_image_2.tar": [(("bazel/v1/tarball:test_image_2",), "linux/amd64")],
    "go-containerregistry/tarball/test_load_manifest.tar": [(("bazel/v1/tarball:test_image_1",), "linux/amd64")],
    "go-containerregistry/mutate/source_image.tar": [(("bazel/pkg/v1/mutate:source_image",), "linux/amd64")],
    "go-containerregistry/mutate/source_image_with_empty_layer_history.tar": [
        (("bazel/pkg/v1/mutate:source_image",), "linux/amd64")
    ],
    "go-containerregistry/mutate/whiteout_image.tar": [(("bazel/pkg/v1/mutate:whiteout_image",), "linux/amd64")],
    "go-containerregistry/mutate/overwritten_file.tar": [(("bazel/pkg/v1/mutate:overwritten_file",), "linux/amd64")],
    "go-containerregistry/mutate/whiteout_dir.tar": [(("localhost:5000/whiteout:latest",), "linux/amd64")],
    "containers-image/docker-archive/almostempty.tar": [(("emptyimage:latest",), "linux/amd64")],
}


def _docker_expectations(path: Path) -> list[dict]:
    """From manifest.json: per entry the config digest, layer digests with gzip-ness, and the platform."""
    out = []
    with tarfile.open(path) as tf:
        manifest = json.loads(member(tf, "manifest.json") or b"null")
        for e in manifest:
            config = member(tf, e["Config"])
            assert config is not None
            cfg = json.loads(config)
            layers = []
            for name in e["Layers"]:
                data = member(tf, name)  # symlinks followed by tarfile
                assert data is not None, name
                layers.append((sha(data), len(data), data[:2] == b"\x1f\x8b"))
            platform = f"{cfg['os']}/{cfg['architecture']}"
            out.append(
                {
                    "config": (sha(config), len(config)),
                    "layers": layers,
                    "platform": platform,
                    "tags": e.get("RepoTags"),
                }
            )
    return out


@pytest.mark.parametrize("how", ["path", "gzip-stream"])
@pytest.mark.parametrize("rel", sorted(DOCKER_ARCHIVES), ids=lambda r: r.rsplit("/", 1)[1])
def test_docker_archives_load(fixtures: Path, tmp_path: Path, rel: str, how: str) -> None:
    path = fixtures / rel
    store = tmp_path / "store"
    report = ocitar.load(_open(path, how), store=store)
    want = DOCKER_ARCHIVES[rel]
    assert [(i.names, tuple(map(ocitar.normalize_platform, i.platforms))) for i in report.images] == [
        (n, (p,)) for n, p in want
    ]
    expected = _docker_expectations(path)
    assert len(expected) == len(report.images)
    index = entries(store)
    for img, exp in zip(report.images, expected):
        assert img.media_type == DOCKER_MANIFEST
        assert img.absent == ()
        doc = store_blob(store, img.digest)
        assert sha(doc) == img.digest
        m = json.loads(doc)
        assert m["schemaVersion"] == 2 and m["mediaType"] == DOCKER_MANIFEST
        assert m["config"] == {"mediaType": DOCKER_CONFIG, "digest": exp["config"][0], "size": exp["config"][1]}
        assert [(x["digest"], x["size"], x["mediaType"]) for x in m["layers"]] == [
            (d, n, DOCKER_LAYER_GZIP if gz else DOCKER_LAYER) for d, n, gz in exp["layers"]
        ]
        assert img.platforms[0].startswith(exp["platform"])
        # Every blob the manifest names is in the store with the right bytes.
        for d in [exp["config"][0]] + [d for d, _, _ in exp["layers"]]:
            assert sha(store_blob(store, d)) == d
        mine = [e for e in index if e["digest"] == img.digest]
        if exp["tags"]:
            assert {(e["annotations"][IMAGE_NAME], e["annotations"][REF_NAME]) for e in mine} == {
                normalize(t) for t in exp["tags"]
            }
            assert img.names == tuple(familiar(normalize(t)[0]) for t in exp["tags"])
        else:
            assert len(mine) == 1 and not mine[0].get("annotations")
            assert img.names == ()
    # Nothing but the manifests, configs and layers of the images.
    want_blobs = {i.digest for i in report.images}
    for exp in expected:
        want_blobs |= {exp["config"][0], *(d for d, _, _ in exp["layers"])}
    assert blobs(store) == want_blobs


def test_hello_world_v25_null_index_falls_back_to_manifest_json(fixtures: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    report = ocitar.load(fixtures / "go-containerregistry" / "tarball" / "hello-world-v25.tar", store=store)
    (img,) = report.images
    assert img.names == ()
    m = json.loads(store_blob(store, img.digest))
    assert m["config"]["digest"] == "sha256:ee301c921b8aadc002973b2e0c3da17d701dcd994b606769a7e6eaa100b81d44"
    assert [x["digest"] for x in m["layers"]] == [
        "sha256:12660636fe55438cc3ae7424da7ac56e845cdb52493ff9cf949c47a7f57f8b43"
    ]
    # An unnamed image is still saved back by digest.
    assert ocitar.save(store, img.digest)


def test_whiteout_dir_gzip_layers_and_digest_named_config(fixtures: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    report = ocitar.load(fixtures / "go-containerregistry" / "mutate" / "whiteout_dir.tar", store=store)
    (img,) = report.images
    m = json.loads(store_blob(store, img.digest))
    assert m["config"]["digest"] == "sha256:92f1e3d53acdc7e137e73869abc4e87aba6614440a31723423790ca0d5db9111"
    assert [x["mediaType"] for x in m["layers"]] == [DOCKER_LAYER_GZIP] * 4


def test_symlinked_layer_is_stored_once_per_content(fixtures: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    report = ocitar.load(fixtures / "go-containerregistry" / "tarball" / "test_link.tar", store=store)
    one, three = report.images
    m1 = json.loads(store_blob(store, one.digest))
    m3 = json.loads(store_blob(store, three.digest))
    # image 3's first layer is a symlink to image 1's layer: the same blob.
    assert m3["layers"][0]["digest"] == m1["layers"][0]["digest"]
    assert m3["layers"][0]["size"] == 10240
    assert len(m3["layers"]) == 2


# --------------------------------------------------------------------------
# OCI layouts, tarred in the test
# --------------------------------------------------------------------------

LAYOUTS = ["generated/store-small", "regclient/testrepo", "go-containerregistry/layout/test_index_one_image"]


def agreed(entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with its ref.name made the image name's tag when the two disagree."""
    a = entry.get("annotations", {})
    if IMAGE_NAME in a and REF_NAME in a:
        tag = a[IMAGE_NAME].rsplit(":", 1)[1]
        if a[REF_NAME] not in (tag, a[IMAGE_NAME]):
            return {**entry, "annotations": {**a, REF_NAME: tag}}
    return entry


@pytest.mark.parametrize("rel", LAYOUTS, ids=lambda r: r.rsplit("/", 1)[1])
def test_layout_directories_load(fixtures: Path, tmp_path: Path, rel: str) -> None:
    layout = fixtures / rel
    archive = tar_dir(layout, tmp_path / "layout.tar")
    store = tmp_path / "store"
    report = ocitar.load(archive, store=store)
    src_index = json.loads((layout / "index.json").read_bytes())["manifests"]
    # The same entries (annotations, platforms, every field), and every blob with the same bytes; only a
    # ref.name that disagrees with the image name beside it (store-small's "img0" beside
    # "example.test/peers/img0:latest") becomes that name's tag: the image name decides.
    expected = [agreed(e) for e in src_index]
    assert sorted(json.dumps(e, sort_keys=True) for e in entries(store)) == sorted(
        json.dumps(e, sort_keys=True) for e in expected
    )
    assert tree_digest(store / "blobs") == tree_digest(layout / "blobs")
    assert {i.digest for i in report.images} == {e["digest"] for e in src_index}
    assert report.blobs_written == len(blobs(store))
    # Names in the report are those of the entries.
    for img in report.images:
        for e in src_index:
            if e["digest"] == img.digest and IMAGE_NAME in e.get("annotations", {}):
                assert familiar(e["annotations"][IMAGE_NAME]) in img.names
    # Loading it again (by stream this time) changes nothing.
    before = tree_digest(store)
    with open(archive, "rb") as f:
        again = ocitar.load(io.BytesIO(gzip.compress(f.read(), mtime=0)), store=store)
    assert again.blobs_written == 0
    assert tree_digest(store) == before


def test_store_small_platforms(fixtures: Path, tmp_path: Path) -> None:
    archive = tar_dir(fixtures / "generated" / "store-small", tmp_path / "layout.tar")
    with pytest.raises(PlatformNotFoundError) as e:
        # the per-platform refs (img0:linux-amd64, …) hold one platform each
        ocitar.load(archive, ["linux/s390x"], store=tmp_path / "s")
    assert "linux/s390x" in str(e.value)
    assert "example.test/peers/img0:linux-" in str(e.value)
    assert not (tmp_path / "s").exists()
    data = ocitar.save(fixtures / "generated" / "store-small", ["example.test/peers/img0:latest"], ["linux/s390x"])
    report = ocitar.load(data, ["linux/s390x"], store=tmp_path / "t")
    assert report.images[0].platforms == ("linux/s390x",)
    assert report.images[0].digest == IMG0


# --------------------------------------------------------------------------
# broken fixtures
# --------------------------------------------------------------------------

BROKEN = [
    ("go-containerregistry/tarball/no_manifest.tar", InvalidArchiveError, ["manifest.json", "repositories"]),
    ("go-containerregistry/tarball/null_manifest.tar", InvalidArchiveError, ["manifest.json", "null"]),
    (
        f"{PEER}/ctr/img0-all-platforms-CORRUPT-LAYER.tar",
        DigestMismatchError,
        ["sha256:f0e581c84381032e1fef56a17c79d6db624bfd37cfbc6e18a473117e5a702d80"],
    ),
    (f"{PEER}/skopeo/img0-index-only-DANGLING.oci.tar", InvalidArchiveError, ["img0"]),
    ("go-containerregistry/tarball/content.tar", InvalidArchiveError, ["not an image archive"]),
    ("regclient/layer.tar", InvalidArchiveError, ["not an image archive"]),
]


@pytest.mark.parametrize(("rel", "exc", "words"), BROKEN, ids=[b[0].rsplit("/", 1)[1] for b in BROKEN])
@pytest.mark.parametrize("how", ["path", "gzip-stream"])
def test_broken_fixtures_raise_and_leave_the_store_unchanged(
    fixtures: Path,
    tmp_path: Path,
    unchanged,
    monkeypatch: pytest.MonkeyPatch,
    rel: str,
    exc: type,
    words: list[str],
    how: str,
) -> None:
    path = fixtures / rel
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    store = build_store(tmp_path / "store", [Image(names=("keep:1",))]).path
    # (an image that shares no blob with the broken archives: a blob already present is not re-read)
    ocitar.load(fixtures / PEER / "ctr" / "img0-s390x-manifest-ref.tar", store=store)
    src = path if how == "path" else io.BytesIO(gzip.compress(path.read_bytes(), mtime=0))
    with unchanged(store, outside=cwd), pytest.raises(exc) as e:
        ocitar.load(src, store=store)
    assert isinstance(e.value, OcitarError)
    msg = str(e.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert not any(n.startswith(".ocitar-ingest-") for n in os.listdir(store))
    # A store that did not exist still does not.
    with pytest.raises(exc):
        ocitar.load(path, store=tmp_path / "new" / "store")
    assert not (tmp_path / "new").exists()
    assert os.listdir(cwd) == []


def test_corrupt_layer_is_not_needed_for_other_platforms(fixtures: Path, tmp_path: Path) -> None:
    # The flipped byte is in linux/amd64's layer; s390x does not share it.
    path = fixtures / PEER / "ctr" / "img0-all-platforms-CORRUPT-LAYER.tar"
    report = ocitar.load(path, ["linux/s390x"], store=tmp_path / "store")
    assert report.images[0].platforms == ("linux/s390x",)
    assert "sha256:f0e581c84381032e1fef56a17c79d6db624bfd37cfbc6e18a473117e5a702d80" not in blobs(tmp_path / "store")


# --------------------------------------------------------------------------
# archives skopeo writes from a store the test builds
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def skopeo_src(tmp_path_factory: pytest.TempPathFactory) -> BuiltStore:
    return build_store(
        tmp_path_factory.mktemp("skopeo-src") / "store",
        [
            Image(
                names=("img0",),
                ref_name_only=True,
                platforms=(
                    Platform("linux/amd64", layers=(Layer(seed="sk-base"), Layer(size=5000, seed="sk-amd64"))),
                    Platform("linux/arm64/v8", layers=(Layer(seed="sk-base"), Layer(size=3000, seed="sk-arm64"))),
                    Platform("linux/arm/v7", layers=(Layer(size=2000, seed="sk-armv7"),)),
                ),
            ),
            Image(names=("img1",), ref_name_only=True, platforms=("linux/amd64",), shape="manifest"),
        ],
    )


SKOPEO_ARCH = {
    "linux/amd64": ["--override-os", "linux", "--override-arch", "amd64"],
    "linux/arm64/v8": ["--override-os", "linux", "--override-arch", "arm64", "--override-variant", "v8"],
    "linux/arm/v7": ["--override-os", "linux", "--override-arch", "arm", "--override-variant", "v7"],
}


@pytest.mark.parametrize("platform", sorted(SKOPEO_ARCH))
def test_skopeo_docker_archive_loads(skopeo: str, skopeo_src: BuiltStore, tmp_path: Path, platform: str) -> None:
    out = tmp_path / "img0.docker.tar"
    run(
        skopeo,
        *SKOPEO_ARCH[platform],
        "copy",
        f"oci:{skopeo_src.path}:img0",
        f"docker-archive:{out}:example.test/team/img0:1.2",
    )
    built = skopeo_src.image("img0")
    store = tmp_path / "store"
    report = ocitar.load(out, store=store)
    (img,) = report.images
    assert img.names == ("example.test/team/img0:1.2",)
    assert [ocitar.normalize_platform(p) for p in img.platforms] == [ocitar.normalize_platform(platform)]
    assert img.media_type == DOCKER_MANIFEST
    m = json.loads(store_blob(store, img.digest))
    # skopeo keeps the config and writes layers uncompressed: they are the config's diff_ids.
    assert m["config"]["digest"] == built.configs[platform]
    config = json.loads(store_blob(store, built.configs[platform]))
    assert [x["digest"] for x in m["layers"]] == config["rootfs"]["diff_ids"]
    assert all(x["mediaType"] == DOCKER_LAYER for x in m["layers"])
    (entry,) = entries(store)
    assert entry["digest"] == img.digest
    assert entry["annotations"] == {IMAGE_NAME: "example.test/team/img0:1.2", REF_NAME: "1.2"}
    # A platform list naming the archive's platform loads; another one is refused.
    assert ocitar.load(out, [platform], store=tmp_path / "again").images[0].digest == img.digest
    other = "linux/s390x"
    with pytest.raises(PlatformNotFoundError) as e:
        ocitar.load(out, [other], store=tmp_path / "none")
    assert "example.test/team/img0:1.2" in str(e.value) and other in str(e.value)


def test_skopeo_oci_archive_multi_arch_all_loads(skopeo: str, skopeo_src: BuiltStore, tmp_path: Path) -> None:
    out = tmp_path / "img0.oci.tar"
    run(skopeo, "copy", "--multi-arch", "all", f"oci:{skopeo_src.path}:img0", f"oci-archive:{out}:img0")
    built = skopeo_src.image("img0")
    store = tmp_path / "store"
    report = ocitar.load(out, store=store)
    (img,) = report.images
    assert img.digest == built.digest
    assert img.names == ("img0:latest",)
    assert img.platforms == ("linux/amd64", "linux/arm64", "linux/arm/v7")
    assert img.absent == ()
    assert blobs(store) == set(built.blobs)
    (entry,) = entries(store)
    assert entry["annotations"] == {REF_NAME: "img0"}
    # One platform of it.
    r = ocitar.load(out, ["linux/arm/v7"], store=tmp_path / "one")
    assert r.images[0].digest == built.digest and r.images[0].platforms == ("linux/arm/v7",)
    assert blobs(tmp_path / "one") == {
        built.digest,
        built.manifests["linux/arm/v7"],
        built.configs["linux/arm/v7"],
        *built.layers["linux/arm/v7"],
    }
    # And skopeo reads the loaded store.
    raw = run(skopeo, "inspect", "--raw", f"oci:{store}:img0").stdout.encode()
    assert sha(raw) == built.digest


def test_skopeo_oci_archive_single_manifest(skopeo: str, skopeo_src: BuiltStore, tmp_path: Path) -> None:
    out = tmp_path / "img1.oci.tar"
    run(skopeo, "copy", f"oci:{skopeo_src.path}:img1", f"oci-archive:{out}:example.test/x/img1:3")
    built = skopeo_src.image("img1")
    report = ocitar.load(out, store=tmp_path / "store")
    (img,) = report.images
    assert img.digest == built.digest
    assert img.names == ("example.test/x/img1:3",)
    assert img.platforms == ("linux/amd64",)


# --------------------------------------------------------------------------
# peer tools read the store after load
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oci_store_loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuiltStore]:
    """A store loaded from an ocitar archive of OCI images (no attestations) with distinct tags."""
    root = tmp_path_factory.mktemp("oracle")
    src = build_store(
        root / "src",
        [
            Image(names=("web:1.0",), platforms=("linux/amd64", "linux/arm64/v8", "linux/arm/v7")),
            Image(names=("registry.example.com/team/api:2.1",), platforms=("linux/amd64",), shape="manifest"),
            # (not shape="nested": oci-image-tool 1.0.0-rc1 refuses an index inside an index)
            Image(names=("tools:0.3",), platforms=("linux/amd64", "linux/s390x")),
        ],
    )
    archive = root / "a.tar"
    ocitar.save(src.path, ["web:1.0", "registry.example.com/team/api:2.1", "tools:0.3"], output=archive)
    store = root / "store"
    ocitar.load(archive, store=store)
    # a sparse one and a subset one
    ocitar.load(ocitar.save(src.path, "web:1.0", ["linux/arm/v7"], index="subset"), store=root / "subset")
    return store, src


def test_skopeo_reads_the_loaded_store(skopeo: str, oci_store_loaded, tmp_path: Path) -> None:
    store, src = oci_store_loaded
    refs = {e["annotations"][REF_NAME]: e["digest"] for e in entries(store)}
    assert set(refs) == {"1.0", "2.1", "0.3"}
    for ref, digest in refs.items():
        raw = run(skopeo, "inspect", "--raw", f"oci:{store}:{ref}").stdout.encode()
        assert sha(raw) == digest
    # skopeo can copy a platform out of it (it re-verifies configs and layers).
    run(
        skopeo,
        "--override-arch",
        "arm",
        "--override-variant",
        "v7",
        "copy",
        f"oci:{store}:1.0",
        f"oci:{tmp_path / 'out'}:x",
    )
    out_index = json.loads((tmp_path / "out" / "index.json").read_bytes())
    assert out_index["manifests"][0]["digest"] == src.image("web:1.0").manifests["linux/arm/v7"]


def test_oci_image_tool_validates_the_loaded_store(
    oci_image_tool: str, oci_store_loaded, fixtures: Path, tmp_path: Path
) -> None:
    store, _ = oci_store_loaded
    p = run(oci_image_tool, "validate", "--type", "image", store)
    assert "Validation succeeded" in p.stdout + p.stderr
    p = run(oci_image_tool, "validate", "--type", "image", store.parent / "subset")
    assert "Validation succeeded" in p.stdout + p.stderr
    other = tmp_path / "ctr"
    ocitar.load(fixtures / PEER / "ctr" / "img0-img1-all-platforms.tar", store=other)
    ocitar.load(fixtures / PEER / "skopeo" / "img0-system-amd64.oci.tar", store=other)
    p = run(oci_image_tool, "validate", "--type", "image", other)
    assert "Validation succeeded" in p.stdout + p.stderr
    # The oracle can fail: a flipped byte in a stored blob is caught.
    victim = next((other / "blobs" / "sha256").iterdir())
    data = bytearray(victim.read_bytes())
    data[-1] ^= 1
    victim.chmod(0o644)
    victim.write_bytes(bytes(data))
    assert run(oci_image_tool, "validate", "--type", "image", other, check=False).returncode != 0


def test_umoci_lists_the_loaded_store(umoci: str, oci_store_loaded) -> None:
    store, _ = oci_store_loaded
    listed = set(run(umoci, "ls", "--layout", store).stdout.split())
    assert {"1.0", "2.1", "0.3"} <= listed
    run(umoci, "stat", "--image", f"{store}:2.1")
