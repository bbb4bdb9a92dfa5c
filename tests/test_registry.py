"""Registries as stores, against a real registry (Debian's docker-registry, CNCF distribution 2.8) in four
modes: anonymous, htpasswd, htpasswd over TLS, bearer tokens. Round trips, shapes, the sparse-push rule,
auth sources and their order, faults injected by a loopback proxy, mounts, and credentials never shown."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ocitar
import pytest
from _registry import (
    PASSWORD,
    USER,
    Answer,
    FaultProxy,
    HostileServer,
    RegistryServer,
    access_log,
    answer,
    catalog,
    repeated,
    start_registry,
)
from conftest import _tool, run
from ocitar.testing import BuiltStore, Image, Layer, Platform, build_store

MiB = 1 << 20


@pytest.fixture(autouse=True)
def no_ambient_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credential lookups see only what a test writes (never the user's own files)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / ".docker"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)


def _start(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[RegistryServer]:
    binary = _tool("docker-registry")
    htpasswd = _tool("htpasswd") if mode in ("htpasswd", "tls") else None
    server = start_registry(binary, tmp_path_factory.mktemp(f"registry-{mode}"), mode, htpasswd)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def anonymous(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    yield from _start(tmp_path_factory, "anonymous")


@pytest.fixture(scope="session")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    yield from _start(tmp_path_factory, "htpasswd")


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    yield from _start(tmp_path_factory, "tls")


@pytest.fixture(scope="session")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    yield from _start(tmp_path_factory, "token")


_counter = [0]


def repo(prefix: str = "t") -> str:
    """A repository name no other test uses."""
    _counter[0] += 1
    return f"{prefix}{os.getpid()}-{_counter[0]}"


def demo_store(path: Path, name: str = "demo:1.0", layer: int = 2048) -> BuiltStore:
    return build_store(
        path,
        [
            Image(
                names=[name],
                platforms=[
                    Platform("linux/amd64", layers=(Layer(layer, seed=f"{name}-amd64"),), attestation=True),
                    Platform("linux/arm64", layers=(Layer(layer, seed=f"{name}-arm64"),), attestation=True),
                ],
            )
        ],
    )


def archive_of(tmp_path: Path, name: str = "demo:1.0", layer: int = 2048) -> Path:
    store = tmp_path / f"store-{name.replace(':', '-').replace('/', '-')}"
    demo_store(store, name, layer)
    out = tmp_path / f"{store.name}.tar"
    ocitar.save(store, name, output=out)
    return out


def blob_names(archive: Path) -> set[str]:
    with tarfile.open(archive) as t:
        return {m.name for m in t.getmembers() if m.isfile() and m.name.startswith("blobs/sha256/")}


def index_entry(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as t:
        f = t.extractfile("index.json")
        assert f is not None
        entries: list[dict[str, Any]] = json.load(f)["manifests"]
    assert len(entries) == 1
    return entries[0]


def layer_digests(archive: Path) -> set[str]:
    """The layers every manifest of an archive lists."""
    out: set[str] = set()
    for name in blob_names(archive):
        try:
            doc = json.loads(member(archive, name))
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.update(layer["digest"] for layer in doc.get("layers") or [])
    return out


def member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as t:
        f = t.extractfile(name)
        assert f is not None
        return f.read()


# Round trips -------------------------------------------------------------------------------------------


def test_store_archive_registry_archive_keeps_the_image_digest_and_blobs(tmp_path: Path, anonymous: RegistryServer) -> None:
    a = archive_of(tmp_path)
    r = repo()
    reg = ocitar.Registry(f"{anonymous.host}/{r}")
    report = ocitar.load(a, store=reg)
    top = index_entry(a)["digest"]
    assert report.images[0].digest == top
    assert report.images[0].names == (f"{anonymous.host}/{r}/library/demo:1.0",)
    # Configs and layers go as blobs (2 platforms + 2 attestations: 8); the index and 4 manifests as manifests.
    assert report.blobs_written == len(blob_names(a)) - 5 == 8
    b = tmp_path / "b.tar"
    saved = ocitar.save(reg, "library/demo:1.0", output=b)
    assert saved.images[0].digest == top
    assert blob_names(b) == blob_names(a)
    entry = index_entry(b)
    assert entry["digest"] == top
    assert entry["annotations"]["io.containerd.image.name"] == f"{anonymous.host}/{r}/library/demo:1.0"
    # The same bytes through a docker:// string, saved twice: deterministic.
    c = tmp_path / "c.tar"
    ocitar.save(f"docker://{anonymous.host}/{r}", "library/demo:1.0", output=c)
    assert c.read_bytes() == b.read_bytes()
    assert ocitar.save(reg, "library/demo:1.0") == b.read_bytes()


def test_what_ocitar_pushes_skopeo_reads_byte_for_byte(tmp_path: Path, anonymous: RegistryServer) -> None:
    skopeo = _tool("skopeo")
    a = archive_of(tmp_path)
    r = repo()
    ocitar.load(a, store=ocitar.Registry(f"{anonymous.host}/{r}"))
    raw = run(skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{anonymous.host}/{r}/library/demo:1.0")
    top = index_entry(a)["digest"]
    assert raw.stdout.encode() == member(a, f"blobs/sha256/{top[7:]}")


def test_what_skopeo_copy_all_pushed_ocitar_saves(tmp_path: Path, anonymous: RegistryServer) -> None:
    skopeo = _tool("skopeo")
    built = demo_store(tmp_path / "store")
    r = repo()
    run(skopeo, "copy", "--all", "--dest-tls-verify=false", f"oci:{tmp_path / 'store'}:1.0", f"docker://{anonymous.host}/{r}:1.0")
    out = tmp_path / "out.tar"
    report = ocitar.save(ocitar.Registry(anonymous.host), f"{r}:1.0", output=out)
    assert report.images[0].digest == built.image("demo:1.0").digest
    assert report.images[0].names == (f"{anonymous.host}/{r}:1.0",)
    ocitar.verify(out)
    direct = tmp_path / "direct.tar"
    ocitar.save(tmp_path / "store", "demo:1.0", output=direct)
    assert blob_names(out) == blob_names(direct)


def test_inspect_shows_a_registry_images_platforms(tmp_path: Path, anonymous: RegistryServer) -> None:
    a = archive_of(tmp_path)
    r = repo()
    ocitar.load(a, store=ocitar.Registry(f"{anonymous.host}/{r}"))
    inv = ocitar.inspect(f"docker://{anonymous.host}/{r}/library/demo:1.0")
    assert inv.kind == "registry"
    image = inv.images[0]
    assert image.digest == index_entry(a)["digest"]
    assert [p.platform for p in image.platforms] == ["linux/amd64", "linux/arm64"]
    assert all(p.present for p in image.platforms)
    # No layer was downloaded: the registry log has no GET of a layer blob.
    gets = [line for line in anonymous.log_text().splitlines() if '"GET /v2/' + r in line and "/blobs/" in line]
    assert gets  # configs are read (for platforms) ...
    assert not any(layer in line for line in gets for layer in layer_digests(a))  # ... layers never
    assert ocitar.inspect(ocitar.Registry(f"{anonymous.host}/{r}"), "library/demo:1.0").images[0].digest == image.digest


# Save shapes from a registry ---------------------------------------------------------------------------


@pytest.fixture
def pushed(tmp_path: Path, anonymous: RegistryServer) -> tuple[ocitar.Registry, Path]:
    """A store pushed to the registry with skopeo-free ocitar; returns the registry and the store."""
    demo_store(tmp_path / "store")
    a = tmp_path / "a.tar"
    ocitar.save(tmp_path / "store", "demo:1.0", output=a)
    reg = ocitar.Registry(f"{anonymous.host}/{repo()}")
    ocitar.load(a, store=reg)
    return reg, tmp_path / "store"


@pytest.mark.parametrize("index", ["keep", "subset", "manifest"])
def test_save_shapes_from_a_registry_are_those_from_a_directory(
    tmp_path: Path, pushed: tuple[ocitar.Registry, Path], index: str
) -> None:
    reg, store = pushed
    kw: dict[str, Any] = {"platforms": ["linux/arm64"], "index": index}
    from_reg = ocitar.save(reg, "library/demo:1.0", output=tmp_path / "r.tar", **kw)
    from_dir = ocitar.save(store, "demo:1.0", output=tmp_path / "d.tar", **kw)
    assert from_reg.images[0].digest == from_dir.images[0].digest
    assert from_reg.images[0].platforms == from_dir.images[0].platforms == ("linux/arm64",)
    assert from_reg.images[0].attestations == from_dir.images[0].attestations
    assert blob_names(tmp_path / "r.tar") == blob_names(tmp_path / "d.tar")
    assert member(tmp_path / "r.tar", "manifest.json") != b"" and json.loads(member(tmp_path / "r.tar", "manifest.json"))


def test_save_from_a_registry_requires_every_platform_and_writes_nothing(
    tmp_path: Path, pushed: tuple[ocitar.Registry, Path]
) -> None:
    reg, _ = pushed
    out = tmp_path / "out.tar"
    with pytest.raises(ocitar.PlatformNotFoundError, match="linux/s390x"):
        ocitar.save(reg, "library/demo:1.0", ["linux/s390x"], output=out)
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == sorted(p for p in os.listdir(tmp_path) if not p.startswith("."))


def test_a_missing_tag_or_repository_is_image_not_found(tmp_path: Path, anonymous: RegistryServer) -> None:
    with pytest.raises(ocitar.ImageNotFoundError, match="nothere"):
        ocitar.save(ocitar.Registry(anonymous.host), "nothere:1.0", output=tmp_path / "x.tar")
    assert not (tmp_path / "x.tar").exists()


def test_several_images_by_tag_and_digest_in_one_archive(tmp_path: Path, pushed: tuple[ocitar.Registry, Path]) -> None:
    reg, store = pushed
    digest = ocitar.inspect(store).images[0].digest
    out = tmp_path / "two.tar"
    report = ocitar.save(reg, ["library/demo:1.0", f"library/demo@{digest}"], output=out)
    assert [i.digest for i in report.images] == [digest]
    ocitar.verify(out)


# Load into a registry ----------------------------------------------------------------------------------


def test_a_would_be_sparse_push_is_refused_before_any_upload(tmp_path: Path, anonymous: RegistryServer) -> None:
    a = archive_of(tmp_path)
    r = repo("sparse")
    before = catalog(anonymous)
    with pytest.raises(ocitar.PlatformNotFoundError, match="index='subset'") as refused:
        ocitar.load(a, ["linux/arm64"], store=ocitar.Registry(f"{anonymous.host}/{r}"))
    assert refused.value.missing == ("linux/amd64",)  # the platform left out, never its attestation
    assert catalog(anonymous) == before
    report = ocitar.load(a, ["linux/arm64"], store=ocitar.Registry(f"{anonymous.host}/{r}"), index="subset")
    assert report.images[0].platforms == ("linux/arm64",)
    assert report.images[0].digest != index_entry(a)["digest"]
    inv = ocitar.inspect(f"docker://{anonymous.host}/{r}/library/demo:1.0")
    assert [p.platform for p in inv.images[0].platforms] == ["linux/arm64"]
    one = ocitar.load(a, ["linux/amd64"], store=ocitar.Registry(f"{anonymous.host}/{r}-m"), index="manifest")
    assert one.images[0].media_type == "application/vnd.oci.image.manifest.v1+json"


def test_index_applies_to_registries_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="registry"):
        ocitar.load(tmp_path / "none.tar", store=tmp_path / "store", index="subset")


def test_shared_layers_are_mounted_across_repositories(tmp_path: Path, token: RegistryServer) -> None:
    shared = Layer(4096, seed="shared")
    store = tmp_path / "store"
    build_store(
        store,
        [
            Image(names=["one/app:1"], platforms=[Platform("linux/amd64", layers=(shared,))]),
            Image(names=["two/app:1"], platforms=[Platform("linux/amd64", layers=(shared, Layer(10, seed="x")))]),
        ],
    )
    a = tmp_path / "a.tar"
    ocitar.save(store, ["one/app:1", "two/app:1"], output=a)
    r = repo("mnt")
    report = ocitar.load(a, store=ocitar.Registry(f"{token.host}/{r}", auth=(USER, PASSWORD)))
    assert report.blobs_mounted == 1
    log = token.log_text()
    mounts = [line for line in log.splitlines() if "mount=" in line and '" 201 ' in line and line.startswith("127.")]
    assert len(mounts) == 1
    assert not any('"PATCH /v2/' + r in line for line in log.splitlines())


def test_an_unnamed_image_is_pushed_by_digest_into_the_base_repository(tmp_path: Path, anonymous: RegistryServer) -> None:
    build_store(tmp_path / "store", [Image(names=[], platforms=["linux/amd64"])])
    a = tmp_path / "a.tar"
    ocitar.save(tmp_path / "store", ocitar.inspect(tmp_path / "store").images[0].digest, output=a)
    r = repo("unnamed")
    report = ocitar.load(a, store=ocitar.Registry(f"{anonymous.host}/{r}"))
    assert report.images[0].names == ()
    got = ocitar.save(ocitar.Registry(anonymous.host), f"{r}@{report.images[0].digest}", output=tmp_path / "b.tar")
    assert got.images[0].digest == report.images[0].digest
    with pytest.raises(ValueError, match="no name"):
        ocitar.load(a, store=ocitar.Registry(anonymous.host))


# Auth --------------------------------------------------------------------------------------------------


def _docker_config(home: Path, doc: dict[str, Any]) -> None:
    d = home / ".docker"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(doc))


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_without_credentials_is_an_authentication_error(tmp_path: Path, basic: RegistryServer) -> None:
    with pytest.raises(ocitar.AuthenticationError) as e:
        ocitar.inspect(f"docker://{basic.host}/x/y:1")
    assert e.value.status == 401
    assert e.value.url.startswith(f"http://{basic.host}/v2/")
    assert isinstance(e.value, ocitar.RegistryError)


def test_basic_auth_round_trip(tmp_path: Path, basic: RegistryServer) -> None:
    a = archive_of(tmp_path)
    reg = ocitar.Registry(f"{basic.host}/{repo()}", auth=(USER, PASSWORD))
    ocitar.load(a, store=reg)
    assert ocitar.save(reg, "library/demo:1.0", output=tmp_path / "b.tar").images[0].digest == index_entry(a)["digest"]
    assert PASSWORD not in repr(reg)


def test_auth_order_helper_then_auths_then_containers(tmp_path: Path, basic: RegistryServer, monkeypatch: pytest.MonkeyPatch) -> None:
    a = archive_of(tmp_path)
    home = Path(os.environ["HOME"])
    target = f"{basic.host}/{repo()}"
    # containers' auth.json alone: used.
    (home / ".config/containers").mkdir(parents=True)
    (home / ".config/containers/auth.json").write_text(json.dumps({"auths": {basic.host: {"auth": _auth(USER, PASSWORD)}}}))
    ocitar.load(a, store=ocitar.Registry(target))
    # docker's config.json `auths` wins over it: a wrong password there fails.
    _docker_config(home, {"auths": {basic.host: {"auth": _auth(USER, "wrong")}}})
    with pytest.raises(ocitar.AuthenticationError):
        ocitar.inspect(f"docker://{target}/library/demo:1.0")
    # A credential helper for the host wins over `auths`.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-x"
    helper.write_text(
        "#!/bin/sh\nread host\n"
        f'[ "$host" = "{basic.host}" ] || {{ echo "credentials not found in native keychain"; exit 1; }}\n'
        f"echo '{{\"ServerURL\":\"'$host'\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    _docker_config(home, {"credHelpers": {basic.host: "x"}, "auths": {basic.host: {"auth": _auth(USER, "wrong")}}})
    assert ocitar.inspect(f"docker://{target}/library/demo:1.0").images
    # REGISTRY_AUTH_FILE wins over docker's config.
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {basic.host: {"auth": _auth(USER, "wrong-again")}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(authfile))
    with pytest.raises(ocitar.AuthenticationError) as e:
        ocitar.inspect(f"docker://{target}/library/demo:1.0")
    assert "wrong-again" not in str(e.value) and PASSWORD not in str(e.value)
    # An explicit auth= wins over everything.
    assert ocitar.inspect(ocitar.Registry(target, auth=(USER, PASSWORD)), "library/demo:1.0").images


def test_a_credential_helper_printing_without_end_is_stopped(
    tmp_path: Path, basic: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-loud"
    helper.write_text("#!/bin/sh\nexec yes '{\"Username\": \"u\", \"Secret\": \"s\"'\n")
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    _docker_config(Path(os.environ["HOME"]), {"credHelpers": {basic.host: "loud"}})
    with pytest.raises(ocitar.AuthenticationError, match="credential helper printed more than 20971520 bytes"):
        ocitar.inspect(f"docker://{basic.host}/{repo()}/library/demo:1.0")


def test_tls_with_ca_file(tmp_path: Path, tls: RegistryServer) -> None:
    a = archive_of(tmp_path)
    assert tls.ca_file is not None
    reg = ocitar.Registry(f"{tls.host}/{repo()}", auth=(USER, PASSWORD), ca_file=tls.ca_file)
    ocitar.load(a, store=reg)
    assert ocitar.save(reg, "library/demo:1.0", output=tmp_path / "b.tar").images[0].digest == index_entry(a)["digest"]
    with pytest.raises(ocitar.RegistryError):
        ocitar.inspect(ocitar.Registry(tls.host, auth=(USER, PASSWORD)), "x/y:1")


def test_bearer_tokens_identity_token_and_refetch(tmp_path: Path, token: RegistryServer) -> None:
    assert token.token is not None
    a = archive_of(tmp_path)
    target = f"{token.host}/{repo()}"
    ocitar.load(a, store=ocitar.Registry(target, auth=(USER, PASSWORD)))
    # docker's identitytoken: an OAuth2 refresh-token POST.
    _docker_config(Path(os.environ["HOME"]), {"auths": {token.host: {"identitytoken": token.token.refresh_token}}})
    assert ocitar.inspect(f"docker://{target}/library/demo:1.0").images
    # A token that expires mid-operation is fetched again.
    token.token.ttl = 1
    before = token.token.requests
    ocitar.save(ocitar.Registry(target, auth=(USER, PASSWORD)), "library/demo:1.0", output=tmp_path / "b.tar")
    assert token.token.requests > before
    token.token.ttl = 300


def test_credentials_never_appear(tmp_path: Path, basic: RegistryServer, capfd: pytest.CaptureFixture[str]) -> None:
    a = archive_of(tmp_path)
    reg = ocitar.Registry(f"{basic.host}/{repo()}", auth=(USER, PASSWORD))
    report = ocitar.load(a, store=reg)
    texts = [repr(reg), repr(report), json.dumps(report.to_dict()), report._repr_html_()]
    with pytest.raises(ocitar.AuthenticationError) as e:
        ocitar.load(a, store=ocitar.Registry(basic.host + "/x", auth=(USER, PASSWORD + "-bad")))
    texts += [str(e.value), repr(e.value), e.value.url]
    cli = subprocess.run(
        ["ocitar", "load", "--store", f"docker://{basic.host}/y", "-i", str(a), "--username", USER, "--password-stdin"],
        input=PASSWORD + "-bad\n",
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 1
    helps = [subprocess.run(["ocitar", c, "--help"], capture_output=True, text=True).stdout for c in ("save", "load")]
    texts += [cli.stdout, cli.stderr, *helps, basic.log_text()]
    out, err = capfd.readouterr()
    texts += [out, err]
    for t in texts:
        assert PASSWORD not in t
        assert base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in t


def test_cli_save_and_load_with_a_registry(tmp_path: Path, basic: RegistryServer) -> None:
    a = archive_of(tmp_path)
    store = f"docker://{basic.host}/{repo()}"
    login = ["--username", USER, "--password-stdin"]
    p = subprocess.run(
        ["ocitar", "load", "--store", store, "-i", str(a), "--index", "subset", "--platform", "linux/arm64", *login],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"Loaded image: {store[len('docker://') :]}/library/demo:1.0")
    out = tmp_path / "b.tar"
    p = subprocess.run(
        ["ocitar", "save", "--store", store, "-o", str(out), "library/demo:1.0", *login],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    ocitar.verify(out)


# Faults ------------------------------------------------------------------------------------------------


def save_with_a_cut(
    tmp_path: Path, registry: RegistryServer, strip_range: bool, layer: int = 3 * MiB
) -> tuple[Path, list[tuple[str, int]], dict[str, int]]:
    """Save an image of `layer`-byte layers through a proxy that cuts the download once past 1 MiB (and, with
    `strip_range`, drops the Range header of every request). Returns the archive loaded, the registry's
    own log of blob GETs (path, status) and what the proxy did (`cut`, `ranged` requests seen,
    `stripped`); the saved archive is checked against the loaded one."""
    a = archive_of(tmp_path, layer=layer)
    r = repo("resume")
    ocitar.load(a, store=ocitar.Registry(f"{registry.host}/{r}"))
    state = {"cut": 0, "ranged": 0, "stripped": 0}

    def fault(index: int, direction: str, data: bytes, total: int) -> bytes | None:
        if direction == "up":
            state["ranged"] += b"\r\nrange: bytes=" in data.lower()
            if not strip_range:
                return data
            stripped = re.sub(rb"(?i)\r\nrange: bytes=\d+-\r\n", b"\r\n", data)
            state["stripped"] += stripped != data
            return stripped
        if total > MiB and not state["cut"]:
            state["cut"] = 1
            return None
        return data

    proxy = FaultProxy(registry.host, fault)
    out = tmp_path / "b.tar"
    try:
        ocitar.save(ocitar.Registry(f"{proxy.host}/{r}", jobs=1), "library/demo:1.0", output=out)
    finally:
        proxy.stop()
    assert blob_names(out) == blob_names(a)
    ocitar.verify(out)
    gets = [(path, status) for method, path, status in access_log(registry, r) if method == "GET" and "/blobs/" in path]
    return a, gets, state


def test_a_download_cut_mid_blob_resumes_with_range(tmp_path: Path, anonymous: RegistryServer) -> None:
    _, gets, state = save_with_a_cut(tmp_path, anonymous, strip_range=False)
    assert state["cut"] and state["ranged"] == 1
    # The registry itself answered one ranged GET, of a blob it had sent from the start before.
    ranged = [path for path, status in gets if status == 206]
    assert len(ranged) == 1 and (ranged[0], 200) in gets


def test_a_whole_body_answering_a_range_request_restarts_the_blob(tmp_path: Path, anonymous: RegistryServer) -> None:
    # The proxy drops the Range header: the registry answers the resumed GET with 200 and the whole blob.
    a, gets, state = save_with_a_cut(tmp_path, anonymous, strip_range=True)
    assert state["cut"] and state["stripped"] == 1
    # No ranged answer was given, and the layer that was cut was sent whole twice (each other once).
    assert all(status == 200 for _, status in gets)
    layers = layer_digests(a)
    sent = Counter(path for path, _ in gets if path.rsplit("/", 1)[1] in layers)
    assert len(sent) == len(layers) and sorted(sent.values()) == [1] * (len(layers) - 1) + [2]


def test_a_byte_flipped_in_transit_is_a_digest_mismatch_and_no_file(tmp_path: Path, anonymous: RegistryServer) -> None:
    a = archive_of(tmp_path, layer=2 * MiB)
    r = repo("flip")
    ocitar.load(a, store=ocitar.Registry(f"{anonymous.host}/{r}"))

    def flip(index: int, direction: str, data: bytes, total: int) -> bytes:
        if direction == "down" and total > MiB:
            return bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    proxy = FaultProxy(anonymous.host, flip)
    out = tmp_path / "b.tar"
    try:
        with pytest.raises(ocitar.DigestMismatchError):
            ocitar.save(ocitar.Registry(f"{proxy.host}/{r}"), "library/demo:1.0", output=out)
    finally:
        proxy.stop()
    assert sorted(os.listdir(tmp_path)) == sorted(p for p in os.listdir(tmp_path) if not p.startswith(".")) and not out.exists()


# A layer of 6 MiB is hashed on a second thread while it is received (blobs under 4 MiB, like those above,
# on the thread that receives them): a cut mid-blob still resumes, a flipped byte is refused with no file.
def test_a_large_layer_cut_mid_blob_resumes(tmp_path: Path, anonymous: RegistryServer) -> None:
    _, gets, state = save_with_a_cut(tmp_path, anonymous, strip_range=False, layer=6 * MiB)
    assert state["cut"] and state["ranged"] == 1
    assert len([path for path, status in gets if status == 206]) == 1


def test_a_byte_flipped_in_a_large_layer_is_a_digest_mismatch_and_no_file(tmp_path: Path, anonymous: RegistryServer) -> None:
    a = archive_of(tmp_path, layer=6 * MiB)
    r = repo("flip")
    ocitar.load(a, store=ocitar.Registry(f"{anonymous.host}/{r}"))

    def flip(index: int, direction: str, data: bytes, total: int) -> bytes:
        if direction == "down" and total > 5 * MiB:
            return bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    proxy = FaultProxy(anonymous.host, flip)
    out = tmp_path / "b.tar"
    before = sorted(os.listdir(tmp_path))
    try:
        with pytest.raises(ocitar.DigestMismatchError):
            ocitar.save(ocitar.Registry(f"{proxy.host}/{r}"), "library/demo:1.0", output=out)
    finally:
        proxy.stop()
    assert sorted(os.listdir(tmp_path)) == before and not out.exists()


class SideBySide:
    """A `FaultProxy` fault holding the first request of each kind (`kinds`: tests of a request's first
    bytes) until a second of that kind arrives on another connection, 10 s at most; what waited out the
    10 s is in `alone`."""

    def __init__(self, *kinds: Callable[[bytes], bool]) -> None:
        self.kinds = [(kind, set[int](), threading.Event()) for kind in kinds]
        self.alone: list[bytes] = []
        self.lock = threading.Lock()

    def __call__(self, index: int, direction: str, data: bytes, total: int) -> bytes:
        for kind, seen, both in self.kinds:
            if direction == "up" and kind(data):
                with self.lock:
                    seen.add(index)
                    if len(seen) >= 2:
                        both.set()
                if not both.wait(timeout=10):
                    self.alone.append(data.split(b"\r\n", 1)[0])
        return data

    def held_together(self) -> bool:
        """Every kind came at least twice at once, and nothing waited alone."""
        return all(both.is_set() for _, _, both in self.kinds) and not self.alone


def test_the_manifests_of_an_index_are_pushed_side_by_side_and_before_it(tmp_path: Path, anonymous: RegistryServer) -> None:
    # The registry syncs every manifest it stores: the platform and attestation manifests go up at once.
    # The proxy holds the first manifest PUT until a second one arrives on another connection (10 s at most).
    a = archive_of(tmp_path)
    r = repo("side")
    hold = SideBySide(lambda d: d.startswith(b"PUT ") and b"/manifests/sha256:" in d and b"image.manifest.v1+json" in d)
    proxy = FaultProxy(anonymous.host, hold)
    try:
        ocitar.load(a, store=ocitar.Registry(f"{proxy.host}/{r}"))
    finally:
        proxy.stop()
    assert hold.held_together(), f"a manifest PUT went up alone: {hold.alone}"
    puts = [path for method, path, status in access_log(anonymous, r) if method == "PUT" and "/manifests/" in path]
    top = index_entry(a)["digest"]
    assert puts.index(f"/v2/{r}/library/demo/manifests/{top}") == len(puts) - 2 and puts[-1].endswith("/manifests/1.0")


def test_the_documents_an_index_lists_are_fetched_side_by_side(tmp_path: Path, anonymous: RegistryServer) -> None:
    # Over a network every document is a round trip: the manifests an index lists are fetched together,
    # then the configs they name. The proxy holds the first GET of each kind until a second one arrives on
    # another connection (10 s at most).
    a = archive_of(tmp_path)
    r = repo("ahead")
    ocitar.load(a, store=ocitar.Registry(f"{anonymous.host}/{r}"))
    get = lambda kind: lambda d: d.startswith(b"GET ") and kind in d.split(b"\r\n", 1)[0]  # noqa: E731
    hold = SideBySide(get(b"/manifests/sha256:"), get(b"/blobs/sha256:"))
    proxy = FaultProxy(anonymous.host, hold)
    try:
        inv = ocitar.inspect(f"docker://{proxy.host}/{r}/library/demo:1.0")
    finally:
        proxy.stop()
    assert hold.held_together(), f"fetched one at a time: {hold.alone}"
    assert [p.platform for p in inv.images[0].platforms] == ["linux/amd64", "linux/arm64"]
    assert inv.images[0].digest == index_entry(a)["digest"]


def test_an_upload_cut_once_succeeds_on_retry(tmp_path: Path, anonymous: RegistryServer) -> None:
    a = archive_of(tmp_path, layer=2 * MiB)
    state = {"cut": 0}

    def cut_once(index: int, direction: str, data: bytes, total: int) -> bytes | None:
        if direction == "up" and total > MiB and state["cut"] == 0:
            state["cut"] += 1
            return None
        return data

    proxy = FaultProxy(anonymous.host, cut_once)
    r = repo("upcut")
    try:
        report = ocitar.load(a, store=ocitar.Registry(f"{proxy.host}/{r}", jobs=1))
    finally:
        proxy.stop()
    assert state["cut"] == 1
    assert report.images[0].digest == index_entry(a)["digest"]
    b = tmp_path / "b.tar"
    ocitar.save(ocitar.Registry(f"{anonymous.host}/{r}"), "library/demo:1.0", output=b)
    assert blob_names(b) == blob_names(a)


def test_an_upload_cut_every_time_fails_with_no_tag(tmp_path: Path, anonymous: RegistryServer) -> None:
    a = archive_of(tmp_path, layer=2 * MiB)

    def always(index: int, direction: str, data: bytes, total: int) -> bytes | None:
        return None if direction == "up" and total > MiB else data

    proxy = FaultProxy(anonymous.host, always)
    r = repo("upfail")
    try:
        with pytest.raises(ocitar.RegistryError) as e:
            ocitar.load(a, store=ocitar.Registry(f"{proxy.host}/{r}", jobs=1))
    finally:
        proxy.stop()
    assert e.value.status == 0 and e.value.moved == ()
    with pytest.raises(ocitar.ImageNotFoundError):
        ocitar.inspect(f"docker://{anonymous.host}/{r}/library/demo:1.0")


def test_429_with_retry_after_is_honoured(tmp_path: Path, anonymous: RegistryServer) -> None:
    a = archive_of(tmp_path)
    r = repo("limit")
    ocitar.load(a, store=ocitar.Registry(f"{anonymous.host}/{r}"))
    state = {"sent": 0}
    answer = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"

    def limit(index: int, direction: str, data: bytes, total: int) -> bytes | None:
        if direction == "down" and total == 0 and state["sent"] == 0 and data.startswith(b"HTTP/1.1 200"):
            state["sent"] += 1
            return answer  # the real answer is dropped: the connection ends after it
        return data

    proxy = FaultProxy(anonymous.host, limit)
    try:
        inv = ocitar.inspect(ocitar.Registry(f"{proxy.host}/{r}"), "library/demo:1.0")
    finally:
        proxy.stop()
    assert state["sent"] == 1 and inv.images


def test_registry_and_token_reprs_hide_secrets_and_arguments_are_checked() -> None:
    reg = ocitar.Registry("docker://r.example:5000/mirror/", auth=("me", PASSWORD), jobs=2)
    assert repr(reg) == "Registry('r.example:5000/mirror', auth=***, jobs=2)"
    assert reg.base == "r.example:5000/mirror" and reg.jobs == 2 and not reg.insecure
    assert repr(ocitar.Token(PASSWORD)) == "Token(***)"
    with pytest.raises(TypeError, match="auth"):
        ocitar.Registry("r.example", auth=("only-user",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="jobs"):
        ocitar.Registry("r.example", jobs=0)
    with pytest.raises(ValueError, match="registry base"):
        ocitar.inspect(ocitar.Registry("mirror"), "x:1")


def test_plain_http_only_for_loopback_hosts(tmp_path: Path, anonymous: RegistryServer) -> None:
    # `localhost.localdomain`-style names that are not loopback by name get no plain-HTTP fallback.
    with pytest.raises(ocitar.RegistryError, match="loopback hosts or with insecure=True") as e:
        ocitar.inspect(ocitar.Registry("ocitar-test.invalid:5000"), "x:1")
    assert e.value.status == 0
    port = anonymous.host.rsplit(":", 1)[1]
    with pytest.raises(ocitar.ImageNotFoundError):
        ocitar.inspect(ocitar.Registry(f"localhost:{port}"), "nothing/here:1")


def test_a_failure_among_the_tags_lists_the_tags_already_moved(tmp_path: Path, anonymous: RegistryServer) -> None:
    build_store(tmp_path / "store", [Image(names=["demo:1.0", "demo:2.0"], platforms=["linux/amd64"])])
    a = tmp_path / "a.tar"
    ocitar.save(tmp_path / "store", ["demo:1.0", "demo:2.0"], output=a)
    r = repo("tags")
    # An older image already tagged 1.0 there: its digest is reported as the previous one.
    build_store(tmp_path / "old", [Image(names=["demo:1.0"], platforms=["linux/arm64"])])
    old = ocitar.load(ocitar.save(tmp_path / "old", "demo:1.0"), store=ocitar.Registry(f"{anonymous.host}/{r}"))

    def refuse_second_tag(index: int, direction: str, data: bytes, total: int) -> bytes | None:
        return None if direction == "up" and b"/library/demo/manifests/2.0 HTTP" in data and data.startswith(b"PUT") else data

    proxy = FaultProxy(anonymous.host, refuse_second_tag)
    try:
        with pytest.raises(ocitar.RegistryError) as e:
            ocitar.load(a, store=ocitar.Registry(f"{proxy.host}/{r}"))
    finally:
        proxy.stop()
    assert e.value.moved == (f"{proxy.host}/{r}/library/demo:1.0 (was {old.images[0].digest})",)
    assert "tags already moved" in str(e.value)
    now = ocitar.inspect(f"docker://{anonymous.host}/{r}/library/demo:1.0").images[0].digest
    assert now == ocitar.inspect(tmp_path / "store").images[0].digest != old.images[0].digest
    with pytest.raises(ocitar.ImageNotFoundError):
        ocitar.inspect(f"docker://{anonymous.host}/{r}/library/demo:2.0")


def test_a_token_that_has_expired_is_fetched_again(tmp_path: Path, token: RegistryServer) -> None:
    assert token.token is not None
    a = archive_of(tmp_path)
    target = f"{token.host}/{repo('exp')}"
    reg = ocitar.Registry(target, auth=(USER, PASSWORD))
    ocitar.load(a, store=reg)
    # The next token handed out expired two minutes ago (beyond the registry's leeway): it answers 401,
    # and ocitar fetches a new token once and goes on.
    token.token.expire_next = 1
    before = token.token.requests
    out = tmp_path / "b.tar"
    ocitar.save(reg, "library/demo:1.0", output=out)
    assert token.token.expire_next == 0 and token.token.requests - before == 2
    ocitar.verify(out)
    # Expired every time: an AuthenticationError after the one refetch.
    token.token.expire_next = 2
    with pytest.raises(ocitar.AuthenticationError) as e:
        ocitar.inspect(reg, "library/demo:1.0")
    assert e.value.status == 401 and token.token.expire_next == 0


def test_cli_inspect_a_registry_image(tmp_path: Path, anonymous: RegistryServer) -> None:
    a = archive_of(tmp_path)
    r = repo("cli")
    ocitar.load(a, store=ocitar.Registry(f"{anonymous.host}/{r}"))
    p = run("ocitar", "inspect", "--format", "json", f"docker://{anonymous.host}/{r}/library/demo:1.0")
    doc = json.loads(p.stdout)
    assert doc["kind"] == "registry"
    assert [x["platform"] for x in doc["images"][0]["platforms"]] == ["linux/amd64", "linux/arm64"]


def test_cli_authfile_and_ca_file(tmp_path: Path, tls: RegistryServer) -> None:
    assert tls.ca_file is not None
    a = archive_of(tmp_path)
    target = f"{tls.host}/{repo('authfile')}"
    ocitar.load(a, store=ocitar.Registry(target, auth=(USER, PASSWORD), ca_file=tls.ca_file))
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {tls.host: {"auth": _auth(USER, PASSWORD)}}}))
    ref = f"docker://{target}/library/demo:1.0"
    p = run("ocitar", "inspect", "--authfile", str(authfile), "--ca-file", str(tls.ca_file), ref)
    assert "linux/arm64" in p.stdout
    # Without the CA the certificate is refused; --insecure accepts any certificate.
    refused = run("ocitar", "inspect", "--authfile", str(authfile), ref, check=False)
    assert refused.returncode == 1 and "registry error" in refused.stderr
    assert "linux/arm64" in run("ocitar", "inspect", "--authfile", str(authfile), "--insecure", ref).stdout


# Hostile servers -----------------------------------------------------------------------------------------

# Inspect one image in a fresh process; print the exception (class and message) and VmHWM (kB), the peak
# resident memory of that process alone.
HOSTILE_INSPECT = (
    "import sys, ocitar\n"
    "try:\n"
    "    ocitar.inspect(ocitar.Registry(sys.argv[1]), 'app:1')\n"
    "    print('no error')\n"
    "except ocitar.OcitarError as e:\n"
    "    print(type(e).__name__ + ': ' + ' '.join(str(e).split()))\n"
    "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))\n"
)


def inspect_hostile(answers: dict[str, Answer], token: bool = False) -> tuple[str, int]:
    """(the exception line, peak RSS in MiB) of inspecting ``app:1`` on a :class:`HostileServer`."""
    server = HostileServer(answers, token=token)
    try:
        p = subprocess.run([sys.executable, "-c", HOSTILE_INSPECT, server.host], capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    assert p.returncode == 0, p.stderr
    error, peak = p.stdout.splitlines()
    return error, int(peak) >> 10


# Far above what ocitar needs (the read buffer, one document, the interpreter), far below what a parsed
# 20 MiB flood of values takes (over 300 MiB).
PEAK_MIB = 150


def test_a_huge_token_response_is_refused_reading_a_bounded_prefix() -> None:
    error, peak = inspect_hostile({"token": repeated(200, b'{"token": "', b"x" * MiB, 64, b'"}')}, token=True)
    assert error.startswith("AuthenticationError: ") and "token response refused: response body over 1048576 bytes" in error
    assert peak < PEAK_MIB


def test_a_deeply_nested_token_response_is_refused() -> None:
    nested = b'{"token": "t0k3n", "x": ' + b"[" * 100 + b"]" * 100 + b"}"
    error, peak = inspect_hostile({"token": answer(200, nested)}, token=True)
    assert error.startswith("AuthenticationError: ") and "token response refused: JSON nested deeper than 16 levels" in error


def test_a_manifest_flooded_with_values_is_refused_in_bounded_memory() -> None:
    # Under the 20 MiB document size, but ten million values: parsed whole, they would take over 300 MiB.
    flood = repeated(200, b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "x": [', b"0," * (1 << 19), 19, b"0]}")
    error, peak = inspect_hostile({"manifest": flood})
    assert error.startswith("RegistryError: ") and "MANIFEST_INVALID" in error and "more than 1000000 values" in error, error
    assert peak < PEAK_MIB, peak


def test_hostile_error_bodies_are_refused_not_parsed() -> None:
    nested = b'{"errors": [{"code": "DENIED", "message": "hello", "detail": ' + b"[" * 100 + b"]" * 100 + b"}]}"
    error, _ = inspect_hostile({"manifest": answer(400, nested)})
    assert error.startswith("RegistryError: ") and "error body refused: JSON nested deeper than 16 levels" in error, error
    assert "hello" not in error and "DENIED" not in error
    error, peak = inspect_hostile({"manifest": repeated(400, b'{"errors": [{"message": "', b"x" * MiB, 64, b'"}]}')})
    assert error.startswith("RegistryError: ") and "error body refused: response body over 1048576 bytes" in error, error
    assert peak < PEAK_MIB
