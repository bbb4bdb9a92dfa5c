"""The command line, run as a user runs it: subprocesses, exit codes, stdout and stderr."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import ocitar
import pytest
from ocitar.testing import BuiltStore, Image, Platform


def cli(*args: str | os.PathLike[str], stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "ocitar", *map(os.fspath, args)], input=stdin, capture_output=True, cwd=cwd, timeout=120
    )


@pytest.fixture
def store(oci_store_factory) -> BuiltStore:  # type: ignore[no-untyped-def]
    return oci_store_factory(
        Image(names=("app:1.0", "app:latest"), platforms=(Platform("linux/amd64", attestation=True), "linux/arm64/v8")),
        Image(platforms=("linux/s390x",)),
    )


def test_save_to_file_then_load_prints_docker_lines(store: BuiltStore, tmp_path: Path) -> None:
    out = tmp_path / "app.tar"
    p = cli("save", "--store", store.path, "-o", out, "--platform", "linux/arm64", "app:1.0")
    assert p.returncode == 0, p.stderr
    assert p.stdout == b""
    assert ocitar.inspect(out).images[0].names == ("app:1.0",)
    p = cli("load", "--store", tmp_path / "s", "-i", out)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().splitlines() == ["Loaded image: app:1.0"]


def test_save_to_stdout_pipe_and_load_from_stdin(store: BuiltStore, tmp_path: Path) -> None:
    digest = store.images[1].digest
    saved = cli("save", "--store", store.path, "--index", "subset", "--compress", "gzip", digest)
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout[:2] == b"\x1f\x8b"
    p = cli("load", "--store", tmp_path / "s", stdin=saved.stdout)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().splitlines() == [f"Loaded image ID: {digest}"]
    p = cli("load", "-q", "--store", tmp_path / "s", "-i", "-", stdin=saved.stdout)
    assert p.returncode == 0 and p.stdout == b""


def test_save_refuses_a_terminal(store: BuiltStore) -> None:
    leader, follower = pty.openpty()
    try:
        p = subprocess.run(
            [sys.executable, "-m", "ocitar", "save", "--store", os.fspath(store.path), "app:1.0"],
            stdout=follower,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert p.returncode == 1
    assert b"terminal" in p.stderr


def test_operation_errors_are_one_line_and_exit_1(store: BuiltStore, tmp_path: Path) -> None:
    cases = [
        (("save", "--store", store.path, "-o", tmp_path / "x.tar", "nope:1"), "image not found"),
        (("save", "--store", store.path, "-o", tmp_path / "x.tar", "--platform", "linux/ppc64le", "app:1.0"), "platform not found"),
        (("save", "--store", store.path, "-o", tmp_path / "x.tar", "--platform", "linux/*", "app:1.0"), "invalid platform"),
        (("load", "--store", tmp_path / "s", "-i", tmp_path / "missing.tar"), "No such file"),
        (("inspect", tmp_path / "nothing"), "no such store"),
        (("inspect", tmp_path / "nothing.tar"), "No such file"),
        (("verify", tmp_path), "store error"),
    ]
    for args, needle in cases:
        p = cli(*args)
        err = p.stderr.decode()
        assert p.returncode == 1, (args, err)
        assert err.count("\n") == 1 and err.startswith("ocitar: error:") and needle in err, (args, err)
        assert "Traceback" not in err
    assert not (tmp_path / "x.tar").exists() and not (tmp_path / "s").exists()


def test_usage_errors_exit_2() -> None:
    for args in (("frob",), ("save",), ("save", "--index", "weird", "app"), ()):
        p = cli(*args)
        assert p.returncode == 2, args
        assert b"usage:" in p.stderr and b"Traceback" not in p.stderr


def test_help_has_examples_and_version() -> None:
    for command in ("save", "load", "inspect", "verify", "ls"):
        p = cli(command, "--help")
        assert p.returncode == 0 and b"example:" in p.stdout, command
    p = cli("--version")
    assert p.returncode == 0 and p.stdout.decode().strip() == f"ocitar {ocitar.__version__}"


def test_inspect_table_and_json(store: BuiltStore, tmp_path: Path) -> None:
    out = tmp_path / "app.tar"
    assert cli("save", "--store", store.path, "-o", out, "--platform", "linux/amd64", "app:1.0", "app:latest").returncode == 0
    p = cli("inspect", out)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert lines[0].split() == ["IMAGE", "DIGEST", "PLATFORM", "STATUS", "SIZE", "LAYERS", "ATTESTATIONS"]
    assert lines[1].split()[:2] == ["app:1.0,", "app:latest"]
    assert "linux/amd64" in lines[1] and "present" in lines[1] and lines[1].split()[-1] == "1"
    assert "linux/arm64" in lines[2] and "absent" in lines[2]
    # Columns line up: every row's PLATFORM starts where the header's does.
    col = lines[0].index("PLATFORM")
    assert lines[1][col:].startswith("linux/amd64") and lines[2][col:].startswith("linux/arm64")
    j = json.loads(cli("inspect", "--format", "json", out).stdout)
    assert j["kind"] == "archive" and j["format"] == "oci"
    assert [p["present"] for p in j["images"][0]["platforms"]] == [True, False]


def test_ls_lists_repository_and_tag(store: BuiltStore) -> None:
    p = cli("ls", "--store", store.path)
    assert p.returncode == 0, p.stderr
    rows = [line.split() for line in p.stdout.decode().splitlines()]
    assert rows[0] == ["REPOSITORY", "TAG", "DIGEST", "PLATFORMS", "SIZE"]
    assert rows[1][:2] == ["app", "1.0"] and rows[2][:2] == ["app", "latest"]
    assert rows[1][3] == "linux/amd64,linux/arm64"
    assert rows[3][:2] == ["<none>", "<none>"] and rows[3][3] == "linux/s390x"


def test_ls_of_names_lists_what_docker_image_ls_lists(store: BuiltStore) -> None:
    def rows(*names: str) -> list[list[str]]:
        p = cli("ls", "--store", store.path, *names)
        assert p.returncode == 0, p.stderr
        return [line.split()[:2] for line in p.stdout.decode().splitlines()[1:]]

    assert rows("app") == [["app", "1.0"], ["app", "latest"]]
    assert rows("app:latest") == [["app", "latest"]]
    assert rows("ap") == []
    p = cli("ls", "--store", store.path, "App")
    assert p.returncode == 1 and b"invalid reference" in p.stderr


def test_verify_reports_ok_and_fails_on_corruption(store: BuiltStore, tmp_path: Path) -> None:
    p = cli("verify", store.path)
    assert p.returncode == 0 and b": OK," in p.stdout
    layer = store.image("app:1.0").layers["linux/arm64/v8"][0]
    path = store.blob_path(layer)
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    p = cli("verify", store.path)
    assert p.returncode == 1
    assert layer.encode() in p.stderr and b"digest mismatch" in p.stderr


def test_default_store_from_environment(store: BuiltStore, tmp_path: Path) -> None:
    out = tmp_path / "a.tar"
    env = {**os.environ, "OCITAR_STORE": os.fspath(tmp_path / "default")}
    assert cli("save", "--store", store.path, "-o", out, "app:1.0").returncode == 0
    p = subprocess.run([sys.executable, "-m", "ocitar", "load", "-i", os.fspath(out)], env=env, capture_output=True)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "default" / "index.json").is_file()
    p = subprocess.run([sys.executable, "-m", "ocitar", "ls"], env=env, capture_output=True)
    assert b"app" in p.stdout


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "ocitar"
    assert exe.exists(), "the ocitar console script is installed beside python"
    p = subprocess.run([exe, "--version"], capture_output=True)
    assert p.returncode == 0
