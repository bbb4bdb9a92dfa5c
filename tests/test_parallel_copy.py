"""Blob copies between files (save to a path, load from a seekable archive): kernel copies checked by
hashing what was written, on a pool of workers (``OCITAR_THREADS``). The output must be byte for byte
what the one-pass stream writer produces, whatever the number of workers, and a bad blob must be reported
the same way every time: the first bad blob in archive order, with nothing left behind."""

from __future__ import annotations

import os
from pathlib import Path

import ocitar
import pytest
from ocitar.testing import BuiltStore, Image, Layer, Platform, build_store, tree_digest
from test_save_helpers import flip_byte, listing

MiB = 1 << 20


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> BuiltStore:
    """About 40 MiB (above the size copied on the calling thread), including one 17 MiB layer that
    spans three copy segments and several small blobs."""
    root = tmp_path_factory.mktemp("big")
    return build_store(
        root / "store",
        [
            Image(
                names=("big:1",),
                platforms=(
                    Platform(
                        "linux/amd64",
                        layers=(
                            Layer(size=17 * MiB, seed="huge", compression="none"),
                            Layer(size=3 * MiB, seed="a1", compression="none"),
                            Layer(size=0, seed="empty", compression="none"),
                        ),
                        attestation=True,
                    ),
                    Platform(
                        "linux/arm64",
                        layers=tuple(Layer(size=(2 + i) * MiB, seed=f"b{i}", compression="none") for i in range(5)),
                    ),
                ),
            )
        ],
    )


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch):
    def set_threads(n: int | None) -> None:
        if n is None:
            monkeypatch.delenv("OCITAR_THREADS", raising=False)
        else:
            monkeypatch.setenv("OCITAR_THREADS", str(n))

    return set_threads


def _layers_in_archive_order(store: BuiltStore) -> list[str]:
    img = store.image("big:1")
    layers = {d for p in img.layers.values() for d in p}
    return sorted(layers)


@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_save_to_a_path_writes_the_stream_bytes(big: BuiltStore, tmp_path: Path, threads, n: int) -> None:
    threads(n)
    streamed = ocitar.save(big.path, "big:1")  # bytes: the one-pass stream writer
    out = tmp_path / "big.tar"
    report = ocitar.save(big.path, "big:1", output=out)
    assert out.read_bytes() == streamed
    assert report.archive_bytes == len(streamed)
    assert listing(tmp_path) == ["big.tar"]


@pytest.mark.parametrize("n", [1, 2, 8])
def test_load_from_a_seekable_archive_copies_every_blob(big: BuiltStore, tmp_path: Path, threads, n: int) -> None:
    threads(n)
    archive = tmp_path / "big.tar"
    ocitar.save(big.path, "big:1", output=archive)
    dest = tmp_path / "dest"
    report = ocitar.load(archive, store=dest)
    assert report.blobs_written == len(big.image("big:1").blobs)
    for digest, size in big.image("big:1").blobs.items():
        p = dest / "blobs" / "sha256" / digest.split(":", 1)[1]
        assert p.stat().st_size == size
        assert p.read_bytes() == big.blob_path(digest).read_bytes()
    ocitar.verify(dest)
    # The same store, loaded again, from an in-memory copy (no kernel copies).
    again = tmp_path / "again"
    ocitar.load(archive.read_bytes(), store=again)
    assert tree_digest(again) == tree_digest(dest)


@pytest.fixture
def damaged(big: BuiltStore, tmp_path: Path):
    """A copy of the big store with two layers damaged: the first and the last in archive order."""
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(big.path, copy)
    first, *_, last = _layers_in_archive_order(big)
    for d in (first, last):
        flip_byte(copy / "blobs" / "sha256" / d.split(":", 1)[1], offset=-1)
    return copy, first, last


@pytest.mark.parametrize("n", [1, 2, 4])
def test_save_reports_the_first_bad_blob_every_time(damaged, tmp_path: Path, threads, unchanged, n: int) -> None:
    threads(n)
    store, first, _last = damaged
    out = tmp_path / "out"
    out.mkdir()
    for _ in range(3):
        with unchanged(store, outside=out), pytest.raises(ocitar.DigestMismatchError) as e:
            ocitar.save(store, "big:1", output=out / "big.tar")
        assert first in str(e.value)
        assert str(store / "blobs" / "sha256" / first.split(":", 1)[1]) in str(e.value)
        assert listing(out) == []


def _archive_with_bad_layers(big: BuiltStore, tmp_path: Path) -> tuple[Path, str]:
    """Damage the first two amd64 layers: load copies blobs in the order it walks the image (amd64's
    layers bottom first), so the first of them is the one reported."""
    archive = tmp_path / "big.tar"
    ocitar.save(big.path, "big:1", output=archive)
    data = bytearray(archive.read_bytes())
    first, second = big.image("big:1").layers["linux/amd64"][:2]
    for d in (second, first):
        # The blob's data follows its 512-byte header; damage its last byte.
        name = f"blobs/sha256/{d.split(':', 1)[1]}".encode()
        at = data.index(name) + 512 + big.image("big:1").blobs[d] - 1
        data[at] ^= 0xFF
    archive.write_bytes(bytes(data))
    return archive, first


