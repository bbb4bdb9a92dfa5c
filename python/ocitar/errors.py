"""The exceptions ocitar raises. Every one subclasses :class:`OcitarError`; some are also a ``ValueError``
or ``LookupError`` so that generic handlers catch them too. Filesystem errors stay ``OSError`` subclasses."""

from __future__ import annotations

__all__ = [
    "DigestMismatchError",
    "ImageNotFoundError",
    "InvalidArchiveError",
    "InvalidPlatformError",
    "OcitarError",
    "PlatformNotFoundError",
    "StoreError",
]


class OcitarError(Exception):
    """Base class of every error ocitar raises about images, platforms, archives and stores."""


class InvalidPlatformError(OcitarError, ValueError):
    """A platform specifier (``os[(os.version)]/arch[/variant]``) does not parse."""


class ImageNotFoundError(OcitarError, LookupError):
    """A reference matches no image in the store, is ambiguous (matches two images), or is malformed."""


class PlatformNotFoundError(OcitarError, LookupError):
    """A required platform is absent from an image, or present without all of its content."""


class DigestMismatchError(OcitarError):
    """Content does not hash to its digest, or its size differs from its descriptor's."""


class InvalidArchiveError(OcitarError):
    """The archive is malformed, truncated, unsafe or over a limit."""


class StoreError(OcitarError):
    """The store is malformed, locked for too long, or unwritable."""
