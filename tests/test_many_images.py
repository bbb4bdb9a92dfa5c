"""Archives of many images (issue 15): what save writes, load, inspect and verify take back, with the
blobs of every image staged and made durable together."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ocitar
import pytest
from _helpers import IMAGE_NAME, REF_NAME, blobs, entries
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


def many_names(store: Path, image: str, count: int) -> list[str]:
    """Give the entry of ``image`` in ``store``'s index.json ``count`` names (tags t0, t1, ...), written by hand
    as a registry mirror's tooling would; the other entries stay. Returns the new names."""
    index = json.loads((store / "index.json").read_text())
    keep = [e for e in index["manifests"] if e["annotations"]["io.containerd.image.name"] != image]
    (entry,) = [e for e in index["manifests"] if e["annotations"]["io.containerd.image.name"] == image]
    repo = image.rsplit(":", 1)[0]
    names = [f"{repo}:t{k}" for k in range(count)]
    added = [
        {**entry, "annotations": {"io.containerd.image.name": n, "org.opencontainers.image.ref.name": n.rsplit(":", 1)[1]}}
        for n in names
    ]
    index["manifests"] = added + keep
    (store / "index.json").write_text(json.dumps(index))
    return names


def test_one_image_of_a_store_of_50000_entries(tmp_path: Path) -> None:
    """An index.json of 50,000 named entries (two JSON objects each: more than a document of objects may
    hold) is read entry by entry: save, inspect and ls of one image work, and only that image is parsed."""
    src = tmp_path / "src"
    build_store(src, many_images(3))
    names = many_names(src, "docker.io/many/img1:t", 50_000)
    report = ocitar.save(src, ["many/img1:t4321"], output=tmp_path / "one.tar")
    assert [i.names for i in report.images] == [("many/img1:t4321",)]
    assert report.blobs == 7

    one = ocitar.inspect(src, "many/img2:t")
    assert [i.names for i in one.images] == [("many/img2:t",)]
    assert [p.platform for p in one.images[0].platforms] == list(PLATFORMS)
    assert one.blobs == 7 and one.bytes == one.images[0].size

    many = ocitar.inspect(src, "many/img1:t77")
    assert len(many.images[0].names) == 50_000 and many.images[0].names[:2] == ("many/img1:t0", "many/img1:t1")
    whole = ocitar.inspect(src)
    assert [len(i.names) for i in whole.images] == [50_000, 1, 1]
    assert whole.blobs == 21
    assert len(names) == 50_000

    def cli(*args: str | Path) -> str:
        p = subprocess.run([sys.executable, "-m", "ocitar", *map(str, args)], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return p.stdout

    shown = cli("inspect", "--store", src, "many/img2:t")
    assert "many/img2:t" in shown and "many/img1" not in shown
    assert cli("ls", "--store", src).count("many/img1 ") == 50_000
    rows = [line.split()[:2] for line in cli("ls", "--store", src, "many/img2", "many/img1:t4321").splitlines()]
    assert rows == [["REPOSITORY", "TAG"], ["many/img1", "t4321"], ["many/img2", "t"]]


def test_a_load_into_a_store_of_60000_entries_keeps_every_entry_as_written(tmp_path: Path) -> None:
    """A load commits into an index.json of 60,000 named entries (more JSON objects than a document read whole
    may hold): every entry stays, its JSON text byte for byte (unknown members and their order included), the
    document's unknown members too; a save of one image from that store works."""
    src = tmp_path / "src"
    build_store(src, many_images(3))
    archive = tmp_path / "img2.tar"
    ocitar.save(src, ["many/img2:t"], output=archive)
    (one,) = [e for e in entries(src) if e["annotations"][IMAGE_NAME] == "docker.io/many/img1:t"]
    texts = [
        json.dumps(
            {
                "x-mirror": f"r{k}",
                "size": one["size"],
                "digest": one["digest"],
                "mediaType": one["mediaType"],
                "annotations": {IMAGE_NAME: f"docker.io/many/img1:t{k}", REF_NAME: f"t{k}"},
            },
            separators=(",", ":"),
        )
        for k in range(60_000)
    ]
    (src / "index.json").write_text('{"schemaVersion": 2, "x-top": [1, 2], "manifests": [' + ",".join(texts) + "]}")

    loaded = ocitar.load(archive, store=src)
    assert [i.names for i in loaded.images] == [("many/img2:t",)]
    text = (src / "index.json").read_text()
    assert text.startswith('{"manifests":[' + ",".join(texts) + ",")
    assert text.endswith('],"schemaVersion":2,"x-top":[1,2]}')
    assert [e["annotations"][IMAGE_NAME] for e in entries(src)][-2:] == ["docker.io/many/img1:t59999", "docker.io/many/img2:t"]
    # Loaded again, nothing changes.
    ocitar.load(archive, store=src)
    assert (src / "index.json").read_text() == text

    report = ocitar.save(src, ["many/img1:t59999"], output=tmp_path / "one.tar")
    assert [i.names for i in report.images] == [("many/img1:t59999",)]
    assert report.blobs == 7


def test_names_list_their_images_as_docker_image_ls_does_reading_nothing_else(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build_store(src, many_images(3))
    many_names(src, "docker.io/many/img1:t", 5)
    img1 = tuple(f"many/img1:t{k}" for k in range(5))

    def listed(*names: str) -> list[tuple[str, ...]]:
        return [i.names for i in ocitar.inspect(src, names=names).images]

    # A repository lists every tag of it; a tag that one; each image shows the names that listed it.
    assert listed("many/img1") == [img1]
    assert listed("many/img1:t3") == [("many/img1:t3",)]
    assert listed("many/img2", "docker.io/many/img1:t3", "many/img1:t4") == [("many/img1:t3", "many/img1:t4"), ("many/img2:t",)]
    # A repository is matched whole (`many/img` is not `many/img1`); what lists nothing is no error.
    assert listed("many/img") == [] and listed("library/nothing:1") == [] and listed() == []
    # A digest lists its image under every name; name@digest under that repository's names.
    digest = ocitar.inspect(src, "many/img1:t0").images[0].digest
    assert listed(digest) == [img1] and listed(f"many/img1@{digest}") == [img1]
    one = ocitar.inspect(src, names="many/img2")
    assert one.blobs == 7 and one.bytes == one.images[0].size

    # Only the listed images are read: another image's missing index does not matter to them.
    other = ocitar.inspect(src, "many/img0:t").images[0].digest
    (src / "blobs" / "sha256" / other[7:]).unlink()
    with pytest.raises(ocitar.StoreError):
        ocitar.inspect(src)
    assert listed("many/img1") == [img1]

    with pytest.raises(ocitar.ImageNotFoundError, match="invalid reference"):
        ocitar.inspect(src, names=["Many/Img1"])
    with pytest.raises(TypeError):
        ocitar.inspect(src, "many/img1:t0", names=["many/img1"])
    archive = tmp_path / "a.tar"
    ocitar.save(src, ["many/img2:t"], output=archive)
    with pytest.raises(TypeError):
        ocitar.inspect(archive, names=["many/img2"])


def test_inspect_of_one_store_image_names_what_is_not_there(tmp_path: Path) -> None:
    src = tmp_path / "src"
    build_store(src, many_images(3))
    with pytest.raises(ocitar.ImageNotFoundError) as e:
        ocitar.inspect(src, "many/img9:t")
    assert "many/img0:t" in str(e.value)
    archive = tmp_path / "a.tar"
    ocitar.save(src, ["many/img0:t"], output=archive)
    with pytest.raises(TypeError):
        ocitar.inspect(archive, "many/img0:t")
    # By unique digest prefix, as save takes it.
    digest = ocitar.inspect(src).images[1].digest
    assert ocitar.inspect(src, digest[7:19]).images[0].names == ("many/img1:t",)
