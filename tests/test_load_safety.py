"""ocitar.load is all or nothing: every failing load (bad platforms, corrupt, truncated, dangling and hostile
archives; from a path, bytes or a stream) leaves the store byte-identical, a store that did not exist
absent, and no file anywhere else. Several processes loading into one store at once lose no entry."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import ocitar
import pytest
from _helpers import IMAGE_NAME, blobs, entries
from ocitar import (
    DigestMismatchError,
    InvalidArchiveError,
    InvalidPlatformError,
    OcitarError,
    PlatformNotFoundError,
    StoreError,
)
from ocitar.testing import BuiltStore, Image, Layer, Platform, build_store, tree_digest

# --------------------------------------------------------------------------
# a valid archive, and ways to break it
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> BuiltStore:
    return build_store(
        tmp_path_factory.mktemp("src") / "store",
        [
            Image(
                names=("app:1.0",),
                platforms=(
                    Platform("linux/amd64", layers=(Layer(size=50_000, seed="amd64"),), attestation=True),
                    Platform("linux/arm64/v8", layers=(Layer(size=40_000, seed="arm64"),)),
                ),
            ),
            Image(names=("tools:0.3",), platforms=("linux/amd64",), media_types="docker"),
        ],
    )


@pytest.fixture(scope="module")
def good(src: BuiltStore) -> bytes:
    return ocitar.save(src.path, ["app:1.0", "tools:0.3"])


def members(data: bytes) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [(m, tf.extractfile(m).read() if m.isfile() else None) for m in tf.getmembers()]  # type: ignore[union-attr]


def build(items: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for m, content in items:
            if content is not None:
                m.size = len(content)
                tf.addfile(m, io.BytesIO(content))
            else:
                tf.addfile(m)
    return out.getvalue()


def file_info(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    return ti, data


def link_info(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = target
    return ti, None


def edit_json(data: bytes, name: str, change: Callable[[object], object]) -> bytes:
    items = []
    for m, content in members(data):
        if m.name == name:
            assert content is not None
            content = json.dumps(change(json.loads(content))).encode()
        items.append((m, content))
    return build(items)


def with_extra(data: bytes, *extra: tuple[tarfile.TarInfo, bytes | None], first: bool = True) -> bytes:
    items = members(data)
    return build([*extra, *items] if first else [*items, *extra])


def without(data: bytes, name: str) -> bytes:
    return build([(m, c) for m, c in members(data) if m.name != name])


def flip_byte_in(data: bytes, name: str) -> bytes:
    """Flip the last byte of member `name` in place (same size, wrong digest)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        m = tf.getmember(name)
        off = m.offset_data + m.size - 1
    out = bytearray(data)
    out[off] ^= 0xFF
    return bytes(out)


def _blob(d: str) -> str:
    return "blobs/sha256/" + d.split(":", 1)[1]


def _deep(n: int) -> object:
    v: object = 1
    for _ in range(n):
        v = [v]
    return v


def _device() -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo("blobs/sha256/dev")
    ti.type = tarfile.CHRTYPE
    ti.devmajor, ti.devminor = 1, 3
    return ti, None


