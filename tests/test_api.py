"""The Python face: exceptions, reports, inventories and their views, progress and cancellation."""

from __future__ import annotations

import dataclasses
import json
from html.parser import HTMLParser
from pathlib import Path

import ocitar
import pytest
from ocitar.testing import BuiltStore, Image, Platform


@pytest.fixture
def store(oci_store_factory) -> BuiltStore:  # type: ignore[no-untyped-def]
    return oci_store_factory(
        Image(
            names=("app:1.0",),
            platforms=(Platform("linux/amd64", attestation=True), "linux/arm64/v8", "linux/arm/v7"),
        ),
        Image(names=("tools:0.3",), platforms=("linux/amd64",)),
    )


def test_exception_hierarchy() -> None:
    assert issubclass(ocitar.InvalidPlatformError, ocitar.OcitarError)
    assert issubclass(ocitar.InvalidPlatformError, ValueError)
    assert issubclass(ocitar.ImageNotFoundError, LookupError)
    assert issubclass(ocitar.PlatformNotFoundError, LookupError)
    for cls in (ocitar.DigestMismatchError, ocitar.InvalidArchiveError, ocitar.StoreError):
        assert issubclass(cls, ocitar.OcitarError)
        assert cls.__doc__


def test_every_exception_is_public() -> None:
    namespace: dict[str, object] = {}
    exec("from ocitar import *", namespace)
    exceptions = {n for n, v in vars(ocitar.errors).items() if isinstance(v, type) and issubclass(v, ocitar.OcitarError)}
    assert exceptions == set(ocitar.errors.__all__)
    assert {n: namespace.get(n) for n in exceptions} == {n: getattr(ocitar.errors, n) for n in exceptions}


def test_every_public_name_is_documented() -> None:
    for name in ocitar.__all__:
        obj = getattr(ocitar, name)
        if name != "__version__":
            assert obj.__doc__, name
    assert ocitar.__version__.count(".") == 2


def test_normalize_platform() -> None:
    assert ocitar.normalize_platform("linux/aarch64") == "linux/arm64"
    assert ocitar.normalize_platform("linux/armhf") == "linux/arm/v7"
    with pytest.raises(ocitar.InvalidPlatformError, match="'linux/\\*'|\"linux/\\*\""):
        ocitar.normalize_platform("linux/*")


def test_save_report_is_frozen_and_serialisable(store: BuiltStore, tmp_path: Path) -> None:
    r = ocitar.save(store.path, "app:1.0", output=tmp_path / "a.tar")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.blobs = 0  # type: ignore[misc]
    d = r.to_dict()
    json.dumps(d)
    assert d["images"][0]["names"] == ["app:1.0"]
    assert d["images"][0]["platforms"] == ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    assert d["images"][0]["attestations"] == 1
    assert "app:1.0" in repr(r) and "linux/arm64\n" in repr(r)


