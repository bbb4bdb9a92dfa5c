"""HTML and Markdown views of reports and inventories for Jupyter: one small scoped ``<style>`` block (colours
come from the notebook's theme: opacity and ``currentColor`` only), no external CSS or JavaScript.

Digests show as 12 hex digits; the full digest is in the ``title`` attribute (on hover) and nowhere else."""

from __future__ import annotations

from typing import Any

from ocitar._text import html as escape
from ocitar._text import markdown as md

# Selectors carry two classes and a table element, so that they win over JupyterLab's own table rules
# (``:not(.jp-RenderedMarkdown).jp-RenderedHTMLCommon td {text-align: right; padding: .5em}``, two classes)
# without !important: text columns left, numbers right, compact rows that do not wrap.
STYLE = (
    "<style>"
    "div.ocitar table.ocitar-t{border-collapse:collapse;margin:.25em 0 .5em 0}"
    "div.ocitar table.ocitar-t th,div.ocitar table.ocitar-t td{text-align:left;padding:.2em 1em .2em 0;"
    "vertical-align:baseline;white-space:nowrap}"
    "div.ocitar table.ocitar-t th{font-weight:600}"
    "div.ocitar table.ocitar-t thead{border-bottom:1px solid currentColor}"
    "div.ocitar table.ocitar-t .num{text-align:right;font-variant-numeric:tabular-nums}"
    "div.ocitar table.ocitar-t tr.absent td{opacity:.6}"
    "div.ocitar table.ocitar-t tr.absent td.status{opacity:1}"
    "div.ocitar .badge{display:inline-block;font-size:.8em;padding:0 .5em;border:1px solid currentColor;"
    "border-radius:.7em;line-height:1.4}"
    "div.ocitar tr.absent .badge{border-style:dashed;font-style:italic}"
    "div.ocitar .head{margin:.6em 0 0 0}"
    "div.ocitar .total,div.ocitar .meta{opacity:.75;font-size:.9em}"
    "div.ocitar code{font-size:.9em}"
    "div.ocitar .nowrap{white-space:nowrap}"
    "</style>"
)

MEDIA_TYPES = {
    "application/vnd.oci.image.index.v1+json": "OCI index",
    "application/vnd.docker.distribution.manifest.list.v2+json": "Docker manifest list",
    "application/vnd.oci.image.manifest.v1+json": "OCI manifest",
    "application/vnd.docker.distribution.manifest.v2+json": "Docker manifest",
}

DASH = "\u2014"


def human(n: int | None) -> str:
    """Bytes in a human unit (``1.5 MiB``); an em dash for None (unknown, absent)."""
    if n is None:
        return DASH
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def media_type(mt: str) -> str:
    """A media type in words (``OCI index``, ``Docker manifest list``); unknown ones as they are."""
    return MEDIA_TYPES.get(mt, mt)


def digest_html(digest: str) -> str:
    """12 hex digits, the full digest in the ``title`` attribute."""
    short = digest.partition(":")[2][:12] or digest[:12]
    return f"<code title='{escape(digest)}'>{escape(short)}</code>"


def _names(image: dict[str, Any]) -> str:
    return ", ".join(image["names"]) or "(unnamed)"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _status(present: bool) -> str:
    badge = "<span class='badge'>\u2713 present</span>" if present else "<span class='badge'>absent</span>"
    return f"<td class='status'>{badge}</td>"


def _head(image: dict[str, Any], extra: str = "") -> str:
    """One header line per image: names, short digest, media type in words."""
    return (
        f"<div class='head'><strong>{escape(_names(image))}</strong> {digest_html(image['digest'])}"
        f" <span class='meta'>{escape(media_type(image['media_type']))}{extra}</span></div>"
    )


def _root(kind: str, top: str, body: list[str]) -> str:
    return f"<div class='ocitar ocitar-{kind}'>{STYLE}<div>{top}</div>{''.join(body)}</div>"


def report_html(title: str, report: dict[str, Any]) -> str:
    """A save or load report (``to_dict()`` form): what its text repr says, as a table per image."""
    if title == "Saved":
        where = f" to <code>{escape(report['output'])}</code>" if report.get("output") else ""
        top = f"<strong>Saved</strong>{where}: {_plural(report['blobs'], 'blob')}, {human(report['blob_bytes'])}"
    else:
        top = (
            f"<strong>Loaded</strong>: {_plural(report['blobs_written'], 'blob')} written "
            f"({human(report['bytes_written'])}), {report['blobs_present']} already present"
        )
    body = []
    for image in report["images"]:
        extra = ""
        if image.get("original_digest"):
            extra += f" \u00b7 store digest {digest_html(image['original_digest'])}"
        if image.get("moved"):
            extra += f" \u00b7 moved here: {escape(', '.join(image['moved']))}"
        body.append(_head(image, extra))
        body.append("<table class='ocitar-t'><thead><tr><th>platform</th><th>status</th></tr></thead><tbody>")
        for p in image["platforms"]:
            body.append(f"<tr class='present'><td>{escape(p)}</td>{_status(True)}</tr>")
        for p in image.get("absent", []):
            body.append(f"<tr class='absent'><td>{escape(p)}</td>{_status(False)}</tr>")
        body.append("</tbody></table>")
        absent = len(image.get("absent", []))
        sparse = f", {absent} listed without content (sparse)" if absent else ""
        att = f", {_plural(image['attestations'], 'attestation')}" if image.get("attestations") else ""
        body.append(f"<div class='total'>{_plural(len(image['platforms']), 'platform')}{att}{sparse}</div>")
    return _root("report", top, body)


