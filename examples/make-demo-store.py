#!/usr/bin/env python3
"""Write examples/demo-store/, the small multi-platform store the README starts with.

Run from anywhere: ``python3 examples/make-demo-store.py``. It deletes and
rebuilds ``examples/demo-store/`` with ``python/ocitar/testing.py``, loaded by
path so that ocitar does not need to be installed. The output is
deterministic, so rerunning it leaves the committed store unchanged.

The store holds two images:

* ``demo:1.0`` (also ``demo:latest``): linux/amd64, linux/arm64/v8 and
  linux/arm/v7, sharing an 8 KiB base layer, each with a 4 KiB layer of its
  own; amd64 and arm64 carry buildkit-style attestation manifests.
* ``tools:0.3``: linux/amd64 and linux/arm64, sharing the same base layer.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
TESTING = HERE.parent / "python" / "ocitar" / "testing.py"
OUTPUT = HERE / "demo-store"


def load_testing() -> ModuleType:
    """Load ocitar.testing from the source tree without importing ocitar."""
    spec = importlib.util.spec_from_file_location("_ocitar_demo_testing", TESTING)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {TESTING}")
    module = importlib.util.module_from_spec(spec)
    # dataclasses looks the module up in sys.modules while it is executed.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    """Rebuild the demo store and print what it holds."""
    t = load_testing()
    base = t.Layer(size=8 * 1024, seed="demo-base")

    def own(name: str, size: int = 4 * 1024) -> Any:
        return t.Layer(size=size, seed=name)

    demo = t.Image(
        names=("demo:1.0", "demo:latest"),
        platforms=(
            t.Platform(
                "linux/amd64", layers=(base, own("demo-amd64")), attestation=True
            ),
            t.Platform(
                "linux/arm64/v8", layers=(base, own("demo-arm64")), attestation=True
            ),
            t.Platform("linux/arm/v7", layers=(base, own("demo-armv7"))),
        ),
    )
    tools = t.Image(
        names=("tools:0.3",),
        shape="index",
        platforms=(
            t.Platform("linux/amd64", layers=(base, own("tools-amd64", 2048))),
            t.Platform("linux/arm64", layers=(base, own("tools-arm64", 2048))),
        ),
    )

    if OUTPUT.exists():
        shutil.rmtree(OUTPUT)
    store = t.build_store(OUTPUT, [demo, tools])

    blobs = sorted((store.path / "blobs" / "sha256").iterdir())
    total = sum(path.stat().st_size for path in blobs)
    print(f"wrote {store.path}: {len(blobs)} blobs, {total} bytes")
    for image in store.images:
        print(f"  {', '.join(image.names)}  {image.digest}")
        for platform, digest in image.manifests.items():
            note = "  (+ attestation)" if platform in image.attestations else ""
            print(f"    {platform:<16} {digest}{note}")


if __name__ == "__main__":
    main()
