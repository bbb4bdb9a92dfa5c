"""Frozen report objects returned by :func:`ocitar.save` and :func:`ocitar.load`."""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar, cast

from ocitar._text import printable


def _as_dict(obj: Any) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, _Record):
            return {name: conv(getattr(v, name)) for name, _ in _fields(cast(Any, type(v)))}
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        return v

    out: dict[str, Any] = conv(obj)
    return out


_T = TypeVar("_T")
_R = TypeVar("_R", bound="_Record")


class _Named(Protocol):
    @property
    def names(self) -> tuple[str, ...]: ...
    @property
    def digest(self) -> str: ...


_I = TypeVar("_I", bound=_Named)


@functools.lru_cache(maxsize=4096)
def normal(text: str) -> str:
    """The one spelling of a platform in reports: containerd's normalisation of what the image writes, as
    :func:`ocitar.normalize_platform` gives it (``linux/arm64/v8`` -> ``linux/arm64``, ``linux/arm`` ->
    ``linux/arm/v7``, ``linux/amd64/v1`` -> ``linux/amd64``). Text that is not an ``os/arch`` specifier (a
    platform spelled with characters a specifier cannot hold) stays as written."""
    from ocitar import _ocitar

    if "/" not in text:
        return text
    try:
        return _ocitar.normalize_platform(text)
    except ValueError:
        return text


class _Record:
    """What every report dataclass shares: it is built from the engine's dict by :meth:`_from_dict` (after
    the class's :meth:`_prepare`); lists become tuples, lists of records are built the same way."""

    @classmethod
    def _prepare(cls, d: Mapping[str, Any]) -> Mapping[str, Any]:
        """The engine's dict as the fields want it (the default: as it is)."""
        return d

    @classmethod
    def _from_dict(cls: type[_R], d: Mapping[str, Any], **extra: Any) -> _R:
        d = cls._prepare({**d, **extra} if extra else d)
        return cls(**{name: d[name] if convert is None else convert(d[name]) for name, convert in _fields(cast(Any, cls))})


