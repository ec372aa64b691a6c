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
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ecrcred.cache import CacheKey, Throttled
    from ecrcred.ecrhost import EcrRegistry
    from ecrcred.sources import Lookup, Pod
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
    def load(self, key: CacheKey) -> Token | None: ...
    def store(self, key: CacheKey, token: Token) -> None: ...
    def lock(self, key: CacheKey) -> AbstractContextManager[None]: ...
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
    def assume_role(self, role_arn: str, session_name: str, external_id: str | None,
                    region: str, partition: str) -> AwsCredentials: ...

    def assume_role_with_web_identity(self, role_arn: str, session_name: str, token: str,
                                      region: str, partition: str) -> AwsCredentials: ...


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
