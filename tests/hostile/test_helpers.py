"""Docker credential helpers as hostile programs, through ``ecrcred get-credentials`` exec'd as
the kubelet execs it: a helper that prints a token in its error, one that answers something that
is not the protocol, a docker config that names a "helper" with a path in it, and helpers that
leave a process behind in a session of its own (``setsid``, a double fork).

Each helper is a small shell script on the PATH the kubelet passes (the config file's
``credentialHelper`` rule names it, as tests/integration/test_config_sources.py does for the
test helper). Whatever a helper printed must never reach stderr, at any log level; a bad helper
name is one named line, never a crash; and nothing a helper started outlives ecrcred.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.conftest import clean_failure, warnings
from tests.support.kubelet import check_response, exec_provider, request

HOST = "gcr.example.com"
IMAGE = f"{HOST}/project/app:1"
REFRESH_TOKEN = "rt-SECRETVALUE-0d1e2f"  # what a leaky helper prints
PASSWORD = "hunter2-long"
# How a run may ask for debug lines: none, the flag, the environment.
LOUDNESS = {"quiet": ((), {}), "-v": (("-v",), {}),
            "debug-env": ((), {"ECRCRED_LOG_LEVEL": "debug"})}


def write_config(directory: Path, registries: list[dict[str, object]]) -> Path:
    path = directory / "ecrcred.yaml"
    path.write_text(json.dumps({"apiVersion": "ecrcred.io/v1alpha1", "kind": "EcrcredConfig",
                                "registries": registries}))
    return path


def install_helper(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


@pytest.fixture
def node(kubelet_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The kubelet's environment with a helper directory first on PATH and a config file."""
    write_config(tmp_path, [])
    return {**kubelet_env, "PATH": f"{tmp_path / 'bin'}:{kubelet_env['PATH']}",
            "ECRCRED_CONFIG": str(tmp_path / "ecrcred.yaml")}


def get(ecrcred_bin: str, env: dict[str, str], loudness: str = "quiet", image: str = IMAGE,
        timeout: float = 60):
    flags, extra = LOUDNESS[loudness]
    return exec_provider(ecrcred_bin, request(image), {**env, **extra},
                         args=("get-credentials", *flags), timeout=timeout)


# -- what a helper prints is never repeated -----------------------------------------------------

FAILED = f"docker-credential-leaky exited with status 1 for {HOST} (its output is not shown"
NOT_JSON = f"docker-credential-leaky answered for {HOST} with something other than a JSON object"
LEAKY = {
    # An error line that carries the token it failed to refresh.
    "token-on-stderr": (f"echo 'error: refresh token {REFRESH_TOKEN} was rejected' >&2\n"
                        "exit 1\n", FAILED, "HELPER_FAILED"),
    # No stderr at all, the stored secret on stdout, and a failure.
    "secret-on-stdout": (f"echo 'Secret: {PASSWORD}'\nexit 1\n", FAILED, "HELPER_FAILED"),
    # The same, with a success status: not the protocol's JSON.
    "secret-as-answer": (f"echo 'Username: robot Secret: {PASSWORD}'\n",
                         NOT_JSON, "HELPER_BAD_ANSWER"),
    # JSON with the secret but no Username.
    "json-without-username": (f"echo '{{\"ServerURL\": \"{HOST}\", \"Secret\": "
                              f"\"{PASSWORD}\"}}'\n", NOT_JSON, "HELPER_BAD_ANSWER"),
}


@pytest.mark.parametrize("loudness", sorted(LOUDNESS))
@pytest.mark.parametrize("behaviour", sorted(LEAKY))
def test_what_a_helper_printed_never_reaches_stderr_at_any_log_level(
        ecrcred_bin: str, node: dict[str, str], tmp_path: Path, behaviour: str,
        loudness: str) -> None:
    body, what, code = LEAKY[behaviour]
    helper = install_helper(tmp_path / "bin", "leaky", body)
    write_config(tmp_path, [{"match": [HOST], "credentialHelper": {"name": "leaky"}}])

    result = get(ecrcred_bin, node, loudness)

    line = clean_failure(result, 1, what, f"[{code}]",
                         secrets=(REFRESH_TOKEN, PASSWORD, "refresh token", "Secret:",
                                  "Username: robot"))
    if code == "HELPER_FAILED":  # how to see the helper's own message
        assert f"run 'echo {HOST} | {helper} get' on the node" in line
    assert (loudness == "quiet") == ("ecrcred: debug: " not in result.stderr.decode())


# -- helper names from a docker config -----------------------------------------------------------

