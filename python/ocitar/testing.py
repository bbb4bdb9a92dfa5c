"""Build small, deterministic OCI image-layout stores for tests.

``ocitar.testing`` describes images as plain values and writes them as a real
OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/...``) that
ocitar, skopeo, containerd and oci-image-tool can read. The same description
always gives the same bytes, so digests can be compared across runs::

    from ocitar.testing import Image, Layer, Platform, build_store, tree_digest

    base = Layer(size=8192, seed="base")            # equal Layer values -> one shared blob
    store = build_store(tmp_path / "store", [
        Image(names=("app:1.0", "app:latest"),
              platforms=(Platform("linux/amd64", layers=(base, Layer(seed="amd64")),
                                  attestation=True),
                         Platform("linux/arm64/v8", layers=(base, Layer(seed="arm64"))))),
        Image(names=("tools:0.3",), platforms=("linux/amd64", "linux/arm/v7"),
              media_types="docker", shape="nested"),
    ])
    app = store.image("app:1.0")
    app.digest                       # "sha256:..." of the image index
    app.manifests["linux/arm64/v8"]  # digest of that platform's manifest
    store.blob_path(app.digest)      # <store>/blobs/sha256/<hex>
    before = tree_digest(store.path) # compare after an operation that must not touch the store

With pytest, the ``oci_store_factory`` fixture of :mod:`ocitar.pytest_plugin`
builds stores under the test's ``tmp_path``.

What is written:

* one ``index.json`` entry per name of each image, in the order given (one
  unnamed entry for an image without names), all pointing at the image's
  top-level descriptor: an image index (``shape="index"``), an index holding a
  single child index (``shape="nested"``), or the platform manifest itself
  (``shape="manifest"``);
* per platform, a manifest, a config (``created`` fixed at the Unix epoch) and
  real tar layers, each holding one file ``data/<seed>.bin`` of pseudo-random,
  incompressible bytes derived from the layer's seed and size; gzip-compressed
  unless ``compression="none"``;
* optionally, per platform, a buildkit-style attestation manifest (an in-toto
  SPDX statement) listed in the index as ``unknown/unknown``.

Output is byte-for-byte reproducible for the same description with the same
Python and zlib (tar headers with uid/gid 0, mtime 0, mode 0644; gzip headers
with mtime 0 and no file name; blob JSON as
``json.dumps(obj, separators=(",", ":"), sort_keys=True)``).

This module uses the standard library only and imports nothing from ocitar,
so it can also be loaded by path without the compiled extension. Register it
in ``sys.modules`` before executing it (``dataclasses`` needs that)::

    spec = importlib.util.spec_from_file_location("ocitar_testing", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "BuiltImage",
    "BuiltStore",
    "Image",
    "Layer",
    "Platform",
    "build_store",
    "tree_digest",
]

_EPOCH = "1970-01-01T00:00:00Z"

_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_IN_TOTO = "application/vnd.in-toto+json"
_SPDX = "https://spdx.dev/Document"

_MEDIA_TYPES: dict[str, dict[str, str]] = {
    "oci": {
        "index": _OCI_INDEX,
        "manifest": _OCI_MANIFEST,
        "config": _OCI_CONFIG,
        "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
        "none": "application/vnd.oci.image.layer.v1.tar",
    },
    "docker": {
        "index": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifest": "application/vnd.docker.distribution.manifest.v2+json",
        "config": "application/vnd.docker.container.image.v1+json",
        "gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "none": "application/vnd.docker.image.rootfs.diff.tar",
    },
}
_SHAPES = ("index", "nested", "manifest")
_COMPRESSIONS = ("gzip", "none")

# os[(os.version)]/arch[/variant]
_PLATFORM_RE = re.compile(
    r"^(?P<os>[A-Za-z0-9_.-]+)(?:\((?P<version>[^()/]*)\))?"
    r"/(?P<arch>[A-Za-z0-9_.-]+)(?:/(?P<variant>[A-Za-z0-9_.-]+))?$"
)
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


# --------------------------------------------------------------------------
# Descriptions
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One layer: a tar archive holding a single file of pseudo-random bytes.

    Attributes:
        size: Bytes of the file inside the layer tar. The content is derived
            from ``seed`` and ``size`` (SHAKE-256 in counter mode), so it does
            not compress.
        seed: Distinguishes layers. Two layers with equal ``(seed, size,
            compression)`` are the same blob, which is how tests share layers
            between platforms and images. The file is named
            ``data/<seed>.bin`` (unsafe characters replaced by ``_``;
            ``data/layer.bin`` for an empty seed).
        compression: ``"gzip"`` (default) or ``"none"`` for a plain tar.

    Raises:
        ValueError: ``size`` is negative or ``compression`` is unknown.
    """

    size: int = 1024
    seed: str = ""
    compression: str = "gzip"

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 0:
            raise ValueError(
                f"Layer size must be a non-negative int, got {self.size!r}"
            )
        if self.compression not in _COMPRESSIONS:
            raise ValueError(
                f"Layer compression must be one of {_COMPRESSIONS}, got {self.compression!r}"
            )


