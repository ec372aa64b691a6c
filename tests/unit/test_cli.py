"""``ecrcred.cli.main`` in this process: every way it ends is a documented exit code.

Flags out of range, and standard streams that are closed or fail, replaced here by stand-ins;
the same cases with the real executable and real descriptors are in
tests/hostile/test_exit_codes.py.
"""

from __future__ import annotations

import errno
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ecrcred import cli

REQUEST = json.dumps({"kind": "CredentialProviderRequest",
                      "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                      "image": "static.example/app"}).encode() + b"\n"
PASSWORD = "static-password-8c1d"  # a test value, looked for in the output
CONFIG = """\
apiVersion: ecrcred.io/v1alpha1
kind: EcrcredConfig
registries:
  - match: ["static.example"]
    static: {username: robot, passwordEnv: CLI_TEST_PASSWORD}
"""


class _Raw(io.RawIOBase):
    """A descriptor-less stream whose writes fail with ``error`` while ``failing``."""

    def __init__(self, error: OSError) -> None:
        self.error = error
        self.failing = True
        self.written = b""

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        if self.failing:
            raise self.error
        data = bytes(b)  # type: ignore[call-overload]
        self.written += data
        return len(data)


class Streams:
    """The stdin, stdout and stderr handed to one ``main`` call; each may be closed (None) or
    fail with an OSError. A closed one is the process's own stream missing (``sys.stdin`` is
    None), as when ecrcred is started without that descriptor: ``main`` then gets None, its
    "use the process's stream", and finds none."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self._raws: list[_Raw] = []
        self.stdout = io.BytesIO()
        self.stderr = io.BytesIO()
        self._chosen: dict[str, bytes | io.BytesIO | OSError | None] = {
            "stdin": REQUEST, "stdout": self.stdout, "stderr": self.stderr}

    def set(self, **streams: bytes | io.BytesIO | OSError | None) -> None:
        self._chosen.update(streams)

    def _failing(self, error: OSError) -> io.BufferedWriter:
        raw = _Raw(error)
        self._raws.append(raw)
        return io.BufferedWriter(raw)

    def run(self, argv: list[str], env: dict[str, str]) -> int:
        chosen = self._chosen
        for name, value in chosen.items():
            if value is None:
                # Set during the test itself: pytest's capture replaces them after fixtures.
                self._monkeypatch.setattr(sys, name, None)
        stdin = chosen["stdin"]
        stdout = chosen["stdout"]
        stderr = chosen["stderr"]
        text_err: io.TextIOWrapper | None = None
        if isinstance(stderr, OSError):
            text_err = io.TextIOWrapper(self._failing(stderr), encoding="utf-8",
                                        line_buffering=True)
        elif isinstance(stderr, io.BytesIO):
            text_err = io.TextIOWrapper(stderr, encoding="utf-8", write_through=True)
        try:
            return cli.main(
                argv, env,
                stdin=io.BytesIO(stdin) if isinstance(stdin, bytes) else None,
                stdout=self._failing(stdout) if isinstance(stdout, OSError) else
                stdout if isinstance(stdout, io.BytesIO) else None,
                stderr=text_err)
        finally:
            if text_err is not None and isinstance(stderr, io.BytesIO):
                text_err.detach()  # keep the BytesIO open when the wrapper goes

    def heal(self) -> None:
        """Let the failing streams' leftovers flush when they are collected, quietly."""
        for raw in self._raws:
            raw.failing = False


@pytest.fixture
def streams(monkeypatch: pytest.MonkeyPatch) -> Iterator[Streams]:
    s = Streams(monkeypatch)
    try:
        yield s
    finally:
        s.heal()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    return {"PATH": "/usr/bin:/bin", "ECRCRED_CONFIG": str(config),
            "CLI_TEST_PASSWORD": PASSWORD}


def err(streams: Streams) -> str:
    return streams.stderr.getvalue().decode()


# -- timeouts ---------------------------------------------------------------------------------

BAD_SECONDS = ["1e-7", "0.5", "0", "-1", "nan", "NaN", "inf", "-inf", "1e999", "abc", ""]


@pytest.mark.parametrize(("how", "value"), [
    *[("flag", value) for value in [*BAD_SECONDS, "55.5", "56", "3600"]],
    # An empty variable is an unset one: the default applies.
    *[("env", value) for value in [*BAD_SECONDS[:-1], "55.5", "56", "3600"]],
])
def test_a_get_credentials_timeout_outside_1_to_55_seconds_is_a_usage_error(
        streams: Streams, env: dict[str, str], how: str, value: str):
    argv = ["get-credentials", "--no-cache"]
    if how == "flag":
        argv.append(f"--timeout={value}")  # "=": argparse takes "-inf" alone for a flag
    else:
        env["ECRCRED_TIMEOUT"] = value
    assert streams.run(argv, env) == 2
    line = err(streams).strip()
    origin = "flag --timeout" if how == "flag" else "env ECRCRED_TIMEOUT"
    assert line.startswith(f"ecrcred: error: timeout '{value}' (from {origin}) is not a number "
                           "of seconds from 1 to 55;")
    assert line.endswith("[USAGE]")
    assert streams.stdout.getvalue() == b""


@pytest.mark.parametrize("value", ["1", "55", "1.5", " 30 "])
def test_a_get_credentials_timeout_from_1_to_55_seconds_is_taken(
        streams: Streams, env: dict[str, str], value: str):
    code = streams.run(["get-credentials", "--no-cache", "--timeout", value], env)
    assert code == 0, err(streams)
    assert json.loads(streams.stdout.getvalue())["auth"]["static.example"]["password"] == PASSWORD


@pytest.mark.parametrize("value", [*BAD_SECONDS[:-1], "86401"])
@pytest.mark.parametrize("argv", [
    pytest.param(["pull-sandbox", "--image", "a.io/p:1", "--timeout"], id="pull-sandbox-timeout"),
    pytest.param(["pull-sandbox", "--image", "a.io/p:1", "--watch", "--interval"],
                 id="pull-sandbox-interval"),
    pytest.param(["doctor", "--image", "a.io/p:1", "--timeout"], id="doctor-timeout"),
])
def test_human_commands_refuse_seconds_outside_1_to_86400_naming_flag_and_range(
        streams: Streams, env: dict[str, str], argv: list[str], value: str):
    *command, flag = argv
    assert streams.run([*command, f"{flag}={value}"], env) == 2
    line = err(streams).strip()
    assert f"argument {flag}: '{value}' is not a number of seconds from 1 to 86400" in line
    assert line.endswith("[USAGE]")
    assert "Traceback" not in line


# -- standard streams -------------------------------------------------------------------------

def test_a_closed_stdin_is_a_bad_request(streams: Streams, env: dict[str, str]):
    streams.set(stdin=None)
    assert streams.run(["get-credentials", "--no-cache"], env) == 3
    assert err(streams) == ("ecrcred: error: no request on stdin (stdin is closed); the kubelet "
                            "sends one CredentialProviderRequest as JSON on stdin "
                            "[BAD_REQUEST]\n")


@pytest.mark.parametrize("argv", [[], ["--no-cache"]])
def test_with_no_command_a_closed_stdin_is_a_bad_request_not_a_crash(
        streams: Streams, env: dict[str, str], argv: list[str]):
    streams.set(stdin=None)
    assert streams.run(argv, env) == 3
    assert "stdin is closed" in err(streams)


@pytest.mark.parametrize(("error", "reason"), [
    pytest.param(BrokenPipeError(errno.EPIPE, "Broken pipe"), "Broken pipe", id="epipe"),
    pytest.param(OSError(errno.ENOSPC, "No space left on device"), "No space left on device",
                 id="enospc"),
])
def test_a_response_stdout_cannot_take_is_exit_74_naming_stdout(
        streams: Streams, env: dict[str, str], error: OSError, reason: str):
    streams.set(stdout=error)
    assert streams.run(["get-credentials", "--no-cache"], env) == 74
    assert err(streams) == (f"ecrcred: error: cannot write the response on stdout: {reason}; "
                            "keep ecrcred's stdout open to a reader that reads it to the end "
                            "[STDOUT]\n")
    assert PASSWORD not in err(streams)


def test_a_closed_stdout_is_exit_74(streams: Streams, env: dict[str, str]):
    streams.set(stdout=None)
    assert streams.run(["get-credentials", "--no-cache"], env) == 74
    assert "cannot write the response: stdout is closed" in err(streams)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["version"]])
