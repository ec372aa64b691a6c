"""Fixtures shared by all test levels: the AWS stand-in and the ecrcred executable under test.

Nothing here skips: a missing prerequisite (moto, containerd, the registry) is a failure that
names the command that installs it (``./scripts/test`` installs everything the tests need).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.aws import AwsStandIn


@pytest.fixture(scope="session")
def aws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsStandIn]:
    server = AwsStandIn(tmp_path_factory.mktemp("aws"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws(aws_server: AwsStandIn) -> AwsStandIn:
    aws_server.reset()
    return aws_server


@pytest.fixture(scope="session")
def ecrcred_bin() -> str:
    """The executable under test: $ECRCRED_BIN (e.g. the PyInstaller build) or the installed one."""
    explicit = os.environ.get("ECRCRED_BIN")
    candidate = explicit or str(Path(sys.executable).with_name("ecrcred"))
    if not os.access(candidate, os.X_OK):
        found = shutil.which("ecrcred")
        if explicit or not found:
            pytest.fail(f"ecrcred executable not found at {candidate}; run ./scripts/test, "
                        "which installs the package")
        candidate = found
    return candidate


@pytest.fixture
def kubelet_env(aws: AwsStandIn, tmp_path: Path) -> dict[str, str]:
    """The environment a kubelet under systemd gives a plugin: no HOME, a PATH, and the
    provider config's env entries (here: how to reach the stand-in, and a private cache dir)."""
    return {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        **aws.env(),
        "ECRCRED_CACHE_DIR": str(tmp_path / "cache"),
    }


# -- the shipped artifact ----------------------------------------------------------------------
# Built once per session with build/build-portable, the release build (on Debian 11, for glibc
# 2.31 and newer; a no-op when dist/ already holds that build of the same sources, about 20
# minutes from nothing, a minute or two with its cache). The build is part of the test run on
# purpose: CI must prove that a clean checkout produces an artifact that works with no Python on
# the machine, on the oldest C library it claims. A failed build fails the tests.

ROOT = Path(__file__).resolve().parents[1]




@pytest.fixture(scope="session")
def artifact_dir() -> Path:
    """``dist/ecrcred/``: the executable ``ecrcred`` and its ``_internal/`` folder."""
    result = subprocess.run([str(ROOT / "build" / "build-portable")], cwd=ROOT,
                            capture_output=True, text=True, timeout=3600, check=False)
    if result.returncode != 0:
        pytest.fail(f"build/build-portable failed (exit {result.returncode}):\n"
                    f"{result.stderr[-4000:]}", pytrace=False)
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
