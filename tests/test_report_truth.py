"""Reports and inventories tell the whole truth: sparse results flagged on both sides, nothing invented for
absent platforms, lookups by ref and platform, flat rows for data frames, reprs that wrap."""

from __future__ import annotations

import json
from pathlib import Path

import ocitar
import pytest
from ocitar.testing import BuiltStore, Image, Platform

APP = Image(names=("app:1.0",), platforms=(Platform("linux/amd64", attestation=True), "linux/arm64/v8", "linux/arm/v7"))


@pytest.fixture
def store(oci_store_factory) -> BuiltStore:  # type: ignore[no-untyped-def]
    return oci_store_factory(APP)


def test_a_keep_save_with_a_platform_list_reports_what_it_left_absent(store: BuiltStore, tmp_path: Path) -> None:
    keep = ocitar.save(store.path, "app:1.0", ["linux/arm64"], output=tmp_path / "k.tar")
    assert keep.images[0].platforms == ("linux/arm64",)
    assert keep.images[0].absent == ("linux/amd64", "linux/arm/v7")
    assert keep.to_dict()["images"][0]["absent"] == ["linux/amd64", "linux/arm/v7"]
    # What the report calls absent is what the archive lists without content.
    listed = ocitar.inspect(tmp_path / "k.tar").images[0].platforms
    assert sorted(p.platform for p in listed if not p.present) == sorted(keep.images[0].absent)
    for shape in ("subset", "manifest"):
        r = ocitar.save(store.path, "app:1.0", ["linux/arm64"], output=tmp_path / f"{shape}.tar", index=shape)  # type: ignore[call-overload]
        assert r.images[0].absent == (), shape
    assert ocitar.save(store.path, "app:1.0", output=tmp_path / "all.tar").images[0].absent == ()


def test_a_load_with_a_platform_list_reports_the_platforms_it_left_out(store: BuiltStore, tmp_path: Path) -> None:
    ocitar.save(store.path, "app:1.0", output=tmp_path / "all.tar")
    r = ocitar.load(tmp_path / "all.tar", ["linux/amd64"], store=tmp_path / "s")
    assert r.images[0].platforms == ("linux/amd64",)
    assert r.images[0].absent == ("linux/arm64", "linux/arm/v7")
    inv = ocitar.inspect(tmp_path / "s")
    assert [p.present for p in inv.images[0].platforms] == [True, False, False]


def test_an_absent_platform_has_no_size_and_no_layers(store: BuiltStore, tmp_path: Path) -> None:
    ocitar.save(store.path, "app:1.0", ["linux/amd64"], output=tmp_path / "a.tar")
    inv = ocitar.inspect(tmp_path / "a.tar")
    amd64, arm64, _ = inv.images[0].platforms
    assert amd64.present and amd64.size is not None and amd64.size > 0 and amd64.layers == 1
    assert not arm64.present and arm64.size is None and arm64.layers is None
    d = inv.to_dict()["images"][0]["platforms"][1]
    assert (d["size"], d["layers"]) == (None, None)
    p = __import__("subprocess").run(
        [__import__("sys").executable, "-m", "ocitar", "inspect", "--format", "json", str(tmp_path / "a.tar")],
        capture_output=True,
    )
    assert json.loads(p.stdout)["images"][0]["platforms"][1]["size"] is None


def test_lookups_by_ref_and_by_platform_spec(store: BuiltStore, tmp_path: Path) -> None:
    inv = ocitar.inspect(store.path)
    app = inv.image("app:1.0")
    assert (app.platform("linux/arm64").platform, app.platform("linux/arm64").written) == ("linux/arm64", "linux/arm64/v8")
    assert app.platform("linux/aarch64") is app.platform("linux/arm64/v8")
    with pytest.raises(ocitar.PlatformNotFoundError) as info:
        app.platform("linux/riscv64")
    assert info.value.missing == ("linux/riscv64",) and "linux/arm64/v8" in info.value.available
    report = ocitar.save(store.path, "app:1.0", ["linux/arm64"], output=tmp_path / "a.tar")
    assert report.image("app:1.0").platform("linux/arm64/v8") == "linux/arm64"
    loaded = ocitar.load(tmp_path / "a.tar", store=tmp_path / "s")
    assert loaded.image(app.digest[7:19]).platform("linux/aarch64") == "linux/arm64"


