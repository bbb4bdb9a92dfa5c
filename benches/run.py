#!/usr/bin/env python3
"""ocitar's performance benchmark (issue 5): save and load timed against the machine's floor, a plain-Python
implementation (benches/plain_python.py) and skopeo, in one run.

    python benches/run.py                 # 1 GiB store, 3 repetitions
    python benches/run.py --size 4G --reps 5 --workdir /var/tmp/bench --keep
    python benches/run.py --smoke         # 32 MiB, 1 repetition, < 60 s: fails only if a command fails

It generates a store of 2 images x 4 platforms x 3 incompressible uncompressed layers (OCI media types,
built with ocitar.testing, deterministic) and its archives (plain and gzip, written by ocitar.save), then
times each case's implementations alternately (A B C D, A B C D, ...) for --reps repetitions, each in a
fresh process under `/usr/bin/time -v` (peak RSS), with `sync` (untimed) before every measured command and
the outputs removed after it. Every output is checked (the blob set saved or loaded), untimed.
See benches/README.md for what each case measures and the latest results.

Never exits non-zero for a missed target; exits non-zero when a command fails or an output is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import platform as pyplatform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import plain_python  # noqa: E402
import scale  # noqa: E402

PY = sys.executable
PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/ppc64le")
ONE = "linux/arm64"  # the platform of the "one platform" cases
REFS = ("bench/img0:b0", "bench/img1:b1")  # ocitar / plain-Python refs
SKOPEO_REFS = ("b0", "b1")  # the same images as skopeo names them (org.opencontainers.image.ref.name)
MIB = 1 << 20

# The measured ocitar operations, each run as `python -c CODE ARGS...`. They print the time of the
# operation itself (without interpreter start-up and import) as {"op": seconds}.
OCITAR_SAVE = (
    "import sys,json,time,ocitar\n"
    "t=time.perf_counter()\n"
    "ocitar.save(sys.argv[1],[sys.argv[2]],sys.argv[4:] or None,output=sys.argv[3])\n"
    "print(json.dumps({'op':time.perf_counter()-t}))"
)
OCITAR_LOAD = (
    "import sys,json,time,ocitar\n"
    "t=time.perf_counter()\n"
    "src=sys.stdin.buffer if sys.argv[1]=='-' else sys.argv[1]\n"
    "ocitar.load(src,sys.argv[3:] or None,store=sys.argv[2])\n"
    "print(json.dumps({'op':time.perf_counter()-t}))"
)
OCITAR_INSPECT = (
    "import sys,json,time,ocitar\n"
    "t=time.perf_counter()\n"
    "inv=ocitar.inspect(sys.argv[1])\n"
    "print(json.dumps({'op':time.perf_counter()-t}))"
)
IMPORT = "import json,time\nt=time.perf_counter()\nimport ocitar\nprint(json.dumps({'op':time.perf_counter()-t}))"
PLAIN = [PY, str(HERE / "plain_python.py")]


class BenchError(Exception):
    """A command failed or wrote something wrong."""


# --------------------------------------------------------------------------- measuring


@dataclass
class Sample:
    wall: float
    op: float | None
    rss_kib: int
    other_cpu: float = 0.0  # CPU seconds used by other processes meanwhile (contention)
    busy: bool = False  # other_cpu was over the limit (kept only when every retry was busy too)
    out: dict = field(default_factory=dict)  # the JSON line the command printed ({"op": ..., ...})


@dataclass
class Quiet:
    """How to cope with a shared machine: wait for idle CPUs before each measurement, and re-measure one
    during which other processes used more than ``limit`` of a core on average."""

    max_wait: float = 0.0
    retries: int = 0
    limit: float = 0.25


QUIET = Quiet()
CLK = os.sysconf("SC_CLK_TCK")


def cpu_times() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all CPUs."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:9]]
    idle = vals[3] + vals[4]
    return (sum(vals) - idle) / CLK, sum(vals) / CLK


def wait_idle(max_wait: float) -> float:
    """Wait (at most ``max_wait`` s) until the machine is idle: under 10 % of its CPUs busy over 0.3 s."""
    deadline = time.monotonic() + max_wait
    while True:
        b0, t0 = cpu_times()
        time.sleep(0.3)
        b1, t1 = cpu_times()
        frac = (b1 - b0) / max(t1 - t0, 1e-9)
        if frac < 0.10 or time.monotonic() >= deadline:
            return frac
        time.sleep(0.7)


def sync() -> None:
    subprocess.run(["sync"], check=True)


def measure(cmd: list[str], env: dict[str, str], stdin_path: Path | None = None) -> Sample:
    """Run ``cmd`` under /usr/bin/time -v after an untimed sync; wall time measured here (perf_counter)."""
    sync()
    if QUIET.max_wait > 0:
        wait_idle(QUIET.max_wait)
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        argv = ["/usr/bin/time", "-o", tf.name, "-v"]
        if stdin_path is not None:  # a pipe, as a user would stream: cat FILE | cmd
            argv += ["sh", "-c", 'cat "$0" | "$@"', str(stdin_path), *cmd]
        else:
            argv += cmd
        busy0, _ = cpu_times()
        t0 = time.perf_counter()
        p = subprocess.run(argv, capture_output=True, env=env, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        busy1, _ = cpu_times()
        report = Path(tf.name).read_text()
    if p.returncode != 0:
        raise BenchError(
            f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr.decode(errors='replace')[-3000:]}"
        )

    def field_of(name: str) -> float:
        m = re.search(re.escape(name) + r": ([0-9.]+)", report)
        return float(m.group(1)) if m else 0.0

    op, out = None, {}
    for line in p.stdout.decode(errors="replace").splitlines()[::-1]:
        if line.startswith("{"):
            try:
                out = json.loads(line)
                op = float(out["op"])
                break
            except (ValueError, KeyError):
                pass
    own = field_of("User time (seconds)") + field_of("System time (seconds)")
    other = max(0.0, busy1 - busy0 - own)
    return Sample(
        wall,
        op,
        int(field_of("Maximum resident set size (kbytes)")),
        other_cpu=other,
        busy=other > QUIET.limit * wall + 0.05,
        out=out,
    )


@dataclass
class Impl:
    name: str  # floor | ocitar | plain | skopeo
    label: str  # what it runs, for the table
    cmd: list[str]
    stdin: Path | None = None
    check: Callable[[], None] | None = None
    samples: list[Sample] = field(default_factory=list)

    def med(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    def op_med(self) -> float | None:
        ops = [s.op for s in self.samples if s.op is not None]
        return statistics.median(ops) if ops else None

    def eff(self) -> float:
        """The time compared: the operation alone for Python implementations, else the process wall time."""
        op = self.op_med()
        return op if op is not None else self.med()

    def rss_mib(self) -> float:
        return max(s.rss_kib for s in self.samples) / 1024


@dataclass
class Case:
    key: str
    title: str
    nbytes: int  # bytes of the blobs moved
    impls: list[Impl]
    out: Path  # removed after every command

    def impl(self, name: str) -> Impl | None:
        return next((i for i in self.impls if i.name == name), None)


def rm(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


# --------------------------------------------------------------------------- the store and archives


def parse_size(s: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", s.strip(), re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"size {s!r}: expected e.g. 1G, 512M, 32M")
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * mult)


def build(store: Path, size: int) -> None:
    from ocitar.testing import Image, Layer, Platform, build_store

    per_layer = size // (len(REFS) * len(PLATFORMS) * 3)
    # A layer blob is a tar: 512-byte header, content padded to 512, 1024 zero bytes, padded to 10240.
    content = max(512, (per_layer - 10240) // 512 * 512)
    images = [
        Image(
            names=(ref,),
            platforms=tuple(
                Platform(
                    p, layers=tuple(Layer(size=content, seed=f"{ref}|{p}|{j}", compression="none") for j in range(3))
                )
                for p in PLATFORMS
            ),
        )
        for ref in REFS
    ]
    build_store(store, images)


def blobs_of(store: Path, ref: str, platforms: list[str]) -> list[tuple[str, int]]:
    """(digest, size) of every blob saved for ``ref`` with ``platforms``: the plain walker's answer."""
    top = plain_python.resolve(str(store), ref)
    return [(d["digest"], d["size"]) for d in plain_python.select(top, plain_python.store_doc(str(store)), platforms)]


