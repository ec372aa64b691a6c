"""Token storage (``ecrcred.cache``): files on disk, the cross-process lock, throttle files, the
memory layer. What every cache must do is ``tests/contract/test_token_cache.py``; the fetch
policy over them is ``test_fetch.py``, which shares this module's keys and helpers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ecrcred.cache import (
    CACHE_FORMAT,
    MAX_CACHE_FILE_BYTES,
    MAX_THROTTLE_FILE_BYTES,
    FileCache,
    MemoryCache,
    NullCache,
    file_stem,
)
from ecrcred.clock import SystemClock
from ecrcred.errors import AwsThrottled, DeadlineExceeded, ThrottleCoolDown
from ecrcred.fetch import COOL_DOWN, MISS, get_or_fetch
from ecrcred.files import StateDir
from ecrcred.records import CacheKey, Throttled
from ecrcred.tokens import Token
from tests.unit.fakes import T0, CountingFetch, DictCache, FakeClock, RecordingLogger

HOUR = 3600.0
# As the ECR source makes them: its own registry string, and the host messages name.
KEY = CacheKey(registry="ecr:123456789012.dkr.ecr.us-west-2.amazonaws.com",
               identity="0123456789abcdef", label="123456789012.dkr.ecr.us-west-2.amazonaws.com")
OTHER_KEY = CacheKey(registry="ecr:210987654321.dkr.ecr.eu-west-1.amazonaws.com",
                     identity="0123456789abcdef",
                     label="210987654321.dkr.ecr.eu-west-1.amazonaws.com")


def token(password: str = "first-password-value", *, fetched_at: float = T0,  # noqa: S107
          lifetime: float = 12 * HOUR) -> Token:
    return Token("AWS", password, expires_at=fetched_at + lifetime, fetched_at=fetched_at)


def write_private(path: str | Path, content: bytes) -> None:
    """A file as ecrcred itself would leave it: ours, 0600 (others' files are never believed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)


def write_atomic(directory: str, name: str, body: bytes) -> None:
    state = StateDir.open(directory, os.geteuid(), create=False)
    try:
        state.write_atomic(name, body)
    finally:
        state.close()


def file_cache(directory: Path, clock: FakeClock | None = None,
               log: RecordingLogger | None = None, lock_timeout: float = 25.0) -> FileCache:
    return FileCache(str(directory), clock or FakeClock(), log or RecordingLogger(),
                     lock_timeout=lock_timeout)


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def throttling() -> AwsThrottled:
    return AwsThrottled("ecr:GetAuthorizationToken for ECR registry x failed: "
                        "ThrottlingException: Rate exceeded", hint="try again shortly",
                        code="AWS_THROTTLING")


class TickingFetch:
    """A fetch that takes ``seconds`` of the clock (botocore's retries) and then fails or
    answers."""

    def __init__(self, clock: FakeClock, result: Token | Exception, seconds: float = 3.0):
        self.clock, self.result, self.seconds, self.calls = clock, result, seconds, 0

    def __call__(self) -> Token:
        self.calls += 1
        self.clock.advance(self.seconds)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def raising(error: BaseException) -> Callable[[], Token]:
    def fetch() -> Token:
        raise error

    return fetch


def never_called() -> Token:
    raise AssertionError("fetch must not be called during a hold")


# -- FileCache: directory, files, round trip ----------------------------------------------------

def test_store_creates_the_directory_0700_and_the_file_0600(tmp_path: Path):
    directory = tmp_path / "var" / "cache"
    cache = file_cache(directory)
    cache.store(KEY, token())
    assert mode(directory) == 0o700
    assert mode(cache.path(KEY)) == 0o600


def test_an_existing_directory_of_ours_open_to_reading_is_used_as_found_with_a_warning(
        tmp_path: Path):
    # Changed: it used to be tightened to 0700. ecrcred changes no mode it did not set (a
    # symlink or a shared directory could make that someone else's directory); files are 0600.
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)  # noqa: S103 - the mode under test
    log = RecordingLogger()
    cache = file_cache(directory, log=log)
    cache.store(KEY, token())
    assert mode(directory) == 0o755
    assert cache.load(KEY) == token()
    (warning,) = log.at("warning")
    assert str(directory) in warning and "chmod 0700" in warning


