"""``ecrcred pull-sandbox`` against a real containerd (1.6, 1.7 and 2.1: each test with one runs
once per generation), a real registry that demands credentials (behind an ECR host name through
a hosts.toml mirror) and moto's server as ECR."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.aws import wait_until
from tests.support.processes import Process
from tests.support.sandbox import images, pull_sandbox, static_rule

ECR_HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
SANDBOX = f"{ECR_HOST}/eks/pause:3.9"
# every test with a containerd runs against each generation (tests/conftest.py)
CONTAINERD_GENERATIONS = ("1.6", "1.7", "2.1")


def pinned_label(containerd) -> str | None:
    out = containerd.ctr("images", "ls", check=True).stdout
    text = out.decode() if isinstance(out, bytes) else out
    for line in text.splitlines():
        if line.startswith(SANDBOX + " "):
            return "io.cri-containerd.pinned=pinned" if "io.cri-containerd.pinned=pinned" in line \
                else "unpinned"
    return None


def test_boot_pull_with_ecr_credentials_pulls_and_pins(ecrcred_bin, containerd, node_env, aws):
    assert SANDBOX not in images(containerd)
    result = pull_sandbox(ecrcred_bin, containerd, node_env)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith(f"pulled: {SANDBOX} (requested,"), lines
    # 1.7 and 2.x label the sandbox image pinned as their CRI pulls it: nothing left to pin
    pinned = "already-pinned" if containerd.runtime.pins_sandbox else "pinned"
    assert lines[1].startswith(f"{pinned}: {SANDBOX}"), lines
    assert SANDBOX in images(containerd)
    assert pinned_label(containerd) == "io.cri-containerd.pinned=pinned"
    assert aws.calls("GetAuthorizationToken") == 1
    assert b"123456789012-auth-token" not in result.stdout + result.stderr


def test_custom_registry_with_static_credentials_pulls_without_aws(
        ecrcred_bin, containerd, registry, node_env, aws, tmp_path):
    from tests.support.stack import REGISTRY_PASSWORD, REGISTRY_USER

    host = "registry.corp.example"
    containerd.add_mirror(host, registry)
    env = {**node_env, **static_rule(tmp_path, [host])}
    secret = tmp_path / "registry.password"
    image = f"{host}/eks/pause:3.9"
    result = pull_sandbox(ecrcred_bin, containerd, env, "--image", image)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith(f"pulled: {image} (requested,"), lines
    assert image in images(containerd)
    assert aws.calls("GetAuthorizationToken") == 0
    assert REGISTRY_PASSWORD.encode() not in result.stdout + result.stderr

    # The same rule with a wrong password fails at once, naming the user and the file.
    secret.write_text("not-the-password\n")
    containerd.ctr("images", "rm", image, check=True)
    result = pull_sandbox(ecrcred_bin, containerd, env, "--image", image)
    assert result.returncode == 7, result.stderr.decode()
    err = result.stderr.decode()
    assert f"user {REGISTRY_USER}" in err and str(secret) in err, err
    assert "not-the-password" not in err


def test_image_already_present_needs_no_credentials(ecrcred_bin, containerd, node_env, aws):
    assert pull_sandbox(ecrcred_bin, containerd, node_env).returncode == 0
    aws.reset()
    # No way to reach AWS at all, and no cache: the fast path must not need credentials.
    offline = dict(node_env, AWS_ENDPOINT_URL_ECR="http://127.0.0.1:9",
                   ECRCRED_CACHE_DIR="/dev/null/x")
    result = pull_sandbox(ecrcred_bin, containerd, offline, "--output", "json")
    assert result.returncode == 0, result.stderr.decode()
    actions = [json.loads(line)["action"] for line in result.stdout.decode().splitlines()]
    assert actions == ["present", "already-pinned"]
    assert aws.calls("GetAuthorizationToken") == 0


def test_wrong_credentials_fail_at_once_naming_them(ecrcred_bin, containerd, node_env, aws):
    import base64

    bad = base64.b64encode(b"AWS:not-the-right-password").decode()
    aws.fault(body={"authorizationData": [{"authorizationToken": bad,
                                           "expiresAt": time.time() + 43200}]}, times=5)
    started = time.monotonic()
    result = pull_sandbox(ecrcred_bin, containerd, node_env, "--timeout", "60")
    assert time.monotonic() - started < 30, "a 401 must not be retried until the deadline"
    assert result.returncode == 7, result.stderr.decode()
    assert result.stdout == b""
    err = result.stderr.decode()
    assert "401" in err or "nauthorized" in err, err
    assert ECR_HOST in err and "account 123456789012" in err
    assert "not-the-right-password" not in err
    assert "Traceback" not in err
    assert SANDBOX not in images(containerd)


def test_missing_runtime_socket_is_a_clear_error(ecrcred_bin, containerd, node_env, tmp_path):
    result = subprocess.run(
        [ecrcred_bin, "pull-sandbox", "--image", SANDBOX, "--runtime-endpoint",
         f"unix://{tmp_path}/no.sock"], env=node_env, capture_output=True, timeout=60,
        check=False)
    assert result.returncode == 6, result.stderr.decode()
    err = result.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err and "RUNTIME_UNREACHABLE" in err


def test_sandbox_image_comes_from_containerd_config_or_an_error_lists_where_it_looked(
        ecrcred_bin, node_env, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n')
    result = subprocess.run([ecrcred_bin, "pull-sandbox", "--containerd-config", str(config)],
                            env=node_env, capture_output=True, timeout=60, check=False)
    assert result.returncode == 4
    err = result.stderr.decode()
    assert "sandbox_image" in err and "pinned_images.sandbox" in err and str(config) in err


def start_watch(binary, containerd, env, log: Path) -> Process:
    argv = [binary, "pull-sandbox", "--watch", "--interval", "30", "--containerd-config",
            containerd.config_path, "--runtime-endpoint", containerd.endpoint]
    return Process(argv, str(log), env=env)


def test_watch_restores_the_image_after_deletion_and_survives_a_containerd_restart(
        ecrcred_bin, containerd, node_env, tmp_path):
    log = tmp_path / "watch.log"
    watcher = start_watch(ecrcred_bin, containerd, dict(node_env, ECRCRED_LOG_LEVEL="debug"),
                          log)
    try:
        watcher.wait_for(lambda: "pinned: " in log.read_text(), 30, "pull-sandbox --watch")
        for round_ in range(2):
            containerd.ctr("images", "rm", SANDBOX, check=True)
            deleted = time.monotonic()
            assert wait_until(lambda: SANDBOX in images(containerd), 10), watcher.log_tail()
            restored = time.monotonic() - deleted
            print(f"round {round_}: restored {restored:.3f}s after deletion")
            assert restored < 5
            if round_ == 0:
                containerd.restart()
                # the watcher resubscribes and reconciles on its own
                assert wait_until(lambda: log.read_text().count("(subscribed") >= 2, 15), \
                    watcher.log_tail()
        # the pin follows the pull by a few milliseconds: wait for it, do not race it
        assert wait_until(
            lambda: pinned_label(containerd) == "io.cri-containerd.pinned=pinned", 5), \
            watcher.log_tail()
        os.kill(watcher.pid, signal.SIGTERM)
        assert watcher.popen.wait(10) == 0
    finally:
        watcher.stop()


@pytest.mark.parametrize("image", ["Foo Bar", "registry.io/UPPER/case:1", "x@sha256:nothex"])
def test_invalid_image_reference_is_a_config_error_not_a_crash(ecrcred_bin, node_env, image,
                                                               tmp_path):
    result = subprocess.run(
        [ecrcred_bin, "pull-sandbox", "--image", image, "--runtime-endpoint",
         f"unix://{tmp_path}/no.sock"], env=node_env, capture_output=True, timeout=60,
        check=False)
    assert result.returncode == 4, result.stderr.decode()
    err = result.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "not a valid image reference" in err
