"""A stream's spool is bounded: a compressed or piped archive spools only entries an image may need, and
never more than OCITAR_MAX_SPOOL bytes when it is set (without it, a compressed stream may spool 1 GiB or
64 times its compressed size, whichever is more)."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import _archives as A
import ocitar
import pytest
from _guards import no_panic  # noqa: F401
from ocitar import InvalidArchiveError
from ocitar.testing import tree_digest

BIG = A.Oci(layer=lambda p, _: A._layer(p, 200_000))  # two layers of about 200 KB, spooled (not held in memory)


def _source(data: bytes, how: str, tmp_path: Path) -> object:
    if how == "stream":
        return io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
    path = tmp_path / "a.tar.gz"
    path.write_bytes(gzip.compress(data, compresslevel=1, mtime=0))
    return path


@pytest.mark.parametrize("how", ["stream", "gzip"])
def test_a_spool_over_ocitar_max_spool_is_refused_naming_it(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    ocitar.load(A.Oci(name="docker.io/library/before:1").tar(), store=store)
    before = tree_digest(store)
    monkeypatch.setenv("OCITAR_MAX_SPOOL", "300000")
    with pytest.raises(InvalidArchiveError, match=r"over the 300000-byte limit OCITAR_MAX_SPOOL sets") as info:
        ocitar.load(_source(BIG.tar(), how, tmp_path), store=store)
    assert "blobs/sha256/" in str(info.value)
    assert tree_digest(store) == before
    monkeypatch.setenv("OCITAR_MAX_SPOOL", str(10**9))
    report = ocitar.load(_source(BIG.tar(), how, tmp_path), store=store)
    assert report.images[0].digest == BIG.digest


@pytest.mark.parametrize("how", ["stream", "gzip"])
def test_entries_no_image_needs_are_not_spooled(how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4 MB file outside blobs/ (and not a Docker archive's layer) passes a 1 MB spool limit: it is
    hashed as it passes, never written to the store's staging directory."""
    monkeypatch.setenv("OCITAR_MAX_SPOOL", str(1 << 20))
    junk = A.Oci().tar(lambda ms: [A.directory("junk/"), A.file("junk/big.bin", bytes(4 << 20)), *ms])
    report = ocitar.load(_source(junk, how, tmp_path), store=tmp_path / "store")
    assert report.images[0].digest == A.Oci().digest
