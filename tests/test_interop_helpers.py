"""Helpers shared by the ``test_interop_*`` suites (real containerd, skopeo, umoci, oci-image-tool).

They read stores and archives the way a user would (json, tarfile, hashlib), independently of ocitar.
This module holds no tests; it is named ``test_interop_*`` only so that it belongs with those suites."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import ocitar
from ocitar.testing import BuiltImage, BuiltStore, Image, Layer, Platform

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
IMAGE_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"

#: The host's platform as ocitar sees it (linux/amd64 on the CI machine); the platform containerd
#: unpacks by default and ``ctr images check`` looks at.
HOST = ocitar.normalize_platform("linux")
#: Two platforms that are not the host's.
FOREIGN, FOREIGN2 = [
    p for p in ("linux/arm64/v8", "linux/s390x", "linux/ppc64le") if ocitar.normalize_platform(p) != HOST
][:2]


def norm(platform: str) -> str:
    return ocitar.normalize_platform(platform)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def multi(
    name: str, *, media_types: str = "oci", shape: str = "index", attestation: bool = False, salt: str = ""
) -> Image:
    """An image of three platforms (HOST, FOREIGN, FOREIGN2) with small real tar layers of its own (seeded by
    ``salt`` and ``name``, so images share no blob); HOST and FOREIGN have two layers sharing the bottom one."""
    name_seed = f"{salt}{name}"
    base = Layer(size=2048, seed=f"{name_seed}|base")
    return Image(
        names=(name,),
        media_types=media_types,
        shape=shape,
        platforms=(
            Platform(HOST, layers=(base, Layer(size=1024, seed=f"{name_seed}|{HOST}")), attestation=attestation),
            Platform(FOREIGN, layers=(base, Layer(size=3072, seed=f"{name_seed}|{FOREIGN}")), attestation=attestation),
            Platform(FOREIGN2, layers=(Layer(size=1536, seed=f"{name_seed}|{FOREIGN2}"),)),
        ),
    )


def override(platform: str) -> list[str]:
    """skopeo's global flags choosing ``platform`` (``os/arch[/variant]``) out of an index."""
    parts = platform.split("/")
    flags = ["--override-os", parts[0], "--override-arch", parts[1]]
    return flags + (["--override-variant", parts[2]] if len(parts) > 2 else [])


def full_name(name: str) -> str:
    """``app:1.0`` -> ``docker.io/library/app:1.0``: the name containerd shows."""
    if "/" in name and ("." in name.split("/", 1)[0] or ":" in name.split("/", 1)[0]):
        return name
    repo = name if "/" in name else "library/" + name
    return "docker.io/" + repo


def read_json(path: Path) -> Any:
    return json.loads(path.read_bytes())


def config(store: BuiltStore, image: BuiltImage, platform: str) -> dict[str, Any]:
    result: dict[str, Any] = read_json(store.blob_path(image.configs[platform]))
    return result


def diff_ids(store: BuiltStore, image: BuiltImage, platform: str) -> list[str]:
    return list(config(store, image, platform)["rootfs"]["diff_ids"])


def chain_id(ids: list[str]) -> str:
    """The snapshot key of a layer stack, as the OCI image spec defines ChainID."""
    chain = ids[0]
    for diff in ids[1:]:
        chain = sha(f"{chain} {diff}".encode())
    return chain


def layer_files(path: Path) -> dict[str, bytes]:
    """Regular files of a (possibly gzip-compressed) layer tar: name -> content."""
    files = {}
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                files[member.name] = f.read()
    return files


def rootfs_files(store: BuiltStore, image: BuiltImage, platform: str) -> dict[str, bytes]:
    """The files a rootfs of ``platform`` of ``image`` must hold: its layers applied bottom first."""
    files: dict[str, bytes] = {}
    for digest in image.layers[platform]:
        files.update(layer_files(store.blob_path(digest)))
    assert files, f"{platform} of {image.names} has no files"
    return files


def tree_files(root: Path) -> dict[str, bytes]:
    """Regular files under ``root``: relative posix name -> content."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tar_json(archive: Path, name: str) -> Any:
    with tarfile.open(archive) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return json.loads(f.read())


def tar_names(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return tar.getnames()
