"""Concurrent writers and readers of one store (issue 4 §6).

Several processes load different and identical archives into one store at once (an existing store, and a
store that does not exist yet), while others save from it and one reads ``index.json`` in a tight loop:
no entry is lost or duplicated, no reader ever sees a torn ``index.json``, no saver ever reads a partial
blob (save re-hashes every blob it copies, so one would raise), and the store verifies afterwards with
nothing left behind. The wait for the store lock is bounded: ``OCITAR_LOCK_TIMEOUT`` seconds, then a
``StoreError`` naming the store, which is left unchanged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import ocitar
import pytest
from _guards import assert_no_panic, no_panic  # noqa: F401
from _helpers import IMAGE_NAME, entries
from conftest import store_lock
from ocitar import StoreError
from ocitar.testing import BuiltStore, Image, Layer, Platform, build_store, tree_digest

BIG = 2 << 20
SHARED = Layer(BIG, "shared", compression="none")


def _layers(seed: str, n: int = 4) -> tuple[Layer, ...]:
    return (SHARED, *(Layer(BIG, f"{seed}-{i}", compression="none") for i in range(n)))


IMAGES = [
    Image(
        names=("a:1",),
        platforms=(
            Platform("linux/amd64", layers=_layers("a-amd64")),
            Platform("linux/arm64", layers=_layers("a-arm64")),
        ),
    ),
    Image(names=("b:1",), platforms=(Platform("linux/amd64", layers=_layers("b")),)),
    Image(names=("c:1", "c:latest"), platforms=(Platform("linux/amd64", layers=_layers("c")),), media_types="docker"),
    Image(names=("d:1",), platforms=(Platform("linux/s390x", layers=_layers("d")),), shape="manifest"),
]
ALL_NAMES = {"a:1", "b:1", "c:1", "c:latest", "d:1"}


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> BuiltStore:
    return build_store(tmp_path_factory.mktemp("src") / "store", IMAGES)


@pytest.fixture(scope="module")
def archives(src: BuiltStore, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("archives")
    out = {}
    for key, refs, compression in [
        ("a", ["a:1"], None),
        ("b", ["b:1"], "gzip"),
        ("c", ["c:1", "c:latest"], None),
        ("d", ["d:1"], "zstd"),
        ("bc", ["b:1", "c:1"], None),
    ]:
        path = d / f"{key}.tar"
        ocitar.save(src.path, refs, output=path, compression=compression)  # type: ignore[arg-type]
        out[key] = path
    shutil.copy(out["a"], d / "a-copy.tar")
    out["a-copy"] = d / "a-copy.tar"
    return out


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return build_store(tmp_path / "store", [Image(names=("present:1",))]).path


LOADER = textwrap.dedent(
    """
    import os, sys, time, ocitar
    archive, store, go, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    for _ in range(rounds):
        ocitar.load(archive, store=store)
    print("done", flush=True)
    """
)

SAVER = textwrap.dedent(
    """
    import json, os, sys, time, ocitar
    store, go, stop, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    saves = 0
    while not os.path.exists(stop):
        # Whatever names the store has now (it may not exist yet); each save re-hashes every blob.
        try:
            doc = json.load(open(os.path.join(store, "index.json")))
        except FileNotFoundError:
            continue
        names = sorted({e["annotations"]["io.containerd.image.name"] for e in doc["manifests"] if "annotations" in e})
        for name in names:
            ocitar.save(store, name.replace("docker.io/library/", ""), output=out)
            saves += 1
    print("saved", saves, flush=True)
    """
)

READER = textwrap.dedent(
    """
    import json, os, sys
    store, go, stop = sys.argv[1], sys.argv[2], sys.argv[3]
    print("ready", flush=True)
    reads = 0
    while not os.path.exists(stop):
        try:
            with open(os.path.join(store, "index.json"), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        doc = json.loads(data)  # a torn index.json would not parse
        assert isinstance(doc["manifests"], list)
        reads += 1
    print("read", reads, flush=True)
    """
)


class Proc:
    def __init__(self, code: str, *args: object) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.p.stdout is not None
        line = self.p.stdout.readline().strip()
        assert line == "ready", self.fail_text(line)

    def fail_text(self, first: str = "") -> str:
        self.p.wait(timeout=60)
        assert self.p.stderr is not None
        return first + self.p.stderr.read()

    def finish(self) -> str:
        out, err = self.p.communicate(timeout=120)
        assert_no_panic(err, "a concurrent process")
        assert self.p.returncode == 0, err
        return out


def check_store(store: Path, src: BuiltStore, expect: set[str]) -> None:
    """Every name once, pointing at its image; the store verifies; nothing left behind."""
    names = [e.get("annotations", {}).get(IMAGE_NAME) for e in entries(store)]
    full = {f"docker.io/library/{n}" for n in expect}
    assert sorted(n for n in names if n) == sorted(full), names
    digests = {e.get("annotations", {}).get(IMAGE_NAME): e["digest"] for e in entries(store)}
    for image in src.images:
        for n in image.names:
            if n in expect:
                assert digests[f"docker.io/library/{n}"] == image.digest
    pairs = [(e["digest"], e.get("annotations", {}).get(IMAGE_NAME)) for e in entries(store)]
    assert len(pairs) == len(set(pairs)), "an entry is listed twice"
    ocitar.verify(store)
    assert [n for n in os.listdir(store) if n.startswith(".ocitar-ingest-")] == []


@pytest.mark.parametrize("existing", [True, False], ids=["existing-store", "new-store"])
def test_concurrent_loads_and_saves_lose_nothing_and_read_nothing_partial(
    src: BuiltStore, archives: dict[str, Path], base: Path, tmp_path: Path, existing: bool
) -> None:
    store = base if existing else tmp_path / "new" / "store"
    go, stop = tmp_path / "go", tmp_path / "stop"
    loaders = [Proc(LOADER, archives[k], store, go, 3) for k in ("a", "a-copy", "b", "c", "d", "bc")]
    # Savers and the reader need the store to exist; for a new store they start saving once it does.
    savers = [Proc(SAVER, store, go, stop, tmp_path / f"out{i}.tar") for i in range(2)]
    reader = Proc(READER, store, go, stop)
    go.touch()
    for p in loaders:
        assert p.finish().strip() == "done"
    stop.touch()
    saved = [int(p.finish().split()[1]) for p in savers]
    reads = int(reader.finish().split()[1])
    assert sum(saved) > 0 and reads > 0
    print(f"saves {saved}, index reads {reads}")
    check_store(store, src, ALL_NAMES | ({"present:1"} if existing else set()))


def test_concurrent_loads_from_threads_of_one_process(src: BuiltStore, archives: dict[str, Path], base: Path) -> None:
    """The GIL is released and the lock is per open file: threads of one process exclude each other too."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(5)

    def load(key: str) -> None:
        try:
            barrier.wait()
            ocitar.load(archives[key], store=base)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=load, args=(k,)) for k in ("a", "a-copy", "b", "c", "d")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    check_store(base, src, ALL_NAMES | {"present:1"})


