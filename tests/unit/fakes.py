"""Hand-written fakes shared by the unit tests: a clock that only moves when told, a logger
that records lines, and a credential source and token cache that remember how they were used."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from ecrcred.cache import CacheKey, Throttled
from ecrcred.sources import Lookup, Pod
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
    fetches are remembered in ``throttled``."""

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
