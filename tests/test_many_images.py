"""Archives of many images (issue 15): what save writes, load, inspect and verify take back, with the
blobs of every image staged and made durable together."""

from __future__ import annotations

from pathlib import Path

import ocitar
import pytest
from _helpers import blobs
from ocitar.testing import Image, Layer, Platform, build_store

PLATFORMS = ("linux/amd64", "linux/arm64")


def many_images(n: int) -> list[Image]:
    return [
        Image(
            names=(f"many/img{i}:t",),
            platforms=tuple(
                Platform(p, layers=(Layer(size=16, seed=f"{i}|{p}", compression="none"),)) for p in PLATFORMS
            ),
        )
        for i in range(n)
    ]


def test_many_images_round_trip_through_one_archive(tmp_path: Path) -> None:
    # 40 images x (index + 2 x (manifest + config + layer)) = 280 blobs: load stages more than the
    # handful it makes durable one by one.
    src = tmp_path / "src"
    build_store(src, many_images(40))
    refs = [f"many/img{i}:t" for i in range(40)]
    archive = tmp_path / "many.tar"
    report = ocitar.save(src, refs, output=archive)
    assert report.blobs == 280

    inv = ocitar.inspect(archive)
    assert sorted(n for img in inv.images for n in img.names) == sorted(refs)
    ocitar.verify(archive)

    dest = tmp_path / "dest"
    loaded = ocitar.load(archive, store=dest)
    assert len(loaded.images) == 40
    assert blobs(dest) == blobs(src)
    assert not [p for p in dest.iterdir() if p.name.startswith(".ocitar-ingest-")]
    ocitar.verify(dest)
    assert {n for img in ocitar.inspect(dest).images for n in img.names} == {n for img in inv.images for n in img.names}


def test_save_refuses_an_archive_over_the_entry_limit_that_load_applies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    build_store(src, many_images(40))
    refs = [f"many/img{i}:t" for i in range(40)]
    monkeypatch.setenv("OCITAR_MAX_ENTRIES", "200")
    out = tmp_path / "many.tar"
    with pytest.raises(ValueError) as e:
        ocitar.save(src, refs, output=out)
    msg = str(e.value)
    assert "285 entries (280 blobs)" in msg
    assert "limit of 200 entries (OCITAR_MAX_ENTRIES raises it" in msg
    assert list(tmp_path.iterdir()) == [src]
    # Raised, the same archive is written and read back.
    monkeypatch.setenv("OCITAR_MAX_ENTRIES", "285")
    ocitar.save(src, refs, output=out)
    assert len(ocitar.load(out, store=tmp_path / "dest").images) == 40


def test_load_inspect_verify_name_the_entry_limit_and_how_to_raise_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    build_store(src, many_images(40))
    out = tmp_path / "many.tar"
    ocitar.save(src, [f"many/img{i}:t" for i in range(40)], output=out)
    monkeypatch.setenv("OCITAR_MAX_ENTRIES", "284")
    dest = tmp_path / "dest"
    for op in (ocitar.inspect, ocitar.verify, lambda p: ocitar.load(p, store=dest)):
        with pytest.raises(ocitar.InvalidArchiveError) as e:
            op(out)
        assert "more entries than the limit of 284 entries (OCITAR_MAX_ENTRIES raises it" in str(e.value)
    assert not dest.exists()
    monkeypatch.setenv("OCITAR_MAX_ENTRIES", "285")
    assert len(ocitar.inspect(out).images) == 40
