"""save: which images references select, the names written for them, and the errors for references that
select nothing, select two images, or do not parse (issue 2 §3; README "Python", docs/ARCHITECTURE.md "Save")."""

from __future__ import annotations

import json

import ocitar
import pytest
from _helpers import IMAGE_NAME, OCI_INDEX, REF_NAME
from ocitar.testing import Image, Layer, Platform
from test_save_helpers import (
    APP,
    SOLO,
    TOOLS,
    WIN,
    blob_digests,
    check_archive,
    index_json,
    listing,
    manifest_json,
    standard_store,
    store_index,
    write_store_index,
)


def named_entry(full: str, tag: str, digest: str, size: int, media_type: str = OCI_INDEX) -> dict[str, object]:
    return {
        "annotations": {IMAGE_NAME: full, REF_NAME: tag},
        "digest": digest,
        "mediaType": media_type,
        "size": size,
    }


def test_ref_as_str_or_list(oci_store_factory):
    store = standard_store(oci_store_factory)
    app = store.image("app:1.0")
    as_str = ocitar.save(store.path, "app:1.0")
    assert isinstance(as_str, bytes)
    assert ocitar.save(store.path, ["app:1.0"]) == as_str
    assert ocitar.save(store.path, ("app:1.0",)) == as_str
    check_archive(as_str, store)
    assert index_json(as_str) == {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [named_entry("docker.io/library/app:1.0", "1.0", app.digest, app.size)],
    }
    assert [e["RepoTags"] for e in manifest_json(as_str)] == [["app:1.0"]]
    assert blob_digests(as_str) == set(app.blobs)


@pytest.mark.parametrize(
    "ref",
    [
        "app:1.0",
        "docker.io/library/app:1.0",
        "index.docker.io/library/app:1.0",
        "library/app:1.0",
        "docker.io/app:1.0",
    ],
)
def test_name_forms_normalize_as_docker(oci_store_factory, ref):
    store = standard_store(oci_store_factory)
    app = store.image("app:1.0")
    data = ocitar.save(store.path, ref)
    assert index_json(data)["manifests"] == [named_entry("docker.io/library/app:1.0", "1.0", app.digest, app.size)]
    assert manifest_json(data)[0]["RepoTags"] == ["app:1.0"]


def test_name_without_tag_means_latest(oci_store_factory):
    store = oci_store_factory(
        Image(names=("web:1.0",), platforms=("linux/amd64",)),
        Image(names=("web:latest",), platforms=("linux/arm64",)),
    )
    latest = store.image("web:latest")
    data = ocitar.save(store.path, "web")
    assert index_json(data)["manifests"] == [
        named_entry("docker.io/library/web:latest", "latest", latest.digest, latest.size)
    ]
    assert manifest_json(data)[0]["RepoTags"] == ["web:latest"]
    assert blob_digests(data) == set(latest.blobs)


def test_user_repository_normalization(oci_store_factory):
    store = oci_store_factory(Image(names=("user/app",), platforms=("linux/amd64",)))
    img = store.image("user/app")
    for ref in ("user/app", "user/app:latest", "docker.io/user/app:latest", "index.docker.io/user/app"):
        data = ocitar.save(store.path, ref)
        assert index_json(data)["manifests"] == [
            named_entry("docker.io/user/app:latest", "latest", img.digest, img.size)
        ], ref
        assert manifest_json(data)[0]["RepoTags"] == ["user/app:latest"], ref


def test_registry_with_port_keeps_full_name(oci_store_factory):
    store = standard_store(oci_store_factory)
    tools = store.image("registry.example.com:5000/team/tools:0.3")
    data = ocitar.save(store.path, "registry.example.com:5000/team/tools:0.3")
    check_archive(data, store)
    assert index_json(data)["manifests"] == [
        named_entry(
            "registry.example.com:5000/team/tools:0.3",
            "0.3",
            tools.digest,
            tools.size,
            "application/vnd.docker.distribution.manifest.list.v2+json",
        )
    ]
    assert manifest_json(data)[0]["RepoTags"] == ["registry.example.com:5000/team/tools:0.3"]
    # Neither another registry nor another tag of it names the image.
    for wrong in ("team/tools:0.3", "registry.example.com/team/tools:0.3", "registry.example.com:5000/team/tools"):
        with pytest.raises(ocitar.ImageNotFoundError, match="image not found"):
            ocitar.save(store.path, wrong)


