#!/usr/bin/env python3
"""Round trips to a registry (issue 12): what a distant registry's latency costs before any layer moves.

A loopback docker-registry (CNCF distribution 2.8) holds an image of four platforms with small layers; a
proxy in front of it delays every request by `--ms` milliseconds, as a registry across a network would.
Measured in fresh processes, alternating, median wall time:

- `ocitar inspect docker://REF` (documents only: the index, every platform's manifest and config);
- `ocitar save` of one platform to an archive file;
- `skopeo inspect docker://REF` (the index, then one platform's manifest and config) as a reference.

    python benches/latency.py                    # 25 ms per request, 5 repetitions
    python benches/latency.py --ms 50 --reps 3
    python benches/latency.py --baseline DIR     # also the ocitar importable from DIR (a "before" build)
    python benches/latency.py --smoke            # 5 ms, 1 repetition: checks every command runs

Never fails for a slow result.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import ocitar  # noqa: E402
from _registry import FaultProxy, start_registry  # noqa: E402
from ocitar.testing import Image, Layer, Platform, build_store  # noqa: E402
from registry import PLATFORMS  # noqa: E402  (the image shape of the throughput benchmark)

INSPECT_PY = "import sys,ocitar; ocitar.inspect('docker://' + sys.argv[1])"
SAVE_PY = "import sys,ocitar; ocitar.save(ocitar.Registry(), [sys.argv[1]], ['linux/arm64'], output=sys.argv[2])"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ms", type=float, default=None, help="delay added to every request (default 25; 5 with --smoke)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 5; 1 with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="5 ms, 1 repetition: checks every command runs")
    ap.add_argument("--baseline", type=Path, help="a directory holding another build's `ocitar` package, measured as 'before'")
    args = ap.parse_args()
    delay = (args.ms if args.ms is not None else (5.0 if args.smoke else 25.0)) / 1000
    reps = args.reps or (1 if args.smoke else 5)
    if args.baseline is not None and not (args.baseline / "ocitar" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {args.baseline}: no ocitar package there")

    work = Path(tempfile.mkdtemp(prefix="ocitar-latency-"))
    server = None
    proxy = None
    try:
        store = work / "store"
        platforms = [Platform(p, layers=(Layer(64 << 10, seed=p),)) for p in PLATFORMS]
        build_store(store, [Image(names=["bench/app:1"], platforms=platforms)])
        archive = work / "all.tar"
        ocitar.save(store, "bench/app:1", output=archive)
        server = start_registry("/usr/bin/docker-registry", work / "registry", "anonymous")
        ocitar.load(archive, store=ocitar.Registry(server.host))

        def slow(index: int, direction: str, data: bytes, total: int) -> bytes:
            if direction == "up" and data[:5] in (b"GET /", b"HEAD ", b"POST ", b"PUT /"):
                time.sleep(delay)
            return data

        proxy = FaultProxy(server.host, slow)
        ref = f"{proxy.host}/bench/app:1"
        out = work / "out.tar"
        builds = {"ocitar": None} | ({"before": str(args.baseline)} if args.baseline else {})
        commands: dict[str, tuple[list[str], dict[str, str] | None]] = {}
        for build, path in builds.items():
            env = dict(os.environ, PYTHONPATH=path) if path else None
            commands[f"{build} inspect"] = ([sys.executable, "-c", INSPECT_PY, ref], env)
            commands[f"{build} save 1 platform"] = ([sys.executable, "-c", SAVE_PY, ref, str(out)], env)
        commands["skopeo inspect"] = (["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"], None)
        times: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(reps):
            for name, (argv, env) in commands.items():
                t = time.perf_counter()
                subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - t)
                out.unlink(missing_ok=True)
    finally:
        if proxy is not None:
            proxy.stop()
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"{len(PLATFORMS)} platforms, {delay * 1000:.0f} ms added to every request, median of {reps}"
        + (" — smoke run: not meaningful" if args.smoke else "")
        + "\n"
    )
    print("| command | wall, median | runs |")
    print("|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.3f} s | {' '.join(f'{t:.3f}' for t in ts)} |")


if __name__ == "__main__":
    main()
