"""Interop with skopeo, umoci and oci-image-tool (issue 7 §2): skopeo reads every archive shape ocitar
writes, as ``oci-archive:`` and as ``docker-archive:``; ocitar loads what ``skopeo copy`` writes; umoci
unpacks platform manifests ocitar loaded; oci-image-tool validates stores ocitar loaded.

The peer tools are installed by ``.ci/run``; without them these tests skip, or fail under
``OCITAR_REQUIRE_TOOLS=1`` (fixtures ``skopeo``, ``umoci``, ``oci_image_tool`` in conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ocitar
import pytest
from _helpers import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, REF_NAME, sha
from conftest import run
from ocitar.testing import BuiltStore, Image
from test_interop_helpers import (
    FOREIGN,
    HOST,
    config,
    diff_ids,
    multi,
    norm,
    override,
    read_json,
    rootfs_files,
    tree_files,
)

# Two OCI-typed images with distinct tags (skopeo's oci-archive:FILE:REF picks the entry by the
# org.opencontainers.image.ref.name annotation, which ocitar writes as the tag).
PEER_A = "example.test/peers/alpha:1.0"
PEER_B = "beta:2.0"  # a docker.io/library name
TAGS = {PEER_A: "1.0", PEER_B: "2.0"}

Factory = Callable[..., BuiltStore]


def sk(skopeo: str, tmp: Path, *args: str | os.PathLike[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run skopeo with its temporary files (oci-archive extraction) under ``tmp``."""
    return run(skopeo, "--tmpdir", tmp, *args, check=check)


def skopeo_json(skopeo: str, tmp: Path, *args: str | os.PathLike[str]) -> object:
    return json.loads(sk(skopeo, tmp, *args).stdout)


def skopeo_raw(skopeo: str, tmp: Path, *args: str | os.PathLike[str]) -> bytes:
    """stdout of a skopeo command, as bytes (``inspect --raw`` prints the stored bytes unchanged)."""
    return sk(skopeo, tmp, *args).stdout.encode()


def top_descriptor(layout: Path) -> dict[str, object]:
    """The single index.json entry of an OCI layout directory."""
    (entry,) = read_json(layout / "index.json")["manifests"]
    result: dict[str, object] = entry
    return result


def two_images(factory: Factory) -> BuiltStore:
    return factory(multi(PEER_A, attestation=True), multi(PEER_B))


# --------------------------------------------------------------------------
# skopeo reads what ocitar writes
# --------------------------------------------------------------------------

