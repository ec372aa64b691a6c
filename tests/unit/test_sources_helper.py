"""The credential-helper source: the docker helper protocol, its error mapping, and the runner.

Two halves. A hand-written ``FakeRunner`` drives ``helper_get`` through every answer a helper
can give (table-driven), without a process. Then the real ``SubprocessRunner`` runs the real test
helper, ``tests/support/bin/docker-credential-ecrcred-test``, found on the PATH of the
environment we pass in (never ``os.environ``): success, nothing found, not installed, failing,
garbage, identity tokens, and a hanging helper whose whole process group must die. Last, helper
scripts that leave a process behind in a session of its own (``setsid``): it must be dead when
the runner returns, answer or timeout; and the one rule for helper names, wherever they come from.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from ecrcred.config.rules import HelperOptions
from ecrcred.errors import EcrcredError, HelperFailed, HelperNotInstalled
from ecrcred.sources import DEFAULT_UNCACHED_DURATION, helper
from ecrcred.sources.helper import (
    DOCKER_HUB_SERVER,
    MAX_NAME,
    HelperSource,
    SubprocessRunner,
    helper_get,
    helper_name_problem,
    helper_program,
    server_url,
)
from ecrcred.tokens import Token
from tests.unit.fakes import T0, FakeClock, RecordingLogger

BIN_DIR = Path(__file__).resolve().parents[1] / "support" / "bin"
TEST_HELPER = "ecrcred-test"
SECRET = "hunter2-helper-secret-value"
SERVER = "registry.example.com"


# --- the fake runner --------------------------------------------------------------------------


class FakeRunner:
    """The ``Runner`` seam: returns a prepared result (or raises) and remembers each call."""

    def __init__(self, returncode: int = 0, stdout: bytes = b"", stderr: bytes = b"",
                 raises: BaseException | None = None) -> None:
        self.result = subprocess.CompletedProcess(["fake"], returncode, stdout, stderr)
        self.raises = raises
        self.calls: list[tuple[list[str], bytes, float, Mapping[str, str]]] = []

    def run(self, argv: Sequence[str], stdin: bytes, timeout: float,
            env: Mapping[str, str]) -> subprocess.CompletedProcess[bytes]:
        self.calls.append((list(argv), stdin, timeout, env))
        if self.raises is not None:
            raise self.raises
        return self.result


def answer(username: str = "AWS", secret: str = SECRET) -> bytes:
    return json.dumps({"ServerURL": SERVER, "Username": username, "Secret": secret}).encode()


@pytest.fixture
def stub_env(tmp_path: Path) -> dict[str, str]:
    """An env whose PATH holds an executable ``docker-credential-fake`` (never run: the fake
    runner answers), so that ``helper_get`` resolves a real path as it does in production."""
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir()
    stub = bin_dir / "docker-credential-fake"
    stub.write_text("#!/bin/sh\nexit 99\n")
    stub.chmod(0o755)
    return {"PATH": str(bin_dir), "LANG": "C.UTF-8"}


def all_text(exc: BaseException) -> str:
    """Everything an error could show a user or a log: message, hint, one_line, repr."""
    parts = [str(exc), repr(exc)]
    if isinstance(exc, EcrcredError):
        parts += [exc.hint, exc.one_line()]
    return "\n".join(parts)


# --- names and server URLs --------------------------------------------------------------------


@pytest.mark.parametrize(("name", "program"), [
    ("ecr-login", "docker-credential-ecr-login"),
    ("gcr", "docker-credential-gcr"),
    ("acr_env.v2", "docker-credential-acr_env.v2"),
    ("x" * MAX_NAME, "docker-credential-" + "x" * MAX_NAME),
])
def test_helper_program_prefixes_a_plain_name(name: str, program: str) -> None:
    assert helper_program(name) == program


@pytest.mark.parametrize("name", [
    "", "../bin/sh", "/usr/bin/evil", "a/b", "ecr login", "ecr-login\n", "ecr;rm", "$(id)", "é",
    "..", ".hidden", "-v", "a\0b", "x" * (MAX_NAME + 1),
])
def test_helper_program_refuses_names_that_are_not_plain(name: str) -> None:
    with pytest.raises(ValueError, match="credential helper name") as info:
        helper_program(name)
    assert "letters, digits" in str(info.value)


@pytest.mark.parametrize(("name", "problem"), [
    ("", "it is empty"),
    ("x" * (MAX_NAME + 1), f"it is longer than {MAX_NAME} characters"),
    ("a/b", "it contains '/'"),
    ("../../bin/sh", "it contains '/'"),
    ("desk\0top", "it contains '\\x00'"),
    ("ecr\x1b[2J", "it contains '\\x1b'"),
    ("-v", "it starts with '-'"),
    (".docker", "it starts with '.'"),
    ("..", "it starts with '.'"),
])
def test_helper_name_problem_says_why_without_repeating_the_name(name: str, problem: str) -> None:
    found = helper_name_problem(name)
    assert found is not None and found.startswith(problem)
    assert "\x1b[" not in found and "\0" not in found  # one escaped character at most


@pytest.mark.parametrize("name", ["ecr-login", "gcloud", "desktop", "acr_env.v2", "a", "x-"])
def test_helper_name_problem_accepts_plain_names(name: str) -> None:
    assert helper_name_problem(name) is None


@pytest.mark.parametrize("name", ["a/b", "..", "-x", "", "x" * (MAX_NAME + 1), "a\0b", ".x"])
def test_the_config_file_and_docker_configs_refuse_the_same_helper_names(
        name: str, tmp_path: Path) -> None:
    from pydantic import ValidationError

    from ecrcred.config.schema import HelperOptions as HelperModel
    from ecrcred.errors import DockerConfigError
    from ecrcred.sources.dockerconfig import read_docker_config

    with pytest.raises(ValidationError, match="expected the part after docker-credential-"):
        HelperModel.model_validate({"name": name})
    if name:  # an empty credsStore is docker's "no store", not a bad name
        path = tmp_path / "config.json"
        path.write_text(json.dumps({"credsStore": name}))
        with pytest.raises(DockerConfigError, match='"credsStore" that is not a usable helper'):
            read_docker_config(str(path))


@pytest.mark.parametrize(("host", "url"), [
    ("docker.io", "https://index.docker.io/v1/"),
    ("index.docker.io", "https://index.docker.io/v1/"),
    ("registry.example.com", "registry.example.com"),
    ("localhost:5000", "localhost:5000"),
    ("123456789012.dkr.ecr.us-west-2.amazonaws.com",
     "123456789012.dkr.ecr.us-west-2.amazonaws.com"),
])
def test_server_url_is_what_docker_sends(host: str, url: str) -> None:
    assert server_url(host) == url


# --- the protocol over a fake runner ----------------------------------------------------------


def test_helper_get_runs_the_resolved_program_with_the_server_on_stdin(
        stub_env: dict[str, str]) -> None:
    runner = FakeRunner(stdout=answer())
    assert helper_get("fake", SERVER, runner, stub_env, timeout=2.5) == ("AWS", SECRET)
    [(argv, stdin, timeout, env)] = runner.calls
    assert argv == [os.path.join(stub_env["PATH"], "docker-credential-fake"), "get"]
    assert os.path.isabs(argv[0])
    assert stdin == SERVER.encode()  # bare, as docker writes it
    assert timeout == 2.5
    assert env is stub_env  # the environment passed in, as given


NOT_FOUND = b"credentials not found in native keychain\n"


@pytest.mark.parametrize(("returncode", "stdout", "stderr", "expected"), [
    pytest.param(0, answer(), b"", ("AWS", SECRET), id="answer"),
    pytest.param(0, answer() + b"\n", b"warning: x\n", ("AWS", SECRET), id="answer-newline"),
    pytest.param(1, NOT_FOUND, b"", None, id="not-found"),
    pytest.param(1, b"Credentials Not Found In Native Keychain", b"", None,
                 id="not-found-any-case"),
    pytest.param(1, b"  credentials not found in native keychain  \r\n", b"", None,
                 id="not-found-spaces"),
    pytest.param(2, b"", b"", (HelperFailed, "exited with status 2 for"), id="bare-failure"),
    pytest.param(3, b"", b"boom: keychain locked\nsecond line\n",
                 (HelperFailed, "exited with status 3 for registry.example.com (its output is "
                  "not shown"), id="stderr"),
    pytest.param(1, b"error getting credentials: dial tcp: timeout\n", b"",
                 (HelperFailed, "exited with status 1 for registry.example.com (its output is "
                  "not shown"), id="stdout-when-no-stderr"),
    pytest.param(-9, b"", b"", (HelperFailed, "was killed by signal 9"), id="signal"),
    pytest.param(0, b"not json", b"", (HelperFailed, "something other than a JSON object"),
                 id="not-json"),
    pytest.param(0, b"", b"", (HelperFailed, "something other than a JSON object"), id="empty"),
    pytest.param(0, b"[1, 2]", b"", (HelperFailed, "something other than"), id="json-list"),
    pytest.param(0, b'{"Username": "u"}', b"", (HelperFailed, "something other than"),
                 id="no-secret"),
    pytest.param(0, b'{"Username": 1, "Secret": "s"}', b"", (HelperFailed, "something other"),
                 id="username-not-string"),
    pytest.param(0, b'{"Username": "u", "Secret": ""}', b"", (HelperFailed, "something other"),
                 id="empty-secret"),
    pytest.param(0, b"\xff\xfe{", b"", (HelperFailed, "something other"), id="not-utf8"),
    pytest.param(0, answer(username="<token>"), b"",
                 (HelperFailed, "identity token (Username '<token>')"), id="identity-token"),
])
def test_helper_get_maps_every_answer(stub_env: dict[str, str], returncode: int, stdout: bytes,
                                      stderr: bytes, expected: object) -> None:
    runner = FakeRunner(returncode, stdout, stderr)
    if not isinstance(expected, tuple) or not isinstance(expected[0], type):
        assert helper_get("fake", SERVER, runner, stub_env, timeout=1) == expected
        return
    error_type, fragment = expected
    with pytest.raises(error_type) as info:
        helper_get("fake", SERVER, runner, stub_env, timeout=1)
    assert fragment in str(info.value)
    assert "docker-credential-fake" in str(info.value)
    assert info.value.hint  # every failure says what to do next
    assert SECRET not in all_text(info.value)


@pytest.mark.parametrize(("returncode", "stdout", "stderr"), [
    pytest.param(1, b"", b"refresh token rt-SECRETVALUE expired\n", id="stderr"),
    pytest.param(1, b"Secret: hunter2-long\n", b"", id="stdout"),
    pytest.param(1, b"Secret: hunter2-long\n", b"\n  \n", id="stdout-after-blank-stderr"),
    pytest.param(2, answer(), b"", id="json-answer-with-a-failure"),
    pytest.param(1, b"", b"\x1b[31mrefresh token rt-SECRETVALUE\x00\n", id="unprintable"),
    pytest.param(-6, b"Secret: hunter2-long", b"refresh token rt-SECRETVALUE", id="signal"),
])
def test_a_failing_helpers_output_is_never_repeated(
        stub_env: dict[str, str], returncode: int, stdout: bytes, stderr: bytes) -> None:
    with pytest.raises(HelperFailed) as info:
        helper_get("fake", SERVER, FakeRunner(returncode, stdout, stderr), stub_env, timeout=1)
    shown = all_text(info.value)
    for printed in ("rt-SECRETVALUE", "refresh token", "hunter2-long", "Secret:", SECRET,
                    "\x1b", "[31m"):
        assert printed not in shown
    assert info.value.code == "HELPER_FAILED"
    # What it did, and the command that shows the helper's own message.
    status = ("was killed by signal 6" if returncode < 0
              else f"exited with status {returncode}")
    assert str(info.value) == (f"docker-credential-fake {status} for {SERVER} (its output is not "
                               "shown: it may hold a secret)")
    path = os.path.join(stub_env["PATH"], "docker-credential-fake")
    assert f"run 'echo {SERVER} | {path} get'" in info.value.hint


@pytest.mark.parametrize(("raised", "error_type", "fragment"), [
    (subprocess.TimeoutExpired(["x"], 0.5, output=answer()), HelperFailed,
     "did not answer within 0.5s for registry.example.com and was killed"),
    (FileNotFoundError(2, "No such file or directory"), HelperNotInstalled,
     "could not be started: the file or the interpreter on its #! line does not exist"),
    (PermissionError(13, "Permission denied"), HelperFailed,
     "could not be started: Permission denied"),
    (OSError(8, "Exec format error"), HelperFailed, "could not be started: Exec format error"),
])
def test_helper_get_maps_runner_errors(stub_env: dict[str, str], raised: BaseException,
                                       error_type: type[Exception], fragment: str) -> None:
    with pytest.raises(error_type) as info:
        helper_get("fake", SERVER, FakeRunner(raises=raised), stub_env, timeout=0.5)
    assert fragment in str(info.value)
    assert info.value.__cause__ is None
    assert SECRET not in all_text(info.value)


def test_not_installed_names_the_program_and_the_short_path(tmp_path: Path) -> None:
    runner = FakeRunner(stdout=answer())
    with pytest.raises(HelperNotInstalled) as info:
        helper_get("fake", SERVER, runner, {"PATH": str(tmp_path)}, timeout=1)
    assert str(info.value) == (f"docker-credential-fake is not installed: not found on PATH "
                               f"({tmp_path})")
    assert "install docker-credential-fake" in info.value.hint
    assert "PATH" in info.value.hint
    assert runner.calls == []


def test_not_installed_leaves_out_a_long_path(tmp_path: Path) -> None:
    long_path = os.pathsep.join(str(tmp_path / f"dir{i:03d}") for i in range(40))
    with pytest.raises(HelperNotInstalled) as info:
        helper_get("fake", SERVER, FakeRunner(), {"PATH": long_path}, timeout=1)
    assert str(info.value) == "docker-credential-fake is not installed: not found on PATH"


def test_relative_path_entries_are_not_searched(stub_env: dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # As Go's exec.LookPath: a helper found relative to the working directory is refused.
    stub_dir = Path(stub_env["PATH"])
    monkeypatch.chdir(stub_dir.parent)
    with pytest.raises(HelperNotInstalled):
        helper_get("fake", SERVER, FakeRunner(stdout=answer()), {"PATH": stub_dir.name},
                   timeout=1)


def test_an_unusable_helper_name_is_a_value_error_before_anything_runs() -> None:
    runner = FakeRunner(stdout=answer())
    with pytest.raises(ValueError, match="not valid"):
        helper_get("../../bin/sh", SERVER, runner, {"PATH": "/bin"}, timeout=1)
    assert runner.calls == []


# --- HelperSource over a fake runner ----------------------------------------------------------


def source(runner: FakeRunner, env: dict[str, str], log: RecordingLogger | None = None,
           clock: FakeClock | None = None, **kwargs: int) -> HelperSource:
    return HelperSource(HelperOptions("fake"), runner, env, clock or FakeClock(),
                        log or RecordingLogger(), **kwargs)


def test_source_lookup_answers_with_the_helpers_credentials(stub_env: dict[str, str]) -> None:
    log = RecordingLogger()
    clock = FakeClock()
    found = source(FakeRunner(stdout=answer()), stub_env, log, clock).lookup(
        f"{SERVER}/team/app:1.0", None)
    assert found is not None
    assert found.auth_key == SERVER
    assert found.cache_key is None
    assert found.describe == f"credential helper docker-credential-fake for {SERVER}"
    assert found.cache_duration == DEFAULT_UNCACHED_DURATION
    assert found.per_image is False
    clock.advance(10)  # the token's times are those of the helper's answer
    assert found.fetch() == Token("AWS", SECRET, T0 + DEFAULT_UNCACHED_DURATION, T0)
    assert log.secrets == [SECRET]
    assert log.at("debug") == [f"docker-credential-fake answered for {SERVER}"]
    assert SECRET not in repr(found)


def test_source_runs_the_helper_at_lookup_time(stub_env: dict[str, str]) -> None:
    runner = FakeRunner(stdout=answer())
    found = source(runner, stub_env, cache_duration=42).lookup(f"{SERVER}/app", None)
    assert len(runner.calls) == 1
    assert found is not None
    found.fetch()
    assert len(runner.calls) == 1  # fetch does not run it again
    assert found.cache_duration == 42
    assert found.fetch().expires_at == T0 + 42


def test_source_lookup_is_none_when_the_helper_has_nothing(stub_env: dict[str, str]) -> None:
    log = RecordingLogger()
    found = source(FakeRunner(1, NOT_FOUND), stub_env, log).lookup(f"{SERVER}/app", None)
    assert found is None
    assert log.secrets == []
    assert log.at("debug") == [f"docker-credential-fake has no credentials for {SERVER}"]


def test_source_asks_docker_hub_by_its_index_url(stub_env: dict[str, str]) -> None:
    runner = FakeRunner(stdout=answer())
    found = source(runner, stub_env).lookup("docker.io/library/nginx:latest", None)
    assert runner.calls[0][1] == DOCKER_HUB_SERVER.encode()
    assert found is not None
    assert found.auth_key == "docker.io"


def test_source_passes_its_timeout_and_env(stub_env: dict[str, str]) -> None:
    runner = FakeRunner(stdout=answer())
    HelperSource(HelperOptions("fake", timeout=1.25), runner, stub_env, FakeClock(),
                 RecordingLogger()).lookup(f"{SERVER}/app", None)
    [(_, _, timeout, env)] = runner.calls
    assert timeout == 1.25
    assert env is stub_env


def test_source_refuses_a_bad_helper_name_when_configured() -> None:
    with pytest.raises(ValueError, match="not valid"):
        HelperSource(HelperOptions("a/b"), FakeRunner(), {}, FakeClock(), RecordingLogger())


def test_source_failure_propagates_as_a_named_error(stub_env: dict[str, str]) -> None:
    log = RecordingLogger()
    with pytest.raises(HelperFailed):
        source(FakeRunner(0, b"nope"), stub_env, log).lookup(f"{SERVER}/app", None)
    assert log.secrets == []


# --- SubprocessRunner on its own --------------------------------------------------------------


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


BASE_ENV = {"PATH": os.defpath, "LANG": "C.UTF-8"}


def test_runner_feeds_stdin_and_captures_both_streams() -> None:
    code = ("import sys; data = sys.stdin.buffer.read(); sys.stdout.buffer.write(data[::-1]); "
            "sys.stderr.write('err'); sys.exit(4)")
    result = SubprocessRunner().run(python(code), b"abc", timeout=10, env=BASE_ENV)
    assert (result.returncode, result.stdout, result.stderr) == (4, b"cba", b"err")


def test_runner_passes_the_env_as_given_and_nothing_of_ours() -> None:
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    env = {**BASE_ENV, "ONLY_THIS": "yes"}
    result = SubprocessRunner().run(python(code), b"", timeout=10, env=env)
    seen = json.loads(result.stdout)
    assert seen["ONLY_THIS"] == "yes"
    assert "PYTEST_CURRENT_TEST" not in seen  # set in os.environ while this test runs


def test_runner_caps_a_runaway_output_and_still_drains_it() -> None:
    code = "import sys; sys.stdout.write('x' * 3_000_000); sys.stderr.write('y' * 3_000_000)"
    result = SubprocessRunner(max_output=1000).run(python(code), b"", timeout=20, env=BASE_ENV)
    assert result.returncode == 0  # it was never blocked on a full pipe
    assert result.stdout == b"x" * 1000
    assert result.stderr == b"y" * 1000


def test_runner_survives_a_program_that_does_not_read_stdin() -> None:
    result = SubprocessRunner().run(python("pass"), b"z" * 1_000_000, timeout=10, env=BASE_ENV)
    assert result.returncode == 0


def test_runner_lets_file_not_found_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SubprocessRunner().run([str(tmp_path / "missing")], b"", timeout=1, env=BASE_ENV)


def test_runner_timeout_carries_no_output() -> None:
    code = f"import sys, time; print({SECRET!r}, flush=True); time.sleep(60)"
    with pytest.raises(subprocess.TimeoutExpired) as info:
        SubprocessRunner().run(python(code), b"", timeout=1.0, env=BASE_ENV)
    assert info.value.output is None
    assert info.value.stderr is None


# --- the real test helper through the real runner ---------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a pid from /proc; None when it no longer exists."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[2])


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def live_members(pgid: int) -> list[int]:
    """Pids in process group ``pgid`` that are not zombies (no init here may reap those)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pgid and alive(int(entry.name)):
                members.append(int(entry.name))
    return members


