"""Faults of the registry and the runtime for ``ecrcred pull-sandbox``, one-shot and ``--watch``,
against a real containerd, the real TLS registry (behind ``FaultProxy`` where the registry
itself must misbehave) and moto's server as ECR (issue 7).

Already covered in ``tests/e2e/test_pull_sandbox.py`` and not repeated: 401 with wrong ECR
credentials, 401 with a wrong static password, a missing runtime socket, an invalid image
reference, a containerd restart between two deletions under ``--watch``. The table of all of
them is ``tests/faults/README.md``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import ECR, MOTO_PASSWORD, SANDBOX, cache_files, clean_failure
from tests.support.aws import wait_until
from tests.support.faultproxy import FaultProxy
from tests.support.kubelet import exec_provider, request
from tests.support.processes import Process
from tests.support.sandbox import images, pull_sandbox
from tests.support.stack import REGISTRY_PASSWORD
from tests.support.tls import make_server_cert

PINNED = "io.cri-containerd.pinned=pinned"


@pytest.fixture
def proxy(registry, containerd) -> Iterator[FaultProxy]:
    """The registry behind a fault-injecting proxy, which containerd now uses for the ECR host."""
    fp = FaultProxy(registry)
    try:
        containerd.add_mirror(ECR, fp)
        yield fp
    finally:
        fp.stop()


def pinned(containerd, image: str = SANDBOX) -> bool:
    for line in containerd.ctr("images", "ls", check=True).stdout.splitlines():
        if line.startswith(image + " "):
            return PINNED in line
    return False


def remove(containerd, image: str = SANDBOX) -> None:
    """Remove the image by its tag, as GC or an operator would (its content stays: the CRI
    keeps it under its other names, so a pull resolves the tag again but fetches no blob)."""
    containerd.ctr("images", "rm", image, check=True)


def pull_failure(result, code: int, *needles: str, secrets: tuple[str, ...] = ()) -> str:
    """pull-sandbox's failure contract: retries may be logged (info lines), then exactly one
    error line, last, with no traceback and no secret."""
    return clean_failure(result, code, *needles,
                         secrets=(MOTO_PASSWORD, REGISTRY_PASSWORD, *secrets))


# -- the registry answers no ----------------------------------------------------------------------

def test_a_cached_token_the_registry_refuses_is_replaced_once_and_the_pull_succeeds(
        ecrcred_bin, containerd, node_env, aws):
    # A token in the cache that the registry no longer takes (revoked, keys rotated).
    assert exec_provider(ecrcred_bin, request(f"{ECR}/x"), node_env).returncode == 0
    (path,) = Path(node_env["ECRCRED_CACHE_DIR"]).glob("*.json")
    doc = json.loads(path.read_text())
    doc.update(password="revoked-token-Secret", fetched_at=time.time() - 60,
               expires_at=time.time() + 3500)
    path.write_text(json.dumps(doc))
    aws.reset()
    result = pull_sandbox(ecrcred_bin, containerd, node_env)
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert "refused with a cached token; retrying once with a fresh one" in err
    assert aws.calls("GetAuthorizationToken") == 1
    assert SANDBOX in images(containerd) and pinned(containerd)
    assert cache_files(path.parent)[path.name]["password"] == MOTO_PASSWORD
    assert b"revoked-token-Secret" not in result.stdout + result.stderr


@pytest.mark.parametrize("reference", ["eks/pause:no-such-tag", "no/such-repository:3.9"],
                         ids=["tag", "repository"])
def test_an_image_the_registry_does_not_have_fails_at_once_with_exit_7(
        ecrcred_bin, containerd, node_env, aws, reference):
    # After a 404 from the mirror containerd would also ask the upstream (the real ECR name),
    # whose DNS lookup fails on this machine and would hide the 404; on a node that upstream is
    # ECR and answers 404 too. Here it may pull blobs but not resolve tags, as such a node sees.
    hosts = Path(containerd.certs_dir) / ECR / "hosts.toml"
    hosts.write_text(hosts.read_text().replace("\n\n[host", '\ncapabilities = ["pull"]\n\n[host',
                                               1))
    image = f"{ECR}/{reference}"
    started = time.monotonic()
    result = pull_sandbox(ecrcred_bin, containerd, node_env, "--image", image, "--timeout", "60")
    assert time.monotonic() - started < 30, "a 404 must not be retried until the deadline"
    line = pull_failure(result, 7, image, "not found", "account 123456789012",
                        "check that the image name and tag exist", "[PULL_NOT_FOUND]")
    assert "retrying in" not in result.stderr.decode()
    assert aws.calls("GetAuthorizationToken") <= 2, "at most one refresh of the token"
    assert image not in images(containerd)
    assert SANDBOX in line or reference in line


# -- the registry fails ---------------------------------------------------------------------------

def test_registry_5xx_and_dropped_connections_are_retried_until_the_pull_succeeds(
        ecrcred_bin, containerd, node_env, proxy):
    proxy.fault("/manifests/", method="HEAD", status=503, times=2)
    proxy.fault("/manifests/", method="HEAD", drop=True, times=1)
    proxy.fault("/blobs/", status=500, times=1)
    result = pull_sandbox(ecrcred_bin, containerd, node_env)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().startswith(f"pulled: {SANDBOX}")
    assert SANDBOX in images(containerd) and pinned(containerd)
    assert [s for _, _, s in proxy.requests("/manifests/", "HEAD")][:3] == [503, 503, 0]
    assert 500 in [s for _, _, s in proxy.requests("/blobs/")]
    assert "retrying" in result.stderr.decode()


def test_registry_5xx_that_persists_ends_at_the_timeout_with_the_last_error(
        ecrcred_bin, containerd, node_env, proxy):
    proxy.fault("/v2/", status=500, times=None)
    started = time.monotonic()
    result = pull_sandbox(ecrcred_bin, containerd, node_env, "--timeout", "5")
    elapsed = time.monotonic() - started
    pull_failure(result, 5, "did not succeed within 5s", "500 Internal Server Error",
                 "[DEADLINE]")
    assert 4 < elapsed < 25
    assert len(proxy.requests("/manifests/")) >= 2, "retried"
    assert SANDBOX not in images(containerd)


@pytest.mark.parametrize("ca", ["wrong", "missing"])
def test_a_tls_failure_to_the_registry_is_a_clear_error_naming_x509(
        ecrcred_bin, containerd, registry, node_env, tmp_path, ca):
    hosts = Path(containerd.certs_dir) / ECR / "hosts.toml"
    text = hosts.read_text()
    assert registry.cert_path in text
    if ca == "wrong":
        other = make_server_cert(tmp_path, "not-the-registry").cert  # not the registry's
        hosts.write_text(text.replace(registry.cert_path, other))
    else:
        hosts.write_text("\n".join(line for line in text.splitlines()
                                   if not line.strip().startswith("ca =")) + "\n")
    started = time.monotonic()
    result = pull_sandbox(ecrcred_bin, containerd, node_env, "--timeout", "4")
    # Retried (a CA written late at boot is fixed by waiting), then one error that says why.
    pull_failure(result, 5, "x509: certificate signed by unknown authority", "[DEADLINE]",
                 "set `ca` for this host in its hosts.toml")
    assert time.monotonic() - started < 25
    assert SANDBOX not in images(containerd)


# -- the runtime ----------------------------------------------------------------------------------

def test_a_stale_runtime_socket_with_nothing_behind_it_is_exit_6_at_once(ecrcred_bin, node_env,
                                                                         tmp_path):
    path = tmp_path / "containerd.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # the file stays after close, as after a containerd crash
    assert path.exists()
    started = time.monotonic()
    result = subprocess.run([ecrcred_bin, "pull-sandbox", "--image", SANDBOX,
                             "--runtime-endpoint", f"unix://{path}"], env=node_env,
                            capture_output=True, timeout=60, check=False)
    pull_failure(result, 6, str(path), "Connection refused", "is containerd running?",
                 "[RUNTIME_UNREACHABLE]")
    assert time.monotonic() - started < 10


def test_a_runtime_socket_that_never_answers_is_exit_6_within_the_call_timeout(
        ecrcred_bin, node_env, tmp_path):
    path = tmp_path / "mute.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        s.listen(8)  # connections queue up; nothing ever speaks HTTP/2 back
        started = time.monotonic()
        result = subprocess.run([ecrcred_bin, "pull-sandbox", "--image", SANDBOX,
                                 "--runtime-endpoint", f"unix://{path}"], env=node_env,
                                capture_output=True, timeout=60, check=False)
    pull_failure(result, 6, str(path), "DEADLINE_EXCEEDED", "[RUNTIME]")
    assert time.monotonic() - started < 30


def restart_when(proxy: FaultProxy, containerd, path: str, errors: list[BaseException],
                 ) -> threading.Thread:
    """Restart containerd as soon as the proxy holds a request for ``path``."""

    def run() -> None:
        try:
            if not proxy.wait_until_held(path, 30):
                raise AssertionError(f"no request for {path} reached the proxy")
            containerd.restart()
        except BaseException as e:  # reported by the test
            errors.append(e)

    thread = threading.Thread(target=run, name="restart-containerd", daemon=True)
    thread.start()
    return thread


def test_containerd_restarted_in_the_middle_of_a_pull_is_retried_and_the_image_lands_pinned(
        ecrcred_bin, containerd, node_env, proxy):
    # Every pull resolves the tag with a HEAD: hold it, so the pull is in flight inside
    # containerd when containerd goes away.
    proxy.fault("/manifests/", method="HEAD", delay=4, times=1)
    errors: list[BaseException] = []
    restarter = restart_when(proxy, containerd, "/manifests/", errors)
    result = pull_sandbox(ecrcred_bin, containerd, node_env)
    restarter.join(60)
    assert not restarter.is_alive() and not errors, errors
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert "cannot reach the container runtime" in err and "retrying" in err, err
    assert SANDBOX in images(containerd) and pinned(containerd)


# -- --watch ---------------------------------------------------------------------------------------

def start_watch(ecrcred_bin, containerd, env, log: Path, timeout: float) -> Process:
    """``pull-sandbox --watch`` (safety net every second), once it has pinned the image."""
    argv = [ecrcred_bin, "pull-sandbox", "--watch", "--interval", "1", "--timeout",
            str(timeout), "--containerd-config", containerd.config_path, "--runtime-endpoint",
            containerd.endpoint]
    watcher = Process(argv, str(log), env=env)
    try:
        watcher.wait_for(lambda: "pinned: " in log.read_text(), 60, "pull-sandbox --watch")
    except BaseException:
        watcher.stop()
        raise
    return watcher


@pytest.fixture
def watch(ecrcred_bin, containerd, node_env, tmp_path) -> Iterator[tuple[Process, Path]]:
    """A watcher whose pulls give up after 3 s, so an outage shows up as a failure quickly."""
    log = tmp_path / "watch.log"
    watcher = start_watch(ecrcred_bin, containerd, node_env, log, timeout=3)
    try:
        yield watcher, log
    finally:
        watcher.stop()


def stop_watch(watcher: Process) -> None:
    os.kill(watcher.pid, signal.SIGTERM)
    assert watcher.popen.wait(30) == 0, watcher.log_tail()
    assert "Traceback" not in Path(watcher.log_path).read_text()


def test_watch_reports_a_registry_outage_carries_on_and_restores_after_it(
        containerd, proxy, watch):
    watcher, log = watch
    proxy.fault("/v2/", status=503, times=None)
    remove(containerd)
    assert wait_until(lambda: "failed: " in log.read_text(), 30), watcher.log_tail()
    assert watcher.alive()
    assert SANDBOX not in images(containerd)
    failed = [line for line in log.read_text().splitlines() if line.startswith("failed: ")]
    assert "503 Service Unavailable" in failed[0] and "Traceback" not in log.read_text()
    proxy.clear()  # the registry is back: the next periodic check restores the image
    assert wait_until(lambda: SANDBOX in images(containerd), 30), watcher.log_tail()
    assert wait_until(lambda: pinned(containerd), 10), watcher.log_tail()
    stop_watch(watcher)


def test_watch_survives_containerd_down_for_seconds_and_restores_after(containerd, watch):
    watcher, log = watch
    containerd.process.stop()  # down, not just restarted
    time.sleep(4)
    assert watcher.alive(), watcher.log_tail()
    assert "cannot reach the container runtime" in log.read_text()
    containerd.start()
    subscribed = log.read_text().count("(subscribed")
    assert wait_until(lambda: log.read_text().count("(subscribed") > subscribed, 30), \
        watcher.log_tail()
    remove(containerd)
    assert wait_until(lambda: SANDBOX in images(containerd), 15), watcher.log_tail()
    assert wait_until(lambda: pinned(containerd), 10), watcher.log_tail()
    stop_watch(watcher)


def test_watch_restores_the_image_when_containerd_restarts_in_the_middle_of_its_pull(
        containerd, proxy, watch):
    watcher, log = watch
    proxy.fault("/manifests/", method="HEAD", delay=4, times=1)
    errors: list[BaseException] = []
    restarter = restart_when(proxy, containerd, "/manifests/", errors)
    remove(containerd)
    restarter.join(60)
    assert not restarter.is_alive() and not errors, errors
    # The pull for the deletion lost its runtime, was retried, and put the image back (the
    # line comes after the pin: wait for it, do not race it); the event stream broke too and
    # was resubscribed.
    assert wait_until(lambda: f"pulled: {SANDBOX} (image deleted" in log.read_text(), 60), \
        watcher.log_tail()
    assert SANDBOX in images(containerd)
    assert "failed (attempt 1, cannot reach the container runtime" in log.read_text()
    assert wait_until(lambda: log.read_text().count("(subscribed") >= 2, 30), watcher.log_tail()
    assert wait_until(lambda: pinned(containerd), 15), watcher.log_tail()
    assert watcher.alive()
    stop_watch(watcher)


def test_sigterm_during_pull_retries_under_watch_exits_0_promptly(
        ecrcred_bin, containerd, node_env, proxy, tmp_path):
    log = tmp_path / "watch.log"
    # Pulls may retry for 120 s; SIGTERM must end the retries at once, not at that deadline.
    watcher = start_watch(ecrcred_bin, containerd, node_env, log, timeout=120)
    try:
        proxy.fault("/v2/", status=503, times=None)
        remove(containerd)
        assert wait_until(lambda: "retrying in" in log.read_text(), 30), watcher.log_tail()
        started = time.monotonic()
        stop_watch(watcher)
        assert time.monotonic() - started < 15
    finally:
        watcher.stop()


def test_the_fault_proxy_passes_a_clean_pull_through_unchanged(ecrcred_bin, containerd,
                                                              node_env, proxy):
    # The proxy itself must not be the fault: with no rule, the pull is an ordinary one.
    result = pull_sandbox(ecrcred_bin, containerd, node_env)
    assert result.returncode == 0, result.stderr.decode()
    assert {s for _, _, s in proxy.seen} <= {200, 401}
    assert SANDBOX in images(containerd) and pinned(containerd)
