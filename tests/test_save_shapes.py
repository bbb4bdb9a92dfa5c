"""save: the three index shapes (keep, subset, manifest) over OCI and Docker media types and nested
indexes, and the Docker manifest.json (issue 2 §3; README "Which shape", docs/ARCHITECTURE.md "Save")."""

from __future__ import annotations

import json

import ocitar
import pytest
from _helpers import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    IMAGE_NAME,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME,
    blob_name,
    sha,
    store_blob,
)
from ocitar.testing import Image, Layer, Platform
from test_save_helpers import (
    HOST,
    archive_blob,
    blob_digests,
    check_archive,
    expected_blobs,
    index_json,
    listing,
    manifest_blobs,
    manifest_json,
    put_blob,
    store_index,
    write_store_index,
)


def saved(store, refs, platforms=None, **kw):
    """(archive bytes, report) of one save."""
    data = ocitar.save(store.path, refs, platforms, **kw)
    report = ocitar.save(store.path, refs, platforms, output=store.path.parent / "report.tar", **kw)
    assert (store.path.parent / "report.tar").read_bytes() == data
    check_archive(data, store)
    return data, report


def docker_entry(image, spec, tags):
    return {
        "Config": blob_name(image.configs[spec]),
        "RepoTags": tags,
        "Layers": [blob_name(d) for d in image.layers[spec]],
    }


def child_descriptors(store, index_digest):
    return json.loads(store_blob(store, index_digest))["manifests"]


# keep -----------------------------------------------------------------------------------------------


def test_keep_writes_the_store_index_unchanged(store):
    app = store.image("app:1.0")
    data, report = saved(store, "app:1.0")
    (entry,) = index_json(data)["manifests"]
    (orig,) = [e for e in store_index(store)["manifests"] if e.get("annotations", {}).get(REF_NAME) == "1.0"]
    assert entry == orig
    assert archive_blob(data, app.digest) == store_blob(store, app.digest)
    assert blob_digests(data) == set(app.blobs)
    img = report.images[0]
    assert (img.digest, img.original_digest, img.media_type) == (app.digest, None, OCI_INDEX)


def test_keep_filtered_is_sparse(store):
    app = store.image("app:1.0")
    data, report = saved(store, "app:1.0", ["linux/arm64"])
    assert index_json(data)["manifests"][0]["digest"] == app.digest
    # The index blob byte for byte: it still lists every platform ...
    index = archive_blob(data, app.digest)
    assert index == store_blob(store, app.digest)
    listed = {d["digest"] for d in json.loads(index)["manifests"]}
    assert app.manifests["linux/amd64"] in listed
    # ... but only the selected platform's content is present.
    blobs = blob_digests(data)
    assert blobs == expected_blobs(store, app, ["linux/arm64/v8"])
    assert app.manifests["linux/amd64"] not in blobs and app.manifests["linux/arm/v7"] not in blobs
    assert (report.images[0].digest, report.images[0].original_digest) == (app.digest, None)
    # The written index lists them without their content: the report says so (a sparse archive).
    assert report.images[0].absent == ("linux/amd64", "linux/arm/v7")


def test_keep_nested(store):
    tools = store.image("registry.example.com:5000/team/tools:0.3")
    assert len(tools.index_digests) == 2
    data, report = saved(store, "registry.example.com:5000/team/tools:0.3", ["linux/s390x"])
    for d in tools.index_digests:
        assert archive_blob(data, d) == store_blob(store, d)
    assert blob_digests(data) == expected_blobs(store, tools, ["linux/s390x"])
    assert report.images[0].platforms == ("linux/s390x",)
    assert report.images[0].digest == tools.digest


def test_keep_docker_media_types(store):
    tools = store.image("registry.example.com:5000/team/tools:0.3")
    data, report = saved(store, "registry.example.com:5000/team/tools:0.3", prefer="linux/s390x")
    (entry,) = index_json(data)["manifests"]
    assert (entry["mediaType"], entry["digest"], entry["size"]) == (DOCKER_LIST, tools.digest, tools.size)
    assert report.images[0].media_type == DOCKER_LIST
    assert report.images[0].platforms == ("linux/amd64", "linux/s390x")
    assert manifest_json(data) == [docker_entry(tools, "linux/s390x", ["registry.example.com:5000/team/tools:0.3"])]
    config = json.loads(archive_blob(data, tools.configs["linux/s390x"]))
    assert config["architecture"] == "s390x"


