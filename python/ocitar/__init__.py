"""ocitar: move container images between an OCI image-layout store and portable tar archives, choosing
which platforms go in or come out.

>>> import ocitar
>>> ocitar.save("build/oci", ["myapp:1.2"], platforms=["linux/amd64"], output="dist/myapp.tar")  # doctest: +SKIP
>>> ocitar.load("dist/myapp.tar", platforms=["linux/amd64"], store="/srv/images")  # doctest: +SKIP

All tar processing, hashing and verification run in Rust with the GIL released.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from typing import IO, Literal, Union, overload

from ocitar import _ocitar
from ocitar._progress import make_progress
from ocitar._reports import ImageInfo, Inventory, LoadedImage, LoadReport, PlatformInfo, SavedImage, SaveReport
from ocitar.errors import (
    DigestMismatchError,
    ImageNotFoundError,
    InvalidArchiveError,
    InvalidPlatformError,
    OcitarError,
    PlatformNotFoundError,
    StoreError,
)

__version__: str = _ocitar.__version__

__all__ = [
    "DigestMismatchError",
    "ImageNotFoundError",
    "InvalidArchiveError",
    "InvalidPlatformError",
    "ImageInfo",
    "Inventory",
    "LoadReport",
    "LoadedImage",
    "OcitarError",
    "PlatformInfo",
    "PlatformNotFoundError",
    "SaveReport",
    "SavedImage",
    "StoreError",
    "__version__",
    "default_store",
    "inspect",
    "load",
    "normalize_platform",
    "save",
    "verify",
]

StrPath = Union[str, "os.PathLike[str]"]
Progress = Union[None, bool, Callable[[int, int], object]]


def _list(value: str | Iterable[str] | None, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be str or a list of str, not {type(value).__name__}")
    out = list(value)
    for v in out:
        if not isinstance(v, str):
            raise TypeError(f"{what} must be strings, not {type(v).__name__}")
    return out


@overload
def save(
    store: StrPath,
    refs: str | Iterable[str],
    platforms: str | Iterable[str] | None = None,
    *,
    output: None = None,
    index: Literal["keep", "subset", "manifest"] = "keep",
    prefer: str | None = None,
    compression: Literal["gzip", "zstd"] | None = None,
    progress: Progress = None,
) -> bytes: ...
@overload
def save(
    store: StrPath,
    refs: str | Iterable[str],
    platforms: str | Iterable[str] | None = None,
    *,
    output: StrPath | IO[bytes],
    index: Literal["keep", "subset", "manifest"] = "keep",
    prefer: str | None = None,
    compression: Literal["gzip", "zstd"] | None = None,
    progress: Progress = None,
) -> SaveReport: ...
def save(
    store: StrPath,
    refs: str | Iterable[str],
    platforms: str | Iterable[str] | None = None,
    *,
    output: StrPath | IO[bytes] | None = None,
    index: Literal["keep", "subset", "manifest"] = "keep",
    prefer: str | None = None,
    compression: Literal["gzip", "zstd"] | None = None,
    progress: Progress = None,
) -> SaveReport | bytes:
    """Save images from the OCI layout ``store`` into one archive.

    ``refs`` are names (``alpine``, ``alpine:3.20``, ``registry.example.com/team/web:1.0``), names with a
    digest, or bare digests. ``platforms`` (None = all) is a requirement: every selected image must hold
    every listed platform with all its content, else :class:`PlatformNotFoundError` and nothing is written.
    ``index`` picks the shape of each image: ``"keep"`` (the store's index, digest unchanged), ``"subset"``
    (a new index of the saved platforms) or ``"manifest"`` (the single platform manifest).
    ``output`` is a path (a regular file is replaced atomically; a device, FIFO or ``/dev/fd/N`` is written
    into), a writable binary file, or None to return the archive bytes.
    """
    if isinstance(output, io.TextIOBase):
        raise TypeError("output must be a binary file (open it with 'wb', or pass sys.stdout.buffer), not a text stream")
    report, data = _ocitar.save(
        os.fspath(store),
        _list(refs, "refs"),
        _list(platforms, "platforms"),
        os.fspath(output) if isinstance(output, (str, os.PathLike)) else output,
        index,
        prefer,
        compression,
        make_progress(progress, "save"),
    )
    if output is None:
        assert data is not None
        return bytes(data)
    return SaveReport._from_dict(report, os.fspath(output) if isinstance(output, (str, os.PathLike)) else None)


def load(
    archive: StrPath | bytes | IO[bytes],
    platforms: str | Iterable[str] | None = None,
    *,
    store: StrPath | None = None,
    progress: Progress = None,
) -> LoadReport:
    """Load an archive into the OCI layout ``store`` (default :func:`default_store`, created if missing).

    ``archive`` is a path, ``bytes`` or a readable binary file (a pipe too); OCI layout tars and Docker
    archives, plain or gzip/zstd/xz/bzip2-compressed. ``platforms`` (None = all present) is a requirement
    as in :func:`save`. All or nothing: on any error the store is unchanged.
    """
    if isinstance(archive, (bytes, bytearray, memoryview)):
        src: str | bytes | IO[bytes] = bytes(archive)
    elif isinstance(archive, (str, os.PathLike)):
        src = os.fspath(archive)
    elif isinstance(archive, io.TextIOBase):
        raise TypeError("archive must be a binary file (open it with 'rb', or pass sys.stdin.buffer), not a text stream")
    else:
        src = archive
    report = _ocitar.load(
        src,
        _list(platforms, "platforms"),
        os.fspath(store) if store is not None else None,
        make_progress(progress, "load"),
    )
    return LoadReport._from_dict(report)


def inspect(path: StrPath) -> Inventory:
    """What a store directory or archive file (any format and compression :func:`load` reads) holds:
    images, names, platforms (present or absent), sizes, attestations. Reads JSON documents only."""
    return Inventory._from_dict(_ocitar.inspect(os.fspath(path)))


def verify(path: StrPath, *, progress: Progress = None) -> Inventory:
    """Re-hash every blob of a store or archive (in parallel), check every size and that every descriptor
    reachable from ``index.json`` is present (absent platforms of sparse images are reported, not faults).

    Raises :class:`DigestMismatchError`, :class:`StoreError` or :class:`InvalidArchiveError` on the first
    fault, naming the blob, its path, and what was expected and found."""
    return Inventory._from_dict(_ocitar.verify(os.fspath(path), make_progress(progress, "verify")))


def default_store() -> str:
    """The default store: ``$OCITAR_STORE``, else ``$XDG_DATA_HOME/ocitar/store``, else
    ``~/.local/share/ocitar/store``."""
    return os.fspath(_ocitar.default_store())


def normalize_platform(spec: str) -> str:
    """Parse and normalize a platform specifier as containerd does (``linux/aarch64`` -> ``linux/arm64``).

    One spelling rule: what you ask for is normalized (here, and in ``missing`` of
    :class:`PlatformNotFoundError`); what an image holds is reported as the image writes it
    (``linux/arm64/v8`` in reports, inventories and ``available``). Two spellings name the same platform when
    their ``normalize_platform`` agree; ``ImageInfo.platform(spec)`` and the reports' ``platform(spec)`` look
    up by that rule.

    Raises :class:`InvalidPlatformError` when it does not parse.
    """
    return _ocitar.normalize_platform(spec)
