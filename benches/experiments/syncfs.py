#!/usr/bin/env python3
"""Make N small files durable: one fsync per file, or one syncfs(2) on their filesystem (issue 15).

    python benches/experiments/syncfs.py --files 21000 --size 10240 --reps 3 --dir /var/tmp

Each round writes N files into a fresh directory the way a load stages blobs (write, then
sync_file_range(SYNC_FILE_RANGE_WRITE) to start writeback), then times what makes them durable,
alternating the two ways (fsync, syncfs, fsync, syncfs, ...) so that drifting disk latency hits both.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import statistics
import tempfile
import time

libc = ctypes.CDLL(None, use_errno=True)
SYNC_FILE_RANGE_WRITE = 2


def stage(d: str, n: int, data: bytes) -> list[str]:
    paths = []
    for i in range(n):
        p = os.path.join(d, f"tmp-{i}")
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        libc.sync_file_range(fd, ctypes.c_longlong(0), ctypes.c_longlong(0), SYNC_FILE_RANGE_WRITE)
        os.close(fd)
        paths.append(p)
    return paths


def per_file(d: str, paths: list[str]) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


def one_syncfs(d: str, paths: list[str]) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        if libc.syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), "syncfs")
    finally:
        os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=21000)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp")
    a = ap.parse_args()
    data = os.urandom(a.size)
    times: dict[str, list[float]] = {"fsync per file": [], "one syncfs": []}
    for _ in range(a.reps):
        for name, how in (("fsync per file", per_file), ("one syncfs", one_syncfs)):
            d = tempfile.mkdtemp(prefix="syncfs-exp-", dir=a.dir)
            try:
                os.sync()
                paths = stage(d, a.files, data)
                t = time.perf_counter()
                how(d, paths)
                times[name].append(time.perf_counter() - t)
            finally:
                shutil.rmtree(d)
    for name, ts in times.items():
        print(f"{name}: median {statistics.median(ts):.2f} s  ({', '.join(f'{x:.2f}' for x in ts)})")


if __name__ == "__main__":
    main()
