"""Every code example in README.md runs, so the README cannot rot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(REPO / "examples" / "demo-store", tmp_path / "examples" / "demo-store")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_has_the_two_commands() -> None:
    sh = blocks("sh")
    assert len(sh) == 2
    assert "pip install ." in sh[0] and "ocitar save" in sh[0] and "ocitar inspect demo.tar" in sh[0]
    assert "pip install '.[test]'" in sh[1] and sh[1].strip().endswith("pytest")


def test_first_command_runs_on_the_demo_store(workdir: Path) -> None:
    # The install step is what the test run itself stands on; run the rest as written.
    command = blocks("sh")[0].split("pip install . && ", 1)[1].strip()
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    p = subprocess.run(command, shell=True, capture_output=True, text=True, env=env, cwd=workdir, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (workdir / "demo.tar").is_file()
    lines = p.stdout.splitlines()
    assert any("linux/arm64" in line and "present" in line for line in lines), p.stdout
    assert sum("absent" in line for line in lines) == 2, p.stdout


def test_python_examples_run(workdir: Path) -> None:
    examples = [b for b in blocks("python") if "def test_" not in b]
    assert examples, "README has Python examples"
    for code in examples:
        exec(compile(code, "README.md", "exec"), {})


def test_pytest_example_passes(workdir: Path) -> None:
    (example,) = [b for b in blocks("python") if "def test_" in b]
    (workdir / "test_example.py").write_text(example)
    p = subprocess.run(
        # Its own --basetemp: else the inner pytest prunes the numbered temp directories of earlier runs
        # under the shared /tmp/pytest-of-<user> (whole suites' trees, 30 s and more to remove).
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            f"--basetemp={workdir / 'basetemp'}",
            "test_example.py",
        ],
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 passed" in p.stdout


def test_the_first_ten_minutes_are_covered() -> None:
    tomllib = pytest.importorskip("tomllib")

    rust = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["rust-version"]
    assert f"Rust ≥ {rust}" in README and "about a minute" in README
    # Skip reasons show in pytest's summary, so a newcomer sees why tests skipped.
    addopts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert "-rs" in addopts
    # What the README's commands and examples write stays out of git.
    p = subprocess.run(["git", "check-ignore", "demo.tar", "demo-2p.tar", "images/"], cwd=REPO, capture_output=True, text=True)
    if p.returncode == 128:
        pytest.skip("not a git checkout")
    assert p.stdout.split() == ["demo.tar", "demo-2p.tar", "images/"]


def test_readme_shows_exception_attributes_lookups_and_rows() -> None:
    python = "\n".join(blocks("python"))
    for needle in (".missing", ".available", "inv.image(", ".platform(", "to_rows()"):
        assert needle in python, needle
