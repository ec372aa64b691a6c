"""Hand-written fakes shared by the unit tests: a clock that only moves when told, a logger
that records lines, and a credential source and token cache that remember how they were used.

Each seam of ``ecrcred.seams`` has one fake here, declared once, with the union of what the
tests need from it: ``FakeEcrApi``, ``UnusedStsApi``, ``FakeImageService`` (the CRI's
``ImageService`` and ``ContainerdImages``), ``FakeRuntime`` (doctor's ``Runtime``) and
``FakeHttp``. ``tests/contract`` runs the fakes that stand for a real implementation through
that implementation's contract suite, so a fake cannot drift from what it fakes."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterator
from typing import NamedTuple

from ecrcred.containerd_routes import ClientPair
from ecrcred.cri.client import Auth, ImageInfo, RuntimeVersion
from ecrcred.doctor.transport import HttpReply
from ecrcred.ecrhost import EcrRegistry
from ecrcred.records import CacheKey, Lookup, Pod, Throttled
from ecrcred.seams import EventStream
from ecrcred.sources.aws import AuthorizationData, AwsCredentials
from ecrcred.tokens import Token

# 2023-11-14T22:13:20Z: a fixed "now" far from any epoch edge.
T0 = 1_700_000_000.0


class FakeClock:
    """Wall and monotonic time that advance only through ``sleep`` and ``advance``."""

    def __init__(self, now: float = T0, monotonic: float = 1_000.0) -> None:
        self.now = now
        self.mono = monotonic
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


class RecordingLogger:
    """The ``ecrcred.log.Logger`` protocol, keeping every line and every secret it is given."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.secrets: list[str] = []

    def debug(self, message: str) -> None:
        self.lines.append(("debug", message))

    def info(self, message: str) -> None:
        self.lines.append(("info", message))

    def warning(self, message: str) -> None:
        self.lines.append(("warning", message))

    def error(self, message: str) -> None:
        self.lines.append(("error", message))

    def add_secret(self, secret: str | None) -> None:
        if secret:
            self.secrets.append(secret)

    def at(self, level: str) -> list[str]:
        return [message for lvl, message in self.lines if lvl == level]


class DictCache:
    """A ``TokenCache`` in a dict, counting loads and stores, with a hook run on taking the lock
    (a stand-in for another process that refreshes the token while we wait for it); throttled
    fetches are remembered in ``throttled``. It keeps the ``TokenCache`` contract as the real
    caches do (``tests/contract/test_token_cache.py``)."""

    def __init__(self, on_lock: Callable[[DictCache, CacheKey], None] | None = None) -> None:
        self.tokens: dict[CacheKey, Token] = {}
        self.throttled: dict[CacheKey, Throttled] = {}
        self.loads = 0
        self.stores: list[tuple[CacheKey, Token]] = []
        self.locks = 0
        self.held = False  # whether the lock is held right now
        self._on_lock = on_lock

    def load(self, key: CacheKey) -> Token | None:
        self.loads += 1
        return self.tokens.get(key)

    def store(self, key: CacheKey, token: Token) -> None:
        self.stores.append((key, token))
        self.tokens[key] = token

    @contextlib.contextmanager
    def lock(self, key: CacheKey) -> Iterator[None]:
        self.locks += 1
        if self._on_lock is not None:
            self._on_lock(self, key)
        self.held = True
        try:
            yield
        finally:
            self.held = False

    def load_throttled(self, key: CacheKey) -> Throttled | None:
        return self.throttled.get(key)

    def store_throttled(self, key: CacheKey, throttled: Throttled | None) -> None:
        if throttled is None:
            self.throttled.pop(key, None)
        else:
            self.throttled[key] = throttled


class CountingFetch:
    """A ``fetch`` that returns the given tokens (or raises the given errors) in order."""

    def __init__(self, *results: Token | Exception) -> None:
        self._results = list(results)
        self.calls = 0

    def __call__(self) -> Token:
        self.calls += 1
        result = self._results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


class FakeSource:
    """A credential source claiming images whose host is in ``hosts``."""

    def __init__(self, hosts: set[str], fetch: Callable[[], Token], name: str = "fake") -> None:
        self.name = name
        self._hosts = hosts
        self._fetch = fetch
        self.asked: list[str] = []

    def lookup(self, image: str, pod: Pod | None = None) -> Lookup | None:
        self.asked.append(image)
        host = image.split("/", 1)[0]
        if host not in self._hosts:
            return None
        return Lookup(
            auth_key=host,
            cache_key=CacheKey(registry=f"{self.name}:{host}", identity="test-identity"),
            fetch=self._fetch,
            describe=f"{self.name} registry {host}",
        )


# -- AWS ----------------------------------------------------------------------------------------

class FakeEcrApi:
    """The ``EcrApi`` seam. Hands out ``replies`` in order (an exception is raised); with none
    (or once they are used up) a 12-hour ``AWS:<password>`` token from T0; ``error``, when set,
    is raised by every call. Remembers each call's registry and credentials."""

    def __init__(self, *replies: AuthorizationData | Exception,
                 password: str = "ecr-password-value",  # noqa: S107 - a fake token
                 error: Exception | None = None) -> None:
        self._replies = list(replies)
        self.password = password
        self.error = error
        self.calls: list[tuple[EcrRegistry, AwsCredentials | None]] = []

    @property
    def asked(self) -> list[EcrRegistry]:
        return [registry for registry, _ in self.calls]

    @property
    def as_who(self) -> list[AwsCredentials | None]:
        return [credentials for _, credentials in self.calls]

    def get_authorization_token(self, registry: EcrRegistry,
                                credentials: AwsCredentials | None = None) -> AuthorizationData:
        self.calls.append((registry, credentials))
        if self.error is not None:
            raise self.error
        if self._replies:
            reply = self._replies.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply
        token = base64.b64encode(f"AWS:{self.password}".encode()).decode()
        return AuthorizationData(token, expires_at=T0 + 12 * 3600, server_time=T0)


