"""Text that came from an archive or a store, made safe to show: no control character or ANSI/OSC
sequence reaches a terminal, no markup reaches HTML or Markdown."""

from __future__ import annotations

import re
from html import escape

# C0, DEL and C1 controls (what starts ANSI and OSC sequences), and invisible formatting characters
# (bidirectional overrides, zero-width, line separators): the same set as the engine's `printable`.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_MARKDOWN = re.compile(r"([\\`*_\[\]|~])")


def _escape_char(m: re.Match[str]) -> str:
    n = ord(m.group())
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def printable(s: object) -> str:
    """``str(s)`` with control and invisible formatting characters written as ``\\xNN`` / ``\\uNNNN``."""
    return _UNSAFE.sub(_escape_char, str(s))


def html(s: object) -> str:
    """``s`` for HTML: printable, then markup escaped."""
    return escape(printable(s))


def markdown(s: object) -> str:
    """``s`` for Markdown (which Jupyter renders with inline HTML): printable, markup and Markdown
    punctuation escaped."""
    return _MARKDOWN.sub(r"\\\1", escape(printable(s), quote=False))