# --------------------------------------------------------------------------
# the lock wait
# --------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", ["0.5", "0"])
def test_a_lock_held_too_long_is_a_store_error_naming_the_store(
    archives: dict[str, Path], base: Path, monkeypatch: pytest.MonkeyPatch, timeout: str
) -> None:
    monkeypatch.setenv("OCITAR_LOCK_TIMEOUT", timeout)
    before = tree_digest(base)
    with store_lock(base):
        start = time.monotonic()
        with pytest.raises(StoreError) as info:
            ocitar.load(archives["a"], store=base)
        elapsed = time.monotonic() - start
    assert float(timeout) <= elapsed < float(timeout) + 5
    message = str(info.value)
    assert str(base) in message and "lock" in message and "OCITAR_LOCK_TIMEOUT" in message
    assert tree_digest(base) == before


def test_a_load_waits_for_the_lock_and_then_succeeds(archives: dict[str, Path], base: Path, src: BuiltStore) -> None:
    with store_lock(base):
        result: list[object] = []
        t = threading.Thread(target=lambda: result.append(ocitar.load(archives["b"], store=base)))
        start = time.monotonic()
        t.start()
        time.sleep(0.5)
        assert t.is_alive(), "the load did not wait for the lock"
    t.join(timeout=60)
    assert time.monotonic() - start >= 0.5
    assert result
    check_store(base, src, {"present:1", "b:1"})


@pytest.mark.parametrize("value", ["not-a-number", "-1", "nan", "inf"])
def test_an_unusable_lock_timeout_falls_back_to_the_default(
    archives: dict[str, Path], base: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """The default wait is generous: a lock released after 0.3 s is waited for."""
    monkeypatch.setenv("OCITAR_LOCK_TIMEOUT", value)
    with store_lock(base):
        t = threading.Thread(target=lambda: ocitar.load(archives["b"], store=base))
        t.start()
        time.sleep(0.3)
        assert t.is_alive()
    t.join(timeout=60)
    assert "docker.io/library/b:1" in {e.get("annotations", {}).get(IMAGE_NAME) for e in entries(base)}


def test_a_save_during_a_held_lock_is_not_blocked(archives: dict[str, Path], base: Path) -> None:
    """Readers do not take the lock: saving while a writer holds it works."""
    ocitar.load(archives["b"], store=base)
    with store_lock(base):
        data = ocitar.save(base, "b:1")
    assert data
