"""Interop with a real containerd (issue 7): every archive shape ocitar writes imports with ``ctr images
import``, keeps its names and digests, unpacks with the native snapshotter, and ``ctr images export``
output round-trips through ocitar.

A private containerd runs for the session (``containerd`` fixture): config, root, state and sockets in
a temporary directory, CRI and the snapshotters that cannot run here disabled. Each test works in its
own containerd namespace (``ctr -n``). Needs root and the ``containerd`` package (``.ci/run`` installs
it); without them the tests skip, or fail under ``OCITAR_REQUIRE_TOOLS=1``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import ocitar
import pytest
from _helpers import DOCKER_LIST, OCI_INDEX, OCI_MANIFEST
from conftest import run
from ocitar.testing import BuiltImage, BuiltStore, Image, Layer, Platform
from test_interop_helpers import (
    FOREIGN,
    HOST,
    chain_id,
    diff_ids,
    full_name,
    multi,
    norm,
    override,
    rootfs_files,
    server,
    tree_files,
    unavailable,
)

# Based on ../shared/fixtures/generated/peer-outputs/ctr/containerd-config.toml. Everything containerd
# writes goes under DIR (the opt plugin defaults to /opt/containerd); overlayfs is disabled too, so a
# test that forgets ``--snapshotter native`` fails instead of depending on overlay support.
CONFIG = """\
version = 2
root = "DIR/root"
state = "DIR/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]
[grpc]
  address = "DIR/containerd.sock"
[ttrpc]
  address = "DIR/containerd.sock.ttrpc"
