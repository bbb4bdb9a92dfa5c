"""A load killed at any point leaves a valid store (issue 4 §5; the durability contract of
``src/engine/store.rs``).

A 200 MiB, 40-layer image is loaded in a subprocess that is killed with SIGKILL at many points: right
away, in the middle of a blob, after some blobs, with every blob staged while the test holds the store
lock (so the load waits to update the index), and at several delays after the lock is released (the
blob renames and the ``index.json`` replacement, widened by a store whose index lists 3,000 entries).
After each kill: the store opens, ``verify`` passes, ``index.json`` is the old one or the new one (never
torn) and references only complete blobs, and loading the same archive again succeeds and removes what
the killed process left (``.ocitar-ingest-*``). Each kill point records which phase it interrupted; the
phases the contract names are each hit at least once.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import ocitar
import pytest
from _guards import assert_no_panic, no_panic  # noqa: F401
from conftest import store_lock
from ocitar.testing import BuiltStore, Image, Layer, Platform, build_store

PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/s390x")
LAYERS_PER_PLATFORM = 10
LAYER_SIZE = 5 << 20  # 4 x 10 x 5 MiB = 200 MiB in 40 layers (plus manifests and configs)
INGEST = ".ocitar-ingest-"
#: The syscall number of clock_nanosleep, as /proc/<pid>/syscall shows it.
CLOCK_NANOSLEEP = {"x86_64": "230", "aarch64": "115"}.get(platform.machine(), "230")

CHILD = textwrap.dedent(
    """
    import sys, ocitar
    print("ready", flush=True)
    ocitar.load(sys.argv[1], store=sys.argv[2])
    print("done", flush=True)
    """
)


@dataclass(frozen=True)
class Big:
    store: BuiltStore
    archive: Path
    archive_zst: Path
    base: Path
    """A store holding another small image under 3,000 names: the load target, copied for each kill."""
    blobs: frozenset[str]
    """Digests of every blob of the big image."""


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Big:
    root = tmp_path_factory.mktemp("crash")
    platforms = tuple(
        Platform(p, layers=tuple(Layer(LAYER_SIZE, f"{p}-{i}", compression="none") for i in range(LAYERS_PER_PLATFORM)))
        for p in PLATFORMS
    )
    store = build_store(root / "source", [Image(names=("big:1",), platforms=platforms)])
    archive = root / "big.tar"
    ocitar.save(store.path, "big:1", output=archive)
    archive_zst = root / "big.tar.zst"
    ocitar.save(store.path, "big:1", output=archive_zst, compression="zstd")
    base = build_store(root / "base", [Image(names=tuple(f"small/n{i}:1" for i in range(3000)))]).path
    blobs = frozenset(store.images[0].blobs)
    assert sum(store.images[0].blobs.values()) > 200 << 20
    return Big(store, archive, archive_zst, base, blobs)


def staged(store: Path) -> list[Path]:
    """Files in the staging directories of ``store`` (at their blob names or numbered)."""
    out: list[Path] = []
    for d in store.iterdir():
        if d.name.startswith(INGEST) and d.is_dir():
            out += [f for f in d.rglob("*") if f.is_file()]
    return out


def leftovers(store: Path) -> list[str]:
    return sorted(n for n in os.listdir(store) if n.startswith(INGEST))


def present(store: Path, big: Big) -> set[str]:
    d = store / "blobs" / "sha256"
    return {f"sha256:{n}" for n in os.listdir(d)} & big.blobs if d.is_dir() else set()


class Loader:
    """A load of the big archive in a subprocess."""

    def __init__(self, archive: Path, store: Path) -> None:
        self.store = store
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(archive), str(store)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def kill(self) -> bool:
        """SIGKILL it; whether it was still running."""
        running = self.proc.poll() is None
        self.proc.send_signal(signal.SIGKILL)
        self.finish()
        return running

    def finish(self) -> int:
        code = self.proc.wait(timeout=60)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        assert_no_panic(self.proc.stderr.read(), "the load")
        self.proc.stderr.close()
        return code

    def sleeping(self) -> bool:
        """Whether the loading thread sleeps (``clock_nanosleep``): the store lock's retry loop."""
        with open(f"/proc/{self.proc.pid}/syscall") as f:
            return f.read().split(" ", 1)[0] == CLOCK_NANOSLEEP

    def waiting_for_the_lock(self) -> bool:
        """Poll until the load waits for the store lock (asleep on two reads 5 ms apart)."""
        return self.wait_until(lambda: self.sleeping() and (time.sleep(0.005) or self.sleeping()))

    def wait_until(self, condition: object, timeout: float = 20.0) -> bool:
        """Poll ``condition()`` as fast as possible; false when the load ended or the time ran out first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():  # type: ignore[operator]
                    return True
            except FileNotFoundError:
                pass
            if self.proc.poll() is not None:
                return False
        return False


def phase(store: Path, big: Big, index_before: bytes) -> str:
    """What the kill interrupted, from what it left."""
    index = (store / "index.json").read_bytes()
    if index != index_before:
        return "index replaced"
    if any(n.endswith("index.json.tmp") for n in leftovers(store)):
        return "index being written"
    if present(store, big):
        return "blobs named, index not replaced"
    if staged(store):
        return "staging"
    return "not started"


def check_after_kill(store: Path, big: Big, index_before: bytes, archive: Path) -> str:
    """The invariants a kill must keep, then the next load; returns the phase the kill interrupted."""
    what = phase(store, big, index_before)
    # The store opens and verifies, whatever the kill left.
    ocitar.inspect(store)
    ocitar.verify(store)
    # index.json is the old one or the new one, and names only images whose every blob is there.
    index = (store / "index.json").read_bytes()
    doc = json.loads(index)
    if index != index_before:
        names = [e.get("annotations", {}).get("io.containerd.image.name") for e in doc["manifests"]]
        assert names.count("docker.io/library/big:1") == 1
        assert present(store, big) == big.blobs
    # The next load of the same archive succeeds, and what the killed process left is gone.
    report = ocitar.load(archive, store=store)
    assert [i.digest for i in report.images] == [big.store.images[0].digest]
    assert leftovers(store) == [], f"left behind after the next load: {leftovers(store)}"
    assert present(store, big) == big.blobs
    doc = json.loads((store / "index.json").read_bytes())
    names = [e.get("annotations", {}).get("io.containerd.image.name") for e in doc["manifests"]]
    assert names.count("docker.io/library/big:1") == 1
    assert len(doc["manifests"]) == 3001
    return what


def fresh(big: Big, tmp_path: Path, n: int) -> tuple[Path, bytes]:
    store = tmp_path / f"store{n}"
    shutil.copytree(big.base, store)
    return store, (store / "index.json").read_bytes()


# --------------------------------------------------------------------------


def test_the_uninterrupted_load_is_what_the_checks_expect(big: Big, tmp_path: Path) -> None:
    store, before = fresh(big, tmp_path, 0)
    loader = Loader(big.archive, store)
    assert loader.finish() == 0
    assert phase(store, big, before) == "index replaced"
    assert leftovers(store) == []
    ocitar.verify(store)


@pytest.mark.parametrize("archive", ["plain", "zstd"])
def test_sigkill_at_many_points_leaves_a_valid_store(big: Big, tmp_path: Path, archive: str) -> None:
    src = big.archive if archive == "plain" else big.archive_zst
    hit: dict[str, list[str]] = {}
    n = 0

    def attempt(label: str, run: object) -> None:
        nonlocal n
        n += 1
        store, before = fresh(big, tmp_path, n)
        run(store)  # type: ignore[operator]
        what = check_after_kill(store, big, before, src)
        hit.setdefault(what, []).append(label)
        shutil.rmtree(store)

    # 1. Right away: the load has barely started.
    def early(store: Path) -> None:
        Loader(src, store).kill()

    # 2. In the middle of a blob: a staged file exists but is not complete yet.
    def mid_blob(store: Path) -> None:
        loader = Loader(src, store)
        loader.wait_until(lambda: any(0 < f.stat().st_size < LAYER_SIZE for f in staged(store)))
        loader.kill()

    # 3. After some blobs: a quarter, then three quarters of them are staged.
    def some_blobs(fraction: float) -> object:
        def run(store: Path) -> None:
            loader = Loader(src, store)
            loader.wait_until(lambda: len(staged(store)) >= fraction * len(big.blobs))
            loader.kill()

        return run

    # 4. Every blob staged and fsynced, the load waiting for the store lock to update the index.
    def waiting_for_the_lock(store: Path) -> None:
        with store_lock(store):
            loader = Loader(src, store)
            assert loader.waiting_for_the_lock(), "the load ended while the store was locked"
            assert len(staged(store)) >= len(big.blobs)
            assert loader.kill()

    # 5. The lock released, killed as soon as something shows: the first blob named, the temporary
    # index; or after a fixed delay.
    def after_the_lock(until: str, delay: float = 0.0) -> object:
        def run(store: Path) -> None:
            with store_lock(store):
                loader = Loader(src, store)
                loader.waiting_for_the_lock()
            if until == "named":
                loader.wait_until(lambda: bool(present(store, big)), timeout=5)
            elif until == "index":
                loader.wait_until(lambda: any(n.endswith("index.json.tmp") for n in leftovers(store)), timeout=5)
            start = time.monotonic()
            while time.monotonic() - start < delay:
                pass
            loader.kill()

        return run

    plain = archive == "plain"
    attempt("early", early)
    attempt("mid-blob", mid_blob)
    if plain:
        attempt("a quarter staged", some_blobs(0.25))
        attempt("three quarters staged", some_blobs(0.75))
    attempt("waiting for the lock", waiting_for_the_lock)
    for i in range(2):
        attempt(f"first blob named ({i})", after_the_lock("named"))
        attempt(f"temporary index written ({i})", after_the_lock("index"))
    if plain:
        for delay in (0.01, 0.05):
            attempt(f"{delay * 1000:.0f} ms after the lock", after_the_lock("", delay))
    print(hit)
    # The phases the durability contract describes were each interrupted at least once.
    assert hit.get("staging"), hit
    assert {"blobs named, index not replaced", "index being written"} & set(hit), hit


def test_a_stale_temporary_index_is_removed_by_the_next_load(big: Big, tmp_path: Path) -> None:
    """What a kill inside ``write_atomic`` leaves (a temporary index of a dead process) is cleaned up."""
    store, _ = fresh(big, tmp_path, 0)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (store / f"{INGEST}{pid}-index.json.tmp").write_bytes(b'{"manifests": [')
    (store / f"{INGEST}{pid}-0-1").mkdir()
    ocitar.verify(store)
    ocitar.load(big.store.path.parent / "big.tar", store=store)
    assert leftovers(store) == []
