"""Registry credentials with a lifetime, and the freshness policy that decides when to refresh.

Freshness is a pure function of a ``now`` passed in (as amazon-ecr-credential-helper's
``IsValid(now)``), so the policy is tested without sleeping. The rules:

- a token is *fresh* while more than ``refresh_margin`` of its life remains; the caches serve
  only fresh tokens, so a token is always refreshed ahead of its expiry;
- the ``cacheDuration`` we tell the kubelet ends exactly when the token stops being fresh, so
  the kubelet's in-memory cache can never hold a token past its life, and it comes back to us
  just as our own cache wants a new token;
- with the node agent running (``refresh.py``), a token that executions use is fetched again
  in its *refresh-ahead window*, which ends a twelfth of its life before it stops being fresh
  (``Token.refresh_window``); the kubelet's ``cacheDuration`` still ends when it stops being
  fresh, so the kubelet asks again only after the agent has replaced it, and finds the new one;
- a token that is no longer fresh but not yet expired may be served only as a last resort when
  the API is failing, with a short cacheDuration; an expired token is never served;
- a token fetched "in the future" (more than ``CLOCK_SLACK`` after ``now``) means the node's
  clock went back since, e.g. NTP correcting a clock that ran ahead at boot: its expiry was laid
  onto the wrong clock and would outlive the real token by the size of the jump, so it is
  neither fresh nor servable and is fetched again.
"""

from __future__ import annotations

from ecrcred._record import Record

# ECR tokens live 12 hours. An hour of margin covers a pull that starts just before expiry, a
# kubelet that re-uses our answer for a while, and modest clock drift.
DEFAULT_REFRESH_MARGIN = 3600.0
# When the expiry we are given cannot be trusted (missing, or already past by the registry's own
# clock as moto's 2015 dates are, or too far away), assume this much life from the fetch.
UNTRUSTED_EXPIRY_LIFETIME = 3600.0
# ECR and ECR Public tokens live 12 hours. An expiry further away than this is not believed
# (a proxy, a broken Date header, a corrupt cache file): trusting it would cache a token for
# years and tell the kubelet a cacheDuration past what Go's time.Duration can hold.
MAX_TRUSTED_LIFETIME = 7 * 24 * 3600.0
# A stale-but-unexpired token is served on API failure only with at least this much life left.
LAST_RESORT_MIN_REMAINING = 300.0
LAST_RESORT_CACHE_DURATION = 60
# The refresh-ahead window (the node agent's, ``refresh.py``) is this share of a token's life
# long and ends this share before the token stops being fresh: for a 12-hour ECR token, between
# 9 and 10 hours after the fetch, so at most 24 / 9 = 2.7 calls per registry per day, and an
# outage of up to an hour after the window opens is never seen by the kubelet's executions.
REFRESH_AHEAD_SHARE = 1 / 12
# How far in the future a token's fetch time may seem before we say the clock went back:
# processes on one node share one clock, so only a step backwards gets past a minute.
CLOCK_SLACK = 60.0


class Token(Record):
    """A username/password pair for one registry, valid until ``expires_at`` (epoch seconds)."""

    username: str
    password: str
    expires_at: float
    fetched_at: float

    def __repr__(self) -> str:  # never let a password reach a log through repr()
        return (
            f"Token(username={self.username!r}, password=<redacted>, "
            f"expires_at={self.expires_at!r}, fetched_at={self.fetched_at!r})"
        )

    @property
    def lifetime(self) -> float:
        return self.expires_at - self.fetched_at

    def margin(self, refresh_margin: float = DEFAULT_REFRESH_MARGIN) -> float:
        """The refresh margin for this token: never more than half its life."""
        return min(refresh_margin, max(self.lifetime, 0.0) / 2)

    def fresh_until(self, refresh_margin: float = DEFAULT_REFRESH_MARGIN) -> float:
        """The moment this token stops being served from a cache."""
        return self.expires_at - self.margin(refresh_margin)

    def is_fresh(self, now: float, refresh_margin: float = DEFAULT_REFRESH_MARGIN) -> bool:
        return not self.clock_went_back(now) and now < self.fresh_until(refresh_margin)

    def clock_went_back(self, now: float) -> bool:
        return now < self.fetched_at - CLOCK_SLACK

    def is_expired(self, now: float) -> bool:
        return now >= self.expires_at

    def cache_duration(self, now: float, refresh_margin: float = DEFAULT_REFRESH_MARGIN) -> int:
        """Whole seconds the kubelet may keep this token: until it stops being fresh, never < 0."""
        return max(0, int(self.fresh_until(refresh_margin) - now))

    def refresh_window(self, refresh_margin: float = DEFAULT_REFRESH_MARGIN
                       ) -> tuple[float, float]:
        """When the node agent fetches this token again if executions use it: a window
        (start, end) that ends before ``fresh_until``, so that every execution, and the kubelet
        asking again when our ``cacheDuration`` ends, finds the new token in the cache."""
        lead = max(self.lifetime, 0.0) * REFRESH_AHEAD_SHARE
        end = self.fresh_until(refresh_margin) - lead
        return end - lead, end

    def servable_as_last_resort(self, now: float) -> bool:
        return (not self.clock_went_back(now)
                and self.expires_at - now >= LAST_RESORT_MIN_REMAINING)


def token_expiry(
    fetched_at: float, expires_at: float | None, server_time: float | None
) -> tuple[float, bool]:
    """When a freshly fetched token expires on *our* clock, and whether the given expiry held.

    The lifetime is measured on the issuer's clock (``expires_at - server_time``, the response's
    Date header) and laid onto ours from ``fetched_at``, so a node clock that is off does not
    shorten or stretch the cache. A missing or already-past expiry, or one more than
    ``MAX_TRUSTED_LIFETIME`` away, is not trusted: the token gets ``UNTRUSTED_EXPIRY_LIFETIME``
    and the caller warns.
    """
    if expires_at is None:
        return fetched_at + UNTRUSTED_EXPIRY_LIFETIME, False
    reference = server_time if server_time is not None else fetched_at
    lifetime = expires_at - reference
    if not plausible_lifetime(lifetime):
        return fetched_at + UNTRUSTED_EXPIRY_LIFETIME, False
    return fetched_at + lifetime, True


def plausible_lifetime(seconds: float) -> bool:
    """More than nothing and at most ``MAX_TRUSTED_LIFETIME`` (false for NaN and infinities)."""
    return 0 < seconds <= MAX_TRUSTED_LIFETIME


def split_basic_auth(encoded: str) -> tuple[str, str] | None:
    """``(user, password)`` from base64 ``user:password``, split at the first colon (ECR tokens
    and docker config ``auth`` fields alike); None when it is not that."""
    import base64  # only when a token is decoded: never on a cache hit

    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError both are
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None
