"""The node agent's refresh ahead (``ecrcred.refresh.Refresher``) with a fake clock: its
schedule and jitter, used and unused tokens, other identities, throttling holds, an outage; and
the token cache's last-use stamps it reads (``FileCache.entries``, ``counts_use``)."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest

from ecrcred.cache import FileCache, file_stem
from ecrcred.config.rules import from_compiled
from ecrcred.config.schema import compile_text
from ecrcred.errors import AwsError, AwsThrottled, ConfigError
from ecrcred.fetch import COOL_DOWN, get_or_fetch
from ecrcred.records import CacheKey, Throttled
from ecrcred.refresh import Refresher, RefreshPolicy
from ecrcred.sources import kubelet_cache_duration
from ecrcred.tokens import Token
from tests.unit.fakes import T0, CountingFetch, DictCache, FakeClock, RecordingLogger

HOUR = 3600.0
HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
KEY = CacheKey(f"ecr:{HOST}", "node-identity", label=HOST)


def token(password: str = "first-password-value", *, fetched_at: float = T0,  # noqa: S107
          lifetime: float = 12 * HOUR) -> Token:
    return Token("AWS", password, expires_at=fetched_at + lifetime, fetched_at=fetched_at)


class Ledger(DictCache):
    """The tests' dict cache with last uses, as ``FileCache.entries`` gives them."""

    def __init__(self) -> None:
        super().__init__()
        self.used: dict[CacheKey, float] = {}

    def entries(self) -> list[tuple[CacheKey, Token, float]]:
        return [(key, tok, self.used.get(key, 0.0)) for key, tok in self.tokens.items()]


class Source:
    """Claims ``HOST`` (as a host or an image of it) with ``key``: the agent's own identity."""

    name = "fake"

    def __init__(self, fetch: CountingFetch, key: CacheKey = KEY) -> None:
        self.fetch = fetch
        self.key = key

    def lookup(self, image: str, pod: object = None) -> object:
        from ecrcred.records import Lookup

        if image.split("/", 1)[0] != HOST:
            return None
        return Lookup(HOST, self.key, self.fetch, f"ECR registry {HOST}")


def refresher(ledger: Ledger, fetch: CountingFetch, clock: FakeClock, *,
              rand: float = 0.5, key: CacheKey = KEY,
              log: RecordingLogger | None = None) -> Refresher:
    return Refresher(ledger, ledger, Source(fetch, key), clock,  # type: ignore[arg-type]
                     log or RecordingLogger(), rand=lambda: rand)


def used_now(ledger: Ledger, clock: FakeClock, key: CacheKey = KEY) -> None:
    ledger.used[key] = clock.time()


# -- the window -----------------------------------------------------------------------------

def test_a_12_hour_token_is_refreshed_between_9_and_10_hours_before_it_stops_being_fresh():
    start, end = token().refresh_window()
    assert (start - T0, end - T0) == (9 * HOUR, 10 * HOUR)
    assert end < token().fresh_until()


def test_the_kubelet_is_told_to_ask_again_only_after_the_refresh_window_has_closed():
    # provider.get_credentials tells the kubelet token.cache_duration(now): its re-ask lands
    # after the agent's refresh, so it gets the new token from the cache.
    for now in (T0, T0 + 4 * HOUR, T0 + 8.9 * HOUR):
        told = kubelet_cache_duration(None, fresh_for=token().cache_duration(now))
        assert now + told >= token().refresh_window()[1]
        assert now + told <= token().fresh_until()


# -- the schedule ---------------------------------------------------------------------------

def test_a_used_token_is_fetched_once_at_its_jittered_moment_and_planned_again():
    clock, ledger = FakeClock(), Ledger()
    ledger.tokens[KEY] = token()
    used_now(ledger, clock)
    fresh = token("second-password-value", fetched_at=T0 + 9.5 * HOUR)
    fetch = CountingFetch(fresh)
    agent = refresher(ledger, fetch, clock, rand=0.5)
    while True:
        wait = agent.tick()
        if fetch.calls:
            break
        assert wait <= 60.0
        clock.advance(wait)
        assert clock.time() < T0 + 10 * HOUR
    assert clock.time() - T0 == pytest.approx(9.5 * HOUR, abs=0.1)
    assert ledger.tokens[KEY] == fresh
    assert agent.calls == 1
    # The next refresh of the new token is in its own window; nothing before.
    used_now(ledger, clock)
    clock.advance(agent.tick())
    assert fetch.calls == 1


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.999])
def test_jitter_keeps_the_refresh_inside_the_window(rand: float):
    clock, ledger = FakeClock(), Ledger()
    ledger.tokens[KEY] = token()
    used_now(ledger, clock)
    fetch = CountingFetch(token("second-password-value", fetched_at=T0 + 10 * HOUR))
    agent = refresher(ledger, fetch, clock, rand=rand)
    while True:
        wait = agent.tick()
        if fetch.calls:
            break
        clock.advance(wait)
    start, end = token().refresh_window()
    assert start <= clock.time() <= end
    assert clock.time() == pytest.approx(start + (end - start) * rand, abs=0.1)


