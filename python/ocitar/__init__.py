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
from typing import IO, Literal, Union, cast, overload

from ocitar import _ocitar, errors
from ocitar._progress import make_progress
from ocitar._reports import ImageInfo, Inventory, LoadedImage, LoadReport, PlatformInfo, SavedImage, SaveReport
from ocitar.errors import *  # noqa: F403  (as asyncio re-exports its submodules: errors.__all__ below)

__version__: str = _ocitar.__version__

__all__ = [
    "ImageInfo",
    "Inventory",
    "LoadReport",
    "LoadedImage",
    "PlatformInfo",
    "Registry",
    "SaveReport",
    "SavedImage",
    "Token",
    "__version__",
    "default_store",
    "inspect",
    "load",
    "normalize_platform",
    "save",
    "verify",
]
__all__ += errors.__all__  # the exceptions, listed once in errors.py

StrPath = Union[str, "os.PathLike[str]"]


class Token:
    """A bearer token for a registry (``auth=ocitar.Token("...")``), sent as is in ``Authorization``.

    Its ``repr`` never shows the token."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError("Token needs a non-empty string")
        self._value = value

    def __repr__(self) -> str:
        return "Token(***)"


class Registry:
    """A registry as a store (the OCI distribution API), for :func:`save`, :func:`load` and :func:`inspect`.

    ``base`` is ``host[:port][/prefix]``; empty means each reference names its own registry (``alpine`` is
    ``docker.io/library/alpine:latest``). With a base, a reference without a host is read from the base with
    its path as written (``Registry("127.0.0.1:5000")`` + ``"demo:1.0"`` is ``127.0.0.1:5000/demo:1.0``), and
    a load renames each image onto the base by swapping the host and keeping the path.
    ``auth`` is ``("user", "password")`` or a :class:`Token`; without it, credentials come from
    ``REGISTRY_AUTH_FILE``, docker's ``config.json`` (credential helpers first), containers' ``auth.json``,
    else none. ``ca_file`` adds PEM certificates to the system's roots. Plain HTTP is used only for loopback
    hosts or with ``insecure=True`` (which also accepts any certificate). ``jobs`` blobs move at once.
    Credentials never appear in ``repr``, errors or reports.
    """

    __slots__ = ("_auth", "base", "ca_file", "insecure", "jobs")

    base: str
    ca_file: str | None
    insecure: bool
    jobs: int

    def __init__(
        self,
        base: str = "",
        *,
        auth: tuple[str, str] | Token | None = None,
        ca_file: StrPath | None = None,
        insecure: bool = False,
        jobs: int = 4,
    ) -> None:
        if not isinstance(base, str):
            raise TypeError(f"base must be a str, not {type(base).__name__}")
        if base.startswith("docker://"):
            base = base[len("docker://") :]
        pair = isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(a, str) for a in auth)
        if auth is not None and not isinstance(auth, Token) and not pair:
            raise TypeError("auth must be a (user, password) tuple of str or an ocitar.Token")
        if not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be a positive int, not {jobs!r}")
        self.base = base.rstrip("/")
        self._auth = auth
        self.ca_file = os.fspath(ca_file) if ca_file is not None else None
        self.insecure = bool(insecure)
        self.jobs = jobs

    def __repr__(self) -> str:
        parts = [repr(self.base)]
        if self._auth is not None:
            parts.append("auth=***")
        if self.ca_file is not None:
            parts.append(f"ca_file={self.ca_file!r}")
        if self.insecure:
            parts.append("insecure=True")
        if self.jobs != 4:
            parts.append(f"jobs={self.jobs}")
        return f"Registry({', '.join(parts)})"

    def _args(self) -> tuple[str, str | None, str | None, str | None, str | None, bool, int]:
        user = password = token = None
        if isinstance(self._auth, Token):
            token = self._auth._value
        elif self._auth is not None:
            user, password = self._auth
        return (self.base, user, password, token, self.ca_file, self.insecure, self.jobs)


def _registry(store: object) -> Registry | None:
    """The registry ``store`` names (a :class:`Registry` or a ``docker://BASE`` string), else None."""
    if isinstance(store, Registry):
        return store
    if isinstance(store, str) and store.startswith("docker://"):
        return Registry(store)
    return None
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
    store: StrPath | Registry,
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
    store: StrPath | Registry,
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
    store: StrPath | Registry,
    refs: str | Iterable[str],
    platforms: str | Iterable[str] | None = None,
    *,
    output: StrPath | IO[bytes] | None = None,
    index: Literal["keep", "subset", "manifest"] = "keep",
    prefer: str | None = None,
    compression: Literal["gzip", "zstd"] | None = None,
    progress: Progress = None,
) -> SaveReport | bytes:
    """Save images from the OCI layout ``store`` (or a :class:`Registry`, or ``"docker://BASE"``) into one
    archive.

    ``refs`` are names (``alpine``, ``alpine:3.20``, ``registry.example.com/team/web:1.0``), names with a
    digest, or bare digests. ``platforms`` (None = all) is a requirement: every selected image must hold
    every listed platform with all its content, else :class:`PlatformNotFoundError` and nothing is written.
    ``index`` picks the shape of each image: ``"keep"`` (the store's index, digest unchanged), ``"subset"``
    (a new index of the saved platforms) or ``"manifest"`` (the single platform manifest).
    ``output`` is a path (a regular file is replaced atomically; a device, FIFO or ``/dev/fd/N`` is written
    into), a writable binary file, or None to return the archive bytes.
    From a registry, manifests are fetched and checked against their digests, blobs stream (``jobs`` at
    once, resumed after a dropped connection) and are hashed as they are written; the archive's names are
    the references as resolved (``127.0.0.1:5000/demo:1.0``).
    """
    if isinstance(output, io.TextIOBase):
        raise TypeError("output must be a binary file (open it with 'wb', or pass sys.stdout.buffer), not a text stream")
    reg = _registry(store)
    report, data = _ocitar.save(
        "" if reg is not None else os.fspath(cast("StrPath", store)),
        _list(refs, "refs"),
        platforms=_list(platforms, "platforms"),
        output=os.fspath(output) if isinstance(output, (str, os.PathLike)) else output,
        index=index,
        prefer=prefer,
        compression=compression,
        progress=make_progress(progress, "save"),
        registry=reg._args() if reg is not None else None,
    )
    if output is None:
        assert data is not None
        return bytes(data)
    return SaveReport._from_dict(report, output=os.fspath(output) if isinstance(output, (str, os.PathLike)) else None)


