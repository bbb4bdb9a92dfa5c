#!/usr/bin/env python3
"""Two-stream SHA-256 on and off, end to end: `save-all` and `load-all` of run.py's store, alternating.

    python benches/sha_ab.py                      # 1 GiB store, 9 samples of each mode per case
    python benches/sha_ab.py --reps 11 --workdir /var/tmp/sha-ab --keep

The copy pool hashes blobs two at a time (interleaved SHA-NI rounds) unless `OCITAR_SHA_PAIRING=0`, which
hashes each blob alone. Every sample is a fresh process (`run.measure`: untimed `sync` first, peak RSS,
contention noted); the modes alternate within each repetition and swap which goes first on every other
repetition, so drift on a shared machine hits both alike. Prints each mode's median, min and max of the
operation's own time, and the load average seen at each sample. Never exits non-zero for a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run  # noqa: E402

MODES = (("on", "1"), ("off", "0"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="two-stream SHA-256 A/B (OCITAR_SHA_PAIRING)")
    ap.add_argument("--size", type=run.parse_size, default=1 << 30, help="store size (default 1G)")
    ap.add_argument("--reps", type=int, default=9, help="samples per mode and case (default 9)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the store and archive for a later run")
    ap.add_argument("--max-wait", type=float, default=20.0, help="wait up to this long for idle CPUs per sample")
    a = ap.parse_args(argv)
    run.QUIET.max_wait = a.max_wait
    work = a.workdir or Path(tempfile.mkdtemp(prefix="ocitar-sha-ab-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    run.pin(work)
    import ocitar

    store, full, out = work / "store", work / "full.tar", work / "out"
    marker = work / "store.params"
    params = json.dumps({"size": a.size, "platforms": run.PLATFORMS, "refs": run.REFS})
    if not (marker.exists() and marker.read_text() == params and full.exists()):
        run.rm(store)
        run.rm(full)
        run.build(store, a.size)
        ocitar.save(store, list(run.REFS), output=full)
        marker.write_text(params)
    out.mkdir(exist_ok=True)
    for p in [*store.rglob("*"), full]:
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(8 << 20):
                    pass
    cases = {
        "save-all": [run.PY, "-c", run.OCITAR_SAVE, str(store), run.REFS[0], str(out / "save.tar")],
        "load-all": [run.PY, "-c", run.OCITAR_LOAD, str(full), str(out / "dest")],
    }
    samples: dict[tuple[str, str], list[tuple[float, float, bool]]] = {}
    try:
        for rep in range(a.reps):
            for case, cmd in cases.items():
                for mode, value in MODES if rep % 2 == 0 else MODES[::-1]:
                    env = dict(os.environ, OCITAR_SHA_PAIRING=value)
                    s = run.measure(cmd, env)
                    load1 = os.getloadavg()[0]
                    samples.setdefault((case, mode), []).append((s.op or s.wall, load1, s.busy))
                    run.rm(out / "save.tar")
                    run.rm(out / "dest")
            print(f"rep {rep + 1}/{a.reps} done", flush=True)
    finally:
        if not a.keep:
            run.rm(work)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, {a.reps} samples per mode")
    print("| case | pairing | median s | min s | max s | busy samples | load avg (1 min) at samples |")
    print("|---|---|---|---|---|---|---|")
    for (case, mode), ss in samples.items():
        t = [x for x, _, _ in ss]
        loads = [ld for _, ld, _ in ss]
        busy = sum(b for _, _, b in ss)
        print(
            f"| {case} | {mode} | {statistics.median(t):.3f} | {min(t):.3f} | {max(t):.3f} | {busy} "
            f"| {min(loads):.1f}–{max(loads):.1f} |"
        )
    for case in cases:
        on = statistics.median(x for x, _, _ in samples[(case, "on")])
        off = statistics.median(x for x, _, _ in samples[(case, "off")])
        print(f"{case}: pairing on/off median {on:.3f}/{off:.3f} s, gain {100 * (off - on) / off:+.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
