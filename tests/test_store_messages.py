"""Errors about a broken store name the real cause: an index.json that is a FIFO, a blob path that is a
directory (whichever blob it is), rather than "missing", a size mismatch or an absent platform."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import _archives as A
import ocitar
import pytest
from _guards import no_panic  # noqa: F401
from ocitar import StoreError

IMG = A.Oci()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("base") / "store"
    ocitar.load(IMG.tar(), store=store)
    return store


def test_an_index_json_that_is_a_fifo_is_named_as_one(base: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(base, store)
    (store / "index.json").unlink()
    os.mkfifo(store / "index.json")
    for op in (ocitar.inspect, ocitar.verify, lambda s: ocitar.save(s, "hostile:1")):
        with pytest.raises(StoreError, match=r"index.json: is a FIFO, not a regular file"):
            op(store)


@pytest.mark.parametrize("which", ["index", "manifest", "config", "layer"])
@pytest.mark.parametrize("op", ["save", "verify"])
def test_a_blob_that_is_a_directory_is_named_as_one(which: str, op: str, base: Path, tmp_path: Path) -> None:
    digest = {
        "index": IMG.digest,
        "manifest": IMG.manifests["linux/amd64"],
        "config": IMG.configs["linux/amd64"],
        "layer": IMG.layers["linux/amd64"],
    }[which]
    store = tmp_path / "store"
    shutil.copytree(base, store)
    blob = store / A.blob_name(digest)
    blob.unlink()
    blob.mkdir()
    with pytest.raises(StoreError, match=r"is a directory|must be a regular file") as info:
        if op == "save":
            ocitar.save(store, "hostile:1", platforms=["linux/amd64"])
        else:
            ocitar.verify(store)
    assert digest.split(":")[1] in str(info.value)
