"""The built artifact on its own: no Python on the machine, what it carries, what it reports.

The full integration and pull-sandbox suites also run against the artifact (``scripts/test``
reruns them with ``ECRCRED_BIN=dist/ecrcred/ecrcred``); these tests cover what only the artifact
has: running in a root that holds nothing but the artifact and the C libraries it links, its
size and contents, and the build facts ``ecrcred version`` prints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecrcred import __version__
from tests.artifact.roots import ECR, in_root, linked_libraries, make_root
from tests.support.kubelet import check_response, request


@pytest.fixture(scope="session")
def bare_root(artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A root with the artifact at /opt/ecrcred and the C libraries it links: no Python, no
    shell, nothing else."""
    root = make_root(tmp_path_factory.mktemp("bare-root"), artifact_dir,
                     linked_libraries(artifact_dir), lambda lib: Path(os.path.realpath(lib)))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_the_bare_root_really_has_no_python(bare_root: Path):
    outside = [p for p in bare_root.rglob("*") if "opt/ecrcred" not in str(p)]
    assert not [p for p in outside if re.match(r"(lib)?python", p.name)]
    assert not (bare_root / "usr" / "bin").exists()
    assert not (bare_root / "bin").exists()


def test_version_runs_with_no_python_on_the_machine(bare_root: Path):
    result = in_root(bare_root, ["/opt/ecrcred/ecrcred", "version"], {"PATH": "/nonexistent"})
    assert result.returncode == 0, result.stderr.decode()
    line = result.stdout.decode()
    assert line.startswith(f"ecrcred {__version__} (pyinstaller onedir, commit "), line


def test_get_credentials_runs_with_no_python_on_the_machine(bare_root: Path, aws):
    req = request(f"{ECR}/app")
    env = {**aws.env(), "ECRCRED_CACHE_DIR": "/tmp/cache", "PATH": "/nonexistent"}
    result = in_root(bare_root, ["/opt/ecrcred/ecrcred", "get-credentials"], env,
                     json.dumps(req).encode() + b"\n")
    assert result.returncode == 0, result.stderr.decode()
    doc = check_response(result.stdout, req)
    assert doc["auth"][ECR]["username"] == "AWS"
    assert aws.calls("GetAuthorizationToken") == 1


def test_pull_sandbox_help_and_errors_run_with_no_python_on_the_machine(bare_root: Path):
    # The CRI part is proven against real containerd by the pull-sandbox suite run on the
    # artifact; here: grpc and the CLI load in the bare root, and a missing socket is one line.
    result = in_root(bare_root, ["/opt/ecrcred/ecrcred", "pull-sandbox", "--image",
                                 f"{ECR}/eks/pause:3.9", "--runtime-endpoint",
                                 "unix:///tmp/no.sock", "--timeout", "2"],
                     {"PATH": "/nonexistent", "ECRCRED_CACHE_DIR": "/tmp/cache"})
    assert result.returncode == 6, result.stderr.decode()
    err = result.stderr.decode()
    assert len(err.strip().splitlines()) == 1 and "/tmp/no.sock" in err


def test_the_artifact_carries_only_the_aws_models_it_uses(artifact_dir: Path):
    models = artifact_dir / "_internal" / "botocore" / "data"
    services = {p.name for p in models.iterdir() if p.is_dir()}
    assert services == {"ecr", "ecr-public", "sts"}
    assert (models / "endpoints.json").exists() and (models / "partitions.json").exists()
    internal = {p.name for p in (artifact_dir / "_internal").iterdir()}
    assert not internal & {"moto", "pytest", "grpc_tools", "cryptography", "PyInstaller"}


def test_the_tarball_is_named_for_its_version_and_holds_the_directory(artifact_tarball: Path):
    assert re.fullmatch(rf"ecrcred-{re.escape(__version__)}-linux-[a-z0-9_]+\.tar\.gz",
                        artifact_tarball.name)
    with tarfile.open(artifact_tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["ecrcred/ecrcred"].mode & 0o111
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())
    assert all(name == "ecrcred" or name.startswith("ecrcred/") for name in members)
    size_mb = artifact_tarball.stat().st_size / 1e6
    assert size_mb < 40, f"{size_mb:.1f} MB: did botocore's models or a test tool get in?"