# subset ---------------------------------------------------------------------------------------------


def test_subset_lists_only_saved_platforms_and_their_attestations(store):
    app = store.image("app:1.0")
    data, report = saved(store, ["app:1.0", "app:latest"], ["linux/arm64"], index="subset")
    entries = index_json(data)["manifests"]
    assert len(entries) == 2
    new = entries[0]["digest"]
    assert all(e["digest"] == new for e in entries)
    assert [e["annotations"][REF_NAME] for e in entries] == ["1.0", "latest"]
    doc_bytes = archive_blob(data, new)
    assert sha(doc_bytes) == new and entries[0]["size"] == len(doc_bytes)
    doc = json.loads(doc_bytes)
    orig = json.loads(store_blob(store, app.digest))
    want = [
        d
        for d in orig["manifests"]
        if d["digest"] in (app.manifests["linux/arm64/v8"], app.attestations["linux/arm64/v8"])
    ]
    assert len(want) == 2
    assert doc["manifests"] == want
    assert {k: v for k, v in doc.items() if k != "manifests"} == {
        k: v for k, v in orig.items() if k != "manifests"
    }
    assert new != app.digest
    assert app.digest not in blob_digests(data), "the original index is not in a subset archive"
    assert blob_digests(data) == {new} | expected_blobs(store, app, ["linux/arm64/v8"], with_indexes=False)
    img = report.images[0]
    assert (img.digest, img.original_digest, img.platforms, img.attestations) == (
        new,
        app.digest,
        ("linux/arm64",),
        1,
    )
    assert report.to_dict()["images"][0]["original_digest"] == app.digest


def test_subset_keeps_annotations(oci_store_factory):
    store = oci_store_factory(
        Image(
            names=("app:1.0",),
            platforms=("linux/amd64", "linux/arm64"),
            annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
        )
    )
    app = store.images[0]
    # Give the index document annotations of its own, as build tools do.
    doc = json.loads(store_blob(store, app.digest))
    doc["annotations"] = {"org.opencontainers.image.source": "https://example.test/app"}
    raw = json.dumps(doc).encode()
    new_top = put_blob(store, raw)
    idx = store_index(store)
    for e in idx["manifests"]:
        e["digest"], e["size"] = new_top, len(raw)
    write_store_index(store, idx)

    data, report = saved(store, "app:1.0", ["linux/amd64"], index="subset")
    (entry,) = index_json(data)["manifests"]
    assert entry["annotations"] == {
        IMAGE_NAME: "docker.io/library/app:1.0",
        REF_NAME: "1.0",
        "org.opencontainers.image.created": "2024-01-01T00:00:00Z",
    }
    written = json.loads(archive_blob(data, entry["digest"]))
    assert written["annotations"] == {"org.opencontainers.image.source": "https://example.test/app"}
    assert [d["digest"] for d in written["manifests"]] == [app.manifests["linux/amd64"]]
    assert report.images[0].original_digest == new_top
    # keep writes the extra entry annotations too.
    data = ocitar.save(store.path, "app:1.0", index="keep")
    assert index_json(data)["manifests"][0]["annotations"]["org.opencontainers.image.created"] == (
        "2024-01-01T00:00:00Z"
    )


def test_subset_of_every_platform_keeps_the_digest(store):
    app = store.image("app:1.0")
    data, report = saved(store, "app:1.0", index="subset")
    assert data == ocitar.save(store.path, "app:1.0", index="keep")
    assert (report.images[0].digest, report.images[0].original_digest) == (app.digest, None)


def test_subset_drops_platforms_the_store_lacks(store):
    """A subset archive is complete: platforms whose manifests the store lacks are not listed."""
    app = store.image("app:1.0")
    store.blob_path(app.manifests["linux/arm/v7"]).unlink()
    data, report = saved(store, "app:1.0", index="subset")
    (entry,) = index_json(data)["manifests"]
    doc = json.loads(archive_blob(data, entry["digest"]))
    assert app.manifests["linux/arm/v7"] not in {d["digest"] for d in doc["manifests"]}
    assert len(doc["manifests"]) == 4
    img = report.images[0]
    # The subset index does not list it: nothing written is absent.
    assert (img.platforms, img.absent, img.attestations) == (("linux/amd64", "linux/arm64"), (), 2)
    assert img.original_digest == app.digest != img.digest
    # keep writes the store's index as it is, listing the absent platform: a sparse archive.
    kept, kept_report = saved(store, "app:1.0")
    assert app.manifests["linux/arm/v7"] in {d["digest"] for d in json.loads(archive_blob(kept, app.digest))["manifests"]}
    assert kept_report.images[0].absent == ("linux/arm/v7",)


