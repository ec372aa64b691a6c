"""Roots that hold the artifact and only the C libraries it links, for running it with no Python
on the machine: the ELF walk, the ldd scan, building the root and running a command in it.
Shared by ``test_smoke.py`` (this machine's libraries) and ``test_glibc_floor.py`` (Debian 11's).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"


def elf_files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                if f.read(4) == b"\x7fELF":
                    yield path


def linked_libraries(directory: Path, *, skip_bundled: bool = False) -> set[str]:
    """The system's shared libraries that the artifact's ELF files link, as this machine's ldd
    resolves them. With ``skip_bundled``, a library the artifact bundles is left out even where
    ldd finds the system's (libssl.so.3 links libcrypto.so.3 without a search path): at run time
    the bundled one is taken. Not for the executable (PyInstaller's bootloader): it loads before
    it knows about _internal/."""
    bundled = {p.name for p in (directory / "_internal").iterdir()} if skip_bundled else set()
    found: set[str] = set()
    for path in elf_files(directory):
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
        for line in out.stdout.splitlines():
            match = re.search(r"(/\S+\.so[.\d]*) \(0x", line)
            if match and not match[1].startswith(str(directory)) \
                    and (path.name == "ecrcred" or Path(match[1]).name not in bundled):
                found.add(match[1])
    return found


def make_root(root: Path, artifact_dir: Path, libraries: set[str],
              source: Callable[[str], Path]) -> Path:
    """The artifact at /opt/ecrcred, each library at its path (copied from ``source(path)``),
    /tmp, and the two devices every node has (grpc seeds its generator from /dev/urandom)."""
    shutil.copytree(artifact_dir, root / "opt" / "ecrcred", symlinks=True)
    for library in libraries:
        target = root / library.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source(library), target)
    (root / "tmp").mkdir(mode=0o1777)
    (root / "dev").mkdir()
    for name, minor in (("null", 3), ("urandom", 9)):
        os.mknod(root / "dev" / name, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    return root


def in_root(root: Path, argv: list[str], env: dict[str, str] | None = None, stdin: bytes = b"",
            ) -> subprocess.CompletedProcess[bytes]:
    chroot = shutil.which("chroot", path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert chroot, "chroot (coreutils) is missing"
    return subprocess.run([chroot, str(root), *argv], input=stdin, env=env or {},
                          capture_output=True, timeout=60, check=False)
