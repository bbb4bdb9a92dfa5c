"""Interop with a real Docker daemon (Debian's dockerd 20.10): every archive shape ocitar writes loads with
``docker load`` under its names and with the platform its ``manifest.json`` describes, and what dockerd
builds and ``docker save`` writes round-trips through ocitar with the same image IDs.

dockerd 20.10 keeps images in its own store (``--storage-driver vfs`` here) and reads only an archive's
``manifest.json`` (and ``repositories``): one config and layer list per entry, the image ID being the
config's digest. A private dockerd runs for the session (``dockerd`` fixture): configuration, trust key,
data root, exec root, pid file and socket in a temporary directory, no network setup; it starts a
containerd of its own whose state and sockets are under those roots. Each test starts with no image and removes what it made. Needs root
and the ``docker.io`` package (``.ci/run`` installs it); without them the tests skip, or fail under
``OCITAR_REQUIRE_TOOLS=1``.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ocitar
import pytest
from conftest import run
from ocitar.testing import BuiltStore, Image, Layer, Platform
from test_interop_helpers import FOREIGN, HOST, multi, norm, server, stop, tar_json, unavailable


def _containerd_pid(directory: Path) -> int | None:
    """The PID of the containerd that dockerd started under its exec root, while it runs."""
    try:
        pid = int((directory / "exec" / "containerd" / "containerd.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _stop_orphan(pid: int | None) -> None:
    """Stop dockerd's containerd by its PID when dockerd did not (it does on a clean shutdown)."""
    if pid is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)


