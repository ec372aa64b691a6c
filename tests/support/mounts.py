"""Small real file systems for cache faults: a tmpfs of a few pages that can be filled to the
last block (ENOSPC), limited in inodes, or made read-only (EROFS).

``Tmpfs(path, size="64k")`` mounts a fresh tmpfs on ``path`` (made if missing); ``fill()``
writes one file until the kernel says the device is full; ``read_only()`` remounts it ro;
``unmount()`` (also on ``with`` exit) takes it away again, lazily if something still holds it.
Mounting needs CAP_SYS_ADMIN, which the test machines have (the suite runs as root, as
containerd needs); without it the caller gets a RuntimeError naming the mount that failed.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path


def _run(*argv: str) -> None:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): "
                           f"{result.stderr.strip()}; these tests need root (CAP_SYS_ADMIN)")


class Tmpfs:
    def __init__(self, path: Path, size: str = "64k", nr_inodes: int | None = None) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        options = f"size={size},mode=0700"
        if nr_inodes is not None:
            options += f",nr_inodes={nr_inodes}"
        _run("mount", "-t", "tmpfs", "-o", options, "ecrcred-test", str(path))
        self.mounted = True

    def fill(self, name: str = "filler") -> int:
        """Write ``name`` until ENOSPC; return the bytes it holds (the disk is then full)."""
        written = 0
        chunk = b"\0" * 4096
        fd = os.open(self.path / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while True:
                try:
                    n = os.write(fd, chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
                written += n
        finally:
            os.close(fd)
        return written

    def use_up_inodes(self) -> int:
        """Create empty files until no inode is left; return how many were made."""
        made = 0
        while True:
            try:
                fd = os.open(self.path / f"inode-{made}", os.O_WRONLY | os.O_CREAT, 0o600)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                return made
            os.close(fd)
            made += 1

    def read_only(self) -> None:
        _run("mount", "-o", "remount,ro", str(self.path))

    def unmount(self) -> None:
        if self.mounted:
            result = subprocess.run(["umount", str(self.path)], capture_output=True, timeout=30,
                                    check=False)
            if result.returncode != 0:
                _run("umount", "-l", str(self.path))
            self.mounted = False

    def __enter__(self) -> Tmpfs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmount()
