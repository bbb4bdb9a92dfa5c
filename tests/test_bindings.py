"""What crosses from Python into the engine: an archive given as ``bytes`` is read where it is (not copied),
and the options ``index`` and ``compression`` are refused with a ValueError naming the choices."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ocitar
import pytest
from _helpers import blobs
from ocitar.testing import BuiltStore, Image, Layer, Platform, build_store

SIZE = 64 << 20

# Peak resident memory (VmHWM, kB) while the archive is held in memory and then after loading it.
PEAK = (
    "import sys, ocitar\n"
    "def hwm():\n"
    "    return int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:'))) * 1024\n"
    "with open(sys.argv[2], 'rb') as f:\n"
    "    if sys.argv[3] == 'bytearray':\n"
    "        data = bytearray(f.seek(0, 2))\n"
    "        f.seek(0)\n"
    "        f.readinto(data)\n"
    "    else:\n"
    "        data = f.read()\n"
    "if sys.argv[3] == 'memoryview':\n"
    "    data = memoryview(data)\n"
    "before = hwm()\n"
    "ocitar.load(data, store=sys.argv[1])\n"
    "print(before, hwm())\n"
)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[BuiltStore, Path]:
    root = tmp_path_factory.mktemp("bindings")
    s = build_store(
        root / "src",
        [Image(names=("big:1",), platforms=(Platform("linux/amd64", layers=(Layer(size=SIZE, compression="none"),)),))],
    )
    archive = root / "big.tar"
    ocitar.save(s.path, "big:1", output=archive)
    return s, archive


@pytest.mark.parametrize(("kind", "copies"), [("bytes", 0), ("memoryview", 1), ("bytearray", 1)])
def test_an_archive_in_memory_is_copied_at_most_once(
    big: tuple[BuiltStore, Path], tmp_path: Path, kind: str, copies: int
) -> None:
    s, archive = big
    store = tmp_path / "store"
    p = subprocess.run(
        [sys.executable, "-c", PEAK, str(store), str(archive), kind], capture_output=True, text=True, check=False
    )
    assert p.returncode == 0, p.stderr
    before, after = map(int, p.stdout.split())
    grew = after - before
    # bytes: read in place; a bytearray or memoryview: one copy (the engine must not see it change).
    assert grew < (copies + 0.5) * SIZE, f"peak grew by {grew} bytes"
    assert blobs(store) == blobs(s.path)


def test_index_and_compression_are_checked_before_anything_is_written(big: tuple[BuiltStore, Path], tmp_path: Path) -> None:
    s, archive = big
    out = tmp_path / "out.tar"
    with pytest.raises(ValueError, match="""index must be 'keep', 'subset' or 'manifest', not "everything\""""):
        ocitar.save(s.path, "big:1", output=out, index="everything")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="""compression must be None, 'gzip' or 'zstd', not "xz\""""):
        ocitar.save(s.path, "big:1", output=out, compression="xz")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="index"):
        ocitar.save(s.path, "big:1", output=out, index=3)  # type: ignore[call-overload]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
