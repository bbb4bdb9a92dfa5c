"""save: platform lists (None, lists, comma entries, aliases, duplicates), the requirement rule, windows
os.version matching and attestations (issue 2 §3; README "Platforms", docs/ARCHITECTURE.md "Save")."""

from __future__ import annotations

import json

import ocitar
import pytest
from _helpers import IMAGE_NAME, blob_name
from test_save_helpers import (
    blob_digests,
    check_archive,
    expected_blobs,
    index_json,
    listing,
    manifest_blobs,
    member_names,
)

ALL_APP = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7")


def report_of(store, refs, platforms=None, out=None, **kw):
    target = out / "r.tar" if out is not None else store.path.parent / "r.tar"
    return ocitar.save(store.path, refs, platforms, output=target, **kw)


@pytest.mark.parametrize("platforms", [None, [], ()])
def test_no_platform_list_saves_every_platform(store, platforms):
    app = store.image("app:1.0")
    data = ocitar.save(store.path, "app:1.0", platforms)
    assert data == ocitar.save(store.path, "app:1.0")
    assert blob_digests(data) == set(app.blobs)
    r = report_of(store, "app:1.0", platforms)
    assert r.images[0].platforms == ("linux/amd64", "linux/arm64", "linux/arm/v7"), "normalized (normalize_platform's spelling)"
    assert r.images[0].attestations == 2
    assert r.images[0].absent == ()


def test_one_platform(store):
    app = store.image("app:1.0")
    data = ocitar.save(store.path, "app:1.0", ["linux/arm64"])
    check_archive(data, store)
    assert blob_digests(data) == expected_blobs(store, app, ["linux/arm64/v8"])
    assert app.manifests["linux/amd64"] not in blob_digests(data)
    r = report_of(store, "app:1.0", ["linux/arm64"])
    assert r.images[0].platforms == ("linux/arm64",)
    assert r.images[0].attestations == 1


def test_list_and_comma_entries_and_str_are_the_same(store):
    app = store.image("app:1.0")
    want = ocitar.save(store.path, "app:1.0", ["linux/arm64", "linux/arm/v7"])
    assert blob_digests(want) == expected_blobs(store, app, ["linux/arm64/v8", "linux/arm/v7"])
    for platforms in (
        ["linux/arm64,linux/arm/v7"],
        "linux/arm64,linux/arm/v7",
        ["linux/arm/v7", "linux/arm64"],
        ["linux/arm/v7,linux/arm64", "linux/arm64"],
        [" linux/arm64 , linux/arm/v7 "],
    ):
        assert ocitar.save(store.path, "app:1.0", platforms) == want, platforms
    r = report_of(store, "app:1.0", ["linux/arm/v7", "linux/arm64"])
    assert r.images[0].platforms == ("linux/arm64", "linux/arm/v7"), "index order, not list order"


@pytest.mark.parametrize(
    ("platforms", "want", "shown"),
    [
        (["linux/arm64", "linux/arm64/v8"], "linux/arm64", "linux/arm64"),
        (["linux/aarch64,linux/arm64/v8", "linux/arm64"], "linux/arm64", "linux/arm64"),
        (["arm64"], "linux/arm64", "linux/arm64"),
        (["linux/x86_64", "linux/amd64", "linux/x86-64", "linux/amd64/v1"], "linux/amd64", "linux/amd64"),
        (["Linux/AMD64"], "linux/amd64", "linux/amd64"),
        (["linux/arm", "linux/armhf", "linux/arm/v7", "linux/arm/7"], "linux/arm/v7", "linux/arm/v7"),
    ],
)
def test_aliases_and_duplicates_count_once(store, platforms, want, shown):
    once = ocitar.save(store.path, "app:1.0", [want])
    assert ocitar.save(store.path, "app:1.0", platforms) == once
    r = report_of(store, "app:1.0", platforms)
    assert r.images[0].platforms == (shown,)


