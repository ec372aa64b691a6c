"""Our own deadline, well inside the kubelet's one-minute SIGKILL, so we fail with a message.

A wall-clock alarm (``SIGALRM``) raises ``DeadlineExceeded`` in the main thread wherever it is:
inside botocore's retries, a socket read, or a wait for another process's lock. That is the only
way to bound code we do not own without threads, and a CLI process owns its signals.

The alarm raises ``Expired``, a ``BaseException`` like KeyboardInterrupt, because libraries
catch ``Exception`` broadly: botocore wraps any exception from a socket read into a retryable
``HTTPClientError``, which would turn our deadline into one more retry. ``Expired`` passes through
them and becomes a ``DeadlineExceeded`` when it leaves the ``deadline`` block.

An alarm can also fire inside ``deadline``'s own entry (a time so short it ran out while being
set) or exit (just as the block finished, or on its way while the timer is stopped): neither may
escape as a raw ``Expired``. The first is a ``DeadlineExceeded`` like any other; from the first
step of the exit on, the handler does nothing.
"""

from __future__ import annotations

from ecrcred.errors import DeadlineExceeded

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    import signal
    from types import FrameType, TracebackType
else:  # the C module: signal.py builds enums of every signal at import, ~1 ms per kubelet exec
    import _signal as signal


class Expired(BaseException):
    """The alarm fired; converted to DeadlineExceeded at the edge of the block. Code that can
    still give a useful answer when time is up (a cached token) may catch it."""


class deadline:
    """Raise DeadlineExceeded("<what> did not finish within Ns") if the block runs too long.

    A class rather than contextlib.contextmanager: contextlib costs the hot path ~2 ms."""

    def __init__(self, seconds: float, what: str, hint: str) -> None:
        self.seconds = seconds
        self.what = what
        self.hint = hint
        self._previous: object = None
        self._armed = False
        self._live = False  # whether an alarm now raises Expired

    def __enter__(self) -> None:
        if self.seconds <= 0:
            return
        try:
            self._previous = signal.signal(signal.SIGALRM, self._on_alarm)
        except ValueError:  # not the main thread: signals cannot be ours, run unbounded
            return
        self._armed = self._live = True
        try:
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        except Expired:  # so short a time that it ran out before the block began
            self._disarm()
            raise self._exceeded() from None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # The block's work is done: an alarm from here on is ignored, and the work kept.
        self._live = False
        if not self._armed:
            return
        self._disarm()
        if isinstance(exc, Expired):
            raise self._exceeded() from None

    def _disarm(self) -> None:
        self._live = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._previous)  # type: ignore[arg-type]
        self._armed = False

    def _exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"{self.what} did not finish within {self.seconds:g}s",
                                hint=self.hint)

    def _on_alarm(self, _signum: int, frame: FrameType | None) -> None:
        # Python runs a handler when a function starts, too: an alarm due just as the block
        # ended can run it at __exit__'s entry, before its first line clears _live.
        if self._live and (frame is None or frame.f_code is not _EXIT_CODE):
            raise Expired


_EXIT_CODE = deadline.__exit__.__code__