def report_markdown(title: str, report: dict[str, Any]) -> str:
    """A Markdown table per image of a save or load report."""
    lines = [f"**{title}**", ""]
    for image in report["images"]:
        lines += [f"{md(_names(image))} {md(image['digest'])}", "", "| platform | status |", "|---|---|"]
        lines += [f"| {md(p)} | present |" for p in image["platforms"]]
        lines += [f"| {md(p)} | *absent* |" for p in image.get("absent", [])]
        lines.append("")
    return "\n".join(lines)


def _platform_cell(p: dict[str, Any]) -> str:
    """The platform, normalized; the image's own spelling, when it differs, on hover."""
    written = p.get("written", p["platform"])
    title = f" title='as written: {escape(written)}'" if written != p["platform"] else ""
    return f"<td{title}>{escape(p['platform'])}</td>"


def _platform_row(p: dict[str, Any]) -> str:
    status = "present" if p["present"] else "absent"
    att = str(len(p["attestations"])) if p["attestations"] else ""
    layers = DASH if p["layers"] is None else str(p["layers"])
    return (
        f"<tr class='{status}'>{_platform_cell(p)}{_status(p['present'])}"
        f"<td class='num'>{human(p['size'])}</td><td class='num'>{layers}</td><td class='num'>{att}</td>"
        f"<td>{digest_html(p['digest'])}</td></tr>"
    )


def inventory_html(inv: dict[str, Any]) -> str:
    """An inventory: one header line and one table per image (a row per platform, absent ones dimmed with
    an "absent" badge and no sizes), totals under each table and for the whole."""
    what = f"{inv['kind']} <code>{escape(inv['path'])}</code>"
    if inv["kind"] == "archive":
        what += f" <span class='meta'>({escape(inv['format'] or 'oci')}, {escape(inv['compression'] or 'uncompressed')})</span>"
    blobs = _plural(inv["blobs"], "blob") + (" re-hashed" if inv["verified"] else "")
    shared = f" ({human(inv['shared_bytes'])} shared)" if inv["shared_bytes"] else ""
    total = f"{_plural(len(inv['images']), 'image')}, {blobs}, {human(inv['bytes'])}{shared}"
    total = f"<span class='nowrap'>{total}</span>"
    top = f"<strong>\u2713 verified</strong> {what}: {total}" if inv["verified"] else f"{what}: {total}"
    body = []
    for image in inv["images"]:
        plats = image["platforms"]
        present = [p for p in plats if p["present"]]
        body.append(_head(image))
        body.append(
            "<table class='ocitar-t'><thead><tr><th>platform</th><th>status</th><th class='num'>size</th><th class='num'>layers</th>"
            "<th class='num'>attestations</th><th>manifest</th></tr></thead><tbody>"
        )
        body += [_platform_row(p) for p in plats]
        body.append("</tbody></table>")
        absent = len(plats) - len(present)
        body.append(
            f"<div class='total'>{len(present)} present{f', {absent} absent (sparse)' if absent else ''}"
            f" \u00b7 {human(image['size'])}</div>"
        )
    return _root("inventory", top, body)


def inventory_markdown(inv: dict[str, Any]) -> str:
    """A Markdown table per image of an inventory."""
    lines = [
        f"**{md(inv['kind'])}** {md(inv['path'])}: {len(inv['images'])} image(s), {inv['blobs']} blobs, {human(inv['bytes'])}",
        "",
    ]
    for image in inv["images"]:
        lines += [
            f"{md(_names(image))} {md(image['digest'])}",
            "",
            "| platform | status | size | layers | attestations |",
            "|---|---|---|---|---|",
        ]
        for p in image["platforms"]:
            status = "present" if p["present"] else "*absent*"
            layers = DASH if p["layers"] is None else p["layers"]
            lines.append(f"| {md(p['platform'])} | {status} | {human(p['size'])} | {layers} | {len(p['attestations'])} |")
        lines.append("")
    return "\n".join(lines)


def html(view: str, d: dict[str, Any]) -> str:
    """The HTML view of a report's ``to_dict()``: ``"Saved"``, ``"Loaded"`` or ``"inventory"``."""
    return inventory_html(d) if view == "inventory" else report_html(view, d)


def markdown(view: str, d: dict[str, Any]) -> str:
    """The Markdown view of a report's ``to_dict()``, as :func:`html`."""
    return inventory_markdown(d) if view == "inventory" else report_markdown(view, d)
