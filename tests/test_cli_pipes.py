"""The command line in scripts and pipes: empty platform lists, compression from the file name, closed
pipes, full disks, the default store before anything was loaded, hints, and one --format everywhere."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import ocitar
import pytest
from ocitar._progress import _Bar
from ocitar.testing import BuiltStore, Image, Platform
from test_cli import cli


@pytest.fixture
def store(oci_store_factory) -> BuiltStore:  # type: ignore[no-untyped-def]
    return oci_store_factory(
        Image(names=("app:1.0",), platforms=(Platform("linux/amd64", attestation=True), "linux/arm64/v8")),
    )


@pytest.mark.parametrize("value", ["", " ", "linux/amd64,", ",linux/amd64"])
def test_an_empty_platform_is_a_usage_error_not_every_platform(store: BuiltStore, tmp_path: Path, value: str) -> None:
    out = tmp_path / "a.tar"
    p = cli("save", "--store", store.path, "-o", out, "--platform", value, "app:1.0")
    assert p.returncode == 2, p.stderr
    assert b"empty platform" in p.stderr and not out.exists()
    p = cli("load", "--store", tmp_path / "s", "--platform", value, "-i", out)
    assert p.returncode == 2 and not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("name", "flag", "magic"),
    [
        ("a.tar.gz", None, b"\x1f\x8b"),
        ("a.tgz", None, b"\x1f\x8b"),
        ("a.tar.zst", None, b"\x28\xb5\x2f\xfd"),
        ("a.tar", None, b"blob"),
        ("a.tar.gz", "zstd", b"\x28\xb5\x2f\xfd"),
    ],
)
def test_compression_follows_the_output_suffix(store: BuiltStore, tmp_path: Path, name: str, flag: str | None, magic: bytes) -> None:
    out = tmp_path / name
    extra = ["--compress", flag] if flag else []
    p = cli("save", "--store", store.path, "-o", out, *extra, "app:1.0")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes()[: len(magic)] == magic
    expected = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}.get(magic)
    assert ocitar.inspect(out).compression == expected


@pytest.mark.parametrize("args", [("save", "app:1.0"), ("inspect", "--format", "json", "STORE"), ("ls",)])
def test_a_closed_pipe_ends_quietly(store: BuiltStore, args: tuple[str, ...]) -> None:
    argv = [a.replace("STORE", os.fspath(store.path)) for a in args]
    if argv[0] in ("save", "ls"):
        argv[1:1] = ["--store", os.fspath(store.path)]
    proc = subprocess.Popen([sys.executable, "-m", "ocitar", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before a byte is written
    with proc.stderr:
        err = proc.stderr.read()
    proc.wait(timeout=120)
    assert err == b"", err


def test_a_full_disk_says_so_with_its_errno(store: BuiltStore) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "wb") as full:
        p = subprocess.run([sys.executable, "-m", "ocitar", "save", "--store", os.fspath(store.path), "app:1.0"], stdout=full, stderr=subprocess.PIPE)
    err = p.stderr.decode()
    assert p.returncode == 1 and err.count("\n") == 1
    assert "No space left on device" in err and "[Errno 28]" in err and "os error" not in err


def test_ls_of_the_default_store_before_any_load_is_empty_with_a_hint(tmp_path: Path) -> None:
    env = {**os.environ, "OCITAR_STORE": os.fspath(tmp_path / "not-yet")}
    p = subprocess.run([sys.executable, "-m", "ocitar", "ls"], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "DIGEST", "PLATFORMS", "SIZE"]
    assert str(tmp_path / "not-yet") in lines[1] and "ocitar load" in lines[1]
    assert not (tmp_path / "not-yet").exists()
    p = cli("ls", "--store", tmp_path / "missing")
    assert p.returncode == 1 and p.stderr.decode().count("\n") == 1
    assert str(tmp_path / "missing") in p.stderr.decode() and "no such store" in p.stderr.decode()


def test_a_near_miss_platform_gets_a_did_you_mean(store: BuiltStore, tmp_path: Path) -> None:
    p = cli("save", "--store", store.path, "-o", tmp_path / "a.tar", "--platform", "linux/amd64x", "app:1.0")
    assert p.returncode == 1
    assert b"(did you mean linux/amd64?)" in p.stderr
    p = cli("save", "--store", store.path, "-o", tmp_path / "a.tar", "--platform", "linux/riscv64", "app:1.0")
    assert p.returncode == 1 and b"did you mean" not in p.stderr


def test_inspect_shows_compression_and_ls_marks_sparse_images(store: BuiltStore, tmp_path: Path) -> None:
    out = tmp_path / "a.tar.gz"
    assert cli("save", "--store", store.path, "-o", out, "--platform", "linux/arm64", "app:1.0").returncode == 0
    p = cli("inspect", out)
    assert p.stdout.decode().splitlines()[-1] == "oci archive, gzip compressed"
    assert cli("load", "--store", tmp_path / "s", "-i", out).returncode == 0
    rows = cli("ls", "--store", tmp_path / "s").stdout.decode().splitlines()
    assert "linux/arm64 (sparse: 1 absent)" in rows[1]
    assert "sparse" not in cli("ls", "--store", store.path).stdout.decode()


def test_format_json_on_every_command(store: BuiltStore, tmp_path: Path) -> None:
    out = tmp_path / "a.tar"
    runs = {
        "save": ("save", "--store", store.path, "-o", out, "app:1.0"),
        "load": ("load", "--store", tmp_path / "s", "-i", out),
        "inspect": ("inspect", out),
        "verify": ("verify", out),
        "ls": ("ls", "--store", tmp_path / "s"),
    }
    for name, args in runs.items():
        p = cli(*args[:1], "--format", "json", *args[1:])
        assert p.returncode == 0, (name, p.stderr)
        data = json.loads(p.stdout)
        assert "images" in data, name
        help_text = cli(name, "--help").stdout.decode()
        assert "--format {table,json}" in help_text, name


def test_the_built_in_bar_shows_bytes_rate_time_left_and_100_once(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    bar = _Bar("save")
    for done in (0, 512 * 1024, 1024 * 1024, 1024 * 1024):
        bar(done, 1024 * 1024)
    text = err.getvalue()
    assert text.count("100%") == 1 and text.endswith("\n")
    frames = text.split("\r")
    assert "50%" in frames[2] and "512.0 KiB/1.0 MiB" in frames[2] and "/s" in frames[2] and "left" in frames[2]
    assert "1.0 MiB/1.0 MiB" in frames[-1]


def test_empty_stdin_says_so(tmp_path: Path) -> None:
    p = cli("load", "--store", tmp_path / "s", stdin=b"")
    assert p.returncode == 1 and p.stderr == b"ocitar: error: stdin is empty: pipe an archive or use -i FILE\n"
    assert not (tmp_path / "s").exists()


def test_random_bytes_are_not_a_tar_archive_in_plain_words(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 16)
    for command in (("load", "--store", tmp_path / "s", "-i", junk), ("inspect", junk), ("verify", junk)):
        p = cli(*command)
        assert p.returncode == 1, p.stderr
        assert p.stderr == f"ocitar: error: invalid archive: {junk}: not a tar archive (its first 512 bytes are not a tar header)\n".encode()
    assert not (tmp_path / "s").exists()


def test_a_short_text_file_is_not_a_tar_archive_not_a_truncated_one(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    said = f"ocitar: error: invalid archive: {text}: not a tar archive (it ends after 6 bytes, inside what would be its first 512-byte header)\n"
    for command in (("load", "--store", tmp_path / "s", "-i", text), ("inspect", text), ("verify", text)):
        p = cli(*command)
        assert (p.returncode, p.stderr.decode()) == (1, said), command
    p = cli("load", "--store", tmp_path / "s", stdin=b"hello\n")
    assert p.returncode == 1 and b"<stream>: not a tar archive" in p.stderr and b"truncated" not in p.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("how", ["path", "bytes", "stream", "gzip"])
def test_the_first_block_decides_not_a_tar_archive_or_truncated(store: BuiltStore, tmp_path: Path, how: str) -> None:
    """Input that ends inside its first 512-byte block, or whose first block has neither the tar magic nor a
    valid header checksum, is not a tar archive; a real archive cut inside its first header is truncated."""
    real = ocitar.save(store.path, "app:1.0")
    text = b"a plain text file, long enough to fill a whole tar block\n" * 20
    cases = [(b"hello\n", "not a tar archive"), (text, "not a tar archive"), (real[:300], "truncated inside its first header")]
    for data, said in cases:
        src: object = data
        if how == "gzip":
            data = gzip.compress(data, mtime=0)
        if how in ("path", "gzip"):
            (tmp_path / "in").write_bytes(data)
            src = tmp_path / "in"
        elif how == "stream":
            src = io.BytesIO(data)
        for call in (lambda s: ocitar.load(s, store=tmp_path / "s"), ocitar.inspect, ocitar.verify):
            if how in ("bytes", "stream") and call is not ocitar.load:
                continue
            with pytest.raises(ocitar.InvalidArchiveError, match=said) as e:
                call(src)  # type: ignore[operator]
            assert ("truncated" in str(e.value)) == (said != "not a tar archive"), str(e.value)
            if isinstance(src, io.BytesIO):
                src.seek(0)
    assert not (tmp_path / "s").exists()
    # A tar with a checksum-valid first header but no magic (a v7 tar) is still read as one.
    v7 = bytearray(tarfile.TarInfo("oci-layout").tobuf(format=tarfile.USTAR_FORMAT))
    v7[257:265] = bytes(8)
    v7[148:156] = b"        "
    v7[148:155] = f"{sum(v7):06o}\0".encode()
    with pytest.raises(ocitar.InvalidArchiveError) as e:
        ocitar.load(bytes(v7) + bytes(1024), store=tmp_path / "s")
    assert "not a tar archive" not in str(e.value)


def test_a_truncated_gzip_archive_names_the_file(store: BuiltStore, tmp_path: Path) -> None:
    whole = tmp_path / "app.tar.gz"
    ocitar.save(store.path, ["app:1.0"], output=whole, compression="gzip")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[:3000])
    with pytest.raises(ocitar.InvalidArchiveError, match="truncated") as e:
        ocitar.load(cut, store=tmp_path / "s")
    assert str(cut) in str(e.value) and e.value.entry == str(cut)
    assert not (tmp_path / "s").exists()
