#!/usr/bin/env python3
"""Registry benchmark (issue 12): save from and load into a loopback docker-registry (CNCF distribution
2.8), ocitar against `skopeo copy` doing the same work, wall time and peak RSS of each run.

    python benches/registry.py                  # 1 GiB image of 4 platforms, 2 repetitions
    python benches/registry.py --size 256M --reps 1

Cases: save one platform to an archive file, save all four, load the all-platform archive into a fresh
repository. Each command runs in a fresh process under `/usr/bin/time -v`; outputs are removed after each
run. Prints a Markdown table (see benches/README.md). Never fails for a missed target.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import ocitar  # noqa: E402
from _registry import start_registry  # noqa: E402
from ocitar.testing import Image, Layer, Platform, build_store  # noqa: E402

PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/ppc64le")
PY = sys.executable


def parse_size(s: str) -> int:
    m = re.fullmatch(r"(\d+)([KMG]?)", s.upper())
    if not m:
        raise SystemExit(f"bad size {s!r}")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


def timed(cmd: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one run."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{p.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))  # type: ignore[union-attr]
    return wall, rss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1G")
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    size = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="ocitar-regbench-"))
    layer = size // (len(PLATFORMS) * 2)
    build_store(
        work / "store",
        [
            Image(
                names=["bench/app:1"],
                platforms=[Platform(p, layers=(Layer(layer, seed=f"{p}-a", compression="none"), Layer(layer, seed=f"{p}-b", compression="none"))) for p in PLATFORMS],
            )
        ],
    )
    archive = work / "all.tar"
    ocitar.save(work / "store", "bench/app:1", output=archive)
    server = start_registry("/usr/bin/docker-registry", work / "registry", "anonymous")
    host = server.host
    try:
        ocitar.load(archive, store=ocitar.Registry(host))
        src = f"{host}/bench/app:1"
        out = work / "out.tar"
        save_py = "import sys,ocitar; ocitar.save(ocitar.Registry(), [sys.argv[1]], sys.argv[3:] or None, output=sys.argv[2])"
        load_py = "import sys,ocitar; ocitar.load(sys.argv[1], store=ocitar.Registry(sys.argv[2]))"
        n = [0]
        extra: list = []

        def fresh() -> str:
            # A new registry (new port) for every load: skopeo's blob-info cache would otherwise mount
            # blobs it saw pushed before instead of uploading them.
            for old in extra:
                old.stop()
            extra.clear()
            n[0] += 1
            extra.append(start_registry("/usr/bin/docker-registry", work / f"fresh{n[0]}", "anonymous"))
            return f"{extra[0].host}/fresh"

        cases = [
            (
                "save 1 platform",
                lambda: [PY, "-c", save_py, src, str(out), "linux/arm64"],
                lambda: ["skopeo", "--override-arch", "arm64", "copy", "--src-tls-verify=false", f"docker://{src}", f"oci-archive:{out}:app"],
            ),
            (
                "save 4 platforms",
                lambda: [PY, "-c", save_py, src, str(out)],
                lambda: ["skopeo", "copy", "--multi-arch", "all", "--src-tls-verify=false", f"docker://{src}", f"oci-archive:{out}:app"],
            ),
            (
                "load 4 platforms",
                lambda: [PY, "-c", load_py, str(archive), fresh()],
                lambda: ["skopeo", "copy", "--multi-arch", "all", "--dest-tls-verify=false", f"oci-archive:{archive}", f"docker://{fresh()}/bench/app:1"],
            ),
        ]
        print(f"{size >> 20} MiB image, {len(PLATFORMS)} platforms, loopback docker-registry, best of {args.reps}\n")
        print("| case | ocitar s | ocitar RSS MiB | skopeo s | skopeo RSS MiB | skopeo/ocitar |")
        print("|---|---|---|---|---|---|")
        for name, ours, theirs in cases:
            o, s = [], []
            for _ in range(args.reps):
                o.append(timed(ours()))
                out.unlink(missing_ok=True)
                s.append(timed(theirs()))
                out.unlink(missing_ok=True)
            bo, bs = min(o), min(s)
            print(f"| {name} | {bo[0]:.2f} | {max(r for _, r in o):.0f} | {bs[0]:.2f} | {max(r for _, r in s):.0f} | {bs[0] / bo[0]:.1f}x |")
        for old in extra:
            old.stop()
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    main()