@pytest.fixture
def helper_env(tmp_path: Path) -> dict[str, str]:
    """What a kubelet would pass: PATH with the test helper (and a python3 for its #! line)."""
    store = tmp_path / "store.json"
    store.write_text(json.dumps({
        SERVER: {"Username": "robot", "Secret": SECRET},
        DOCKER_HUB_SERVER: {"Username": "hubuser", "Secret": SECRET + "-hub"},
    }))
    return {
        "PATH": os.pathsep.join([str(BIN_DIR), os.path.dirname(sys.executable), "/usr/bin",
                                 "/bin"]),
        "LANG": "C.UTF-8",
        "ECRCRED_TEST_HELPER_STORE": str(store),
        "ECRCRED_TEST_HELPER_LOG": str(tmp_path / "asked.log"),
        "ECRCRED_TEST_HELPER_PIDS": str(tmp_path / "pids"),
    }


def asked(env: Mapping[str, str]) -> list[str]:
    path = Path(env["ECRCRED_TEST_HELPER_LOG"])
    return path.read_text().splitlines() if path.exists() else []


def run_helper(env: Mapping[str, str], server: str = SERVER,
               timeout: float = 20.0) -> tuple[str, str] | None:
    return helper_get(TEST_HELPER, server, SubprocessRunner(), env, timeout)


