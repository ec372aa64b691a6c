"""The shipped artifact: built once per session with ``build/build`` (a no-op when ``dist/``
already holds a build of the same sources), then exercised as a node would use it.

The build is part of the test run on purpose: CI must prove that a clean checkout produces an
artifact that works with no Python on the machine. A failed build fails the tests; nothing skips.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def artifact_dir() -> Path:
    """``dist/ecrcred/``: the executable ``ecrcred`` and its ``_internal/`` folder."""
    result = subprocess.run([str(ROOT / "build" / "build")], cwd=ROOT, capture_output=True,
                            text=True, timeout=900, check=False)
    if result.returncode != 0:
        pytest.fail(f"build/build failed (exit {result.returncode}):\n{result.stderr[-4000:]}",
                    pytrace=False)
    directory = ROOT / "dist" / "ecrcred"
    assert (directory / "ecrcred").is_file()
    return directory


@pytest.fixture(scope="session")
def artifact_tarball(artifact_dir: Path) -> Path:
    """``dist/ecrcred-<version>-linux-<arch>.tar.gz``, the same directory packed."""
    (tarball,) = sorted(artifact_dir.parent.glob("ecrcred-*-linux-*.tar.gz"))
    return tarball


@pytest.fixture(scope="session")
def artifact_bin(artifact_dir: Path) -> str:
    return str(artifact_dir / "ecrcred")