def test_subset_nested_rewrites_both_indexes(store):
    tools = store.image("registry.example.com:5000/team/tools:0.3")
    top, child = tools.index_digests
    data, report = saved(store, "registry.example.com:5000/team/tools:0.3", ["linux/s390x"], index="subset")
    (entry,) = index_json(data)["manifests"]
    assert entry["mediaType"] == DOCKER_LIST
    new_top = json.loads(archive_blob(data, entry["digest"]))
    assert new_top["mediaType"] == DOCKER_LIST
    (new_child_desc,) = new_top["manifests"]
    assert new_child_desc["digest"] != child
    new_child = json.loads(archive_blob(data, new_child_desc["digest"]))
    assert new_child["manifests"] == [
        d for d in child_descriptors(store, child) if d["digest"] == tools.manifests["linux/s390x"]
    ]
    assert top not in blob_digests(data) and child not in blob_digests(data)
    assert blob_digests(data) == {entry["digest"], new_child_desc["digest"]} | manifest_blobs(
        store, tools.manifests["linux/s390x"]
    )
    assert (report.images[0].digest, report.images[0].original_digest) == (entry["digest"], top)


def test_subset_is_deterministic(store):
    a = ocitar.save(store.path, "app:1.0", ["linux/arm/v7"], index="subset")
    b = ocitar.save(store.path, "app:1.0", ["linux/arm/v7"], index="subset")
    assert a == b


# manifest -------------------------------------------------------------------------------------------


def test_manifest_shape_writes_the_platform_manifest(store):
    app = store.image("app:1.0")
    data, report = saved(store, "app:1.0", ["linux/arm64"], index="manifest")
    (entry,) = index_json(data)["manifests"]
    (orig_desc,) = [d for d in child_descriptors(store, app.digest) if d["digest"] == app.manifests["linux/arm64/v8"]]
    assert entry == {
        "annotations": {IMAGE_NAME: "docker.io/library/app:1.0", REF_NAME: "1.0"},
        "digest": app.manifests["linux/arm64/v8"],
        "mediaType": OCI_MANIFEST,
        "platform": orig_desc["platform"],
        "size": orig_desc["size"],
    }
    assert blob_digests(data) == manifest_blobs(store, app.manifests["linux/arm64/v8"])
    assert manifest_json(data) == [docker_entry(app, "linux/arm64/v8", ["app:1.0"])]
    img = report.images[0]
    assert (img.digest, img.original_digest, img.media_type, img.platforms, img.attestations) == (
        app.manifests["linux/arm64/v8"],
        app.digest,
        OCI_MANIFEST,
        ("linux/arm64",),
        0,
    )


@pytest.mark.parametrize("platforms", [None, ["linux/amd64", "linux/arm64"]])
def test_manifest_shape_needs_one_platform(store, unchanged, tmp_path, platforms):
    out = tmp_path / "out"
    out.mkdir()
    with unchanged(store.path, outside=out), pytest.raises(ValueError) as e:
        ocitar.save(store.path, "app:1.0", platforms, index="manifest", output=out / "a.tar")
    msg = str(e.value)
    assert "app:1.0" in msg and "one platform" in msg
    assert listing(out) == []


def test_manifest_shape_of_one_platform_image_drops_attestation(oci_store_factory):
    store = oci_store_factory(Image(names=("solo:1",), platforms=(Platform("linux/arm64", attestation=True),)))
    img = store.images[0]
    data, report = saved(store, "solo:1", index="manifest")
    assert blob_digests(data) == manifest_blobs(store, img.manifests["linux/arm64"])
    assert report.images[0].attestations == 0
    assert report.images[0].platforms == ("linux/arm64",)


def test_manifest_shape_of_a_manifest_image_keeps_its_digest(store):
    solo = store.images[3]
    data, report = saved(store, solo.digest, index="manifest")
    assert index_json(data)["manifests"][0]["digest"] == solo.digest
    assert (report.images[0].digest, report.images[0].original_digest) == (solo.digest, None)
    assert blob_digests(data) == set(solo.blobs)


