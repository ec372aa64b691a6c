"""Every way ``ecrcred`` can end is its documented exit code (README, "Errors and exit codes"):
never 70 (a bug) or a traceback for what the environment or the input did, and the request's
image never reaches stderr raw.

The real executable, started as the kubelet starts it but with its standard descriptors
closed, full (``/dev/full``), a pipe whose reader went away or one nobody reads; with timeouts
out of range, a config nested hundreds deep, numbers past Python's digit limit, and images of
300 KB or with terminal escapes.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.hostile.conftest import clean_failure
from tests.support.kubelet import check_response, request

F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, named by Python only from 3.10 on Linux
PASSWORD = "static-password-b71e04"  # a test value, looked for in the output
STATIC = "static.example"
CONFIG = f"""\
apiVersion: ecrcred.io/v1alpha1
kind: EcrcredConfig
registries:
  - match: ["{STATIC}"]
    static: {{username: robot, passwordEnv: EXIT_TEST_PASSWORD}}
"""
GOOD = json.dumps(request(f"{STATIC}/app")).encode() + b"\n"
BAD = b"not a request\n"


@pytest.fixture
def env(kubelet_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    return {**kubelet_env, "ECRCRED_CONFIG": str(config), "EXIT_TEST_PASSWORD": PASSWORD}


def run(binary: str, env: dict[str, str], stdin: bytes, redirect: str = "",
        args: Sequence[str] = ("get-credentials",), timeout: float = 30,
        ) -> subprocess.CompletedProcess[bytes]:
    """``binary args``, with the shell redirection ``redirect`` (``<&-``, ``>/dev/full``...)
    applied to it alone."""
    return subprocess.run(["/bin/sh", "-c", f'exec "$0" "$@" {redirect}', binary, *args],
                          input=stdin, env=env, capture_output=True, timeout=timeout, cwd="/",
                          check=False)


def run_into(binary: str, env: dict[str, str], stdout_fd: int, timeout: float,
             args: Sequence[str] = ("get-credentials",)) -> subprocess.CompletedProcess[bytes]:
    """``binary args`` writing its stdout into ``stdout_fd``; the result's stdout is empty (what
    went into the descriptor is the test's to judge)."""
    result = subprocess.run([binary, *args], input=GOOD, stdout=stdout_fd,
                            stderr=subprocess.PIPE, env=env, timeout=timeout, cwd="/",
                            check=False)
    return subprocess.CompletedProcess(result.args, result.returncode, b"", result.stderr)


def failure(result: subprocess.CompletedProcess[bytes], code: int, *needles: str) -> str:
    line = clean_failure(result, code, *needles, secrets=(PASSWORD,))
    assert "Exception ignored" not in result.stderr.decode()
    return line


# -- stdin --------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [("get-credentials",), ()], ids=["get-credentials", "no-command"])
def test_a_closed_stdin_is_a_bad_request(ecrcred_bin, env, args):
    result = run(ecrcred_bin, env, b"", "<&-", args)
    failure(result, 3, "no request on stdin (stdin is closed)", "[BAD_REQUEST]")


def test_a_number_past_pythons_digit_limit_in_the_request_is_a_bad_request_saying_so(
        ecrcred_bin, env):
    raw = GOOD.rstrip()[:-1] + b', "n": ' + b"9" * 5000 + b"}\n"
    line = failure(run(ecrcred_bin, env, raw), 3, "a number of more than 4300 digits")
    assert "set_int_max_str_digits" not in line


# -- stdout -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("redirect", "needle"), [
    pytest.param(">&-", "cannot write the response: stdout is closed", id="closed"),
    pytest.param(">/dev/full", "cannot write the response on stdout: No space left on device",
                 id="full-device"),
])
def test_a_response_stdout_cannot_take_is_exit_74_naming_stdout(ecrcred_bin, env, redirect,
                                                                 needle):
    failure(run(ecrcred_bin, env, GOOD, redirect), 74, needle, "[STDOUT]")


def test_a_response_whose_reader_went_away_is_exit_74_with_no_python_noise(ecrcred_bin, env):
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = run_into(ecrcred_bin, env, write_end, timeout=30)
    finally:
        os.close(write_end)
    failure(result, 74, "cannot write the response on stdout: Broken pipe", "[STDOUT]")


@pytest.fixture
def full_pipe() -> Iterator[int]:
    """The write end of a pipe that is full and that nobody reads."""
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
        os.set_blocking(write_end, False)
        try:
            while True:
                os.write(write_end, b"x" * 4096)
        except BlockingIOError:
            pass
        os.set_blocking(write_end, True)  # as the child's stdout: a write must block
        yield write_end
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_response_nobody_reads_ends_at_the_timeout_instead_of_hanging(ecrcred_bin, env,
                                                                         full_pipe):
    # Regression: the response was written after the deadline was disarmed, so a full stdout
    # held the plugin until the kubelet's kill (here: the subprocess timeout fails the test).
    started = time.monotonic()
    result = run_into(ecrcred_bin, env, full_pipe, timeout=20,
                      args=("get-credentials", "--timeout", "1"))
    elapsed = time.monotonic() - started
    failure(result, 5, "the response could not be written on stdout within 1s", "[DEADLINE]")
    assert elapsed < 10


# -- stderr -------------------------------------------------------------------------------------

