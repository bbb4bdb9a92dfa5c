"""Progress reporting for ``progress=``: a callable is passed through; ``True`` draws a bar: tqdm when it is
installed (``tqdm.auto``: a widget in Jupyter), else a small built-in bar on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from ocitar.display import human


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class _Bar:
    """A stderr bar: ``save [#####.....]  52%  12.3 MiB/23.6 MiB  41.0 MiB/s  0:01 left``. Redrawn in place;
    the 100 % line is drawn once and stays, with the time taken."""

    width = 24

    def __init__(self, label: str) -> None:
        self.label = label
        self.start = time.monotonic()
        self.done = False
        self.drawn = 0

    def __call__(self, done: int, total: int) -> None:
        if self.done:
            return
        elapsed = max(time.monotonic() - self.start, 1e-6)
        frac = min(done / total, 1.0) if total else 1.0
        filled = int(frac * self.width)
        rate = done / elapsed
        if frac >= 1.0:
            self.done = True
            tail = f"in {_clock(elapsed)}"
        else:
            tail = f"{_clock((total - done) / rate)} left" if rate > 0 else "--:-- left"
        line = (
            f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {frac * 100:3.0f}%  "
            f"{human(done)}/{human(total)}  {human(int(rate))}/s  {tail}"
        )
        sys.stderr.write("\r" + line.ljust(self.drawn) + ("\n" if self.done else ""))
        sys.stderr.flush()
        self.drawn = len(line)


class _Tqdm:
    """A ``tqdm.auto`` bar (a widget in Jupyter), created at the first call, when the total is known."""

    def __init__(self, label: str) -> None:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]

        self.factory: Any = tqdm
        self.label = label
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = self.factory(total=total, desc=self.label, unit="B", unit_scale=True, unit_divisor=1024)
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
