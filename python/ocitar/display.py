"""HTML and Markdown views of reports and inventories for Jupyter: plain tables, no external CSS or
JavaScript."""

from __future__ import annotations

from html import escape
from typing import Any


def human(n: int) -> str:
    """Bytes in a human unit (``1.5 MiB``)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _image_title(image: dict[str, Any]) -> str:
    return ", ".join(image["names"]) or "(unnamed)"


def report_html(title: str, report: dict[str, Any]) -> str:
    """An HTML table per image of a save or load report (``to_dict()`` form)."""
    parts = [f"<div class='ocitar-report'><strong>{escape(title)}</strong>"]
    for image in report["images"]:
        parts.append(
            f"<table><caption>{escape(_image_title(image))} <code>{escape(image['digest'])}</code></caption>"
        )
        parts.append("<tr><th>platform</th><th>status</th></tr>")
        for p in image["platforms"]:
            parts.append(f"<tr class='present'><td>{escape(p)}</td><td>present</td></tr>")
        for p in image.get("absent", []):
            parts.append(f"<tr class='absent'><td>{escape(p)}</td><td><em>absent</em></td></tr>")
        parts.append("</table>")
    parts.append("</div>")
    return "".join(parts)


def report_markdown(title: str, report: dict[str, Any]) -> str:
    """A Markdown table per image of a save or load report."""
    lines = [f"**{title}**", ""]
    for image in report["images"]:
        lines += [f"`{_image_title(image)}` `{image['digest']}`", "", "| platform | status |", "|---|---|"]
        lines += [f"| {p} | present |" for p in image["platforms"]]
        lines += [f"| {p} | *absent* |" for p in image.get("absent", [])]
        lines.append("")
    return "\n".join(lines)


def inventory_html(inv: dict[str, Any]) -> str:
    """An HTML table per image of an inventory: platforms as rows; absent platforms and attestations
    marked; sizes human-readable."""
    parts = [
        f"<div class='ocitar-inventory'><p><strong>{escape(inv['kind'])}</strong> <code>{escape(inv['path'])}</code>:"
        f" {len(inv['images'])} image(s), {inv['blobs']} blobs, {human(inv['bytes'])}"
        f" ({human(inv['shared_bytes'])} shared)</p>"
    ]
    for image in inv["images"]:
        parts.append(
            f"<table><caption>{escape(_image_title(image))} <code>{escape(image['digest'])}</code>"
            f" {escape(image['media_type'])}</caption>"
        )
        parts.append(
            "<tr><th>platform</th><th>status</th><th>size</th><th>layers</th><th>attestations</th><th>manifest</th></tr>"
        )
        for p in image["platforms"]:
            status = "present" if p["present"] else "absent"
            mark = "<td>present</td>" if p["present"] else "<td><em>absent</em></td>"
            att = f"{len(p['attestations'])} attestation(s)" if p["attestations"] else ""
            parts.append(
                f"<tr class='{status}'><td>{escape(p['platform'])}</td>{mark}<td>{human(p['size'])}</td>"
                f"<td>{p['layers']}</td><td>{escape(att)}</td><td><code>{escape(p['digest'])}</code></td></tr>"
            )
        parts.append("</table>")
    parts.append("</div>")
    return "".join(parts)


def inventory_markdown(inv: dict[str, Any]) -> str:
    """A Markdown table per image of an inventory."""
    lines = [
        f"**{inv['kind']}** `{inv['path']}`: {len(inv['images'])} image(s), {inv['blobs']} blobs, {human(inv['bytes'])}",
        "",
    ]
    for image in inv["images"]:
        lines += [
            f"`{_image_title(image)}` `{image['digest']}`",
            "",
            "| platform | status | size | layers | attestations |",
            "|---|---|---|---|---|",
        ]
        for p in image["platforms"]:
            status = "present" if p["present"] else "*absent*"
            lines.append(
                f"| {p['platform']} | {status} | {human(p['size'])} | {p['layers']} | {len(p['attestations'])} |"
            )
        lines.append("")
    return "\n".join(lines)