def test_a_token_nobody_used_within_its_life_is_never_refreshed():
    clock, ledger = FakeClock(), Ledger()
    ledger.tokens[KEY] = token()
    ledger.used[KEY] = T0 - 13 * HOUR  # last used before this token was even fetched
    fetch = CountingFetch()
    agent = refresher(ledger, fetch, clock)
    for _ in range(2000):
        clock.advance(agent.tick())
    assert clock.time() > token().expires_at
    assert fetch.calls == 0


def test_a_used_token_stops_being_refreshed_once_its_last_use_is_a_lifetime_ago():
    clock, ledger = FakeClock(), Ledger()
    ledger.tokens[KEY] = token()
    used_now(ledger, clock)  # one use at boot, then none
    fetch = CountingFetch(*[token(f"password-number-{n}", fetched_at=T0 + n * 9.5 * HOUR)
                            for n in range(1, 4)])
    agent = refresher(ledger, fetch, clock)
    while clock.time() < T0 + 72 * HOUR:
        clock.advance(agent.tick())
    assert fetch.calls == 1  # the use at boot bought one refresh, no more


def test_a_token_of_another_identity_is_left_to_the_executions():
    clock, ledger = FakeClock(), Ledger()
    pods_role = CacheKey(f"ecr:{HOST}", "pod-role-identity")
    ledger.tokens[pods_role] = token()
    used_now(ledger, clock, pods_role)
    fetch = CountingFetch()
    log = RecordingLogger()
    agent = refresher(ledger, fetch, clock, log=log)
    while clock.time() < token().expires_at:
        clock.advance(agent.tick())
    assert fetch.calls == 0
    assert any("another AWS identity" in line for line in log.at("info"))


def test_a_throttling_hold_is_respected_and_the_refresh_comes_after_it():
    clock, ledger = FakeClock(), Ledger()
    ledger.tokens[KEY] = token()
    used_now(ledger, clock)
    fresh = token("second-password-value", fetched_at=T0 + 9.5 * HOUR)
    fetch = CountingFetch(fresh)
    agent = refresher(ledger, fetch, clock, rand=0.0)
    start = token().refresh_window()[0]
    clock.advance(start - clock.time() - 1)
    hold_end = clock.time() + 1 + COOL_DOWN.length
    ledger.throttled[KEY] = Throttled(clock.time(), hold_end)  # an execution was throttled
    while fetch.calls == 0:
        clock.advance(agent.tick())
        if clock.time() < hold_end:
            assert fetch.calls == 0
    assert clock.time() >= hold_end
    assert ledger.tokens[KEY] == fresh


def test_a_throttled_refresh_is_retried_once_the_hold_it_set_is_over():
    clock, ledger = FakeClock(), Ledger()
    ledger.tokens[KEY] = token()
    used_now(ledger, clock)
    fresh = token("second-password-value", fetched_at=T0 + 9.5 * HOUR)
    fetch = CountingFetch(AwsThrottled("Rate exceeded"), fresh)
    agent = refresher(ledger, fetch, clock, rand=0.0)
    attempts: list[float] = []
    while ledger.tokens[KEY] != fresh:
        calls = fetch.calls
        wait = agent.tick()
        if fetch.calls != calls:
            attempts.append(clock.time())
        clock.advance(wait)
    assert len(attempts) == 2
    assert attempts[1] - attempts[0] >= COOL_DOWN.length  # the hold, kept