def test_one_spelling_rule_reports_agree_with_normalize_platform(store: BuiltStore, tmp_path: Path) -> None:
    report = ocitar.save(store.path, "app:1.0", ["linux/amd64", "linux/arm64"], output=tmp_path / "a.tar")
    assert report.images[0].platforms == ("linux/amd64", "linux/arm64")
    assert report.images[0].absent == ("linux/arm/v7",)
    assert ocitar.normalize_platform("linux/arm64/v8") == "linux/arm64" == ocitar.normalize_platform("linux/aarch64")
    loaded = ocitar.load(tmp_path / "a.tar", ["linux/arm64"], store=tmp_path / "s")
    assert (loaded.images[0].platforms, loaded.images[0].absent) == (("linux/arm64",), ("linux/amd64", "linux/arm/v7"))
    inv = ocitar.inspect(tmp_path / "a.tar")
    assert [(p.platform, p.written) for p in inv.images[0].platforms] == [
        ("linux/amd64", "linux/amd64"),
        ("linux/arm64", "linux/arm64/v8"),
        ("linux/arm/v7", "linux/arm/v7"),
    ]
    d = inv.to_dict()["images"][0]["platforms"][1]
    assert (d["platform"], d["written"]) == ("linux/arm64", "linux/arm64/v8")
    assert [(r["platform"], r["written"]) for r in inv.to_rows()][1] == ("linux/arm64", "linux/arm64/v8")
    # What an error lists as available stays as the image writes it.
    with pytest.raises(ocitar.PlatformNotFoundError) as info:
        ocitar.save(store.path, "app:1.0", ["linux/riscv64"], output=tmp_path / "b.tar")
    assert info.value.available == ("linux/amd64", "linux/arm64/v8", "linux/arm/v7")


def test_a_platform_spelled_outside_the_specifier_grammar_is_shown_as_written() -> None:
    from ocitar._reports import normal

    assert normal("linux/arm64/v8") == "linux/arm64" and normal("Linux/X86_64") == "linux/amd64"
    assert normal("linux/arm64/v8+sve") == "linux/arm64/v8+sve"  # ocitar.normalize_platform raises on it
    assert normal("unknown") == "unknown"  # one part would take the host's architecture: not for reports


def test_to_rows_is_flat_and_one_row_per_platform(store: BuiltStore, tmp_path: Path) -> None:
    ocitar.save(store.path, "app:1.0", ["linux/amd64"], output=tmp_path / "a.tar")
    rows = ocitar.inspect(tmp_path / "a.tar").to_rows()
    assert [r["platform"] for r in rows] == ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    assert all(isinstance(v, (str, int, bool, type(None))) for r in rows for v in r.values())
    assert len({tuple(r) for r in rows}) == 1, "every row has the same keys"
    assert rows[0]["image"] == "app:1.0" and rows[0]["attestations"] == 1 and rows[1]["size"] is None


@pytest.mark.parametrize("module", ["pandas", "polars"])
def test_data_frames_take_the_rows_as_they_are(store: BuiltStore, module: str) -> None:
    lib = pytest.importorskip(module)
    frame = lib.DataFrame(ocitar.inspect(store.path).to_rows())
    assert frame.shape == (3, 10)


def test_long_reprs_wrap_one_platform_a_line(store: BuiltStore, tmp_path: Path) -> None:
    inv = ocitar.inspect(store.path)
    text = repr(inv.images[0])
    assert text.splitlines()[0].startswith("app:1.0 ")
    assert [line.strip() for line in text.splitlines()[1:]] == ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    assert max(len(line) for line in repr(inv).splitlines()[1:]) < 60
    r = ocitar.save(store.path, "app:1.0", ["linux/arm64"], output=tmp_path / "a.tar", index="subset")
    lines = repr(r).splitlines()
    assert str(tmp_path / "a.tar") in lines[0]
    assert "store: " in lines[1] and lines[2].strip() == "linux/arm64"
