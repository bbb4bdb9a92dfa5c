"""Shared fixtures: where the shared fixtures live, peer tools, and store snapshots.

Stores are built with :mod:`ocitar.testing` (the ``oci_store_factory`` fixture comes from the installed
``ocitar.pytest_plugin``)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from ocitar.testing import BuiltStore, tree_digest
from test_save_helpers import standard_store

REPO = Path(__file__).resolve().parent.parent
REQUIRE_TOOLS = os.environ.get("OCITAR_REQUIRE_TOOLS") == "1"


def _fixtures_dir() -> Path:
    return Path(os.environ.get("OCITAR_FIXTURES", REPO.parent / "shared" / "fixtures")).resolve()


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The shared, read-only test data (``OCITAR_FIXTURES``, default ``../shared/fixtures``)."""
    d = _fixtures_dir()
    if not (d / "SOURCES.md").is_file():
        if REQUIRE_TOOLS:
            pytest.fail(f"shared fixtures not found at {d}")
        pytest.skip(f"shared fixtures not found at {d} (set OCITAR_FIXTURES)")
    return d


def _tool(name: str) -> str:
    """The path of a peer tool; skips when it is absent, or fails under CI (``OCITAR_REQUIRE_TOOLS=1``)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it with apt-get)"
        if REQUIRE_TOOLS:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def skopeo() -> str:
    """Path of skopeo; skips when it is not installed."""
    return _tool("skopeo")


@pytest.fixture(scope="session")
def umoci() -> str:
    """Path of umoci; skips when it is not installed."""
    return _tool("umoci")


@pytest.fixture(scope="session")
def oci_image_tool() -> str:
    """Path of oci-image-tool; skips when it is not installed."""
    return _tool("oci-image-tool")


@contextmanager
def store_lock(path: Path) -> Iterator[None]:
    """Hold a store's lock (``flock`` on its directory) as another ocitar process would."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def run(
    *args: str | os.PathLike[str], check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output (``env``: variables added to this process's environment); on
    failure the assertion shows stdout and stderr."""
    full_env = {**os.environ, **env} if env else None
    p = subprocess.run([os.fspath(a) for a in args], capture_output=True, text=True, timeout=300, env=full_env)
    if check:
        assert p.returncode == 0, f"{args} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


class Unchanged:
    """Asserts that a directory tree is byte-identical after a block, and that ``outside`` gained no file."""

    def __init__(self, path: Path, outside: Path | None = None) -> None:
        self.path = path
        self.outside = outside

    def __enter__(self) -> Unchanged:
        self.before = tree_digest(self.path) if self.path.exists() else None
        self.outside_before = sorted(os.listdir(self.outside)) if self.outside else None
        return self

    def __exit__(self, *exc: object) -> None:
        after = tree_digest(self.path) if self.path.exists() else None
        assert after == self.before, f"{self.path} changed"
        if self.outside is not None:
            assert sorted(os.listdir(self.outside)) == self.outside_before, f"files appeared in {self.outside}"


@pytest.fixture
def unchanged() -> Iterator[type[Unchanged]]:
    """``with unchanged(store): ...`` asserts the store tree is identical afterwards."""
    yield Unchanged


@pytest.fixture
def store(oci_store_factory: Any) -> BuiltStore:
    """The save suites' standard store (``test_save_helpers.standard_store``: APP, TOOLS, WIN and SOLO). A suite
    that needs another store defines its own ``store`` fixture, which overrides this one."""
    return standard_store(oci_store_factory)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An empty directory for a test's outputs."""
    d = tmp_path / "out"
    d.mkdir()
    return d