def load(
    archive: StrPath | bytes | IO[bytes],
    platforms: str | Iterable[str] | None = None,
    *,
    store: StrPath | Registry | None = None,
    index: Literal["keep", "subset", "manifest"] = "keep",
    progress: Progress = None,
) -> LoadReport:
    """Load an archive into the OCI layout ``store`` (default :func:`default_store`, created if missing),
    or into a registry (a :class:`Registry` or ``"docker://BASE"``).

    ``archive`` is a path, ``bytes`` or a readable binary file (a pipe too); OCI layout tars and Docker
    archives, plain or gzip/zstd/xz/bzip2-compressed. ``platforms`` (None = all present) is a requirement
    as in :func:`save`. All or nothing: on any error the store is unchanged.

    Into a registry, names move onto its base (the host swapped, the path kept); blobs go first (those the
    registry has are skipped, those another repository of it has are mounted), then manifests and indexes
    by digest, tags last: a failure before the tags leaves nothing tagged, a failure among them raises
    :class:`RegistryError` listing the tags already moved. ``index`` (registries only) shapes each image as
    :func:`save` does; a registry refuses an index listing content it does not hold, so ``"keep"`` with a
    platform list (or a sparse archive) raises :class:`PlatformNotFoundError` before any upload.
    """
    reg = _registry(store)
    if reg is None and index != "keep":
        raise ValueError("index= applies to loads into a registry; a store directory keeps every index as it is")
    src: str | bytes | bytearray | IO[bytes]
    if isinstance(archive, (bytes, bytearray)):
        src = archive  # bytes are read in place; a bytearray is copied once, by the engine
    elif isinstance(archive, memoryview):
        src = bytes(archive)
    elif isinstance(archive, (str, os.PathLike)):
        src = os.fspath(archive)
    elif isinstance(archive, io.TextIOBase):
        raise TypeError("archive must be a binary file (open it with 'rb', or pass sys.stdin.buffer), not a text stream")
    else:
        src = archive
    report = _ocitar.load(
        src,
        platforms=_list(platforms, "platforms"),
        store=os.fspath(cast("StrPath", store)) if store is not None and reg is None else None,
        progress=make_progress(progress, "load"),
        registry=reg._args() if reg is not None else None,
        index=index,
    )
    return LoadReport._from_dict(report)


