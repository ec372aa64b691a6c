"""Token storage: where tokens and throttling holds live, and the per-key lock.

On disk (``FileCache``): one JSON file per key in a 0700 directory, files 0600, written atomically
(temp file in the same directory, fsync, rename, fsync of the directory) so a reader never sees
half a file, even when a writer is killed. The directory is opened and checked once
(``files.StateDir``: root's or ours all the way up, writable by nobody else, no symlink) and every
file is read and written relative to it; a file in it that is not a private regular file of ours
is never believed. File names are digests of the key, which itself holds only non-secret parts
(registry and a digest of the AWS identity). A file that does not parse, is of another format
version, belongs to another key, or claims a lifetime no token has is ignored and rewritten. A
directory we cannot use, or cannot trust, degrades to no caching with one warning: the answer is
still given. A throttled fetch is remembered in ``<digest>.throttled`` beside the token file, and
``<digest>.lock`` is ``flock``ed while one process refreshes the token.

Each read of a token (a cache hit) stamps its file's times with ``utimensat`` (one system call
on the directory we hold open, no clock read): the file's mtime is when a token of that key was
last *used*. The node agent's refresh ahead (``refresh.py``) reads it to refresh only what
executions use; its own cache (``counts_use=False``) stamps nothing and carries the last use
over to the file it rewrites. mtime, not atime: the kernel never moves mtime on a read, whatever
the mount's atime options (``noatime``, ``relatime``), so no reader but a hit can make a token
look used.

The other ``TokenCache`` implementations: ``NullCache`` (keeps nothing), ``MemoryCache`` (an
in-process layer for long-lived commands) and ``Unread`` (writes through but reads no token).
When to fetch, wait or serve a stale token is the fetch policy's (``fetch.py``), which uses any
of them through the ``TokenCache`` seam.

Standard library only, except ``MemoryCache`` which imports cachetools when built: the cache-hit
path of ``get-credentials`` must stay cheap.
"""

from __future__ import annotations

import os

from ecrcred import jsonwire
from ecrcred.errors import DeadlineExceeded
from ecrcred.files import StateDir, Untrusted, reason, sha256_hex
from ecrcred.records import CacheKey, Throttled
from ecrcred.tokens import DEFAULT_REFRESH_MARGIN, Token, plausible_lifetime

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from types import TracebackType
    from typing import Any, TypeGuard

    from ecrcred.seams import Clock, Logger, TokenCache

CACHE_FORMAT = 1
MAX_CACHE_FILE_BYTES = 64 * 1024
MAX_THROTTLE_FILE_BYTES = 4 * 1024
DEFAULT_CACHE_DIR = "/var/lib/ecrcred/cache"


def file_stem(key: CacheKey) -> str:
    """The name of ``key``'s files without their suffix: a digest of the key (and of our format
    version, so another version's files are never even opened)."""
    raw = f"v{CACHE_FORMAT}\0{key.registry}\0{key.identity}".encode()
    return sha256_hex(raw)[:40]


class NullCache:
    """No caching: every lookup misses. Used with ``--no-cache`` and when the disk is unusable."""

    def load(self, key: CacheKey) -> Token | None:
        return None

    def store(self, key: CacheKey, token: Token) -> None:
        return None

    def lock(self, key: CacheKey) -> _Lock:
        return _Lock(None)

    def load_throttled(self, key: CacheKey) -> Throttled | None:
        return None

    def store_throttled(self, key: CacheKey, throttled: Throttled | None) -> None:
        return None


