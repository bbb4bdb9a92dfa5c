"""Foreign layers (``urls`` set, blob absent, as ``docker save`` writes Windows images): load, inspect and
verify agree. Load keeps the descriptor without the blob, as docker does, and all three report it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ocitar
from _archives import Oci, blob_name

FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


def foreign_image() -> tuple[Oci, str, bytes]:
    """A two-platform image whose linux/amd64 layer is foreign and left out of the archive."""

    def layer_desc(platform: str, d: dict[str, Any]) -> dict[str, Any]:
        if platform != "linux/amd64":
            return d
        return {**d, "mediaType": FOREIGN, "urls": ["https://example.test/base-layer"]}

    img = Oci(name="docker.io/library/win:1", layer_desc=layer_desc)
    absent = img.layers["linux/amd64"]
    data = img.tar(lambda ms: [m for m in ms if m.name != blob_name(absent)])
    return img, absent, data


def platform(inv: ocitar.Inventory, name: str) -> ocitar.PlatformInfo:
    (image,) = inv.images
    (p,) = [p for p in image.platforms if p.platform == name]
    return p


def test_load_inspect_and_verify_agree_on_a_foreign_layer(tmp_path: Path) -> None:
    img, absent, data = foreign_image()
    archive = tmp_path / "win.tar"
    archive.write_bytes(data)
    for inv in (ocitar.inspect(archive), ocitar.verify(archive)):
        amd64 = platform(inv, "linux/amd64")
        assert amd64.present and amd64.foreign == (absent,)
        assert platform(inv, "linux/arm64").foreign == ()
    store = tmp_path / "store"
    report = ocitar.load(archive, store=store)
    (loaded,) = report.images
    assert loaded.digest == img.digest and loaded.foreign == (absent,)
    assert loaded.platforms == ("linux/amd64", "linux/arm64")
    assert not (store / blob_name(absent)).exists()
    for inv in (ocitar.inspect(store), ocitar.verify(store)):
        amd64 = platform(inv, "linux/amd64")
        assert amd64.present and amd64.foreign == (absent,)
    # One platform of it, and a save of the loaded store that loads again.
    one = ocitar.load(archive, ["linux/amd64"], store=tmp_path / "one")
    assert one.images[0].foreign == (absent,)
    again = ocitar.save(store, "win:1", output=tmp_path / "again.tar")
    assert again.images[0].digest == img.digest
    assert ocitar.load(tmp_path / "again.tar", store=tmp_path / "three").images[0].foreign == (absent,)
    assert ocitar.save(store, "win:1", ["linux/amd64"], index="manifest", output=tmp_path / "m.tar").images
    assert platform(ocitar.verify(tmp_path / "m.tar"), "linux/amd64").foreign == (absent,)


def test_the_command_line_reports_foreign_layers(tmp_path: Path, capsys: Any) -> None:
    from ocitar.cli import main

    _, absent, data = foreign_image()
    archive = tmp_path / "win.tar"
    archive.write_bytes(data)
    assert main(["verify", str(archive)]) == 0
    assert "1 foreign layer(s) not included" in capsys.readouterr().out
    assert main(["inspect", str(archive)]) == 0
    assert "present, 1 foreign" in capsys.readouterr().out
    assert main(["load", "-i", str(archive), "--store", str(tmp_path / "store")]) == 0
    assert "1 foreign layer(s)" in capsys.readouterr().err
