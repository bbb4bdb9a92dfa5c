"""One reading of a tar: ocitar sees exactly the entries POSIX readers (Python's ``tarfile`` here, as Go's
``archive/tar`` and GNU tar) see, or refuses the archive. Each archive below holds two images' index.json
under two members, written so that a reader that takes the first duplicated PAX record, splits PAX
records at newlines, or prefers a GNU long name to a PAX path sees image A where ``tarfile`` sees B."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import _archives as A
import ocitar
import pytest
from _guards import no_panic  # noqa: F401
from ocitar import InvalidArchiveError
from ocitar.testing import tree_digest

IMG_A = A.Oci(name="docker.io/library/seen-by-ocitar:1", platforms=("linux/amd64",))
IMG_B = A.Oci(name="docker.io/library/seen-by-others:1", platforms=("linux/arm64",))


record = A.pax_record


def hidden(path: str) -> bytes:
    """A ``comment`` record whose value holds a newline and then what looks like a ``path`` record."""
    return record("comment", b"x\n" + record("path", path.encode())[:-1])


def pax_member(records: bytes, name: str, data: bytes) -> A.Member:
    """A PAX extended header holding ``records`` verbatim, then a ustar member ``name``."""
    head = A.pax_header(records)
    body = A.member_bytes(A.file(name, data, format=tarfile.USTAR_FORMAT))
    return A.Member(raw=head + body)


def pax_then_gnu(pax_path: str, long_name: str, data: bytes) -> A.Member:
    """A PAX ``path`` record, then a GNU long-name entry disagreeing with it, before one member (tarfile
    lets the PAX path win here, a reader that prefers GNU long names does not)."""
    ln = long_name.encode() + b"\0"
    l_hdr = tarfile.TarInfo("././@LongLink")
    l_hdr.type = tarfile.GNUTYPE_LONGNAME
    l_hdr.size = len(ln)
    gnu = l_hdr.tobuf(format=tarfile.GNU_FORMAT) + ln + bytes(-len(ln) % A.BLOCK)
    pax = pax_member(record("path", pax_path.encode()), "short", data).raw
    assert pax is not None
    cut = 2 * A.BLOCK if len(record("path", pax_path.encode())) <= A.BLOCK else 0
    assert cut, "the PAX records fit one block"
    return A.Member(raw=pax[:cut] + gnu + pax[cut:])


def two_images(first: A.Member, second: A.Member) -> bytes:
    blobs = {**IMG_A.blobs, **IMG_B.blobs}
    members = [A.directory("blobs/"), A.directory("blobs/sha256/")]
    members += [A.file(A.blob_name(d), blobs[d]) for d in sorted(blobs)]
    members += [first, second, A.file("oci-layout", A.OCI_LAYOUT)]
    return A.tar_bytes(members)


def index_of(img: A.Oci) -> bytes:
    return A.canonical(img.index_json_doc)


TRICKS = {
    # first record wins for one reader, last for another
    "duplicated-path": lambda: two_images(
        pax_member(record("path", b"index.json") + record("path", b"a.json"), "a.json", index_of(IMG_A)),
        pax_member(record("path", b"b.json") + record("path", b"index.json"), "b.json", index_of(IMG_B)),
    ),
    # a newline inside a value hides a path record from length-prefixed readers
    "newline-hides-path": lambda: two_images(
        pax_member(hidden("index.json"), "a.json", index_of(IMG_A)),
        pax_member(hidden("b.json") + record("path", b"index.json"), "b.json", index_of(IMG_B)),
    ),
    # a GNU long name and a PAX path for the same member
    "gnu-long-name-disagrees": lambda: two_images(
        pax_then_gnu("a.json", "index.json", index_of(IMG_A)),
        pax_then_gnu("index.json", "b.json", index_of(IMG_B)),
    ),
}
REASONS = {
    "duplicated-path": '"path" twice',
    "newline-hides-path": "holds a newline",
    "gnu-long-name-disagrees": "disagrees with the PAX name",
}


def tarfile_view(data: bytes) -> dict[str, bytes]:
    """What Python's tarfile sees: member name → content."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for ti in tf.getmembers():
            f = tf.extractfile(ti)
            out[ti.name] = f.read() if f is not None else b""
    return out


@pytest.mark.parametrize("trick", list(TRICKS))
def test_posix_readers_see_image_b(trick: str) -> None:
    """The premise: for tarfile the archive's index.json is image B's (and image A's is elsewhere)."""
    view = tarfile_view(TRICKS[trick]())
    assert json.loads(view["index.json"]) == IMG_B.index_json_doc
    assert "docker.io/library/seen-by-others:1" in view["index.json"].decode()


@pytest.mark.parametrize("how", ["path", "bytes", "stream", "gzip"])
@pytest.mark.parametrize("trick", list(TRICKS))
def test_load_refuses_an_archive_tar_readers_read_differently(trick: str, how: str, tmp_path: Path) -> None:
    data = TRICKS[trick]()
    store = tmp_path / "store"
    ocitar.load(IMG_B.tar(), store=store)
    before = tree_digest(store)
    src: object = data
    if how == "path":
        src = tmp_path / "a.tar"
        (tmp_path / "a.tar").write_bytes(data)
    elif how == "stream":
        src = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
    elif how == "gzip":
        src = tmp_path / "a.tar.gz"
        (tmp_path / "a.tar.gz").write_bytes(gzip.compress(data, mtime=0))
    with pytest.raises(InvalidArchiveError, match=REASONS[trick]):
        ocitar.load(src, store=store)
    assert tree_digest(store) == before


@pytest.mark.parametrize("op", ["inspect", "verify"])
@pytest.mark.parametrize("trick", list(TRICKS))
def test_inspect_and_verify_refuse_it_too(trick: str, op: str, tmp_path: Path) -> None:
    path = tmp_path / "a.tar"
    path.write_bytes(TRICKS[trick]())
    with pytest.raises(InvalidArchiveError, match=REASONS[trick]):
        getattr(ocitar, op)(path)


def test_an_archive_with_ordinary_pax_records_still_loads_as_tarfile_reads_it(tmp_path: Path) -> None:
    """PAX headers with one path, a comment and a long name are read as tarfile reads them."""
    long_dir = "d" * 150 + "/"
    data = two_images(
        pax_member(record("comment", b"hello") + record("path", (long_dir + "a.json").encode()), "x", b"{}"),
        pax_member(record("path", b"index.json") + record("mtime", b"1.5"), "b.json", index_of(IMG_B)),
    )
    assert json.loads(tarfile_view(data)["index.json"]) == IMG_B.index_json_doc
    report = ocitar.load(data, store=tmp_path / "store")
    assert [(i.names, i.digest) for i in report.images] == [(("seen-by-others:1",), IMG_B.digest)]