class FileCache:
    """Tokens in ``<directory>/<digest>.json``, locked per key with ``<digest>.lock``, a
    throttled fetch remembered in ``<digest>.throttled``. ``counts_use``: whether a load stamps
    the token file as used (the executions' cache) or not (the node agent's, whose stores keep
    the last use of the file they replace)."""

    def __init__(self, directory: str, clock: Clock, log: Logger,
                 lock_timeout: float = 25.0, counts_use: bool = True) -> None:
        self.directory = directory
        self.counts_use = counts_use
        self._clock = clock
        self._log = log
        self._lock_timeout = lock_timeout
        self._state: StateDir | None = None
        self._unusable = False
        self._warned = False
        self._distrusted: set[str] = set()  # files already warned about: once per process

    # -- the directory ---------------------------------------------------------------------

    def state(self, create: bool = True) -> StateDir | None:
        """The opened and checked directory, or None when it cannot be used (after one
        warning) or, without ``create``, does not exist yet (no warning: a first run)."""
        if self._state is not None or self._unusable:
            return self._state
        try:
            self._state = StateDir.open(self.directory, os.geteuid(), create=create)
        except FileNotFoundError:
            if not create:
                return None
            self._fail(f"cannot use token cache directory {self.directory} (it cannot be made)")
        except Untrusted as exc:
            self._fail(f"not using token cache directory {self.directory}: {exc.path} is "
                       f"{exc.why}, so another user could plant or swap files in it",
                       fix="use a directory owned by root, mode 0700, whose parents only root "
                       "can write, or set --cache-dir (ECRCRED_CACHE_DIR)")
        except OSError as exc:
            self._fail(f"cannot use token cache directory {self.directory} ({reason(exc)})")
        else:
            if self._state.readable_by_others:
                self._log.warning(
                    f"token cache directory {self.directory} is readable by other users (its "
                    f"files are 0600, and ecrcred changes no mode it did not set); run: chmod "
                    f"0700 {self.directory}")
        return self._state

    def _fail(self, what: str, fix: str = "") -> None:
        self._unusable = True
        self._degrade(what, fix)

    def _degrade(self, what: str, fix: str = "") -> None:
        if not self._warned:
            self._warned = True
            self._log.warning(
                f"{what}; continuing without a token cache, so every execution calls the "
                "registry's token API: " + (fix or "fix the directory's owner and mode or set "
                                            "--cache-dir (ECRCRED_CACHE_DIR)")
            )

    def _live_state(self, create: bool = True) -> StateDir | None:
        """``state`` for a write: opened again (once) when the directory we hold open has been
        removed (no links left: an ``rm -rf`` under a long-lived ``pull-sandbox --watch``), or
        every later write would fail and locking would be off for good. Never on a read: a
        cache hit does no more than it did."""
        state = self.state(create)
        if state is None:
            return None
        try:
            removed = os.fstat(state.fd).st_nlink == 0
        except OSError:
            removed = False
        if not removed:
            return state
        self._log.debug(f"token cache directory {self.directory} was removed; opening it again")
        state.close()
        self._state = None
        return self.state(create)

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None

    def path(self, key: CacheKey) -> str:
        return f"{self.directory}/{file_stem(key)}.json"

    # -- reading ---------------------------------------------------------------------------

    def load(self, key: CacheKey) -> Token | None:
        name = f"{file_stem(key)}.json"
        raw = self._read(name, MAX_CACHE_FILE_BYTES)
        if raw is None:
            return None
        token, problem = _decode(raw, key)
        if problem:
            self._log.debug(f"ignoring token cache file {self.path(key)}: {problem}; it will be "
                            "rewritten")
        elif self.counts_use and self._state is not None:
            try:  # noqa: SIM105 - contextlib.suppress would cost the hot path its import
                # Both times to now (UTIME_NOW): the mtime is the last use (module docstring).
                os.utime(name, dir_fd=self._state.fd, follow_symlinks=False)
            except OSError:
                pass  # a read-only cache still serves; the agent then sees no use
        return token

    def entries(self) -> list[tuple[CacheKey, Token, float]]:
        """Every token in the directory that passes the checks a load makes: its key, the
        token and its last use (epoch seconds; 0: never used since the agent wrote it). For the
        node agent's refresh ahead; a file at a name that is not its key's is not believed.
        (Plain tuples: a record class would cost every cache hit its definition.)"""
        state = self.state(create=False)
        if state is None:
            return []
        found = []
        try:
            with os.scandir(state.fd) as listing:
                names = [e.name for e in listing if e.name.endswith(".json")
                         and not e.name.startswith((".", "config-"))]
        except OSError as exc:
            self._log.debug(f"cannot list token cache directory {self.directory}: {reason(exc)}")
            return []
        for name in sorted(names):
            raw = self._read(name, MAX_CACHE_FILE_BYTES)
            if raw is None:
                continue
            key = _key_of(raw)
            if key is None or f"{file_stem(key)}.json" != name:
                continue
            token, _problem = _decode(raw, key)
            if token is None:
                continue
            try:
                used_at = os.stat(name, dir_fd=state.fd, follow_symlinks=False).st_mtime
            except OSError:
                continue
            found.append((key, token, used_at))
        return found

    def throttled_path(self, key: CacheKey) -> str:
        return f"{self.directory}/{file_stem(key)}.throttled"

    def load_throttled(self, key: CacheKey) -> Throttled | None:
        raw = self._read(f"{file_stem(key)}.throttled", MAX_THROTTLE_FILE_BYTES)
        if raw is None:
            return None
        throttled, problem = _decode_throttled(raw, key)
        if problem:
            self._log.debug(f"ignoring throttle file {self.throttled_path(key)}: {problem}")
        return throttled

    def _read(self, name: str, limit: int) -> bytes | None:
        """Up to ``limit + 1`` bytes of our file ``name``; None when it is missing, unreadable
        or not ours (a regular file we own that no one else can read or write)."""
        state = self.state(create=False)
        if state is None:
            return None
        try:
            return state.read(name, limit).data
        except FileNotFoundError:
            return None
        except Untrusted as exc:
            if name not in self._distrusted:
                self._distrusted.add(name)
                self._log.warning(f"ignoring cache file {exc.path}: {exc.why}; it will be "
                                  "replaced")
            return None
        except OSError as exc:
            self._log.debug(f"ignoring cache file {state.join(name)}: {reason(exc)}")
            return None

    # -- writing ---------------------------------------------------------------------------

    def store(self, key: CacheKey, token: Token) -> None:
        state = self._live_state()
        if state is None:
            return
        body = _envelope(key, username=token.username, password=token.password,
                         expires_at=token.expires_at, fetched_at=token.fetched_at)
        name = f"{file_stem(key)}.json"
        used_ns = None if self.counts_use else self._used_ns(state, name)
        try:
            state.write_atomic(name, body)
            if used_ns is not None:  # the agent's write: the last use is carried over
                os.utime(name, ns=(used_ns, used_ns), dir_fd=state.fd, follow_symlinks=False)
        except OSError as exc:
            self._degrade(f"cannot write token cache file {self.path(key)} ({reason(exc)})")

    @staticmethod
    def _used_ns(state: StateDir, name: str) -> int:
        """The last use of the token file ``name`` (its mtime, ns); 0 when there is none."""
        try:
            return os.stat(name, dir_fd=state.fd, follow_symlinks=False).st_mtime_ns
        except OSError:
            return 0

    def store_throttled(self, key: CacheKey, throttled: Throttled | None) -> None:
        """Remember a throttled fetch for ``key``, or (None) forget it. Best effort: without
        the file every execution simply calls AWS, as it would with no cache."""
        name = f"{file_stem(key)}.throttled"
        if throttled is None:
            state = self.state(create=False)
            if state is not None:
                state.unlink(name)
            return
        state = self._live_state()
        if state is None:
            return
        body = _envelope(key, throttled_at=throttled.at, until=throttled.until)
        try:
            state.write_atomic(name, body)
        except OSError as exc:
            self._log.debug(f"cannot write throttle file {state.join(name)} ({reason(exc)})")

    # -- locking ---------------------------------------------------------------------------

    def lock(self, key: CacheKey) -> _Lock:
        """An exclusive ``flock`` on ``<digest>.lock`` while the ``with`` block runs."""
        state = self._live_state()
        if state is None:
            return _Lock(None)
        fd = state.open_lock(f"{file_stem(key)}.lock", self._log)
        if fd is None:
            return _Lock(None)
        try:
            self._acquire(fd, key)
        except BaseException:
            os.close(fd)
            raise
        return _Lock(fd)

    def _acquire(self, fd: int, key: CacheKey) -> None:
        import fcntl  # only on a miss: a cache hit never locks (a .so load per exec saved)

        give_up = self._clock.monotonic() + self._lock_timeout
        delay = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if self._clock.monotonic() >= give_up:
                raise DeadlineExceeded(
                    f"waited {self._lock_timeout:.0f}s for another ecrcred process to refresh "
                    f"the token for {key.registry}",
                    hint=f"look for a hung ecrcred process holding {self.directory}/*.lock",
                )
            self._clock.sleep(delay)
            delay = min(delay * 2, 0.02)


