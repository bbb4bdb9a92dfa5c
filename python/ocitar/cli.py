"""The ``ocitar`` command line: ``save``, ``load``, ``inspect``, ``verify`` and ``ls``, with Docker's flags.

Exit codes: 0 success, 1 operation error (one line on stderr naming the cause), 2 usage error.
"""

from __future__ import annotations

import argparse
import difflib
import gc
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import ocitar
from ocitar._text import printable
from ocitar.display import human
from ocitar.errors import OcitarError, PlatformNotFoundError


def _usage(message: str) -> SystemExit:
    """A usage error found after parsing: one line, exit 2."""
    sys.stderr.write(f"ocitar: error: {printable(message)}\n")
    return SystemExit(2)


def _did_you_mean(e: PlatformNotFoundError) -> str:
    """" (did you mean linux/amd64?)" for a requested platform one typo away from one the image has."""
    have = {ocitar.normalize_platform(p): p for p in e.available}
    close = [m for wanted in e.missing for m in difflib.get_close_matches(wanted, list(have), n=1, cutoff=0.8)]
    return f" (did you mean {', '.join(have[c] for c in close)}?)" if close else ""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors exit 2 with one line
        self.print_usage(sys.stderr)
        sys.stderr.write(f"ocitar: error: {printable(message)}\n")
        raise SystemExit(2)


def _progress(args: argparse.Namespace) -> bool | None:
    return True if (not getattr(args, "quiet", False) and sys.stderr.isatty()) else None


def _platform_list(value: str) -> str:
    """``--platform LIST``: an empty LIST (an unset ``$PLATFORMS``) or an empty item is a usage error, never
    "every platform"."""
    if not value.strip() or any(not p.strip() for p in value.split(",")):
        raise argparse.ArgumentTypeError(f"empty platform in {value!r}: leave out --platform to select every platform")
    return value


def _platforms(values: list[str] | None) -> list[str]:
    return [p.strip() for v in values or [] for p in v.split(",")]


SUFFIXES = {".tar.gz": "gzip", ".tgz": "gzip", ".tar.zst": "zstd", ".tar.zstd": "zstd", ".tzst": "zstd"}


def _compression(args: argparse.Namespace) -> str | None:
    """``--compress`` when given, else the one ``-o``'s suffix names (``app.tar.gz``, ``app.tzst``)."""
    if args.compress or not args.output:
        return args.compress  # type: ignore[no-any-return]
    name = args.output.lower()
    return next((c for suffix, c in SUFFIXES.items() if name.endswith(suffix)), None)


def _store(args: argparse.Namespace, default: bool = True) -> Any:
    """The store the flags name: a :class:`ocitar.Registry` for ``--store docker://BASE``, else a path."""
    store = args.store
    if store is None or not store.startswith("docker://"):
        for flag in ("username", "authfile", "ca_file"):
            if getattr(args, flag, None):
                raise ValueError(f"--{flag.replace('_', '-')} applies to --store docker://...")
        return store or (ocitar.default_store() if default else None)
    auth: tuple[str, str] | None = None
    if args.username:
        if not args.password_stdin:
            raise ValueError("--username needs --password-stdin (a password on the command line would be visible)")
        if args.command == "load" and args.input in (None, "-"):
            raise ValueError("--password-stdin reads stdin: give the archive with -i FILE")
        auth = (args.username, sys.stdin.readline().rstrip("\r\n"))
    elif args.password_stdin:
        raise ValueError("--password-stdin needs --username")
    if args.authfile:
        os.environ["REGISTRY_AUTH_FILE"] = args.authfile
    return ocitar.Registry(store, auth=auth, ca_file=args.ca_file, insecure=args.insecure, jobs=args.jobs)


def _registry_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("registry (--store docker://HOST[:PORT][/PREFIX])")
    g.add_argument("--username", metavar="USER", help="user name; the password is read from stdin")
    g.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    g.add_argument("--authfile", metavar="FILE", help="credentials file (auth.json format), before docker's config")
    g.add_argument("--ca-file", metavar="PEM", help="CA certificates to trust besides the system's")
    g.add_argument("--insecure", action="store_true", help="allow plain HTTP and any certificate")
    g.add_argument("--jobs", type=int, default=4, metavar="N", help="blobs moved at once (default 4)")


