"""save: what peer tools read from the archives save writes (skopeo), and saves from the OCI layouts in the
shared fixtures (../shared/fixtures, SOURCES.md), checked against an independent walk of their JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ocitar
import pytest
from _helpers import entries, sha, store_blob
from conftest import run
from test_save_helpers import (
    archive_blob,
    blob_digests,
    check_archive,
    index_json,
    listing,
    manifest_json,
)

# skopeo ---------------------------------------------------------------------------------------------


def raw_digest(skopeo: str, ref: str) -> str:
    p = run(skopeo, "inspect", "--raw", ref)
    return sha(p.stdout.encode())


def test_skopeo_inspect_raw_keep(skopeo, store, tmp_path):
    app = store.image("app:1.0")
    archive = tmp_path / "app.tar"
    ocitar.save(store.path, "app:1.0", output=archive)
    assert raw_digest(skopeo, f"oci-archive:{archive}:1.0") == app.digest
    # A sparse keep archive still carries the original index.
    ocitar.save(store.path, "app:1.0", ["linux/arm64"], output=tmp_path / "sparse.tar")
    assert raw_digest(skopeo, f"oci-archive:{tmp_path / 'sparse.tar'}:1.0") == app.digest


def test_skopeo_inspect_raw_subset_and_manifest(skopeo, store, tmp_path):
    app = store.image("app:1.0")
    r = ocitar.save(store.path, "app:1.0", ["linux/arm64"], output=tmp_path / "s.tar", index="subset")
    assert raw_digest(skopeo, f"oci-archive:{tmp_path / 's.tar'}:1.0") == r.images[0].digest != app.digest
    ocitar.save(store.path, "app:1.0", ["linux/arm/v7"], output=tmp_path / "m.tar", index="manifest")
    assert raw_digest(skopeo, f"oci-archive:{tmp_path / 'm.tar'}:1.0") == app.manifests["linux/arm/v7"]


@pytest.mark.parametrize(
    ("spec", "flags", "built"),
    [
        ("linux/arm64", ["--override-arch", "arm64", "--override-variant", "v8"], "linux/arm64/v8"),
        ("linux/arm/v7", ["--override-arch", "arm", "--override-variant", "v7"], "linux/arm/v7"),
        ("linux/amd64", ["--override-arch", "amd64"], "linux/amd64"),
    ],
)
def test_skopeo_copies_a_saved_platform(skopeo, store, tmp_path, spec, flags, built):
    app = store.image("app:1.0")
    archive = tmp_path / "one.tar"
    ocitar.save(store.path, "app:1.0", [spec], output=archive)
    dest = tmp_path / "copied"
    run(skopeo, *flags, "copy", f"oci-archive:{archive}:1.0", f"oci:{dest}:1.0")
    (entry,) = json.loads((dest / "index.json").read_text())["manifests"]
    assert entry["digest"] == app.manifests[built]
    for layer in app.layers[built]:
        assert store_blob(dest, layer) == store_blob(store, layer)


def test_skopeo_copies_every_platform_of_a_subset(skopeo, store, tmp_path):
    app = store.image("app:1.0")
    archive = tmp_path / "s.tar"
    r = ocitar.save(store.path, "app:1.0", ["linux/amd64", "linux/arm/v7"], output=archive, index="subset")
    dest = tmp_path / "copied"
    run(skopeo, "copy", "--multi-arch", "all", "--preserve-digests", f"oci-archive:{archive}:1.0", f"oci:{dest}:1.0")
    (entry,) = json.loads((dest / "index.json").read_text())["manifests"]
    assert entry["digest"] == r.images[0].digest
    assert store_blob(dest, app.manifests["linux/arm/v7"]) == store_blob(store, app.manifests["linux/arm/v7"])


def test_skopeo_reads_manifest_json(skopeo, store, tmp_path):
    archive = tmp_path / "app.tar"
    ocitar.save(store.path, ["app:1.0", "app:latest"], output=archive, prefer="linux/arm64")
    for tag in ("app:1.0", "app:latest", "docker.io/library/app:1.0"):
        info = json.loads(run(skopeo, "inspect", f"docker-archive:{archive}:{tag}").stdout)
        assert (info["Os"], info["Architecture"]) == ("linux", "arm64"), tag
    config = json.loads(run(skopeo, "inspect", "--config", f"docker-archive:{archive}").stdout)
    assert (config["architecture"], config.get("variant")) == ("arm64", "v8")
    p = run(skopeo, "inspect", f"docker-archive:{archive}:app:2.0", check=False)
    assert p.returncode != 0 and "app:2.0" in p.stderr


def test_skopeo_reads_manifest_json_of_a_sparse_archive(skopeo, store, tmp_path):
    archive = tmp_path / "v7.tar"
    ocitar.save(store.path, "app:1.0", ["linux/arm/v7"], output=archive, prefer="linux/amd64")
    info = json.loads(run(skopeo, "inspect", f"docker-archive:{archive}:app:1.0").stdout)
    assert info["Architecture"] == "arm"


def test_skopeo_reads_docker_media_types(skopeo, store, tmp_path):
    tools = store.image("registry.example.com:5000/team/tools:0.3")
    archive = tmp_path / "tools.tar"
    ocitar.save(store.path, "registry.example.com:5000/team/tools:0.3", ["linux/s390x"], output=archive)
    info = json.loads(
        run(skopeo, "inspect", f"docker-archive:{archive}:registry.example.com:5000/team/tools:0.3").stdout
    )
    assert info["Architecture"] == "s390x"
    assert json.loads(run(skopeo, "inspect", "--config", f"docker-archive:{archive}").stdout)["os"] == "linux"
    assert tools.configs["linux/s390x"] in blob_digests(archive.read_bytes())


# shared fixtures ------------------------------------------------------------------------------------

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
IMAGE_CONFIGS = {
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
}


def _platform_text(p: dict[str, Any]) -> str:
    s = p["os"]
    if p.get("os.version"):
        s += f"({p['os.version']})"
    s += "/" + p["architecture"]
    if p.get("variant"):
        s += "/" + p["variant"]
    return s


def oracle(root: Path, desc: dict[str, Any]) -> tuple[set[str], list[str], int]:
    """An independent walk of an image: (every blob it reaches, its platforms as written, attestations)."""
    blobs: set[str] = set()
    platforms: list[str] = []
    attestations = 0

    def visit(d: dict[str, Any]) -> None:
        nonlocal attestations
        if d["digest"] in blobs:
            return
        blobs.add(d["digest"])
        doc = json.loads(store_blob(root, d["digest"]))
        if d.get("mediaType") in INDEX_TYPES or "manifests" in doc:
            for child in doc.get("manifests") or []:
                visit(child)
            return
        config = doc.get("config")
        if config:
            blobs.add(config["digest"])
        blobs.update(layer["digest"] for layer in doc.get("layers") or [])
        ann = d.get("annotations") or {}
        p = d.get("platform")
        if ann.get("vnd.docker.reference.type") == "attestation-manifest" or (p and p.get("os") == "unknown"):
            attestations += 1
        elif p:
            platforms.append(_platform_text(p))
        elif config and config.get("mediaType") in IMAGE_CONFIGS:
            platforms.append(_platform_text(json.loads(store_blob(root, config["digest"]))))

    visit(desc)
    return blobs, platforms, attestations


def entry_for(root: Path, ref_name: str) -> dict[str, Any]:
    (e,) = [e for e in entries(root) if (e.get("annotations") or {}).get("org.opencontainers.image.ref.name") == ref_name]
    return e


def check_fixture_save(root: Path, refs: list[str], descs: list[dict[str, Any]], tmp_path: Path) -> bytes:
    out = tmp_path / "fixture.tar"
    report = ocitar.save(root, refs, output=out, prefer="linux/amd64")
    data = out.read_bytes()
    check_archive(data, root)
    want_blobs: set[str] = set()
    distinct = list({d["digest"]: d for d in descs}.values())
    assert [i.digest for i in report.images] == [d["digest"] for d in distinct]
    for img, desc in zip(report.images, distinct):
        blobs, platforms, attestations = oracle(root, desc)
        want_blobs |= blobs
        assert list(img.platforms) == [ocitar.normalize_platform(p) for p in platforms], desc["digest"]
        assert img.attestations == attestations, desc["digest"]
        assert img.media_type == desc["mediaType"]
        assert archive_blob(data, desc["digest"]) == store_blob(root, desc["digest"])
    assert blob_digests(data) == want_blobs
    assert {e["digest"] for e in index_json(data)["manifests"]} == {d["digest"] for d in descs}
    return data


@pytest.fixture
def gcr(fixtures):
    return fixtures / "go-containerregistry" / "layout"


@pytest.mark.parametrize("ref", ["1", "2", "3", "4"])
def test_fixture_gcr_test_index_by_ref_name(gcr, tmp_path, ref):
    root = gcr / "test_index"
    data = check_fixture_save(root, [ref], [entry_for(root, ref)], tmp_path)
    assert all(e["RepoTags"] for e in manifest_json(data))


def test_fixture_gcr_test_index_by_digest(gcr, tmp_path, unchanged):
    root = gcr / "test_index"
    descs = entries(root)
    with unchanged(root):
        data = check_fixture_save(root, [d["digest"] for d in descs], descs, tmp_path)
    assert all("annotations" not in e for e in index_json(data)["manifests"])
    assert all(e["RepoTags"] is None for e in manifest_json(data))


def test_fixture_gcr_one_image(gcr, tmp_path):
    root = gcr / "test_index_one_image"
    (desc,) = entries(root)
    data = check_fixture_save(root, [desc["digest"]], [desc], tmp_path)
    assert index_json(data)["manifests"] == [desc]
    (entry,) = manifest_json(data)
    assert entry["RepoTags"] is None


def test_fixture_gcr_artifact_media_type(gcr, tmp_path):
    """A non-image artifact (Helm config): saved whole, and manifest.json names no config it cannot load."""
    root = gcr / "test_index_media_type"
    (desc,) = entries(root)
    out = tmp_path / "artifact.tar"
    report = ocitar.save(root, desc["digest"], output=out)
    data = out.read_bytes()
    check_archive(data, root)
    blobs, _platforms, _ = oracle(root, desc)
    assert blob_digests(data) == blobs
    assert report.images[0].digest == desc["digest"]
    assert manifest_json(data) == []


@pytest.fixture
def regclient(fixtures):
    return fixtures / "regclient" / "testrepo"


def test_fixture_regclient_images(regclient, tmp_path, unchanged):
    refs = ["b1", "b2", "b3", "v1", "v2", "v3"]
    with unchanged(regclient):
        check_fixture_save(regclient, refs, [entry_for(regclient, r) for r in refs], tmp_path)


def test_fixture_regclient_v1_attestations(regclient, tmp_path):
    v1 = entry_for(regclient, "v1")
    index = json.loads(store_blob(regclient, v1["digest"]))
    arm64 = [d for d in index["manifests"] if d.get("platform", {}).get("architecture") == "arm64"]
    (arm64,) = arm64
    (att,) = [
        d
        for d in index["manifests"]
        if (d.get("annotations") or {}).get("vnd.docker.reference.digest") == arm64["digest"]
    ]
    out = tmp_path / "v1.tar"
    report = ocitar.save(regclient, "v1", ["linux/arm64"], output=out)
    data = out.read_bytes()
    check_archive(data, regclient)
    assert report.images[0].platforms == ("linux/arm64",)
    assert report.images[0].attestations == 1
    want = {v1["digest"]} | oracle(regclient, arm64)[0] | oracle(regclient, att)[0]
    assert blob_digests(data) == want


def test_fixture_regclient_b1_platform_subset(regclient, tmp_path):
    b1 = entry_for(regclient, "b1")
    index = json.loads(store_blob(regclient, b1["digest"]))
    r = ocitar.save(regclient, "b1", ["linux/arm/v6,linux/amd64"], output=tmp_path / "b1.tar", index="subset")
    data = (tmp_path / "b1.tar").read_bytes()
    check_archive(data, regclient)
    new = json.loads(archive_blob(data, r.images[0].digest))
    assert [_platform_text(d["platform"]) for d in new["manifests"]] == ["linux/amd64", "linux/arm/v6"]
    assert new["manifests"] == [
        d for d in index["manifests"] if _platform_text(d["platform"]) in ("linux/amd64", "linux/arm/v6")
    ]
    assert r.images[0].original_digest == b1["digest"]


@pytest.fixture
def multi(fixtures):
    return fixtures / "containers-image" / "oci-layout" / "delete_image_multiple_images"


def test_fixture_containers_image_latest(multi, tmp_path):
    descs = [entry_for(multi, "latest"), entry_for(multi, "3.18.3")]
    assert descs[0]["digest"] == descs[1]["digest"]
    data = check_fixture_save(multi, ["latest", "3.18.3"], descs, tmp_path)
    assert len(index_json(data)["manifests"]) == 2
    assert len(manifest_json(data)) == 1
    report = ocitar.save(multi, "latest", output=tmp_path / "l.tar")
    assert report.images[0].platforms == ("linux/amd64", "linux/386")


def test_fixture_containers_image_wrong_descriptor_size(multi, tmp_path, unchanged):
    desc = entry_for(multi, "1.0.0")
    config = json.loads(store_blob(multi, desc["digest"]))["config"]
    out = tmp_path / "out"
    out.mkdir()
    with unchanged(multi, outside=out), pytest.raises(ocitar.DigestMismatchError) as e:
        ocitar.save(multi, ["latest", "1.0.0"], output=out / "bad.tar")
    msg = str(e.value)
    assert config["digest"] in msg
    assert str(config["size"]) in msg
    assert str(multi / "blobs" / "sha256" / config["digest"].split(":")[1]) in msg
    assert listing(out) == []


@pytest.mark.parametrize("name", ["store-small", "store-docker-mt"])
def test_fixture_generated_stores(fixtures, tmp_path, name):
    root = fixtures / "generated" / name
    # Their ref.names ("img0") disagree with the image names beside them: the image names are the refs.
    descs = [entry_for(root, r) for r in ["img0", "img1", "img0-linux-s390x", "img1-windows-amd64"]]
    refs = [d["annotations"]["io.containerd.image.name"] for d in descs]
    data = check_fixture_save(root, refs, descs, tmp_path)
    assert len(manifest_json(data)) == 4


def test_fixture_generated_full_name_and_windows(fixtures, tmp_path):
    root = fixtures / "generated" / "store-small"
    img2 = entry_for(root, "img2")
    report = ocitar.save(root, "example.test/peers/img2", ["windows(10.0.20348)/amd64"], output=tmp_path / "w.tar")
    assert report.images[0].digest == img2["digest"]
    assert report.images[0].platforms == ("windows(10.0.20348.2113)/amd64",)
    index = json.loads(store_blob(root, img2["digest"]))
    (win,) = [d for d in index["manifests"] if d["platform"]["os"] == "windows"]
    data = (tmp_path / "w.tar").read_bytes()
    check_archive(data, root)
    assert blob_digests(data) == {img2["digest"]} | oracle(root, win)[0]