def paths(store: Path, blobs: list[tuple[str, int]]) -> list[str]:
    return [str(store / plain_python.blob_name(d)) for d, _ in blobs]


def tar_blobs(path: Path) -> set[str]:
    with tarfile.open(path, "r:") as tf:
        return {
            "sha256:" + n.rsplit("/", 1)[1]
            for n in (m.name.lstrip("./") for m in tf.getmembers() if m.isfile())
            if n.startswith("blobs/sha256/")
        }


def store_blobs(path: Path) -> set[str]:
    d = path / "blobs" / "sha256"
    return {"sha256:" + n for n in os.listdir(d)} if d.is_dir() else set()


# --------------------------------------------------------------------------- the cases


def cases(work: Path, store: Path, full: Path, full_gz: Path, skopeo: str | None) -> list[Case]:
    out = work / "out"
    tar_out = out / "save.tar"
    dest = out / "dest"
    cat_out = out / "cat.bin"
    result = []

    def expect_tar(want: set[str]) -> Callable[[], None]:
        def check() -> None:
            got = tar_blobs(tar_out)
            if got != want:
                raise BenchError(
                    f"{tar_out}: {len(got)} blobs, expected {len(want)} (missing {sorted(want - got)[:3]}, extra {sorted(got - want)[:3]})"
                )

        return check

    def expect_store(want: set[str]) -> Callable[[], None]:
        def check() -> None:
            got = store_blobs(dest)
            if got != want or not (dest / "index.json").is_file():
                raise BenchError(f"{dest}: {len(got)} blobs, expected {len(want)}")

        return check

    def expect_size(path: Path, n: int) -> Callable[[], None]:
        def check() -> None:
            if path.stat().st_size != n:
                raise BenchError(f"{path}: {path.stat().st_size} bytes, expected {n}")

        return check

    def expect_exists(path: Path) -> Callable[[], None]:
        def check() -> None:
            if not path.exists():
                raise BenchError(f"{path}: not written")

        return check

    cat = 'cat "$@" > "$0"'
    cat_sync = 'cat "$@" > "$0" && sync -d "$0"'

    def floor(label: str, script: str, blobs: list[tuple[str, int]], n: int) -> Impl:
        """``cat`` of exactly ``blobs`` into one file (``script``: with or without ``sync -d``)."""
        return Impl("floor", label, ["sh", "-c", script, str(cat_out), *paths(store, blobs)], check=expect_size(cat_out, n))

    def platform_args(plats: list[str]) -> list[str]:
        return [a for p in plats for a in ("--platform", p)]

    def skopeo_load(pre: str, label: str, archive: Path) -> Impl:
        """skopeo copies each image of ``archive`` into ``dest`` (one ``copy`` per image)."""
        script = " && ".join(f'{pre} "oci-archive:$0:{r}" "oci:$1:{r}"' for r in SKOPEO_REFS)
        return Impl(
            "skopeo",
            f"{label} (x{len(SKOPEO_REFS)} images)",
            ["sh", "-c", script, str(archive), str(dest)],
            check=expect_exists(dest / "index.json"),
        )

    # save: all platforms of one image; one platform of one image
    for key, title, plats in (
        ("save-all", "save, all 4 platforms of one image", []),
        ("save-one", f"save, one platform ({ONE}) of one image", [ONE]),
    ):
        blobs = blobs_of(store, REFS[0], plats)
        n = sum(s for _, s in blobs)
        impls = [
            floor("cat blobs > file", cat, blobs, n),
            Impl(
                "ocitar",
                "ocitar.save",
                [PY, "-c", OCITAR_SAVE, str(store), REFS[0], str(tar_out), *plats],
                check=expect_tar({d for d, _ in blobs}),
            ),
            Impl(
                "plain",
                "tarfile+hashlib",
                [*PLAIN, "save", str(store), REFS[0], str(tar_out), *platform_args(plats)],
                check=expect_tar({d for d, _ in blobs}),
            ),
        ]
        if skopeo:
            sk = [skopeo]
            if plats:
                os_, arch = ONE.split("/")[:2]
                sk += ["--override-os", os_, "--override-arch", arch]
                sk += ["copy"]
            else:
                sk += ["copy", "--multi-arch", "all"]
            sk += [f"oci:{store}:{SKOPEO_REFS[0]}", f"oci-archive:{tar_out}:{SKOPEO_REFS[0]}"]
            impls.append(Impl("skopeo", " ".join(["skopeo", *sk[1:-2]]), sk, check=expect_exists(tar_out)))
        result.append(Case(key, title, n, impls, out))

    # load: all platforms of the archive (both images); one platform of four, seekable
    for key, title, plats in (
        ("load-all", "load, all platforms (2 images x 4), seekable archive", []),
        ("load-one", f"load, one platform of four ({ONE}, 2 images), seekable archive", [ONE]),
    ):
        blobs = sorted({b for ref in REFS for b in blobs_of(store, ref, plats)})
        n = sum(s for _, s in blobs)
        want = {d for d, _ in blobs}
        impls = [
            floor("cat blobs > file; sync -d file", cat_sync, blobs, n),
            Impl(
                "ocitar", "ocitar.load", [PY, "-c", OCITAR_LOAD, str(full), str(dest), *plats], check=expect_store(want)
            ),
            Impl(
                "plain",
                "tarfile+hashlib, fsync/blob",
                [*PLAIN, "load", str(full), str(dest), *platform_args(plats)],
                check=expect_store(want),
            ),
        ]
        if skopeo:
            if plats:
                os_, arch = ONE.split("/")[:2]
                pre = f"{skopeo} --override-os {os_} --override-arch {arch} copy"
            else:
                pre = f"{skopeo} copy --multi-arch all"
            impls.append(skopeo_load(pre, pre.replace(skopeo, "skopeo", 1), full))
        result.append(Case(key, title, n, impls, out))

    # load from a gzip stream (a pipe), all platforms
    blobs = sorted({b for ref in REFS for b in blobs_of(store, ref, [])})
    n = sum(s for _, s in blobs)
    want = {d for d, _ in blobs}
    impls = [
        floor("cat blobs > file; sync -d file (no decompression)", cat_sync, blobs, n),
        Impl(
            "ocitar",
            "cat | ocitar.load(stdin)",
            [PY, "-c", OCITAR_LOAD, "-", str(dest)],
            stdin=full_gz,
            check=expect_store(want),
        ),
        Impl(
            "plain",
            "cat | tarfile r|gz, fsync/blob",
            [*PLAIN, "load", "-", str(dest)],
            stdin=full_gz,
            check=expect_store(want),
        ),
    ]
    if skopeo:  # skopeo reads a compressed oci-archive from a file (not from a pipe)
        label = "skopeo copy --multi-arch all, from the .tar.gz file"
        impls.append(skopeo_load(f"{skopeo} copy --multi-arch all", label, full_gz))
    result.append(Case("load-gzip", "load, all platforms, gzip archive from a pipe", n, impls, out))
    return result


