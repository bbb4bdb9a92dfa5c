"""Python file objects given to ``save(output=…)`` and ``load(…)`` (issue 11, rule 12): whatever their
``write()`` and ``read()`` return or raise, the engine never panics; a bad return value is a
``ValueError``; an exception they raise comes out as itself (type, errno, the very object); the store is
unchanged."""

from __future__ import annotations

import contextlib
import errno
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ocitar
import pytest
from _guards import no_panic  # noqa: F401
from hypothesis import given, settings
from hypothesis import strategies as st
from ocitar.testing import BuiltStore, Image, build_store, tree_digest
from test_save_helpers import standard_store


@pytest.fixture
def store(oci_store_factory: Callable[..., BuiltStore]) -> BuiltStore:
    return standard_store(oci_store_factory)


class Writer(io.RawIOBase):
    """A writable file whose ``write()`` answers ``answer(data)`` after the first ``ok`` calls."""

    def __init__(self, answer: Callable[[bytes], Any], ok: int = 0) -> None:
        self.answer = answer
        self.ok = ok
        self.got = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> Any:
        if self.ok > 0:
            self.ok -= 1
            self.got += data
            return len(data)
        return self.answer(bytes(data))


class Reader(io.RawIOBase):
    """A readable file over ``data`` whose ``read()`` answers ``answer(n)`` after the first ``ok`` calls."""

    def __init__(self, data: bytes, answer: Callable[[int], Any], ok: int = 0) -> None:
        self.src = io.BytesIO(data)
        self.answer = answer
        self.ok = ok

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> Any:
        if self.ok > 0:
            self.ok -= 1
            return self.src.read(n)
        return self.answer(n)


def _raise(exc: BaseException) -> Callable[..., Any]:
    def f(*_: Any) -> Any:
        raise exc

    return f


RAISED = [
    KeyboardInterrupt(),
    ValueError("caller's own value error"),
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("caller's own runtime error"),
]


# write() ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [lambda d: len(d) + 1, lambda d: 10**30, lambda d: -1, lambda d: 0, lambda d: "many", lambda d: 1.5],
    ids=["more", "huge", "negative", "zero", "str", "float"],
)
@pytest.mark.parametrize("compression", [None, "gzip"])
def test_bad_write_return_is_a_value_error(
    store: BuiltStore, answer: Callable[[bytes], Any], compression: str | None
) -> None:
    before = tree_digest(store.path)
    with pytest.raises(ValueError, match=r"write\(\) of \d+ bytes returned"):
        ocitar.save(store.path, "app:1.0", output=Writer(answer), compression=compression)  # type: ignore[call-overload]
    assert tree_digest(store.path) == before


def test_short_writes_are_completed(store: BuiltStore) -> None:
    out = bytearray()

    def half(d: bytes) -> int:
        k = max(1, len(d) // 2)
        out.extend(d[:k])
        return k

    ocitar.save(store.path, "app:1.0", output=Writer(half))
    assert bytes(out) == ocitar.save(store.path, "app:1.0")


@pytest.mark.parametrize("exc", RAISED, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("ok", [0, 3])
def test_write_exception_comes_out_as_itself(store: BuiltStore, exc: BaseException, ok: int) -> None:
    before = tree_digest(store.path)
    with pytest.raises(type(exc)) as e:
        ocitar.save(store.path, "app:1.0", output=Writer(_raise(exc), ok=ok))
    assert e.value is exc
    if isinstance(exc, OSError):
        assert e.value.errno == errno.ENOSPC
    assert tree_digest(store.path) == before


@settings(max_examples=60, deadline=None)
@given(answer=st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=3), st.binary(max_size=3)))
def test_any_write_return_is_accepted_or_a_value_error(
    tmp_path_factory: pytest.TempPathFactory, answer: object
) -> None:
    store = tmp_path_factory.getbasetemp() / "fuzz-store"
    if not store.exists():
        build_store(store, [Image(names=("app:1.0",), platforms=("linux/amd64",))])
    with contextlib.suppress(ValueError):
        ocitar.save(store, "app:1.0", output=Writer(lambda d: answer))


# read() ----------------------------------------------------------------------------------------------


@pytest.fixture
def archive(store: BuiltStore) -> bytes:
    return ocitar.save(store.path, "app:1.0")


@pytest.mark.parametrize("exc", RAISED, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("ok", [0, 2])
def test_read_exception_comes_out_as_itself(
    archive: bytes, tmp_path: Path, store: BuiltStore, exc: BaseException, ok: int
) -> None:
    before = tree_digest(store.path)
    with pytest.raises(type(exc)) as e:
        ocitar.load(Reader(archive, _raise(exc), ok=ok), store=store.path)
    assert e.value is exc
    if isinstance(exc, OSError):
        assert e.value.errno == errno.ENOSPC
    assert tree_digest(store.path) == before
    with pytest.raises(type(exc)):
        ocitar.load(Reader(archive, _raise(exc), ok=ok), store=tmp_path / "new")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    "answer,message",
    [
        (lambda n: b"x" * (n + 1), r"read\(\d+\) returned \d+ bytes, more than asked"),
        (lambda n: "text", r"read\(\) returned str, not bytes"),
        (lambda n: None, r"read\(\) returned NoneType, not bytes"),
        (lambda n: 7, r"read\(\) returned int, not bytes"),
    ],
    ids=["more", "str", "none", "int"],
)
def test_bad_read_return_is_a_value_error(
    archive: bytes, store: BuiltStore, answer: Callable[[int], Any], message: str
) -> None:
    before = tree_digest(store.path)
    for ok in (0, 2):
        with pytest.raises(ValueError, match=message):
            ocitar.load(Reader(archive, answer, ok=ok), store=store.path)
    assert tree_digest(store.path) == before


def test_bytearray_reads_are_accepted(archive: bytes, tmp_path: Path) -> None:
    src = io.BytesIO(archive)
    report = ocitar.load(Reader(b"", lambda n: bytearray(src.read(n))), store=tmp_path / "s")
    assert [i.names for i in report.images] == [("app:1.0",)]