def inspect(
    path: StrPath | Registry, ref: str | None = None, *, names: str | Iterable[str] | None = None
) -> Inventory:
    """What a store directory or archive file (any format and compression :func:`load` reads) holds:
    images, names, platforms (present or absent), sizes, attestations. Reads JSON documents only.

    ``inspect("docker://HOST/REPO:TAG")`` (or ``inspect(Registry(...), "REPO:TAG")``) shows a registry
    image's platforms and sizes from its manifests, without downloading any layer.

    ``inspect(STORE, ref)`` shows the one image of a store directory that ``ref`` names (a name, digest or
    unique digest prefix, as :func:`save` takes them), reading that image's documents only: its blob
    counts and sizes are that image's. An archive file is inspected whole (``ref`` is not taken there).

    ``inspect(STORE, names=[...])`` shows the images of a store directory that the names list, as
    ``docker image ls REPOSITORY[:TAG]`` lists them (what ``ocitar ls NAME...`` prints): a repository
    without tag (``"alpine"``, ``"ghcr.io/org/app"``) lists every tag of it, ``"alpine:3.20"`` that tag, a
    name with a digest or a digest its image. Each image carries the names that listed it; names that list
    nothing give an inventory without images. Only the listed images' documents are read, so listing a
    few images of a store of 50,000 names costs about one read of its ``index.json``."""
    if names is not None:
        if ref is not None:
            raise TypeError("inspect takes ref (one image) or names (a listing), not both")
        if isinstance(path, Registry) or (isinstance(path, str) and path.startswith("docker://")):
            raise TypeError("inspect(path, names=...) lists a store directory, not a registry")
        if not os.path.isdir(path):
            raise TypeError("inspect(path, names=...) takes a store directory; an archive file is inspected whole")
        return Inventory._from_dict(_ocitar.inspect(os.fspath(path), names=_list(names, "names")))
    if isinstance(path, Registry):
        if ref is None:
            raise TypeError("inspect(Registry(...), ref) needs the reference to inspect")
        return Inventory._from_dict(_ocitar.inspect_registry(path._args(), ref))
    if isinstance(path, str) and path.startswith("docker://"):
        return Inventory._from_dict(_ocitar.inspect_registry(Registry()._args(), path[len("docker://") :]))
    if ref is not None:
        if not os.path.isdir(path):
            raise TypeError("inspect(path, ref) takes a store directory; an archive file is inspected whole")
        return Inventory._from_dict(_ocitar.inspect(os.fspath(path), ref))
    return Inventory._from_dict(_ocitar.inspect(os.fspath(path)))


def verify(path: StrPath, *, progress: Progress = None) -> Inventory:
    """Re-hash every blob of a store or archive (in parallel), check every size and that every descriptor
    reachable from ``index.json`` is present (absent platforms of sparse images are reported, not faults).

    Raises :class:`DigestMismatchError`, :class:`StoreError` or :class:`InvalidArchiveError` on the first
    fault, naming the blob, its path, and what was expected and found."""
    return Inventory._from_dict(_ocitar.verify(os.fspath(path), progress=make_progress(progress, "verify")))


def default_store() -> str:
    """The default store: ``$OCITAR_STORE``, else ``$XDG_DATA_HOME/ocitar/store``, else
    ``~/.local/share/ocitar/store``."""
    return os.fspath(_ocitar.default_store())


def normalize_platform(spec: str) -> str:
    """Parse and normalize a platform specifier as containerd does (``linux/aarch64`` -> ``linux/arm64``).

    One spelling rule: every platform ocitar reports is in this form (``linux/arm64/v8``, as buildkit writes
    it, is ``linux/arm64`` in reports, inventories, ``to_dict()``, ``to_rows()`` and ``missing`` of
    :class:`PlatformNotFoundError`); the spelling an image writes stays in ``PlatformInfo.written`` and in
    ``available``. Two spellings name the same platform when their ``normalize_platform`` agree;
    ``ImageInfo.platform(spec)`` and the reports' ``platform(spec)`` look up by that rule.

    Raises :class:`InvalidPlatformError` when it does not parse.
    """
    return _ocitar.normalize_platform(spec)
