"""The store's surroundings: what is at a blob path, symbolic links among the store's files, a full disk
while ``index.json`` is written, and staging directories of loads in other PID namespaces."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import ocitar
import pytest
from _archives import IMAGE_NAME, OCI_INDEX, REF_NAME, Oci, blob_name
from conftest import store_lock
from ocitar import StoreError

INGEST = ".ocitar-ingest-"


def loaded_store(path: Path) -> Path:
    ocitar.load(Oci(name="docker.io/library/base:1", platforms=("linux/amd64",)).tar(), store=path)
    return path


def new_image(name: str = "docker.io/library/new:1") -> Oci:
    """An image sharing no blob with the store's."""
    return Oci(name=name, platforms=("linux/arm64", "linux/s390x"))


# --------------------------------------------------------------------------
# what is at a blob path
# --------------------------------------------------------------------------


def _make_dir(p: Path, _: Path) -> None:
    p.mkdir()


def _make_fifo(p: Path, _: Path) -> None:
    os.mkfifo(p)


def _make_link(p: Path, target: Path) -> None:
    p.symlink_to(target)


def _make_dangling(p: Path, _: Path) -> None:
    p.symlink_to(p.parent / "nowhere")


@pytest.mark.parametrize(
    "make", [_make_dir, _make_fifo, _make_link, _make_dangling], ids=["dir", "fifo", "symlink", "dangling"]
)
@pytest.mark.parametrize("what", ["layer", "manifest"])
def test_a_blob_path_that_is_no_regular_file_is_refused(tmp_path: Path, unchanged: Any, make: Any, what: str) -> None:
    store = loaded_store(tmp_path / "store")
    img = new_image()
    digest = img.layers["linux/arm64"] if what == "layer" else img.manifests["linux/arm64"]
    # A symbolic link to a file holding the right bytes is refused too: it is not the store's own file.
    target = tmp_path / "elsewhere"
    target.write_bytes(img.blobs[digest])
    make(store / blob_name(digest), target)
    with unchanged(store), pytest.raises(StoreError) as e:
        ocitar.load(img.tar(), store=store)
    assert str(store / blob_name(digest)) in str(e.value) and "not a regular file" in str(e.value)
    # The store as it is: verify says what is wrong, and removing it lets the load through.
    with pytest.raises(StoreError):
        ocitar.verify(store)
    p = store / blob_name(digest)
    p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
    ocitar.load(img.tar(), store=store)
    assert ocitar.verify(store).verified


@pytest.mark.parametrize("inner", ["blobs", "blobs/sha256", "index.json", "oci-layout"])
def test_symlinked_store_internals_are_refused(tmp_path: Path, unchanged: Any, inner: str) -> None:
    store = loaded_store(tmp_path / "store")
    # The same content elsewhere, linked in: following it would read and write outside the store.
    outside = tmp_path / "outside"
    outside.mkdir()
    (store / inner).rename(outside / "moved")
    (store / inner).symlink_to(outside / "moved")
    img = new_image()
    for op in (
        lambda: ocitar.load(img.tar(), store=store),
        lambda: ocitar.save(store, "base:1"),
        lambda: ocitar.inspect(store),
        lambda: ocitar.verify(store),
    ):
        with unchanged(store), unchanged(outside), pytest.raises(StoreError) as e:
            op()
        assert str(store / inner) in str(e.value) and "symbolic link" in str(e.value)


def test_a_store_file_that_cannot_be_read_is_an_error_naming_it_not_absent(tmp_path: Path, unchanged: Any) -> None:
    # A store being created may hold an oci-layout and nothing else; a directory where that file should be
    # cannot be read (as a permission error could not), which is not the same as "absent": the load used to
    # go through and leave a store without an oci-layout file.
    store = tmp_path / "store"
    (store / "oci-layout").mkdir(parents=True)
    with unchanged(store), pytest.raises(IsADirectoryError) as e:
        ocitar.load(new_image().tar(), store=store)
    assert str(store / "oci-layout") in str(e.value)


def test_the_store_directory_itself_may_be_a_link(tmp_path: Path) -> None:
    store = loaded_store(tmp_path / "store")
    link = tmp_path / "link"
    link.symlink_to(store)
    ocitar.load(new_image().tar(), store=link)
    assert ocitar.verify(link).verified and len(ocitar.inspect(store).images) == 2


# --------------------------------------------------------------------------
# a full disk while index.json is written
# --------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"mounting a tmpfs is refused here: {p.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def many_names(img: Oci, n: int) -> bytes:
    """``img``'s archive with ``n`` names for it, so that its ``index.json`` entries take ``n`` × ~300 bytes."""
    (entry,) = img.index_json_doc["manifests"]
    entries = [
        {**entry, "annotations": {IMAGE_NAME: f"docker.io/library/many-{'x' * 200}:{i}", REF_NAME: str(i)}}
        for i in range(n)
    ]
    img.index_json_doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    return img.tar()


