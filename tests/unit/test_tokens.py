"""Token freshness as a pure function of ``now``: boundaries, margins and untrusted expiries."""

from __future__ import annotations

import pytest

from ecrcred.tokens import (
    CLOCK_SLACK,
    DEFAULT_REFRESH_MARGIN,
    LAST_RESORT_MIN_REMAINING,
    UNTRUSTED_EXPIRY_LIFETIME,
    Token,
    token_expiry,
)

T0 = 1_700_000_000.0
HOUR = 3600.0
TWELVE_HOURS = 12 * HOUR


def ecr_token(lifetime: float = TWELVE_HOURS,
              password: str = "s3cr3t-password-value") -> Token:  # noqa: S107
    return Token("AWS", password, expires_at=T0 + lifetime, fetched_at=T0)


# -- margin -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("lifetime", "refresh_margin", "margin"), [
    (TWELVE_HOURS, DEFAULT_REFRESH_MARGIN, HOUR),   # a real ECR token: the full hour
    (2 * HOUR, DEFAULT_REFRESH_MARGIN, HOUR),       # exactly half
    (HOUR, DEFAULT_REFRESH_MARGIN, HOUR / 2),       # capped at half its life
    (600.0, DEFAULT_REFRESH_MARGIN, 300.0),
    (TWELVE_HOURS, 60.0, 60.0),                     # a small configured margin is kept
    (0.0, DEFAULT_REFRESH_MARGIN, 0.0),
    (-HOUR, DEFAULT_REFRESH_MARGIN, 0.0),           # expiry before fetch: no negative margin
])
def test_margin_is_the_refresh_margin_but_never_more_than_half_the_lifetime(
        lifetime: float, refresh_margin: float, margin: float):
    assert ecr_token(lifetime).margin(refresh_margin) == margin


# -- is_fresh / is_expired at their boundaries --------------------------------------------------

@pytest.mark.parametrize(("lifetime", "elapsed", "fresh"), [
    (TWELVE_HOURS, 0.0, True),
    (TWELVE_HOURS, 11 * HOUR - 0.001, True),
    (TWELVE_HOURS, 11 * HOUR, False),               # fresh ends exactly one margin before expiry
    (TWELVE_HOURS, 11.5 * HOUR, False),
    (HOUR, HOUR / 2 - 0.001, True),                 # short token: refreshed at half-life
    (HOUR, HOUR / 2, False),
    (TWELVE_HOURS, TWELVE_HOURS + 1, False),
])
def test_is_fresh_until_one_margin_before_expiry(lifetime: float, elapsed: float, fresh: bool):
    assert ecr_token(lifetime).is_fresh(T0 + elapsed) is fresh


@pytest.mark.parametrize(("elapsed", "expired"), [
    (0.0, False),
    (TWELVE_HOURS - 0.001, False),
    (TWELVE_HOURS, True),
    (TWELVE_HOURS + 1, True),
])
def test_is_expired_from_the_expiry_instant_on(elapsed: float, expired: bool):
    assert ecr_token().is_expired(T0 + elapsed) is expired


def test_a_token_that_is_not_fresh_can_still_be_unexpired():
    now = T0 + 11.5 * HOUR
    token = ecr_token()
    assert not token.is_fresh(now)
    assert not token.is_expired(now)


# -- cache_duration ---------------------------------------------------------------------------

@pytest.mark.parametrize(("lifetime", "elapsed", "seconds"), [
    (TWELVE_HOURS, 0.0, 11 * 3600),
    (TWELVE_HOURS, 5 * HOUR, 6 * 3600),
    (TWELVE_HOURS, 11 * HOUR - 1, 1),
    (TWELVE_HOURS, 11 * HOUR - 0.5, 0),             # whole seconds, rounded down
    (TWELVE_HOURS, 11 * HOUR, 0),
    (TWELVE_HOURS, 11.5 * HOUR, 0),                 # stale: never negative
    (TWELVE_HOURS, 13 * HOUR, 0),                   # expired: never negative
    (HOUR, 0.0, 1800),
    (-HOUR, 0.0, 0),
])
def test_cache_duration_ends_when_the_token_stops_being_fresh(
        lifetime: float, elapsed: float, seconds: int):
    assert ecr_token(lifetime).cache_duration(T0 + elapsed) == seconds