class _Report(_Record):
    """A top-level report (save, load, inventory): ``to_dict()``, a text repr of a summary line and one
    block per image, and the HTML and Markdown views of :mod:`ocitar.display`."""

    _view: ClassVar[str]
    images: tuple[Any, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the report (see the stub for the layout)."""
        return _as_dict(self)

    def _summary(self) -> str:
        raise NotImplementedError

    def _image_repr(self, image: Any) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        lines = [printable(self._summary())]
        lines += ["  " + self._image_repr(i).replace("\n", "\n  ") for i in self.images]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from ocitar import display

        return display.html(self._view, self.to_dict())

    def _repr_markdown_(self) -> str:
        from ocitar import display

        return display.markdown(self._view, self.to_dict())


@functools.cache
def _fields(cls: Any) -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
    """Each field of a record class with what turns the engine's value into it (None: taken as it is):
    lists become tuples, lists of records tuples of records. Worked out once per class (an inventory of
    5,000 images builds 25,000 records)."""
    hints = typing.get_type_hints(cls)

    def convert(tp: Any) -> Callable[[Any], Any] | None:
        if typing.get_origin(tp) is not tuple:
            return None
        item = typing.get_args(tp)[0]
        if isinstance(item, type) and issubclass(item, _Record):
            build = item._from_dict
            return lambda value: tuple(build(v) for v in value)
        return tuple

    return tuple((f.name, convert(hints[f.name])) for f in dataclasses.fields(cls))


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def short(digest: str) -> str:
    """A digest as docker prints it: 12 hex digits, algorithm left out (``bccf408bf52e``)."""
    return digest.partition(":")[2][:12] or digest[:12]


def _image_repr(image: Any, platforms: list[str], extra: str = "") -> str:
    """An image over several lines: its names and short digest, then one platform a line."""
    head = printable(f"{', '.join(image.names) or '<unnamed>'} {short(image.digest)}{extra}")
    return "\n".join([head, *(f"  {printable(p)}" for p in platforms)]) if platforms else head + " (no platforms)"


def _saved_lines(image: Any) -> list[str]:
    return [*image.platforms, *(f"{p} (absent)" for p in image.absent)]


def _find_platform(
    image: Any, spec: str, items: tuple[_T, ...], name: Callable[[_T], str], written: Callable[[_T], str]
) -> _T:
    from ocitar import _ocitar
    from ocitar.errors import PlatformNotFoundError

    wanted = _ocitar.normalize_platform(spec)
    for item in items:
        if name(item) == wanted:
            return item
    have = tuple(written(i) for i in items)
    label = ", ".join(image.names) or image.digest
    raise PlatformNotFoundError(
        f"platform not found: image {label} has no {wanted} (it has: {', '.join(have) or 'none'})", label, (wanted,), have
    )


def _find_image(images: tuple[_I, ...], ref: str, path: str) -> _I:
    from ocitar import _ocitar

    return images[_ocitar.pick(ref, path, [(list(i.names), i.digest) for i in images])]


def _normal_lists(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return {**d, "platforms": [normal(p) for p in d["platforms"]], "absent": [normal(p) for p in d["absent"]]}


def _same(p: str) -> str:
    return p


class _ImageRecord(_Record):
    """An image a save or a load moved: its platforms and absent platforms are shown normalized."""

    names: tuple[str, ...]
    digest: str
    platforms: tuple[str, ...]

    @classmethod
    def _prepare(cls, d: Mapping[str, Any]) -> Mapping[str, Any]:
        return _normal_lists(d)

    def platform(self, spec: str) -> str:
        """The platform of this image's that ``spec`` names, matched after normalization
        (``"linux/arm64/v8"`` finds ``linux/arm64``). Raises :class:`~ocitar.PlatformNotFoundError`."""
        return _find_platform(self, spec, self.platforms, _same, _same)


@dataclass(frozen=True)
class SavedImage(_ImageRecord):
    """One image written by :func:`ocitar.save`."""

    names: tuple[str, ...]
    """Familiar names (``alpine:3.20``) written for the image; empty when saved by digest."""
    digest: str
    """Digest of the top-level descriptor written to the archive."""
    original_digest: str | None
    """The store's digest when the written one differs (``index="subset"`` or ``"manifest"``)."""
    media_type: str
    platforms: tuple[str, ...]
    """Platforms saved, in index order, normalized (``linux/arm64``, see :func:`ocitar.normalize_platform`)."""
    absent: tuple[str, ...]
    """Platforms the written index lists without their content (a sparse archive): with ``index="keep"``,
    those the platform list left out and those the store lacks; empty for ``"subset"`` and ``"manifest"``.
    Normalized."""
    attestations: int
    """Attestation manifests saved with the platforms they describe."""


@dataclass(frozen=True, repr=False)
class SaveReport(_Report):
    """What :func:`ocitar.save` wrote."""

    _view: ClassVar[str] = "Saved"

    images: tuple[SavedImage, ...]
    blobs: int
    """Number of blobs in the archive."""
    blob_bytes: int
    """Bytes of blob content in the archive."""
    archive_bytes: int
    """Bytes of the tar stream (before compression)."""
    output: str | None = None
    """The path written; None for a file object or returned bytes."""

    def image(self, ref: str) -> SavedImage:
        """The saved image ``ref`` names (a name, digest, or unique digest prefix), as :meth:`Inventory.image`."""
        return _find_image(self.images, ref, self.output or "<archive>")

    def _summary(self) -> str:
        to = f" to {self.output}" if self.output else ""
        return f"SaveReport({len(self.images)} image(s), {self.blobs} blobs, {_size(self.blob_bytes)}{to})"

    def _image_repr(self, image: SavedImage) -> str:
        was = f" (store: {short(image.original_digest)})" if image.original_digest else ""
        return _image_repr(image, _saved_lines(image), was)


@dataclass(frozen=True)
class LoadedImage(_ImageRecord):
    """One image :func:`ocitar.load` put in the store."""

    names: tuple[str, ...]
    """Familiar names (``alpine:3.20``); empty for an unnamed image."""
    digest: str
    media_type: str
    platforms: tuple[str, ...]
    """Platforms loaded, normalized (``linux/arm64``, see :func:`ocitar.normalize_platform`)."""
    absent: tuple[str, ...]
    """Platforms the image lists whose content the archive lacks (a sparse archive), or that the platform
    list left out. Normalized."""
    attestations: int
    moved: tuple[str, ...]
    """Names that pointed at another image before; that image stays in the store, unnamed."""
    foreign: tuple[str, ...]
    """Digests of foreign layers (``urls`` set, as Windows base layers) the archive does not hold: loaded as
    descriptors without blobs, as ``docker load`` does."""


@dataclass(frozen=True, repr=False)
class LoadReport(_Report):
    """What :func:`ocitar.load` did."""

    _view: ClassVar[str] = "Loaded"

    images: tuple[LoadedImage, ...]
    blobs_written: int
    blobs_present: int
    """Blobs the store had already (not rewritten)."""
    bytes_written: int
    blobs_mounted: int = 0
    """Blobs a registry mounted from another of its repositories instead of an upload."""

    def image(self, ref: str) -> LoadedImage:
        """The loaded image ``ref`` names (a name, digest, or unique digest prefix), as :meth:`Inventory.image`."""
        return _find_image(self.images, ref, "<archive>")

    def _summary(self) -> str:
        return (
            f"LoadReport({len(self.images)} image(s), {self.blobs_written} blobs written, "
            f"{self.blobs_present} present, {_size(self.bytes_written)})"
        )

    def _image_repr(self, image: LoadedImage) -> str:
        moved = f" (moved here: {', '.join(image.moved)})" if image.moved else ""
        return _image_repr(image, _saved_lines(image), moved)


@dataclass(frozen=True)
class PlatformInfo(_Record):
    """One platform of an image in an :class:`Inventory`."""

    platform: str
    """containerd's format, normalized (``linux/arm64``; see :func:`ocitar.normalize_platform`)."""
    written: str
    """The same platform as the image writes it (``linux/arm64/v8``)."""
    digest: str
    """The platform manifest's digest."""
    present: bool
    """False for a platform the index lists but whose content is absent (a sparse archive)."""
    size: int | None
    """Bytes of manifest, config and layers; None when the platform is absent."""
    layers: int | None
    """Number of layers; None when the platform is absent."""
    attestations: tuple[str, ...]
    """Digests of attestation manifests describing this platform."""
    foreign: tuple[str, ...]
    """Digests of foreign layers (``urls`` set) whose blobs are not there: not missing, fetched from their
    URLs by whoever runs the image."""

    @classmethod
    def _prepare(cls, d: Mapping[str, Any]) -> Mapping[str, Any]:
        text = d["platform"]
        d = {**d, "platform": normal(text), "written": text}
        # What an absent platform's content weighs is not known: its size and layers are None, not 0.
        return d if d.get("present", True) or "layers" not in d else {**d, "size": None, "layers": None}


@dataclass(frozen=True)
class ImageInfo(_Record):
    """One image in an :class:`Inventory`."""

    names: tuple[str, ...]
    digest: str
    media_type: str
    platforms: tuple[PlatformInfo, ...]
    size: int
    """Bytes of every present blob of the image."""

    def platform(self, spec: str) -> PlatformInfo:
        """The platform ``spec`` names, matched after normalization (``"linux/arm64/v8"`` finds
        ``linux/arm64``). Raises :class:`~ocitar.PlatformNotFoundError` naming the ones there are, as the
        image writes them."""
        return _find_platform(self, spec, self.platforms, lambda p: p.platform, lambda p: p.written)

    def __repr__(self) -> str:
        return _image_repr(self, [p.platform + ("" if p.present else " (absent)") for p in self.platforms])


@dataclass(frozen=True, repr=False)
class Inventory(_Report):
    """What a store or archive holds: returned by :func:`ocitar.inspect` and :func:`ocitar.verify`."""

    _view: ClassVar[str] = "inventory"

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

    def image(self, ref: str) -> ImageInfo:
        """The image ``ref`` names, matched as :func:`ocitar.save` matches refs: a name (``app``,
        ``app:1.2``, ``docker.io/library/app:1.2``), a digest, or a unique digest prefix of 12 or more hex
        digits. Raises :class:`~ocitar.ImageNotFoundError` (closest names, or every match when ambiguous)."""
        return _find_image(self.images, ref, self.path)

    def to_rows(self) -> list[dict[str, Any]]:
        """One flat dict per platform (image names joined by ``", "``, image digest, platform normalized and
        as written, status, size, layers, attestation count, manifest digest): what ``pandas.DataFrame(...)``
        and ``polars.DataFrame(...)`` take as is. An image without platforms is one row with ``platform``
        None."""
        rows: list[dict[str, Any]] = []
        for i in self.images:
            base = {"image": ", ".join(i.names) or None, "image_digest": i.digest, "media_type": i.media_type}
            for p in i.platforms:
                rows.append(
                    {
                        **base,
                        "platform": p.platform,
                        "written": p.written,
                        "present": p.present,
                        "size": p.size,
                        "layers": p.layers,
                        "attestations": len(p.attestations),
                        "manifest_digest": p.digest,
                    }
                )
            if not i.platforms:
                rows.append(
                    {**base, "platform": None, "written": None, "present": True, "size": i.size, "layers": None,
                     "attestations": 0, "manifest_digest": None}
                )
        return rows

    def _summary(self) -> str:
        return f"Inventory({self.kind} {self.path}: {len(self.images)} image(s), {self.blobs} blobs, {_size(self.bytes)})"

    def _image_repr(self, image: ImageInfo) -> str:
        return repr(image)
