"""Names from archives are references (Docker's grammar), and an archive cannot squat a name: the image
name decides over a ``ref.name`` that says otherwise, on load and in the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ocitar
import pytest
from _archives import DOCKER_OK, IMAGE_NAME, REF_NAME, Oci, docker_archive
from ocitar import ImageNotFoundError, InvalidArchiveError


def named(image: str | None, ref: str | None, **kw: Any) -> Oci:
    """A two-platform image whose one ``index.json`` entry carries these name annotations."""

    def annotate(_: str, desc: dict[str, Any]) -> dict[str, Any]:
        a = {k: v for k, v in ((IMAGE_NAME, image), (REF_NAME, ref)) if v is not None}
        out = {k: v for k, v in desc.items() if k != "annotations"}
        return {**out, "annotations": a} if a else out

    return Oci(index_desc=annotate, **kw)


def store_entries(store: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((store / "index.json").read_bytes())["manifests"]
    return entries


BAD_NAMES = [
    "../x:1",
    "./x",
    "x/../y:1",
    "a b:1",
    "app:1 ",
    "app\n:1",
    "app:1\x1b]0;owned\x07",
    "app:\x1b[31mred",
    "team/Case:1",
    "a..b:1",
    "a" * 100_000,
    "a" * 256 + ":1",
    "app:" + "t" * 129,
    "app:-1",
]


@pytest.mark.parametrize("annotation", [IMAGE_NAME, REF_NAME])
@pytest.mark.parametrize("bad", BAD_NAMES, ids=lambda s: repr(s[:20]))
def test_an_annotation_that_is_no_reference_is_refused(tmp_path: Path, unchanged: Any, annotation: str, bad: str) -> None:
    img = named(bad if annotation == IMAGE_NAME else None, bad if annotation == REF_NAME else None)
    store = tmp_path / "store"
    ocitar.load(named("docker.io/library/keep:1", "1").tar(), store=store)
    with unchanged(store), pytest.raises(InvalidArchiveError) as e:
        ocitar.load(img.tar(), store=store)
    msg = str(e.value)
    assert "index.json" in msg and annotation in msg
    # The message stays short and printable however long or hostile the name.
    assert len(msg) < 600 and msg.isprintable(), msg


@pytest.mark.parametrize("bad", BAD_NAMES, ids=lambda s: repr(s[:20]))
def test_repo_tags_that_are_no_reference_are_refused(tmp_path: Path, bad: str) -> None:
    data = docker_archive([{**DOCKER_OK[0], "RepoTags": [bad]}])
    with pytest.raises(InvalidArchiveError) as e:
        ocitar.load(data, store=tmp_path / "store")
    assert "manifest.json[0].RepoTags" in str(e.value)
    assert str(e.value).isprintable()
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("ref", ["../x:1", "./x", "a b", "x" * 100_000])
def test_a_ref_that_is_no_reference_is_refused(tmp_path: Path, ref: str) -> None:
    store = tmp_path / "store"
    ocitar.load(named("docker.io/library/keep:1", "1").tar(), store=store)
    with pytest.raises(ImageNotFoundError) as e:
        ocitar.save(store, ref)
    assert "invalid reference format" in str(e.value) and len(str(e.value)) < 600


def test_a_tag_ref_name_beside_an_image_name_is_a_tag(tmp_path: Path) -> None:
    # docker save writes ref.name = the tag, which may have capitals (not a reference on its own).
    store = tmp_path / "store"
    report = ocitar.load(named("docker.io/library/app:Latest", "Latest").tar(), store=store)
    assert report.images[0].names == ("app:Latest",)
    assert store_entries(store)[0]["annotations"] == {IMAGE_NAME: "docker.io/library/app:Latest", REF_NAME: "Latest"}


def test_a_disagreeing_ref_name_cannot_squat_an_existing_name(tmp_path: Path) -> None:
    store = tmp_path / "store"
    demo = named("docker.io/library/demo:1.0", "1.0", platforms=("linux/amd64",))
    ocitar.load(demo.tar(), store=store)
    evil = named("docker.io/library/evil:1", "docker.io/library/demo:1.0")
    report = ocitar.load(evil.tar(), store=store)
    assert report.images[0].names == ("evil:1",) and report.images[0].moved == ()
    # Both annotations written come from the one chosen name.
    (entry,) = [e for e in store_entries(store) if e["digest"] == evil.digest]
    assert entry["annotations"] == {IMAGE_NAME: "docker.io/library/evil:1", REF_NAME: "1"}
    for ref in ["demo:1.0", "docker.io/library/demo:1.0"]:
        assert ocitar.save(store, ref, output=tmp_path / "d.tar").images[0].digest == demo.digest
    assert ocitar.save(store, "evil:1", output=tmp_path / "e.tar").images[0].digest == evil.digest


def test_a_squatting_archive_does_not_name_an_absent_image(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ocitar.load(named("docker.io/library/evil:1", "demo:1.0").tar(), store=store)
    with pytest.raises(ImageNotFoundError):
        ocitar.save(store, "demo:1.0")


def test_in_a_store_the_image_name_decides(tmp_path: Path) -> None:
    # A store written by another tool, where an entry's ref.name names another image.
    store = tmp_path / "store"
    demo = named("docker.io/library/demo:1.0", "1.0", platforms=("linux/amd64",))
    evil = named("docker.io/library/evil:1", "1")
    ocitar.load(demo.tar(), store=store)
    ocitar.load(evil.tar(), store=store)
    index = json.loads((store / "index.json").read_bytes())
    for e in index["manifests"]:
        if e["digest"] == evil.digest:
            e["annotations"][REF_NAME] = "docker.io/library/demo:1.0"
    (store / "index.json").write_text(json.dumps(index))
    for ref in ["demo:1.0", "docker.io/library/demo:1.0"]:
        report = ocitar.save(store, ref, output=tmp_path / "d.tar")
        assert report.images[0].digest == demo.digest
    inv = ocitar.inspect(store)
    assert {i.digest: i.names for i in inv.images}[evil.digest] == ("evil:1",)


def test_a_ref_name_only_entry_keeps_its_name(tmp_path: Path) -> None:
    # skopeo and umoci write only ref.name; it is the name, kept as written.
    store = tmp_path / "store"
    report = ocitar.load(named(None, "example.test/x/app:3").tar(), store=store)
    assert report.images[0].names == ("example.test/x/app:3",)
    assert store_entries(store)[0]["annotations"] == {REF_NAME: "example.test/x/app:3"}


# --------------------------------------------------------------------------
# text from an archive, shown to a person
# --------------------------------------------------------------------------

HOSTILE = "x\x1b]0;owned\x07\x1b[2J\x9b31m\u202e<script>alert(1)</script>"


def hostile_platform_archive() -> bytes:
    def manifest_desc(p: str, d: dict[str, Any]) -> dict[str, Any]:
        return {**d, "platform": {**d["platform"], "variant": HOSTILE}}

    return Oci(manifest_desc=manifest_desc).tar()


def assert_safe(text: str, markup: bool = False) -> None:
    assert not any(c in text for c in "\x1b\x07\x9b\u202e"), repr(text)
    if markup:
        assert "<script" not in text, text


def test_archive_text_is_escaped_in_reprs_html_and_markdown(tmp_path: Path) -> None:
    data = hostile_platform_archive()
    archive = tmp_path / "a.tar"
    archive.write_bytes(data)
    inv = ocitar.inspect(archive)
    assert any(HOSTILE in p.platform for p in inv.images[0].platforms)  # the data itself is kept as it is
    report = ocitar.load(archive, store=tmp_path / "store")
    assert any(HOSTILE in p for p in report.images[0].platforms)
    for obj in (inv, report, ocitar.inspect(tmp_path / "store")):
        assert_safe(repr(obj))
        assert_safe(obj._repr_html_(), markup=True)
        assert_safe(obj._repr_markdown_(), markup=True)


def test_archive_text_is_escaped_on_the_command_line(tmp_path: Path, capsys: Any) -> None:
    from ocitar.cli import main

    archive = tmp_path / "a.tar"
    archive.write_bytes(hostile_platform_archive())
    store = tmp_path / "store"
    for argv in (["inspect", str(archive)], ["load", "-i", str(archive), "--store", str(store)], ["ls", "--store", str(store)]):
        assert main(argv) == 0
        out = capsys.readouterr()
        assert_safe(out.out + out.err)
        if argv[0] != "load":
            assert "\\x1b]0;owned" in out.out


def test_archive_text_is_escaped_in_error_messages(tmp_path: Path, capsys: Any) -> None:
    from ocitar.cli import main

    # The refused name is quoted in the message, escaped.
    bad = named("docker.io/library/x:1", "\x1b]0;owned\x07")
    with pytest.raises(InvalidArchiveError) as e:
        ocitar.load(bad.tar(), store=tmp_path / "s")
    assert_safe(str(e.value))
    assert "\\x1b]0;owned" in str(e.value) or "\\u{1b}]0;owned" in str(e.value)
    (tmp_path / "b.tar").write_bytes(bad.tar())
    assert main(["load", "-i", str(tmp_path / "b.tar"), "--store", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert_safe(err)
    assert "owned" in err
