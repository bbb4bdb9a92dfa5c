"""pytest fixtures for tests that need OCI image-layout stores.

Installed with ocitar and registered through the ``pytest11`` entry point, so
the fixtures are available in any test suite without a ``conftest.py`` import.
``oci_store_factory`` builds deterministic stores with :mod:`ocitar.testing`
under the test's ``tmp_path``::

    from ocitar.testing import Image, Platform

    def test_save_one_platform(oci_store_factory):
        store = oci_store_factory(
            Image(names=("app:1.0",), platforms=("linux/amd64", "linux/arm64/v8")),
        )
        app = store.image("app:1.0")
        assert store.blob_path(app.manifests["linux/arm64/v8"]).is_file()

        other = oci_store_factory(Image(names=("app:1.0",)), name="other")  # a second store
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePath

import pytest

from .testing import BuiltStore, Image, build_store

__all__ = ["oci_store_factory"]


@pytest.fixture
def oci_store_factory(tmp_path: Path) -> Callable[..., BuiltStore]:
    """Return ``factory(*images, name="store") -> BuiltStore``.

    Each call writes the given :class:`~ocitar.testing.Image` values as a new
    store at ``tmp_path / name`` (see :func:`ocitar.testing.build_store`);
    use a different ``name`` for each store of one test. Building into a
    ``name`` that is already used raises ``FileExistsError``; a ``name``
    that is absolute or contains ``..`` raises ``ValueError``.
    """

    def factory(*images: Image, name: str = "store") -> BuiltStore:
        relative = PurePath(name)
        if not name or relative.is_absolute() or ".." in relative.parts:
            raise ValueError(
                f"store name must be a relative path inside tmp_path, got {name!r}"
            )
        return build_store(tmp_path / relative, images)

    return factory