# --------------------------------------------------------------------------- reporting


def fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def machine() -> dict[str, str]:
    cpu = "?"
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "?":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        mem = f"{kb / (1 << 20):.1f} GiB"
    except (OSError, AttributeError):
        pass

    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"

    import ocitar

    return {
        "nproc": out(["nproc"]),
        "cpu": cpu,
        "sha_ni": "yes" if " sha_ni" in flags else "no",
        "memory": mem,
        "kernel": pyplatform.release(),
        "python": pyplatform.python_version(),
        "ocitar": ocitar.__version__,
        "skopeo": out(["skopeo", "--version"]) if shutil.which("skopeo") else "not installed",
        "engine": revision(PKG_DIR or Path(ocitar.__file__).parent),
    }


PKG_DIR: Path | None = None  # the ocitar package as installed, when the run uses a pinned copy of it


def package_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("ocitar")
    if spec is None or not spec.submodule_search_locations:
        raise BenchError("ocitar is not importable: pip install . (or -e .) first")
    return Path(next(iter(spec.submodule_search_locations)))


def pin(work: Path) -> None:
    """Copy the installed ocitar package (Python files and compiled module) into the work dir and use that
    copy here and in every measured process, so that a rebuild during the run cannot mix two builds."""
    global PKG_DIR
    PKG_DIR = package_dir()
    dst = work / "pinned"
    rm(dst)
    shutil.copytree(PKG_DIR, dst / "ocitar", ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(dst))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(dst) + (os.pathsep + old if old else "")