[debug]
  address = "DIR/debug.sock"
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "DIR/opt"
"""


@pytest.fixture(scope="session")
def containerd() -> Iterator[str]:
    """Start a private containerd; yield its gRPC socket path; stop it and remove its directory."""
    for tool in ("containerd", "ctr"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (.ci/run installs the containerd package with apt-get)")
    if os.geteuid() != 0:
        unavailable("containerd needs root")
    # A short path under /tmp: unix socket paths are limited to 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="ocitar-containerd-"))
    try:
        (directory / "config.toml").write_text(CONFIG.replace("DIR", str(directory)))
        socket = directory / "containerd.sock"

        def ready() -> bool:
            probe = ["ctr", "-a", str(socket), "version"]
            return socket.exists() and subprocess.run(probe, capture_output=True, timeout=10).returncode == 0

        with server(["containerd", "--config", str(directory / "config.toml")], directory, ready):
            yield str(socket)
    finally:
        shutil.rmtree(directory)


@dataclass(frozen=True)
class Listed:
    """One row of ``ctr images ls``."""

    media_type: str
    digest: str
    platforms: frozenset[str]  # normalized


@dataclass(frozen=True)
class Checked:
    """One row of ``ctr images check``."""

    digest: str
    status: str  # "complete (3/3)", "unavailable (0/?)", ...
    unpacked: bool


class Ctr:
    """``ctr -a SOCKET -n NAMESPACE``: one test's view of the private containerd."""

    def __init__(self, socket: str, namespace: str) -> None:
        self.socket = socket
        self.namespace = namespace

    def __call__(self, *args: str | os.PathLike[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("ctr", "-a", self.socket, "-n", self.namespace, *args, check=check)

    def import_(self, archive: Path, *flags: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self("images", "import", *flags, archive, check=check)

    def images(self) -> dict[str, Listed]:
        rows = self("images", "ls").stdout.splitlines()
        assert rows and rows[0].split()[:3] == ["REF", "TYPE", "DIGEST"], rows
        result = {}
        for row in rows[1:]:
            f = row.split()
            # REF TYPE DIGEST SIZE(2 fields) PLATFORMS LABELS
            result[f[0]] = Listed(f[1], f[2], frozenset(norm(p) for p in f[-2].split(",") if p != "unknown/unknown"))
        return result

    def check_images(self) -> dict[str, Checked]:
        rows = self("images", "check", "--snapshotter", "native").stdout.splitlines()
        assert rows and rows[0].split()[:4] == ["REF", "TYPE", "DIGEST", "STATUS"], rows
        result = {}
        for row in rows[1:]:
            f = row.split()
            result[f[0]] = Checked(f[2], f"{f[3]} {f[4]}", {"true": True, "false": False}[f[-1]])
        return result

    def rootfs(self, layers: list[str]) -> dict[str, bytes]:
        """Files of the unpacked snapshot of the layer stack ``layers`` (diff IDs, bottom first).

        Prepares an active native snapshot on top of the committed chain (a full copy of the unpacked
        layers) and reads it where ``ctr snapshots mounts`` says it is; fails when the chain was never
        unpacked."""
        key = f"rootfs-{chain_id(layers)[7:19]}"
        snap = ("snapshots", "--snapshotter", "native")
        self(*snap, "prepare", key, chain_id(layers))
        try:
            mounts = self(*snap, "mounts", "/unused", key).stdout.strip()
            match = re.fullmatch(r"mount -t bind (\S+) /unused -o rbind,rw", mounts)
            assert match, f"unexpected native snapshot mount: {mounts!r}"
            return tree_files(Path(match[1]))
        finally:
            self(*snap, "rm", key)


@pytest.fixture
def salt(request: pytest.FixtureRequest) -> str:
    """Seeds this test's layers: containerd shares content between namespaces, so no two tests share a blob."""
    return hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12] + "|"


@pytest.fixture
def ctr(containerd: str, request: pytest.FixtureRequest) -> Callable[..., Ctr]:
    """``ctr(suffix)`` -> a :class:`Ctr` in a namespace of its own for this test (and suffix)."""
    # containerd namespaces are at most 76 characters: a readable prefix and a hash of the test id.
    base = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-").lower()[:48].strip("-")
    base += "-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]

    def make(suffix: str = "a") -> Ctr:
        return Ctr(containerd, f"{base}-{suffix}")

    return make


def assert_unpacked(c: Ctr, store: BuiltStore, image: BuiltImage, platform: str) -> None:
    """The native snapshot of ``platform`` of ``image`` holds exactly the files of its layers."""
    assert c.rootfs(diff_ids(store, image, platform)) == rootfs_files(store, image, platform)


def platforms_of(image: BuiltImage, *, subset: tuple[str, ...] | None = None) -> frozenset[str]:
    return frozenset(norm(p) for p in (subset or tuple(image.manifests)))


# --------------------------------------------------------------------------
# Each shape ocitar writes imports
# --------------------------------------------------------------------------


def test_keep_full_archive_imports_with_all_platforms_and_unpacks_every_image(oci_store_factory, tmp_path, ctr, salt):
    names = [
        "example.test/interop/app:1.0",
        "tools:0.3",
        "example.test/interop/attested:2",
        "example.test/interop/nested:3",
    ]
    store = oci_store_factory(
        multi(names[0], salt=salt),
        multi(names[1], media_types="docker", salt=salt),
        multi(names[2], attestation=True, salt=salt),
        multi(names[3], shape="nested", salt=salt),
    )
    archive = tmp_path / "keep.tar"
    report = ocitar.save(store.path, names, output=archive)
    assert [i.digest for i in report.images] == [store.image(n).digest for n in names]

    c = ctr()
    result = c.import_(archive, "--all-platforms", "--snapshotter", "native")
    for n in names:
        assert f"unpacking {full_name(n)} ({store.image(n).digest})...done" in result.stdout

    listed = c.images()
    assert set(listed) == {full_name(n) for n in names}
    checked = c.check_images()
    for n in names:
        image = store.image(n)
        row = listed[full_name(n)]
        assert row.digest == image.digest
        assert row.media_type == (DOCKER_LIST if n == "tools:0.3" else OCI_INDEX)
        assert row.platforms == platforms_of(image)
        # check looks at the host platform: its config and every layer are present, and unpacked.
        blobs = 1 + len(image.layers[HOST])
        assert checked[full_name(n)] == Checked(image.digest, f"complete ({blobs}/{blobs})", True)
        assert_unpacked(c, store, image, HOST)


@pytest.mark.parametrize("platform", [HOST, FOREIGN])
def test_keep_sparse_archive_imports_with_a_saved_platform(oci_store_factory, tmp_path, ctr, salt, platform):
    name = "example.test/interop/sparse:1.0"
    store = oci_store_factory(multi(name, salt=salt))
    image = store.image(name)
    archive = tmp_path / "sparse.tar"
    report = ocitar.save(store.path, name, [platform], output=archive)
    assert report.images[0].digest == image.digest  # keep: the index, all platforms listed

    c = ctr()
    result = c.import_(archive, "--platform", platform, "--snapshotter", "native")
    assert f"unpacking {name} ({image.digest})...done" in result.stdout
    listed = c.images()
    assert listed == {name: Listed(OCI_INDEX, image.digest, platforms_of(image))}
    assert_unpacked(c, store, image, platform)
    if platform == HOST:
        blobs = 1 + len(image.layers[HOST])
        assert c.check_images() == {name: Checked(image.digest, f"complete ({blobs}/{blobs})", True)}


@pytest.mark.parametrize("flags", [("--snapshotter", "native"), ("--no-unpack",)], ids=["unpack", "no-unpack"])
def test_keep_sparse_archive_fails_with_all_platforms(oci_store_factory, tmp_path, ctr, salt, flags):
    """The documented failure: containerd walks every manifest the kept index lists, and the sparse archive
    lacks some. ctr exits 1 naming the first absent manifest, and creates no image."""
    name = "example.test/interop/sparse-all:1.0"
    store = oci_store_factory(multi(name, salt=salt))
    image = store.image(name)
    archive = tmp_path / "sparse.tar"
    ocitar.save(store.path, name, [FOREIGN], output=archive)

    c = ctr()
    result = c.import_(archive, "--all-platforms", *flags, check=False)
    assert result.returncode == 1, result
    # The index lists HOST first; its manifest is the first one containerd cannot find.
    assert result.stderr.strip().splitlines()[-1] == f"ctr: content digest {image.manifests[HOST]}: not found"
    assert c.images() == {}


def test_subset_archive_imports_with_all_platforms(oci_store_factory, tmp_path, ctr, salt):
    names = ["example.test/interop/subset:1.0", "example.test/interop/subset-attested:1.0"]
    store = oci_store_factory(multi(names[0], salt=salt), multi(names[1], attestation=True, salt=salt))
    archive = tmp_path / "subset.tar"
    saved = [HOST, FOREIGN]
    report = ocitar.save(store.path, names, saved, index="subset", output=archive)

    c = ctr()
    c.import_(archive, "--all-platforms", "--snapshotter", "native")
    listed = c.images()
    checked = c.check_images()
    assert set(listed) == set(names)
    for n, written in zip(names, report.images):
        image = store.image(n)
        assert written.digest != image.digest and written.original_digest == image.digest
        assert listed[n] == Listed(OCI_INDEX, written.digest, platforms_of(image, subset=tuple(saved)))
        blobs = 1 + len(image.layers[HOST])
        assert checked[n] == Checked(written.digest, f"complete ({blobs}/{blobs})", True)
        assert_unpacked(c, store, image, HOST)


def test_subset_archive_without_the_host_platform_needs_a_platform_to_unpack(oci_store_factory, tmp_path, ctr, salt):
    """A subset archive is complete, so ``--all-platforms`` imports all of it; but ctr unpacks the host
    platform unless told otherwise, and that fails when the host platform was not saved."""
    name = "example.test/interop/subset-foreign:1.0"
    store = oci_store_factory(multi(name, salt=salt))
    image = store.image(name)
    archive = tmp_path / "subset.tar"
    written = ocitar.save(store.path, name, [FOREIGN], index="subset", output=archive).images[0]

    failed = ctr("host")
    result = failed.import_(archive, "--all-platforms", "--snapshotter", "native", check=False)
    assert result.returncode == 1, result
    assert (
        result.stderr.strip().splitlines()[-1] == f"ctr: no match for platform in manifest {written.digest}: not found"
    )

    c = ctr("platform")
    c.import_(archive, "--all-platforms", "--platform", FOREIGN, "--snapshotter", "native")
    assert c.images() == {name: Listed(OCI_INDEX, written.digest, frozenset({norm(FOREIGN)}))}
    assert_unpacked(c, store, image, FOREIGN)


@pytest.mark.parametrize("platform", [HOST, FOREIGN])
def test_manifest_archive_imports_with_platform(oci_store_factory, tmp_path, ctr, salt, platform):
    names = ["example.test/interop/manifest:1.0", "example.test/interop/manifest-docker:1.0"]
    store = oci_store_factory(multi(names[0], salt=salt), multi(names[1], media_types="docker", salt=salt))
    archive = tmp_path / "manifest.tar"
    report = ocitar.save(store.path, names, [platform], index="manifest", output=archive)

    c = ctr()
    c.import_(archive, "--platform", platform, "--snapshotter", "native")
    listed = c.images()
    assert set(listed) == set(names)
    for n, written in zip(names, report.images):
        image = store.image(n)
        assert written.digest == image.manifests[platform]
        row = listed[n]
        assert (row.digest, row.platforms) == (image.manifests[platform], frozenset({norm(platform)}))
        assert row.media_type == (
            OCI_MANIFEST if n == names[0] else "application/vnd.docker.distribution.manifest.v2+json"
        )
        assert_unpacked(c, store, image, platform)
    if platform == HOST:
        checked = c.check_images()
        for n in names:
            blobs = 1 + len(store.image(n).layers[HOST])
            assert checked[n] == Checked(store.image(n).manifests[HOST], f"complete ({blobs}/{blobs})", True)
    else:
        # Without --platform, ctr filters a foreign single-platform image out.
        other = ctr("default")
        result = other.import_(archive, "--snapshotter", "native", check=False)
        assert result.returncode == 1, result
        assert result.stderr.strip().splitlines()[-1] == "ctr: image might be filtered out"
        assert other.images() == {}


# --------------------------------------------------------------------------
# Round trips: ctr images export -> ocitar.load -> ocitar.save -> ctr images import
# --------------------------------------------------------------------------

TWO = ["example.test/interop/round:1.0", "round-tools:0.3"]


@pytest.mark.parametrize(
    ("export_flags", "refs", "exported"),
    [
        (("--all-platforms",), TWO, None),
        (("--platform", FOREIGN), TWO[:1], FOREIGN),
        (("--all-platforms", "--skip-manifest-json"), TWO, None),
        ((), TWO, HOST),  # ctr's default: the host platform
    ],
    ids=["all-platforms-two-images", "one-platform", "skip-manifest-json", "default-host-platform"],
)
def test_ctr_export_round_trips_through_ocitar(oci_store_factory, tmp_path, ctr, salt, export_flags, refs, exported):
    store = oci_store_factory(multi(TWO[0], salt=salt), multi(TWO[1], media_types="docker", salt=salt))
    first = ctr("first")
    seed = tmp_path / "seed.tar"
    ocitar.save(store.path, TWO, output=seed)
    first.import_(seed, "--all-platforms", "--no-unpack")
    before = first.images()

    exported_tar = tmp_path / "exported.tar"
    first("images", "export", *export_flags, exported_tar, *[full_name(r) for r in refs])

    loaded = tmp_path / "loaded"
    report = ocitar.load(exported_tar, store=loaded)
    assert {i.names for i in report.images} == {(r,) for r in refs}
    for i in report.images:
        image = store.image(i.names[0])
        assert i.digest == image.digest
        want = platforms_of(image, subset=(exported,) if exported else None)
        assert {norm(p) for p in i.platforms} == want
        assert {norm(p) for p in i.absent} == platforms_of(image) - want

    archive = tmp_path / "again.tar"
    ocitar.save(loaded, refs, output=archive)
    second = ctr("second")
    if exported is None:
        second.import_(archive, "--all-platforms", "--snapshotter", "native")
    else:
        second.import_(archive, "--platform", exported, "--snapshotter", "native")
    assert second.images() == {full_name(r): before[full_name(r)] for r in refs}
    for r in refs:
        assert_unpacked(second, store, store.image(r), exported or HOST)


def test_docker_archive_from_skopeo_loads_and_imports_after_save(oci_store_factory, tmp_path, ctr, skopeo):
    """A Docker-format archive (skopeo's docker-archive: uncompressed layers, no index.json) loaded by
    ocitar is saved as an archive containerd imports and unpacks, keeping the manifest ocitar built."""
    store = oci_store_factory(
        Image(
            names=("img0",),
            ref_name_only=True,
            platforms=(Platform(FOREIGN, layers=(Layer(2048, "docker-archive-a"), Layer(1024, "docker-archive-b"))),),
        )
    )
    image = store.image("img0")
    docker_archive = tmp_path / "docker.tar"
    run(
        skopeo,
        "--tmpdir",
        tmp_path,
        *override(FOREIGN),
        "copy",
        "-q",
        f"oci:{store.path}:img0",
        f"docker-archive:{docker_archive}:example.test/interop/docker:1",
    )

    loaded = tmp_path / "loaded"
    built = ocitar.load(docker_archive, store=loaded).images[0]
    archive = tmp_path / "again.tar"
    ocitar.save(loaded, "example.test/interop/docker:1", output=archive)
    c = ctr()
    c.import_(archive, "--platform", FOREIGN, "--snapshotter", "native")
    assert c.images() == {
        "example.test/interop/docker:1": Listed(
            "application/vnd.docker.distribution.manifest.v2+json", built.digest, frozenset({norm(FOREIGN)})
        )
    }
    assert_unpacked(c, store, image, FOREIGN)


def test_compressed_archive_imports_once_decompressed(oci_store_factory, tmp_path, ctr, salt):
    """``ctr images import`` reads plain tar only: a gzip archive fails as is, and imports through gunzip."""
    name = "example.test/interop/compressed:1.0"
    store = oci_store_factory(multi(name, salt=salt))
    archive = tmp_path / "keep.tar.gz"
    ocitar.save(store.path, name, output=archive, compression="gzip")

    c = ctr()
    result = c.import_(archive, "--all-platforms", "--snapshotter", "native", check=False)
    assert result.returncode == 1, result
    assert result.stderr.strip().splitlines()[-1] == "ctr: archive/tar: invalid tar header"
    assert c.images() == {}

    command = [
        "ctr",
        "-a",
        c.socket,
        "-n",
        c.namespace,
        "images",
        "import",
        "--all-platforms",
        "--snapshotter",
        "native",
    ]
    piped = subprocess.run(
        [*command, "-"],
        input=gzip.decompress(archive.read_bytes()),
        capture_output=True,
        timeout=300,
    )
    assert piped.returncode == 0, piped
    assert c.images() == {name: Listed(OCI_INDEX, store.image(name).digest, platforms_of(store.image(name)))}
    assert_unpacked(c, store, store.image(name), HOST)