SHAPES: dict[str, tuple[dict[str, Any], tuple[str, ...] | None, str]] = {
    # shape id: (save options, platforms whose content the archive holds, platform manifest.json describes)
    "keep-full": ({"index": "keep"}, None, HOST),
    "keep-sparse": ({"index": "keep", "platforms": [FOREIGN]}, (FOREIGN,), FOREIGN),
    "subset": ({"index": "subset", "platforms": [HOST, FOREIGN]}, (HOST, FOREIGN), HOST),
    "manifest": ({"index": "manifest", "platforms": [FOREIGN]}, (FOREIGN,), FOREIGN),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_skopeo_reads_every_shape_as_oci_archive(oci_store_factory, tmp_path, skopeo, shape):
    options, saved, _ = SHAPES[shape]
    store = two_images(oci_store_factory)
    archive = tmp_path / f"{shape}.tar"
    report = ocitar.save(store.path, [PEER_A, PEER_B], output=archive, **options)
    tmp = tmp_path / "skopeo-tmp"
    tmp.mkdir()

    for name, written in zip((PEER_A, PEER_B), report.images):
        image = store.image(name)
        source = f"oci-archive:{archive}:{TAGS[name]}"
        raw = skopeo_raw(skopeo, tmp, "inspect", "--raw", source)
        assert sha(raw) == written.digest
        if shape == "manifest":
            assert written.digest == image.manifests[FOREIGN]
        elif shape.startswith("keep"):
            assert written.digest == image.digest

        # skopeo copy out of the archive into an OCI layout directory keeps every digest.
        out = tmp_path / f"copy-{TAGS[name]}"
        if saved is None or shape == "subset":
            sk(skopeo, tmp, "copy", "-q", "--multi-arch", "all", "--preserve-digests", source, f"oci:{out}:x")
            assert top_descriptor(out)["digest"] == written.digest
            want = {norm(p) for p in (saved or image.manifests)}
            assert {norm(p.platform) for p in ocitar.verify(out).images[0].platforms} == want
        else:
            (platform,) = saved
            sk(skopeo, tmp, *override(platform), "copy", "-q", "--preserve-digests", source, f"oci:{out}:x")
            assert top_descriptor(out)["digest"] == image.manifests[platform]
            ocitar.verify(out)
            if shape == "keep-sparse":
                # The kept index lists platforms the archive lacks: skopeo copies only what is there.
                failed = sk(
                    skopeo, tmp, "copy", "-q", "--multi-arch", "all", source, f"oci:{tmp_path / 'all'}:x", check=False
                )
                assert failed.returncode != 0
                assert image.manifests[HOST][7:] in failed.stderr and "no such file or directory" in failed.stderr


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_skopeo_reads_compressed_oci_archive(oci_store_factory, tmp_path, skopeo, compression):
    store = two_images(oci_store_factory)
    archive = tmp_path / f"keep.tar.{compression}"
    ocitar.save(store.path, [PEER_A, PEER_B], output=archive, compression=compression)
    for name in (PEER_A, PEER_B):
        source = f"oci-archive:{archive}:{TAGS[name]}"
        assert sha(skopeo_raw(skopeo, tmp_path, "inspect", "--raw", source)) == store.image(name).digest
        out = tmp_path / f"copy-{TAGS[name]}"
        sk(skopeo, tmp_path, "copy", "-q", "--multi-arch", "all", "--preserve-digests", source, f"oci:{out}:x")
        assert top_descriptor(out)["digest"] == store.image(name).digest


@pytest.mark.parametrize("shape", list(SHAPES))
def test_skopeo_reads_every_shape_as_docker_archive(oci_store_factory, tmp_path, skopeo, shape):
    options, _, described = SHAPES[shape]
    store = two_images(oci_store_factory)
    archive = tmp_path / f"{shape}.tar"
    ocitar.save(store.path, [PEER_A, PEER_B], output=archive, **options)
    tmp = tmp_path / "skopeo-tmp"
    tmp.mkdir()

    for position, name in enumerate((PEER_A, PEER_B)):
        image = store.image(name)
        for source in (f"docker-archive:{archive}:{name}", f"docker-archive:{archive}:@{position}"):
            summary = skopeo_json(skopeo, tmp, "inspect", source)
            assert isinstance(summary, dict)
            fields = config(store, image, described)
            assert (summary["Os"], summary["Architecture"]) == (fields["os"], fields["architecture"])
            # skopeo lists a docker-archive's layers by their uncompressed digests.
            assert summary["Layers"] == diff_ids(store, image, described)
            assert sha(skopeo_raw(skopeo, tmp, "inspect", "--config", "--raw", source)) == image.configs[described]

        # skopeo copy out of the docker-archive: same config (converted to OCI) and layer content.
        out = tmp_path / f"copy-{position}"
        sk(skopeo, tmp, "copy", "-q", f"docker-archive:{archive}:{name}", f"oci:{out}:x")
        manifest = read_json(out / "blobs" / "sha256" / str(top_descriptor(out)["digest"])[7:])
        copied = read_json(out / "blobs" / "sha256" / manifest["config"]["digest"][7:])
        assert copied["rootfs"]["diff_ids"] == diff_ids(store, image, described)
        original = config(store, image, described)
        assert (copied["os"], copied["architecture"]) == (original["os"], original["architecture"])


# --------------------------------------------------------------------------
# ocitar loads what skopeo writes
# --------------------------------------------------------------------------

SKOPEO_NAME = "example.test/peers/gamma:3.0"


def skopeo_source(factory: Factory) -> BuiltStore:
    # As skopeo and umoci name images: only org.opencontainers.image.ref.name, a full reference.
    plain = multi(SKOPEO_NAME, attestation=True)
    return factory(Image(names=plain.names, platforms=plain.platforms, ref_name_only=True))


@pytest.mark.parametrize("multi_arch", ["all", "system"])
def test_ocitar_loads_skopeo_oci_archive(oci_store_factory, tmp_path, skopeo, multi_arch):
    store = skopeo_source(oci_store_factory)
    image = store.image(SKOPEO_NAME)
    archive = tmp_path / "skopeo.tar"
    ref = SKOPEO_NAME
    sk(
        skopeo,
        tmp_path,
        "copy",
        "-q",
        "--multi-arch",
        multi_arch,
        f"oci:{store.path}:{ref}",
        f"oci-archive:{archive}:{ref}",
    )

    loaded = tmp_path / "loaded"
    report = ocitar.load(archive, store=loaded)
    (got,) = report.images
    assert got.names == (SKOPEO_NAME,)
    if multi_arch == "all":
        # Every platform and the attestations, under the index digest skopeo kept.
        assert (got.digest, got.media_type) == (image.digest, OCI_INDEX)
        assert {norm(p) for p in got.platforms} == {norm(p) for p in image.manifests}
        assert got.attestations == len(image.attestations)
    else:
        # skopeo's default copies the host platform's manifest alone.
        assert (got.digest, got.media_type) == (image.manifests[HOST], OCI_MANIFEST)
        assert [norm(p) for p in got.platforms] == [norm(HOST)]
    assert got.absent == ()
    ocitar.verify(loaded)
    for digest in (
        image.blobs if multi_arch == "all" else [image.manifests[HOST], image.configs[HOST], *image.layers[HOST]]
    ):
        assert (loaded / "blobs" / "sha256" / digest[7:]).read_bytes() == store.blob_path(digest).read_bytes()

    # ...and skopeo reads ocitar's archive of it back with the same digest.
    again = tmp_path / "again.tar"
    ocitar.save(loaded, SKOPEO_NAME, output=again)
    assert sha(skopeo_raw(skopeo, tmp_path, "inspect", "--raw", f"oci-archive:{again}:3.0")) == got.digest


@pytest.mark.parametrize("platform", [HOST, FOREIGN])
def test_ocitar_loads_skopeo_docker_archive(oci_store_factory, tmp_path, skopeo, platform):
    store = skopeo_source(oci_store_factory)
    image = store.image(SKOPEO_NAME)
    archive = tmp_path / "docker.tar"
    sk(
        skopeo,
        tmp_path,
        *override(platform),
        "copy",
        "-q",
        f"oci:{store.path}:{SKOPEO_NAME}",
        f"docker-archive:{archive}:{SKOPEO_NAME}",
    )
    skopeo_config = skopeo_raw(skopeo, tmp_path, "inspect", "--config", "--raw", f"docker-archive:{archive}")

    loaded = tmp_path / "loaded"
    (got,) = ocitar.load(archive, store=loaded).images
    assert got.names == (SKOPEO_NAME,)
    assert got.media_type == DOCKER_MANIFEST
    assert [norm(p) for p in got.platforms] == [norm(platform)]
    ocitar.verify(loaded)

    index = read_json(loaded / "index.json")
    (entry,) = index["manifests"]
    assert entry["digest"] == got.digest and entry["annotations"][REF_NAME] == "3.0"
    manifest = read_json(loaded / "blobs" / "sha256" / got.digest[7:])
    # The config is skopeo's, byte for byte; the layers are the uncompressed tars, named by their diff IDs.
    assert manifest["config"]["digest"] == sha(skopeo_config)
    assert [layer["digest"] for layer in manifest["layers"]] == diff_ids(store, image, platform)
    loaded_config, original = json.loads(skopeo_config), config(store, image, platform)
    assert (loaded_config["os"], loaded_config["architecture"]) == (original["os"], original["architecture"])


# --------------------------------------------------------------------------
# umoci unpacks what ocitar loaded
# --------------------------------------------------------------------------


@pytest.mark.parametrize("platform", [HOST, FOREIGN])
def test_umoci_unpacks_a_loaded_manifest_archive(oci_store_factory, tmp_path, umoci, platform):
    """``index="manifest"``: the platform manifest is the image, so its tag is a ref umoci can unpack."""
    name = "example.test/umoci/app:1.0"
    store = oci_store_factory(multi(name))
    archive = tmp_path / "manifest.tar"
    ocitar.save(store.path, name, [platform], index="manifest", output=archive)
    loaded = tmp_path / "loaded"
    ocitar.load(archive, store=loaded)

    bundle = tmp_path / "bundle"
    run(umoci, "unpack", "--image", f"{loaded}:1.0", bundle)
    assert tree_files(bundle / "rootfs") == rootfs_files(store, store.image(name), platform)


def test_umoci_unpacks_every_platform_of_a_loaded_index(oci_store_factory, tmp_path, umoci):
    """umoci cannot unpack through an index: give each loaded platform manifest its own index.json entry
    (as ``umoci``/``skopeo`` would name it) and unpack each one."""
    name = "example.test/umoci/multi:1.0"
    store = oci_store_factory(multi(name, attestation=True))
    image = store.image(name)
    archive = tmp_path / "keep.tar"
    ocitar.save(store.path, name, output=archive)
    loaded = tmp_path / "loaded"
    ocitar.load(archive, store=loaded)

    index_path = loaded / "index.json"
    index = read_json(index_path)
    (entry,) = index["manifests"]
    assert entry["digest"] == image.digest
    children = read_json(loaded / "blobs" / "sha256" / image.digest[7:])["manifests"]
    refs = {}
    for child in children:
        p = child["platform"]
        if p["os"] == "unknown":
            continue  # attestation manifests hold no filesystem
        spec = "/".join([p["os"], p["architecture"]] + ([p["variant"]] if "variant" in p else []))
        ref = "platform-" + spec.replace("/", "-")
        refs[ref] = spec
        index["manifests"].append({**child, "annotations": {REF_NAME: ref}})
    assert sorted(refs.values()) == sorted(image.manifests)
    mode = stat.S_IMODE(index_path.stat().st_mode)
    index_path.chmod(mode | stat.S_IWUSR)
    index_path.write_text(json.dumps(index))

    for ref, spec in refs.items():
        bundle = tmp_path / ref
        run(umoci, "unpack", "--image", f"{loaded}:{ref}", bundle)
        assert tree_files(bundle / "rootfs") == rootfs_files(store, image, spec)


# --------------------------------------------------------------------------
# oci-image-tool validates stores ocitar loaded
# --------------------------------------------------------------------------

VALIDATE: dict[str, dict[str, Any]] = {
    "keep": {"index": "keep"},
    "subset": {"index": "subset", "platforms": [HOST, FOREIGN]},
    "manifest-host": {"index": "manifest", "platforms": [HOST]},
    "manifest-foreign": {"index": "manifest", "platforms": [FOREIGN]},
}


def loaded_store(factory: Factory, tmp_path: Path, shape: str) -> Path:
    """Two OCI images (no attestations: oci-image-tool rejects their media types) saved as ``shape`` and
    loaded into a new store; a second load of another shape adds to the same store."""
    store = factory(multi(PEER_A), multi(PEER_B))
    loaded = tmp_path / "loaded"
    archive = tmp_path / f"{shape}.tar"
    ocitar.save(store.path, [PEER_A, PEER_B], output=archive, **VALIDATE[shape])
    ocitar.load(archive, store=loaded)
    other = "manifest-foreign" if shape != "manifest-foreign" else "keep"
    renamed = factory(multi("example.test/peers/delta:4.0"), name="other")
    archive = tmp_path / f"{other}.tar"
    ocitar.save(renamed.path, "example.test/peers/delta:4.0", output=archive, **VALIDATE[other])
    ocitar.load(archive, store=loaded)
    assert len(read_json(loaded / "index.json")["manifests"]) == 3
    return loaded


@pytest.mark.parametrize("shape", list(VALIDATE))
def test_oci_image_tool_validates_loaded_store(oci_store_factory, tmp_path, oci_image_tool, shape):
    loaded = loaded_store(oci_store_factory, tmp_path, shape)
    result = run(oci_image_tool, "validate", "--type", "image", loaded)
    assert f"{loaded}: OK" in result.stdout and "Validation succeeded" in result.stdout


def test_oci_image_tool_rejects_a_corrupted_copy(oci_store_factory, tmp_path, oci_image_tool):
    """The oracle is not vacuous: the same kind of store with one layer byte flipped fails validation."""
    loaded = loaded_store(oci_store_factory, tmp_path, "manifest-host")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(loaded, corrupt)
    manifest = read_json(
        corrupt / "blobs" / "sha256" / str(read_json(corrupt / "index.json")["manifests"][0]["digest"])[7:]
    )
    layer = corrupt / "blobs" / "sha256" / manifest["layers"][-1]["digest"][7:]
    layer.chmod(0o644)
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0x01
    layer.write_bytes(bytes(data))

    result = run(oci_image_tool, "validate", "--type", "image", corrupt, check=False)
    assert result.returncode != 0
    assert "layer validation failed: digest mismatch" in result.stderr


def test_skopeo_reads_a_gzip_archive_deflated_in_pieces(oci_store_factory, tmp_path, skopeo):
    """gzip is deflated in 1 MiB pieces on every core and joined into one stream; skopeo copies it."""
    from ocitar.testing import Image, Layer, Platform

    name = "example.test/interop/members:1"
    layer = Layer(size=5 << 20, seed="m", compression="none")
    store = oci_store_factory(Image(names=(name,), platforms=(Platform("linux/amd64", layers=(layer,)),)))
    archive = tmp_path / "members.tar.gz"
    ocitar.save(store.path, name, output=archive, compression="gzip")
    source = f"oci-archive:{archive}:1"
    out = tmp_path / "copy"
    sk(skopeo, tmp_path, "copy", "-q", "--multi-arch", "all", "--preserve-digests", source, f"oci:{out}:x")
    assert top_descriptor(out)["digest"] == store.image(name).digest
    (digest,) = store.image(name).layers["linux/amd64"]
    copied = out / "blobs" / "sha256" / digest.split(":", 1)[1]
    assert copied.read_bytes() == store.blob_path(digest).read_bytes()
