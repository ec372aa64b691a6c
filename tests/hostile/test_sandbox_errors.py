"""``ecrcred pull-sandbox`` meets errors no retry fixes, against a real containerd, the real TLS
registry (behind a proxy that serves other bytes where the content must be corrupt) and moto's
server as ECR: each fails at the first attempt with one line that says what to do, fetches no
token it does not need, and an endpoint that is not a unix socket is never dialled.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.conftest import clean_failure
from tests.support.faultproxy import FaultProxy
from tests.support.kubelet import exec_provider, request
from tests.support.registry import Registry
from tests.support.sandbox import images, pull_sandbox
from tests.support.stack import ECR_HOST, REGISTRY_PASSWORD, SANDBOX_IMAGE


def pull_failure(result, code: int, *needles: str) -> str:
    return clean_failure(result, code, *needles, secrets=(REGISTRY_PASSWORD,))


# -- the registry does not have the image ---------------------------------------------------------

def test_a_tag_the_registry_does_not_have_fails_at_once_without_fetching_a_new_token(
        ecrcred_bin, containerd, node_env, aws):
    # After a 404 from the mirror containerd would also ask the upstream (the real ECR name),
    # whose DNS lookup fails here and would hide the 404: it may pull blobs but not resolve.
    hosts = Path(containerd.certs_dir) / ECR_HOST / "hosts.toml"
    hosts.write_text(hosts.read_text().replace("\n\n[host", '\ncapabilities = ["pull"]\n\n[host',
                                               1))
    # A token in the cache, as on a node where the kubelet asked for it moments ago.
    assert exec_provider(ecrcred_bin, request(f"{ECR_HOST}/x"), node_env).returncode == 0
    aws.reset()
    image = f"{ECR_HOST}/eks/pause:no-such-tag"
    started = time.monotonic()
    result = pull_sandbox(ecrcred_bin, containerd, node_env, "--image", image, "--timeout", "60")
    assert time.monotonic() - started < 30, "a 404 must not be retried until the deadline"
    pull_failure(result, 7, f"the registry has no {image}: its repository or tag does not "
                 "exist there", "account 123456789012", "[PULL_NOT_FOUND]")
    err = result.stderr.decode()
    assert "cached token" not in err and "retrying" not in err, err
    assert aws.calls("GetAuthorizationToken") == 0, "a new token cannot create a missing tag"


# -- content that does not match its digest -------------------------------------------------------

class CorruptingProxy(FaultProxy):
    """The registry behind a proxy that flips one byte of every successful GET whose path
    contains ``corrupt``: the length stays, the digest no longer matches."""

    def __init__(self, registry: Registry, corrupt: str) -> None:
        self.corrupt = corrupt
        super().__init__(registry)

    def forward(self, method: str, path: str, headers: list[tuple[str, str]],
                body: bytes | None) -> tuple[int, str, list[tuple[str, str]], bytes]:
        status, reason, answer_headers, data = super().forward(method, path, headers, body)
        if method == "GET" and self.corrupt in path and status == 200 and data:
            data = data[:-1] + bytes([data[-1] ^ 0x01])
        return status, reason, answer_headers, data


@pytest.fixture
def corrupting_proxy(registry, containerd) -> Iterator[CorruptingProxy]:
    proxy = CorruptingProxy(registry, corrupt="/manifests/sha256:")
    try:
        containerd.add_mirror(ECR_HOST, proxy)
        yield proxy
    finally:
        proxy.stop()


def test_content_that_does_not_match_its_digest_fails_at_the_first_attempt_with_a_hint(
        ecrcred_bin, containerd, node_env, corrupting_proxy):
    started = time.monotonic()
    result = pull_sandbox(ecrcred_bin, containerd, node_env, "--timeout", "60")
    assert time.monotonic() - started < 30, "a digest mismatch must not be retried"
    pull_failure(result, 7, "unexpected commit digest", "does not match its digest",
                 "check the mirrors in containerd's hosts.toml")
    assert "retrying" not in result.stderr.decode()
    # one attempt: the manifest fetched (and served corrupt) once; a 401 is the auth challenge
    served = [s for _, _, s in corrupting_proxy.requests("/manifests/sha256:", "GET")]
    assert served.count(200) == 1, served
    assert SANDBOX_IMAGE not in images(containerd)


# -- endpoints that are not a unix socket ----------------------------------------------------------

@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port on 127.0.0.1 that accepts nothing: a connection attempt shows as readable."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


def dialled(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0.2)
    return bool(readable)


@pytest.mark.parametrize("form", ["tcp://{}", "http://{}", "{}"])
@pytest.mark.parametrize("via", ["flag", "environment"])
def test_an_endpoint_that_is_not_a_unix_socket_fails_at_once_and_is_never_dialled(
        ecrcred_bin, node_env, listener, form, via):
    endpoint = form.format(f"127.0.0.1:{listener.getsockname()[1]}")
    argv = [ecrcred_bin, "pull-sandbox", "--image", SANDBOX_IMAGE]
    env = dict(node_env)
    if via == "flag":
        argv += ["--runtime-endpoint", endpoint]
    else:
        env["CONTAINER_RUNTIME_ENDPOINT"] = endpoint
    started = time.monotonic()
    result = subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False)
    assert time.monotonic() - started < 15
    line = clean_failure(result, 2, f"runtime endpoint {endpoint}: only unix:// sockets (or an "
                         "absolute path to one) are supported",
                         "containerd's CRI listens on unix:///run/containerd/containerd.sock",
                         "[BAD_ENDPOINT]")
    assert "is containerd running" not in line and "Misformatted" not in line
    assert not dialled(listener), "the endpoint was dialled"


def test_doctor_reports_an_endpoint_that_is_not_a_unix_socket_as_a_failed_cri_check(
        ecrcred_bin, node_env, listener):
    endpoint = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    result = subprocess.run(
        [ecrcred_bin, "doctor", "--output", "json", "--image", SANDBOX_IMAGE,
         "--runtime-endpoint", endpoint, "--containerd-config", "/nonexistent/config.toml",
         "--skip", "credentials", "--skip", "kubelet", "--skip", "registry",
         "--skip", "environment"],
        env=node_env, capture_output=True, timeout=60, check=False)
    err = result.stderr.decode()
    assert "Traceback" not in err and result.returncode == 1, err
    checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
    cri = checks["runtime.cri"]
    assert cri["status"] == "fail", cri
    assert f"runtime endpoint {endpoint}: only unix:// sockets" in cri["message"], cri
    assert "unix:///run/containerd/containerd.sock" in cri["fix"], cri
    assert not dialled(listener), "the endpoint was dialled"
