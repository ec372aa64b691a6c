"""Fixtures for the hostile-environment suite: ecrcred run as root (as on every node) against a
state directory, an environment and other programs' output that someone else may have planted.

The AWS stand-in, ``ecrcred_bin`` and the real stack come from ``tests/conftest.py``; the error
contract (``clean_failure``: exit code, one line, no traceback, no secret) from the fault suite.
``as_user`` runs a command as an unprivileged user through util-linux's ``setpriv``, for the
cases where who owns a file is the point (the attacker plants it; or ecrcred itself runs as
that user). ``shared_dir`` is a temporary directory that such a user can reach: pytest's own
``tmp_path`` lives under a 0700 directory of root's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.faults.conftest import AWS_SECRET, clean_failure, warnings

__all__ = ["AWS_SECRET", "NOBODY", "as_user", "clean_failure", "warnings"]

NOBODY = 65534  # the conventional unprivileged uid and gid


def as_user(argv: Sequence[str], uid: int = NOBODY, gid: int = NOBODY, *,
            reach: bool = False) -> list[str]:
    """``argv`` to run as ``uid``:``gid`` with no supplementary groups (setpriv, util-linux).

    ``reach``: keep CAP_DAC_READ_SEARCH, so the program under test can be read and run from a
    checkout below a private directory (CI's clone may be one). It grants reading and searching
    only: writing, and every ownership check ecrcred makes, are those of ``uid``."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv not found; install util-linux (./scripts/test does)")
    caps = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"] if reach else []
    return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *caps, "--", *argv]


def plant(argv: Sequence[str], uid: int = NOBODY) -> None:
    """Run a shell-free command as the attacker (another user), failing the test if it fails."""
    subprocess.run(as_user(argv, uid, uid), check=True, capture_output=True, timeout=30)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A fresh 0755 root-owned directory under /tmp that other users can traverse."""
    path = Path(tempfile.mkdtemp(prefix="ecrcred-hostile-", dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