def test_localhost_with_port(oci_store_factory):
    store = oci_store_factory(Image(names=("localhost:5000/app:2",), platforms=("linux/amd64",)))
    img = store.image("localhost:5000/app:2")
    data = ocitar.save(store.path, "localhost:5000/app:2")
    assert index_json(data)["manifests"] == [named_entry("localhost:5000/app:2", "2", img.digest, img.size)]
    assert manifest_json(data)[0]["RepoTags"] == ["localhost:5000/app:2"]


@pytest.mark.parametrize("form", ["app@{d}", "docker.io/library/app@{d}", "{d}"])
def test_by_digest_writes_no_names(oci_store_factory, form):
    store = standard_store(oci_store_factory)
    app = store.image("app:1.0")
    ref = form.format(d=app.digest)
    data = ocitar.save(store.path, ref)
    check_archive(data, store)
    assert index_json(data)["manifests"] == [{"digest": app.digest, "mediaType": OCI_INDEX, "size": app.size}]
    assert [e["RepoTags"] for e in manifest_json(data)] == [None]
    assert blob_digests(data) == set(app.blobs)
    report = ocitar.save(store.path, ref, output=store.path.parent / "out.tar")
    assert report.images[0].names == ()
    assert report.images[0].digest == app.digest


def test_name_with_digest_of_another_repository_is_not_found(oci_store_factory):
    store = standard_store(oci_store_factory)
    app = store.image("app:1.0")
    win = store.image("win:ltsc2022")
    with pytest.raises(ocitar.ImageNotFoundError) as e:
        ocitar.save(store.path, f"other@{app.digest}")
    assert f"other@{app.digest}" in str(e.value)
    with pytest.raises(ocitar.ImageNotFoundError):
        ocitar.save(store.path, f"app@{win.digest}")


def test_bare_digest_matches_unnamed_entry(oci_store_factory):
    store = standard_store(oci_store_factory)
    solo = store.images[3]
    assert solo.names == ()
    data = ocitar.save(store.path, solo.digest)
    check_archive(data, store)
    (entry,) = [e for e in store_index(store)["manifests"] if e["digest"] == solo.digest]
    assert "annotations" not in entry
    # The store's own descriptor (with its platform field), unchanged.
    assert index_json(data)["manifests"] == [entry]
    assert blob_digests(data) == set(solo.blobs)
    (docker,) = manifest_json(data)
    assert docker["RepoTags"] is None
    assert docker["Config"] == "blobs/sha256/" + solo.configs["linux/arm64/v8"].split(":")[1]


def test_ref_name_only_store(oci_store_factory):
    """Stores written by skopeo or umoci carry only org.opencontainers.image.ref.name."""
    store = oci_store_factory(
        Image(names=("img0",), platforms=("linux/amd64",), ref_name_only=True),
        Image(names=("team/web:2",), platforms=("linux/arm64",), ref_name_only=True),
        Image(names=("3.20",), platforms=("linux/s390x",), ref_name_only=True),
    )
    for ref, built_name, full, tag in [
        ("img0", "img0", "docker.io/library/img0:latest", "latest"),
        ("docker.io/library/img0:latest", "img0", "docker.io/library/img0:latest", "latest"),
        ("team/web:2", "team/web:2", "docker.io/team/web:2", "2"),
        ("docker.io/team/web:2", "team/web:2", "docker.io/team/web:2", "2"),
        ("3.20", "3.20", "docker.io/library/3.20:latest", "latest"),
    ]:
        img = store.image(built_name)
        data = ocitar.save(store.path, ref)
        assert index_json(data)["manifests"] == [named_entry(full, tag, img.digest, img.size)], ref
        assert blob_digests(data) == set(img.blobs), ref


