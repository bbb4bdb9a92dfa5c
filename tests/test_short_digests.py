"""Short digests as docker prints them (12 hex digits or more, bare or after sha256:) name an image wherever a
ref is accepted; `ocitar inspect --store S NAME` shows one image of a store."""

from __future__ import annotations

import json
from pathlib import Path

import ocitar
import pytest
from ocitar.testing import BuiltStore, Image
from test_cli import cli


@pytest.fixture
def store(oci_store_factory) -> BuiltStore:  # type: ignore[no-untyped-def]
    return oci_store_factory(
        Image(names=("app:1.0",), platforms=("linux/amd64", "linux/arm64/v8")),
        Image(platforms=("linux/s390x",)),
    )


@pytest.mark.parametrize("form", ["bare", "prefixed", "longer"])
def test_save_takes_a_unique_digest_prefix(store: BuiltStore, tmp_path: Path, form: str) -> None:
    digest = store.images[1].digest
    hex_ = digest.split(":")[1]
    ref = {"bare": hex_[:12], "prefixed": f"sha256:{hex_[:12]}", "longer": hex_[:20]}[form]
    report = ocitar.save(store.path, ref, output=tmp_path / "a.tar")
    assert [(i.names, i.digest) for i in report.images] == [((), digest)]


def test_too_short_or_unknown_prefixes_are_not_found(store: BuiltStore, tmp_path: Path) -> None:
    hex_ = store.images[1].digest.split(":")[1]
    with pytest.raises(ocitar.ImageNotFoundError) as info:
        ocitar.save(store.path, f"sha256:{hex_[:11]}", output=tmp_path / "a.tar")
    assert info.value.ref == f"sha256:{hex_[:11]}"
    with pytest.raises(ocitar.ImageNotFoundError):
        ocitar.save(store.path, "0123456789ab" if not hex_.startswith("0123456789ab") else "ba9876543210")
    assert not (tmp_path / "a.tar").exists()


def test_the_cli_takes_back_the_digests_it_prints(store: BuiltStore, tmp_path: Path) -> None:
    rows = cli("ls", "--store", store.path).stdout.decode().splitlines()
    short = rows[-1].split()[2]
    assert len(short) == 12
    p = cli("save", "--store", store.path, "-o", tmp_path / "a.tar", short)
    assert p.returncode == 0, p.stderr
    assert ocitar.inspect(tmp_path / "a.tar").images[0].digest == store.images[1].digest


def test_inspect_one_image_of_a_store(store: BuiltStore) -> None:
    p = cli("inspect", "--store", store.path, "app:1.0")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert lines[1].startswith("app:1.0") and "<none>" not in p.stdout.decode()
    assert lines[-1].startswith("app:1.0: ") and lines[-1].endswith(f" in {store.path}")
    short = store.images[1].digest.split(":")[1][:12]
    data = json.loads(cli("inspect", "--format", "json", "--store", store.path, short).stdout)
    assert [i["digest"] for i in data["images"]] == [store.images[1].digest]
    p = cli("inspect", "--store", store.path, "app:2.0")
    assert p.returncode == 1 and b"app:1.0" in p.stderr


def test_inventory_image_takes_names_digests_and_prefixes(store: BuiltStore) -> None:
    inv = ocitar.inspect(store.path)
    app = inv.image("app:1.0")
    assert app is inv.image("docker.io/library/app:1.0") is inv.image(app.digest) is inv.image(app.digest[7:19])
    with pytest.raises(ocitar.ImageNotFoundError) as info:
        inv.image("app:1.1")
    assert info.value.candidates[0] == "app:1.0" and info.value.ref == "app:1.1"


def test_inspect_takes_one_path_or_one_image_of_a_store(store: BuiltStore) -> None:
    for args in (("inspect", store.path, store.path), ("inspect", "--store", store.path, "app:1.0", "app:1.0")):
        p = cli(*args)
        assert p.returncode == 2 and p.stderr.decode().count("\n") == 1, p.stderr
