"""The CRI client: which endpoints it accepts, and how a runtime's gRPC errors become ours, against
a real gRPC server on a unix socket that answers a pull with a scripted status and text."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from ecrcred.cri._gen import cri_api_pb2_grpc
from ecrcred.cri.client import Auth, GrpcRuntime, check_endpoint, resolve_endpoint
from ecrcred.errors import PullError, RuntimeServiceError, UsageError

IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.9"
PASSWORD = "pull-password-Secret-42"


# -- endpoints ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("flag", "env", "expected"), [
    (None, {}, "unix:///run/containerd/containerd.sock"),
    ("/run/k3s/containerd/containerd.sock", {}, "unix:///run/k3s/containerd/containerd.sock"),
    (None, {"CONTAINER_RUNTIME_ENDPOINT": "unix:///var/run/crio/crio.sock"},
     "unix:///var/run/crio/crio.sock"),
    ("unix:///a.sock", {"CONTAINER_RUNTIME_ENDPOINT": "unix:///b.sock"}, "unix:///a.sock"),
])
def test_unix_sockets_and_plain_paths_are_accepted_as_endpoints(flag, env, expected):
    endpoint = resolve_endpoint(flag, env)
    assert endpoint == expected
    assert check_endpoint(endpoint) == expected


@pytest.mark.parametrize("endpoint", [
    "tcp://127.0.0.1:1234",  # crictl's syntax
    "http://127.0.0.1:1234",
    "127.0.0.1:1234",
    "dns:///containerd.example:1234",
    "npipe:////./pipe/containerd-containerd",
    "unix://run/containerd/containerd.sock",  # a relative path
    "unix://",
    "unix:///",
    "unix:/run/containerd/containerd.sock",
    "unix:///run/containerd/\x1b[2Jcontainerd.sock",
])
def test_any_other_endpoint_is_refused_in_one_line_saying_what_is_supported(endpoint):
    with pytest.raises(UsageError) as caught:
        check_endpoint(resolve_endpoint(endpoint, {}))
    line = caught.value.one_line()
    assert caught.value.exit_code == 2 and line.endswith("[BAD_ENDPOINT]")
    assert "only unix:// sockets (or an absolute path to one) are supported" in line
    assert "unix:///run/containerd/containerd.sock" in line
    assert "\x1b" not in line and "\n" not in line


def test_the_grpc_runtime_itself_refuses_a_tcp_endpoint():
    with pytest.raises(UsageError) as caught:
        GrpcRuntime("tcp://127.0.0.1:1234")
    assert caught.value.message.startswith("runtime endpoint tcp://127.0.0.1:1234: only unix://")


# -- a runtime that answers with errors ----------------------------------------------------------

class ScriptedImages(cri_api_pb2_grpc.ImageServiceServicer):
    """Answers every PullImage with ``status`` and ``text``, as containerd's errdefs would."""

    def __init__(self) -> None:
        self.status = grpc.StatusCode.UNKNOWN
        self.text = ""

    def PullImage(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(self.status, self.text)


@pytest.fixture
def runtime() -> Iterator[tuple[GrpcRuntime, ScriptedImages]]:
    # A short directory of our own: a unix socket path must stay under 108 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="ecri-", dir="/tmp"))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    images = ScriptedImages()
    cri_api_pb2_grpc.add_ImageServiceServicer_to_server(images, server)
    endpoint = f"unix://{workdir}/cri.sock"
    server.add_insecure_port(endpoint)
    server.start()
    client = GrpcRuntime(endpoint)
    try:
        yield client, images
    finally:
        client.close()
        server.stop(grace=None).wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


def pull_error(runtime: tuple[GrpcRuntime, ScriptedImages], status: grpc.StatusCode,
               text: str) -> RuntimeServiceError:
    client, images = runtime
    images.status, images.text = status, text
    with pytest.raises(RuntimeServiceError) as caught:
        client.pull_image(IMAGE, Auth("AWS", PASSWORD), timeout=10)
    return caught.value


@pytest.mark.parametrize(("status", "text"), [
    (grpc.StatusCode.INVALID_ARGUMENT, "no unpack platforms defined: invalid argument"),
    (grpc.StatusCode.FAILED_PRECONDITION,
     'failed to pull and unpack image: failed commit on ref "layer-sha256:0123": unexpected '
     "commit digest sha256:aaaa, expected sha256:bbbb: failed precondition"),
    (grpc.StatusCode.NOT_FOUND, f'failed to resolve reference "{IMAGE}": not found'),
    (grpc.StatusCode.UNKNOWN, "unexpected status: 401 Unauthorized"),
])
def test_a_pull_error_keeps_the_grpc_status_code_the_runtime_answered_with(runtime, status,
                                                                           text):
    error = pull_error(runtime, status, text)
    assert isinstance(error, PullError)
    assert error.status == status.name and error.code == f"PULL_{status.name}"
    assert error.detail == text
    assert error.exit_code == 7


def test_a_go_struct_dump_does_not_push_the_cause_out_of_the_bound(runtime):
    # containerd 2.1's words for an encrypted client key in hosts.toml (measured): Go's asn1
    # error prints two structs after the cause that matters.
    text = (f'failed to pull and unpack image "{IMAGE}": failed to resolve image: failed to '
            "load X509 key pair: tls: failed to parse private key: asn1: structure error: tags "
            "don't match (2 vs {class:0 tag:16 length:87 isCompound:true}) {optional:false "
            "explicit:false application:false private:false defaultValue:<nil> tag:<nil> "
            "stringType:0 timeType:0 set:false omitEmpty:false} int @2")
    error = pull_error(runtime, grpc.StatusCode.UNKNOWN, text)
    assert "failed to load X509 key pair: tls: failed to parse private key" in error.message
    assert "(2 vs {...}) {...} int @2" in error.message and "cut," not in error.message
    assert error.detail == text  # kept whole for reading


def test_the_runtimes_text_is_bounded_and_escaped_in_the_message_but_kept_whole_for_reading(
        runtime):
    text = "\x1b[2Jfailed to copy: " + "x" * 5000 + ": unexpected commit digest\n\x07"
    error = pull_error(runtime, grpc.StatusCode.FAILED_PRECONDITION, text)
    assert isinstance(error, PullError)
    assert "\x1b" not in error.one_line() and "\x07" not in error.one_line()
    assert "\\x1b[2Jfailed to copy: " in error.message  # what was being done, escaped
    assert len(error.message) < 400 and "(cut, 5048 chars)" in error.message
    # Go puts the root cause last: the middle goes, not the end
    assert error.message.endswith(": unexpected commit digest \\x07")  # newline: a space
    assert error.detail == " ".join(text.split())  # whole, for the keeper to read


def test_a_digest_mismatch_keeps_its_cause_in_the_message_with_the_digests_shortened(runtime):
    got, want = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    text = (f'failed to pull and unpack image "{IMAGE}": failed commit on ref '
            f'"manifest-{want}": unexpected commit digest {got}, expected {want}: failed '
            "precondition")
    error = pull_error(runtime, grpc.StatusCode.FAILED_PRECONDITION, text)
    assert error.message.endswith(
        f'could not pull {IMAGE}: failed commit on ref "manifest-sha256:bbbbbbbbbbbb...": '
        "unexpected commit digest sha256:aaaaaaaaaaaa..., expected sha256:bbbbbbbbbbbb...: "
        "failed precondition"), error.message
    assert isinstance(error, PullError) and error.detail == text


@pytest.mark.parametrize(("text", "said"), [
    (f'failed to resolve reference "{IMAGE}": {IMAGE}: not found',
     f'could not pull {IMAGE}: failed to resolve reference "(same)": (same): not found'),
    ('failed to resolve reference "x": unable to read CERT file "/etc/containerd/certs.d/'
     'registry.corp.example/client.pem": open /etc/containerd/certs.d/registry.corp.example/'
     "client.pem: no such file or directory",
     'unable to read CERT file "/etc/containerd/certs.d/registry.corp.example/client.pem": '
     "open (same): no such file or directory"),
])
def test_a_long_name_the_message_already_gave_is_not_quoted_again(runtime, text, said):
    error = pull_error(runtime, grpc.StatusCode.UNKNOWN, text)
    assert error.message.endswith(said), error.message


@pytest.mark.parametrize("status", [grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE])
def test_a_password_the_runtime_echoes_back_never_appears_in_the_error(runtime, status):
    error = pull_error(runtime, status, f"auth failed for AWS:{PASSWORD}: 401 Unauthorized")
    assert PASSWORD not in error.one_line() and PASSWORD not in getattr(error, "detail", "")
    assert "<redacted>" in error.message
    if status == grpc.StatusCode.UNAVAILABLE:
        assert error.code == "RUNTIME_UNREACHABLE"
