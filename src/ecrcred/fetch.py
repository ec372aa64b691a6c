"""The fetch policy: when a token is fetched, and what is answered when fetching fails.

The kubelet execs the plugin once per image, so node boot brings bursts of executions for one
registry. ``get_or_fetch`` makes that one API call: a lock-free read serves fresh tokens; on a
miss the caller takes the cache's per-key cross-process lock, reads again (another process may
just have refreshed), and only then fetches and stores. Where the tokens live, and how the lock
is taken, is the storage's business (``cache.py``); this module only uses the ``TokenCache``
seam.

A fetch that AWS throttled (after botocore's own retries) is remembered per key for a few
seconds (``CoolDownPolicy``; the storage keeps it beside the token): without that, each
execution queued on the lock would call again the moment the one before it gave up, and a
node's boot burst would hammer an API that has just said no (``bench/fleet.py``). The execution
that meets a hold, with the lock held, waits it out and then fetches when its caller's
``wait_until`` leaves time for that (the queue behind it then gets the new token as a hit);
otherwise it serves a still-valid cached token as a last resort, or fails at once with
``ThrottleCoolDown``. Only throttling sets a hold, a successful fetch clears it, and a hold that
claims to last longer than a hold can (the clock went back, a file not ours) is ignored. This is
the one place a hold is waited out: ``pull-sandbox`` comes through here too, with a clock whose
sleep a stop request ends.

Standard library only, and nothing imported that a cache hit does not need.
"""

from __future__ import annotations

from ecrcred._record import Record
from ecrcred.deadline import Expired
from ecrcred.errors import AwsThrottled, SourceError, ThrottleCoolDown
from ecrcred.records import Throttled
from ecrcred.tokens import DEFAULT_REFRESH_MARGIN

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ecrcred.records import CacheKey
    from ecrcred.seams import Clock, Logger, TokenCache
    from ecrcred.tokens import Token

# How a token was obtained (``get_or_fetch``'s second value).
HIT, MISS, LAST_RESORT = "hit", "miss", "last-resort"


class CoolDownPolicy(Record):
    """How long a throttled fetch holds back further fetches of its key: ``length`` seconds
    plus a random part of up to ``jitter`` seconds (5 to 7.5 s by default).

    Why 5 s: it has to outlast the queue behind the throttled fetch (the other images of the
    registry, exec'd together and waiting on the lock, which get it within moments) and be over
    before the kubelet retries a failed pull (10 s at the earliest, then 20, 40 ... 300 s), so
    that retry may call again. AWS's limits refill every second: a longer hold would leave
    capacity unused. Why jitter: one account-wide burst throttles many nodes within the same
    second; a fixed hold would end on all of them together and send their waiting executions
    (and ``pull-sandbox``, which waits a hold out) back in step. The execution that meets a
    hold waits it out when its timeout allows (``get_or_fetch``): failing it instead hands the
    pull to the kubelet's back-off, which has no jitter (BENCHMARKS.md, three designs).
    """

    length: float = 5.0
    jitter: float = 2.5

    @property
    def longest(self) -> float:
        return self.length + self.jitter


COOL_DOWN = CoolDownPolicy()
HOLD_MARGIN = 0.05  # a waiter sleeps this much past a hold's end, so the hold is over for sure


