"""The compiled engine. Use the wrappers in :mod:`ocitar`; these take already-normalised arguments."""

from collections.abc import Callable
from typing import IO, Any, Literal

__all__ = [
    "__version__",
    "default_store",
    "inspect",
    "inspect_registry",
    "load",
    "normalize_platform",
    "pick",
    "save",
    "verify",
]

__version__: str

_Progress = Callable[[int, int], object] | None
# (base, user, password, token, ca_file, insecure, jobs)
_RegistryArgs = tuple[str, str | None, str | None, str | None, str | None, bool, int]

def save(
    store: str,
    refs: list[str],
    *,
    platforms: list[str] = ...,
    output: str | IO[bytes] | None = None,
    index: Literal["keep", "subset", "manifest"] = ...,
    prefer: str | None = None,
    compression: Literal["gzip", "zstd"] | None = None,
    progress: _Progress = None,
    registry: _RegistryArgs | None = None,
) -> tuple[dict[str, Any], bytes | None]:
    """Save images (from ``registry`` when given, else the store); returns the report as a dict and the
    archive bytes when ``output`` is None."""

def load(
    archive: str | bytes | bytearray | IO[bytes],
    *,
    platforms: list[str] = ...,
    store: str | None = None,
    progress: _Progress = None,
    registry: _RegistryArgs | None = None,
    index: Literal["keep", "subset", "manifest"] = ...,
) -> dict[str, Any]:
    """Load an archive into a store (or push it into ``registry``); returns the report as a dict. ``bytes``
    are read in place, without a copy."""

def inspect_registry(registry: _RegistryArgs, reference: str) -> dict[str, Any]:
    """The inventory of a registry image (manifests only), as a dict."""

def inspect(path: str, reference: str | None = None, *, names: list[str] | None = None) -> dict[str, Any]:
    """The inventory of a store or archive (with ``reference``, of the one store image it names; with
    ``names``, of the store images they list, as ``docker image ls REPOSITORY[:TAG]``), as a dict."""

def verify(path: str, *, progress: _Progress = None) -> dict[str, Any]:
    """Re-hash and check a store or archive; the inventory as a dict."""

def default_store() -> str:
    """The default store path."""

def normalize_platform(spec: str) -> str:
    """A platform specifier in containerd's normalized format."""

def pick(reference: str, path: str, images: list[tuple[list[str], str]]) -> int:
    """The index of the image ``reference`` names among ``images`` (names, digest), as ``save`` matches refs;
    ``path`` is named in the error when nothing matches."""
