"""The end-to-end stack: a private TLS registry with htpasswd auth, an ECR-looking name mapped
to it, and a private containerd whose CRI sandbox image is that ECR name.

Fixtures (all processes stopped by pid and all temp dirs removed at teardown):

- ``registry`` (session): ``Registry`` accepting moto's ECR credentials (AWS / the token).
- ``pause_image`` (session): pushes the test image as ``eks/pause:3.9``; returns its local
  reference ``127.0.0.1:PORT/eks/pause:3.9`` (digest in ``registry.pushed[("eks/pause", "3.9")]``).
- ``containerd`` (function): a fresh ``Containerd`` with ``sandbox_image = SANDBOX_IMAGE`` and a
  hosts.toml mapping ``ECR_HOST`` to the registry.
- ``ecr_host``, ``sandbox_image``: the constants, for tests that prefer fixtures.

A missing binary fails the test (naming the binary and ``./scripts/test``), never skips it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.containerd import Containerd
from tests.support.registry import MissingTool, Registry, require

ECR_HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
PAUSE_REPO = "eks/pause"
PAUSE_TAG = "3.9"
SANDBOX_IMAGE = f"{ECR_HOST}/{PAUSE_REPO}:{PAUSE_TAG}"
# The registry stands in for ECR behind a mirror, so it accepts what moto's ECR hands out for
# account 123456789012: user AWS and that account's fixed token.
REGISTRY_USER = "AWS"
REGISTRY_PASSWORD = "123456789012-auth-token"


def _require_tools(*names: str) -> None:
    """Fail (never skip) naming every missing command and how to install it."""
    try:
        require(*names)
    except MissingTool as e:
        message = str(e)
    else:
        return
    pytest.fail(message, pytrace=False)


def _tempdir(prefix: str) -> Path:
    # Short paths under /tmp: containerd's socket path must stay under 108 bytes.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@pytest.fixture(scope="session")
def ecr_host() -> str:
    return ECR_HOST


@pytest.fixture(scope="session")
def sandbox_image() -> str:
    return SANDBOX_IMAGE


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    _require_tools(*Registry.TOOLS)
    workdir = _tempdir("ereg-")
    try:
        reg = Registry(workdir, username=REGISTRY_USER, password=REGISTRY_PASSWORD)
        try:
            yield reg
        finally:
            reg.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def pause_image(registry: Registry) -> str:
    registry.push_test_image(PAUSE_REPO, PAUSE_TAG)
    return f"{registry.host}/{PAUSE_REPO}:{PAUSE_TAG}"


@pytest.fixture
def containerd(registry: Registry, pause_image: str) -> Iterator[Containerd]:
    _require_tools(*Containerd.TOOLS)
    workdir = _tempdir("ecd-")
    try:
        cd = Containerd(workdir, SANDBOX_IMAGE)
        try:
            cd.add_mirror(ECR_HOST, registry)
            yield cd
        finally:
            leftover_shims = cd.stop()
        if leftover_shims:
            pytest.fail(f"containerd left shims behind (killed): {leftover_shims}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
