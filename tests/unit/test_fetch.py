"""The fetch policy (``ecrcred.fetch.get_or_fetch``): hits, misses and the lock, the last
resort, and the hold after throttling, over the tests' dict cache (and the real caches where
sharing between processes is the point). Storage itself is ``test_cache.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecrcred.cache import MemoryCache, NullCache
from ecrcred.deadline import Expired
from ecrcred.errors import AwsError, AwsThrottled, DeadlineExceeded, SourceError, ThrottleCoolDown
from ecrcred.fetch import (
    COOL_DOWN,
    HIT,
    HOLD_MARGIN,
    LAST_RESORT,
    MISS,
    CoolDownPolicy,
    get_or_fetch,
)
from ecrcred.records import CacheKey, Throttled
from ecrcred.tokens import DEFAULT_REFRESH_MARGIN
from tests.unit.fakes import T0, CountingFetch, DictCache, FakeClock, RecordingLogger
from tests.unit.test_cache import (
    HOUR,
    KEY,
    OTHER_KEY,
    TickingFetch,
    file_cache,
    never_called,
    raising,
    throttling,
    token,
)

# -- get_or_fetch -----------------------------------------------------------------------------

def test_get_or_fetch_serves_a_fresh_cached_token_without_locking_or_fetching():
    cache, fetch = DictCache(), CountingFetch()
    cache.tokens[KEY] = token()
    clock = FakeClock(now=T0 + HOUR)
    assert get_or_fetch(cache, KEY, fetch, clock, RecordingLogger()) == (token(), HIT)
    assert (fetch.calls, cache.locks, cache.stores) == (0, 0, [])


def test_get_or_fetch_on_a_miss_fetches_once_under_the_lock_and_stores():
    cache, new = DictCache(), token("fetched-password-value")
    fetch = CountingFetch(new)
    assert get_or_fetch(cache, KEY, fetch, FakeClock(), RecordingLogger()) == (new, MISS)
    assert fetch.calls == 1
    assert cache.locks == 1
    assert cache.stores == [(KEY, new)]


def test_get_or_fetch_replaces_a_stale_token():
    cache = DictCache()
    cache.tokens[KEY] = token("stale-password-value")
    new = token("fetched-password-value", fetched_at=T0 + 11.5 * HOUR)
    clock = FakeClock(now=T0 + 11.5 * HOUR)
    assert get_or_fetch(cache, KEY, CountingFetch(new), clock, RecordingLogger()) == (new, MISS)
    assert cache.tokens[KEY] == new


def test_get_or_fetch_reads_again_after_the_lock_and_uses_a_concurrent_refresh():
    refreshed = token("refreshed-by-another-process", fetched_at=T0 + 11.5 * HOUR)

    def another_process_refreshes(cache: DictCache, key: CacheKey) -> None:
        cache.tokens[key] = refreshed

    cache = DictCache(on_lock=another_process_refreshes)
    cache.tokens[KEY] = token("stale-password-value")
    fetch = CountingFetch()
    clock = FakeClock(now=T0 + 11.5 * HOUR)
    assert get_or_fetch(cache, KEY, fetch, clock, RecordingLogger()) == (refreshed, HIT)
    assert fetch.calls == 0
    assert cache.stores == []
    assert cache.loads == 2


@pytest.mark.parametrize(("refresh_margin", "how"), [(600.0, HIT), (DEFAULT_REFRESH_MARGIN, MISS)])
def test_get_or_fetch_honours_the_refresh_margin(refresh_margin: float, how: str):
    cache = DictCache()
    cache.tokens[KEY] = token()
    clock = FakeClock(now=T0 + 11.5 * HOUR)  # 30 minutes left
    fetch = CountingFetch(token("fetched-password-value", fetched_at=clock.now))
    _token, result = get_or_fetch(cache, KEY, fetch, clock, RecordingLogger(),
                                  refresh_margin=refresh_margin)
    assert result == how


@pytest.mark.parametrize("remaining", [30 * 60.0, 300.0])
def test_get_or_fetch_serves_a_stale_unexpired_token_as_last_resort_when_the_source_fails(
        remaining: float):
    cache, log = DictCache(), RecordingLogger()
    stale = token("stale-password-value")
    cache.tokens[KEY] = stale
    clock = FakeClock(now=stale.expires_at - remaining)
    error = AwsError("ecr:GetAuthorizationToken failed: ThrottlingException",
                     hint="try again shortly", code="AWS_THROTTLING")
    result = get_or_fetch(cache, KEY, CountingFetch(error), clock, log)
    assert result == (stale, LAST_RESORT)
    assert cache.stores == []
    (warning,) = log.at("warning")
    assert "ThrottlingException" in warning
    assert KEY.registry in warning
    assert f"expires in {int(remaining // 60)} min" in warning
    assert "stale-password-value" not in warning


@pytest.mark.parametrize(("cached_lifetime_left", "why"), [
    (299.0, "too close to expiry"),
    (0.0, "expires now"),
    (-HOUR, "expired an hour ago"),
    (None, "nothing cached"),
])
def test_get_or_fetch_reraises_the_source_error_when_no_cached_token_is_servable(
        cached_lifetime_left: float | None, why: str):
    cache = DictCache()
    now = T0 + 12 * HOUR
    if cached_lifetime_left is not None:
        cache.tokens[KEY] = token(fetched_at=now + cached_lifetime_left - 12 * HOUR)
    error = SourceError("the source failed")
    with pytest.raises(SourceError) as caught:
        get_or_fetch(cache, KEY, CountingFetch(error), FakeClock(now=now), RecordingLogger())
    assert caught.value is error, why


def test_get_or_fetch_does_not_use_last_resort_for_errors_other_than_source_errors():
    cache = DictCache()
    stale = token()
    cache.tokens[KEY] = stale
    clock = FakeClock(now=stale.expires_at - 1800)
    with pytest.raises(DeadlineExceeded):
        get_or_fetch(cache, KEY, CountingFetch(DeadlineExceeded("took too long")), clock,
                     RecordingLogger())


@pytest.mark.parametrize("fetch_fails", [False, True])
def test_get_or_fetch_never_returns_an_expired_token(fetch_fails: bool):
    cache = DictCache()
    expired = token("expired-password-value")
    cache.tokens[KEY] = expired
    now = expired.expires_at + 1
    new = token("fetched-password-value", fetched_at=now)
    fetch = CountingFetch(SourceError("down") if fetch_fails else new)
    try:
        served, _how = get_or_fetch(cache, KEY, fetch, FakeClock(now=now), RecordingLogger())
    except SourceError:
        assert fetch_fails
    else:
        assert not fetch_fails
        assert served == new
        assert not served.is_expired(now)


def test_get_or_fetch_over_file_caches_fetches_once_for_two_processes(tmp_path: Path):
    clock, log = FakeClock(), RecordingLogger()
    fetch = CountingFetch(token("fetched-password-value"))
    first = get_or_fetch(file_cache(tmp_path, clock), KEY, fetch, clock, log)
    second = get_or_fetch(file_cache(tmp_path, clock), KEY, fetch, clock, log)
    assert first == (token("fetched-password-value"), MISS)
    assert second == (token("fetched-password-value"), HIT)
    assert fetch.calls == 1


# -- get_or_fetch: holding back after throttling ---------------------------------------------

def test_a_throttled_fetch_makes_the_next_caller_fail_at_once_without_fetching():
    cache, clock, log = DictCache(), FakeClock(), RecordingLogger()
    with pytest.raises(AwsThrottled):
        get_or_fetch(cache, KEY, TickingFetch(clock, throttling()), clock, log, rand=lambda: 0.0)
    assert cache.throttled[KEY] == Throttled(T0 + 3, T0 + 3 + COOL_DOWN.length)

    clock.advance(2)  # another execution, queued on the lock behind the throttled one
    with pytest.raises(ThrottleCoolDown) as caught:
        get_or_fetch(cache, KEY, never_called, clock, log)
    error = caught.value
    assert error.code == "AWS_THROTTLED_RECENTLY"
    assert error.retry_after == pytest.approx(3.0)
    line = error.one_line()
    host = KEY.registry.removeprefix("ecr:")
    assert f"AWS throttled the token request for {host} 2s ago" in line
    assert "in 3.0s" in line
    assert "22:13:28Z" in line  # T0 + 3 + 5, when it is worth asking again
    assert line.endswith("[AWS_THROTTLED_RECENTLY]")
    assert isinstance(error, SourceError), "the CLI's one error path: exit 1, one line"


def test_a_caller_with_time_waits_the_hold_out_with_the_lock_held_then_fetches_once():
    cache, log = DictCache(), RecordingLogger()
    slept_holding_the_lock = []

    class Clock(FakeClock):
        def sleep(self, seconds: float) -> None:
            slept_holding_the_lock.append(cache.held)
            super().sleep(seconds)

    clock = Clock()
    cache.throttled[KEY] = Throttled(clock.now - 2, clock.now + 3)
    fetch = TickingFetch(clock, token(fetched_at=T0 + 3.05), seconds=0.0)
    got, how = get_or_fetch(cache, KEY, fetch, clock, log, wait_until=clock.mono + 3.5)
    assert (got, how, fetch.calls) == (fetch.result, MISS, 1)
    assert clock.sleeps == [pytest.approx(3.0 + HOLD_MARGIN)], "slept exactly to the hold's end"
    assert slept_holding_the_lock == [True], "the queue behind waits on the lock, not on AWS"
    assert KEY not in cache.throttled, "the fetch that followed cleared the hold"
    (info,) = [line for line in log.at("info") if "waiting for the hold to end" in line]
    assert "AWS throttled the token request" in info
    # the queue behind it now hits the new token without any call
    assert get_or_fetch(cache, KEY, never_called, clock, log, wait_until=clock.mono + 30) == (
        fetch.result, HIT)


def test_a_wait_cut_short_fetches_nothing_and_fails_with_the_hold():
    # pull-sandbox's clock sleeps in its stop event: a stop request ends the wait at once.
    cache, log = DictCache(), RecordingLogger()

    class Interrupted(FakeClock):
        def sleep(self, seconds: float) -> None:
            self.sleeps.append(seconds)
            self.advance(1.0)  # woken early

    clock = Interrupted()
    cache.throttled[KEY] = Throttled(clock.now - 2, clock.now + 3)
    with pytest.raises(ThrottleCoolDown) as caught:
        get_or_fetch(cache, KEY, never_called, clock, log, wait_until=clock.mono + 30)
    assert clock.sleeps == [pytest.approx(3.0 + HOLD_MARGIN)]
    assert caught.value.retry_after == pytest.approx(2.0), "what is left of the hold"
    assert cache.throttled[KEY] == Throttled(T0 - 2, T0 + 3), "the hold stays as it was"
    assert cache.stores == []


def test_a_hold_names_the_registry_by_the_keys_label_or_else_its_registry_string():
    cache, clock, log = DictCache(), FakeClock(), RecordingLogger()
    unlabelled = CacheKey("fake:registry.example", "identity")
    for key, named in ((KEY, KEY.label), (unlabelled, "fake:registry.example")):
        cache.throttled[key] = Throttled(clock.now - 2, clock.now + 3)
        with pytest.raises(ThrottleCoolDown) as caught:
            get_or_fetch(cache, key, never_called, clock, log)
        assert f"AWS throttled the token request for {named} 2s ago;" in caught.value.message


def test_during_a_hold_a_servable_cached_token_is_served_at_once_even_with_time_to_wait():
    cache, log = DictCache(), RecordingLogger()
    stale = token("stale-password-value")
    cache.tokens[KEY] = stale
    clock = FakeClock(now=stale.expires_at - 1800)
    cache.throttled[KEY] = Throttled(clock.now - 1, clock.now + 4)
    assert get_or_fetch(cache, KEY, never_called, clock, log, wait_until=clock.mono + 60) == (
        stale, LAST_RESORT)
    assert clock.sleeps == []


@pytest.mark.parametrize("wait_until", [None, 2.9], ids=["no-budget", "hold-ends-too-late"])
def test_a_caller_without_time_for_the_hold_fails_at_once_and_sleeps_not(wait_until):
    cache, clock, log = DictCache(), FakeClock(), RecordingLogger()
    cache.throttled[KEY] = Throttled(clock.now - 2, clock.now + 3)
    budget = None if wait_until is None else clock.mono + wait_until
    with pytest.raises(ThrottleCoolDown):
        get_or_fetch(cache, KEY, never_called, clock, log, wait_until=budget)
    assert clock.sleeps == []


def test_during_a_hold_a_stale_but_valid_cached_token_is_served_as_last_resort():
    cache, log = DictCache(), RecordingLogger()
    stale = token("stale-password-value")
    cache.tokens[KEY] = stale
    clock = FakeClock(now=stale.expires_at - 1800)
    cache.throttled[KEY] = Throttled(clock.now - 1, clock.now + 4)
    assert get_or_fetch(cache, KEY, never_called, clock, log) == (stale, LAST_RESORT)
    (warning,) = log.at("warning")
    assert "[AWS_THROTTLED_RECENTLY]" in warning
    assert "serving the cached token" in warning
    assert "stale-password-value" not in warning


def test_a_throttled_fetch_with_a_valid_cached_token_serves_it_and_still_holds_back():
    cache, log = DictCache(), RecordingLogger()
    stale = token("stale-password-value")
    cache.tokens[KEY] = stale
    clock = FakeClock(now=stale.expires_at - 1800)
    assert get_or_fetch(cache, KEY, TickingFetch(clock, throttling()), clock, log,
                        rand=lambda: 0.0) == (stale, LAST_RESORT)
    assert KEY in cache.throttled
    clock.advance(1)
    assert get_or_fetch(cache, KEY, never_called, clock, log) == (stale, LAST_RESORT)


def test_once_the_hold_is_over_the_next_caller_fetches_and_success_clears_the_hold():
    cache, clock, log = DictCache(), FakeClock(), RecordingLogger()
    cache.throttled[KEY] = Throttled(T0 - 5, T0)  # ends exactly now
    new = token("fetched-password-value")
    fetch = CountingFetch(new)
    assert get_or_fetch(cache, KEY, fetch, clock, log) == (new, MISS)
    assert fetch.calls == 1
    assert cache.throttled == {}, "a successful fetch forgets the throttling"


@pytest.mark.parametrize(("rand", "length"), [(0.0, 5.0), (0.5, 6.25), (0.999999, 7.5)])
def test_the_hold_lasts_its_length_plus_a_random_part_of_the_jitter(rand: float, length: float):
    cache, clock = DictCache(), FakeClock()
    with pytest.raises(AwsThrottled):
        get_or_fetch(cache, KEY, TickingFetch(clock, throttling(), 0.0), clock, RecordingLogger(),
                     rand=lambda: rand)
    held = cache.throttled[KEY]
    assert held.at == T0
    assert held.until - held.at == pytest.approx(length)


def test_the_default_hold_is_between_5_and_7_5_seconds_and_jittered():
    lengths = set()
    for _ in range(20):
        cache, clock = DictCache(), FakeClock()
        with pytest.raises(AwsThrottled):
            get_or_fetch(cache, KEY, CountingFetch(throttling()), clock, RecordingLogger())
        lengths.add(cache.throttled[KEY].until - T0)
    assert all(5.0 <= n < 7.5 for n in lengths), lengths
    assert len(lengths) > 1, "every node's hold would end at the same moment"


def test_a_hold_of_another_policy_is_honoured_with_its_own_length():
    cache, clock = DictCache(), FakeClock()
    policy = CoolDownPolicy(length=30.0, jitter=0.0)
    with pytest.raises(AwsThrottled):
        get_or_fetch(cache, KEY, CountingFetch(throttling()), clock, RecordingLogger(),
                     cool_down=policy)
    clock.advance(29)
    with pytest.raises(ThrottleCoolDown):
        get_or_fetch(cache, KEY, never_called, clock, RecordingLogger(), cool_down=policy)


@pytest.mark.parametrize("error", [
    AwsError("ecr:GetAuthorizationToken failed: ServiceUnavailableException",
             code="AWS_SERVICE_UNAVAILABLE"),
    AwsError("ecr:GetAuthorizationToken failed: AccessDeniedException",
             code="AWS_ACCESS_DENIED"),
    AwsError("ecr:GetAuthorizationToken failed: ThrottlingException", code="AWS_THROTTLING"),
    SourceError("the helper failed"),
    DeadlineExceeded("took too long"),
    Expired(),
], ids=["5xx", "access-denied", "throttling-code-on-a-plain-aws-error", "other-source",
        "deadline", "our-deadline-mid-fetch"])
def test_failures_other_than_throttling_set_no_hold(error: BaseException):
    cache, clock = DictCache(), FakeClock()
    with pytest.raises(type(error)):
        get_or_fetch(cache, KEY, raising(error), clock, RecordingLogger())
    assert cache.throttled == {}
    fetch = CountingFetch(token())
    assert get_or_fetch(cache, KEY, fetch, clock, RecordingLogger()) == (token(), MISS)
    assert fetch.calls == 1


@pytest.mark.parametrize(("at", "until", "why"), [
    (T0 - 10, T0 + 3600, "an hour away: the clock went back"),
    (T0, T0 + COOL_DOWN.longest + 0.01, "just longer than any hold"),
    (T0 - 10, T0 - 1, "over"),
    (T0 + 3600, T0 + 3605, "throttled in the future, ending past the longest hold"),
])
def test_a_hold_that_is_over_or_claims_too_long_is_ignored(at: float, until: float, why: str):
    cache, clock = DictCache(), FakeClock()
    cache.throttled[KEY] = Throttled(at, until)
    fetch = CountingFetch(token())
    assert get_or_fetch(cache, KEY, fetch, clock, RecordingLogger()) == (token(), MISS), why
    assert cache.throttled == {}


def test_a_hold_ending_exactly_at_the_longest_is_still_honoured():
    cache, clock = DictCache(), FakeClock()
    cache.throttled[KEY] = Throttled(T0, T0 + COOL_DOWN.longest)
    with pytest.raises(ThrottleCoolDown):
        get_or_fetch(cache, KEY, never_called, clock, RecordingLogger())


def test_a_hold_is_per_key():
    cache, clock = DictCache(), FakeClock()
    cache.throttled[KEY] = Throttled(T0 - 1, T0 + 4)
    fetch = CountingFetch(token())
    assert get_or_fetch(cache, OTHER_KEY, fetch, clock, RecordingLogger()) == (token(), MISS)
    assert KEY in cache.throttled


def test_a_fresh_cached_token_is_served_whatever_the_hold():
    cache, clock = DictCache(), FakeClock(now=T0 + HOUR)
    cache.tokens[KEY] = token()
    cache.throttled[KEY] = Throttled(clock.now - 1, clock.now + 4)
    assert get_or_fetch(cache, KEY, never_called, clock, RecordingLogger()) == (token(), HIT)


def test_null_cache_remembers_no_throttling():
    cache, clock = NullCache(), FakeClock()
    with pytest.raises(AwsThrottled):
        get_or_fetch(cache, KEY, CountingFetch(throttling()), clock, RecordingLogger())
    assert cache.load_throttled(KEY) is None
    fetch = CountingFetch(token())
    assert get_or_fetch(cache, KEY, fetch, clock, RecordingLogger()) == (token(), MISS)


def test_memory_cache_keeps_holds_in_the_inner_cache_where_other_processes_see_them():
    inner, clock = DictCache(), FakeClock()
    cache = MemoryCache(inner, clock)
    with pytest.raises(AwsThrottled):
        get_or_fetch(cache, KEY, CountingFetch(throttling()), clock, RecordingLogger(),
                     rand=lambda: 0.0)
    assert inner.throttled[KEY] == Throttled(T0, T0 + 5)
    inner.throttled[KEY] = Throttled(T0, T0 + 2)  # another process wrote a shorter one
    assert cache.load_throttled(KEY) == Throttled(T0, T0 + 2)
    cache.store_throttled(KEY, None)
    assert inner.throttled == {}