@pytest.mark.parametrize(
    ("platforms", "named"),
    [
        (["linux/amd64/v8/extra"], "linux/amd64/v8/extra"),
        (["linux//amd64"], "linux//amd64"),
        (["*"], "*"),
        (["linux/*"], "linux/*"),
        (["linux/amd 64"], "linux/amd 64"),
        (["linux/amd64,"], ""),
        (["linux/amd64", ""], ""),
        (["plan9x"], "plan9x"),
        (["windows(10.0/amd64"], "windows(10.0/amd64"),
        (["linux/arm64", "linux/am@d64"], "linux/am@d64"),
    ],
)
def test_invalid_platform(store, unchanged, out, platforms, named):
    with unchanged(store.path, outside=out), pytest.raises(ocitar.InvalidPlatformError) as e:
        ocitar.save(store.path, "app:1.0", platforms, output=out / "a.tar")
    assert isinstance(e.value, ValueError)
    assert isinstance(e.value, ocitar.OcitarError)
    assert str(e.value).startswith(f"invalid platform {json.dumps(named)}")
    assert listing(out) == []


def test_invalid_prefer(store, unchanged, out):
    with unchanged(store.path, outside=out), pytest.raises(ocitar.InvalidPlatformError, match='"linux/"'):
        ocitar.save(store.path, "app:1.0", prefer="linux/", output=out / "a.tar")


def test_missing_platform_is_required(store, unchanged, out):
    with unchanged(store.path, outside=out), pytest.raises(ocitar.PlatformNotFoundError) as e:
        ocitar.save(store.path, "app:1.0", ["linux/amd64", "linux/s390x"], output=out / "a.tar")
    assert isinstance(e.value, LookupError)
    assert isinstance(e.value, ocitar.OcitarError)
    msg = str(e.value)
    assert "image app:1.0 " in msg
    assert "no complete linux/s390x " in msg
    assert "(it has: linux/amd64, linux/arm64/v8, linux/arm/v7)" in msg
    assert "unknown" not in msg, "attestations are not platforms"
    assert listing(out) == []


def test_requirement_applies_to_every_image(store, unchanged, out):
    with unchanged(store.path, outside=out), pytest.raises(ocitar.PlatformNotFoundError) as e:
        ocitar.save(store.path, ["app:1.0", "win:ltsc2022"], ["linux/arm64"], output=out / "a.tar")
    msg = str(e.value)
    assert "image win:ltsc2022 " in msg
    assert "no complete linux/arm64 " in msg
    assert "(it has: windows(10.0.20348.2113)/amd64, linux/amd64)" in msg
    assert listing(out) == []


def test_no_fallback_to_older_variant(store, unchanged, out):
    for spec in ("linux/arm/v6", "linux/armel", "linux/arm/v8"):
        with unchanged(store.path, outside=out), pytest.raises(ocitar.PlatformNotFoundError) as e:
            ocitar.save(store.path, "app:1.0", [spec], output=out / "a.tar")
        assert "no complete linux/arm/v" in str(e.value), spec
    assert listing(out) == []


@pytest.mark.parametrize("which", ["config", "layer", "manifest"])
def test_incomplete_platform_is_not_found(store, unchanged, out, which):
    app = store.image("app:1.0")
    doomed = {
        "config": app.configs["linux/arm64/v8"],
        "layer": app.layers["linux/arm64/v8"][1],
        "manifest": app.manifests["linux/arm64/v8"],
    }[which]
    store.blob_path(doomed).unlink()
    with unchanged(store.path, outside=out), pytest.raises(ocitar.PlatformNotFoundError) as e:
        ocitar.save(store.path, "app:1.0", ["linux/amd64", "linux/arm64"], output=out / "a.tar")
    msg = str(e.value)
    assert "image app:1.0 " in msg and "no complete linux/arm64 " in msg
    assert "(it has: linux/amd64, linux/arm/v7)" in msg
    assert listing(out) == []
    # The other platforms are still complete and can be saved.
    data = ocitar.save(store.path, "app:1.0", ["linux/amd64"])
    assert blob_digests(data) == expected_blobs(store, app, ["linux/amd64"])


def test_incomplete_platform_is_skipped_without_a_list(store):
    app = store.image("app:1.0")
    store.blob_path(app.layers["linux/arm64/v8"][1]).unlink()
    data = ocitar.save(store.path, "app:1.0")
    check_archive(data, store)
    assert blob_digests(data) == expected_blobs(store, app, ["linux/amd64", "linux/arm/v7"])
    r = report_of(store, "app:1.0")
    assert r.images[0].platforms == ("linux/amd64", "linux/arm/v7")
    assert r.images[0].absent == ("linux/arm64",)
    assert r.images[0].attestations == 1


