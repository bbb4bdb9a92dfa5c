#!/usr/bin/env python3
"""Hostile archives that used to cost memory without bound (issue 11, rule 4): each must be refused with
InvalidArchiveError within 2 s and 256 MiB peak RSS. A benchmark, not a test: it reports figures and PASS
or MISS, and exits non-zero only when an archive is not refused at all (or the command fails otherwise).

    python benches/hostile.py             # the archives from the issue
    python benches/hostile.py --smoke     # small versions (what `benches/run.py --smoke` runs)
    python benches/hostile.py --python /tmp/before/bin/python   # measure another build of ocitar

Cases:
- ``pax-names``: 700 entries, each with a PAX ``path`` of 1 MiB less 32 bytes (within the old 1 MiB header cap), zstd-compressed (about 40 KiB), loaded;
- ``annotations``: an OCI archive whose top-level descriptor carries 400,000 annotations (about 6 MB),
  loaded.
"""

from __future__ import annotations

import argparse
import gzip
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import _archives as A  # noqa: E402

TIME_LIMIT = 2.0
RSS_LIMIT_MIB = 256
LOAD = (
    "import sys, ocitar\n"
    "try:\n"
    "    ocitar.load(sys.argv[1], store=sys.argv[2])\n"
    "except ocitar.InvalidArchiveError as e:\n"
    "    print('refused:', str(e)[:200]); sys.exit(0)\n"
    "print('LOADED'); sys.exit(3)\n"
)


def pax_names(path: Path, entries: int, name_len: int) -> None:
    """``entries`` members, each behind a PAX header whose ``path`` is ``name_len`` bytes, zstd-compressed
    (gzip when the zstd command is not installed)."""

    def write(out: IO[bytes]) -> None:
        for i in range(entries):
            out.write(A.pax_header(A.pax_record("path", (b"%06d/" % i) + b"a" * (name_len - 7))))
            out.write(A.member_bytes(A.file("f", b"x", format=tarfile.USTAR_FORMAT)))
        out.write(bytes(2 * A.BLOCK))

    if shutil.which("zstd") is None:
        with gzip.open(path, "wb", compresslevel=6) as g:
            write(g)
        return
    with subprocess.Popen(["zstd", "-q", "-3", "-o", str(path), "-f"], stdin=subprocess.PIPE) as p:
        assert p.stdin is not None
        write(p.stdin)
    if p.returncode:
        raise SystemExit("zstd failed")


def annotations(path: Path, count: int) -> None:
    many = {f"a{i}": "v" for i in range(count)}
    img = A.Oci(index_desc=lambda _, d: {**d, "annotations": {**d["annotations"], **many}})
    path.write_bytes(img.tar())


def measure(python: str, archive: Path, store: Path) -> tuple[float, float, str]:
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.perf_counter()
        p = subprocess.run(
            ["/usr/bin/time", "-o", tf.name, "-v", python, "-c", LOAD, str(archive), str(store)],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        report = Path(tf.name).read_text()
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report)
    rss = int(m.group(1)) / 1024 if m else 0.0
    out = (p.stdout.strip() or p.stderr.strip()[-300:]).splitlines()
    status = out[-1] if out else f"exit {p.returncode}"
    if p.returncode != 0:
        status = f"NOT REFUSED (exit {p.returncode}): {status}"
    return wall, rss, status


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--smoke", action="store_true", help="small archives: checks each is refused")
    ap.add_argument("--python", default=sys.executable, help="the interpreter whose ocitar is measured")
    a = ap.parse_args(argv)
    cases = {
        "pax-names": (lambda p: pax_names(p, 20, 8 << 10))
        if a.smoke
        else (lambda p: pax_names(p, 700, (1 << 20) - 32)),
        "annotations": (lambda p: annotations(p, 4_000)) if a.smoke else (lambda p: annotations(p, 400_000)),
    }
    failed = False
    print("| hostile archive | size | refused in | peak RSS | within 2 s and 256 MiB |")
    print("|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="ocitar-hostile-") as work:
        for name, make in cases.items():
            archive = Path(work) / f"{name}.tar{'.zst' if name == 'pax-names' else ''}"
            make(archive)
            wall, rss, status = measure(a.python, archive, Path(work) / "store")
            ok = wall <= TIME_LIMIT and rss <= RSS_LIMIT_MIB
            failed |= status.startswith("NOT REFUSED")
            size = archive.stat().st_size
            print(
                f"| {name} | {size / 1024:.0f} KiB | {wall:.2f} s | {rss:.0f} MiB | "
                f"{'PASS' if ok else 'MISS'} ({status[:90]}) |"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