def test_a_cache_directory_removed_under_a_long_lived_process_is_made_again_on_write(
        tmp_path: Path):
    # pull-sandbox --watch keeps the directory open for days; an rm -rf must not end the cache.
    import shutil

    directory = tmp_path / "cache"
    log = RecordingLogger()
    cache = file_cache(directory, log=log)
    cache.store(KEY, token())
    shutil.rmtree(directory)
    cache.store(KEY, token())
    assert os.path.isfile(cache.path(KEY))
    with cache.lock(KEY):
        assert os.path.isfile(f"{directory}/{Path(cache.path(KEY)).stem}.lock")
    shutil.rmtree(directory)
    cache.store_throttled(KEY, Throttled(T0, T0 + 60))
    assert os.path.isfile(cache.throttled_path(KEY))
    assert log.at("warning") == []
    cache.close()


def test_store_leaves_no_temporary_files(tmp_path: Path):
    cache = file_cache(tmp_path)
    cache.store(KEY, token())
    cache.store(KEY, token("second-password-value"))
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(cache.path(KEY))]


def test_a_stored_token_loads_back_equal_in_another_instance(tmp_path: Path):
    stored = token()
    file_cache(tmp_path).store(KEY, stored)
    assert file_cache(tmp_path).load(KEY) == stored


def test_store_replaces_the_previous_token_for_the_key(tmp_path: Path):
    cache = file_cache(tmp_path)
    cache.store(KEY, token("first-password-value"))
    cache.store(KEY, token("second-password-value", fetched_at=T0 + 60))
    loaded = cache.load(KEY)
    assert loaded is not None
    assert loaded.password == "second-password-value"
    assert loaded.fetched_at == T0 + 60


def test_each_key_has_its_own_file_named_without_the_registry(tmp_path: Path):
    cache = file_cache(tmp_path)
    cache.store(KEY, token("first-password-value"))
    cache.store(OTHER_KEY, token("other-password-value"))
    assert cache.path(KEY) != cache.path(OTHER_KEY)
    assert "amazonaws" not in cache.path(KEY)
    assert cache.load(KEY).password == "first-password-value"  # type: ignore[union-attr]
    assert cache.load(OTHER_KEY).password == "other-password-value"  # type: ignore[union-attr]


def test_the_identity_is_part_of_the_key(tmp_path: Path):
    cache = file_cache(tmp_path)
    cache.store(KEY, token())
    assert cache.load(CacheKey(KEY.registry, "fedcba9876543210")) is None


def test_load_of_a_missing_file_returns_none_without_creating_anything(tmp_path: Path):
    directory = tmp_path / "cache"
    assert file_cache(directory).load(KEY) is None
    assert not directory.exists()


def _valid_doc(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "version": CACHE_FORMAT, "registry": KEY.registry, "identity": KEY.identity,
        "username": "AWS", "password": "cached-password-value",
        "expires_at": T0 + 12 * HOUR, "fetched_at": T0,
    }
    doc.update(changes)
    return doc


def _as_bytes(doc: object) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize("content", [
    pytest.param(b"", id="empty"),
    pytest.param(b"{not json", id="corrupt"),
    pytest.param(_as_bytes(_valid_doc())[:-7], id="truncated"),
    pytest.param(b"\xff\xfe garbage", id="binary"),
    pytest.param(b"[1, 2]", id="not-an-object"),
    pytest.param(_as_bytes(_valid_doc(version=CACHE_FORMAT + 1)), id="newer-version"),
    pytest.param(_as_bytes(_valid_doc(version=None)), id="no-version"),
    pytest.param(_as_bytes(_valid_doc(registry=OTHER_KEY.registry)), id="other-registry"),
    pytest.param(_as_bytes(_valid_doc(identity="someone-else")), id="other-identity"),
    pytest.param(_as_bytes(_valid_doc(password="")), id="empty-password"),
    pytest.param(_as_bytes(_valid_doc(password=None)), id="no-password"),
    pytest.param(_as_bytes(_valid_doc(username=7)), id="username-not-string"),
    pytest.param(_as_bytes(_valid_doc(expires_at="tomorrow")), id="expiry-string"),
    pytest.param(_as_bytes(_valid_doc(expires_at=True)), id="expiry-bool"),
    pytest.param(_as_bytes(_valid_doc(fetched_at=None)), id="no-fetched-at"),
    pytest.param(_as_bytes(_valid_doc(pad="x" * MAX_CACHE_FILE_BYTES)), id="oversize"),
])
def test_an_unusable_cache_file_loads_as_none_and_a_later_store_rewrites_it(
        tmp_path: Path, content: bytes):
    log = RecordingLogger()
    cache = file_cache(tmp_path, log=log)
    write_private(cache.path(KEY), content)
    assert cache.load(KEY) is None
    assert any("ignoring token cache file" in line for line in log.at("debug"))
    assert log.at("warning") == []

    cache.store(KEY, token())
    assert cache.load(KEY) == token()


