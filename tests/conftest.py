"""Fixtures shared by all test levels: the AWS stand-in and the ecrcred executable under test.

Nothing here skips: a missing prerequisite (moto, containerd, the registry) is a failure that
names the command that installs it (``./scripts/test`` installs everything the tests need).
"""

from __future__ import annotations

import os
import shutil
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
