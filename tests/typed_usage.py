"""Type-checked with `mypy --strict` in CI (not a test module): the public API as a user types it."""

from __future__ import annotations

import io
from pathlib import Path

import ocitar
from ocitar.testing import Image, Layer, Platform, build_store


def release(tmp: Path) -> list[str]:
    store = build_store(tmp / "store", [Image(names=("app:1.0",), platforms=(Platform("linux/amd64", layers=(Layer(2048),)),))])
    data: bytes = ocitar.save(store.path, "app:1.0")
    report: ocitar.SaveReport = ocitar.save(store.path, ["app:1.0"], ["linux/amd64"], output=tmp / "a.tar", index="subset")
    buf = io.BytesIO()
    ocitar.save(store.path, "app:1.0", output=buf, compression="zstd", progress=lambda done, total: None)
    loaded: ocitar.LoadReport = ocitar.load(data, store=tmp / "s")
    inv: ocitar.Inventory = ocitar.inspect(tmp / "a.tar")
    listed: ocitar.Inventory = ocitar.inspect(store.path, names=["app"])
    assert listed.images[0].names == ("app:1.0",)
    checked: ocitar.Inventory = ocitar.verify(tmp / "s", progress=True)
    platforms: list[str] = [p.platform for i in inv.images for p in i.platforms if p.present]
    written: list[str] = [p.written for p in inv.image("app:1.0").platforms]
    platforms += written
    assert report.images[0].original_digest is not None and loaded.blobs_written >= 0 and checked.verified
    try:
        ocitar.load(tmp / "a.tar", platforms=["linux/arm64"], store=tmp / "s")
    except ocitar.PlatformNotFoundError as e:
        image: str = e.image
        missing: tuple[str, ...] = e.missing
        available: tuple[str, ...] = e.available
        platforms += [image, *missing, *available]
    return platforms


def caught(store: Path, tmp: Path) -> list[object]:
    """Every exception's attributes, typed as a test reads them."""
    seen: list[object] = []
    try:
        ocitar.save(store, "app:2.0", output=tmp / "b.tar")
    except ocitar.ImageNotFoundError as e:
        ref: str = e.ref
        candidates: tuple[str, ...] = e.candidates
        seen += [ref, candidates]
    try:
        ocitar.normalize_platform("linux/*")
    except ocitar.InvalidPlatformError as e:
        spec: str = e.spec
        seen.append(spec)
    try:
        ocitar.verify(store)
    except ocitar.DigestMismatchError as e:
        digest: str = e.digest
        where: str = e.path
        sizes: tuple[int | None, int | None] = (e.expected_size, e.found_size)
        found: str | None = e.found_digest
        seen += [digest, where, sizes, found]
    except ocitar.StoreError as e:
        store_path: str = e.path
        seen.append(store_path)
    except ocitar.InvalidArchiveError as e:
        entry: str = e.entry
        seen.append(entry)
    return seen


def air_gap(tmp: Path, password: str) -> tuple[int, str]:
    reg = ocitar.Registry("127.0.0.1:5000/mirror", auth=("user", password), ca_file=tmp / "ca.pem", jobs=8)
    saved: ocitar.SaveReport = ocitar.save(ocitar.Registry(), ["alpine:3.20"], ["linux/arm64"], output=tmp / "b.tar")
    loaded: ocitar.LoadReport = ocitar.load(tmp / "b.tar", store=reg, index="subset")
    inv: ocitar.Inventory = ocitar.inspect("docker://127.0.0.1:5000/mirror/library/alpine:3.20")
    ocitar.inspect(ocitar.Registry("127.0.0.1:5000", auth=ocitar.Token("t")), "mirror/library/alpine:3.20")
    try:
        ocitar.load(tmp / "b.tar", store="docker://127.0.0.1:5000/other")
    except ocitar.AuthenticationError as e:
        return e.status, e.url
    except ocitar.RegistryError as e:
        return e.status, e.code + ",".join(e.moved)
    return loaded.blobs_mounted + len(saved.images), inv.kind
