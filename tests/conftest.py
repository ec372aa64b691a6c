"""Fixtures shared by all test levels: the AWS stand-in and the ecrcred executable under test.

Nothing here skips in CI: a missing prerequisite (moto, containerd, the registry) is a failure
that names the command that installs it (``./scripts/test`` installs everything the tests
need). The one exception is outside CI (``CI`` unset): a containerd generation other than the
machine's own whose root cannot be built here (no root, no network) skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.aws import AwsStandIn
from tests.support.containerd import Containerd, Runtime, RuntimeUnavailable, runtime
from tests.support.registry import MissingTool, Registry, require
from tests.support.sandbox import node_environment
from tests.support.stack import (
    ECR_HOST,
    PAUSE_REPO,
    PAUSE_TAG,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    SANDBOX_IMAGE,
)

# -- the e2e marker -----------------------------------------------------------------------------
# Set here, in one place, on every test that starts a real process: moto's server, the registry,
# containerd, the ecrcred executable (or the PyInstaller build), kubectl, setpriv, openssl, an
# atheris run, a credential helper, a Python child. ``pytest -m "not e2e"`` is then the fast loop
# that starts none. A test is e2e when its folder or file is listed below, when it uses (itself
# or through another fixture) one of E2E_FIXTURES, or when it is one of E2E_TESTS; a test that is
# none of these and starts a process anyway fails, naming the process and this list.

E2E_FOLDERS = {"e2e", "integration", "faults", "hostile", "artifact"}
E2E_FILES = {"test_readme_commands.py", "test_kubernetes_manifest.py"}
E2E_FIXTURES = {
    "aws_server",  # moto's server (so also "aws" and "kubelet_env")
    "ecrcred_bin",  # the ecrcred executable, run as the kubelet runs it
    "registry", "containerd", "containerd_runtime",  # (so also "pause_image")
    "artifact_dir",  # build/build-portable (so also "artifact_bin", "artifact_tarball")
    "client_pair", "mutual_tls",  # unit/test_doctor_registry.py: openssl makes the keys
    "helper_env", "leaves_behind",  # unit/test_sources_helper.py: real credential helpers
}
E2E_TESTS = {  # (file, test function) of tests that start a process with no fixture's help
    ("test_cache.py", "test_the_lock_is_exclusive_across_processes"),
    ("test_cli.py", "test_descriptors_started_closed_get_dev_null_so_no_file_takes_their_number"),
    ("test_sources_ecr_identity.py", "test_the_node_identity_loads_no_module"),
    ("test_jsonwire.py", "test_reading_and_writing_import_neither_json_nor_re"),
    ("test_sources_helper.py", "test_runner_feeds_stdin_and_captures_both_streams"),
    ("test_sources_helper.py", "test_runner_passes_the_env_as_given_and_nothing_of_ours"),
    ("test_sources_helper.py", "test_runner_caps_a_runaway_output_and_still_drains_it"),
    ("test_sources_helper.py", "test_runner_survives_a_program_that_does_not_read_stdin"),
    ("test_sources_helper.py", "test_runner_lets_file_not_found_through"),
    ("test_sources_helper.py", "test_runner_timeout_carries_no_output"),
    ("test_sources_helper.py", "test_a_child_whose_name_holds_parentheses_and_spaces_is_found"),
    ("test_fuzz_stdin.py", "test_a_short_atheris_run_finds_no_contract_breach"),
    ("test_fuzz_config.py",
     "test_a_short_atheris_run_of_the_config_loader_finds_no_contract_breach"),
}


def _is_e2e(item: pytest.Item) -> bool:
    path = Path(str(item.path))
    tests = Path(__file__).resolve().parent
    folder = path.relative_to(tests).parts[0] if path.is_relative_to(tests) else ""
    function = getattr(item, "originalname", item.name)
    return (folder in E2E_FOLDERS or path.name in E2E_FILES
            or not E2E_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))
            or (path.name, function) in E2E_TESTS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _is_e2e(item):
            item.add_marker(pytest.mark.e2e)


# Python's audit events for starting a process; while a test that is not e2e sets up and runs,
# they are written down, and the test fails if it started one (the marker must not lie).
_PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.fork", "os.forkpty", "os.exec",
                             "os.posix_spawn", "os.spawn", "os.system", "pty.spawn"})
_started: list[str] = []
_watching = [False]


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _watching[0] and event in _PROCESS_EVENTS:
        _started.append(f"{event} {str(args[0])[:100] if args else ''}".rstrip())


sys.addaudithook(_audit)


def _watch(item: pytest.Item) -> Iterator[None]:
    if item.get_closest_marker("e2e") is not None:
        return (yield)
    _started.clear()
    _watching[0] = True
    try:
        result = yield
    finally:
        _watching[0] = False
    if _started:
        pytest.fail(f"{item.nodeid} starts a process ({_started[0]}) but is not marked e2e: "
                    "add it to E2E_TESTS (or its fixture to E2E_FIXTURES) in tests/conftest.py",
                    pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    return (yield from _watch(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    return (yield from _watch(item))


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
def node_env(aws: AwsStandIn, tmp_path: Path) -> dict[str, str]:
    """The environment systemd gives ``pull-sandbox``: no HOME, AWS reachable as the stand-in,
    a private cache dir."""
    return node_environment(aws.env(), str(tmp_path / "cache"))


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


# -- the end-to-end stack ----------------------------------------------------------------------
# Defined here, once, for tests/e2e and tests/faults alike: a session fixture defined (or
# imported) in two conftests is two fixtures, and the registry would be started twice.
#
# - ``registry`` (session): ``Registry`` accepting moto's ECR credentials (AWS / the token).
# - ``pause_image`` (session): pushes the test image as ``eks/pause:3.9``; returns its local
#   reference ``127.0.0.1:PORT/eks/pause:3.9`` (digest in ``registry.pushed[("eks/pause",
#   "3.9")]``).
# - ``containerd`` (function): a fresh ``Containerd`` with ``sandbox_image = SANDBOX_IMAGE`` and
#   a hosts.toml mapping ``ECR_HOST`` to the registry, of the ``containerd_runtime`` generation.
# - ``ecr_host``, ``sandbox_image``: the constants, for tests that prefer fixtures.
# All processes are stopped by pid and all temp dirs removed at teardown; a missing binary fails
# the test (naming the binary and ``./scripts/test``), never skips it.

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


# -- containerd generations ---------------------------------------------------------------------
# A module that sets ``CONTAINERD_GENERATIONS = ("1.6", "1.7", "2.1")`` runs each of its tests
# that uses ``containerd`` or ``containerd_runtime`` once per generation (ids
# ``[containerd-1.7]``); every other test gets the machine's own (1.6). 1.7 and 2.x come from
# Debian roots built, once and cached outside the clone, by scripts/runtime-root (scripts/setup
# builds them up front); a test reads its generation as ``containerd.runtime.name``.

_runtimes: dict[str, Runtime | str] = {}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    generations = getattr(metafunc.module, "CONTAINERD_GENERATIONS", None)
    if generations and "containerd_runtime" in metafunc.fixturenames:
        metafunc.parametrize("containerd_runtime", list(generations), indirect=True,
                             ids=[f"containerd-{g}" for g in generations], scope="session")


@pytest.fixture(scope="session")
def containerd_runtime(request: pytest.FixtureRequest) -> Runtime:
    """The generation under test, its root built on first use. The machine's own missing fails
    (as every prerequisite does); another that cannot be had fails in CI and skips outside."""
    name = getattr(request, "param", "1.6")
    if name == "1.6":
        _require_tools(*Containerd.TOOLS)
    if name not in _runtimes:
        try:
            _runtimes[name] = runtime(name)
        except RuntimeUnavailable as e:
            _runtimes[name] = str(e)
    found = _runtimes[name]
    if isinstance(found, Runtime):
        return found
    message = f"containerd {name} unavailable: {found}"
    if os.environ.get("CI") or name == "1.6":
        pytest.fail(message, pytrace=False)
    pytest.skip(message + " (outside CI only; scripts/setup builds the roots)")


@pytest.fixture
def containerd(registry: Registry, pause_image: str,
               containerd_runtime: Runtime) -> Iterator[Containerd]:
    workdir = _tempdir("ecd-")
    try:
        cd = Containerd(workdir, SANDBOX_IMAGE, runtime=containerd_runtime)
        try:
            cd.add_mirror(ECR_HOST, registry)
            yield cd
        finally:
            leftover_shims = cd.stop()
        if leftover_shims:
            pytest.fail(f"containerd left shims behind (killed): {leftover_shims}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