@pytest.mark.parametrize("n", [1, 2, 4])
def test_load_reports_the_first_bad_blob_and_changes_nothing(big: BuiltStore, tmp_path: Path, threads, unchanged, n: int) -> None:
    threads(n)
    archive, first = _archive_with_bad_layers(big, tmp_path)
    store = tmp_path / "store"
    ocitar.load(ocitar.save(big.path, "big:1", platforms=["linux/arm64"]), store=store)
    for _ in range(3):
        with unchanged(store), pytest.raises(ocitar.DigestMismatchError) as e:
            ocitar.load(archive, store=store)
        assert first in str(e.value)
        assert f"{archive}:blobs/sha256/{first.split(':', 1)[1]}" in str(e.value)
    with pytest.raises(ocitar.DigestMismatchError):
        ocitar.load(archive, store=tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_truncated_large_blob_is_a_size_mismatch(big: BuiltStore, tmp_path: Path, unchanged) -> None:
    import shutil

    store = tmp_path / "s"
    shutil.copytree(big.path, store)
    huge = max(big.image("big:1").blobs.items(), key=lambda kv: kv[1])[0]
    p = store / "blobs" / "sha256" / huge.split(":", 1)[1]
    os.chmod(p, 0o644)
    os.truncate(p, 9 * MiB)
    (tmp_path / "o").mkdir()
    with unchanged(store, outside=tmp_path / "o"), pytest.raises(ocitar.DigestMismatchError, match="size mismatch"):
        ocitar.save(store, "big:1", output=tmp_path / "o" / "a.tar")
    assert listing(tmp_path / "o") == []


def _other_filesystem() -> Path | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return None


def test_copies_across_filesystems_fall_back_to_reads_and_writes(big: BuiltStore, tmp_path: Path) -> None:
    """copy_file_range refuses some pairs of filesystems (EXDEV); the copy then reads and writes."""
    import shutil
    import tempfile

    other = _other_filesystem()
    if other is None or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm) here")
    with tempfile.TemporaryDirectory(dir=other) as d:
        store = Path(d) / "store"
        shutil.copytree(big.path, store)
        out = tmp_path / "big.tar"
        ocitar.save(store, "big:1", output=out)
        assert out.read_bytes() == ocitar.save(big.path, "big:1")
        # And back: from an archive on this filesystem into a store on the other one.
        dest = Path(d) / "dest"
        ocitar.load(out, store=dest)
        assert {p.name for p in (dest / "blobs" / "sha256").iterdir()} == {
            p.name for p in (big.path / "blobs" / "sha256").iterdir()
        }
        ocitar.verify(dest)


def test_progress_counts_every_byte_once_and_ends_at_total(big: BuiltStore, tmp_path: Path, threads) -> None:
    threads(2)
    calls: list[tuple[int, int]] = []
    r = ocitar.save(big.path, "big:1", output=tmp_path / "a.tar", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (r.blob_bytes, r.blob_bytes)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    calls.clear()
    lr = ocitar.load(tmp_path / "a.tar", store=tmp_path / "s", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (lr.bytes_written, lr.bytes_written)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


class Stop(Exception):
    pass


def test_a_progress_callback_that_raises_cancels_the_workers(big: BuiltStore, tmp_path: Path, threads, unchanged) -> None:
    threads(2)
    out = tmp_path / "out"
    out.mkdir()

    def stop(done: int, total: int) -> None:
        raise Stop(f"{done}/{total}")

    with unchanged(big.path, outside=out), pytest.raises(Stop):
        ocitar.save(big.path, "big:1", output=out / "a.tar", progress=stop)
    assert listing(out) == []
    archive = tmp_path / "a.tar"
    ocitar.save(big.path, "big:1", output=archive)
    store = tmp_path / "store"
    with pytest.raises(Stop):
        ocitar.load(archive, store=store, progress=stop)
    assert not store.exists()


def test_gzip_is_one_member_whatever_the_threads_and_tarfile_streams_it(big: BuiltStore, threads) -> None:
    """gzip is deflated in pieces on every core but written as one gzip member: readers that take only
    one member (Python's tarfile in stream mode ``r|gz``) read it whole."""
    import gzip
    import io
    import tarfile
    import zlib

    threads(1)
    one = ocitar.save(big.path, "big:1", compression="gzip")
    threads(3)
    assert ocitar.save(big.path, "big:1", compression="gzip") == one
    plain = ocitar.save(big.path, "big:1")
    assert gzip.decompress(one) == plain
    d = zlib.decompressobj(31)
    assert d.decompress(one) == plain
    assert d.eof and d.unused_data == b"", "a single gzip member"
    with tarfile.open(fileobj=io.BytesIO(one), mode="r|gz") as t:
        names = [m.name for m in t]
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as t:
        assert names == t.getnames()