def test_help_and_version_that_stdout_cannot_take_are_exit_74(
        streams: Streams, env: dict[str, str], argv: list[str]):
    streams.set(stdout=BrokenPipeError(errno.EPIPE, "Broken pipe"))
    assert streams.run(argv, env) == 74
    assert "on stdout: Broken pipe" in err(streams)


@pytest.mark.parametrize("stderr", [
    pytest.param(None, id="closed"),
    pytest.param(OSError(errno.ENOSPC, "No space left on device"), id="full"),
    pytest.param(BrokenPipeError(errno.EPIPE, "Broken pipe"), id="gone"),
])
@pytest.mark.parametrize(("stdin", "code"), [
    pytest.param(b"not json", 3, id="bad-request"),
    pytest.param(REQUEST, 0, id="answered"),
])
def test_a_stderr_that_is_closed_or_fails_leaves_the_exit_code_of_what_happened(
        streams: Streams, env: dict[str, str], stderr: OSError | None, stdin: bytes, code: int):
    streams.set(stdin=stdin, stderr=stderr)
    env["ECRCRED_LOG_LEVEL"] = "debug"  # every step tries to write on stderr
    assert streams.run(["get-credentials", "--no-cache"], env) == code
    assert (streams.stdout.getvalue() != b"") == (code == 0)


