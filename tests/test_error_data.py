"""Exceptions carry what their message names as attributes, pickle with them, and never repeat an errno."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import ocitar
import pytest
from ocitar.testing import BuiltStore, Image, Platform


@pytest.fixture
def store(oci_store_factory) -> BuiltStore:  # type: ignore[no-untyped-def]
    return oci_store_factory(
        Image(names=("app:1.0",), platforms=(Platform("linux/amd64", attestation=True), "linux/arm64/v8")),
        Image(names=("tools:0.3",), platforms=("linux/amd64",)),
    )


def test_platform_not_found_carries_image_missing_and_available(store: BuiltStore, tmp_path: Path) -> None:
    with pytest.raises(ocitar.PlatformNotFoundError) as info:
        ocitar.save(store.path, "app:1.0", ["linux/riscv64", "linux/amd64"], output=tmp_path / "a.tar")
    e = info.value
    assert (e.image, e.missing, e.available) == ("app:1.0", ("linux/riscv64",), ("linux/amd64", "linux/arm64/v8"))
    again = pickle.loads(pickle.dumps(e))
    assert (type(again), str(again), again.missing) == (type(e), str(e), e.missing)


def test_image_not_found_carries_ref_and_candidates(store: BuiltStore, tmp_path: Path) -> None:
    with pytest.raises(ocitar.ImageNotFoundError) as info:
        ocitar.save(store.path, "app:1.1", output=tmp_path / "a.tar")
    assert info.value.ref == "app:1.1"
    assert info.value.candidates[0] == "app:1.0"
    assert all(c in str(info.value) for c in info.value.candidates)


def test_invalid_platform_carries_spec() -> None:
    with pytest.raises(ocitar.InvalidPlatformError) as info:
        ocitar.normalize_platform("linux/*")
    assert info.value.spec == "linux/*"


def test_digest_mismatch_carries_digest_path_and_sizes(store: BuiltStore, tmp_path: Path) -> None:
    layer = store.image("tools:0.3").layers["linux/amd64"][0]
    path = store.blob_path(layer)
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ocitar.DigestMismatchError) as info:
        ocitar.verify(store.path)
    e = info.value
    assert e.digest == layer and str(path) in e.path
    assert e.found_digest is not None and e.found_digest.startswith("sha256:") and e.found_digest != layer
    path.write_bytes(data + b"x")
    with pytest.raises(ocitar.DigestMismatchError) as info:
        ocitar.verify(store.path)
    e = info.value
    assert (e.digest, e.expected_size, e.found_size) == (layer, len(data), len(data) + 1)


def test_invalid_archive_carries_the_entry(store: BuiltStore, tmp_path: Path) -> None:
    import tarfile

    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        info = tarfile.TarInfo("index.json")
        body = b"{not json"
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
        info = tarfile.TarInfo("oci-layout")
        body = b'{"imageLayoutVersion":"1.0.0"}'
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    with pytest.raises(ocitar.InvalidArchiveError) as e:
        ocitar.load(bad, store=tmp_path / "s")
    assert e.value.entry == "index.json"


@pytest.mark.parametrize("call", ["save", "inspect", "verify"])
def test_a_missing_store_is_a_store_error_naming_it(call: str, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    with pytest.raises(ocitar.StoreError) as info:
        if call == "save":
            ocitar.save(missing, "app:1.0")
        else:
            getattr(ocitar, call)(missing)
    assert info.value.path == str(missing)
    assert str(missing) in str(info.value) and "no such store" in str(info.value)


def test_a_missing_archive_file_stays_file_not_found(tmp_path: Path) -> None:
    for call in (ocitar.inspect, ocitar.verify, lambda p: ocitar.load(p, store=tmp_path / "s")):
        with pytest.raises(FileNotFoundError) as info:
            call(tmp_path / "missing.tar")  # type: ignore[operator]
        assert "os error" not in str(info.value)
        assert info.value.errno == 2 and info.value.filename == str(tmp_path / "missing.tar")


def test_a_text_stream_is_a_type_error_asking_for_a_binary_file(store: BuiltStore, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="binary file"):
        ocitar.save(store.path, "app:1.0", output=io.StringIO())  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="binary file"):
        ocitar.load(io.StringIO("x"), store=tmp_path / "s")  # type: ignore[arg-type]
    assert not (tmp_path / "s").exists()


def test_refs_as_bytes_say_refs_must_be_str(store: BuiltStore) -> None:
    with pytest.raises(TypeError, match="refs must be str or a list of str, not bytes"):
        ocitar.save(store.path, b"app:1.0")  # type: ignore[call-overload]