def test_an_outage_keeps_the_old_token_retries_with_backoff_and_then_refreshes():
    clock, ledger = FakeClock(), Ledger()
    old = token()
    ledger.tokens[KEY] = old
    used_now(ledger, clock)
    outage = [AwsError("ECR is down") for _ in range(5)]
    fresh = token("second-password-value", fetched_at=T0 + 9.7 * HOUR)
    fetch = CountingFetch(*outage, fresh)
    log = RecordingLogger()
    agent = refresher(ledger, fetch, clock, rand=0.0, log=log)
    attempts: list[float] = []
    while ledger.tokens[KEY] == old:
        calls = fetch.calls
        clock.advance(agent.tick())
        if fetch.calls != calls:
            attempts.append(clock.time())
        if ledger.tokens[KEY] == old:
            # An execution now is still a hit on the old token, never a failure.
            served, how = get_or_fetch(ledger, KEY, fetch, clock, log)
            assert (served, how) == (old, "hit")
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0]  # backing off
    assert all(gap <= 300.0 for gap in gaps)
    assert fetch.calls == 6
    assert len(log.at("warning")) == 5
    assert "served for" in log.at("warning")[0]


def test_a_token_refreshed_meanwhile_by_another_process_is_not_fetched_again():
    clock, ledger = FakeClock(), Ledger()
    ledger.tokens[KEY] = token()
    used_now(ledger, clock)
    fetch = CountingFetch()
    agent = refresher(ledger, fetch, clock, rand=0.0)
    clock.advance(agent.tick())
    clock.advance(token().refresh_window()[0] - clock.time() - 1)
    ledger.tokens[KEY] = token("from-an-execution", fetched_at=clock.time())
    for _ in range(50):
        clock.advance(min(agent.tick(), 60.0))
    assert fetch.calls == 0


def test_prefetch_fetches_what_is_missing_and_calls_nothing_for_a_fresh_token():
    clock, ledger = FakeClock(), Ledger()
    fetch = CountingFetch(token())
    agent = refresher(ledger, fetch, clock)
    agent.prefetch([HOST, f"{HOST}/eks/pause:3.9", "quay.io/unknown"])
    assert fetch.calls == 1
    assert ledger.tokens[KEY] == token()
    assert agent.calls == 1


def test_prefetch_failure_is_a_warning_and_leaves_the_rest_to_the_executions():
    clock, ledger = FakeClock(), Ledger()
    log = RecordingLogger()
    agent = refresher(ledger, CountingFetch(AwsError("no network")), clock, log=log)
    agent.prefetch([HOST])
    assert KEY not in ledger.tokens
    assert "executions will fetch it" in log.at("warning")[0]


def test_run_prefetches_then_ticks_until_stopped_and_outlives_a_bug():
    import threading

    clock, ledger = FakeClock(), Ledger()
    stop = threading.Event()
    log = RecordingLogger()
    fetch = CountingFetch(RuntimeError("a bug"))
    agent = refresher(ledger, fetch, clock, log=log)
    ticks: list[float] = []

    def tick() -> float:
        ticks.append(clock.time())
        if len(ticks) == 2:
            stop.set()
            raise ValueError("another bug")
        return 0.0

    agent.tick = tick  # type: ignore[method-assign]
    agent.run(stop, [HOST])
    assert fetch.calls == 1 and len(ticks) == 2
    assert [line.split(" error ")[1].split(";")[0] for line in log.at("warning")] == [
        "RuntimeError", "ValueError"]


