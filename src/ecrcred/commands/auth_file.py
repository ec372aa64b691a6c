"""``ecrcred write-auth-file``: the credentials ecrcred resolves, in a file CRI-O or cri-dockerd
reads, once or (``--watch``) kept fresh.

Wires ``authfile.AuthFileKeeper`` to the router and token cache ``get-credentials`` uses, to
``files.write_private_file`` for the bytes, and to report lines on stdout. Why a command of its
own rather than a ``pull-sandbox`` option: the nodes that need the file run CRI-O or
cri-dockerd, not containerd, and ``pull-sandbox`` speaks containerd (its pin label, its image
events); CRI-O re-reads ``pause_image_auth_file`` at each pull, so with the file fresh the
runtime keeps its own sandbox image and no second keeper is needed. Under ``--watch`` the token
cache is fronted by memory, SIGTERM and SIGINT end the sleep at once, and a stdout that goes
away ends only the report lines, never the watch.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import TYPE_CHECKING

from ecrcred import authfile, crio_config
from ecrcred.cache import FileCache, MemoryCache
from ecrcred.clock import SystemClock
from ecrcred.deadline import deadline
from ecrcred.errors import (
    EXIT_OK,
    AuthFileError,
    ConfigError,
    OutputError,
    UnsafeAuthFile,
    UsageError,
)
from ecrcred.files import Untrusted, check_private_file_place, reason, write_private_file

if TYPE_CHECKING:
    from collections.abc import Callable

    from ecrcred.cli import Wiring
    from ecrcred.seams import TokenCache

_UNSAFE_HINT = ("write it in a directory only root can write to (e.g. /etc/crio), with no "
                "symlink at the file's name")


def write_file(path: str, body: bytes) -> None:
    """``files.write_private_file``, its OSErrors as our errors (one line, what to do)."""
    _as_ours(path, lambda: write_private_file(path, body))


def _as_ours(path: str, act: Callable[[], None]) -> None:
    try:
        act()
    except Untrusted as exc:
        raise UnsafeAuthFile(f"refusing to write the auth file {path}: {exc.path} is {exc.why}",
                             hint=_UNSAFE_HINT) from None
    except OSError as exc:
        where = exc.filename or path
        raise AuthFileError(f"cannot write the auth file {path}: {where}: {reason(exc)}",
                            hint="run as root, and check the disk and the path") from None


class _StopAwareClock(SystemClock):
    """The system clock, whose sleep a stop request (SIGTERM, SIGINT) ends at once."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)


def write_auth_file(w: Wiring) -> int:
    args, log = w.args, w.log
    fmt = args.format
    path = os.path.abspath(args.file or authfile.DEFAULT_FILES[fmt])
    images = list(args.image or [])
    if not images:
        if fmt != authfile.CONTAINERS_AUTH:
            raise UsageError("write-auth-file --format docker-config needs --image",
                             hint="name the images the runtime pulls, e.g. cri-dockerd's "
                             "--pod-infra-container-image")
        found = crio_config.pause_image(args.crio_config or crio_config.DEFAULT_CONFIG)
        log.debug(f"sandbox image {found.value} from {found.file}")
        try:
            names = [authfile.image_name(found.value)]
        except UsageError as exc:  # the config's mistake, not the command line's
            raise ConfigError(f"{found.file}: pause_image: {exc.message}",
                              hint="fix pause_image in [crio.image], or pass --image") from None
    else:
        names = [authfile.image_name(image) for image in images]
    # Refuse a destination before any token is fetched for it.
    _as_ours(path, lambda: check_private_file_place(path))

    stop = threading.Event()
    clock = _StopAwareClock(stop)
    disk, state_dir = w.token_cache(lock_timeout=30.0)
    cache: TokenCache = MemoryCache(disk, clock) if args.watch else disk
    router = w.router(clock, state_dir, aws_timeout=10.0)
    stdout_lost = False

    def report(written: authfile.Written) -> None:
        nonlocal stdout_lost
        if stdout_lost:
            return
        try:
            w.stdout.write(log.scrub(authfile.report_line(written, clock.time())) + "\n",
                           "a report line")
        except OutputError as exc:
            if not args.watch:
                raise
            log.warning(f"{exc.one_line()}; watching on without report lines")
            stdout_lost = True

    keeper = authfile.AuthFileKeeper(path, names, fmt, router, cache, clock, log, write_file,
                                     report)

    def one_pass() -> authfile.Written:
        # A throttling hold may be waited out in the first half of the pass's time.
        wait_until = clock.monotonic() + args.timeout / 2
        with deadline(args.timeout, "writing the auth file",
                      hint="check the node's network path to the registry's token API, or "
                      "raise --timeout"):
            return keeper.write(args.interval, wait_until)

    try:
        if not args.watch:
            one_pass()
            return EXIT_OK

        def on_signal(_signum: int, _frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        log.info(f"keeping {path} fresh for {', '.join(names)} (rewritten before the earliest "
                 f"token is due, at least every {args.interval:g}s)")
        keeper.watch(stop.is_set, args.interval, one_pass)
        log.info("stopped")
        return EXIT_OK
    finally:
        if isinstance(disk, FileCache):  # the directory it holds open (and the config's)
            disk.close()
