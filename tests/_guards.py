"""Guards for the hostile-input, crash, concurrency and verify suites: a Rust panic must never reach Python.

A panic that escapes the engine surfaces as pyo3's ``pyo3_runtime.PanicException`` (a ``BaseException``,
so ``except Exception`` does not catch it, but ``pytest.raises(BaseException)`` or a broad handler would
hide it). The autouse fixture :func:`no_panic` fails any test of a module that imports it in which one
appeared, even when the test swallowed it:

- every function of ``ocitar._ocitar`` is wrapped for the test, and a ``PanicException`` raised through
  it (or chained to what it raised) is recorded before it propagates;
- ``sys.excepthook``, ``threading.excepthook`` and ``sys.unraisablehook`` record one raised elsewhere;
- Rust's panic message (``thread '…' panicked at``), which the panic hook writes to file descriptor 2
  before unwinding, is looked for in the test's captured output (the fixture captures at the fd level, so
  subprocesses that inherit stderr are covered too, and re-emits what it captured).

Subprocesses whose output a test captures itself are checked with :func:`assert_no_panic`.

Usage, in a test module: ``from _guards import no_panic  # noqa: F401`` (importing the fixture makes it
autouse for that module).
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import ocitar._ocitar as native
import pytest

#: Text that only a Rust panic (or pyo3's exception for it) prints.
PANIC_TEXT = ("panicked at", "PanicException", "RUST_BACKTRACE")


def is_panic(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception chained to it, is pyo3's ``PanicException``."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if any(k.__name__ == "PanicException" for k in type(exc).__mro__):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def assert_no_panic(text: str | bytes | None, what: str = "output") -> None:
    """Fail when ``text`` (a subprocess's stderr, say) shows a Rust panic."""
    if text is None:
        return
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for marker in PANIC_TEXT:
        if marker in text:
            pytest.fail(f"Rust panic in {what} ({marker!r}):\n{text[-4000:]}")


class PanicWatch:
    """Records every panic seen during one test."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def record(self, where: str, exc: BaseException | None) -> None:
        if is_panic(exc):
            self.seen.append(f"{where}: {type(exc).__name__}: {exc}")

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except BaseException as e:
                self.record(f"ocitar._ocitar.{name}", e)
                raise

        return wrapper


@pytest.fixture(autouse=True)
def no_panic(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Iterator[PanicWatch]:
    """Fail the test if a Rust panic appeared anywhere in it (see the module docs)."""
    watch = PanicWatch()
    for name in dir(native):
        fn = getattr(native, name)
        if callable(fn) and not name.startswith("_") and not isinstance(fn, type):
            monkeypatch.setattr(native, name, watch.wrap(name, fn))
    old_excepthook = sys.excepthook
    old_threadhook = threading.excepthook
    old_unraisable = sys.unraisablehook

    def excepthook(t: type[BaseException], e: BaseException, tb: Any) -> None:
        watch.record("sys.excepthook", e)
        old_excepthook(t, e, tb)

    def threadhook(args: Any) -> None:
        watch.record(f"thread {getattr(args.thread, 'name', '?')}", args.exc_value)
        old_threadhook(args)

    def unraisable(args: Any) -> None:
        watch.record("unraisable", args.exc_value)
        old_unraisable(args)

    monkeypatch.setattr(sys, "excepthook", excepthook)
    monkeypatch.setattr(threading, "excepthook", threadhook)
    monkeypatch.setattr(sys, "unraisablehook", unraisable)
    try:
        yield watch
    finally:
        out, err = capfd.readouterr()
        # Give the captured output back to pytest, so that a failing test still shows it.
        sys.stdout.write(out)
        sys.stderr.write(err)
        for marker in PANIC_TEXT[:1]:
            if marker in err or marker in out:
                watch.seen.append(f"captured output shows a Rust panic ({marker!r})")
    if watch.seen:
        pytest.fail("a Rust panic reached Python: " + "; ".join(watch.seen))