def test_descriptors_started_closed_get_dev_null_so_no_file_takes_their_number(tmp_path: Path):
    # Otherwise the next file opened would be descriptor 0 or 2, and a child or a C library
    # writing to "stderr" would write into it (a token cache file, say).
    out = tmp_path / "out"
    script = (
        "import os, sys\n"
        "from ecrcred import cli\n"
        "code = cli.main(['get-credentials', '--no-cache'], {'PATH': '/usr/bin:/bin'})\n"
        "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)\n"
        "names = [os.readlink(f'/proc/self/fd/{n}') for n in (0, 2)]\n"
        "os.write(fd, ' '.join([str(code), str(fd), *names]).encode())\n"
    )
    result = subprocess.run(["/bin/sh", "-c", 'exec "$0" -c "$1" "$2" <&- 2>&-', sys.executable,
                             script, str(out)], capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result
    code, fd, *names = out.read_text().split()
    assert code == "3", "stdin is closed: a bad request"
    assert int(fd) > 2
    assert names == ["/dev/null", "/dev/null"]


# -- the streams main is given ----------------------------------------------------------------

class _Untouchable:
    """A process stream ``main`` must not use when it was handed its own."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"main used the process's stream ({name})")


def test_main_reads_and_writes_only_the_streams_it_is_given(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str]):
    for name in ("stdin", "stdout", "stderr"):
        monkeypatch.setattr(sys, name, _Untouchable())
    out, err = io.BytesIO(), io.StringIO()
    env["ECRCRED_LOG_LEVEL"] = "debug"
    code = cli.main(["get-credentials", "--no-cache"], env, stdin=io.BytesIO(REQUEST),
                    stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    assert json.loads(out.getvalue())["auth"]["static.example"]["password"] == PASSWORD
    assert "ecrcred: debug: " in err.getvalue()
    assert PASSWORD not in err.getvalue()


def test_help_goes_to_the_stdout_main_is_given(env: dict[str, str]):
    out = io.BytesIO()
    assert cli.main(["doctor", "--help"], env, stdin=io.BytesIO(b""), stdout=out,
                    stderr=io.StringIO()) == 0
    assert out.getvalue().startswith(b"usage: ecrcred doctor")


@pytest.mark.parametrize("command", ["pull-sandbox", "doctor"])
def test_pull_sandbox_and_doctor_share_the_image_and_containerd_options(command: str):
    args = cli.build_parser().parse_args([command, "--image", "a.io/p:1", "--containerd-config",
                                          "/c.toml", "--runtime-endpoint", "unix:///s.sock"])
    assert (args.image, args.containerd_config, args.runtime_endpoint) == (
        "a.io/p:1", "/c.toml", "unix:///s.sock")


def test_a_wiring_bug_is_an_internal_error_not_bad_configuration(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str]):
    from ecrcred.errors import EXIT_INTERNAL, WiringError

    def broken(_wiring: object) -> int:
        raise WiringError("a role is configured but no STS client was given")

    monkeypatch.setattr(cli, "_get_credentials", broken)
    err = io.StringIO()
    code = cli.main(["get-credentials", "--no-cache"], env, stdin=io.BytesIO(REQUEST),
                    stdout=io.BytesIO(), stderr=err)
    assert code == EXIT_INTERNAL == 70
    assert err.getvalue() == ("ecrcred: error: internal error: WiringError; rerun with --debug "
                              "for a traceback and report it [INTERNAL]\n")


def test_get_credentials_opens_the_token_cache_inside_its_deadline(
        streams: Streams, env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    # A hung mount on the cache path must end in our own error line, not the kubelet's SIGKILL.
    import contextlib

    from ecrcred import deadline

    order: list[str] = []
    real_deadline, real_token_cache = deadline.deadline, cli.Wiring.token_cache

    @contextlib.contextmanager
    def recorded_deadline(*args: Any, **kwargs: Any) -> Iterator[None]:
        order.append("deadline")
        with real_deadline(*args, **kwargs):
            yield
        order.append("deadline over")

    def recorded_token_cache(self: cli.Wiring, lock_timeout: float) -> Any:
        order.append("token cache")
        return real_token_cache(self, lock_timeout)

    monkeypatch.setattr(deadline, "deadline", recorded_deadline)
    monkeypatch.setattr(cli.Wiring, "token_cache", recorded_token_cache)
    assert streams.run(["get-credentials", "--no-cache"], env) == 0, err(streams)
    assert order == ["deadline", "token cache", "deadline over"]