@dataclass(frozen=True)
class Platform:
    """One platform of an image: its manifest, config and layers.

    Attributes:
        spec: ``os[(os.version)]/arch[/variant]``, for example ``"linux/amd64"``,
            ``"linux/arm/v7"`` or ``"windows(10.0.20348.2113)/amd64"``. Written
            into the config and the index descriptor as given (no
            normalisation: ``"linux/arm64/v8"`` keeps its ``v8`` variant).
        layers: The layers, bottom first. Empty (the default) means one
            1024-byte layer whose seed is derived from the image's first name
            (or its position in the store) and ``spec``, so platforms and
            images differ from each other.
        attestation: Also write a buildkit-style attestation manifest for this
            platform (only with the ``"index"`` and ``"nested"`` shapes).

    Raises:
        ValueError: ``spec`` does not parse.
    """

    spec: str
    layers: tuple[Layer, ...] = ()
    attestation: bool = False

    def __post_init__(self) -> None:
        _parse_platform(self.spec)
        layers = tuple(self.layers)
        for layer in layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"Platform layers must be Layer values, got {layer!r}")
        object.__setattr__(self, "layers", layers)


@dataclass(frozen=True)
class Image:
    """One image: a top-level descriptor, listed in ``index.json`` once per name.

    Attributes:
        names: Each name becomes its own ``index.json`` entry. A name is
            written as ``io.containerd.image.name`` (normalised as Docker does:
            ``"app:1.0"`` -> ``"docker.io/library/app:1.0"``, ``"team/app"`` ->
            ``"docker.io/team/app:latest"``) and ``org.opencontainers.image.ref.name``
            (its tag, ``"1.0"``). Empty: one entry without name annotations.
            A single ``str`` is taken as one name.
        platforms: ``Platform`` values, or spec strings as shorthand for
            ``Platform(spec)``.
        media_types: ``"oci"`` (OCI index, manifest, config and layer types) or
            ``"docker"`` (manifest list, schema 2 manifest, Docker config and
            layer types). Attestation manifests are always OCI-typed.
        shape: ``"index"``: an index listing the platform manifests;
            ``"nested"``: an index listing one child index (without a platform)
            that lists the platform manifests; ``"manifest"``: the single
            platform manifest is the image itself and its ``index.json``
            descriptor carries a ``platform`` field.
        ref_name_only: Write only ``org.opencontainers.image.ref.name`` with the
            name exactly as given (``"img0"``), as skopeo and umoci do.
        annotations: Extra annotations for every ``index.json`` entry of this
            image (not inside the index blob); they override name annotations
            with the same key.

    Raises:
        ValueError: unknown ``media_types`` or ``shape``; a name that does not
            parse; a platform listed twice; ``shape="manifest"`` without
            exactly one platform or with an attestation.
    """

    names: tuple[str, ...] = ()
    platforms: tuple[Platform | str, ...] = ("linux/amd64",)
    media_types: str = "oci"
    shape: str = "index"
    ref_name_only: bool = False
    annotations: dict[str, str] | None = None

    def __post_init__(self) -> None:
        names = (self.names,) if isinstance(self.names, str) else tuple(self.names)
        platforms = (
            (self.platforms,)
            if isinstance(self.platforms, (str, Platform))
            else tuple(self.platforms)
        )
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "platforms", platforms)
        if self.media_types not in _MEDIA_TYPES:
            raise ValueError(
                f"Image media_types must be one of {tuple(_MEDIA_TYPES)}, got {self.media_types!r}"
            )
        if self.shape not in _SHAPES:
            raise ValueError(
                f"Image shape must be one of {_SHAPES}, got {self.shape!r}"
            )
        resolved = _platforms(self)
        specs = [p.spec for p in resolved]
        for spec in specs:
            if specs.count(spec) > 1:
                raise ValueError(f"Image lists platform {spec!r} twice")
        if self.shape == "manifest":
            if len(resolved) != 1:
                raise ValueError(
                    f'Image shape "manifest" needs exactly one platform, got {len(resolved)}'
                )
            if resolved[0].attestation:
                raise ValueError('Image shape "manifest" cannot carry an attestation')
        if not self.ref_name_only:
            for name in names:
                _normalize_name(name)


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltImage:
    """What :func:`build_store` wrote for one :class:`Image`.

    Attributes:
        names: The names as given.
        digest: Digest of the top-level descriptor (``"sha256:..."``).
        media_type: Media type of the top-level descriptor.
        size: Size in bytes of the top-level blob.
        manifests: Platform spec (as given) -> platform manifest digest.
        attestations: Platform spec -> attestation manifest digest, for the
            platforms with ``attestation=True``.
        configs: Platform spec -> config digest.
        layers: Platform spec -> layer digests, bottom first.
        index_digests: Every index blob of the image: the top-level index and,
            with ``shape="nested"``, the child index. Empty for
            ``shape="manifest"``.
        blobs: Every blob of the image (indexes, manifests, configs, layers,
            attestation blobs) -> its size in bytes.
    """

    names: tuple[str, ...]
    digest: str
    media_type: str
    size: int
    manifests: dict[str, str]
    attestations: dict[str, str]
    configs: dict[str, str]
    layers: dict[str, tuple[str, ...]]
    index_digests: tuple[str, ...]
    blobs: dict[str, int]


