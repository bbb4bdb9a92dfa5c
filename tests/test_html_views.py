"""The Jupyter views, read by parsing their HTML: short digests with the full one on hover only, absent rows
apart, a scoped style that takes its colours from the theme, one header line per image, totals, and the
reports showing what their text repr shows."""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import ocitar
import pytest
from ocitar.testing import BuiltStore, Image, Platform

FULL_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class Page(HTMLParser):
    """Visible text, title attributes, rows (class, cell texts), and the style block."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.text: list[str] = []
        self.titles: list[str] = []
        self.rows: list[tuple[str, list[str]]] = []
        self.classes: list[str] = []
        self.style = ""
        self._in_style = False
        self._cells: list[str] | None = None
        self._row_cls = ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("title"):
            self.titles.append(a["title"] or "")
        self.classes += (a.get("class") or "").split()
        self._in_style = tag == "style"
        if tag == "tr":
            self._cells, self._row_cls = [], a.get("class") or ""
        elif tag in ("td", "th") and self._cells is not None:
            self._cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._cells is not None:
            self.rows.append((self._row_cls, self._cells))
            self._cells = None
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
            return
        self.text.append(data)
        if self._cells:
            self._cells[-1] += data

    @property
    def visible(self) -> str:
        return "".join(self.text)

    def body(self) -> list[tuple[str, list[str]]]:
        return [(cls, cells) for cls, cells in self.rows if cls]


@pytest.fixture
def store(oci_store_factory) -> BuiltStore:  # type: ignore[no-untyped-def]
    return oci_store_factory(
        Image(names=("app:1.0",), platforms=(Platform("linux/amd64", attestation=True), "linux/arm64/v8", "linux/arm/v7")),
        Image(names=("tools:0.3",), platforms=("linux/amd64",), media_types="docker"),
    )


def test_digests_are_short_with_the_full_one_in_the_title_only(store: BuiltStore) -> None:
    inv = ocitar.inspect(store.path)
    page = Page(inv._repr_html_())
    assert not FULL_DIGEST.search(page.visible)
    app = inv.image("app:1.0")
    for digest in (app.digest, *(p.digest for p in app.platforms)):
        assert digest in page.titles and digest[7:19] in page.visible


def test_the_style_is_scoped_and_takes_colours_from_the_theme(store: BuiltStore) -> None:
    page = Page(ocitar.inspect(store.path)._repr_html_())
    rules = [r for r in page.style.split("}") if r.strip()]
    assert rules and all(sel.startswith("div.ocitar") for r in rules for sel in r.split("{")[0].split(","))
    assert "background" not in page.style and "#" not in page.style and "rgb" not in page.style
    assert "text-align:left" in page.style and ".num{text-align:right" in page.style


def test_absent_rows_are_apart_with_a_badge_and_no_sizes(store: BuiltStore, tmp_path: Path) -> None:
    ocitar.save(store.path, "app:1.0", ["linux/amd64"], output=tmp_path / "a.tar")
    page = Page(ocitar.inspect(tmp_path / "a.tar")._repr_html_())
    rows = {cells[0]: (cls, cells) for cls, cells in page.body()}
    cls, cells = rows["linux/amd64"]
    assert cls == "present" and "present" in cells[1] and cells[2].endswith("B") and cells[3] == "1" and cells[4] == "1"
    for p in ("linux/arm64", "linux/arm/v7"):
        cls, cells = rows[p]
        assert cls == "absent" and cells[1] == "absent" and cells[2:4] == ["\u2014", "\u2014"]
    assert {"badge", "num", "head", "total"} <= set(page.classes)


def test_one_header_line_per_image_with_media_type_in_words_and_totals(store: BuiltStore, tmp_path: Path) -> None:
    ocitar.save(store.path, ["app:1.0", "tools:0.3"], ["linux/amd64"], output=tmp_path / "a.tar.gz", compression="gzip")
    html = ocitar.inspect(tmp_path / "a.tar.gz")._repr_html_()
    page = Page(html)
    heads = re.findall(r"<div class='head'>(.*?)</div>", html)
    assert len(heads) == 2
    assert "OCI index" in heads[0] and "Docker manifest list" in heads[1]
    assert "1 present, 2 absent (sparse)" in page.visible and "gzip" in page.visible
    assert "<caption>" not in html


def test_verify_says_verified_with_blob_count_and_compression(store: BuiltStore, tmp_path: Path) -> None:
    ocitar.save(store.path, "app:1.0", output=tmp_path / "a.tar.zst", compression="zstd")
    inv = ocitar.verify(tmp_path / "a.tar.zst")
    page = Page(inv._repr_html_())
    assert "verified" in page.visible and f"{inv.blobs} blobs" in page.visible and "zstd" in page.visible
    assert "\u2713 verified" in page.visible
    assert "\u2713 verified" not in Page(ocitar.inspect(tmp_path / "a.tar.zst")._repr_html_()).visible


def test_save_report_html_shows_what_its_repr_shows(store: BuiltStore, tmp_path: Path) -> None:
    out = tmp_path / "a.tar"
    r = ocitar.save(store.path, "app:1.0", ["linux/arm64"], output=out, index="subset")
    page = Page(r._repr_html_())
    assert str(out) in page.visible and f"{r.blobs} blobs" in page.visible
    img = r.images[0]
    assert img.original_digest is not None
    assert img.digest in page.titles and img.original_digest in page.titles
    assert img.original_digest[7:19] in page.visible and img.original_digest[7:19] in repr(r)
    kept = Page(ocitar.save(store.path, "app:1.0", ["linux/arm64"], output=tmp_path / "k.tar")._repr_html_())
    assert [(c, cells[0]) for c, cells in kept.body()] == [
        ("present", "linux/arm64"),
        ("absent", "linux/amd64"),
        ("absent", "linux/arm/v7"),
    ]


def test_load_report_html_shows_moved_names(store: BuiltStore, oci_store_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    newer = oci_store_factory(Image(names=("app:1.0",), platforms=("linux/s390x",)), name="newer")
    ocitar.load(ocitar.save(store.path, "app:1.0"), store=tmp_path / "s")
    moved = ocitar.load(ocitar.save(newer.path, "app:1.0"), store=tmp_path / "s")
    assert moved.images[0].moved == ("app:1.0",)
    page = Page(moved._repr_html_())
    assert f"{moved.blobs_written} blobs written" in page.visible and "moved here: app:1.0" in page.visible
    assert "moved here: app:1.0" in repr(moved)
    assert not FULL_DIGEST.search(page.visible)


def test_progress_in_a_notebook_is_tqdm_auto_created_with_its_total(
    store: BuiltStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[dict[str, object]] = []

    class Widget:
        def __init__(self, **kw: object) -> None:
            made.append(kw)
            self.n = 0
            self.closed = 0

        def update(self, k: int) -> None:
            self.n += k

        def close(self) -> None:
            self.closed += 1

    auto = type(sys)("tqdm.auto")
    auto.tqdm = Widget  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tqdm", type(sys)("tqdm"))
    monkeypatch.setitem(sys.modules, "tqdm.auto", auto)
    r = ocitar.save(store.path, "app:1.0", output=tmp_path / "a.tar", progress=True)
    assert len(made) == 1 and made[0]["total"] == r.blob_bytes and made[0]["unit"] == "B"


def _specificity(selector: str) -> tuple[int, int]:
    """(classes and pseudo-classes, elements) of a simple CSS selector, as the cascade counts them."""
    classes = len(re.findall(r"[.:][\w-]+", selector.replace(":not(", "(")))
    elements = len(re.findall(r"(?:^|[\s>+~(])([a-z]+)", selector))
    return classes, elements


def test_alignment_and_padding_win_over_jupyterlabs_table_rules(store: BuiltStore) -> None:
    # JupyterLab right-aligns every cell and pads it .5em with a two-class rule; a looked-at screenshot showed
    # text columns right-aligned and the platform header centred until the view's rules outranked it.
    lab = _specificity(":not(.jp-RenderedMarkdown).jp-RenderedHTMLCommon td")
    assert lab == (2, 1)
    style = Page(ocitar.inspect(store.path)._repr_html_()).style
    aligning = [r.split("{")[0] for r in style.split("}") if "text-align" in r or ("padding" in r and " td" in r)]
    assert aligning and all(_specificity(sel) > lab for r in aligning for sel in r.split(","))
    assert "white-space:nowrap" in style


def test_platform_cells_show_the_normalized_spelling_and_the_written_one_on_hover(store: BuiltStore) -> None:
    page = Page(ocitar.inspect(store.path)._repr_html_())
    cells = [cells[0] for _, cells in page.body()]
    assert "linux/arm64" in cells and "linux/arm64/v8" not in page.visible
    assert "as written: linux/arm64/v8" in page.titles
    assert not any(t.startswith("as written: linux/amd64") for t in page.titles), "no hover when they agree"
    status = re.findall(r"<td class='status'><span class='badge'>([^<]*)</span></td>", ocitar.inspect(store.path)._repr_html_())
    assert status and set(status) == {"\u2713 present"}
