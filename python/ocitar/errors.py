"""The exceptions ocitar raises. Every one subclasses :class:`OcitarError`; some are also a ``ValueError``
or ``LookupError`` so that generic handlers catch them too. Filesystem errors stay ``OSError`` subclasses.

Each exception carries what its message names as attributes (``e.image``, ``e.missing``, ``e.path``…), so
tests and tools need not parse the text."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "AuthenticationError",
    "DigestMismatchError",
    "ImageNotFoundError",
    "InvalidArchiveError",
    "InvalidPlatformError",
    "OcitarError",
    "PlatformNotFoundError",
    "RegistryError",
    "StoreError",
]


class OcitarError(Exception):
    """Base class of every error ocitar raises about images, platforms, archives and stores."""

    _fields: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle (multiprocessing, pytest-xdist) keeps the attributes as well as the message.
        return (type(self), (str(self), *(getattr(self, f) for f in self._fields)))


class InvalidPlatformError(OcitarError, ValueError):
    """A platform specifier (``os[(os.version)]/arch[/variant]``) does not parse."""

    _fields = ("spec",)

    def __init__(self, message: str = "", spec: str = "") -> None:
        super().__init__(message)
        self.spec: str = spec
        """The specifier as given."""


class ImageNotFoundError(OcitarError, LookupError):
    """A reference matches no image in the store, is ambiguous (matches two images), or is malformed."""

    _fields = ("ref", "candidates")

    def __init__(self, message: str = "", ref: str = "", candidates: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.ref: str = ref
        """The reference as the caller gave it."""
        self.candidates: tuple[str, ...] = tuple(candidates)
        """The closest names when nothing matched, or every image an ambiguous reference matches."""


class PlatformNotFoundError(OcitarError, LookupError):
    """A required platform is absent from an image, or present without all of its content."""

    _fields = ("image", "missing", "available")

    def __init__(
        self, message: str = "", image: str = "", missing: Iterable[str] = (), available: Iterable[str] = ()
    ) -> None:
        super().__init__(message)
        self.image: str = image
        """The image's familiar name (``alpine:3.20``), or its digest when it has no name."""
        self.missing: tuple[str, ...] = tuple(missing)
        """The requested platforms the image lacks, normalized (``linux/riscv64``)."""
        self.available: tuple[str, ...] = tuple(available)
        """The complete platforms the image holds, as the image writes them (``linux/arm64/v8``)."""


class DigestMismatchError(OcitarError):
    """Content does not hash to its digest, or its size differs from its descriptor's."""

    _fields = ("digest", "path", "expected_size", "found_size", "found_digest")

    def __init__(
        self,
        message: str = "",
        digest: str = "",
        path: str = "",
        expected_size: int | None = None,
        found_size: int | None = None,
        found_digest: str | None = None,
    ) -> None:
        super().__init__(message)
        self.digest: str = digest
        """The digest the content should have."""
        self.path: str = path
        """Where the content was read: a file, or an archive and its entry."""
        self.expected_size: int | None = expected_size
        """The size the descriptor gives, for a size mismatch."""
        self.found_size: int | None = found_size
        """The size found, when known (None when the content ran past the expected size)."""
        self.found_digest: str | None = found_digest
        """The digest the content hashes to, for a digest mismatch."""


class InvalidArchiveError(OcitarError):
    """The archive is malformed, truncated, unsafe or over a limit."""

    _fields = ("entry",)

    def __init__(self, message: str = "", entry: str = "") -> None:
        super().__init__(message)
        self.entry: str = entry
        """The archive entry at fault (``blobs/sha256/…``, ``index.json``), or the archive itself (its path,
        ``<stdin>``) when the whole archive is (not a tar archive, truncated)."""


class StoreError(OcitarError):
    """The store is missing, malformed, locked for too long, or unwritable."""

    _fields = ("path",)

    def __init__(self, message: str = "", path: str = "") -> None:
        super().__init__(message)
        self.path: str = path
        """The store, or the file in it, at fault."""


class RegistryError(OcitarError):
    """A registry answered with an error, or could not be reached (its URL never carries credentials)."""

    _fields = ("status", "code", "url", "moved")

    def __init__(self, message: str = "", status: int = 0, code: str = "", url: str = "", moved: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.status: int = status
        """The HTTP status, 0 when there was no response."""
        self.code: str = code
        """The OCI error code (``MANIFEST_BLOB_UNKNOWN``, ``DENIED``…), empty when the registry gave none."""
        self.url: str = url
        """The request's URL without its query."""
        self.moved: tuple[str, ...] = tuple(moved)
        """When a load failed among its tags: the tags already moved, ``"host/repo:tag (was sha256:…)"`` or
        ``"… (new)"``."""


class AuthenticationError(RegistryError):
    """A registry refused the credentials (HTTP 401 or 403), or ocitar found none it would accept."""