def revision(pkg: Path) -> str:
    """The git commit of the ocitar checkout (when run from one), ``+dirty`` with uncommitted src/ changes,
    and the build time of the compiled module."""
    so = next(iter(sorted(pkg.glob("_ocitar*.so"))), None)
    built = time.strftime("%Y-%m-%d %H:%M", time.gmtime(so.stat().st_mtime)) + " UTC" if so else "?"
    try:
        root = subprocess.run(["git", "-C", str(pkg), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
        if root.returncode != 0:
            return f"module built {built}"
        top = root.stdout.strip()
        head = subprocess.run(["git", "-C", top, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", top, "status", "--porcelain", "src"], capture_output=True, text=True)
        return f"{head.stdout.strip()}{'+dirty' if dirty.stdout.strip() else ''}, module built {built}"
    except OSError:
        return f"module built {built}"


def table(all_cases: list[Case]) -> str:
    rows = [
        "| case | implementation | time (median) | min–max | whole process | MiB/s | peak RSS | × floor | × ocitar |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in all_cases:
        floor = c.impl("floor")
        oc = c.impl("ocitar")
        for i in c.impls:
            if not i.samples:
                continue
            eff = [s.op if s.op is not None else s.wall for s in i.samples]
            med = i.eff()
            vs_floor = f"{med / floor.eff():.2f}" if floor and floor.samples else "-"
            vs_oc = f"{med / oc.eff():.2f}" if oc and oc.samples else "-"
            busy = " ⚠ busy" if any(x.busy for x in i.samples) else ""
            rows.append(
                f"| {c.key} ({c.nbytes / MIB:.0f} MiB) | {i.name}: {i.label.replace('|', chr(92) + '|')}{busy} | {fmt_s(med)} | "
                f"{fmt_s(min(eff))}–{fmt_s(max(eff))} | {fmt_s(i.med())} | {c.nbytes / MIB / med:.0f} | "
                f"{i.rss_mib():.0f} MiB | {vs_floor} | {vs_oc} |"
            )
    return "\n".join(rows)


def targets(all_cases: list[Case], extra: dict[str, Impl]) -> list[tuple[str, bool | None, str]]:
    by = {c.key: c for c in all_cases}
    out: list[tuple[str, bool | None, str]] = []

    def ratio(case: str, a: str, b: str) -> tuple[float, float] | None:
        c = by.get(case)
        ia, ib = (c.impl(a), c.impl(b)) if c else (None, None)
        if not ia or not ib or not ia.samples or not ib.samples:
            return None
        return ia.eff() / ib.eff(), ia.med() / ib.med()

    def add(name: str, case: str, a: str, b: str, limit: float, le: bool) -> None:
        r = ratio(case, a, b)
        if r is None:
            out.append((name, None, "not measured"))
            return
        ok = r[0] <= limit if le else r[0] >= limit
        out.append((name, ok, f"{r[0]:.2f} (whole process {r[1]:.2f})"))

    def in_process(name: str, key: str, limit: float, also: str = "") -> None:
        i = extra.get(key)
        if i and i.samples:
            v = i.op_med() or 0.0
            out.append((name, v <= limit, f"{v * 1000:.1f} ms in-process (process {fmt_s(i.med())}{also})"))

    add("save all platforms: ocitar ≤ 1.3 × floor", "save-all", "ocitar", "floor", 1.3, True)
    add("save all platforms: plain Python ≥ 2 × ocitar", "save-all", "plain", "ocitar", 2, False)
    add("save all platforms: skopeo ≥ 5 × ocitar", "save-all", "skopeo", "ocitar", 5, False)
    add("load all platforms: ocitar ≤ 1.3 × durable floor", "load-all", "ocitar", "floor", 1.3, True)
    add("load all platforms: plain Python (fsync/blob) ≥ 2 × ocitar", "load-all", "plain", "ocitar", 2, False)
    add("load one of four platforms: ocitar ≤ 1.5 × durable floor", "load-one", "ocitar", "floor", 1.5, True)
    add("load one of four platforms: plain Python ≥ 2 × ocitar", "load-one", "plain", "ocitar", 2, False)
    rss = [(c.key, i.rss_mib()) for c in all_cases for i in c.impls if i.name == "ocitar" and i.samples]
    rss += [(k, i.rss_mib()) for k, i in extra.items() if i.samples]
    worst = max(rss, key=lambda x: x[1]) if rss else None
    out.append(
        (
            "ocitar peak RSS ≤ 100 MiB (every case)",
            worst[1] <= 100 if worst else None,
            f"max {worst[1]:.0f} MiB ({worst[0]})" if worst else "not measured",
        )
    )
    py = extra.get("python")
    in_process("import ocitar ≤ 50 ms", "import", 0.05, f", bare python {fmt_s(py.med())}" if py and py.samples else "")
    in_process("ocitar.inspect of the archive ≤ 0.1 s", "inspect", 0.1)
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ocitar performance benchmark (issue 5)")
    ap.add_argument("--size", type=parse_size, default=None, help="store size (default 1G; 32M with --smoke)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3; 1 with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="32 MiB, 1 repetition: checks every command runs")
    ap.add_argument(
        "--workdir", type=Path, default=None, help="where the store and outputs go (default: a new dir under /tmp)"
    )
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the work dir (reused by a later run with the same --workdir and --size)",
    )
    ap.add_argument("--no-skopeo", action="store_true", help="skip skopeo even when installed")
    ap.add_argument(
        "--no-pin",
        action="store_true",
        help="measure the installed ocitar in place (default: a copy taken at the start, immune to rebuilds)",
    )
    ap.add_argument(
        "--cases",
        default="",
        help="comma-separated subset: save-all,save-one,load-all,load-one,load-gzip,import,inspect,hostile,scale,many",
    )
    ap.add_argument(
        "--scale",
        choices=sorted(scale.SIZES),
        default="full",
        help="counts of the scale cases: full (20 000 names, ...; the default) or quarter; --smoke: small counts",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument(
        "--many",
        default=None,
        help="image counts of the many-images case (benches/many.py), comma-separated, 0 to skip "
        "(default 1000,5000; 50 with --smoke)",
    )
    ap.add_argument(
        "--max-wait",
        type=float,
        default=None,
        help="before each measurement wait up to this many seconds for idle CPUs (default 60; 0 with --smoke)",
    )
    ap.add_argument(
        "--retries",
        type=int,
        default=None,
        help="re-measure up to this many times when other processes used the CPUs meanwhile (default 3; 0 with --smoke)",
    )
    a = ap.parse_args(argv)
    size = a.size or (32 * MIB if a.smoke else 1 << 30)
    reps = a.reps or (1 if a.smoke else 3)
    only = {c for c in a.cases.split(",") if c}
    QUIET.max_wait = a.max_wait if a.max_wait is not None else (0.0 if a.smoke else 60.0)
    QUIET.retries = a.retries if a.retries is not None else (0 if a.smoke else 3)
    skopeo = None if a.no_skopeo else shutil.which("skopeo")
    for tool in ("/usr/bin/time", "sync", "cat"):
        if not shutil.which(tool):
            print(f"run.py: {tool} is required", file=sys.stderr)
            return 2

    created = a.workdir is None or not a.workdir.exists()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="ocitar-bench-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    try:
        if not a.no_pin:
            pin(work)
        if only == {"scale"}:
            print("machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()))
            run_scale(work, scale.SMOKE if a.smoke else scale.SIZES[a.scale])
            return 0
        rc = _run(a, work, size, reps, only, skopeo, t_start)
        if not only or "hostile" in only:
            import hostile  # benches/hostile.py: archives that must be refused in bounded time and memory

            print()
            rc = rc or hostile.main(["--smoke"] if a.smoke else [])
        return rc
    except (BenchError, scale.ScaleError) as e:
        print(f"\nrun.py: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        if a.keep:
            shutil.rmtree(work / "out", ignore_errors=True)
            shutil.rmtree(work / "tmp", ignore_errors=True)
            shutil.rmtree(work / "pinned", ignore_errors=True)
            print(f"work dir kept: {work}")
        elif created:
            shutil.rmtree(work, ignore_errors=True)
        else:
            for n in ("out", "tmp", "pinned", "scale", "full.tar", "full.tar.gz", "archives.params"):
                rm(work / n)
            rm(work / "many")


def run_scale(work: Path, sizes: scale.Sizes) -> None:
    """The counts that must not explode (issue 11): see benches/scale.py."""
    (work / "out").mkdir(exist_ok=True)
    t = time.perf_counter()
    print("\nscale cases (one run each; archives generated under the work dir)", end="", flush=True)
    results = scale.run(work, sizes, measure, dict(os.environ), PY)
    print(f" ({time.perf_counter() - t:.0f} s)")
    print(scale.table(results, fmt_s))


def _run(
    a: argparse.Namespace, work: Path, size: int, reps: int, only: set[str], skopeo: str | None, t_start: float
) -> int:
    import ocitar

    info = machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    store = work / "store"
    marker = work / "store.params"
    params = json.dumps({"size": size, "platforms": PLATFORMS, "refs": REFS, "v": 1})
    t = time.perf_counter()
    if not (marker.exists() and marker.read_text() == params and (store / "index.json").exists()):
        rm(store)
        build(store, size)
        marker.write_text(params)
        print(f"generated store {store} in {time.perf_counter() - t:.1f} s")
    else:
        print(f"reusing store {store}")
    full, full_gz = work / "full.tar", work / "full.tar.gz"
    # Archives are written by the ocitar under test; a kept work dir reuses them while store and engine match.
    amarker = work / "archives.params"
    aparams = json.dumps({"store": params, "engine": info["engine"]})
    if amarker.exists() and amarker.read_text() == aparams and full.exists() and full_gz.exists():
        print(f"reusing archives {full.name}, {full_gz.name}")
    else:
        rm(amarker)
        t = time.perf_counter()
        ocitar.save(store, list(REFS), output=full)
        t_plain = time.perf_counter() - t
        t = time.perf_counter()
        ocitar.save(store, list(REFS), output=full_gz, compression="gzip")
        amarker.write_text(aparams)
        print(
            f"archives: {full.name} {full.stat().st_size / MIB:.0f} MiB written in {t_plain:.1f} s, "
            f"{full_gz.name} in {time.perf_counter() - t:.1f} s (ocitar.save, compression='gzip')"
        )
    (work / "out").mkdir(exist_ok=True)
    (work / "tmp").mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(work / "tmp"))  # skopeo extracts oci-archives there
    # Warm the page cache (targets are for a warm cache) and flush what generation left dirty.
    for p in [*store.rglob("*"), full, full_gz]:
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(8 * MIB):
                    pass
    sync()

    all_cases = [c for c in cases(work, store, full, full_gz, skopeo) if not only or c.key in only]
    extra: dict[str, Impl] = {}
    if not only or "import" in only:
        extra["python"] = Impl("python", "python -c pass", [PY, "-c", "pass"])
        extra["import"] = Impl("import", "python -c 'import ocitar'", [PY, "-c", IMPORT])
    if not only or "inspect" in only:
        extra["inspect"] = Impl("inspect", "ocitar.inspect(archive)", [PY, "-c", OCITAR_INSPECT, str(full)])
    # One untimed run of the Python interpreter and module, so the first measurement is not a cold import.
    subprocess.run([PY, "-c", "import ocitar, tarfile, hashlib"], check=True)

    def clean(c_out: Path) -> None:
        for n in ("save.tar", "dest", "cat.bin"):
            rm(c_out / n)
        for p in (work / "tmp").iterdir():
            rm(p)

    def sample(i: Impl, out: Path | None) -> None:
        for attempt in range(QUIET.retries + 1):
            if out is not None:
                clean(out)
            s = measure(i.cmd, env, i.stdin)
            if i.check:
                i.check()
            if not s.busy or attempt == QUIET.retries:
                break
            print("r", end="", flush=True)  # re-measured: other processes used the CPUs meanwhile
        i.samples.append(s)

    for rep in range(reps):
        print(f"repetition {rep + 1}/{reps}", end="", flush=True)
        for c in all_cases:
            for i in c.impls:
                sample(i, c.out)
                print(".", end="", flush=True)
            clean(c.out)
        if extra.get("import"):
            for _ in range(5):
                sample(extra["python"], None)
                sample(extra["import"], None)
        if extra.get("inspect"):
            for _ in range(3):
                sample(extra["inspect"], None)
        print(f" ({time.perf_counter() - t_start:.0f} s)")

    print()
    print(
        f"store {size / MIB:.0f} MiB ({len(REFS)} images x {len(PLATFORMS)} platforms x 3 layers), "
        f"{reps} repetition(s), warm page cache; times are whole-process wall clock (median, min–max); "
        "'time' is the operation itself for ocitar and plain Python (timed inside the fresh process: "
        "interpreter start-up and import excluded), the whole process for cat/skopeo; "
        "'whole process' is the wall time of the process; ratios use 'time'"
    )
    print(table(all_cases))
    if extra:
        print()
        print("| other | median | min–max | op only | peak RSS |")
        print("|---|---:|---:|---:|---:|")
        for i in extra.values():
            walls = [s.wall for s in i.samples]
            print(
                f"| {i.label} | {fmt_s(i.med())} | {fmt_s(min(walls))}–{fmt_s(max(walls))} | "
                f"{fmt_s(i.op_med()) if i.op_med() is not None else '-'} | {i.rss_mib():.0f} MiB |"
            )
    print()
    print(
        "targets (issue 5 §2): ratios of the medians of 'time' (whole-process ratios in parentheses)"
        + (" — smoke run: not meaningful" if a.smoke else "")
    )
    tg = targets(all_cases, extra)
    for name, ok, detail in tg:
        print(f"  {'PASS' if ok else ('n/a ' if ok is None else 'MISS')}  {name}: {detail}")
    many_cases: list[Case] = []
    many_targets: list[tuple[str, bool | None, str]] = []
    counts = [int(x) for x in (a.many or ("50" if a.smoke else "1000,5000")).split(",") if int(x) > 0]
    if counts and (not only or "many" in only):
        import many  # the many-images case (issue 15): its own stores, same measuring

        many_cases = many.run_many(work / "many", counts, reps)
        many_targets = many.targets(many_cases)
        for name, ok, detail in many_targets:
            print(f"  {'PASS' if ok else ('n/a ' if ok is None else 'MISS')}  {name}: {detail}")
    if not only or "scale" in only:
        run_scale(work, scale.SMOKE if a.smoke else scale.SIZES[a.scale])
    total = time.perf_counter() - t_start
    print(f"\ntotal {total:.0f} s")
    now = revision(PKG_DIR or Path(ocitar.__file__).parent)
    if now != info["engine"] and PKG_DIR is not None:
        print(f"note: the installed ocitar changed during the run ({now}); this run measured its copy from the start")
    elif now != info["engine"]:
        print(f"WARNING: the ocitar module changed during the run ({info['engine']} -> {now}): samples mix two builds")
    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "size": size,
                    "reps": reps,
                    "total_s": total,
                    "cases": [
                        {
                            "key": c.key,
                            "title": c.title,
                            "bytes": c.nbytes,
                            "impls": [
                                {
                                    "name": i.name,
                                    "label": i.label,
                                    "wall": [s.wall for s in i.samples],
                                    "op": [s.op for s in i.samples],
                                    "rss_kib": [s.rss_kib for s in i.samples],
                                    "other_cpu": [s.other_cpu for s in i.samples],
                                }
                                for i in c.impls
                            ],
                        }
                        for c in all_cases + many_cases
                    ],
                    "other": {
                        k: {
                            "wall": [s.wall for s in i.samples],
                            "op": [s.op for s in i.samples],
                            "rss_kib": [s.rss_kib for s in i.samples],
                            "other_cpu": [s.other_cpu for s in i.samples],
                        }
                        for k, i in extra.items()
                    },
                    "targets": [{"target": n, "met": ok, "value": d} for n, ok, d in tg + many_targets],
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
