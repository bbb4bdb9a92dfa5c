"""Frozen report objects returned by :func:`ocitar.save` and :func:`ocitar.load`."""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast


def _as_dict(obj: Any) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        return v

    out: dict[str, Any] = conv(obj)
    return out


_T = TypeVar("_T")


def _build(cls: type[_T], d: Mapping[str, Any]) -> _T:
    """Build the frozen dataclass ``cls`` from the engine's dict: lists become tuples, and lists of
    dataclasses (``images``, ``platforms``) are built the same way."""
    ctor: Any = cls
    hints = _hints(ctor)
    return cast(_T, ctor(**{f.name: _field(hints[f.name], d[f.name]) for f in dataclasses.fields(ctor)}))


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _field(tp: Any, value: Any) -> Any:
    if typing.get_origin(tp) is tuple:
        item = typing.get_args(tp)[0]
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            return tuple(_build(item, v) for v in value)
        return tuple(value)
    return value


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@dataclass(frozen=True)
class SavedImage:
    """One image written by :func:`ocitar.save`."""

    names: tuple[str, ...]
    """Familiar names (``alpine:3.20``) written for the image; empty when saved by digest."""
    digest: str
    """Digest of the top-level descriptor written to the archive."""
    original_digest: str | None
    """The store's digest when the written one differs (``index="subset"`` or ``"manifest"``)."""
    media_type: str
    platforms: tuple[str, ...]
    """Platforms saved, in index order."""
    absent: tuple[str, ...]
    """Platforms the image lists but whose content the store lacks (not saved)."""
    attestations: int
    """Attestation manifests saved with the platforms they describe."""


@dataclass(frozen=True)
class SaveReport:
    """What :func:`ocitar.save` wrote."""

    images: tuple[SavedImage, ...]
    blobs: int
    """Number of blobs in the archive."""
    blob_bytes: int
    """Bytes of blob content in the archive."""
    archive_bytes: int
    """Bytes of the tar stream (before compression)."""

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> SaveReport:
        return _build(cls, d)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the report."""
        return _as_dict(self)

    def __repr__(self) -> str:
        lines = [f"SaveReport({len(self.images)} image(s), {self.blobs} blobs, {_size(self.blob_bytes)})"]
        for i in self.images:
            name = ", ".join(i.names) or i.digest
            lines.append(f"  {name} {i.digest[:19]} [{', '.join(i.platforms)}]")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from ocitar import display

        return display.report_html("Saved", self.to_dict())

    def _repr_markdown_(self) -> str:
        from ocitar import display

        return display.report_markdown("Saved", self.to_dict())


@dataclass(frozen=True)
class LoadedImage:
    """One image :func:`ocitar.load` put in the store."""

    names: tuple[str, ...]
    """Familiar names (``alpine:3.20``); empty for an unnamed image."""
    digest: str
    media_type: str
    platforms: tuple[str, ...]
    """Platforms loaded."""
    absent: tuple[str, ...]
    """Platforms the image lists whose content the archive lacks (a sparse archive)."""
    attestations: int
    moved: tuple[str, ...]
    """Names that pointed at another image before; that image stays in the store, unnamed."""


@dataclass(frozen=True)
class LoadReport:
    """What :func:`ocitar.load` did."""

    images: tuple[LoadedImage, ...]
    blobs_written: int
    blobs_present: int
    """Blobs the store had already (not rewritten)."""
    bytes_written: int

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> LoadReport:
        return _build(cls, d)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the report."""
        return _as_dict(self)

    def __repr__(self) -> str:
        lines = [
            f"LoadReport({len(self.images)} image(s), {self.blobs_written} blobs written, "
            f"{self.blobs_present} present, {_size(self.bytes_written)})"
        ]
        for i in self.images:
            name = ", ".join(i.names) or i.digest
            extra = f" absent: {', '.join(i.absent)}" if i.absent else ""
            lines.append(f"  {name} {i.digest[:19]} [{', '.join(i.platforms)}]{extra}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from ocitar import display

        return display.report_html("Loaded", self.to_dict())

    def _repr_markdown_(self) -> str:
        from ocitar import display

        return display.report_markdown("Loaded", self.to_dict())


@dataclass(frozen=True)
class PlatformInfo:
    """One platform of an image in an :class:`Inventory`."""

    platform: str
    """containerd's format, as the image writes it (``linux/arm64/v8``)."""
    digest: str
    """The platform manifest's digest."""
    present: bool
    """False for a platform the index lists but whose content is absent (a sparse archive)."""
    size: int
    """Bytes of manifest, config and layers."""
    layers: int
    attestations: tuple[str, ...]
    """Digests of attestation manifests describing this platform."""


@dataclass(frozen=True)
class ImageInfo:
    """One image in an :class:`Inventory`."""

    names: tuple[str, ...]
    digest: str
    media_type: str
    platforms: tuple[PlatformInfo, ...]
    size: int
    """Bytes of every present blob of the image."""


@dataclass(frozen=True)
class Inventory:
    """What a store or archive holds: returned by :func:`ocitar.inspect` and :func:`ocitar.verify`."""

    path: str
    kind: str
    """``"store"`` or ``"archive"``."""
    format: str | None
    """For archives: ``"oci"`` (index.json) or ``"docker"`` (manifest.json only)."""
    compression: str | None
    images: tuple[ImageInfo, ...]
    blobs: int
    """Distinct blobs reachable from the images and present."""
    bytes: int
    shared_bytes: int
    """Bytes of blobs used by more than one image."""
    verified: bool
    """True when every blob was re-hashed (:func:`ocitar.verify`)."""

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> Inventory:
        return _build(cls, d)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict with stable keys (see the stub for the layout)."""
        return _as_dict(self)

    def __repr__(self) -> str:
        head = f"Inventory({self.kind} {self.path}: {len(self.images)} image(s), {self.blobs} blobs, {_size(self.bytes)})"
        lines = [head]
        for i in self.images:
            name = ", ".join(i.names) or i.digest
            plats = ", ".join(p.platform + ("" if p.present else " (absent)") for p in i.platforms)
            lines.append(f"  {name} {i.digest[:19]} [{plats}]")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from ocitar import display

        return display.inventory_html(self.to_dict())

    def _repr_markdown_(self) -> str:
        from ocitar import display

        return display.inventory_markdown(self.to_dict())
