"""What an installed ocitar needs from the system: the wheel ``scripts/build-wheels`` makes installs on any
manylinux2014 x86_64 machine, so the extension module may need no shared library beyond glibc's and
libgcc's (liblzma, zstd and bzip2 are built in)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import ocitar._ocitar

REPO = Path(__file__).resolve().parent.parent
#: The libraries every manylinux2014 system has that an extension built by rustc may link.
BASE = {"linux-vdso", "libc", "libm", "libpthread", "libdl", "librt", "libgcc_s", "ld-linux-x86-64"}


def test_the_extension_needs_only_glibc_and_libgcc():
    ldd = subprocess.run(["ldd", ocitar._ocitar.__file__], capture_output=True, text=True, check=True).stdout
    libraries = {Path(line.split()[0]).name for line in ldd.splitlines() if line.strip()}
    assert {re.sub(r"\.so(\.[0-9]+)*$", "", name) for name in libraries} <= BASE, ldd


def test_readme_names_the_wheel_script():
    script = REPO / "scripts" / "build-wheels"
    assert os.access(script, os.X_OK)
    assert "`scripts/build-wheels`" in (REPO / "README.md").read_text()
