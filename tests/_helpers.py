"""What every suite reads the same way: the media types and annotation keys of the image formats, and a store's
``index.json`` entries, blobs and digests read as a user would (json, hashlib), independently of ocitar.

Suite-specific helpers stay beside their suites (``test_save_helpers``, ``test_interop_helpers``,
``_archives``); this module holds only what two or more of them had written out again."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Union

from ocitar.testing import BuiltStore

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
#: The name containerd and ocitar give an index entry, and the OCI tag annotation beside it.
IMAGE_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"
#: The annotation that marks a Docker attestation manifest.
ATTESTATION_TYPE = "vnd.docker.reference.type"
#: The ``oci-layout`` file ocitar writes, to the byte.
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'

#: A store: its directory, or the store ``ocitar.testing`` built there.
StoreLike = Union[BuiltStore, str, "os.PathLike[str]"]


def sha(data: bytes) -> str:
    """The ``sha256:`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_name(digest: str) -> str:
    """Where a blob lives in a layout: ``blobs/<algorithm>/<hex>``."""
    alg, hexd = digest.split(":", 1)
    return f"blobs/{alg}/{hexd}"


def root(store: StoreLike) -> Path:
    """The directory of a store."""
    return store.path if isinstance(store, BuiltStore) else Path(store)


def entries(store: StoreLike) -> list[dict[str, Any]]:
    """The store's ``index.json`` entries."""
    doc: list[dict[str, Any]] = json.loads((root(store) / "index.json").read_bytes())["manifests"]
    return list(doc)


def blobs(store: StoreLike) -> set[str]:
    """Digests of every sha256 blob file in the store (empty when it has no blob directory)."""
    d = root(store) / "blobs" / "sha256"
    return {"sha256:" + p.name for p in d.iterdir()} if d.is_dir() else set()


def store_blob(store: StoreLike, digest: str) -> bytes:
    """The bytes of one blob of the store."""
    return (root(store) / blob_name(digest)).read_bytes()


def app_blob(store: BuiltStore, kind: str, platform: str = "linux/arm64/v8") -> str:
    """The digest of one blob of the store's ``app:1.0``: its ``index``, or the ``platform``'s ``manifest``,
    ``config``, ``attestation``, ``layer`` (its second layer) or ``shared-layer`` (its first)."""
    app = store.image("app:1.0")
    if kind == "index":
        return app.digest
    if kind in ("layer", "shared-layer"):
        return app.layers[platform][1 if kind == "layer" else 0]
    return {"manifest": app.manifests, "config": app.configs, "attestation": app.attestations}[kind][platform]
