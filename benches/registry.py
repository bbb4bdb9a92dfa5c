#!/usr/bin/env python3
"""Registry benchmark (issue 12): save from and load into a loopback docker-registry (CNCF distribution
2.8) against the same save or load between local files, `skopeo copy` doing the registry work, and the
registry's own floor (curl moving the same blobs); wall time and peak RSS of each run.

    python benches/registry.py                  # 1 GiB image of 4 platforms, 3 repetitions
    python benches/registry.py --size 256M --reps 1
    python benches/registry.py --smoke          # 8 MiB, 1 repetition, seconds: checks every command runs
    python benches/registry.py --baseline DIR   # also the ocitar importable from DIR (a "before" build)
    python benches/registry.py --pin            # registries on the last CPU, every command on the others

Cases: save one platform to an archive file, save all four, load the all-platform archive into a fresh
repository. Each command runs in a fresh process under `/usr/bin/time -v`, the tools alternating within a
repetition, after one round that is not counted (except with --smoke); outputs, and the registry a load
went into, are removed after each run. Prints Markdown tables of medians: wall time and peak
RSS, then CPU seconds of each command and of the registry server serving it (read from /proc), which
on a shared machine say more than wall time does (see benches/README.md). Never fails for a missed
target.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import ocitar  # noqa: E402
from _registry import RegistryServer, start_registry  # noqa: E402
from ocitar.testing import Image, Layer, Platform, build_store  # noqa: E402

PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/ppc64le")
PY = sys.executable
JOBS = 4  # ocitar.Registry's default: curl gets the same parallelism
SAVE_PY = "import sys,ocitar; ocitar.save(ocitar.Registry(), [sys.argv[1]], sys.argv[3:] or None, output=sys.argv[2])"
SAVE_LOCAL_PY = "import sys,ocitar; ocitar.save(sys.argv[1], ['bench/app:1'], sys.argv[3:] or None, output=sys.argv[2])"
LOAD_PY = "import sys,ocitar; ocitar.load(sys.argv[1], store=ocitar.Registry(sys.argv[2]))"
LOAD_LOCAL_PY = "import sys,ocitar; ocitar.load(sys.argv[1], store=sys.argv[2])"
# The registry's floor for a load: each blob's upload session opened (POST), then every blob PUT whole
# by curl, JOBS at once. argv: jobs, host, repository, blob files...
PUT_PY = """
import subprocess, sys, urllib.request
jobs, host, repo, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
args = ["curl", "-sSf", "--parallel", "--parallel-max", jobs, "-X", "PUT",
        "-H", "content-type: application/octet-stream"]