def test_the_keeper_and_the_refresher_fetch_through_the_shared_source_one_at_a_time():
    import threading

    from ecrcred.commands.pull_sandbox import OneAtATime

    running, most = [0], [0]

    def slow_fetch() -> Token:
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.02)
        running[0] -= 1
        return token()

    shared = OneAtATime(Source(slow_fetch))  # type: ignore[arg-type]
    lookup = shared.lookup(HOST, None)
    assert lookup is not None and lookup.cache_key == KEY
    assert shared.lookup("quay.io/x", None) is None
    threads = [threading.Thread(target=lookup.fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1


# -- the last-use stamps on disk --------------------------------------------------------------

def _cache(tmp_path: Path, clock: FakeClock, counts_use: bool = True) -> FileCache:
    return FileCache(str(tmp_path / "cache"), clock, RecordingLogger(), counts_use=counts_use)


def _mtime(tmp_path: Path, key: CacheKey = KEY) -> float:
    return os.stat(tmp_path / "cache" / f"{file_stem(key)}.json").st_mtime


def test_a_hit_stamps_the_token_file_as_used_and_the_agents_loads_do_not(tmp_path: Path):
    clock = FakeClock(now=time.time())
    cache = _cache(tmp_path, clock)
    cache.store(KEY, token(fetched_at=clock.now))
    path = tmp_path / "cache" / f"{file_stem(KEY)}.json"
    os.utime(path, (1000.0, 1000.0))
    assert _cache(tmp_path, clock, counts_use=False).load(KEY) is not None
    assert _mtime(tmp_path) == 1000.0
    assert cache.load(KEY) is not None
    assert _mtime(tmp_path) > time.time() - 60


def test_the_agents_store_carries_the_last_use_over_and_a_new_file_is_unused(tmp_path: Path):
    clock = FakeClock(now=time.time())
    agent = _cache(tmp_path, clock, counts_use=False)
    agent.store(KEY, token(fetched_at=clock.now))
    assert _mtime(tmp_path) == 0.0  # never used by an execution
    os.utime(tmp_path / "cache" / f"{file_stem(KEY)}.json", (5000.0, 5000.0))
    agent.store(KEY, token("second-password-value", fetched_at=clock.now))
    assert _mtime(tmp_path) == 5000.0
    # An execution's own store (a miss) is a use.
    _cache(tmp_path, clock).store(KEY, token("third-password-value", fetched_at=clock.now))
    assert _mtime(tmp_path) > time.time() - 60


def test_entries_lists_the_tokens_with_their_last_use_and_skips_what_is_not_a_token(
        tmp_path: Path):
    clock = FakeClock(now=time.time())
    cache = _cache(tmp_path, clock)
    other = CacheKey("ecr:210987654321.dkr.ecr.eu-west-1.amazonaws.com", "node-identity")
    cache.store(KEY, token(fetched_at=clock.now))
    cache.store(other, token(fetched_at=clock.now))
    directory = tmp_path / "cache"
    os.utime(directory / f"{file_stem(other)}.json", (7.0, 7.0))
    # A copy of a token file under another name, and a compiled config: neither is listed.
    (directory / "0000copy.json").write_bytes((directory / f"{file_stem(KEY)}.json").read_bytes())
    os.chmod(directory / "0000copy.json", 0o600)
    (directory / "config-0123456789abcdef.json").write_text("{}")
    os.chmod(directory / "config-0123456789abcdef.json", 0o600)
    found = {key: (tok, used) for key, tok, used in cache.entries()}
    assert set(found) == {KEY, other}
    assert found[other] == (token(fetched_at=clock.now), 7.0)
    assert _cache(tmp_path / "none", clock).entries() == []


def test_the_refresher_over_the_file_cache_refreshes_a_used_token_once(tmp_path: Path):
    clock = FakeClock(now=time.time())
    executions = _cache(tmp_path, clock)
    agents = _cache(tmp_path, clock, counts_use=False)
    lifetime = 120.0
    executions.store(KEY, token(fetched_at=clock.now, lifetime=lifetime))
    fetch = CountingFetch(token("second-password-value", fetched_at=clock.now + 45,
                                lifetime=lifetime))
    agent = Refresher(agents, agents, Source(fetch), clock, RecordingLogger(),  # type: ignore[arg-type]
                      RefreshPolicy(), rand=lambda: 0.5)
    start = clock.time()
    while clock.time() < start + 60:
        clock.advance(agent.tick())
    assert fetch.calls == 1
    assert executions.load(KEY).password == "second-password-value"  # type: ignore[union-attr]


# -- the config ---------------------------------------------------------------------------------

HEADER = "apiVersion: ecrcred.io/v1alpha1\nkind: EcrcredConfig\n"


def test_refresh_prefetch_compiles_into_the_config_records():
    text = HEADER + f"refresh:\n  prefetch: [{HOST}, '{HOST}/eks/pause:3.9']\n"
    config = from_compiled(compile_text(text, "/etc/ecrcred/config.yaml"), "/x", "default")
    assert config.prefetch == (HOST, f"{HOST}/eks/pause:3.9")
    assert config.refresh_enabled is True
    off = from_compiled(compile_text(HEADER + "refresh: {enabled: false}\n", "/x"), "/x", "x")
    assert (off.refresh_enabled, off.prefetch) == (False, ())


@pytest.mark.parametrize("entry", ["'*.dkr.ecr.us-west-2.amazonaws.com'", "'https://quay.io'",
                                   "''"])
def test_a_prefetch_entry_that_is_not_an_image_or_host_is_refused(entry: str):
    with pytest.raises(ConfigError, match=r"refresh\.prefetch\[0\]"):
        compile_text(HEADER + f"refresh:\n  prefetch: [{entry!s}]\n", "/x")


def test_a_config_compiled_before_refresh_existed_means_the_defaults():
    compiled = compile_text(HEADER, "/x")
    del compiled["refresh"]
    config = from_compiled(compiled, "/x", "default")
    assert (config.refresh_enabled, config.prefetch) == (True, ())