def test_enospc_writing_index_json_leaves_the_store_as_it_was(small_tmpfs: Path, tmp_path: Path, unchanged: Any) -> None:
    store = loaded_store(small_tmpfs / "store")
    img = new_image()
    archive = tmp_path / "many.tar"
    archive.write_bytes(many_names(img, 400))  # an index.json of ~120 KiB
    new_blobs = [d for d in img.blobs if not (store / blob_name(d)).exists()]
    # Leave room for the new blobs (one page each, all under 4 KiB) and a little, not for the index.
    page = os.statvfs(small_tmpfs).f_frsize
    assert all(len(img.blobs[d]) <= page for d in new_blobs)
    free = os.statvfs(small_tmpfs).f_bavail * page
    filler = small_tmpfs / "filler"
    filler.write_bytes(bytes(free - (len(new_blobs) + 4) * page))
    with unchanged(store), pytest.raises(OSError) as e:
        ocitar.load(archive, store=store)
    assert e.value.errno == errno.ENOSPC and "index.json" in str(e.value)
    assert not any(n.startswith(INGEST) for n in os.listdir(store))
    filler.unlink()
    ocitar.load(archive, store=store)
    assert ocitar.verify(store).verified


def test_enospc_writing_index_json_of_a_new_store_leaves_no_store(small_tmpfs: Path, tmp_path: Path) -> None:
    # A new store gets its blob directory by one rename of the staging directory's: a failure after it
    # takes the whole directory back, and the store directory the load made.
    store = small_tmpfs / "store"
    img = new_image()
    archive = tmp_path / "many.tar"
    archive.write_bytes(many_names(img, 400))  # an index.json of ~120 KiB
    page = os.statvfs(small_tmpfs).f_frsize
    assert all(len(b) <= page for b in img.blobs.values())
    free = os.statvfs(small_tmpfs).f_bavail * page
    filler = small_tmpfs / "filler"
    filler.write_bytes(bytes(free - (len(img.blobs) + 4) * page))
    with pytest.raises(OSError) as e:
        ocitar.load(archive, store=store)
    assert e.value.errno == errno.ENOSPC and "index.json" in str(e.value)
    assert sorted(os.listdir(small_tmpfs)) == ["filler"]
    filler.unlink()
    ocitar.load(archive, store=store)
    assert ocitar.verify(store).verified
    assert sorted(os.listdir(store / "blobs" / "sha256")) == sorted(d.split(":")[1] for d in img.blobs)


# --------------------------------------------------------------------------
# staging directories of live loads, whatever their PID namespace
# --------------------------------------------------------------------------


def dead_pid() -> int:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(p.stdout)


def test_a_live_staging_directory_of_another_pid_namespace_is_kept(tmp_path: Path) -> None:
    # A load in a container sharing the store: its pid means nothing here (here it names no process), but
    # its lock on the staging directory says it is alive.
    store = loaded_store(tmp_path / "store")
    live = store / f"{INGEST}{dead_pid()}-0-1"
    live.mkdir()
    (live / "tmp-1").write_bytes(b"half a blob")
    with store_lock(live):  # as a live load holds its staging directory's lock
        ocitar.load(new_image().tar(), store=store)
        assert (live / "tmp-1").read_bytes() == b"half a blob"
    # Its owner gone (the lock can be taken), the next load removes it.
    ocitar.load(new_image("docker.io/library/new:2").tar(), store=store)
    assert not live.exists()


UNSHARED_LOAD = """
import os, sys
pid = int(sys.argv[1])
with open("/proc/sys/kernel/ns_last_pid", "w") as f:
    f.write(str(pid - 1))
child = os.fork()
if child == 0:
    import ocitar
    assert os.getpid() == pid, os.getpid()
    with open(sys.argv[2], "rb") as fifo:
        ocitar.load(fifo, store=sys.argv[3])
    os._exit(0)
_, status = os.waitpid(child, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_load_in_another_pid_namespace_survives_a_host_load(tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("no unshare command")
    store = loaded_store(tmp_path / "store")
    # A pid that no host process has: the namespaced load runs under it.
    pid = next(p for p in range(300, 30000) if not Path(f"/proc/{p}").exists())
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # Layers of 1 MiB: the inner load is spooling one when the host load runs, and writes more after.
    img = Oci(
        name="docker.io/library/inner:1",
        platforms=("linux/arm64", "linux/s390x"),
        layer=lambda p, _: bytes(range(256)) * 4096 + p.encode(),
    )
    cmd = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", UNSHARED_LOAD, str(pid)]
    proc = subprocess.Popen([*cmd, str(fifo), str(store)], stderr=subprocess.PIPE, text=True)
    try:
        with open(fifo, "wb") as w:
            data = img.tar()
            w.write(data[: len(data) // 2])
            w.flush()
            # The inner load is reading: its staging directory exists, named with its pid.
            staging = store / f"{INGEST}{pid}-"
            for _ in range(600):
                live = [store / n for n in os.listdir(store) if n.startswith(staging.name)]
                if any(os.listdir(p) for p in live) or proc.poll() is not None:
                    break
                subprocess.run(["sleep", "0.05"], check=True)
            if proc.poll() is not None:
                pytest.skip("a PID namespace (unshare --pid --fork --mount-proc) is refused here")
            assert any(n.startswith(staging.name) for n in os.listdir(store))
            ocitar.load(new_image("docker.io/library/host:1").tar(), store=store)
            # (a broken pipe means the inner load failed: its exit code says why)
            with suppress(BrokenPipeError):
                w.write(data[len(data) // 2 :])
    finally:
        rc = proc.wait(timeout=120)
        err = proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    assert rc == 0, err
    names = {n for i in ocitar.inspect(store).images for n in i.names}
    assert {"inner:1", "host:1", "base:1"} <= names
    assert ocitar.verify(store).verified