def _unmount_under(directory: Path) -> None:
    """dockerd bind-mounts its data root onto itself and unmounts it on a clean shutdown; undo it otherwise."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(f"{directory}/")), reverse=True):
        subprocess.run(["umount", "--lazy", point], check=True, timeout=30)


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Path]:
    """Start a private dockerd; yield its directory (``docker.sock``, ``config/``); stop it and remove it."""
    for tool, package in (("dockerd", "docker.io"), ("docker", "docker.io")):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (.ci/run installs the {package} package with apt-get)")
    if os.geteuid() != 0:
        unavailable("dockerd needs root")
    if Path("/run/containerd/containerd.sock").exists():
        # dockerd 20.10 then uses that containerd instead of starting a private one.
        unavailable("a system containerd serves /run/containerd/containerd.sock; dockerd would share it")
    # A short path under /tmp: unix socket paths are limited to 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="ocitar-docker-"))
    (directory / "config").mkdir()
    socket = directory / "docker.sock"
    # Not /etc/docker's daemon.json, nor its key.json (dockerd 20.10 creates that trust key at start).
    (directory / "daemon.json").write_text(json.dumps({"deprecated-key-path": str(directory / "key.json")}))
    argv = ["dockerd", "--config-file", directory / "daemon.json"]
    argv += ["--data-root", directory / "root", "--exec-root", directory / "exec"]
    argv += ["--pidfile", directory / "dockerd.pid", "-H", f"unix://{socket}", "--storage-driver", "vfs"]
    argv += ["--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false", "--ip-masq=false"]
    client = Docker(directory)

    def ready() -> bool:
        return socket.exists() and client("version", check=False).returncode == 0

    containerd = None
    try:
        with server([str(a) for a in argv], directory, ready) as process:
            containerd = _containerd_pid(directory)
            if containerd is None:
                stop(process)
                pytest.fail(f"dockerd started no containerd of its own under {directory / 'exec'}")
            yield directory
    finally:
        _stop_orphan(containerd)
        _unmount_under(directory)
        shutil.rmtree(directory)


@dataclass(frozen=True)
class Docker:
    """The ``docker`` command line talking to the private dockerd (its own client config too)."""

    directory: Path

    def __call__(self, *args: str | os.PathLike[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        host = f"unix://{self.directory / 'docker.sock'}"
        # The legacy builder: dockerd 20.10 has no BuildKit frontend without buildx.
        return run("docker", "--config", self.directory / "config", "-H", host, *args, check=check, env=BUILDER)

    def load(self, archive: Path) -> list[str]:
        """``docker load -i ARCHIVE``: the names it reports loaded."""
        lines = self("load", "-i", archive).stdout.splitlines()
        return [line.removeprefix("Loaded image: ") for line in lines if line.startswith("Loaded image: ")]

    def images(self) -> dict[str, str]:
        """Every tagged image: familiar name -> image ID (the config's digest)."""
        rows = self("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.split("\n")
        return dict(row.split(" ") for row in rows if row and not row.startswith("<none>"))

    def platform(self, ref: str) -> str:
        """The image's platform as dockerd recorded it from the config, normalized."""
        os_arch = self("image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", ref).stdout.strip()
        variant = self("image", "inspect", "--format", "{{.Variant}}", ref).stdout.strip()
        return norm(f"{os_arch}/{variant}" if variant else os_arch)

    def remove_all(self) -> None:
        """Untag every image (dockerd deletes the parents they leave unused), then delete what is left."""
        if names := sorted(self.images()):
            self("rmi", "--force", *names)
        if ids := sorted(set(self("images", "--all", "--quiet", "--no-trunc").stdout.split())):
            self("rmi", "--force", *ids)


BUILDER = {"DOCKER_BUILDKIT": "0"}


@pytest.fixture
def docker(dockerd: Path) -> Iterator[Docker]:
    """The private dockerd with no image; what the test loads or builds is removed after it."""
    client = Docker(dockerd)
    assert client.images() == {}, "an earlier test left images behind"
    try:
        yield client
    finally:
        client.remove_all()


# --------------------------------------------------------------------------
# Each shape ocitar writes loads
# --------------------------------------------------------------------------


def assert_loads(docker: Docker, archive: Path, store: BuiltStore, names: list[str], platform: str) -> None:
    """``docker load`` of the archive reports ``names``, tags each with the store's config of ``platform`` as its
    image ID, and records that platform."""
    assert docker.load(archive) == names
    assert docker.images() == {n: store.image(n).configs[platform] for n in names}
    for n in names:
        assert docker.platform(n) == norm(platform)


def test_keep_archive_loads_every_image_with_the_host_platform(oci_store_factory, tmp_path, docker):
    names = ["example.test/docker/app:1.0", "tools:0.3", "example.test/docker/attested:2", "nested:3"]
    store = oci_store_factory(
        multi(names[0]),
        multi(names[1], media_types="docker"),
        multi(names[2], attestation=True),
        multi(names[3], shape="nested"),
    )
    archive = tmp_path / "keep.tar"
    ocitar.save(store.path, names, output=archive)

    assert_loads(docker, archive, store, names, HOST)


@pytest.mark.parametrize("platform", [HOST, FOREIGN])
def test_keep_sparse_archive_loads_the_saved_platform(oci_store_factory, tmp_path, docker, platform):
    name = "example.test/docker/sparse:1.0"
    store = oci_store_factory(multi(name))
    archive = tmp_path / "sparse.tar"
    ocitar.save(store.path, name, [platform], output=archive)

    assert_loads(docker, archive, store, [name], platform)


@pytest.mark.parametrize("prefer", [None, FOREIGN])
def test_subset_archive_loads_the_preferred_platform(oci_store_factory, tmp_path, docker, prefer):
    names = ["example.test/docker/subset:1.0", "example.test/docker/subset-attested:1.0"]
    store = oci_store_factory(multi(names[0]), multi(names[1], attestation=True))
    archive = tmp_path / "subset.tar"
    ocitar.save(store.path, names, [HOST, FOREIGN], index="subset", prefer=prefer, output=archive)
    described = prefer or HOST

    assert_loads(docker, archive, store, names, described)


@pytest.mark.parametrize("platform", [HOST, FOREIGN])
def test_manifest_archive_loads_its_platform(oci_store_factory, tmp_path, docker, platform):
    names = ["example.test/docker/manifest:1.0", "example.test/docker/manifest-docker:1.0"]
    store = oci_store_factory(multi(names[0]), multi(names[1], media_types="docker"))
    archive = tmp_path / "manifest.tar"
    ocitar.save(store.path, names, [platform], index="manifest", output=archive)

    assert_loads(docker, archive, store, names, platform)


def test_images_sharing_layers_load_from_one_archive(oci_store_factory, tmp_path, docker):
    """Two images over one base layer: the archive holds the layer once, and dockerd stacks both on it."""
    base = Layer(size=4096, seed="docker-shared-base")
    names = ["example.test/docker/shared-a:1", "example.test/docker/shared-b:1"]
    store = oci_store_factory(
        *(Image(names=(n,), platforms=(Platform(HOST, layers=(base, Layer(size=1024, seed=n))),)) for n in names)
    )
    archive = tmp_path / "shared.tar"
    ocitar.save(store.path, names, output=archive)
    entries = tar_json(archive, "manifest.json")
    assert entries[0]["Layers"][0] == entries[1]["Layers"][0]

    assert docker.load(archive) == names
    assert docker.images() == {n: store.image(n).configs[HOST] for n in names}
    layers = [docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", n).stdout for n in names]
    assert layers[0].split(",")[0] == layers[1].split(",")[0]


def test_gzip_archive_loads(oci_store_factory, tmp_path, docker):
    name = "example.test/docker/compressed:1.0"
    store = oci_store_factory(multi(name))
    archive = tmp_path / "keep.tar.gz"
    ocitar.save(store.path, name, output=archive, compression="gzip")
    assert archive.read_bytes()[:2] == b"\x1f\x8b"

    assert docker.load(archive) == [name]
    assert docker.images() == {name: store.image(name).configs[HOST]}


# --------------------------------------------------------------------------
# Round trip: docker build -> docker save -> ocitar load -> ocitar save -> docker load
# --------------------------------------------------------------------------


def _build(docker: Docker, context: Path, tag: str, base: str, files: dict[str, bytes]) -> None:
    context.mkdir()
    for name, data in files.items():
        (context / name).write_bytes(data)
    copies = "".join(f"COPY {name} /{name}\n" for name in files)
    (context / "Dockerfile").write_text(f"FROM {base}\n{copies}")
    docker("build", "--quiet", "--tag", tag, context)


def test_docker_save_archive_round_trips_with_the_same_image_ids(tmp_path, docker):
    base, alias, child = "example.test/docker/built-base:1", "built-base:latest", "example.test/docker/built:2"
    _build(docker, tmp_path / "base", base, "scratch", {"a.txt": b"from scratch\n", "b.bin": bytes(range(256))})
    docker("tag", base, alias)
    _build(docker, tmp_path / "child", child, base, {"c.txt": b"one FROM another\n"})
    built = docker.images()
    assert set(built) == {base, alias, child} and built[base] == built[alias]

    saved = tmp_path / "saved.tar"
    docker("save", "--output", saved, base, alias, child)
    with tarfile.open(saved) as tar:
        members = {m.name: m for m in tar}
    # The legacy layout: a directory per layer and image chain; each of the three layers is stored once, and
    # the child's copy of the base's top layer is a symlink to it.
    layer_tars = [m for n, m in members.items() if n.endswith("/layer.tar")]
    assert (sum(m.isfile() for m in layer_tars), sum(m.issym() for m in layer_tars)) == (3, 1)
    assert "repositories" in members and "index.json" not in members

    store = tmp_path / "store"
    report = ocitar.load(saved, store=store)
    assert sorted(n for i in report.images for n in i.names) == sorted([base, alias, child])
    inventory = ocitar.verify(store)
    assert sorted(n for i in inventory.images for n in i.names) == sorted([base, alias, child])

    again = tmp_path / "again.tar"
    ocitar.save(store, [base, alias, child], output=again)
    docker.remove_all()
    assert docker.images() == {}
    assert sorted(docker.load(again)) == sorted([base, alias, child])
    assert docker.images() == built
    assert docker.platform(child) == norm(HOST)


def test_gzip_of_docker_save_archive_loads_into_ocitar(tmp_path, docker):
    """``docker save | gzip``, the usual way such archives travel, loads as the plain one does."""
    name = "example.test/docker/gzipped:1"
    _build(docker, tmp_path / "ctx", name, "scratch", {"z.txt": b"gzip\n"})
    saved = tmp_path / "saved.tar"
    docker("save", "--output", saved, name)
    packed = tmp_path / "saved.tar.gz"
    packed.write_bytes(gzip.compress(saved.read_bytes()))

    report = ocitar.load(packed, store=tmp_path / "store")
    assert [i.names for i in report.images] == [(name,)]
    again = tmp_path / "again.tar"
    ocitar.save(tmp_path / "store", name, output=again)
    image_id = docker.images()[name]
    docker.remove_all()
    assert docker.load(again) == [name]
    assert docker.images() == {name: image_id}