def test_the_test_helper_is_an_executable_file() -> None:
    program = BIN_DIR / helper_program(TEST_HELPER)
    assert os.access(program, os.X_OK), f"chmod +x {program}"


def test_real_helper_answers_from_its_store(helper_env: dict[str, str]) -> None:
    assert run_helper(helper_env) == ("robot", SECRET)
    assert asked(helper_env) == [SERVER]


def test_real_helper_with_nothing_for_the_server_is_none(helper_env: dict[str, str]) -> None:
    assert run_helper(helper_env, server="other.example.com") is None
    assert asked(helper_env) == ["other.example.com"]


def test_real_helper_not_on_path_is_not_installed(helper_env: dict[str, str],
                                                  tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    with pytest.raises(HelperNotInstalled) as info:
        run_helper({**helper_env, "PATH": str(empty)})
    assert str(info.value).startswith(
        "docker-credential-ecrcred-test is not installed: not found on PATH")
    assert asked(helper_env) == []


def test_real_helper_failure_reports_its_status_and_how_to_see_its_message(
        helper_env: dict[str, str]) -> None:
    with pytest.raises(HelperFailed) as info:
        run_helper({**helper_env, "ECRCRED_TEST_HELPER_MODE": "fail"})
    assert str(info.value) == (
        f"docker-credential-ecrcred-test exited with status 3 for {SERVER} (its output is not "
        "shown: it may hold a secret)")
    assert info.value.hint == (
        f"run 'echo {SERVER} | {BIN_DIR / 'docker-credential-ecrcred-test'} get' on the node as "
        "the kubelet's user to see its own message")
    assert "simulated failure" not in all_text(info.value)


def test_real_helper_garbage_is_a_failure_that_does_not_repeat_it(
        helper_env: dict[str, str]) -> None:
    with pytest.raises(HelperFailed) as info:
        run_helper({**helper_env, "ECRCRED_TEST_HELPER_MODE": "garbage"})
    assert "something other than a JSON object" in str(info.value)
    assert SECRET not in all_text(info.value)  # the garbage held it


def test_real_helper_identity_token_is_a_failure(helper_env: dict[str, str]) -> None:
    with pytest.raises(HelperFailed) as info:
        run_helper({**helper_env, "ECRCRED_TEST_HELPER_MODE": "token"})
    assert info.value.code == "HELPER_IDENTITY_TOKEN"
    assert SECRET not in all_text(info.value)


@pytest.fixture
def hang_env(helper_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The helper in hang mode; afterwards, whatever the test found, its group is gone."""
    env = {**helper_env, "ECRCRED_TEST_HELPER_MODE": "hang"}
    yield env
    pids = Path(env["ECRCRED_TEST_HELPER_PIDS"])
    if pids.exists():
        leader = int(pids.read_text().split()[0])
        if live_members(leader):  # only if the runner failed to: the group we started
            os.killpg(leader, signal.SIGKILL)


def test_real_helper_that_hangs_is_killed_with_its_whole_group(
        hang_env: dict[str, str]) -> None:
    started = time.monotonic()
    with pytest.raises(HelperFailed) as info:
        run_helper(hang_env, timeout=0.5)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0
    assert str(info.value) == (f"docker-credential-ecrcred-test did not answer within 0.5s for "
                               f"{SERVER} and was killed")
    pids = Path(hang_env["ECRCRED_TEST_HELPER_PIDS"])
    assert pids.exists(), "the helper did not start its child within the timeout"
    leader, child = (int(p) for p in pids.read_text().split())
    deadline = time.monotonic() + 2.0  # SIGKILL is delivered asynchronously to the child
    while (live_members(leader) or alive(child)) and time.monotonic() < deadline:
        time.sleep(0.02)
    # The child is a `sleep 3600` that would outlive its parent: only the group kill ends it.
    assert not alive(child)
    assert live_members(leader) == []
    assert _stat(leader) is None  # the runner reaped the helper itself


def test_real_source_asks_docker_hub_by_its_index_url(helper_env: dict[str, str]) -> None:
    found = HelperSource(HelperOptions(TEST_HELPER), SubprocessRunner(), helper_env, FakeClock(),
                         RecordingLogger()).lookup("docker.io/library/nginx:latest", None)
    assert asked(helper_env) == ["https://index.docker.io/v1/"]
    assert found is not None
    assert found.auth_key == "docker.io"
    assert found.fetch().username == "hubuser"


@pytest.mark.parametrize("mode", ["store", "fail", "garbage", "token"])
def test_real_source_never_shows_the_secret(helper_env: dict[str, str], mode: str) -> None:
    log = RecordingLogger()
    helper_source = HelperSource(HelperOptions(TEST_HELPER), SubprocessRunner(),
                                 {**helper_env, "ECRCRED_TEST_HELPER_MODE": mode}, FakeClock(), log)
    shown: list[str] = []
    try:
        found = helper_source.lookup(f"{SERVER}/team/app:1", None)
    except HelperFailed as exc:
        shown.append(all_text(exc))
    else:
        assert found is not None
        assert found.fetch().password == SECRET
        shown += [repr(found), repr(found.fetch()), found.describe]
        assert log.secrets == [SECRET]
    shown += [message for _, message in log.lines]
    assert log.lines or mode != "store"
    assert all(SECRET not in text for text in shown)


# --- what a helper leaves behind ----------------------------------------------------------------

LEAVES_BEHIND = """#!/bin/sh
# A grandchild in a session of its own, out of reach of the process-group kill, that would sleep
# on for minutes: it writes its pid, then becomes a `sleep`.
{start} sh -c 'echo $$ > "$PIDFILE.tmp" && mv "$PIDFILE.tmp" "$PIDFILE" && exec sleep 300' \\
    </dev/null >/dev/null 2>&1 {end}
while [ ! -s "$PIDFILE" ]; do sleep 0.01; done
[ "$MODE" = hang ] && exec sleep 300
echo '{{"Username": "u", "Secret": "{secret}"}}'
"""
ESCAPES = {
    # setsid(1) in the background: the helper is its parent until the helper exits.
    "setsid": ("setsid", "&"),
    # A double fork: the subshell exits at once, so the grandchild is orphaned while the helper
    # still runs.
    "double-fork": ("( setsid", "& )"),
}


@pytest.fixture(params=sorted(ESCAPES))
def leaves_behind(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """An env to run ``argv`` (its ``HELPER``) with; afterwards the grandchild is killed if it
    is still there, whatever the test found."""
    start, end = ESCAPES[request.param]
    script = tmp_path / "docker-credential-leaves-behind"
    script.write_text(LEAVES_BEHIND.format(start=start, end=end, secret=SECRET))
    script.chmod(0o755)
    pidfile = tmp_path / "grandchild.pid"
    env = {**BASE_ENV, "PIDFILE": str(pidfile), "HELPER": str(script)}
    yield env
    if pidfile.exists():
        pid = int(pidfile.read_text())
        if is_our_sleep(pid):
            os.kill(pid, signal.SIGKILL)


def is_our_sleep(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) ``sleep``: the grandchild, not a reused pid."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return comm == "sleep" and alive(pid)


def grandchild(env: Mapping[str, str]) -> int:
    pidfile = Path(env["PIDFILE"])
    assert pidfile.exists(), "the helper did not start its grandchild"
    return int(pidfile.read_text())


def test_runner_kills_what_a_helper_left_in_another_session_after_it_answers(
        leaves_behind: dict[str, str]) -> None:
    log = RecordingLogger()
    result = SubprocessRunner(log=log).run([leaves_behind["HELPER"], "get"], b"", timeout=20,
                                           env=leaves_behind)
    assert (result.returncode, json.loads(result.stdout)["Secret"]) == (0, SECRET)
    assert not is_our_sleep(grandchild(leaves_behind))
    assert _stat(grandchild(leaves_behind)) is None  # reaped too, not left a zombie
    assert log.at("debug") == ["killed 1 process(es) that docker-credential-leaves-behind left "
                               "behind"]


def test_runner_kills_what_a_helper_left_in_another_session_when_it_times_out(
        leaves_behind: dict[str, str]) -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        SubprocessRunner().run([leaves_behind["HELPER"], "get"], b"", timeout=1.5,
                               env={**leaves_behind, "MODE": "hang"})
    assert not is_our_sleep(grandchild(leaves_behind))
    assert _stat(grandchild(leaves_behind)) is None


def test_runner_never_kills_children_it_did_not_start(leaves_behind: dict[str, str]) -> None:
    ours = subprocess.Popen(["sleep", "60"])
    try:
        SubprocessRunner().run([leaves_behind["HELPER"], "get"], b"", timeout=20,
                               env=leaves_behind)
        assert ours.poll() is None
        assert alive(ours.pid)
    finally:
        ours.kill()
        ours.wait()


def _get_subreaper() -> int:
    import ctypes

    value = ctypes.c_int(-1)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(37, ctypes.byref(value), 0, 0, 0) == 0  # PR_GET_CHILD_SUBREAPER
    return value.value


def test_runner_is_a_subreaper_only_while_a_helper_runs(helper_env: dict[str, str]) -> None:
    assert _get_subreaper() == 0
    assert run_helper(helper_env) == ("robot", SECRET)
    assert _get_subreaper() == 0  # orphans of anything else we run go to init, as before
    with pytest.raises(HelperFailed):
        run_helper({**helper_env, "ECRCRED_TEST_HELPER_MODE": "fail"})
    assert _get_subreaper() == 0


def test_without_prctl_the_runner_falls_back_to_the_group_kill_and_says_so_once(
        hang_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helper, "_prctl", "not on Linux (test)")
    log = RecordingLogger()
    runner = SubprocessRunner(log=log)
    for _ in range(2):
        with pytest.raises(subprocess.TimeoutExpired):
            runner.run([str(BIN_DIR / helper_program(TEST_HELPER)), "get"], b"x", timeout=1.0,
                       env=hang_env)
        _, child = (int(p) for p in Path(hang_env["ECRCRED_TEST_HELPER_PIDS"]).read_text()
                    .split())
        deadline = time.monotonic() + 2.0
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(child)  # the process-group kill, as before
    assert log.at("debug") == [
        "cannot make ecrcred a child subreaper (not on Linux (test)): a credential helper's "
        "processes are killed with its process group only, and one that left it (setsid) may "
        "outlive the helper"]


@pytest.mark.parametrize(("stat", "expected"), [
    (b"4242 (sleep) S 17 4242 4242 0 -1 4194560 " + b"0 " * 12 + b"98765 0 0\n", (17, 98765)),
    # A command name with spaces, parentheses and what looks like fields of its own.
    (b"4242 (a) S 1 2 (b) S 99 1 1 0 -1 4194560 " + b"0 " * 12 + b"555 0\n", (99, 555)),
    (b"4242 (x)\n", None),
    (b"", None),
])
def test_parent_and_start_read_after_the_last_parenthesis(stat: bytes,
                                                          expected: tuple[int, int] | None) -> None:
    assert helper.parent_and_start(stat) == expected


def test_a_child_whose_name_holds_parentheses_and_spaces_is_found(tmp_path: Path) -> None:
    odd = tmp_path / "a) S 1 (b"
    odd.symlink_to("/bin/sleep")
    child = subprocess.Popen([str(odd), "30"])
    try:
        deadline = time.monotonic() + 5  # until the exec has renamed it
        while (Path(f"/proc/{child.pid}/comm").read_text().strip() != odd.name
               and time.monotonic() < deadline):
            time.sleep(0.01)
        fields = helper.parent_and_start(Path(f"/proc/{child.pid}/stat").read_bytes())
        assert fields is not None and fields[0] == os.getpid()
        assert (child.pid, fields[1]) in helper._children()
    finally:
        child.kill()
        child.wait()


def test_killing_what_a_helper_left_behind_ends_when_its_descendants_keep_forking(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A fork storm, faked: every listing finds a new child, and each one dies when killed.
    pids = iter(range(10_000_000, 20_000_000))
    monkeypatch.setattr(helper, "_children", lambda: {(next(pids), 1)})
    monkeypatch.setattr(helper, "_reap", lambda pid, deadline: True)
    monkeypatch.setattr(helper.os, "kill", lambda pid, sig: None)
    monkeypatch.setattr(helper, "REAP_TIMEOUT", 0.05)
    log = RecordingLogger()
    started = time.monotonic()
    SubprocessRunner(log=log)._kill_left_behind(["/bin/docker-credential-x"], set())
    assert time.monotonic() - started < 5
    [warning] = log.at("warning")
    assert warning.startswith("1 process(es) that docker-credential-x started")


def test_killing_a_helper_group_waits_for_its_leader_a_bounded_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Unkillable:
        pid = 2**22 + 1  # no such process group: os.killpg finds no one

        def __init__(self) -> None:
            self.timeouts: list[float | None] = []

        def wait(self, timeout: float | None = None) -> int:
            self.timeouts.append(timeout)
            raise subprocess.TimeoutExpired("helper", timeout or 0)

    leader = Unkillable()
    helper._kill_group(leader)  # type: ignore[arg-type]
    assert leader.timeouts == [helper.REAP_TIMEOUT]