def test_unknown_ref_names_closest(oci_store_factory, unchanged, tmp_path):
    store = standard_store(oci_store_factory)
    out = tmp_path / "out"
    out.mkdir()
    with unchanged(store.path, outside=out), pytest.raises(ocitar.ImageNotFoundError) as e:
        ocitar.save(store.path, "ap:1.0", output=out / "a.tar")
    assert isinstance(e.value, LookupError)
    assert isinstance(e.value, ocitar.OcitarError)
    msg = str(e.value)
    assert '"ap:1.0"' in msg
    assert "closest: " in msg and "app:1.0" in msg
    assert str(store.path) in msg
    assert listing(out) == []


def test_unknown_tag_is_not_found(oci_store_factory):
    store = standard_store(oci_store_factory)
    with pytest.raises(ocitar.ImageNotFoundError, match=r'"app:2\.0"'):
        ocitar.save(store.path, "app:2.0")


def test_one_unknown_ref_among_good_ones_writes_nothing(oci_store_factory, unchanged, tmp_path):
    store = standard_store(oci_store_factory)
    out = tmp_path / "out"
    out.mkdir()
    with unchanged(store.path, outside=out), pytest.raises(ocitar.ImageNotFoundError, match="nope"):
        ocitar.save(store.path, ["app:1.0", "win:ltsc2022", "nope:1"], output=out / "a.tar")
    assert listing(out) == []


@pytest.mark.parametrize("ref_name_only", [False, True])
def test_ambiguous_ref_names_both_images(oci_store_factory, unchanged, tmp_path, ref_name_only):
    store = oci_store_factory(
        Image(names=("app:1.0",), platforms=("linux/amd64",), ref_name_only=ref_name_only),
        Image(names=("other:1.0",), platforms=("linux/arm64",), ref_name_only=ref_name_only),
    )
    first, second = store.images
    doc = store_index(store)
    doc["manifests"][1]["annotations"] = dict(doc["manifests"][0]["annotations"])
    write_store_index(store, doc)
    out = tmp_path / "out"
    out.mkdir()
    with unchanged(store.path, outside=out), pytest.raises(ocitar.ImageNotFoundError) as e:
        ocitar.save(store.path, ["app:1.0"], output=out / "a.tar")
    assert isinstance(e.value, LookupError)
    msg = str(e.value)
    assert "ambiguous" in msg and '"app:1.0"' in msg
    assert first.digest in msg and second.digest in msg
    # Each image can still be named by its digest.
    assert ocitar.save(store.path, second.digest)


def test_same_name_twice_for_one_digest_is_one_image(oci_store_factory):
    store = oci_store_factory(Image(names=("app:1.0",), platforms=("linux/amd64",)))
    img = store.images[0]
    doc = store_index(store)
    doc["manifests"].append(dict(doc["manifests"][0]))
    write_store_index(store, doc)
    data = ocitar.save(store.path, "app:1.0")
    assert index_json(data)["manifests"] == [named_entry("docker.io/library/app:1.0", "1.0", img.digest, img.size)]


@pytest.mark.parametrize(
    "ref",
    ["App:1.0", "app:", "app:-x", "a//b", "-app", "app name", "", "app@sha256:abc", "sha256:xyz", "app:1.0@md5:00"],
)
def test_invalid_ref(oci_store_factory, unchanged, tmp_path, ref):
    store = standard_store(oci_store_factory)
    out = tmp_path / "out"
    out.mkdir()
    with unchanged(store.path, outside=out), pytest.raises(ocitar.ImageNotFoundError) as e:
        ocitar.save(store.path, ["app:1.0", ref], output=out / "a.tar")
    msg = str(e.value)
    assert msg.startswith("invalid reference format")
    assert json.dumps(ref) in msg