def get_or_fetch(
    cache: TokenCache,
    key: CacheKey,
    fetch: Callable[[], Token],
    clock: Clock,
    log: Logger,
    refresh_margin: float = DEFAULT_REFRESH_MARGIN,
    cool_down: CoolDownPolicy = COOL_DOWN,
    rand: Callable[[], float] | None = None,
    wait_until: float | None = None,
    ahead: float = 0.0,
) -> tuple[Token, str]:
    """A fresh token for ``key``, fetching at most once across all processes sharing the cache.

    Returns the token and how it was obtained (``hit``, ``miss`` or ``last-resort``). On a source
    failure, a cached token that is stale but still has minutes to live is served with a warning
    rather than failing the pull; an expired token never is. A fetch that AWS throttled holds
    fetches for ``key`` back for ``cool_down`` (``rand``, in [0, 1), draws its jitter). A caller
    that meets a hold ending before ``wait_until`` (monotonic; None: never wait) sleeps until it
    ends with ``clock.sleep``, the lock held, then fetches, unless a cached token still good for
    minutes can be served at once; one that cannot wait gets that last-resort token or
    ``ThrottleCoolDown``, and nothing is fetched. A sleep that returns before the hold's end
    (``pull-sandbox``'s clock ends it on a stop request) fetches nothing either.

    Why wait rather than fail: a failed exec makes the kubelet back off that pull for 10 s and
    more, without jitter, so nodes that failed together come back together. In the fleet
    simulation failing at once left 24 of 1000 nodes not ready after 900 s; waiting (the queue
    behind the lock then hits the new token) readies the last node as soon as no hold at all
    or sooner, with 1.7 to 2.6 times fewer calls.

    ``ahead`` (seconds) is for the node agent's refresh ahead (``refresh.py``): a token is taken
    as fresh only if it still is ``ahead`` seconds from now, so the agent fetches the one the
    executions still use, under the same lock and holds, and gets a token another process has
    just refreshed as a hit. A failure then raises: there is no one to serve a last resort to.
    """
    cached = cache.load(key)
    if cached is not None and cached.is_fresh(clock.time() + ahead, refresh_margin):
        return cached, HIT
    with cache.lock(key):
        cached = cache.load(key)
        now = clock.time()
        if cached is not None and cached.is_fresh(now + ahead, refresh_margin):
            return cached, HIT  # another process refreshed it while we waited
        try:
            throttled = cache.load_throttled(key)
            if throttled is not None and throttled.holds(now, cool_down.longest):
                _wait_out(throttled, key, cached, now, clock, log, wait_until)
            token = fetch()
        except (SourceError, Expired) as exc:
            if isinstance(exc, AwsThrottled):
                _remember_throttling(cache, key, clock.time(), cool_down, rand)
            # Expired: our own deadline hit while the API hung. A token that is still valid is
            # a better answer than none; without one, the deadline's message goes out.
            if not ahead and cached is not None and cached.servable_as_last_resort(now):
                why = (exc.one_line() if isinstance(exc, SourceError)
                       else "the token API did not answer within our deadline")
                minutes = int((cached.expires_at - now) // 60)
                log.warning(f"{why}; serving the cached token for {key.registry}, which "
                            f"expires in {minutes} min")
                return cached, LAST_RESORT
            raise
        cache.store(key, token)
        cache.store_throttled(key, None)
        return token, MISS


def _wait_out(throttled: Throttled, key: CacheKey, cached: Token | None, now: float,
              clock: Clock, log: Logger, wait_until: float | None) -> None:
    """Sleep until the hold ends, or raise its ``ThrottleCoolDown`` (which the caller turns
    into a last-resort answer when ``cached`` is servable) when we should not or cannot."""
    held = _held_back(key, throttled, now)
    # A cached token still good for minutes is served at once, without waiting.
    servable = cached is not None and cached.servable_as_last_resort(now)
    if servable or wait_until is None or clock.monotonic() + held.retry_after > wait_until:
        raise held
    log.info(f"{held.message}; waiting for the hold to end")
    over_at = clock.monotonic() + held.retry_after
    clock.sleep(held.retry_after + HOLD_MARGIN)
    if clock.monotonic() < over_at:  # the sleep was cut short (a stop request): still held
        raise _held_back(key, throttled, clock.time())


def _remember_throttling(cache: TokenCache, key: CacheKey, now: float, policy: CoolDownPolicy,
                         rand: Callable[[], float] | None) -> None:
    if rand is None:
        import random  # only when AWS has just throttled us: never on the kubelet's hot path

        rand = random.random
    cache.store_throttled(key, Throttled(now, now + policy.length + policy.jitter * rand()))


def _held_back(key: CacheKey, throttled: Throttled, now: float) -> ThrottleCoolDown:
    import time  # a builtin module: formatting the hold's end costs no file load

    left = throttled.until - now
    ago = max(0.0, now - throttled.at)
    until = time.strftime("%H:%M:%S", time.gmtime(throttled.until))
    return ThrottleCoolDown(
        f"AWS throttled the token request for {key.named} {ago:.0f}s ago; ecrcred sends no new "
        f"one until {until}Z (in {left:.1f}s) rather than add to the throttling",
        hint="ask again after the hold (the kubelet does, at its next retry of the pull); if "
        "this persists, raise the account's API quota or spread the nodes' boots",
        retry_after=left,
    )