for f in files:
    req = urllib.request.Request(f"http://{host}/v2/{repo}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(req) as r:
        loc = r.headers["location"]
    url = loc if loc.startswith("http") else f"http://{host}{loc}"
    args += ["-T", f, url + ("&" if "?" in url else "?") + "digest=sha256:" + f.rsplit("/", 1)[1], "-o", "/dev/null"]
subprocess.run(args, check=True)
"""


def parse_size(s: str) -> int:
    m = re.fullmatch(r"(\d+)([KMG]?)", s.upper())
    if not m:
        raise SystemExit(f"bad size {s!r}")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


class Run(NamedTuple):
    wall: float
    rss: float  # peak, MiB
    cpu: float  # user + system seconds of the command
    server: float  # CPU seconds the registry serving it used meanwhile


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds process `pid` has used (0 when there is none)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(cmd: list[str], server: int | None, env: dict[str, str] | None = None) -> Run:
    """One run of `cmd`, with the CPU that registry process `server` used meanwhile."""
    before = cpu_seconds(server)
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{p.stderr[-2000:]}")
    field = lambda name: re.search(rf"{re.escape(name)}: ([\d.]+)", p.stderr).group(1)  # type: ignore[union-attr]  # noqa: E731
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    rss = int(field("Maximum resident set size (kbytes)")) / 1024
    return Run(wall, rss, cpu, cpu_seconds(server) - before)


def blobs_of(store: Path, platform: str | None) -> list[tuple[str, Path]]:
    """What a save of `platform` (None: all) reads, as (endpoint, file): the index and manifests from
    `manifests/`, configs and layers from `blobs/`."""
    blob = lambda d: store / "blobs" / "sha256" / d.split(":", 1)[1]  # noqa: E731
    top = json.loads((store / "index.json").read_text())["manifests"][0]
    out = [("manifests", blob(top["digest"]))]
    for m in json.loads(blob(top["digest"]).read_text())["manifests"]:
        p = m.get("platform", {})
        name = "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
        if platform is None or name == platform:
            doc = json.loads(blob(m["digest"]).read_text())
            out += [("manifests", blob(m["digest"])), ("blobs", blob(doc["config"]["digest"]))]
            out += [("blobs", blob(x["digest"])) for x in doc["layers"]]
    return out


def get_all(host: str, repo: str, files: list[tuple[str, Path]]) -> list[str]:
    """curl fetching everything a save reads to /dev/null, JOBS at once: the registry's floor for a save."""
    args = ["curl", "-sSf", "--parallel", "--parallel-max", str(JOBS), "-H", f"accept: {ocitar_accept()}"]
    for kind, f in files:
        args += [f"http://{host}/v2/{repo}/{kind}/sha256:{f.name}", "-o", "/dev/null"]
    return args


def ocitar_accept() -> str:
    return "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"


class Bench:
    """The image, its archive, the registry holding it, and fresh registries and directories to load into."""

    def __init__(self, size: int, baseline: Path | None = None, pin: bool = False) -> None:
        self.baseline = baseline
        # With `pin`, registries run on the last CPU and the commands on the others: a registry with a
        # core of its own, as one on another machine has, instead of one sharing every core with its
        # client.
        cpus = sorted(os.sched_getaffinity(0))
        if pin and len(cpus) < 2:
            raise SystemExit("--pin needs at least two CPUs")
        self.server_cpus = {cpus[-1]} if pin else None
        self.client_cpus = set(cpus[:-1]) if pin else None
        self.work = Path(tempfile.mkdtemp(prefix="ocitar-regbench-"))
        layer = size // (len(PLATFORMS) * 2)
        self.store = self.work / "store"
        platforms = [
            Platform(p, layers=(Layer(layer, seed=f"{p}-a", compression="none"), Layer(layer, seed=f"{p}-b", compression="none")))
            for p in PLATFORMS
        ]
        build_store(self.store, [Image(names=["bench/app:1"], platforms=platforms)])
        self.archive = self.work / "all.tar"
        ocitar.save(self.store, "bench/app:1", output=self.archive)
        self.server = self.start(self.work / "registry")
        ocitar.load(self.archive, store=ocitar.Registry(self.server.host))
        self.src = f"{self.server.host}/bench/app:1"
        self.out = self.work / "out.tar"
        self.n = 0
        self.extra: list[RegistryServer] = []

    def fresh(self) -> str:
        """A new registry (new port) for every load: skopeo's blob-info cache would otherwise mount blobs
        it saw pushed before instead of uploading them."""
        for old in self.extra:
            old.stop()
            # A gibibyte per load left behind would make every later run allocate fresh memory (on a VM
            # with free-page reporting, each first touch is a fault on the host, charged to whoever
            # writes: the registry).
            shutil.rmtree(old.storage.parent, ignore_errors=True)
        self.extra.clear()
        self.n += 1
        self.extra.append(self.start(self.work / f"fresh{self.n}"))
        return self.extra[0].host

    def start(self, where: Path) -> RegistryServer:
        server = start_registry("/usr/bin/docker-registry", where, "anonymous")
        if self.server_cpus is not None:  # every thread of the running server, and those it makes later
            cpu = ",".join(map(str, self.server_cpus))
            subprocess.run(["taskset", "-a", "-p", "-c", cpu, str(server.proc.pid)], check=True, capture_output=True)
        return server

    def argv(self, cmd: list[str]) -> list[str]:
        """`cmd` as run: on the client CPUs with `--pin`."""
        if self.client_cpus is None:
            return cmd
        return ["taskset", "-c", ",".join(map(str, sorted(self.client_cpus))), *cmd]

    def serving(self, case: str) -> int | None:
        """The registry process the last command of `case` talked to."""
        if case.startswith("load"):
            return self.extra[0].proc.pid if self.extra else None
        return self.server.proc.pid

    def fresh_dir(self) -> str:
        self.n += 1
        return str(self.work / f"dir{self.n}")

    def cases(self) -> list[tuple[str, dict[str, Callable[[], list[str]]]]]:
        src, out, archive, host = self.src, str(self.out), str(self.archive), self.server.host
        one = blobs_of(self.store, "linux/arm64")
        every = blobs_of(self.store, None)
        uploads = [str(f) for kind, f in every if kind == "blobs"]
        return [
            (
                "save 1 platform",
                {
                    "registry": lambda: [PY, "-c", SAVE_PY, src, out, "linux/arm64"],
                    "local": lambda: [PY, "-c", SAVE_LOCAL_PY, str(self.store), out, "linux/arm64"],
                    "skopeo": lambda: ["skopeo", "--override-arch", "arm64", "copy", "--src-tls-verify=false", f"docker://{src}", f"oci-archive:{out}:app"],
                    "floor": lambda: get_all(host, "bench/app", one),
                },
            ),
            (
                "save 4 platforms",
                {
                    "registry": lambda: [PY, "-c", SAVE_PY, src, out],
                    "local": lambda: [PY, "-c", SAVE_LOCAL_PY, str(self.store), out],
                    "skopeo": lambda: ["skopeo", "copy", "--multi-arch", "all", "--src-tls-verify=false", f"docker://{src}", f"oci-archive:{out}:app"],
                    "floor": lambda: get_all(host, "bench/app", every),
                },
            ),
            (
                "load 4 platforms",
                {
                    "registry": lambda: [PY, "-c", LOAD_PY, archive, f"{self.fresh()}/fresh"],
                    "local": lambda: [PY, "-c", LOAD_LOCAL_PY, archive, self.fresh_dir()],
                    "skopeo": lambda: ["skopeo", "copy", "--multi-arch", "all", "--dest-tls-verify=false", f"oci-archive:{archive}", f"docker://{self.fresh()}/fresh/bench/app:1"],
                    "floor": lambda: [PY, "-c", PUT_PY, str(JOBS), self.fresh(), "fresh/bench/app", *uploads],
                },
            ),
        ]

    def clean(self) -> None:
        self.out.unlink(missing_ok=True)
        for d in self.work.glob("dir*"):
            shutil.rmtree(d)

    def stop(self) -> None:
        for old in self.extra:
            old.stop()
        self.server.stop()
        shutil.rmtree(self.work, ignore_errors=True)


Results = list[tuple[str, dict[str, list[Run]]]]


def run(bench: Bench, reps: int, warm_up: bool = True) -> Results:
    results = []
    if warm_up:
        os.sync()  # the set-up's gigabytes reach the disk before anything is timed
        time.sleep(5)
    for name, tools in bench.cases():
        if bench.baseline is not None:  # the same command on the "before" build, right after the "after"
            tools = {"registry": tools["registry"], "before": tools["registry"], **tools}
        got: dict[str, list[Run]] = {k: [] for k in tools}
        # One warm-up round, not counted: a case's first command otherwise pays for memory no run has
        # used yet (2-3x slower on this VM, whichever tool goes first).
        first = 0 if warm_up else 1
        for rep in range(first, reps + 1):
            for tool, cmd in tools.items():  # alternating: one run of each per repetition
                env = dict(os.environ, PYTHONPATH=str(bench.baseline)) if tool == "before" else None
                argv = cmd()
                r = timed(bench.argv(argv), bench.serving(name), env)
                if rep:
                    got[tool].append(r)
                bench.clean()
        results.append((name, got))
    return results


def med(runs: list[Run], field: str) -> float:
    return float(statistics.median(float(getattr(r, field)) for r in runs))


def table(results: Results) -> str:
    before = "before" in results[0][1]
    head = "| case | ocitar, registry s |" + (" before s | after / before |" if before else "")
    head += " ocitar, local files s | registry / local | floor: curl s | skopeo s | skopeo / ocitar | RSS MiB ocitar registry / local / skopeo |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, got in results:
        wall = {k: med(v, "wall") for k, v in got.items()}
        rss = {k: max(r.rss for r in v) for k, v in got.items()}
        row = f"| {name} | {wall['registry']:.2f} |"
        if before:
            row += f" {wall['before']:.2f} | {wall['registry'] / wall['before']:.2f}× |"
        row += (
            f" {wall['local']:.2f} | {wall['registry'] / wall['local']:.2f}× | {wall['floor']:.2f} "
            f"| {wall['skopeo']:.2f} | {wall['skopeo'] / wall['registry']:.1f}× | {rss['registry']:.0f} / {rss['local']:.0f} / {rss['skopeo']:.0f} |"
        )
        rows.append(row)
    return "\n".join(rows)


def cpu_table(results: Results) -> str:
    """CPU seconds, median: the command's own + the registry server's while it ran."""
    tools = list(results[0][1])
    label = {"registry": "ocitar, registry", "before": "before", "local": "ocitar, local files", "floor": "floor: curl", "skopeo": "skopeo"}
    rows = ["| case (CPU s: own + registry server) | " + " | ".join(label[t] for t in tools) + " |", "|---|" + "---|" * len(tools)]
    for name, got in results:
        cells = [f"{med(v, 'cpu'):.2f} + {med(v, 'server'):.2f}" for v in got.values()]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default=None, help="image size (default 1G; 8M with --smoke)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3; 1 with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="8 MiB, 1 repetition: checks every command runs")
    ap.add_argument("--pin", action="store_true", help="registries on the last CPU, the commands on the others")
    ap.add_argument("--baseline", type=Path, help="a directory holding another build's `ocitar` package, measured alternately as 'before'")
    args = ap.parse_args()
    size = parse_size(args.size or ("8M" if args.smoke else "1G"))
    reps = args.reps or (1 if args.smoke else 3)
    if args.baseline is not None and not (args.baseline / "ocitar" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {args.baseline}: no ocitar package there")
    bench = Bench(size, args.baseline, pin=args.pin)
    try:
        results = run(bench, reps, warm_up=not args.smoke)
    finally:
        bench.stop()
    load = os.getloadavg()
    print(f"{size >> 20} MiB image, {len(PLATFORMS)} platforms, loopback docker-registry, median of {reps}, load average at the end {load[0]:.1f}" + (", registries pinned to their own CPU" if args.pin else "") + (" — smoke run: not meaningful" if args.smoke else "") + "\n")
    print(table(results))
    print()
    print(cpu_table(results))


if __name__ == "__main__":
    main()
