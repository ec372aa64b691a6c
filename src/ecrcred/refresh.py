"""Refresh ahead: the node agent keeps the tokens the kubelet's executions use fresh, so that
each execution is a cache hit and the kubelet never waits for AWS.

Without it, the first execution per registry after a token stops being fresh pays a miss
(importing botocore, resolving credentials, one ``GetAuthorizationToken``: 250 to 600 ms). The
``Refresher`` runs in ``pull-sandbox --watch``, a process that lives anyway and has botocore
loaded:

- at start it fetches the tokens of the config's ``refresh.prefetch`` and of the sandbox image
  (a token already fresh in the cache is a hit: a restarted agent calls nothing);
- then it looks at the shared token cache and fetches again every token an execution used
  within the token's lifetime (the file's last-use stamp, ``cache.py``), at a moment drawn at
  random (jitter) in the token's refresh-ahead window (``Token.refresh_window``, which ends
  before the token stops being fresh); a token nobody used in that long is left to expire, so
  the calls are bounded by use: each use buys at most two refreshes;
- every fetch is ``fetch.get_or_fetch`` with ``ahead``: the same per-key lock, identity digest
  and throttling holds as the executions, and a token another process refreshed meanwhile is a
  hit. A failure (an outage, a hold) leaves the old token in the cache, still served to the
  executions while it is fresh, and is retried with jittered exponential backoff (after the
  hold's end, for a hold);
- a token is refreshed only when the agent's own lookup for its registry gives exactly its key,
  so only tokens of the agent's own identity (the same AWS environment as the kubelet's) are;
  tokens of per-pod roles or another environment stay with the executions, as without the agent.

Time and randomness are passed in, so the schedule is tested with a fake clock.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from ecrcred.errors import AwsThrottled, EcrcredError, ThrottleCoolDown
from ecrcred.fetch import HIT, HOLD_MARGIN, get_or_fetch
from ecrcred.tokens import DEFAULT_REFRESH_MARGIN

if TYPE_CHECKING:
    from ecrcred.records import CacheKey, Lookup
    from ecrcred.seams import Clock, CredentialSource, Logger, TokenCache
    from ecrcred.tokens import Token


class UsedTokens(Protocol):
    """A token cache that also lists its tokens with their last use (``cache.FileCache``)."""

    def entries(self) -> list[tuple[CacheKey, Token, float]]: ...


class RefreshPolicy(NamedTuple):
    scan_every: float = 60.0  # longest time between two looks at the cache
    first_retry: float = 5.0  # after a failed refresh; doubling up to max_retry
    max_retry: float = 300.0
    refresh_margin: float = DEFAULT_REFRESH_MARGIN  # the executions' (tokens.py)


class _Plan(NamedTuple):
    fetched_at: float  # of the token the plan is for
    due: float  # epoch seconds
    failures: int = 0


class Refresher:
    """The refresh-ahead loop of the node agent: ``prefetch`` once, then ``tick`` until stopped
    (``run``). ``cache`` must be one that does not count its own loads as uses
    (``FileCache(counts_use=False)``), or the agent would keep every token alive forever."""

    def __init__(self, cache: TokenCache, ledger: UsedTokens, source: CredentialSource,
                 clock: Clock, log: Logger, policy: RefreshPolicy = RefreshPolicy(),  # noqa: B008 - immutable
                 rand: Callable[[], float] | None = None) -> None:
        self._cache = cache
        self._ledger = ledger
        self._source = source
        self._clock = clock
        self._log = log
        self._policy = policy
        self._rand = rand or random.Random().random  # noqa: S311 - jitter, not crypto
        self._plans: dict[CacheKey, _Plan] = {}
        self._foreign: set[CacheKey] = set()  # said once: not ours to refresh
        self.calls = 0  # fetches that were not hits (for tests and the benchmark)

    # -- at start ------------------------------------------------------------------------------

    def prefetch(self, images: Iterable[str]) -> None:
        """The tokens of ``images`` (images or registry hosts) in the cache; a failure is
        reported and left to the executions (they fetch as without the agent)."""
        for image in dict.fromkeys(images):
            try:
                lookup = self._source.lookup(image, None)
                if lookup is None or lookup.cache_key is None:
                    self._log.debug(f"prefetch {image}: no token to keep (no source, or a "
                                    "secret that is not a token)")
                    continue
                token, how = get_or_fetch(self._cache, lookup.cache_key, lookup.fetch,
                                          self._clock, self._log,
                                          refresh_margin=self._policy.refresh_margin)
            except EcrcredError as exc:
                self._log.warning(f"prefetching the token for {image} failed: "
                                  f"{exc.one_line()}; the kubelet's executions will fetch it")
                continue
            self._log.add_secret(token.password)
            self.calls += how != HIT
            self._log.info(f"prefetch {image}: {how}, {lookup.describe}")

    # -- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event, prefetch: Sequence[str] = ()) -> None:
        """Prefetch, then refresh until ``stop`` is set. Never raises: a bug is logged and the
        loop goes on (the executions fetch for themselves meanwhile)."""
        self._guarded(lambda: self.prefetch(prefetch))
        while not stop.is_set():
            wait = self._guarded(self.tick)
            stop.wait(self._policy.scan_every if wait is None else wait)

    def _guarded(self, step: Callable[[], float | None]) -> float | None:
        try:
            return step()
        except Exception as exc:  # noqa: BLE001 - the loop must outlive a bug
            # The type only: the text may quote a secret never registered with the logger.
            self._log.warning(f"refresh ahead: internal error {type(exc).__name__}; trying "
                              "again later [INTERNAL]")
            return None

    def tick(self) -> float:
        """One look at the cache: refresh what is used and due. Seconds until the next look."""
        now = self._clock.time()
        next_at = now + self._policy.scan_every
        seen = set()
        for key, token, used_at in self._ledger.entries():
            seen.add(key)
            # Look again well before any token's window can open (short-lived tokens).
            next_at = min(next_at, now + max(1.0, token.lifetime / 12))
            if used_at < now - max(token.lifetime, 0.0):
                self._plans.pop(key, None)  # nobody used it within its life: let it expire
                continue
            plan = self._plan(key, token)
            if now < plan.due:
                next_at = min(next_at, plan.due)
                continue
            lookup = self._ours(key)
            if lookup is None:
                continue
            due = self._refresh(key, token, lookup, plan, now)
            next_at = min(next_at, due)
        for gone in set(self._plans) - seen:
            del self._plans[gone]
        return max(0.05, next_at - self._clock.time())

    def _plan(self, key: CacheKey, token: Token) -> _Plan:
        """When ``token`` is refreshed: a moment drawn once per token in its window; a plan for
        an older token (another process refreshed it) is replaced."""
        plan = self._plans.get(key)
        if plan is None or plan.fetched_at != token.fetched_at:
            start, end = token.refresh_window(self._policy.refresh_margin)
            plan = _Plan(token.fetched_at, start + (end - start) * self._rand())
            self._plans[key] = plan
        return plan

    def _ours(self, key: CacheKey) -> Lookup | None:
        """The lookup that fetches ``key``'s token as the agent, or None when the agent's own
        lookup for the registry gives another key (another identity: per-pod roles, another
        HOME or AWS environment; or a registry no source of ours knows)."""
        # The ECR source names a registry "<api>:<host>"; whatever else a key says, the
        # comparison below refuses it.
        host = key.registry.partition(":")[2]
        lookup = None
        if host:
            try:
                lookup = self._source.lookup(host, None)
            except EcrcredError:
                lookup = None
        if lookup is None or lookup.cache_key != key:
            if key not in self._foreign:
                self._foreign.add(key)
                # Info, once per key: a kubelet whose plugin has another AWS environment than the
                # agent (HOME, AWS_*) gets no refresh ahead at all, and the operator should know.
                self._log.info(f"not refreshing ahead the token for {key.named}: it was fetched "
                               "as another AWS identity than the agent's (a per-pod role, or "
                               "another environment: HOME, AWS_*); the executions refresh it")
            return None
        return lookup

    def _refresh(self, key: CacheKey, token: Token, lookup: Lookup, plan: _Plan,
                 now: float) -> float:
        """Fetch ``key``'s token ahead; when the next refresh (or retry) is due."""
        # A second more than the token has left: it is then stale for this fetch for sure
        # (floating point), while a token another process has just fetched is still a hit.
        ahead = max(0.0, token.fresh_until(self._policy.refresh_margin) - now) + 1.0
        try:
            fresh, how = get_or_fetch(self._cache, key, lookup.fetch, self._clock, self._log,
                                      refresh_margin=self._policy.refresh_margin, ahead=ahead)
        except EcrcredError as exc:
            return self._retry(key, token, plan, exc)
        self._log.add_secret(fresh.password)
        self.calls += how != HIT
        new = self._plan(key, fresh)
        self._log.info(f"refreshed ahead the token for {key.named} ({how}); next refresh "
                       f"in {new.due - self._clock.time():.0f}s")
        return new.due

    def _retry(self, key: CacheKey, token: Token, plan: _Plan, exc: EcrcredError) -> float:
        now = self._clock.time()
        failures = plan.failures + 1
        held = self._cache.load_throttled(key) if isinstance(exc, AwsThrottled) else None
        if isinstance(exc, ThrottleCoolDown):
            delay = exc.retry_after + HOLD_MARGIN + self._policy.first_retry * self._rand()
        elif held is not None and held.until > now:
            # Just throttled: the hold we (fetch.py) have just set ends first.
            delay = held.until - now + HOLD_MARGIN + self._policy.first_retry * self._rand()
        else:
            # Never longer than a twelfth of the token's life, nor than a third of the fresh
            # life it has left: retried several times before the executions would need it.
            fresh_for = token.fresh_until(self._policy.refresh_margin) - now
            cap = min(self._policy.max_retry, max(1.0, token.lifetime / 12),
                      max(1.0, fresh_for / 3))
            delay = min(cap, self._policy.first_retry * 2 ** (failures - 1))
            delay *= 0.5 + 0.5 * self._rand()
        self._plans[key] = _Plan(plan.fetched_at, now + delay, failures)
        fresh_for = token.fresh_until(self._policy.refresh_margin) - now
        self._log.warning(
            f"refreshing ahead the token for {key.named} failed ({exc.one_line()}); the cached "
            f"one is served for {max(fresh_for, 0.0):.0f}s more; retrying in {delay:.1f}s")
        return now + delay