def _cmd_save(args: argparse.Namespace) -> int:
    store = _store(args)
    platforms = _platforms(args.platform)
    kw: dict[str, Any] = {"index": args.index, "prefer": args.prefer, "compression": _compression(args)}
    if args.output and args.output != "-":
        report = ocitar.save(store, args.images, platforms, output=args.output, progress=_progress(args), **kw)
    else:
        if sys.stdout.isatty():
            sys.stderr.write("ocitar: error: refusing to write an archive to a terminal; use -o FILE or a pipe\n")
            return 1
        report = ocitar.save(store, args.images, platforms, output=sys.stdout.buffer, progress=_progress(args), **kw)
        sys.stdout.buffer.flush()
    to_file = bool(args.output and args.output != "-")
    if args.format == "json":
        # The archive may be on stdout: the report goes there only when the archive went to a file.
        (sys.stdout if to_file else sys.stderr).write(json.dumps(report.to_dict(), indent=2) + "\n")
    elif not args.quiet and to_file:
        for image in report.images:
            names = ", ".join(image.names) or image.digest
            absent = f" ({len(image.absent)} listed, absent: sparse)" if image.absent else ""
            sys.stderr.write(printable(f"Saved {names} [{', '.join(image.platforms)}]{absent} to {args.output}") + "\n")
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    source: Any = args.input if args.input and args.input != "-" else sys.stdin.buffer
    if source is sys.stdin.buffer and sys.stdin.isatty():
        sys.stderr.write("ocitar: error: no archive given: use -i FILE or pipe one on stdin\n")
        return 1
    if source is sys.stdin.buffer and not sys.stdin.buffer.peek(1):
        sys.stderr.write("ocitar: error: stdin is empty: pipe an archive or use -i FILE\n")
        return 1
    store = _store(args, default=False)
    kw: dict[str, Any] = {"index": args.index} if isinstance(store, ocitar.Registry) else {}
    if not isinstance(store, ocitar.Registry) and args.index != "keep":
        raise ValueError("--index applies to --store docker://...")
    report = ocitar.load(source, _platforms(args.platform), store=store, progress=_progress(args), **kw)
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    elif not args.quiet:
        for image in report.images:
            if image.names:
                for name in image.names:
                    print(printable(f"Loaded image: {name}"))
            else:
                print(printable(f"Loaded image ID: {image.digest}"))
            if image.foreign:
                sys.stderr.write(f"{len(image.foreign)} foreign layer(s) of {image.digest} not in the archive: kept as descriptors, as docker does\n")
            for name in image.moved:
                sys.stderr.write(printable(f"The image {name} moved to {image.digest}; the old image stays, untagged") + "\n")
    return 0


