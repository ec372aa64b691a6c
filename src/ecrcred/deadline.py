"""Our own deadline, well inside the kubelet's one-minute SIGKILL, so we fail with a message.

A wall-clock alarm (``SIGALRM``) raises ``DeadlineExceeded`` in the main thread wherever it is:
inside botocore's retries, a socket read, or a wait for another process's lock. That is the only
way to bound code we do not own without threads, and a CLI process owns its signals.

The alarm raises ``_Expired``, a ``BaseException`` like KeyboardInterrupt, because libraries
catch ``Exception`` broadly: botocore wraps any exception from a socket read into a retryable
``HTTPClientError``, which would turn our deadline into one more retry. ``_Expired`` passes through
them and becomes a ``DeadlineExceeded`` when it leaves the ``deadline`` block.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

from ecrcred.errors import DeadlineExceeded


class _Expired(BaseException):
    """The alarm fired; converted to DeadlineExceeded at the edge of the block."""


@contextlib.contextmanager
def deadline(seconds: float, what: str, hint: str) -> Iterator[None]:
    """Raise DeadlineExceeded("<what> did not finish within Ns") if the block runs too long."""
    if seconds <= 0:
        yield
        return

    def on_alarm(_signum: int, _frame: FrameType | None) -> None:
        raise _Expired

    try:
        previous = signal.signal(signal.SIGALRM, on_alarm)
    except ValueError:  # not the main thread: signals cannot be ours, run unbounded
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Expired:
        raise DeadlineExceeded(f"{what} did not finish within {seconds:g}s", hint=hint) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