class _Table(HTMLParser):
    """Collects table rows as lists of cell texts, with each row's class."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self._cells: list[str] | None = None
        self._cls = ""
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "tr":
            self._cells = []
            self._cls = dict(attrs).get("class") or ""
        elif tag in ("td", "th") and self._cells is not None:
            self._cells.append("")

    def handle_data(self, data: str) -> None:
        if self._cells:
            self._cells[-1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._cells is not None:
            self.rows.append((self._cls, self._cells))
            self._cells = None


def test_inventory_html_marks_absent_platforms_and_attestations(store: BuiltStore, tmp_path: Path) -> None:
    out = tmp_path / "a.tar"
    ocitar.save(store.path, "app:1.0", platforms=["linux/amd64"], output=out)
    inv = ocitar.inspect(out)
    parser = _Table()
    parser.feed(inv._repr_html_())
    assert not parser.tags & {"script", "link"}
    rows = {cells[0]: (cls, cells) for cls, cells in parser.rows if cells[0] != "platform"}
    assert set(rows) == {"linux/amd64", "linux/arm64", "linux/arm/v7"}
    cls, cells = rows["linux/amd64"]
    assert cls == "present" and cells[1] == "\u2713 present" and cells[4] == "1"
    assert "KiB" in cells[2] or " B" in cells[2]
    for p in ("linux/arm64", "linux/arm/v7"):
        assert rows[p][0] == "absent" and rows[p][1][1] == "absent"
    md = inv._repr_markdown_()
    assert "| linux/arm/v7 | *absent* |" in md


def test_report_html_lists_platforms(store: BuiltStore, tmp_path: Path) -> None:
    r = ocitar.save(store.path, "app:1.0", platforms="linux/arm64", output=tmp_path / "a.tar")
    parser = _Table()
    parser.feed(r._repr_html_())
    cells = [c for _, c in parser.rows if c[0] != "platform"]
    assert cells == [["linux/arm64", "\u2713 present"], ["linux/amd64", "absent"], ["linux/arm/v7", "absent"]]
    # Loading the sparse archive reports the platforms it lists but lacks as absent.
    lr = ocitar.load(tmp_path / "a.tar", store=tmp_path / "s")
    parser = _Table()
    parser.feed(lr._repr_html_())
    rows = [(cls, c) for cls, c in parser.rows if c[0] != "platform"]
    assert rows == [
        ("present", ["linux/arm64", "\u2713 present"]),
        ("absent", ["linux/amd64", "absent"]),
        ("absent", ["linux/arm/v7", "absent"]),
    ]
    assert "| linux/arm/v7 | *absent* |" in lr._repr_markdown_()


def test_inventory_to_dict_keys(store: BuiltStore) -> None:
    inv = ocitar.inspect(store.path)
    d = inv.to_dict()
    json.dumps(d)
    assert set(d) == {"path", "kind", "format", "compression", "images", "blobs", "bytes", "shared_bytes", "verified"}
    assert d["kind"] == "store" and not d["verified"]
    app = d["images"][0]
    assert set(app) == {"names", "digest", "media_type", "platforms", "size"}
    assert set(app["platforms"][0]) == {"platform", "written", "digest", "present", "size", "layers", "attestations", "foreign"}
    assert app["digest"] == store.image("app:1.0").digest
    # tools:0.3 shares no blob with app; nothing is shared.
    assert d["shared_bytes"] == 0
    assert "app:1.0" in repr(inv)


def test_progress_callback_sees_done_equal_total(store: BuiltStore, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    r = ocitar.save(store.path, "app:1.0", output=tmp_path / "a.tar", progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (r.blob_bytes, r.blob_bytes)
    assert all(d <= t for d, t in calls) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    calls.clear()
    lr = ocitar.load(tmp_path / "a.tar", store=tmp_path / "s", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (lr.bytes_written, lr.bytes_written)
    calls.clear()
    ocitar.verify(tmp_path / "s", progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1] > 0


class Boom(Exception):
    pass


def _raise(done: int, total: int) -> None:
    raise Boom(f"{done}/{total}")


def test_callback_exception_cancels_save_cleanly(store: BuiltStore, tmp_path: Path) -> None:
    with pytest.raises(Boom):
        ocitar.save(store.path, "app:1.0", output=tmp_path / "a.tar", progress=_raise)
    assert list(tmp_path.iterdir()) == [store.path]


def test_callback_exception_cancels_load_cleanly(store: BuiltStore, tmp_path: Path, unchanged) -> None:  # type: ignore[no-untyped-def]
    archive = tmp_path / "a.tar"
    ocitar.save(store.path, "app:1.0", output=archive)
    with pytest.raises(Boom):
        ocitar.load(archive, store=tmp_path / "new", progress=_raise)
    assert not (tmp_path / "new").exists()
    ocitar.load(archive, store=tmp_path / "s", platforms="linux/amd64")
    with unchanged(tmp_path / "s"), pytest.raises(Boom):
        ocitar.load(archive, store=tmp_path / "s", progress=_raise)


def test_keyboard_interrupt_cancels_load_cleanly(store: BuiltStore, tmp_path: Path, unchanged) -> None:  # type: ignore[no-untyped-def]
    archive = tmp_path / "a.tar"
    ocitar.save(store.path, "app:1.0", output=archive)
    ocitar.load(archive, store=tmp_path / "s", platforms="linux/amd64")

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with unchanged(tmp_path / "s"), pytest.raises(KeyboardInterrupt):
        ocitar.load(archive, store=tmp_path / "s", progress=interrupt)
    assert not any(p.name.startswith(".ocitar-ingest-") for p in (tmp_path / "s").iterdir())


def test_progress_true_ends_on_one_100_percent_line(store: BuiltStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ocitar.save(store.path, "app:1.0", output=tmp_path / "a.tar", progress=True)
    err = capsys.readouterr().err
    # The bar (tqdm or built-in) is drawn in place and ends on one line at 100 %, which stays.
    last = err.split("\r")[-1]
    assert err.count("100%") == 1 and "100%" in last and last.endswith("\n")


def test_progress_rejects_other_types(store: BuiltStore, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="progress"):
        ocitar.save(store.path, "app:1.0", output=tmp_path / "a.tar", progress="yes")  # type: ignore[arg-type]


def test_default_store_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OCITAR_STORE", str(tmp_path / "x"))
    assert ocitar.default_store() == str(tmp_path / "x")
    monkeypatch.delenv("OCITAR_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert ocitar.default_store() == str(tmp_path / "data" / "ocitar" / "store")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ocitar.default_store() == str(tmp_path / "home" / ".local" / "share" / "ocitar" / "store")


def test_extension_is_built_for_the_stable_abi() -> None:
    # One abi3 wheel serves every CPython >= 3.9.
    assert ocitar._ocitar.__file__ is not None and ocitar._ocitar.__file__.endswith(".abi3.so")