class UnusedStsApi:
    """The ``StsApi`` seam where no test expects a call: a lookup alone never assumes a role."""

    def assume_role(self, role_arn: str, session_name: str, external_id: str | None,
                    region: str) -> AwsCredentials:
        raise AssertionError("unexpected AssumeRole")

    def assume_role_with_web_identity(self, role_arn: str, session_name: str, token: str,
                                      region: str) -> AwsCredentials:
        raise AssertionError("unexpected AssumeRoleWithWebIdentity")


# -- the container runtime ----------------------------------------------------------------------

class FakeImageService:
    """``ImageService`` and ``ContainerdImages`` in memory; pull outcomes are scripted.

    ``outcomes``: what each pull does in turn (an exception is raised, None succeeds; once they
    are used up, pulls succeed). ``present`` and ``image_labels`` speak of ``image``, the one
    image a sandbox keeper looks after. Labels outlive a removal here (a shortcut the keeper's
    tests rely on: a delete event followed by a pull finds the image pinned); the contract
    suite checks only what the real runtime and this fake agree on."""

    def __init__(self, image: str, present: bool = False,
                 outcomes: list[Exception | None] | None = None) -> None:
        self.image = image
        self.outcomes = list(outcomes or [])
        self.pulls: list[Auth | None] = []
        self.images: set[str] = {image} if present else set()
        self.all_labels: dict[str, dict[str, str]] = {}

    @property
    def present(self) -> bool:
        return self.image in self.images

    @present.setter
    def present(self, value: bool) -> None:
        if value:
            self.images.add(self.image)
        else:
            self.images.discard(self.image)

    @property
    def image_labels(self) -> dict[str, str]:
        return self.all_labels.setdefault(self.image, {})

    def image_status(self, image: str) -> ImageInfo | None:
        if image not in self.images:
            return None
        return ImageInfo("sha256:abc", (image,), (), 1000, False)

    def pull_image(self, image: str, auth: Auth | None, timeout: float) -> str:
        self.pulls.append(auth)
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        self.images.add(image)
        return "sha256:abc"

    def remove_image(self, image: str) -> None:
        self.images.discard(image)

    def labels(self, name: str) -> dict[str, str] | None:
        return dict(self.all_labels.get(name, {})) if name in self.images else None

    def set_label(self, name: str, key: str, value: str) -> None:
        self.all_labels.setdefault(name, {})[key] = value

    def image_events(self) -> EventStream:  # pragma: no cover - the tests give their own
        raise NotImplementedError


CONTAINERD_16 = RuntimeVersion("containerd", "1.6.20", "v1")


class FakeRuntime:
    """doctor's ``Runtime`` seam: a version (or the error the CRI gives), images by name with
    their containerd labels; ``labels_error`` stands in for a runtime without containerd's API
    (cri-dockerd, CRI-O), ``status_error`` for a CRI that fails. Remembers the names it was
    asked about, and whether it was closed."""

    def __init__(self, version: RuntimeVersion | Exception = CONTAINERD_16,
                 images: dict[str, ImageInfo] | None = None,
                 labels: dict[str, dict[str, str]] | None = None,
                 labels_error: Exception | None = None,
                 status_error: Exception | None = None) -> None:
        self._version = version
        self._images = images or {}
        self._labels = labels or {}
        self._labels_error = labels_error
        self._status_error = status_error
        self.asked: list[str] = []
        self.closed = False

    def version(self) -> RuntimeVersion:
        if isinstance(self._version, Exception):
            raise self._version
        return self._version

    def image_status(self, image: str) -> ImageInfo | None:
        self.asked.append(image)
        if self._status_error is not None:
            raise self._status_error
        return self._images.get(image)

    def labels(self, name: str) -> dict[str, str] | None:
        if self._labels_error is not None:
            raise self._labels_error
        return self._labels.get(name)

    def close(self) -> None:
        self.closed = True


# -- HTTP ---------------------------------------------------------------------------------------

# What FakeHttp does for a URL: reply, raise, or answer from the request's headers.
Route = HttpReply | OSError | Callable[[dict[str, str]], HttpReply]


class Sent(NamedTuple):
    url: str
    headers: dict[str, str]
    ca: tuple[str, ...]
    skip_verify: bool
    client: tuple[ClientPair, ...] = ()


class FakeHttp:
    """The ``Http`` seam over a table of exact URLs: a reply, an OSError to raise, or a function
    of the request headers. A URL not in the table goes to ``otherwise`` (a function of the
    URL), else is a refused connection. Remembers every request."""

    def __init__(self, routes: dict[str, Route] | None = None,
                 otherwise: Callable[[str], HttpReply] | None = None) -> None:
        self.routes = routes or {}
        self.otherwise = otherwise
        self.sent: list[Sent] = []

    def get(self, url: str, headers: dict[str, str], *, ca: tuple[str, ...], skip_verify: bool,
            timeout: float, client: tuple[ClientPair, ...] = ()) -> HttpReply:
        self.sent.append(Sent(url, dict(headers), ca, skip_verify, client))
        if url not in self.routes and self.otherwise is not None:
            return self.otherwise(url)
        route = self.routes.get(url, ConnectionRefusedError(111, "Connection refused"))
        if isinstance(route, OSError):
            raise route
        if isinstance(route, HttpReply):
            return route
        return route(headers)

    def urls(self) -> list[str]:
        return [s.url for s in self.sent]

    def to(self, url: str) -> Sent:
        found = [s for s in self.sent if s.url == url]
        assert len(found) == 1, (url, self.urls())
        return found[0]