def _envelope(key: CacheKey, **fields: object) -> bytes:
    """A cache or throttle file's bytes: our format version and the key it belongs to, so a
    file of another version or key (a digest collision, a copied file) is never taken."""
    return jsonwire.dumps({"version": CACHE_FORMAT, "registry": key.registry,
                           "identity": key.identity, **fields}).encode()


def _open_envelope(raw: bytes, key: CacheKey, limit: int) -> tuple[dict[str, Any] | None, str]:
    """The fields of a file ``_envelope`` wrote for ``key``, or None and why not."""
    if len(raw) > limit:
        return None, "file is too large"
    try:
        doc = jsonwire.loads(raw)
    except ValueError:
        return None, "not valid JSON (truncated or corrupt)"
    if not isinstance(doc, dict):
        return None, "not a JSON object"
    if doc.get("version") != CACHE_FORMAT:
        return None, f"format version {doc.get('version')!r}, expected {CACHE_FORMAT}"
    if doc.get("registry") != key.registry or doc.get("identity") != key.identity:
        return None, "written for another registry or identity"
    return doc, ""


def _key_of(raw: bytes) -> CacheKey | None:
    """The key a token file says it belongs to (checked against its name by the caller)."""
    if len(raw) > MAX_CACHE_FILE_BYTES:
        return None
    try:
        doc = jsonwire.loads(raw)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("version") != CACHE_FORMAT:
        return None
    registry, identity = doc.get("registry"), doc.get("identity")
    if not (isinstance(registry, str) and isinstance(identity, str)):
        return None
    return CacheKey(registry, identity)