@pytest.mark.parametrize("redirect", ["2>&-", "2>/dev/full"], ids=["closed", "full-device"])
def test_with_stderr_closed_or_full_an_error_keeps_its_own_exit_code(ecrcred_bin, env,
                                                                     redirect):
    result = run(ecrcred_bin, env, BAD, redirect)
    assert (result.returncode, result.stdout, result.stderr) == (3, b"", b"")


@pytest.mark.parametrize("redirect", ["2>&-", "2>/dev/full"], ids=["closed", "full-device"])
def test_with_stderr_closed_or_full_a_request_is_still_answered(ecrcred_bin, env, redirect):
    result = run(ecrcred_bin, dict(env, ECRCRED_LOG_LEVEL="debug"), GOOD, redirect)
    assert result.returncode == 0
    check_response(result.stdout, request(f"{STATIC}/app"))


@pytest.mark.parametrize("redirect", [">&- 2>&-", ">/dev/full 2>/dev/full"],
                         ids=["both-closed", "both-full"])
def test_with_stdout_and_stderr_unusable_the_exit_code_still_says_stdout(ecrcred_bin, env,
                                                                         redirect):
    result = run(ecrcred_bin, env, GOOD, redirect)
    assert (result.returncode, result.stdout, result.stderr) == (74, b"", b"")


# -- timeouts -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["1e-7", "0.5", "nan", "inf", "56"])
def test_a_timeout_outside_1_to_55_seconds_is_a_usage_error_flag_or_env(ecrcred_bin, env,
                                                                        value):
    for result, origin in [
        (run(ecrcred_bin, env, GOOD, args=("get-credentials", f"--timeout={value}")),
         "flag --timeout"),
        (run(ecrcred_bin, dict(env, ECRCRED_TIMEOUT=value), GOOD), "env ECRCRED_TIMEOUT"),
    ]:
        failure(result, 2, f"timeout '{value}' (from {origin}) is not a number of seconds "
                "from 1 to 55", "[USAGE]")


@pytest.mark.parametrize("args", [
    pytest.param(("pull-sandbox", "--image", "a.io/p:1", "--timeout=1e-7"), id="sandbox-timeout"),
    pytest.param(("pull-sandbox", "--image", "a.io/p:1", "--watch", "--interval=nan"),
                 id="sandbox-interval"),
    pytest.param(("doctor", "--image", "a.io/p:1", "--timeout=inf"), id="doctor-timeout"),
])
def test_human_commands_refuse_seconds_outside_1_to_86400(ecrcred_bin, env, args):
    flag, value = args[-1].split("=")
    failure(run(ecrcred_bin, env, b"", args=args), 2,
            f"argument {flag}: '{value}' is not a number of seconds from 1 to 86400")


# -- the config ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "text"), [
    pytest.param("config.yaml", "registries: " + "[" * 500 + "]" * 500 + "\n", id="yaml"),
    pytest.param("config.json", '{"registries": ' + '{"a": ' * 500 + "}" * 500 + "}\n",
                 id="json"),
])
def test_a_config_nested_500_deep_is_a_config_error_naming_the_file(ecrcred_bin, env,
                                                                    tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    result = run(ecrcred_bin, dict(env, ECRCRED_CONFIG=str(path)), GOOD)
    failure(result, 4, f"config {path} is nested too deeply", "[BAD_CONFIG]")


def test_a_number_past_pythons_digit_limit_in_the_config_is_a_config_error_saying_so(
        ecrcred_bin, env, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.replace("robot", "9" * 5000))
    result = run(ecrcred_bin, dict(env, ECRCRED_CONFIG=str(path)), GOOD)
    line = failure(result, 4, f"config {path} holds a number of more than 4300 digits")
    assert "set_int_max_str_digits" not in line


# -- the request's image on stderr ---------------------------------------------------------------

def test_a_300_kb_host_gives_a_short_error_line(ecrcred_bin, env):
    result = run(ecrcred_bin, env, json.dumps(request("h" * 300_000 + "/app")).encode())
    line = failure(result, 1, "no credential source knows the registry of image hhhh",
                   "[NO_SOURCE]")
    assert len(result.stderr) < 1024, len(result.stderr)
    assert "h" * 1000 not in line


def test_an_image_with_terminal_escapes_and_a_newline_is_one_escaped_line(ecrcred_bin, env):
    result = run(ecrcred_bin, env, json.dumps(request("evil\x1b[2J\nfake.io/app")).encode())
    line = failure(result, 1, "image evil\\x1b[2J\\nfake.io/app", "[NO_SOURCE]")
    assert result.stderr.decode() == line + "\n"
    assert b"\x1b" not in result.stderr


def test_a_rule_error_that_names_the_requests_host_shows_it_bounded(
        ecrcred_bin, env, tmp_path):
    # A glob matched the host, so the router's error names the request's own text. (No
    # control character gets this far: the kubelet's matching refuses such a host.)
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG + '  - match: ["*.corp.example"]\n    ecr: {}\n')
    host = "h" * 300_000 + ".corp.example"
    result = run(ecrcred_bin, dict(env, ECRCRED_CONFIG=str(path)),
                 json.dumps(request(f"{host}/app")).encode())
    line = failure(result, 4, "registries[1] (ecr for *.corp.example) matches hhhh",
                   "which is not an ECR host name", "[BAD_CONFIG]")
    assert len(result.stderr) < 1024, len(result.stderr)
    assert "h" * 1000 not in line
