"""Hostile and unusual surroundings (issue 11, rules 1, 2 and 13): temporary directories nobody else can
plant or predict, outputs that are devices, FIFOs or descriptors (written into, never replaced), an output
inside the store being read (refused), and inputs that cannot seek (read as streams)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import ocitar
import pytest
from _guards import no_panic  # noqa: F401
from ocitar.testing import BuiltStore, build_store, tree_digest
from test_save_helpers import listing, standard_store

#: Old spool names probed per test: inspect and verify each used one per call, counting from 0.
PLANTED = 16


@pytest.fixture
def store(oci_store_factory: Callable[..., BuiltStore]) -> BuiltStore:
    return standard_store(oci_store_factory)


@pytest.fixture
def gz_archive(store: BuiltStore, tmp_path: Path) -> Path:
    """A gzip archive: inspect and verify spool its documents into a temporary directory."""
    p = tmp_path / "app.tar.gz"
    ocitar.save(store.path, ["app:1.0"], output=p, compression="gzip")
    return p


# rule 1: temporary directories -----------------------------------------------------------------------


def plant(tmp: Path, victims: Path, pid: int) -> None:
    """Symlinks and directories at every name the old spool scheme (``ocitar-inspect-<pid>-<n>``) used:
    even ``n`` a link to the directory ``victims/dir``, odd ``n`` a directory whose would-be spool files
    are links to ``victims/file``."""
    tmp.mkdir(exist_ok=True)
    for n in range(PLANTED):
        name = tmp / f"ocitar-inspect-{pid}-{n}"
        if n % 2 == 0:
            name.symlink_to(victims / "dir")
        else:
            name.mkdir()
            for k in range(1, 9):
                (name / str(k)).symlink_to(victims / "file")


class Planted:
    """A private ``$TMPDIR`` planted for ``pid``, and the victims its links point to."""

    def __init__(self, root: Path, pid: int) -> None:
        self.tmp = root / "tmpdir"
        self.victims = root / "victims"
        (self.victims / "dir").mkdir(parents=True)
        (self.victims / "file").write_bytes(b"precious")
        plant(self.tmp, self.victims, pid)
        self.before = self.state()

    def state(self) -> tuple[str, list[str], bytes]:
        return tree_digest(self.tmp), listing(self.victims / "dir"), (self.victims / "file").read_bytes()


def _as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the planting attack matters for a root-run ocitar; run as root")


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Planted]:
    """Planted for this process (the spool's counter here may have moved on: see ``_in_fresh_process``)."""
    _as_root()
    p = Planted(tmp_path, os.getpid())
    monkeypatch.setenv("TMPDIR", str(p.tmp))
    yield p
    assert p.state() == p.before, "planted names were followed, changed or removed"


#: Run in a fresh process (its spool counter starts at 0): plant for its own pid, then inspect or verify.
CHILD = """
import os, sys
from pathlib import Path
import ocitar
from test_special_paths import plant
op, archive, tmp, victims = sys.argv[1:]
plant(Path(tmp), Path(victims), os.getpid())
for _ in range(3):
    inv = getattr(ocitar, op)(archive)
    assert [i.names for i in inv.images] == [("app:1.0",)], inv
print(os.getpid())
"""


@pytest.mark.parametrize("op", ["inspect", "verify"])
def test_planted_spool_names_have_no_effect(gz_archive: Path, tmp_path: Path, op: str) -> None:
    _as_root()
    victims = tmp_path / "victims"
    (victims / "dir").mkdir(parents=True)
    (victims / "file").write_bytes(b"precious")
    tmp = tmp_path / "tmpdir"
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(Path(__file__).parent)}
    p = subprocess.run(
        [sys.executable, "-c", CHILD, op, gz_archive, tmp, victims], env=env, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    reference = tmp_path / "reference"
    plant(reference, victims, int(p.stdout))
    assert tree_digest(tmp) == tree_digest(reference), "planted names were changed, or a spool was left"
    assert listing(victims / "dir") == [] and (victims / "file").read_bytes() == b"precious"


@pytest.mark.parametrize("op", ["inspect", "verify"])
def test_spool_directory_is_private_unpredictable_and_removed(
    gz_archive: Path, planted: Planted, tmp_path: Path, op: str
) -> None:
    # Read from a FIFO: once ocitar has opened it, its spool directory exists, and the writer looks.
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    seen: list[tuple[str, int]] = []

    def send() -> None:
        with open(fifo, "wb") as f:
            for e in os.scandir(planted.tmp):
                if not e.name.startswith(f"ocitar-inspect-{os.getpid()}-"):
                    seen.append((e.name, stat.S_IMODE(os.lstat(e.path).st_mode)))
            f.write(gz_archive.read_bytes())

    t = threading.Thread(target=send)
    t.start()
    try:
        inv = getattr(ocitar, op)(fifo)
    finally:
        t.join(30)
        if t.is_alive():
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
            t.join()
    assert [i.names for i in inv.images] == [("app:1.0",)]
    assert len(seen) == 1 and seen[0][0].startswith("ocitar-"), seen
    assert seen[0][1] == 0o700, oct(seen[0][1])
    assert planted.state() == planted.before, "the spool directory is removed afterwards"


def test_spool_directory_is_removed_on_error(gz_archive: Path, planted: Planted) -> None:
    data = gz_archive.read_bytes()
    gz_archive.write_bytes(data[: len(data) // 2])
    for op in (ocitar.inspect, ocitar.verify):
        with pytest.raises(ocitar.InvalidArchiveError):
            op(gz_archive)
    assert planted.state() == planted.before


def test_planted_temporary_index_name_in_the_store_is_not_followed(store: BuiltStore, tmp_path: Path) -> None:
    archive = ocitar.save(store.path, "app:1.0")
    dest = build_store(tmp_path / "dest", []).path
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (dest / f".ocitar-ingest-{os.getpid()}-index.json.tmp").symlink_to(victim)
    ocitar.load(archive, store=dest)
    assert victim.read_bytes() == b"precious"
    assert stat.S_ISREG(os.lstat(dest / "index.json").st_mode)
    assert [i.names for i in ocitar.inspect(dest).images] == [("app:1.0",)]
    assert ocitar.verify(dest).verified


# rule 2: outputs that are not regular files -----------------------------------------------------------


def _char_device(path: Path, major: int, minor: int) -> None:
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.close(os.open(path, os.O_WRONLY))
    except PermissionError as e:
        pytest.skip(f"cannot make or open a device node in {path.parent}: {e}")


def _read_all(fd: int, into: list[bytes]) -> None:
    with os.fdopen(fd, "rb") as f:
        into.append(f.read())


def test_output_onto_a_character_device_stays_a_device(store: BuiltStore, tmp_path: Path) -> None:
    null = tmp_path / "null"
    _char_device(null, 1, 3)
    report = ocitar.save(store.path, "app:1.0", output=null)
    assert report.archive_bytes == len(ocitar.save(store.path, "app:1.0"))
    st = os.lstat(null)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert sorted(os.listdir(tmp_path)) == ["null", "store"], "no temporary file beside it"


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_output_through_a_symlink_to_a_device(store: BuiltStore, tmp_path: Path, compression: str | None) -> None:
    null = tmp_path / "null"
    _char_device(null, 1, 3)
    link = tmp_path / "out.tar"
    link.symlink_to(null)
    ocitar.save(store.path, "app:1.0", output=link, compression=compression)  # type: ignore[call-overload]
    assert os.readlink(link) == str(null)
    assert stat.S_ISCHR(os.lstat(null).st_mode)


def test_output_onto_a_fifo_reaches_its_reader(store: BuiltStore, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    spare = tmp_path / "fifo-link"
    os.link(fifo, spare)  # to unblock the reader should the FIFO be replaced
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: _read_all(os.open(fifo, os.O_RDONLY), got))
    reader.start()
    try:
        ocitar.save(store.path, "app:1.0", output=fifo)
    finally:
        reader.join(30)
        if reader.is_alive():
            os.close(os.open(spare, os.O_WRONLY | os.O_NONBLOCK))
            reader.join()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got == [ocitar.save(store.path, "app:1.0")]


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_output_onto_dev_fd_of_a_pipe(store: BuiltStore, compression: str | None) -> None:
    r, w = os.pipe()
    got: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(r, got))
    reader.start()
    try:
        ocitar.save(store.path, "app:1.0", output=f"/dev/fd/{w}", compression=compression)  # type: ignore[call-overload]
    finally:
        os.close(w)
        reader.join()
    assert got == [ocitar.save(store.path, "app:1.0", compression=compression)]  # type: ignore[call-overload]


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_output_onto_a_full_device_is_a_clean_enospc(
    store: BuiltStore, tmp_path: Path, compression: str | None
) -> None:
    # /dev/full's own device numbers, made in tmp_path: a broken build cannot replace the system's node.
    full = tmp_path / "full"
    _char_device(full, 1, 7)
    with pytest.raises(OSError) as e:
        ocitar.save(store.path, "app:1.0", output=full, compression=compression)  # type: ignore[call-overload]
    assert type(e.value) is OSError and e.value.errno == errno.ENOSPC
    assert str(full) in str(e.value)
    st = os.lstat(full)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 7)
    assert sorted(os.listdir(tmp_path)) == ["full", "store"], "no temporary file beside it"


def test_output_onto_a_symlink_to_a_directory(store: BuiltStore, tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (tmp_path / "out.tar").symlink_to(d)
    with pytest.raises(IsADirectoryError) as e:
        ocitar.save(store.path, "app:1.0", output=tmp_path / "out.tar")
    assert "out.tar" in str(e.value)
    assert listing(d) == [] and (tmp_path / "out.tar").is_symlink()


@pytest.mark.parametrize("inside", ["index.json", "oci-layout", "blobs/sha256/new.tar", "new.tar", "link"])
def test_output_inside_the_store_is_refused(store: BuiltStore, tmp_path: Path, inside: str) -> None:
    if inside == "link":
        (tmp_path / "link.tar").symlink_to(store.path / "index.json")
        target = tmp_path / "link.tar"
    else:
        target = store.path / inside
    before = tree_digest(store.path)
    with pytest.raises(ValueError, match="inside the store") as e:
        ocitar.save(store.path, "app:1.0", output=target)
    assert str(target) in str(e.value)
    assert tree_digest(store.path) == before
    assert ocitar.verify(store.path).verified


def test_cli_output_inside_the_store_is_refused(store: BuiltStore) -> None:
    before = tree_digest(store.path)
    p = subprocess.run(
        [sys.executable, "-m", "ocitar", "save", "--store", store.path, "-o", store.path / "index.json", "app:1.0"],
        capture_output=True,
        text=True,
    )
    assert p.returncode != 0 and "inside the store" in p.stderr
    assert tree_digest(store.path) == before


def test_cli_output_descriptor_redirected_to_a_file(store: BuiltStore, tmp_path: Path) -> None:
    # /proc/self/fd/1 is what /dev/stdout links to; a broken build cannot replace a node in /proc.
    out = tmp_path / "out.tar"
    with open(out, "wb") as f:
        p = subprocess.run(
            [sys.executable, "-m", "ocitar", "save", "--store", store.path, "-o", "/proc/self/fd/1", "app:1.0"],
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == ocitar.save(store.path, "app:1.0")


# rule 13: paths that cannot seek ------------------------------------------------------------------------

BASH = shutil.which("bash")


@pytest.mark.skipif(BASH is None, reason="process substitution needs bash")
def test_cli_load_from_process_substitution(store: BuiltStore, tmp_path: Path) -> None:
    archive = tmp_path / "app.tar"
    ocitar.save(store.path, "app:1.0", output=archive)
    dest = tmp_path / "dest"
    cmd = '"$PY" -m ocitar load --store "$DEST" -i <(cat "$ARCHIVE")'
    env = {**os.environ, "PY": sys.executable, "DEST": str(dest), "ARCHIVE": str(archive)}
    p = subprocess.run([str(BASH), "-c", cmd], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "Loaded image: app:1.0" in p.stdout
    assert ocitar.verify(dest).verified


@pytest.mark.skipif(BASH is None, reason="process substitution needs bash")
def test_cli_save_to_process_substitution(store: BuiltStore) -> None:
    cmd = '"$PY" -m ocitar save --store "$STORE" -o >(cat) app:1.0'
    env = {**os.environ, "PY": sys.executable, "STORE": str(store.path)}
    # stdout is a pipe: communicate() returns once the last writer (cat) has closed it.
    p = subprocess.run([str(BASH), "-c", cmd], env=env, capture_output=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout == ocitar.save(store.path, "app:1.0")


def _feed(data: bytes) -> tuple[int, threading.Thread]:
    """A pipe whose writer (a thread) sends ``data`` and closes; returns the read end."""
    r, w = os.pipe()

    def send() -> None:
        with contextlib.suppress(BrokenPipeError), os.fdopen(w, "wb") as f:
            f.write(data)

    t = threading.Thread(target=send)
    t.start()
    return r, t


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_load_inspect_verify_from_dev_fd_of_a_pipe(store: BuiltStore, tmp_path: Path, compression: str | None) -> None:
    data = ocitar.save(store.path, "app:1.0", compression=compression)  # type: ignore[call-overload]
    for op in ("load", "inspect", "verify"):
        r, t = _feed(data)
        try:
            if op == "load":
                report = ocitar.load(f"/dev/fd/{r}", store=tmp_path / "dest")
                assert [i.names for i in report.images] == [("app:1.0",)]
            else:
                inv = getattr(ocitar, op)(f"/dev/fd/{r}")
                assert [i.names for i in inv.images] == [("app:1.0",)]
        finally:
            os.close(r)
            t.join()
    assert ocitar.verify(tmp_path / "dest").verified


def test_load_from_a_fifo_path(store: BuiltStore, tmp_path: Path) -> None:
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    data = ocitar.save(store.path, "app:1.0")

    def send() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    t = threading.Thread(target=send)
    t.start()
    try:
        report = ocitar.load(fifo, store=tmp_path / "dest")
    finally:
        t.join(30)
        if t.is_alive():  # load never opened the FIFO: unblock the writer
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
            t.join()
    assert [i.names for i in report.images] == [("app:1.0",)]