# name -> (make(good, src) -> (archive bytes, platforms), exception, words in the message)
FAILURES: dict[str, tuple[Callable[[bytes, BuiltStore], tuple[bytes, list[str] | None]], type, list[str]]] = {
    "platform-missing": (lambda g, s: (g, ["linux/arm64"]), PlatformNotFoundError, ["tools:0.3", "linux/arm64"]),
    "platform-invalid": (lambda g, s: (g, ["linux/amd64/v1/x"]), InvalidPlatformError, ["linux/amd64/v1/x"]),
    "corrupt-layer": (
        lambda g, s: (flip_byte_in(g, _blob(s.image("app:1.0").layers["linux/arm64/v8"][0])), None),
        DigestMismatchError,
        ["<layer-arm64>"],
    ),
    "corrupt-config": (
        lambda g, s: (flip_byte_in(g, _blob(s.image("tools:0.3").configs["linux/amd64"])), None),
        DigestMismatchError,
        ["<config-tools>"],
    ),
    "size-mismatch": (
        lambda g, s: (
            edit_json(
                g,
                "index.json",
                lambda j: {**j, "manifests": [{**m, "size": m["size"] + 1} for m in j["manifests"]]},  # type: ignore[dict-item]
            ),
            None,
        ),
        DigestMismatchError,
        ["<app>"],
    ),
    "dangling-top": (lambda g, s: (without(g, _blob(s.image("app:1.0").digest)), None), InvalidArchiveError, ["<app>"]),
    "truncated": (lambda g, s: (g[: len(g) * 2 // 3], None), InvalidArchiveError, ["truncated"]),
    "truncated-gzip": (lambda g, s: (gzip.compress(g, mtime=0)[:-2000], None), InvalidArchiveError, []),
    "garbage": (lambda g, s: (bytes(range(256)) * 64, None), InvalidArchiveError, []),
    "empty": (lambda g, s: (b"", None), InvalidArchiveError, []),
    "dotdot-entry": (
        lambda g, s: (with_extra(g, file_info("../evil", b"x")), None),
        InvalidArchiveError,
        ["..", "evil"],
    ),
    "dotdot-late": (
        lambda g, s: (with_extra(g, file_info("blobs/../../evil", b"x"), first=False), None),
        InvalidArchiveError,
        [".."],
    ),
    "absolute-entry": (
        lambda g, s: (with_extra(g, file_info("/tmp/ocitar-evil", b"x")), None),
        InvalidArchiveError,
        ["absolute"],
    ),
    "symlink-blob": (
        lambda g, s: (
            with_extra(
                without(g, _blob(s.image("app:1.0").configs["linux/amd64"])),
                link_info(_blob(s.image("app:1.0").configs["linux/amd64"]), "../../index.json"),
                first=False,
            ),
            None,
        ),
        InvalidArchiveError,
        ["regular file"],
    ),
    "symlink-outside": (
        lambda g, s: (with_extra(g, link_info("x/y", "../../etc/passwd")), None),
        InvalidArchiveError,
        ["leaves"],
    ),
    "hardlink-outside": (
        lambda g, s: (with_extra(g, link_info("x", "../etc/passwd", tarfile.LNKTYPE)), None),
        InvalidArchiveError,
        [".."],
    ),
    "device": (lambda g, s: (with_extra(g, _device()), None), InvalidArchiveError, ["device"]),
    "symlink-index": (
        lambda g, s: (
            with_extra(
                without(g, "index.json"), link_info("index.json", _blob(s.image("app:1.0").digest)), first=False
            ),
            None,
        ),
        InvalidArchiveError,
        ["index.json", "regular file"],
    ),
    "unknown-algorithm": (
        lambda g, s: (with_extra(g, file_info("blobs/md5/0123456789abcdef0123456789abcdef", b"x")), None),
        InvalidArchiveError,
        ["md5"],
    ),
    "bad-blob-name": (
        lambda g, s: (with_extra(g, file_info("blobs/sha256/NOTHEX", b"x")), None),
        InvalidArchiveError,
        ["NOTHEX"],
    ),
    "duplicate-entry": (
        lambda g, s: (with_extra(g, file_info("index.json", b"{}"), first=False), None),
        InvalidArchiveError,
        ["index.json"],
    ),
    "deep-json": (
        lambda g, s: (edit_json(g, "index.json", lambda j: {**j, "x": _deep(40)}), None),  # type: ignore[dict-item]
        InvalidArchiveError,
        ["16"],
    ),
    "huge-json": (
        lambda g, s: (edit_json(g, "index.json", lambda j: {**j, "pad": "x" * (21 << 20)}), None),  # type: ignore[dict-item]
        InvalidArchiveError,
        ["index.json"],
    ),
    "bad-digest-string": (
        lambda g, s: (
            edit_json(
                g,
                "index.json",
                lambda j: {**j, "manifests": [{**m, "digest": "sha256:not-a-digest"} for m in j["manifests"]]},  # type: ignore[dict-item]
            ),
            None,
        ),
        InvalidArchiveError,
        ["sha256:not-a-digest"],
    ),
    "manifest-json-outside": (
        lambda g, s: (
            with_extra(
                without(without(g, "index.json"), "manifest.json"),
                file_info(
                    "manifest.json",
                    json.dumps([{"Config": "../../etc/passwd", "RepoTags": ["x:1"], "Layers": []}]).encode(),
                ),
            ),
            None,
        ),
        InvalidArchiveError,
        ["../../etc/passwd"],
    ),
    "manifest-json-missing-layer": (
        lambda g, s: (
            with_extra(
                without(without(g, "index.json"), "manifest.json"),
                file_info(
                    "manifest.json",
                    json.dumps(
                        [
                            {
                                "Config": _blob(s.image("app:1.0").configs["linux/amd64"]),
                                "RepoTags": ["x:1"],
                                "Layers": ["nope/layer.tar"],
                            }
                        ]
                    ).encode(),
                ),
            ),
            None,
        ),
        InvalidArchiveError,
        ["nope/layer.tar"],
    ),
}


def _words(words: list[str], src: BuiltStore) -> list[str]:
    subst = {
        "<layer-arm64>": src.image("app:1.0").layers["linux/arm64/v8"][0],
        "<config-tools>": src.image("tools:0.3").configs["linux/amd64"],
        "<app>": src.image("app:1.0").digest,
    }
    return [subst.get(w, w) for w in words]


def _inputs(data: bytes, path: Path) -> dict[str, Callable[[], object]]:
    return {
        "path": lambda: path,
        "bytes": lambda: data,
        "stream": lambda: io.BytesIO(data),
        "gzip-stream": lambda: io.BytesIO(gzip.compress(data, mtime=0)),
    }


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_failing_loads_leave_everything_unchanged(
    kind: str, src: BuiltStore, good: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make, exc, words = FAILURES[kind]
    data, platforms = make(good, src)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    archives = tmp_path / "archives"
    archives.mkdir()
    path = archives / "bad.tar"
    path.write_bytes(data)

    # A store with content, including part of what the archive holds.
    store = tmp_path / "store"
    ocitar.load(ocitar.save(src.path, "app:1.0", ["linux/amd64"]), store=store)
    empty = tmp_path / "empty"
    empty.mkdir()
    listing = sorted(os.listdir(tmp_path))
    for how, obj in _inputs(data, path).items():
        if kind == "truncated-gzip" and how == "gzip-stream":
            continue
        for target in (store, empty, tmp_path / "new" / "store"):
            before = tree_digest(target) if target.exists() else None
            with pytest.raises(exc) as e:
                ocitar.load(obj(), platforms, store=target)
            assert isinstance(e.value, OcitarError)
            for w in _words(words, src):
                assert w in str(e.value), f"{kind}/{how}: {w!r} not in {str(e.value)!r}"
            after = tree_digest(target) if target.exists() else None
            assert after == before, f"{kind}/{how}: {target} changed"
        assert not (tmp_path / "new").exists(), f"{kind}/{how}: a store was created"
        assert os.listdir(empty) == []
        assert sorted(os.listdir(tmp_path)) == listing, f"{kind}/{how}: files appeared beside the store"
        assert os.listdir(work) == [], f"{kind}/{how}: files appeared in the working directory"
        assert os.listdir(tmpdir) == [], f"{kind}/{how}: files appeared in TMPDIR"
        assert os.listdir(archives) == ["bad.tar"], f"{kind}/{how}: files appeared beside the archive"
    # And the store still works: the good archive loads into it.
    report = ocitar.load(good, store=store)
    assert {i.names for i in report.images} == {("app:1.0",), ("tools:0.3",)}


def test_corrupt_blob_message_names_digest_and_what_it_hashes_to(src: BuiltStore, good: bytes, tmp_path: Path) -> None:
    layer = src.image("app:1.0").layers["linux/arm64/v8"][0]
    bad = flip_byte_in(good, _blob(layer))
    for obj in (bad, io.BytesIO(bad)):
        with pytest.raises(DigestMismatchError) as e:
            ocitar.load(obj, store=tmp_path / "store")
        msg = str(e.value)
        assert layer in msg
        assert msg.count("sha256:") >= 2  # the expected digest and what the content hashes to
    assert not (tmp_path / "store").exists()


# --------------------------------------------------------------------------
# crashes and stale staging directories
# --------------------------------------------------------------------------


def test_stale_staging_directory_of_a_dead_process_is_ignored_and_removed(good: bytes, tmp_path: Path) -> None:
    store = tmp_path / "store"
    ocitar.load(good, store=store)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = store / f".ocitar-ingest-{pid}-0-0"
    stale.mkdir()
    (stale / "tmp-1").write_bytes(b"half a blob")
    # Readers ignore it…
    assert ocitar.save(store, ["app:1.0", "tools:0.3"]) == good
    # …and the next load removes it.
    ocitar.load(good, store=store)
    assert not stale.exists()


# --------------------------------------------------------------------------
# concurrency
# --------------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import os, sys, time
    import ocitar
    go, archive, store = sys.argv[1:4]
    while not os.path.exists(go):
        time.sleep(0.002)
    r = ocitar.load(archive, store=store)
    print(r.images[0].digest)
    """
)


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> tuple[BuiltStore, list[Path]]:
    root = tmp_path_factory.mktemp("many")
    shared = Layer(size=300_000, seed="shared")
    images = [
        Image(
            names=(f"img{i}:1",),
            platforms=(
                Platform("linux/amd64", layers=(shared, Layer(size=200_000, seed=f"img{i}"))),
                Platform("linux/arm64", layers=(shared, Layer(size=1000, seed=f"img{i}-arm64"))),
            ),
        )
        for i in range(6)
    ]
    s = build_store(root / "src", images)
    archives = []
    for i in range(6):
        p = root / f"img{i}.tar"
        ocitar.save(s.path, f"img{i}:1", output=p, compression="gzip" if i % 2 else None)
        archives.append(p)
    return s, archives


@pytest.mark.parametrize("existing", [False, True], ids=["new-store", "existing-store"])
def test_concurrent_loads_lose_no_entry(many, tmp_path: Path, existing: bool) -> None:
    s, archives = many
    store = tmp_path / "store"
    if existing:
        build_store(store, [Image(names=("base:1",))])
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(go), str(a), str(store)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for a in archives
    ]
    time.sleep(0.3)
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    index = json.loads((store / "index.json").read_bytes())  # valid JSON
    names = [e.get("annotations", {}).get(IMAGE_NAME) for e in index["manifests"]]
    assert len(names) == len(set(names)), f"duplicate entries: {names}"
    want = {f"docker.io/library/img{i}:1": s.image(f"img{i}:1").digest for i in range(6)}
    if existing:
        want["docker.io/library/base:1"] = next(e["digest"] for e in index["manifests"] if "base" in str(e))
    assert {e["annotations"][IMAGE_NAME]: e["digest"] for e in index["manifests"]} == want
    assert len(index["manifests"]) == len(want)
    for i in range(6):
        assert set(s.image(f"img{i}:1").blobs) <= blobs(store)
    assert [n for n in os.listdir(store) if n.startswith(".ocitar-ingest-")] == []
    assert sorted(n for n in os.listdir(store) if not n.startswith(".")) == ["blobs", "index.json", "oci-layout"]
    # The store reads back: every image saves.
    assert ocitar.save(store, [f"img{i}:1" for i in range(6)])


def test_concurrent_loads_of_the_same_archive_add_one_entry(many, tmp_path: Path) -> None:
    s, archives = many
    store = tmp_path / "store"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(go), str(archives[i % 2]), str(store)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    time.sleep(0.3)
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    want = {f"docker.io/library/img{i}:1": s.image(f"img{i}:1").digest for i in range(2)}
    got = [(e["annotations"][IMAGE_NAME], e["digest"]) for e in entries(store)]
    assert sorted(got) == sorted(want.items()), got
    assert set(s.image("img0:1").blobs) | set(s.image("img1:1").blobs) == blobs(store)
    assert [n for n in os.listdir(store) if n.startswith(".ocitar-ingest-")] == []


def test_a_failing_load_does_not_remove_a_store_another_load_filled(
    good: bytes, src: BuiltStore, tmp_path: Path
) -> None:
    """Process A starts loading a stream into a store that does not exist yet (so A creates it); while A
    waits for input, this process loads an image into the same store; then A's input turns out truncated.
    A's failure must not take the other load's image with it."""
    store = tmp_path / "store"
    a = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, ocitar\n"
            "try:\n"
            "    ocitar.load(sys.stdin.buffer, store=sys.argv[1])\n"
            "except ocitar.InvalidArchiveError as e:\n"
            "    print('failed:', e); sys.exit(3)\n",
            str(store),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert a.stdin is not None
    a.stdin.write(good[:20_000])
    a.stdin.flush()
    deadline = time.monotonic() + 30
    while not store.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.exists(), "the first load never created its store"
    report = ocitar.load(ocitar.save(src.path, "tools:0.3"), store=store)
    out, err = a.communicate(timeout=60)  # closes its stdin: the archive is truncated
    assert a.returncode == 3, (out, err)
    assert store.is_dir(), "a failed load removed a store another load had written to"
    assert {e["digest"] for e in entries(store)} == {report.images[0].digest}
    assert set(src.image("tools:0.3").blobs) <= blobs(store)
    assert [n for n in os.listdir(store) if n.startswith(".ocitar-ingest-")] == []


# --------------------------------------------------------------------------
# the store lock, malformed stores, crashes
# --------------------------------------------------------------------------


def _hold_lock(store: Path) -> int:
    import fcntl

    fd = os.open(store, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_lock_timeout_is_a_store_error_and_changes_nothing(
    good: bytes, src: BuiltStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    ocitar.load(ocitar.save(src.path, "tools:0.3"), store=store)
    monkeypatch.setenv("OCITAR_LOCK_TIMEOUT", "0.3")
    fd = _hold_lock(store)
    try:
        before = tree_digest(store)
        with pytest.raises(StoreError) as e:
            ocitar.load(good, store=store)
        assert str(store) in str(e.value) and "lock" in str(e.value)
        assert tree_digest(store) == before
    finally:
        os.close(fd)
    assert len(ocitar.load(good, store=store).images) == 2


def test_load_waits_for_the_lock(good: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    build_store(store, [Image(names=("base:1",))])
    monkeypatch.setenv("OCITAR_LOCK_TIMEOUT", "30")
    fd = _hold_lock(store)
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(ocitar.load(good, store=store)))
    t.start()
    time.sleep(1.0)
    assert t.is_alive(), "load did not wait for the store lock"
    assert len(entries(store)) == 1
    os.close(fd)
    t.join(30)
    assert result and len(entries(store)) == 3


@pytest.mark.parametrize("kind", ["file", "not-a-layout", "bad-index-json"])
def test_malformed_store_is_a_store_error(good: bytes, tmp_path: Path, kind: str) -> None:
    store = tmp_path / "store"
    if kind == "file":
        store.write_bytes(b"not a directory")
    elif kind == "not-a-layout":
        store.mkdir()
        (store / "notes.txt").write_text("my files")
    else:
        build_store(store, [Image(names=("base:1",))])
        (store / "index.json").write_text('{"manifests": 5}')
    before = tree_digest(tmp_path)
    with pytest.raises(StoreError) as e:
        ocitar.load(good, store=store)
    assert str(store) in str(e.value)
    assert tree_digest(tmp_path) == before


def test_a_killed_load_leaves_a_valid_store(good: bytes, src: BuiltStore, tmp_path: Path) -> None:
    store = tmp_path / "store"
    ocitar.load(ocitar.save(src.path, "tools:0.3"), store=store)
    index_before = (store / "index.json").read_bytes()
    p = subprocess.Popen(
        [sys.executable, "-c", "import sys, ocitar; ocitar.load(sys.stdin.buffer, store=sys.argv[1])", str(store)],
        stdin=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert p.stdin is not None
    p.stdin.write(good[: len(good) // 2])
    p.stdin.flush()
    deadline = time.monotonic() + 30
    while not any(n.startswith(".ocitar-ingest-") for n in os.listdir(store)) and time.monotonic() < deadline:
        time.sleep(0.01)
    p.kill()
    p.wait()
    p.stdin.close()
    assert (store / "index.json").read_bytes() == index_before
    assert ocitar.save(store, "tools:0.3") == ocitar.save(src.path, "tools:0.3")
    ocitar.load(good, store=store)
    assert [n for n in os.listdir(store) if n.startswith(".ocitar-ingest-")] == []
    assert ocitar.save(store, ["app:1.0", "tools:0.3"]) == good
