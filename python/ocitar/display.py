"""HTML views of reports and inventories for Jupyter: plain tables, no external CSS or JavaScript."""

from __future__ import annotations

from html import escape
from typing import Any


def report_html(title: str, report: dict[str, Any]) -> str:
    """An HTML table per image of a save or load report (``to_dict()`` form)."""
    parts = [f"<div class='ocitar-report'><strong>{escape(title)}</strong>"]
    for image in report["images"]:
        name = ", ".join(image["names"]) or image["digest"]
        parts.append(f"<table><caption>{escape(name)} <code>{escape(image['digest'])}</code></caption>")
        parts.append("<tr><th>platform</th><th>status</th></tr>")
        for p in image["platforms"]:
            parts.append(f"<tr><td>{escape(p)}</td><td>present</td></tr>")
        for p in image.get("absent", []):
            parts.append(f"<tr><td>{escape(p)}</td><td><em>absent</em></td></tr>")
        parts.append("</table>")
    parts.append("</div>")
    return "".join(parts)