def test_a_valid_file_written_by_hand_loads(tmp_path: Path):
    # The counterpart of the table above: the same document, unchanged, is accepted.
    cache = file_cache(tmp_path)
    write_private(cache.path(KEY), _as_bytes(_valid_doc()))
    assert cache.load(KEY) == Token("AWS", "cached-password-value", T0 + 12 * HOUR, T0)


def test_load_does_not_follow_a_symlink_planted_at_the_cache_path(tmp_path: Path):
    cache = file_cache(tmp_path / "cache")
    cache.store(OTHER_KEY, token())  # creates the directory
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(_as_bytes(_valid_doc()))
    os.symlink(elsewhere, cache.path(KEY))
    assert cache.load(KEY) is None


# -- FileCache: an unusable directory -----------------------------------------------------------

def test_a_directory_under_a_regular_file_degrades_to_no_cache_with_one_warning(tmp_path: Path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file")
    log = RecordingLogger()
    cache = file_cache(blocker / "cache", log=log)

    for _ in range(3):
        cache.store(KEY, token())
        with cache.lock(KEY):
            pass
        assert cache.load(KEY) is None

    warnings = log.at("warning")
    assert len(warnings) == 1
    assert str(blocker / "cache") in warnings[0]
    assert "--cache-dir" in warnings[0]
    assert blocker.read_text() == "a regular file"


def test_write_failures_after_a_good_start_warn_once(tmp_path: Path):
    directory = tmp_path / "cache"
    log = RecordingLogger()
    cache = file_cache(directory, log=log)
    cache.store(KEY, token())
    # The directory goes away under us and a regular file takes its name.
    for name in os.listdir(directory):
        os.unlink(directory / name)
    directory.rmdir()
    directory.write_text("now a file")

    for _ in range(3):
        cache.store(KEY, token())
    warnings = log.at("warning")
    assert len(warnings) == 1
    # The removed directory is opened again once, and the file at its name says why it cannot.
    assert f"cannot use token cache directory {directory} (Not a directory)" in warnings[0]
    assert directory.read_text() == "now a file"


def test_a_second_file_cache_on_the_same_bad_directory_warns_on_its_own(tmp_path: Path):
    # One warning per process (per FileCache), not one per call.
    blocker = tmp_path / "file"
    blocker.write_text("")
    logs = [RecordingLogger(), RecordingLogger()]
    for log in logs:
        cache = file_cache(blocker / "cache", log=log)
        cache.store(KEY, token())
        cache.store(OTHER_KEY, token())
    assert [len(log.at("warning")) for log in logs] == [1, 1]


# -- FileCache: the lock --------------------------------------------------------------------

_HOLD_LOCK = """
import sys, time
from pathlib import Path
from ecrcred.cache import FileCache
from ecrcred.clock import SystemClock
from ecrcred.log import StderrLogger
from ecrcred.records import CacheKey

directory, registry, identity, hold, marker = sys.argv[1:6]
cache = FileCache(directory, SystemClock(), StderrLogger())
with cache.lock(CacheKey(registry, identity)):
    print("locked", flush=True)
    time.sleep(float(hold))
    Path(marker).write_text("released")
"""


def test_the_lock_is_exclusive_across_processes(tmp_path: Path):
    directory = tmp_path / "cache"
    marker = tmp_path / "child-released"
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(directory), KEY.registry, KEY.identity, "0.4",
         str(marker)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "locked\n"
        started = time.monotonic()
        with FileCache(str(directory), SystemClock(), RecordingLogger()).lock(KEY):
            waited = time.monotonic() - started
            # We got the lock only once the child had finished its critical section.
            assert marker.read_text() == "released"
        assert waited >= 0.2
    finally:
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()  # an unclosed pipe is a ResourceWarning (an error in pytest)
    assert child.returncode == 0


def test_the_lock_is_released_when_the_block_ends(tmp_path: Path):
    clock = FakeClock()
    first, second = file_cache(tmp_path), file_cache(tmp_path, clock=clock)
    with first.lock(KEY):
        pass
    with second.lock(KEY):
        pass
    assert clock.sleeps == []


def test_locks_of_different_keys_do_not_wait_for_each_other(tmp_path: Path):
    clock = FakeClock()
    holder, other = file_cache(tmp_path), file_cache(tmp_path, clock=clock)
    with holder.lock(KEY), other.lock(OTHER_KEY):
        pass
    assert clock.sleeps == []


def test_waiting_for_the_lock_longer_than_the_timeout_raises_deadline_exceeded(tmp_path: Path):
    clock = FakeClock()
    holder = file_cache(tmp_path)
    waiter = file_cache(tmp_path, clock=clock, lock_timeout=2.0)
    start = clock.monotonic()
    with holder.lock(KEY), pytest.raises(DeadlineExceeded) as caught, waiter.lock(KEY):
        pytest.fail("the lock was acquired while another holder had it")
    assert clock.monotonic() - start >= 2.0
    assert clock.monotonic() - start < 2.1
    assert max(clock.sleeps) <= 0.02, "the poll interval stays short"
    assert KEY.registry in caught.value.message
    assert ".lock" in caught.value.hint
    assert caught.value.exit_code == 5


def test_the_lock_file_is_0600(tmp_path: Path):
    cache = file_cache(tmp_path)
    with cache.lock(KEY):
        pass
    (lock_file,) = [name for name in os.listdir(tmp_path) if name.endswith(".lock")]
    assert mode(tmp_path / lock_file) == 0o600


# -- NullCache --------------------------------------------------------------------------------

def test_null_cache_never_returns_what_was_stored():
    cache = NullCache()
    cache.store(KEY, token())
    with cache.lock(KEY):
        assert cache.load(KEY) is None


# -- FileCache: the throttle file ---------------------------------------------------------------

def test_a_throttled_fetch_holds_back_another_process_sharing_the_directory(tmp_path: Path):
    clock, log = FakeClock(), RecordingLogger()
    with pytest.raises(AwsThrottled):
        get_or_fetch(file_cache(tmp_path, clock), KEY, CountingFetch(throttling()), clock, log)
    clock.advance(1)
    with pytest.raises(ThrottleCoolDown):
        get_or_fetch(file_cache(tmp_path, clock), KEY, never_called, clock, log)
    clock.advance(COOL_DOWN.longest)
    fetch = CountingFetch(token("fetched-password-value", fetched_at=clock.now))
    _token, how = get_or_fetch(file_cache(tmp_path, clock), KEY, fetch, clock, log)
    assert (how, fetch.calls) == (MISS, 1)
    assert not os.path.exists(file_cache(tmp_path).throttled_path(KEY)), "cleared on success"


def test_the_throttle_file_round_trips_is_0600_and_holds_no_secret(tmp_path: Path):
    cache = file_cache(tmp_path)
    cache.store(KEY, token("the-password-value"))
    cache.store_throttled(KEY, Throttled(T0, T0 + 6.5))
    assert file_cache(tmp_path).load_throttled(KEY) == Throttled(T0, T0 + 6.5)
    path = cache.throttled_path(KEY)
    assert mode(path) == 0o600
    assert os.path.basename(path) == f"{file_stem(KEY)}.throttled"
    assert "the-password-value" not in Path(path).read_text()
    assert file_cache(tmp_path).load(KEY) == token("the-password-value"), "token file untouched"
    cache.store_throttled(KEY, None)
    assert not os.path.exists(path)
    cache.store_throttled(KEY, None)  # clearing nothing is fine


def throttle_doc(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {"version": CACHE_FORMAT, "registry": KEY.registry,
                              "identity": KEY.identity, "throttled_at": T0, "until": T0 + 5}
    doc.update(changes)
    return doc


@pytest.mark.parametrize("content", [
    b"",
    b"\x00\xff garbage",
    json.dumps(throttle_doc())[:30].encode(),
    b"[1, 2]",
    json.dumps(throttle_doc(version=0)).encode(),
    json.dumps(throttle_doc(version=2)).encode(),
    json.dumps({"version": CACHE_FORMAT}).encode(),
    json.dumps(throttle_doc(registry=OTHER_KEY.registry)).encode(),
    json.dumps(throttle_doc(until="soon")).encode(),
    json.dumps(throttle_doc(until=True)).encode(),
    json.dumps(throttle_doc(until=None)).encode(),
    b'{"version": 1, "registry": "%s", "identity": "%s", "throttled_at": 1, "until": NaN}'
    % (KEY.registry.encode(), KEY.identity.encode()),
    b'{"version": 1, "registry": "%s", "identity": "%s", "throttled_at": 1, "until": Infinity}'
    % (KEY.registry.encode(), KEY.identity.encode()),
    json.dumps(throttle_doc(throttled_at=float("-inf"))).encode(),
    json.dumps(throttle_doc(until=T0 + 10 * 365 * 24 * HOUR)).encode(),
    json.dumps(throttle_doc(pad="x" * MAX_THROTTLE_FILE_BYTES)).encode(),
], ids=["empty", "binary", "truncated", "array", "version-0", "version-2", "no-times",
        "other-key", "string", "bool", "null", "nan", "infinity", "at-minus-infinity", "ten-years",
        "too-large"])
def test_a_corrupt_old_or_far_future_throttle_file_is_ignored_and_the_fetch_goes_ahead(
        tmp_path: Path, content: bytes):
    clock, log = FakeClock(), RecordingLogger()
    cache = file_cache(tmp_path, clock, log)
    cache.store(KEY, token(fetched_at=T0 - 12 * HOUR))  # expired: nothing to fall back on
    write_private(cache.throttled_path(KEY), content)
    fetch = CountingFetch(token("fetched-password-value"))
    assert get_or_fetch(cache, KEY, fetch, clock, log) == (token("fetched-password-value"), MISS)
    assert fetch.calls == 1
    assert not os.path.exists(cache.throttled_path(KEY)), "replaced by the success"


def test_a_fifo_or_directory_at_the_throttle_path_neither_blocks_nor_crashes(tmp_path: Path):
    clock = FakeClock()
    cache = file_cache(tmp_path, clock)
    cache.store(KEY, token())
    os.mkfifo(cache.throttled_path(KEY))
    assert cache.load_throttled(KEY) is None
    os.unlink(cache.throttled_path(KEY))
    os.mkdir(cache.throttled_path(KEY))
    assert cache.load_throttled(KEY) is None
    cache.store_throttled(KEY, Throttled(T0, T0 + 5))  # cannot replace a directory: no error
    cache.store_throttled(KEY, None)


def test_a_symlink_at_the_throttle_path_is_not_followed(tmp_path: Path):
    cache = file_cache(tmp_path / "cache")
    cache.store(KEY, token())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(json.dumps(throttle_doc()))
    os.symlink(elsewhere, cache.throttled_path(KEY))
    assert cache.load_throttled(KEY) is None


def test_remembering_throttling_in_an_unusable_directory_is_silently_skipped(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    log = RecordingLogger()
    cache = file_cache(blocker / "cache", log=log)
    cache.store_throttled(KEY, Throttled(T0, T0 + 5))
    cache.store_throttled(KEY, None)
    assert cache.load_throttled(KEY) is None
    # No exception, and at most the one warning an unusable cache directory gets anyway.
    assert len(log.at("warning")) <= 1, log.at("warning")
    assert all("cache" in line for line in log.at("warning"))
    cache.store_throttled(KEY, Throttled(T0, T0 + 5))
    assert len(log.at("warning")) <= 1, "the directory's warning is given once"


# -- MemoryCache ------------------------------------------------------------------------------

def test_memory_cache_serves_repeated_loads_from_memory():
    inner, clock = DictCache(), FakeClock()
    inner.tokens[KEY] = token()
    cache = MemoryCache(inner, clock)
    assert cache.load(KEY) == token()
    assert cache.load(KEY) == token()
    assert inner.loads == 1


def test_memory_cache_store_writes_through_and_is_served_from_memory():
    inner, clock = DictCache(), FakeClock()
    cache = MemoryCache(inner, clock)
    cache.store(KEY, token())
    assert inner.stores == [(KEY, token())]
    inner.tokens.clear()
    assert cache.load(KEY) == token()
    assert inner.loads == 0


def test_memory_cache_drops_an_entry_once_its_token_is_not_fresh():
    inner, clock = DictCache(), FakeClock()
    cache = MemoryCache(inner, clock)
    cache.store(KEY, token())
    inner.tokens.clear()  # only memory could answer now

    clock.now = T0 + 11 * HOUR - 1  # still fresh
    assert cache.load(KEY) == token()
    clock.now = T0 + 11 * HOUR  # the instant it stops being fresh
    assert not token().is_fresh(clock.now)
    assert cache.load(KEY) is None
    assert inner.loads == 1


def test_memory_cache_does_not_keep_a_stale_token_it_loaded_from_disk():
    inner, clock = DictCache(), FakeClock(now=T0 + 11.5 * HOUR)
    inner.tokens[KEY] = token()
    cache = MemoryCache(inner, clock)
    assert cache.load(KEY) == token()  # returned, so get_or_fetch can judge it
    assert cache.load(KEY) == token()
    assert inner.loads == 2, "the stale token was not kept in memory"


def test_memory_cache_uses_the_refresh_margin_it_was_given():
    inner, clock = DictCache(), FakeClock(now=T0 + 11.5 * HOUR)
    cache = MemoryCache(inner, clock, refresh_margin=600)
    cache.store(KEY, token())
    inner.tokens.clear()
    assert cache.load(KEY) == token()


def test_memory_cache_locks_through_the_inner_cache():
    inner = DictCache()
    with MemoryCache(inner, FakeClock()).lock(KEY):
        pass
    assert inner.locks == 1


# -- temp files left by writers killed mid-write ---------------------------------------------

def test_a_write_sweeps_old_leftover_temp_files_of_its_name_and_nothing_else(tmp_path: Path):
    name = "abc.json"
    old_leftover = tmp_path / f".{name}.4242.tmp"  # a writer SIGKILLed long ago
    young = tmp_path / f".{name}.4343.tmp"  # a writer at work right now (another namespace)
    other = tmp_path / ".def.json.4242.tmp"  # another key's, for its own writer to sweep
    for path in (old_leftover, young, other):
        path.write_bytes(b'{"password": "left-behind"}')
    past = time.time() - 3600
    os.utime(old_leftover, (past, past))
    os.utime(other, (past, past))
    write_atomic(str(tmp_path), name, b"{}")
    assert (tmp_path / name).read_bytes() == b"{}"
    assert not old_leftover.exists()
    assert young.exists() and other.exists()


def test_a_sweep_that_fails_does_not_fail_the_write(tmp_path: Path, monkeypatch):
    def broken(_path):
        raise PermissionError("scandir refused")

    monkeypatch.setattr(os, "scandir", broken)
    write_atomic(str(tmp_path), "abc.json", b"{}")
    assert (tmp_path / "abc.json").read_bytes() == b"{}"


def test_a_writer_never_touches_a_temp_file_of_another_writer_with_the_same_pid(tmp_path: Path):
    # Same pid, other PID namespace (the DaemonSet's watcher and a kubelet exec on the host).
    theirs = tmp_path / f".abc.json.{os.getpid()}.tmp"
    theirs.write_bytes(b"half of their write")
    write_atomic(str(tmp_path), "abc.json", b"{}")
    assert theirs.read_bytes() == b"half of their write"
    assert (tmp_path / "abc.json").read_bytes() == b"{}"