@pytest.mark.parametrize(
    "spec", ["windows(10.0.20348)/amd64", "windows/amd64", "windows(10.0.20348.1)/amd64", "Windows(10.0.20348)/x86_64"]
)
def test_windows_os_version(store, spec):
    win = store.image("win:ltsc2022")
    data = ocitar.save(store.path, "win:ltsc2022", [spec])
    check_archive(data, store)
    assert blob_digests(data) == expected_blobs(store, win, ["windows(10.0.20348.2113)/amd64"])
    r = report_of(store, "win:ltsc2022", [spec])
    assert r.images[0].platforms == ("windows(10.0.20348.2113)/amd64",)


def test_windows_other_build_is_not_found(store, unchanged, out):
    with unchanged(store.path, outside=out), pytest.raises(ocitar.PlatformNotFoundError) as e:
        ocitar.save(store.path, "win:ltsc2022", ["windows(10.0.17763)/amd64"], output=out / "a.tar")
    msg = str(e.value)
    assert "no complete windows(10.0.17763)/amd64 " in msg
    assert "(it has: windows(10.0.20348.2113)/amd64, linux/amd64)" in msg
    assert listing(out) == []


def test_linux_amd64_does_not_select_windows(store):
    win = store.image("win:ltsc2022")
    data = ocitar.save(store.path, "win:ltsc2022", ["linux/amd64"])
    assert blob_digests(data) == expected_blobs(store, win, ["linux/amd64"])


def test_attestations_travel_with_their_platform(store):
    app = store.image("app:1.0")
    data = ocitar.save(store.path, "app:1.0", ["linux/arm64"])
    blobs = blob_digests(data)
    assert manifest_blobs(store, app.attestations["linux/arm64/v8"]) <= blobs
    assert not manifest_blobs(store, app.attestations["linux/amd64"]) & blobs
    data = ocitar.save(store.path, "app:1.0", ["linux/arm/v7"])
    assert not {app.attestations["linux/amd64"], app.attestations["linux/arm64/v8"]} & blob_digests(data)
    r = report_of(store, "app:1.0", ["linux/arm/v7"])
    assert (r.images[0].platforms, r.images[0].attestations) == (("linux/arm/v7",), 0)


def test_attestation_is_never_a_platform(store, unchanged, out):
    r = report_of(store, "app:1.0")
    assert all("unknown" not in p for p in r.images[0].platforms)
    with unchanged(store.path, outside=out), pytest.raises(ocitar.PlatformNotFoundError) as e:
        ocitar.save(store.path, "app:1.0", ["unknown/unknown"], output=out / "a.tar")
    assert "(it has: linux/amd64, linux/arm64/v8, linux/arm/v7)" in str(e.value)
    assert listing(out) == []


def test_platform_selection_is_per_image(store):
    app, tools = store.image("app:1.0"), store.image("registry.example.com:5000/team/tools:0.3")
    data = ocitar.save(store.path, ["app:1.0", "registry.example.com:5000/team/tools:0.3"], ["linux/amd64"])
    check_archive(data, store)
    assert blob_digests(data) == expected_blobs(store, app, ["linux/amd64"]) | expected_blobs(
        store, tools, ["linux/amd64"]
    )
    assert [e["annotations"][IMAGE_NAME] for e in index_json(data)["manifests"]] == [
        "docker.io/library/app:1.0",
        "registry.example.com:5000/team/tools:0.3",
    ]


def test_shared_layer_is_written_once(store):
    app = store.image("app:1.0")
    base = app.layers["linux/amd64"][0]
    assert base == app.layers["linux/arm64/v8"][0]
    data = ocitar.save(store.path, "app:1.0", ["linux/amd64", "linux/arm64"])
    assert member_names(data).count(blob_name(base)) == 1


def test_platforms_type_errors(store):
    with pytest.raises(TypeError):
        ocitar.save(store.path, "app:1.0", ["linux/amd64", 5])  # type: ignore[list-item]


def test_full_platform_set_listed_equals_all(store):
    assert ocitar.save(store.path, "app:1.0", list(ALL_APP)) == ocitar.save(store.path, "app:1.0")