@pytest.mark.parametrize("elapsed", [0.0, 3 * HOUR, 10 * HOUR, 10.99 * HOUR])
def test_the_kubelet_never_keeps_a_token_past_its_freshness(elapsed: float):
    token = ecr_token()
    now = T0 + elapsed
    duration = token.cache_duration(now)
    assert duration > 0
    assert token.is_fresh(now + duration - 0.001)
    assert now + duration <= token.expires_at - token.margin()


# -- last resort ------------------------------------------------------------------------------

@pytest.mark.parametrize(("remaining", "servable"), [
    (LAST_RESORT_MIN_REMAINING + 1, True),
    (LAST_RESORT_MIN_REMAINING, True),
    (LAST_RESORT_MIN_REMAINING - 1, False),
    (0.0, False),
    (-1.0, False),
])
def test_servable_as_last_resort_needs_minutes_of_life_left(remaining: float, servable: bool):
    token = ecr_token()
    assert token.servable_as_last_resort(token.expires_at - remaining) is servable


# -- the clock going back ---------------------------------------------------------------------

@pytest.mark.parametrize(("back", "trusted"), [
    (0.0, True), (CLOCK_SLACK, True), (CLOCK_SLACK + 1, False), (HOUR, False),
    (TWELVE_HOURS, False),
])
def test_a_token_fetched_in_the_future_is_neither_fresh_nor_servable(back: float, trusted: bool):
    # The node's clock ran ahead when the token was fetched, then stepped back by `back`: the
    # expiry was laid onto the wrong clock and would outlive the real token by that much.
    token = ecr_token()
    now = T0 - back
    assert token.is_fresh(now) is trusted
    assert token.servable_as_last_resort(now) is trusted
    assert token.clock_went_back(now) is not trusted


# -- token_expiry -----------------------------------------------------------------------------

MOTO_2015 = 1_420_113_600.0  # 2015-01-01T12:00:00Z, the expiry moto returns


@pytest.mark.parametrize(("expires_at", "server_time", "expected", "trusted"), [
    pytest.param(T0 + TWELVE_HOURS, None, T0 + TWELVE_HOURS, True, id="plain"),
    pytest.param(T0 + TWELVE_HOURS, T0, T0 + TWELVE_HOURS, True, id="clocks-agree"),
    pytest.param(T0 + TWELVE_HOURS - HOUR, T0 - HOUR, T0 + TWELVE_HOURS, True,
                 id="server-clock-behind-ours"),
    pytest.param(T0 + TWELVE_HOURS + 600, T0 + 600, T0 + TWELVE_HOURS, True,
                 id="server-clock-ahead-of-ours"),
    pytest.param(None, None, T0 + UNTRUSTED_EXPIRY_LIFETIME, False, id="missing"),
    pytest.param(None, T0, T0 + UNTRUSTED_EXPIRY_LIFETIME, False, id="missing-with-date"),
    pytest.param(MOTO_2015, T0, T0 + UNTRUSTED_EXPIRY_LIFETIME, False, id="moto-2015"),
    pytest.param(MOTO_2015, None, T0 + UNTRUSTED_EXPIRY_LIFETIME, False, id="moto-2015-no-date"),
    pytest.param(T0, T0, T0 + UNTRUSTED_EXPIRY_LIFETIME, False, id="expires-at-server-now"),
    pytest.param(T0 + HOUR, T0 + 2 * HOUR, T0 + UNTRUSTED_EXPIRY_LIFETIME, False,
                 id="past-by-server-clock"),
])
def test_token_expiry_lays_the_issuer_lifetime_onto_our_clock(
        expires_at: float | None, server_time: float | None, expected: float, trusted: bool):
    assert token_expiry(T0, expires_at, server_time) == (expected, trusted)


def test_token_expiry_trusts_the_server_clock_over_ours_when_ours_is_ahead():
    # Our clock is two hours ahead of the registry's: measured against our own clock the token
    # would seem to live ten hours; measured against the server's Date it lives twelve.
    server_now = T0
    our_now = T0 + 2 * HOUR
    expires_at, trusted = token_expiry(our_now, server_now + TWELVE_HOURS, server_now)
    assert trusted
    assert expires_at - our_now == TWELVE_HOURS


# -- repr -------------------------------------------------------------------------------------

@pytest.mark.parametrize("render", [repr, str, lambda t: f"{t!r} {[t]}"])
def test_token_repr_hides_the_password(render):
    token = ecr_token(password="hunter2-very-secret-password")
    text = render(token)
    assert "hunter2-very-secret-password" not in text
    assert "password=<redacted>" in text
    assert "username='AWS'" in text