def _inventory_table(inv: ocitar.Inventory) -> str:
    rows = [("IMAGE", "DIGEST", "PLATFORM", "STATUS", "SIZE", "LAYERS", "ATTESTATIONS")]
    for image in inv.images:
        name = ", ".join(image.names) or "<none>"
        for i, p in enumerate(image.platforms):
            rows.append(
                (
                    name if i == 0 else "",
                    image.digest[7:19] if i == 0 else "",
                    p.platform,
                    ("present" if p.present else "absent") + (f", {len(p.foreign)} foreign" if p.foreign else ""),
                    human(p.size) if p.size is not None else "-",
                    str(p.layers) if p.layers is not None else "-",
                    str(len(p.attestations)),
                )
            )
        if not image.platforms:
            rows.append((name, image.digest[7:19], "-", "-", human(image.size), "-", "-"))
    cells = [[printable(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.append(f"{len(inv.images)} image(s), {inv.blobs} blobs, {human(inv.bytes)} ({human(inv.shared_bytes)} shared)")
    if inv.kind == "archive":
        lines.append(f"{inv.format or 'oci'} archive, {inv.compression or 'not'} compressed")
    return "\n".join(lines)


def _show(inv: ocitar.Inventory, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(inv.to_dict(), indent=2))
    else:
        print(_inventory_table(inv))


def _cmd_inspect(args: argparse.Namespace) -> int:
    if args.store is None and len(args.path) == 1 and args.path[0].startswith("docker://"):
        args.store = "docker://"
        _show(ocitar.inspect(_store(args), args.path[0][len("docker://") :]), args.format)
        return 0
    if args.store is not None and args.store.startswith("docker://"):
        if len(args.path) != 1:
            raise _usage("inspect --store docker://BASE takes one IMAGE")
        _show(ocitar.inspect(_store(args), args.path[0]), args.format)
        return 0
    if args.store is not None:
        if len(args.path) != 1:
            raise _usage("inspect --store STORE takes one IMAGE")
        one = ocitar.inspect(args.store, args.path[0])
        image = one.images[0]
        if args.format == "json":
            _show(one, "json")
        else:
            # The store's totals would mislead under one image: say the image's own size instead.
            table = _inventory_table(one).splitlines()[:-1]
            print("\n".join([*table, printable(f"{', '.join(image.names) or image.digest}: {human(image.size)} in {one.path}")]))
        return 0
    if len(args.path) != 1:
        raise _usage("inspect takes one PATH (or --store STORE IMAGE)")
    _show(ocitar.inspect(args.path[0]), args.format)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    inv = ocitar.verify(args.path, progress=_progress(args))
    if args.format == "json":
        _show(inv, "json")
    elif not args.quiet:
        absent = sum(1 for i in inv.images for p in i.platforms if not p.present)
        foreign = len({f for i in inv.images for p in i.platforms for f in p.foreign})
        note = f", {absent} platform(s) absent (sparse)" if absent else ""
        note += f", {foreign} foreign layer(s) not included (fetched from their urls)" if foreign else ""
        print(printable(f"{args.path}: OK, {inv.blobs} blobs, {human(inv.bytes)} verified{note}"))
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    store = args.store or ocitar.default_store()
    if args.store is None and not os.path.exists(store):
        # Nothing loaded yet: an empty list, and where images would go.
        inv = None
        hint = f"(no images yet: the default store {store} is created by `ocitar load -i FILE`)"
    else:
        inv = ocitar.inspect(store, names=args.names) if args.names else ocitar.inspect(store)
        hint = ""
    if args.format == "json":
        print(json.dumps(inv.to_dict() if inv else {"path": store, "kind": "store", "images": []}, indent=2))
        return 0
    rows = [("REPOSITORY", "TAG", "DIGEST", "PLATFORMS", "SIZE")]
    for image in inv.images if inv else ():
        plats = ",".join(p.platform for p in image.platforms if p.present) or "-"
        absent = sum(not p.present for p in image.platforms)
        plats += f" (sparse: {absent} absent)" if absent else ""
        # What every row of the image shares is made printable once.
        shared = (image.digest[7:19], printable(plats), human(image.size))
        for name in image.names or ["<none>:<none>"]:
            repo, _, tag = name.rpartition(":") if ":" in name.split("/")[-1] else (name, "", "<none>")
            rows.append((printable(repo), printable(tag), *shared))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    sys.stdout.write("\n".join(lines) + "\n")
    if hint:
        print(hint)
    return 0


EPILOG = {
    "save": "example:\n  ocitar save --store build/oci --platform linux/amd64,linux/arm64 -o dist/app.tar app:1.2\n"
    "  (docker save --platform linux/amd64 -o app.tar app:1.2)\n"
    "  ocitar save --store docker:// --platform linux/arm64 -o bundle.tar ghcr.io/org/app:1.2",
    "load": "example:\n  ocitar load --store /srv/images --platform linux/arm64 -i app.tar\n"
    "  (docker load --platform linux/arm64 -i app.tar)\n"
    "  ocitar load --store docker://registry.airgap:5000/mirror -i bundle.tar --index subset --platform linux/arm64",
    "inspect": "example:\n  ocitar inspect dist/app.tar\n  ocitar inspect --format json build/oci\n"
    "  ocitar inspect --store build/oci app:1.2   (one image of a store; a short digest works too)\n"
    "  ocitar inspect docker://ghcr.io/org/app:1.2",
    "verify": "example:\n  ocitar verify dist/app.tar",
    "ls": "example:\n  ocitar ls --store /srv/images   (docker image ls)\n"
    "  ocitar ls --store /srv/images alpine ghcr.io/org/app:1.2   (docker image ls alpine: every tag of it)",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ocitar`` command."""
    p = _Parser(
        prog="ocitar",
        description="Move OCI images between an image-layout store and tar archives, choosing platforms.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"ocitar {ocitar.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(
            name, help=help, description=help, epilog=EPILOG[name], formatter_class=argparse.RawDescriptionHelpFormatter
        )
        c.add_argument("--format", choices=["table", "json"], default="table", help="what to print (default: table)")
        return c

    s = cmd("save", "Save images from a store to a tar archive (stdout when -o is absent and stdout is a pipe).")
    s.add_argument("images", nargs="+", metavar="IMAGE", help="name, name:tag, name@digest or sha256:digest")
    s.add_argument(
        "--store",
        help="OCI layout directory (default: $OCITAR_STORE or ~/.local/share/ocitar/store), or docker://[BASE]",
    )
    s.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    s.add_argument(
        "--platform", action="append", type=_platform_list, metavar="LIST", help="platforms to save, e.g. linux/amd64,linux/arm64"
    )
    s.add_argument("--index", choices=["keep", "subset", "manifest"], default="keep", help="shape of each image")
    s.add_argument("--prefer", metavar="PLATFORM", help="platform described by manifest.json (default: the host's)")
    s.add_argument(
        "--compress", choices=["gzip", "zstd"], help="compress the whole archive (default: from -o's suffix, .tar.gz/.tgz/.tar.zst)"
    )
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    _registry_flags(s)
    s.set_defaults(func=_cmd_save)

    ld = cmd("load", "Load images from a tar archive (stdin when -i is absent or -) into a store.")
    ld.add_argument(
        "--store", help="OCI layout directory, created if missing (default: $OCITAR_STORE …), or docker://BASE"
    )
    ld.add_argument("-i", "--input", metavar="FILE", help="read FILE instead of stdin")
    ld.add_argument("--platform", action="append", type=_platform_list, metavar="LIST", help="platforms to load (all when absent)")
    ld.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    ld.add_argument(
        "--index", choices=["keep", "subset", "manifest"], default="keep", help="shape of each image (registries)"
    )
    _registry_flags(ld)
    ld.set_defaults(func=_cmd_load)

    i = cmd("inspect", "Show the images and platforms of a store directory or an archive.")
    i.add_argument("path", nargs="+", metavar="PATH", help="an archive or store; with --store, one IMAGE of it")
    i.add_argument("--store", help="inspect one image (name or digest, 12 hex digits are enough) of this store")
    _registry_flags(i)
    i.set_defaults(func=_cmd_inspect)

    v = cmd("verify", "Re-hash and check every blob of a store or an archive.")
    v.add_argument("path", metavar="PATH")
    v.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    v.set_defaults(func=_cmd_verify)

    ls = cmd("ls", "List the images of a store (only those the NAMEs list, when given).")
    ls.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="a repository (every tag of it), name:tag, name@digest or sha256:digest; only the images listed are read",
    )
    ls.add_argument("--store", help="OCI layout directory (default: $OCITAR_STORE …)")
    ls.set_defaults(func=_cmd_ls)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    # Reports are acyclic: while a listing of tens of thousands of records is built, the cyclic collector
    # would only scan them again and again (a third of the Python time of `ls` of 50,000 names).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _run(args)
    finally:
        if collecting:
            gc.enable()


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; returns the exit code."""
    try:
        code: int = args.func(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`ocitar save … | head -c 10`): end quietly; stdout goes nowhere from now on,
        # so the interpreter's last flush cannot complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except PlatformNotFoundError as e:
        sys.stderr.write(f"ocitar: error: {printable(e)}{printable(_did_you_mean(e))}\n")
        return 1
    except (OcitarError, OSError, ValueError, LookupError, TypeError) as e:
        sys.stderr.write(f"ocitar: error: {printable(e)}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("ocitar: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