def _decode(raw: bytes, key: CacheKey) -> tuple[Token | None, str]:
    """A token from a cache file's bytes, or None and why not."""
    doc, problem = _open_envelope(raw, key, MAX_CACHE_FILE_BYTES)
    if doc is None:
        return None, problem
    username, password = doc.get("username"), doc.get("password")
    expires_at, fetched_at = doc.get("expires_at"), doc.get("fetched_at")
    if not (isinstance(username, str) and isinstance(password, str) and password):
        return None, "missing username or password"
    if not (_is_number(expires_at) and _is_number(fetched_at)):
        return None, "missing expiry"
    if not plausible_lifetime(expires_at - fetched_at):  # also NaN and Infinity, which json reads
        return None, "implausible expiry"
    return Token(username, password, float(expires_at), float(fetched_at)), ""


def _decode_throttled(raw: bytes, key: CacheKey) -> tuple[Throttled | None, str]:
    """A remembered throttled fetch from a throttle file's bytes, or None and why not."""
    doc, problem = _open_envelope(raw, key, MAX_THROTTLE_FILE_BYTES)
    if doc is None:
        return None, problem
    at, until = doc.get("throttled_at"), doc.get("until")
    if not (_is_finite(at) and _is_finite(until)):  # json reads NaN and Infinity
        return None, "missing or impossible times"
    return Throttled(float(at), float(until)), ""


class _Lock:
    """Holds a locked file descriptor until the ``with`` block ends (closing releases the flock).

    A class rather than contextlib: contextlib costs the kubelet's hot path ~2 ms to import."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value: object) -> TypeGuard[float]:
    return _is_number(value) and abs(value) < float("inf")  # False for NaN too


class _Layer:
    """A cache in front of ``inner`` that shares its lock and its throttling holds: both must
    be seen by every process using the disk, so neither is ever kept in a layer."""

    def __init__(self, inner: TokenCache) -> None:
        self._inner = inner

    def lock(self, key: CacheKey) -> AbstractContextManager[None]:
        return self._inner.lock(key)

    def load_throttled(self, key: CacheKey) -> Throttled | None:
        return self._inner.load_throttled(key)

    def store_throttled(self, key: CacheKey, throttled: Throttled | None) -> None:
        self._inner.store_throttled(key, throttled)


class MemoryCache(_Layer):
    """An in-process layer (cachetools) in front of another cache, for commands that live long.

    Entries leave memory when their token stops being fresh, so memory never serves a stale
    token; the lock is the inner cache's, so processes still coordinate through the disk.
    """

    def __init__(self, inner: TokenCache, clock: Clock, maxsize: int = 256,
                 refresh_margin: float = DEFAULT_REFRESH_MARGIN) -> None:
        from cachetools import TLRUCache

        super().__init__(inner)

        def time_to_use(_key: CacheKey, token: Token, _now: float) -> float:
            return token.fresh_until(refresh_margin)

        self._memory: TLRUCache[CacheKey, Token] = TLRUCache(
            maxsize=maxsize, ttu=time_to_use, timer=clock.time
        )

    def load(self, key: CacheKey) -> Token | None:
        token = self._memory.get(key)
        if token is not None:
            return token
        token = self._inner.load(key)
        if token is not None:
            self._memory[key] = token
        return token

    def store(self, key: CacheKey, token: Token) -> None:
        self._memory[key] = token
        self._inner.store(key, token)


class Unread(_Layer):
    """A cache that reads no token but writes through, locks and keeps throttling holds like
    ``inner``: a fetch that must not be answered from the cache (a cached token the registry
    refused) still waits its turn, honours a hold, and stores what it gets."""

    def load(self, key: CacheKey) -> Token | None:
        return None

    def store(self, key: CacheKey, token: Token) -> None:
        self._inner.store(key, token)
