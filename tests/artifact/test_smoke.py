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
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecrcred import __version__
from tests.support.kubelet import check_response, request

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"


def linked_libraries(directory: Path) -> set[str]:
    """The host's shared libraries that the artifact's ELF files link (as ldd resolves them)."""
    found: set[str] = set()
    for path in directory.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        with path.open("rb") as f:
            if f.read(4) != b"\x7fELF":
                continue
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
        for line in out.stdout.splitlines():
            match = re.search(r"(/\S+\.so[.\d]*) \(0x", line)
            if match and not match[1].startswith(str(directory)):
                found.add(match[1])
    return found


@pytest.fixture(scope="session")
def bare_root(artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A root with the artifact at /opt/ecrcred and the C libraries it links: no Python, no
    shell, nothing else."""
    root = tmp_path_factory.mktemp("bare-root")
    shutil.copytree(artifact_dir, root / "opt" / "ecrcred", symlinks=True)
    for library in linked_libraries(artifact_dir):
        target = root / library.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(library), target)
    (root / "tmp").mkdir(mode=0o1777)
    (root / "dev").mkdir()
    # Every node has these; grpc seeds its random generator from /dev/urandom.
    for name, minor in (("null", 3), ("urandom", 9)):
        os.mknod(root / "dev" / name, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def in_root(root: Path, argv: list[str], env: dict[str, str], stdin: bytes = b"",
            ) -> subprocess.CompletedProcess[bytes]:
    chroot = shutil.which("chroot", path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert chroot, "chroot (coreutils) is missing"
    return subprocess.run([chroot, str(root), *argv], input=stdin, env=env,
                          capture_output=True, timeout=60, check=False)


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
