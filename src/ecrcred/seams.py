"""The seams: small Protocols that collaborators are passed in through.

They live together here, away from the modules that use them, because defining a Protocol needs
``typing`` at run time and the kubelet's cache-hit path must not import it (see ``_record.py``).
Modules on that path import these names only for type checking; tests and new code may import
them freely.

- ``Clock``: wall time for token expiry, monotonic time and sleep for deadlines and waits.
- ``Logger``: levelled diagnostics on stderr, scrubbing registered secrets.
- ``TokenCache``: load, store and a cross-process lock per key, and a throttled fetch remembered
  per key (so processes sharing the cache hold back together).
- ``CredentialSource``: claims an image (``Lookup``) or says "not mine" (None).
- ``EcrApi``: the one AWS call behind ECR and ECR Public tokens, as some AWS identity.
- ``StsApi``: the two STS calls that give that identity (a role, or the pod's role).
- ``Runner``: runs a program without a shell, with a timeout (credential helpers).
- ``ImageService``: the CRI's images (any runtime): status, pull with credentials, remove.
- ``ContainerdImages``: containerd's own images API: labels (the pin) and ``EventStream``, the
  image names of its ``/images/delete`` events.
- ``ImageImporter``: an image put into the runtime from a copy on the node (``pull-sandbox
  --archive``; ``cri.containerd_api.ContainerdImporter``).
- ``Runtime``: what ``doctor`` asks the runtime: its version, an image, its labels.
- ``Http``: a GET as containerd would send it (CA files, client certificate, skip_verify), for
  ``doctor``'s registry check.

``cri.client.GrpcRuntime`` implements the three runtime seams, ``doctor.transport.HttpClient``
implements ``Http``. ``tests/contract`` runs one suite per seam against the real implementation
and the fake the unit tests use (``tests/unit/fakes.py``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from ecrcred.containerd_routes import ClientPair
    from ecrcred.cri.client import Auth, ImageInfo, RuntimeVersion
    from ecrcred.doctor.transport import HttpReply
    from ecrcred.ecrhost import EcrRegistry
    from ecrcred.records import CacheKey, Lookup, Pod, Throttled
    from ecrcred.sources.aws import AuthorizationData, AwsCredentials
    from ecrcred.tokens import Token


class Clock(Protocol):
    def time(self) -> float: ...
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class Logger(Protocol):
    def debug(self, message: str) -> None: ...
    def info(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...
    def error(self, message: str) -> None: ...
    def add_secret(self, secret: str | None) -> None: ...


class TokenCache(Protocol):
    """Tokens and throttling holds per ``CacheKey``, and a lock per key shared by every process
    using the cache (implementations in ``cache.py``; ``fetch.get_or_fetch`` is the one user).
    What each must do is ``tests/contract/test_token_cache.py``: an implementation may keep no
    tokens or no holds (loads are then None), but never answers one key with another's."""

    def load(self, key: CacheKey) -> Token | None: ...
    def store(self, key: CacheKey, token: Token) -> None: ...
    def lock(self, key: CacheKey) -> AbstractContextManager[None]:
        """Held while the ``with`` block runs; released however it ends."""
        ...

    def load_throttled(self, key: CacheKey) -> Throttled | None: ...
    def store_throttled(self, key: CacheKey, throttled: Throttled | None) -> None:
        """Remember a throttled fetch (shared with every process using the cache); None
        forgets it."""
        ...


class CredentialSource(Protocol):
    name: str

    def lookup(self, image: str, pod: Pod | None) -> Lookup | None: ...


class EcrApi(Protocol):
    def get_authorization_token(self, registry: EcrRegistry,
                                credentials: AwsCredentials | None) -> AuthorizationData:
        """The token for a registry, as ``credentials`` (None: the node's own chain)."""
        ...


class StsApi(Protocol):
    # ``region`` is the registry's: its regional STS endpoint also picks the partition.
    def assume_role(self, role_arn: str, session_name: str, external_id: str | None,
                    region: str) -> AwsCredentials: ...

    def assume_role_with_web_identity(self, role_arn: str, session_name: str, token: str,
                                      region: str) -> AwsCredentials: ...


class RunResult(Protocol):
    returncode: int
    stdout: bytes
    stderr: bytes


class Runner(Protocol):
    def run(self, argv: Sequence[str], stdin: bytes, timeout: float,
            env: Mapping[str, str]) -> RunResult:
        """Run ``argv`` (no shell). Raises FileNotFoundError when the program does not exist
        and subprocess.TimeoutExpired after killing it when it outlives ``timeout``."""
        ...


class ImageService(Protocol):
    """The CRI's ImageService. Errors are ``RuntimeServiceError``; a failed pull is its
    subclass ``PullError``, keeping the runtime's status code."""

    def image_status(self, image: str) -> ImageInfo | None:
        """The image, or None when the runtime does not have it."""
        ...

    def pull_image(self, image: str, auth: Auth | None, timeout: float) -> str:
        """Pull ``image`` with ``auth`` (None: anonymously); the image's id."""
        ...

    def remove_image(self, image: str) -> None: ...


class EventStream(Protocol):
    """Image names from ``/images/delete`` events, until ``cancel()`` or the stream breaks."""

    def __iter__(self) -> Iterator[str]: ...
    def cancel(self) -> None: ...


class ContainerdImages(Protocol):
    """containerd's images API (namespace ``k8s.io``): what the CRI does not offer."""

    def labels(self, name: str) -> dict[str, str] | None:
        """The image's labels, or None when containerd has no such image."""
        ...

    def set_label(self, name: str, key: str, value: str) -> None: ...
    def image_events(self) -> EventStream: ...


class ImageImporter(Protocol):
    """The sandbox image from a copy on the node, for a registry nothing can pull from."""

    def describe(self) -> str:
        """Where the copy is, for report lines (``archive /etc/eks/pause.tar``)."""
        ...

    def import_image(self, image: str) -> str:
        """Import ``image`` into the runtime; its id. ``ArchiveError`` when the copy is
        unusable or lacks the image, ``RuntimeServiceError`` when the runtime cannot take it."""
        ...


class Runtime(Protocol):
    """What doctor asks the runtime (``cri.client.GrpcRuntime`` implements it)."""

    def version(self) -> RuntimeVersion: ...
    def image_status(self, image: str) -> ImageInfo | None: ...
    def labels(self, name: str) -> dict[str, str] | None: ...


class Http(Protocol):
    def get(self, url: str, headers: dict[str, str], *, ca: tuple[str, ...], skip_verify: bool,
            timeout: float, client: tuple[ClientPair, ...] = ()) -> HttpReply:
        """GET ``url``, presenting ``client`` to a server that asks for a certificate; raises
        OSError (ssl.SSLError included) when it cannot be reached."""
        ...