@dataclass(frozen=True)
class BuiltStore:
    """A store written by :func:`build_store`.

    Attributes:
        path: The store directory.
        images: One :class:`BuiltImage` per :class:`Image`, in the order given.
    """

    path: Path
    images: tuple[BuiltImage, ...]

    def blob_path(self, digest: str) -> Path:
        """Return the file of the blob ``digest`` (``"sha256:<hex>"``).

        Raises:
            ValueError: ``digest`` is not a sha256 digest.
        """
        if not _DIGEST_RE.match(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        algorithm, hex_digest = digest.split(":", 1)
        return self.path / "blobs" / algorithm / hex_digest

    def image(self, name: str) -> BuiltImage:
        """Return the image that was given the name ``name`` (exactly as given).

        Raises:
            KeyError: no image has that name.
        """
        for built in self.images:
            if name in built.names:
                return built
        known = [n for built in self.images for n in built.names]
        raise KeyError(f"no image named {name!r} in {self.path} (names: {known})")


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------


def build_store(path: str | os.PathLike[str], images: Iterable[Image]) -> BuiltStore:
    """Write ``images`` as an OCI image layout at ``path`` and describe the result.

    ``path`` and its parents are created; an existing ``path`` must be an
    empty directory. Blobs shared between images or platforms are written once.

    Raises:
        FileExistsError: ``path`` exists and is not an empty directory.
        ValueError, TypeError: an image description is invalid.
        OSError: the store cannot be written.
    """
    root = Path(path)
    images = list(images)
    for image in images:
        if not isinstance(image, Image):
            raise TypeError(f"build_store expects Image values, got {image!r}")
    if (root.exists() or root.is_symlink()) and (
        not root.is_dir() or any(root.iterdir())
    ):
        raise FileExistsError(f"{root} exists and is not an empty directory")
    blob_dir = root / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_bytes(_json_blob({"imageLayoutVersion": "1.0.0"}))

    writer = _BlobWriter(blob_dir)
    entries: list[dict[str, Any]] = []
    built: list[BuiltImage] = []
    for position, image in enumerate(images):
        result, descriptor = _build_image(writer, image, position)
        built.append(result)
        for entry_annotations in _entry_annotations(image):
            entry = dict(descriptor)
            if entry_annotations:
                entry["annotations"] = entry_annotations
            entries.append(entry)

    index = {"schemaVersion": 2, "mediaType": _OCI_INDEX, "manifests": entries}
    text = json.dumps(index, indent=2, sort_keys=True) + "\n"
    (root / "index.json").write_bytes(text.encode("utf-8"))
    return BuiltStore(path=root, images=tuple(built))


def tree_digest(path: str | os.PathLike[str]) -> str:
    """Return a sha256 hex digest of everything under the directory ``path``.

    Every entry below ``path`` (hidden ones too; symlinks not followed) counts
    with its relative path, its kind (file, dir, symlink or other) and, for a
    file, the sha256 of its content, for a symlink, its target. Permission
    bits and timestamps do not count. Two trees with the same digest hold the
    same files with the same bytes.

    Raises:
        NotADirectoryError: ``path`` is not a directory.
        OSError: an entry cannot be read.
    """
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"not a directory: {root}")
    rows: list[tuple[str, str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            relative = full.relative_to(root).as_posix()
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                rows.append((relative, "symlink", os.readlink(full)))
            elif stat.S_ISDIR(mode):
                rows.append((relative, "dir", ""))
            elif stat.S_ISREG(mode):
                rows.append((relative, "file", _file_sha256(full)))
            else:
                rows.append((relative, "other", ""))
    total = hashlib.sha256()
    for row in sorted(rows):
        total.update(json.dumps(row).encode("utf-8") + b"\n")
    return total.hexdigest()


# --------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------


def _raise(error: OSError) -> None:
    raise error


def _json_blob(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _parse_platform(spec: str) -> dict[str, str]:
    """Return the OCI platform object for ``os[(os.version)]/arch[/variant]``."""
    match = _PLATFORM_RE.match(spec) if isinstance(spec, str) else None
    if match is None:
        raise ValueError(f"platform {spec!r} is not os[(os.version)]/arch[/variant]")
    platform = {"architecture": match["arch"], "os": match["os"]}
    if match["variant"]:
        platform["variant"] = match["variant"]
    if match["version"]:
        platform["os.version"] = match["version"]
    return platform


def _platforms(image: Image) -> tuple[Platform, ...]:
    resolved = []
    for item in image.platforms:
        if isinstance(item, str):
            item = Platform(item)
        elif not isinstance(item, Platform):
            raise TypeError(
                f"Image platforms must be Platform values or str, got {item!r}"
            )
        resolved.append(item)
    return tuple(resolved)


def _normalize_name(name: str) -> tuple[str, str]:
    """Return ``(full name, tag)`` of ``name``, normalised as Docker does."""
    if not isinstance(name, str) or not name or "@" in name:
        raise ValueError(
            f"image name {name!r} is not name[:tag] (digests are not supported)"
        )
    repository, tag = name, "latest"
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        repository, tag = name[:colon], name[colon + 1 :]
    if not _TAG_RE.match(tag):
        raise ValueError(f"image name {name!r} has an invalid tag {tag!r}")
    first, sep, rest = repository.partition("/")
    if sep and (
        "." in first or ":" in first or first == "localhost" or first.lower() != first
    ):
        domain, remainder = first, rest
    else:
        domain, remainder = "docker.io", repository
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in remainder:
        remainder = "library/" + remainder
    if not all(_PATH_COMPONENT_RE.match(part) for part in remainder.split("/")):
        raise ValueError(
            f"image name {name!r} has an invalid repository path {remainder!r}"
        )
    return f"{domain}/{remainder}:{tag}", tag


def _entry_annotations(image: Image) -> list[dict[str, str]]:
    """Return the annotations of each ``index.json`` entry of ``image``."""
    extra = dict(image.annotations or {})
    if not image.names:
        return [extra]
    result = []
    for name in image.names:
        if image.ref_name_only:
            annotations = {"org.opencontainers.image.ref.name": name}
        else:
            full, tag = _normalize_name(name)
            annotations = {
                "io.containerd.image.name": full,
                "org.opencontainers.image.ref.name": tag,
            }
        annotations.update(extra)
        result.append(annotations)
    return result


def _safe_file_name(seed: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", seed)[:80].lstrip(".")
    return cleaned or "layer"


class _Counter:
    """Readable file object of ``size`` pseudo-random bytes.

    Block ``i`` is ``SHAKE-256(prefix || i)`` truncated to 64 KiB, where the
    prefix holds the seed and the size: a hash in counter mode, computed in C
    (about eight times faster than 32-byte SHA-256 blocks).
    """

    _BLOCK = 1 << 16

    def __init__(self, seed: str, size: int) -> None:
        self._prefix = b"ocitar.testing\0%s\0%d\0" % (seed.encode("utf-8"), size)
        self._left = size
        self._counter = 0
        self._buffer = b""

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self._left:
            n = self._left
        parts = [self._buffer]
        have = len(self._buffer)
        while have < n:
            counter = self._counter.to_bytes(8, "big")
            parts.append(hashlib.shake_256(self._prefix + counter).digest(self._BLOCK))
            self._counter += 1
            have += self._BLOCK
        data = b"".join(parts)
        self._buffer = data[n:]
        self._left -= n
        return data[:n]


class _Writable(Protocol):
    def write(self, data: bytes, /) -> Any: ...


class _HashingSink:
    """Writable file object that hashes and counts bytes, then passes them on."""

    def __init__(self, target: _Writable) -> None:
        self._target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self._target.write(data)
        return len(data)

    def flush(self) -> None:
        flush = getattr(self._target, "flush", None)
        if flush is not None:
            flush()


@dataclass
class _LayerBlob:
    digest: str
    size: int
    diff_id: str


@dataclass
class _BlobWriter:
    """Writes blobs into ``blobs/sha256`` once each and caches built layers."""

    blob_dir: Path
    layers: dict[tuple[str, int, str], _LayerBlob] = field(default_factory=dict)

    def put(self, data: bytes) -> tuple[str, int]:
        """Write ``data`` as a blob and return ``(digest, size)``."""
        hex_digest = hashlib.sha256(data).hexdigest()
        target = self.blob_dir / hex_digest
        if not target.exists():
            temporary = self.blob_dir / f".tmp-{hex_digest}"
            temporary.write_bytes(data)
            os.replace(temporary, target)
        return "sha256:" + hex_digest, len(data)

    def put_json(self, obj: Any) -> tuple[str, int]:
        return self.put(_json_blob(obj))

    def layer(self, layer: Layer) -> _LayerBlob:
        """Write ``layer`` (once per ``(seed, size, compression)``) and describe it."""
        key = (layer.seed, layer.size, layer.compression)
        cached = self.layers.get(key)
        if cached is not None:
            return cached
        temporary = self.blob_dir / f".tmp-layer-{len(self.layers)}"
        try:
            with open(temporary, "wb") as out:
                blob = _HashingSink(out)
                if layer.compression == "gzip":
                    with gzip.GzipFile(
                        filename="", mode="wb", compresslevel=6, fileobj=blob, mtime=0
                    ) as compressed:
                        diff = _HashingSink(compressed)
                        _write_layer_tar(diff, layer)
                else:
                    diff = _HashingSink(blob)
                    _write_layer_tar(diff, layer)
            hex_digest = blob.sha256.hexdigest()
            os.replace(temporary, self.blob_dir / hex_digest)
        finally:
            if temporary.exists():
                temporary.unlink()
        result = _LayerBlob(
            digest="sha256:" + hex_digest,
            size=blob.size,
            diff_id="sha256:" + diff.sha256.hexdigest(),
        )
        self.layers[key] = result
        return result


def _write_layer_tar(out: _HashingSink, layer: Layer) -> None:
    """Write a USTAR archive holding the file of ``layer``, as ``tarfile`` would.

    One header block, the content padded to 512 bytes, two zero blocks, then
    zeros up to a multiple of the 10240-byte record.
    """
    info = tarfile.TarInfo("data/" + _safe_file_name(layer.seed) + ".bin")
    info.size = layer.size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    header = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    out.write(header)
    content = _Counter(layer.seed, layer.size)
    while True:
        chunk = content.read(1 << 20)
        if not chunk:
            break
        out.write(chunk)
    written = len(header) + layer.size
    written += -written % tarfile.BLOCKSIZE
    end = written + 2 * tarfile.BLOCKSIZE
    end += -end % tarfile.RECORDSIZE
    out.write(bytes(end - len(header) - layer.size))


def _build_image(
    writer: _BlobWriter, image: Image, position: int
) -> tuple[BuiltImage, dict[str, Any]]:
    """Write the blobs of ``image``; return its description and its top descriptor."""
    types = _MEDIA_TYPES[image.media_types]
    seed_base = image.names[0] if image.names else f"unnamed-{position}"
    blobs: dict[str, int] = {}
    manifests: dict[str, str] = {}
    attestations: dict[str, str] = {}
    configs: dict[str, str] = {}
    layers: dict[str, tuple[str, ...]] = {}
    platform_descriptors: list[dict[str, Any]] = []
    attestation_descriptors: list[dict[str, Any]] = []

    for platform in _platforms(image):
        fields = _parse_platform(platform.spec)
        chosen = platform.layers or (
            Layer(size=1024, seed=f"{seed_base}|{platform.spec}"),
        )
        written = [writer.layer(layer) for layer in chosen]
        for layer_blob in written:
            blobs[layer_blob.digest] = layer_blob.size

        config: dict[str, Any] = {
            "architecture": fields["architecture"],
            "os": fields["os"],
            "config": {},
            "created": _EPOCH,
            "history": [
                {
                    "created": _EPOCH,
                    "created_by": f"ocitar.testing layer {layer.seed!r}",
                }
                for layer in chosen
            ],
            "rootfs": {"type": "layers", "diff_ids": [b.diff_id for b in written]},
        }
        for key in ("variant", "os.version"):
            if key in fields:
                config[key] = fields[key]
        config_digest, config_size = writer.put_json(config)
        blobs[config_digest] = config_size

        manifest = {
            "schemaVersion": 2,
            "mediaType": types["manifest"],
            "config": {
                "mediaType": types["config"],
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [
                {
                    "mediaType": types[layer.compression],
                    "digest": b.digest,
                    "size": b.size,
                }
                for layer, b in zip(chosen, written)
            ],
        }
        manifest_digest, manifest_size = writer.put_json(manifest)
        blobs[manifest_digest] = manifest_size
        manifests[platform.spec] = manifest_digest
        configs[platform.spec] = config_digest
        layers[platform.spec] = tuple(b.digest for b in written)
        platform_descriptors.append(
            {
                "mediaType": types["manifest"],
                "digest": manifest_digest,
                "size": manifest_size,
                "platform": fields,
            }
        )

        if platform.attestation:
            descriptor = _write_attestation(
                writer, platform.spec, manifest_digest, blobs
            )
            attestations[platform.spec] = descriptor["digest"]
            attestation_descriptors.append(descriptor)

    index_digests: tuple[str, ...] = ()
    if image.shape == "manifest":
        top = platform_descriptors[0]
    else:
        listed = platform_descriptors + attestation_descriptors
        if image.shape == "nested":
            child = _write_index(writer, types["index"], listed, blobs)
            index_digests = (child["digest"],)
            listed = [child]
        top = _write_index(writer, types["index"], listed, blobs)
        index_digests = (top["digest"],) + index_digests

    built = BuiltImage(
        names=image.names,
        digest=top["digest"],
        media_type=top["mediaType"],
        size=top["size"],
        manifests=manifests,
        attestations=attestations,
        configs=configs,
        layers=layers,
        index_digests=index_digests,
        blobs=blobs,
    )
    return built, dict(top)


def _write_index(
    writer: _BlobWriter,
    media_type: str,
    descriptors: list[dict[str, Any]],
    blobs: dict[str, int],
) -> dict[str, Any]:
    digest, size = writer.put_json(
        {"schemaVersion": 2, "mediaType": media_type, "manifests": descriptors}
    )
    blobs[digest] = size
    return {"mediaType": media_type, "digest": digest, "size": size}


def _write_attestation(
    writer: _BlobWriter, spec: str, subject: str, blobs: dict[str, int]
) -> dict[str, Any]:
    """Write a buildkit-style attestation manifest for the manifest ``subject``."""
    statement = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": _SPDX,
        "subject": [
            {
                "name": f"ocitar.testing?platform={spec}",
                "digest": {"sha256": subject.split(":", 1)[1]},
            }
        ],
        "predicate": {
            "SPDXID": "SPDXRef-DOCUMENT",
            "spdxVersion": "SPDX-2.3",
            "name": f"ocitar.testing sbom for {spec}",
            "dataLicense": "CC0-1.0",
            "creationInfo": {"created": _EPOCH, "creators": ["Tool: ocitar.testing"]},
            "packages": [],
        },
    }
    layer_digest, layer_size = writer.put_json(statement)
    blobs[layer_digest] = layer_size
    config = {
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    config_digest, config_size = writer.put_json(config)
    blobs[config_digest] = config_size
    manifest = {
        "schemaVersion": 2,
        "mediaType": _OCI_MANIFEST,
        "config": {
            "mediaType": _OCI_CONFIG,
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {
                "mediaType": _IN_TOTO,
                "digest": layer_digest,
                "size": layer_size,
                "annotations": {"in-toto.io/predicate-type": _SPDX},
            }
        ],
    }
    digest, size = writer.put_json(manifest)
    blobs[digest] = size
    return {
        "mediaType": _OCI_MANIFEST,
        "digest": digest,
        "size": size,
        "platform": {"architecture": "unknown", "os": "unknown"},
        "annotations": {
            "vnd.docker.reference.digest": subject,
            "vnd.docker.reference.type": "attestation-manifest",
        },
    }
