"""Progress reporting for ``progress=``: a callable is passed through; ``True`` draws a bar on stderr
(tqdm when installed, else a small built-in bar)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class _Bar:
    """A minimal stderr progress bar, erased when done."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        width = 30
        frac = done / total if total else 1.0
        filled = int(frac * width)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {frac * 100:5.1f}%")
        sys.stderr.flush()
        self.shown = True
        if total and done >= total:
            sys.stderr.write("\r" + " " * (width + len(self.label) + 12) + "\r")
            sys.stderr.flush()


class _Tqdm:
    def __init__(self, label: str) -> None:
        import tqdm  # type: ignore[import-untyped,unused-ignore]

        self.bar: Any = tqdm.tqdm(desc=label, unit="B", unit_scale=True, leave=False)

    def __call__(self, done: int, total: int) -> None:
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.bar.close()


def make_progress(progress: object, label: str) -> Callable[[int, int], object] | None:
    """Turn a ``progress=`` argument into the callable the engine calls, or None."""
    if progress is None or progress is False:
        return None
    if progress is True:
        try:
            return _Tqdm(label)
        except ImportError:
            return _Bar(label)
    if callable(progress):
        return progress  # type: ignore[return-value,unused-ignore]
    raise TypeError(f"progress must be None, True or a callable, not {type(progress).__name__}")