@pytest.mark.parametrize("field", ["credsStore", "credHelpers"])
@pytest.mark.parametrize(("name", "problem"), [
    ("../../tmp/evil", "it contains '/'"),
    ("a/b", "it contains '/'"),
    ("-rf", "it starts with '-'"),
    (".hidden", "it starts with '.'"),
    ("desk\x00top", "it contains '\\x00'"),
    ("x" * 300, "it is longer than"),
])
def test_a_docker_config_naming_a_helper_by_path_is_skipped_with_a_named_warning(
        ecrcred_bin: str, node: dict[str, str], tmp_path: Path, field: str, name: str,
        problem: str) -> None:
    docker_config = tmp_path / "docker.json"
    value: object = name if field == "credsStore" else {HOST: name}
    docker_config.write_text(json.dumps({field: value}))
    docker_config.chmod(0o600)
    write_config(tmp_path, [{"match": [HOST], "dockerConfig": {"paths": [str(docker_config)]}}])

    result = get(ecrcred_bin, node, "-v")

    # As any unusable docker config: named, skipped, and the search goes on (here, to nothing).
    clean_failure(result, 1, HOST)
    [warning] = warnings(result, str(docker_config))
    assert f'"{field}' in warning
    assert f"not a usable helper name ({problem}" in warning
    assert f"{docker_config} (invalid: " in result.stderr.decode()
    assert name not in result.stderr.decode()


def test_a_docker_config_with_a_plain_helper_name_still_runs_it(
        ecrcred_bin: str, node: dict[str, str], tmp_path: Path) -> None:
    install_helper(tmp_path / "bin", "desktop",
                   f'echo \'{{"Username": "robot", "Secret": "{PASSWORD}"}}\'\n')
    docker_config = tmp_path / "docker.json"
    docker_config.write_text(json.dumps({"credsStore": "desktop"}))
    docker_config.chmod(0o600)
    write_config(tmp_path, [{"match": [HOST], "dockerConfig": {"paths": [str(docker_config)]}}])

    result = get(ecrcred_bin, node)

    assert result.returncode == 0, result.stderr.decode()
    doc = check_response(result.stdout, request(IMAGE))
    assert doc["auth"] == {HOST: {"username": "robot", "password": PASSWORD}}


# -- nothing a helper started outlives ecrcred ------------------------------------------------

LEAVES_BEHIND = """
# A grandchild in a session (and process group) of its own, which writes its pid and then sleeps
# for minutes: the process-group kill cannot reach it.
{start} sh -c 'echo $$ > "{pidfile}.tmp" && mv "{pidfile}.tmp" "{pidfile}" && exec sleep 300' \\
    </dev/null >/dev/null 2>&1 {end}
while [ ! -s "{pidfile}" ]; do sleep 0.01; done
{then}
"""
ESCAPES = {"setsid": ("setsid", "&"), "double-fork": ("( setsid", "& )")}
ANSWER = f'echo \'{{"Username": "robot", "Secret": "{PASSWORD}"}}\''


def is_the_sleep(pid: int) -> bool:
    """Whether ``pid`` is still the grandchild: a live (not zombie) ``sleep``."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return comm == "sleep" and state not in ("Z", "X")


@pytest.fixture
def pidfile(tmp_path: Path) -> Iterator[Path]:
    """Where the grandchild writes its pid; it is killed afterwards if the test let it live."""
    path = tmp_path / "grandchild.pid"
    yield path
    if path.exists() and is_the_sleep(int(path.read_text())):
        os.kill(int(path.read_text()), signal.SIGKILL)


@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_a_grandchild_in_its_own_session_dies_when_the_helper_has_answered(
        ecrcred_bin: str, node: dict[str, str], tmp_path: Path, pidfile: Path,
        escape: str) -> None:
    start, end = ESCAPES[escape]
    install_helper(tmp_path / "bin", "leaves-behind", LEAVES_BEHIND.format(
        start=start, end=end, pidfile=pidfile, then=ANSWER))
    write_config(tmp_path, [{"match": [HOST], "credentialHelper": {"name": "leaves-behind"}}])

    result = get(ecrcred_bin, node, "-v")

    assert result.returncode == 0, result.stderr.decode()
    assert check_response(result.stdout, request(IMAGE))["auth"][HOST]["password"] == PASSWORD
    assert pidfile.exists(), "the helper did not start its grandchild"
    assert not is_the_sleep(int(pidfile.read_text())), "the grandchild outlived ecrcred"
    assert ("killed 1 process(es) that docker-credential-leaves-behind left behind"
            in result.stderr.decode())


@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_a_grandchild_in_its_own_session_dies_when_the_helper_times_out(
        ecrcred_bin: str, node: dict[str, str], tmp_path: Path, pidfile: Path,
        escape: str) -> None:
    start, end = ESCAPES[escape]
    install_helper(tmp_path / "bin", "leaves-behind", LEAVES_BEHIND.format(
        start=start, end=end, pidfile=pidfile, then="exec sleep 300"))
    write_config(tmp_path, [{"match": [HOST], "credentialHelper": {"name": "leaves-behind",
                                                                   "timeout": "1s"}}])

    result = get(ecrcred_bin, node, timeout=30)

    clean_failure(result, 1, "docker-credential-leaves-behind did not answer within 1s",
                  "[HELPER_TIMEOUT]")
    assert pidfile.exists(), "the helper did not start its grandchild"
    assert not is_the_sleep(int(pidfile.read_text())), "the grandchild outlived ecrcred"