def test_no_refs_is_a_value_error(oci_store_factory):
    store = standard_store(oci_store_factory)
    with pytest.raises(ValueError, match="no image reference"):
        ocitar.save(store.path, [])


def test_duplicate_refs_count_once(oci_store_factory):
    store = standard_store(oci_store_factory)
    once = ocitar.save(store.path, "app:1.0")
    assert ocitar.save(store.path, ["app:1.0", "docker.io/library/app:1.0", "app:1.0"]) == once


def test_two_names_of_one_image(oci_store_factory, tmp_path):
    store = standard_store(oci_store_factory)
    app = store.image("app:1.0")
    data = ocitar.save(store.path, ["app:latest", "app:1.0"])
    check_archive(data, store)
    assert index_json(data)["manifests"] == [
        named_entry("docker.io/library/app:latest", "latest", app.digest, app.size),
        named_entry("docker.io/library/app:1.0", "1.0", app.digest, app.size),
    ]
    (entry,) = manifest_json(data)
    assert entry["RepoTags"] == ["app:latest", "app:1.0"]
    assert blob_digests(data) == set(app.blobs)
    report = ocitar.save(store.path, ["app:latest", "app:1.0"], output=tmp_path / "a.tar")
    assert len(report.images) == 1
    assert report.images[0].names == ("app:latest", "app:1.0")


def test_several_images(oci_store_factory):
    store = standard_store(oci_store_factory)
    app, tools, win, solo = store.images
    data = ocitar.save(
        store.path, ["win:ltsc2022", solo.digest, "app:1.0"], prefer="linux/amd64"
    )
    check_archive(data, store)
    assert [(e["digest"], e.get("annotations", {}).get(IMAGE_NAME)) for e in index_json(data)["manifests"]] == [
        (win.digest, "docker.io/library/win:ltsc2022"),
        (solo.digest, None),
        (app.digest, "docker.io/library/app:1.0"),
    ]
    assert [e["RepoTags"] for e in manifest_json(data)] == [["win:ltsc2022"], None, ["app:1.0"]]
    assert blob_digests(data) == set(win.blobs) | set(solo.blobs) | set(app.blobs)
    assert tools.digest not in blob_digests(data)


def test_images_sharing_a_manifest_get_one_manifest_json_entry(oci_store_factory):
    """manifest.json holds one entry per distinct image manifest, with all its familiar names."""
    shared = Platform("linux/amd64", layers=(Layer(seed="shared"),))
    store = oci_store_factory(
        Image(names=("a:1",), platforms=(shared, "linux/arm64")),
        Image(names=("b:1",), platforms=(shared,), shape="manifest"),
    )
    a, b = store.images
    assert a.manifests["linux/amd64"] == b.digest
    data = ocitar.save(store.path, ["a:1", "b:1"], prefer="linux/amd64")
    check_archive(data, store)
    assert [e["digest"] for e in index_json(data)["manifests"]] == [a.digest, b.digest]
    assert manifest_json(data) == [
        {
            "Config": "blobs/sha256/" + a.configs["linux/amd64"].split(":")[1],
            "RepoTags": ["a:1", "b:1"],
            "Layers": ["blobs/sha256/" + d.split(":")[1] for d in a.layers["linux/amd64"]],
        }
    ]


def test_missing_store_is_a_store_error(tmp_path):
    with pytest.raises(ocitar.StoreError) as e:
        ocitar.save(tmp_path / "nowhere", "app:1.0")
    assert str(tmp_path / "nowhere") in str(e.value)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
    with pytest.raises(ocitar.StoreError, match="index.json"):
        ocitar.save(tmp_path / "half", "app:1.0")


def test_unused_images_stay_out(oci_store_factory):
    store = oci_store_factory(APP, TOOLS, WIN, SOLO)
    data = ocitar.save(store.path, "win:ltsc2022")
    win = store.image("win:ltsc2022")
    assert blob_digests(data) == set(win.blobs)


