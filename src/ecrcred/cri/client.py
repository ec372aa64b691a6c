"""The container runtime over gRPC: the CRI ImageService, and containerd's images and events.

Two seams (their Protocols are in ``seams.py``), so that the sandbox keeper is tested with
fakes and works with any runtime:

- ``ImageService``: the CRI (any runtime: containerd, CRI-O, cri-dockerd). Pulling through the
  CRI is what makes containerd apply its registry config (hosts.toml mirrors), unlike ``ctr``.
- ``ContainerdImages``: containerd's own API on the same socket, namespace ``k8s.io``: the pin
  label (``io.cri-containerd.pinned=pinned``) and the ``/images/delete`` event stream.

``GrpcRuntime`` implements both, and doctor's ``Runtime``; grpc errors become
``RuntimeServiceError`` / ``PullError`` that name the endpoint and say what to check, quoting the
runtime's text bounded and escaped, and a
``PullError`` keeps the gRPC status code so that the keeper can tell a refusal from a broken
image. Credentials passed to a pull never appear in an error. The only endpoints are unix
sockets: a pull carries registry credentials, and a plain TCP endpoint would send them over the
network in clear (containerd's CRI listens on its unix socket anyway).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from ecrcred.errors import PullError, RuntimeServiceError, UsageError
from ecrcred.log import MAX_QUOTED, quote_untrusted

if TYPE_CHECKING:
    from ecrcred.seams import EventStream

DEFAULT_ENDPOINT = "unix:///run/containerd/containerd.sock"
NAMESPACE = "k8s.io"
PINNED_LABEL = "io.cri-containerd.pinned"
PINNED_VALUE = "pinned"
DELETE_TOPIC = "/images/delete"
_IMAGE_DELETE = "containerd.services.images.v1.ImageDelete"


class ImageInfo(NamedTuple):
    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int
    pinned: bool


class RuntimeVersion(NamedTuple):
    name: str  # e.g. "containerd"
    version: str  # e.g. "1.6.20~ds1"
    api_version: str  # e.g. "v1"


class Auth(NamedTuple):
    username: str
    password: str

    def __repr__(self) -> str:
        return f"Auth(username={self.username!r}, password=<redacted>)"


def resolve_endpoint(flag: str | None, env: Mapping[str, str]) -> str:
    """``--runtime-endpoint``, else ``CONTAINER_RUNTIME_ENDPOINT``, else containerd's socket;
    a bare path is a socket. ``GrpcRuntime`` refuses what is not one (``check_endpoint``)."""
    endpoint = flag or env.get("CONTAINER_RUNTIME_ENDPOINT") or DEFAULT_ENDPOINT
    if endpoint.startswith("/"):
        endpoint = "unix://" + endpoint
    return endpoint


def check_endpoint(endpoint: str) -> str:
    """``endpoint`` if it is ``unix://`` and an absolute path; else a one-line error that says
    what is supported. gRPC would take ``tcp://host:port`` (crictl's syntax) as a DNS name and
    fail as a runtime that is not running, which sends the operator to the wrong place."""
    path = _socket_path(endpoint)
    if path is None or not path.startswith("/") or path == "/" or not path.isprintable():
        raise UsageError(
            f"runtime endpoint {quote_untrusted(endpoint)}: only unix:// sockets (or an "
            "absolute path to one) are supported",
            hint="set --runtime-endpoint or CONTAINER_RUNTIME_ENDPOINT to the runtime's socket; "
            f"containerd's CRI listens on {DEFAULT_ENDPOINT}",
            code="BAD_ENDPOINT")
    return endpoint


# A digest, shortened to its first 12 hex digits as docker and crictl show them: a digest
# mismatch names three of 71 characters each, which would fill the bounded quote on their own.
_DIGEST = re.compile(r"\b(sha(?:256|384|512):[0-9a-f]{12})[0-9a-f]{20,}\b")
# A long name (a path, a reference, an address) that Go's errors tend to repeat: "unable to read
# CERT file "<path>": open <path>: ...", "failed to resolve reference "<image>": <image>: ...".
_LONG_NAME = re.compile(r"[^\s\"']{20,}")
# A Go value printed with %+v, "{optional:false explicit:false ... omitEmpty:false}": what
# containerd 2.x (Go's encoding/asn1) appends to "failed to load X509 key pair: ...". Its
# fields say nothing to a node's operator and would push the cause out of the bound.
_GO_STRUCT = re.compile(r"\{(?:\w+:[^\s{}]*\s?){2,}\}")


def _quote_runtime(text: str, *stated: str) -> str:
    """The runtime's text for one of our messages: bounded and escaped (``quote_untrusted``).
    So that the bound keeps what went wrong, a long name our message ``stated`` already or the
    text said before becomes "(same)", digests are shortened and Go struct dumps become "{...}".
    Go joins an error's causes with ": ", the root cause last ("x509: ...", "connection
    refused", "unexpected commit digest ..."): a text still too long loses its middle, not its
    end."""
    seen = set(stated)

    def once(match: re.Match[str]) -> str:
        name = match.group(0)
        core = name.rstrip(":,;")
        if core in seen:
            return "(same)" + name[len(core):]
        seen.add(core)
        return name

    text = _DIGEST.sub(r"\1...", _LONG_NAME.sub(once, _GO_STRUCT.sub("{...}", text)))
    if len(text) <= MAX_QUOTED:
        return quote_untrusted(text)
    head = MAX_QUOTED // 4
    return (f"{quote_untrusted(text[:head])} ...(cut, {len(text)} chars)... "
            f"{quote_untrusted(text[-(MAX_QUOTED - head):])}")


def _socket_path(endpoint: str) -> str | None:
    if endpoint.startswith("unix://"):
        return endpoint[len("unix://"):]
    return None


class GrpcRuntime:
    """Both seams over one gRPC channel to the runtime's socket."""

    def __init__(self, endpoint: str, call_timeout: float = 10.0) -> None:
        self.endpoint = check_endpoint(endpoint)

        import grpc

        from ecrcred.cri._gen import (
            containerd_events_pb2_grpc,
            containerd_images_pb2_grpc,
            cri_api_pb2_grpc,
        )

        self._timeout = call_timeout
        self._grpc = grpc
        self._channel = grpc.insecure_channel(endpoint, options=[
            ("grpc.max_receive_message_length", 16 << 20),
        ])
        # generated stubs are untyped; this class is their typed face
        self._cri = cri_api_pb2_grpc.ImageServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._runtime = cri_api_pb2_grpc.RuntimeServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._images = containerd_images_pb2_grpc.ImagesStub(self._channel)  # type: ignore[no-untyped-call]
        self._events = containerd_events_pb2_grpc.EventsStub(self._channel)  # type: ignore[no-untyped-call]
        self._metadata = (("containerd-namespace", NAMESPACE),)

    def close(self) -> None:
        self._channel.close()

    # -- errors ------------------------------------------------------------------------------

    def _unreachable(self, exc: Any, doing: str, detail: str | None = None,
                     ) -> RuntimeServiceError:
        """``detail``: the runtime's text already cleaned by the caller (a pull's, redacted)."""
        code = exc.code()
        if detail is None:
            detail = " ".join(str(exc.details() or "").split())
        path = _socket_path(self.endpoint)
        detail = _quote_runtime(detail, *([path, f"unix:{path}"] if path else []))
        if code == self._grpc.StatusCode.UNAVAILABLE:
            missing = path is not None and not os.path.exists(path)
            why = f"socket {path} does not exist" if missing else detail
            return RuntimeServiceError(
                f"cannot reach the container runtime at {self.endpoint} to {doing} ({why})",
                hint="is containerd running? set --runtime-endpoint or CONTAINER_RUNTIME_ENDPOINT",
                code="RUNTIME_UNREACHABLE",
            )
        if code == self._grpc.StatusCode.UNIMPLEMENTED:
            return RuntimeServiceError(
                f"the runtime at {self.endpoint} does not implement what is needed to {doing}",
                hint="this needs containerd's API (pinning and --watch); use --no-pin on other "
                "runtimes",
                code="RUNTIME_UNSUPPORTED",
            )
        return RuntimeServiceError(
            f"container runtime at {self.endpoint} failed to {doing}: {code.name}: {detail}",
            hint="check the runtime's logs (journalctl -u containerd)",
        )

    # -- CRI ---------------------------------------------------------------------------------

    def version(self) -> RuntimeVersion:
        from ecrcred.cri._gen import cri_api_pb2 as cri

        try:
            reply = self._runtime.Version(cri.VersionRequest(version="v1"), timeout=self._timeout)
        except self._grpc.RpcError as exc:
            raise self._unreachable(exc, "ask its version") from None
        return RuntimeVersion(reply.runtime_name, reply.runtime_version,
                              reply.runtime_api_version)

    def image_status(self, image: str) -> ImageInfo | None:
        from ecrcred.cri._gen import cri_api_pb2 as cri

        request = cri.ImageStatusRequest(image=cri.ImageSpec(image=image))
        try:
            reply = self._cri.ImageStatus(request, timeout=self._timeout)
        except self._grpc.RpcError as exc:
            raise self._unreachable(exc, f"get the status of {image}") from None
        if not reply.HasField("image") or not reply.image.id:
            return None  # the CRI answers OK with an empty image when it is absent
        i = reply.image
        return ImageInfo(i.id, tuple(i.repo_tags), tuple(i.repo_digests), i.size, i.pinned)

    def pull_image(self, image: str, auth: Auth | None, timeout: float) -> str:
        from ecrcred.cri._gen import cri_api_pb2 as cri

        request = cri.PullImageRequest(image=cri.ImageSpec(image=image))
        if auth is not None:
            # server_address stays empty: containerd only uses it when it parses to the host.
            request.auth.CopyFrom(cri.AuthConfig(username=auth.username, password=auth.password))
        try:
            reply = self._cri.PullImage(request, timeout=timeout)
        except self._grpc.RpcError as exc:
            raise self._pull_error(exc, image, auth) from None
        return str(reply.image_ref)

    def _pull_error(self, exc: Any, image: str, auth: Auth | None) -> RuntimeServiceError:
        code = exc.code()
        detail = " ".join(str(exc.details() or "").split())
        if auth is not None and auth.password:
            detail = detail.replace(auth.password, "<redacted>")
        if code in (self._grpc.StatusCode.UNAVAILABLE, self._grpc.StatusCode.UNIMPLEMENTED):
            return self._unreachable(exc, f"pull {image}", detail)
        # ``detail`` stays whole (the keeper reads its words, the last ones included); only
        # the message, which is printed, is bounded. containerd's CRI opens every pull error
        # with the image our message names already: the characters we quote go to the cause.
        said = detail.removeprefix(f'failed to pull and unpack image "{image}": ')
        return PullError(f"the runtime at {self.endpoint} could not pull {image}: "
                         f"{_quote_runtime(said, image)}", detail=detail,
                         code=f"PULL_{code.name}", status=code.name)

    def remove_image(self, image: str) -> None:
        from ecrcred.cri._gen import cri_api_pb2 as cri

        try:
            self._cri.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=image)),
                                  timeout=self._timeout)
        except self._grpc.RpcError as exc:
            raise self._unreachable(exc, f"remove {image}") from None

    # -- containerd --------------------------------------------------------------------------

    def labels(self, name: str) -> dict[str, str] | None:
        from ecrcred.cri._gen import containerd_images_pb2 as images

        try:
            reply = self._images.Get(images.GetImageRequest(name=name), timeout=self._timeout,
                                     metadata=self._metadata)
        except self._grpc.RpcError as exc:
            if exc.code() == self._grpc.StatusCode.NOT_FOUND:
                return None
            raise self._unreachable(exc, f"read the labels of {name}") from None
        return dict(reply.image.labels)

    def set_label(self, name: str, key: str, value: str) -> None:
        from google.protobuf import field_mask_pb2

        from ecrcred.cri._gen import containerd_images_pb2 as images

        try:
            current = self._images.Get(images.GetImageRequest(name=name), timeout=self._timeout,
                                       metadata=self._metadata).image
            update = images.Image(name=name, target=current.target, labels={key: value})
            mask = field_mask_pb2.FieldMask(paths=[f"labels.{key}"])
            self._images.Update(images.UpdateImageRequest(image=update, update_mask=mask),
                                timeout=self._timeout, metadata=self._metadata)
        except self._grpc.RpcError as exc:
            raise self._unreachable(exc, f"label {name} {key}={value}") from None

    def image_events(self) -> EventStream:
        from ecrcred.cri._gen import containerd_events_pb2 as events

        request = events.SubscribeRequest(
            filters=[f'namespace=={NAMESPACE},topic=="{DELETE_TOPIC}"'])
        call = self._events.Subscribe(request, metadata=self._metadata)
        return _DeleteEvents(call, self)


class _DeleteEvents:
    def __init__(self, call: Any, runtime: GrpcRuntime) -> None:
        self._call = call
        self._runtime = runtime

    def __iter__(self) -> Iterator[str]:
        from ecrcred.cri._gen import containerd_images_pb2 as images

        grpc = self._runtime._grpc
        try:
            for envelope in self._call:
                if envelope.topic != DELETE_TOPIC:
                    continue
                # containerd's type_url is the bare full name, with no "/": protobuf's
                # Any.Unpack refuses that, so compare the name and parse the bytes ourselves.
                if envelope.event.type_url.rsplit("/", 1)[-1] != _IMAGE_DELETE:
                    continue
                event = images.ImageDelete()
                event.ParseFromString(envelope.event.value)
                yield event.name
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                return
            raise self._runtime._unreachable(exc, "watch image events") from None

    def cancel(self) -> None:
        self._call.cancel()