def test_manifest_shape_docker_nested(store):
    tools = store.image("registry.example.com:5000/team/tools:0.3")
    data, report = saved(store, "registry.example.com:5000/team/tools:0.3", ["linux/amd64"], index="manifest")
    (entry,) = index_json(data)["manifests"]
    assert (entry["mediaType"], entry["digest"]) == (DOCKER_MANIFEST, tools.manifests["linux/amd64"])
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    assert blob_digests(data) == manifest_blobs(store, tools.manifests["linux/amd64"])
    assert report.images[0].original_digest == tools.digest


def test_manifest_shape_windows_platform_field(store):
    win = store.image("win:ltsc2022")
    data, _ = saved(store, "win:ltsc2022", ["windows/amd64"], index="manifest")
    (entry,) = index_json(data)["manifests"]
    assert entry["digest"] == win.manifests["windows(10.0.20348.2113)/amd64"]
    assert entry["platform"] == {"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.2113"}


# manifest.json --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefer", "spec"),
    [
        ("linux/arm64", "linux/arm64/v8"),
        ("linux/aarch64", "linux/arm64/v8"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("linux/amd64", "linux/amd64"),
    ],
)
def test_prefer_picks_the_manifest_json_platform(store, prefer, spec):
    app = store.image("app:1.0")
    data = ocitar.save(store.path, ["app:1.0", "app:latest"], prefer=prefer)
    check_archive(data, store)
    assert manifest_json(data) == [docker_entry(app, spec, ["app:1.0", "app:latest"])]


def test_prefer_defaults_to_the_host(oci_store_factory):
    others = [p for p in ("linux/s390x", "linux/ppc64le", "linux/riscv64") if p != HOST][:2]
    store = oci_store_factory(Image(names=("h:1",), platforms=(others[0], HOST, others[1])))
    img = store.images[0]
    data = ocitar.save(store.path, "h:1")
    assert manifest_json(data) == [docker_entry(img, HOST, ["h:1"])]


def test_prefer_default_falls_back_to_index_order(oci_store_factory):
    specs = [p for p in ("linux/s390x", "linux/ppc64le", "linux/riscv64") if p != HOST][:2]
    store = oci_store_factory(Image(names=("h:1",), platforms=tuple(specs)))
    img = store.images[0]
    assert manifest_json(ocitar.save(store.path, "h:1")) == [docker_entry(img, specs[0], ["h:1"])]
    # An unsaved preferred platform is never described.
    data = ocitar.save(store.path, "h:1", [specs[1]], prefer=specs[0])
    assert manifest_json(data) == [docker_entry(img, specs[1], ["h:1"])]


def test_manifest_json_describes_only_saved_content(store):
    app = store.image("app:1.0")
    data = ocitar.save(store.path, "app:1.0", ["linux/arm/v7"], prefer="linux/amd64")
    check_archive(data, store)
    assert manifest_json(data) == [docker_entry(app, "linux/arm/v7", ["app:1.0"])]


def test_manifest_json_lists_layers_in_order(oci_store_factory):
    layers = (Layer(seed="l1"), Layer(seed="l2", size=10), Layer(seed="l0", size=3000))
    store = oci_store_factory(Image(names=("multi:1",), platforms=(Platform("linux/amd64", layers=layers),)))
    img = store.images[0]
    (entry,) = manifest_json(ocitar.save(store.path, "multi:1"))
    assert entry["Layers"] == [blob_name(d) for d in img.layers["linux/amd64"]]
    assert len(entry["Layers"]) == 3


def test_manifest_json_one_entry_per_image(store):
    app, tools, win = store.image("app:1.0"), store.images[1], store.image("win:ltsc2022")
    data = ocitar.save(
        store.path,
        ["app:1.0", "registry.example.com:5000/team/tools:0.3", "win:ltsc2022", "app:latest"],
        prefer="linux/amd64",
    )
    check_archive(data, store)
    assert manifest_json(data) == [
        docker_entry(app, "linux/amd64", ["app:1.0", "app:latest"]),
        docker_entry(tools, "linux/amd64", ["registry.example.com:5000/team/tools:0.3"]),
        docker_entry(win, "linux/amd64", ["win:ltsc2022"]),
    ]
    assert len(index_json(data)["manifests"]) == 4
