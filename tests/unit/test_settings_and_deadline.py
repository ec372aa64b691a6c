"""Settings that remember their origin, and our own deadline inside the kubelet's kill."""

from __future__ import annotations

import signal
import sys
import threading
import time

import pytest

import ecrcred.deadline
from ecrcred.deadline import deadline
from ecrcred.errors import DeadlineExceeded
from ecrcred.settings import Setting, pick

# -- settings ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("flag_value", "env", "expected"), [
    pytest.param("/flag", {"ECRCRED_CACHE_DIR": "/env"},
                 Setting("/flag", "flag --cache-dir"), id="flag-wins-over-env"),
    pytest.param("", {"ECRCRED_CACHE_DIR": "/env"},
                 Setting("", "flag --cache-dir"), id="empty-flag-is-still-a-flag"),
    pytest.param(None, {"ECRCRED_CACHE_DIR": "/env"},
                 Setting("/env", "env ECRCRED_CACHE_DIR"), id="env-without-flag"),
    pytest.param(None, {"ECRCRED_CACHE_DIR": ""},
                 Setting("/default", "default"), id="empty-env-is-unset"),
    pytest.param(None, {"OTHER": "/x"}, Setting("/default", "default"), id="default"),
    pytest.param(None, {}, Setting("/default", "default"), id="empty-environment"),
])
def test_pick_takes_flag_then_env_then_default_and_says_which(
        flag_value: str | None, env: dict[str, str], expected: Setting):
    assert pick("--cache-dir", flag_value, env, "ECRCRED_CACHE_DIR", "/default") == expected


# -- deadline ---------------------------------------------------------------------------------

def _timer_is_off() -> bool:
    return signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_deadline_fires_through_code_that_catches_exception_broadly():
    started = time.monotonic()
    iterations = 0
    with pytest.raises(DeadlineExceeded) as caught, deadline(0.2, "the token fetch",
                                                              hint="check the network"):
        # Bounded, so that a deadline swallowed by the except clause fails the test rather
        # than hanging it.
        while time.monotonic() - started < 3.0:
            try:
                iterations += 1
                time.sleep(0.01)
            except Exception:  # noqa: S112 - what botocore's retry loop does to errors
                continue
    elapsed = time.monotonic() - started
    assert 0.15 <= elapsed < 2.0
    assert iterations > 1
    assert caught.value.message == "the token fetch did not finish within 0.2s"
    assert caught.value.hint == "check the network"
    assert caught.value.exit_code == 5
    assert _timer_is_off()


def test_deadline_lets_a_block_that_finishes_in_time_complete_and_restores_the_handler():
    def previous_handler(_signum, _frame):
        raise AssertionError("the old handler must not be called")

    old = signal.signal(signal.SIGALRM, previous_handler)
    try:
        with deadline(5, "quick work", hint=""):
            result = sum(range(100))
        assert result == 4950
        assert _timer_is_off()
        assert signal.getsignal(signal.SIGALRM) is previous_handler
    finally:
        signal.signal(signal.SIGALRM, old)


def test_deadline_passes_other_exceptions_through_and_stops_the_timer():
    with pytest.raises(KeyError), deadline(5, "work", hint=""):
        raise KeyError("mine")
    assert _timer_is_off()


@pytest.mark.parametrize("seconds", [0, -1])
def test_deadline_of_zero_or_less_is_off(seconds: float):
    before = signal.getsignal(signal.SIGALRM)
    with deadline(seconds, "work", hint=""):
        assert signal.getsignal(signal.SIGALRM) is before
        time.sleep(0.02)
    assert _timer_is_off()


def test_deadline_outside_the_main_thread_does_nothing():
    outcome: list[str] = []

    def worker() -> None:
        try:
            with deadline(0.01, "work", hint=""):
                time.sleep(0.05)
            outcome.append("finished")
        except BaseException as exc:  # report anything to the main thread
            outcome.append(type(exc).__name__)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=5)
    assert outcome == ["finished"]
    assert _timer_is_off()


@pytest.mark.parametrize("seconds", [1e-7, 1e-6, 1e-5, 1e-4])
def test_a_deadline_that_runs_out_while_it_is_set_is_a_deadline_exceeded_never_a_raw_alarm(
        seconds: float):
    # The alarm can fire inside __enter__ itself, right after the timer is set: that used to
    # leave as the bare Expired, a traceback past the CLI's handlers.
    before = signal.getsignal(signal.SIGALRM)
    for _ in range(50):
        try:
            with deadline(seconds, "work", hint="h"):
                sum(range(2000))
        except DeadlineExceeded as exc:
            assert exc.message == f"work did not finish within {seconds:g}s"
        except BaseException as exc:  # the point: nothing else may come out
            pytest.fail(f"{type(exc).__name__} escaped the deadline")
        assert _timer_is_off()
        assert signal.getsignal(signal.SIGALRM) is before


class _AlarmWhileRestoring:
    """The signal module, except that putting the previous handler back first delivers an
    alarm to the deadline's own handler: one already on its way as the block finished."""

    def __init__(self) -> None:
        self.SIGALRM = signal.SIGALRM
        self.ITIMER_REAL = signal.ITIMER_REAL
        self.setitimer = signal.setitimer
        self.delivered = 0

    def signal(self, signum: int, handler: object) -> object:
        current = signal.getsignal(signum)
        if callable(current) and current is not handler:
            self.delivered += 1
            current(signum, sys._getframe(1))
        return signal.signal(signum, handler)  # type: ignore[arg-type]


def test_an_alarm_that_arrives_while_the_deadline_is_taken_down_is_ignored(
        monkeypatch: pytest.MonkeyPatch):
    fake = _AlarmWhileRestoring()
    monkeypatch.setattr(ecrcred.deadline, "signal", fake)
    before = signal.getsignal(signal.SIGALRM)
    try:
        with deadline(5, "work", hint=""):
            result = sum(range(100))
    except BaseException as exc:  # the point: nothing may come out
        pytest.fail(f"{type(exc).__name__} escaped the deadline's exit")
    assert result == 4950
    assert fake.delivered == 1
    assert _timer_is_off()
    assert signal.getsignal(signal.SIGALRM) is before
