"""Helpers shared by the ``test_interop_*`` suites (real containerd, skopeo, umoci, oci-image-tool).

They read stores and archives the way a user would (json, tarfile, hashlib), independently of ocitar.
This module holds no tests; it is named ``test_interop_*`` only so that it belongs with those suites."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import ocitar
import pytest
from _helpers import sha
from conftest import REQUIRE_TOOLS
from ocitar.testing import BuiltImage, BuiltStore, Image, Layer, Platform

#: The host's platform as ocitar sees it (linux/amd64 on the CI machine); the platform containerd
#: unpacks by default and ``ctr images check`` looks at.
HOST = ocitar.normalize_platform("linux")
#: Two platforms that are not the host's.
FOREIGN, FOREIGN2 = [
    p for p in ("linux/arm64/v8", "linux/s390x", "linux/ppc64le") if ocitar.normalize_platform(p) != HOST
][:2]


def norm(platform: str) -> str:
    return ocitar.normalize_platform(platform)


def multi(
    name: str, *, media_types: str = "oci", shape: str = "index", attestation: bool = False, salt: str = ""
) -> Image:
    """An image of three platforms (HOST, FOREIGN, FOREIGN2) with small real tar layers of its own (seeded by
    ``salt`` and ``name``, so images share no blob); HOST and FOREIGN have two layers sharing the bottom one."""
    name_seed = f"{salt}{name}"
    base = Layer(size=2048, seed=f"{name_seed}|base")
    return Image(
        names=(name,),
        media_types=media_types,
        shape=shape,
        platforms=(
            Platform(HOST, layers=(base, Layer(size=1024, seed=f"{name_seed}|{HOST}")), attestation=attestation),
            Platform(FOREIGN, layers=(base, Layer(size=3072, seed=f"{name_seed}|{FOREIGN}")), attestation=attestation),
            Platform(FOREIGN2, layers=(Layer(size=1536, seed=f"{name_seed}|{FOREIGN2}"),)),
        ),
    )


def override(platform: str) -> list[str]:
    """skopeo's global flags choosing ``platform`` (``os/arch[/variant]``) out of an index."""
    parts = platform.split("/")
    flags = ["--override-os", parts[0], "--override-arch", parts[1]]
    return flags + (["--override-variant", parts[2]] if len(parts) > 2 else [])


def full_name(name: str) -> str:
    """``app:1.0`` -> ``docker.io/library/app:1.0``: the name containerd shows."""
    if "/" in name and ("." in name.split("/", 1)[0] or ":" in name.split("/", 1)[0]):
        return name
    repo = name if "/" in name else "library/" + name
    return "docker.io/" + repo


def read_json(path: Path) -> Any:
    return json.loads(path.read_bytes())


def config(store: BuiltStore, image: BuiltImage, platform: str) -> dict[str, Any]:
    result: dict[str, Any] = read_json(store.blob_path(image.configs[platform]))
    return result


def diff_ids(store: BuiltStore, image: BuiltImage, platform: str) -> list[str]:
    return list(config(store, image, platform)["rootfs"]["diff_ids"])


def chain_id(ids: list[str]) -> str:
    """The snapshot key of a layer stack, as the OCI image spec defines ChainID."""
    chain = ids[0]
    for diff in ids[1:]:
        chain = sha(f"{chain} {diff}".encode())
    return chain


def layer_files(path: Path) -> dict[str, bytes]:
    """Regular files of a (possibly gzip-compressed) layer tar: name -> content."""
    files = {}
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                files[member.name] = f.read()
    return files


def rootfs_files(store: BuiltStore, image: BuiltImage, platform: str) -> dict[str, bytes]:
    """The files a rootfs of ``platform`` of ``image`` must hold: its layers applied bottom first."""
    files: dict[str, bytes] = {}
    for digest in image.layers[platform]:
        files.update(layer_files(store.blob_path(digest)))
    assert files, f"{platform} of {image.names} has no files"
    return files


def tree_files(root: Path) -> dict[str, bytes]:
    """Regular files under ``root``: relative posix name -> content."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tar_json(archive: Path, name: str) -> Any:
    with tarfile.open(archive) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return json.loads(f.read())


def tar_names(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return tar.getnames()


# --------------------------------------------------------------------------
# Private servers (containerd, dockerd): started for a session, stopped by their PID
# --------------------------------------------------------------------------

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_DEATH_SIGNAL = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []


def unavailable(reason: str) -> NoReturn:
    """Skip for a missing peer tool, or fail under CI (``OCITAR_REQUIRE_TOOLS=1``)."""
    if REQUIRE_TOOLS:
        pytest.fail(reason)
    pytest.skip(reason)


def log_tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a server we started, by its PID; SIGKILL after STOP_TIMEOUT seconds."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)


@contextmanager
def server(argv: Sequence[str], directory: Path, ready: Callable[[], bool]) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` in ``directory`` (its output in ``<directory>/<program>.log``) until ``ready()`` answers
    true, yield it, and stop it by its PID; fails naming the log tail when it exits or does not get ready."""
    name = Path(argv[0]).name
    log = directory / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            # setpriv (util-linux): the server gets SIGTERM if this session dies without its teardown.
            [*_DEATH_SIGNAL, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=directory,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode} while starting; log tail:\n{log_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"{name} was not ready within {START_TIMEOUT:.0f}s; log tail:\n{log_tail(log)}")
            time.sleep(0.1)
        yield process
    finally:
        stop(process)
