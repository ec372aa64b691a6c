"""Auth files for runtimes that cannot call a kubelet plugin: what goes in them and when.

CRI-O pulls the sandbox image with the credentials in ``pause_image_auth_file`` (re-read at each
pull), and cri-dockerd with those of a static docker config; neither can run ecrcred. So
``write-auth-file`` resolves credentials exactly as ``get-credentials`` does (the router, its
sources, the shared token cache) and writes them in the format the runtime reads. This module
owns the two formats, the keys each reader expects, and the refresh schedule; where the bytes go
and how (atomically, 0600, in a checked directory) is ``files.write_private_file``'s; the
command's wiring is ``commands/auth_file.py``.

- ``containers-auth``: containers-auth.json(5), what CRI-O, podman and skopeo read
  (containers/image): ``{"auths": {"registry[/namespace]": {"auth": base64(user:password)}}}``.
  Docker Hub is ``docker.io``.
- ``docker-config``: docker's ``config.json`` (``auths`` only), what cri-dockerd reads through
  the kubelet's legacy keyring. Docker Hub is ``https://index.docker.io/v1/``, the key
  ``docker login`` writes and every docker-config reader knows.

An answer that holds only for a path of its registry (a path rule, a docker config key with a
path: ``Lookup.per_image``) is written under ``host/repository``, never under the host, so the
file opens no more than the kubelet would be told. Only the images asked for are written: the
file holds nothing else.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, NamedTuple

from ecrcred.errors import (
    AuthFileError,
    CredentialError,
    DeadlineExceeded,
    NoSourceError,
    UnsafeAuthFile,
    UsageError,
)
from ecrcred.imageref import DOCKER_HUB, parse_reference
from ecrcred.log import quote_untrusted
from ecrcred.provider import resolve
from ecrcred.tokens import DEFAULT_REFRESH_MARGIN

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ecrcred.provider import Resolved
    from ecrcred.seams import Clock, CredentialSource, Logger, TokenCache

CONTAINERS_AUTH = "containers-auth"
DOCKER_CONFIG = "docker-config"
# Where each runtime looks: a file of its own for CRI-O (crio.conf's pause_image_auth_file names
# it), and the one path cri-dockerd's HOME-less unit can be made to read (HOME=/).
DEFAULT_FILES = {CONTAINERS_AUTH: "/etc/crio/ecrcred-auth.json",
                 DOCKER_CONFIG: "/.docker/config.json"}
DOCKER_HUB_KEY = "https://index.docker.io/v1/"

# The watch's schedule. A rewrite comes when the earliest token in the file stops being fresh in
# the shared cache (``Token.fresh_until``: an hour before expiry, or half the life of a short
# token), so the rewrite's lookup fetches the new token that the kubelet's next execution will
# find cached. Never sooner than MIN_DELAY (a token handed out stale, a last resort served while
# the API fails) unless the watch's interval is shorter, and never later than that interval (a
# clock gone back would put the next refresh after expiry).
MIN_DELAY = 30.0
RETRY_FIRST = 5.0
RETRY_MAX = 300.0


class Entry(NamedTuple):
    """One key of the file and what is written under it; ``fresh_until`` is when it is due."""

    key: str
    username: str
    password: str
    fresh_until: float  # epoch seconds
    describe: str  # which source (never a secret)

    def __repr__(self) -> str:  # never let a password reach a log through repr()
        return (f"Entry(key={self.key!r}, username={self.username!r}, password=<redacted>, "
                f"fresh_until={self.fresh_until!r}, describe={self.describe!r})")


class Written(NamedTuple):
    """What one pass wrote: the entries, and when the next pass is due (epoch seconds)."""

    path: str
    entries: tuple[Entry, ...]
    refresh_at: float


def image_name(image: str) -> str:
    """``host/repository`` of an image reference, as the kubelet sends it; UsageError when it
    is not one."""
    try:
        return parse_reference(image).name
    except ValueError:
        raise UsageError(f"'{quote_untrusted(image)}' is not an image reference",
                         hint="pass --image as host/repository[:tag], e.g. "
                         "123456789012.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.9") from None


def entry_key(resolved: Resolved, name: str, fmt: str) -> str:
    """The key the answer for image ``name`` goes under in a file of format ``fmt``."""
    key = name if resolved.lookup.per_image else resolved.lookup.auth_key
    if fmt == DOCKER_CONFIG and key == DOCKER_HUB:
        return DOCKER_HUB_KEY
    return key


def render(entries: Sequence[Entry]) -> bytes:
    """The file's bytes, the same shape in both formats (``auths`` of base64 ``user:password``),
    keys sorted so that an unchanged answer is an unchanged file."""
    auths = {e.key: {"auth": base64.b64encode(f"{e.username}:{e.password}".encode()).decode()}
             for e in entries}
    return (json.dumps({"auths": auths}, indent=2, sort_keys=True) + "\n").encode()


def collect(images: Sequence[str], fmt: str, source: CredentialSource, cache: TokenCache,
            clock: Clock, log: Logger, wait_until: float | None = None) -> tuple[Entry, ...]:
    """The entries for ``images`` (kubelet form, ``host/repository``), each resolved through
    ``source`` and the token cache as ``get-credentials`` resolves it. An image no source knows
    is an error: it was asked for by name, and a file without it would fail its pulls later."""
    entries: dict[str, tuple[str, Entry]] = {}
    for name in images:
        resolved = resolve(name, source, cache, clock, log, wait_until=wait_until)
        if resolved is None:
            raise NoSourceError(f"no credential source knows {quote_untrusted(name)}",
                                hint="add a rule for its registry to ecrcred's config, or leave "
                                "the image out: an image pulled anonymously needs no auth file")
        token = resolved.token
        if ":" in token.username:  # "user:password" would split at the wrong colon
            raise CredentialError(f"{resolved.lookup.describe}: the username for "
                                  f"{quote_untrusted(name)} holds a ':', which basic auth cannot "
                                  "carry", hint="use a username without ':'")
        key = entry_key(resolved, name, fmt)
        entry = Entry(key, token.username, token.password,
                      token.fresh_until(DEFAULT_REFRESH_MARGIN), resolved.lookup.describe)
        if key in entries:
            first, seen = entries[key]
            if (seen.username, seen.password) != (entry.username, entry.password):
                raise CredentialError(
                    f"{quote_untrusted(first)} and {quote_untrusted(name)} get different "
                    f"credentials for the same key {quote_untrusted(key)}",
                    hint="write them to two files, or make one rule answer both")
            if entry.fresh_until >= seen.fresh_until:
                continue
        entries[key] = (name, entry)
    return tuple(entry for _name, entry in entries.values())


def refresh_delay(entries: Sequence[Entry], now: float, longest: float) -> float:
    """Seconds until the next rewrite: when the earliest entry stops being fresh, but not
    sooner than MIN_DELAY and not later than ``longest`` (which wins over MIN_DELAY)."""
    if not entries:
        return longest
    soonest = min(e.fresh_until for e in entries)
    return min(longest, max(MIN_DELAY, soonest - now))


class AuthFileKeeper:
    """Writes the file once (``write``) or keeps it fresh (``watch``).

    ``write_file(path, body)`` puts the bytes in place (``files.write_private_file`` in the
    program); ``clock`` gives the time tokens are judged by and sleeps between passes (the
    command's sleep ends early on SIGTERM); ``stopped`` says when a watch should end. All passed
    in, so the schedule is tested with a fake clock and no file system."""

    def __init__(self, path: str, images: Sequence[str], fmt: str, source: CredentialSource,
                 cache: TokenCache, clock: Clock, log: Logger,
                 write_file: Callable[[str, bytes], None],
                 report: Callable[[Written], None]) -> None:
        self.path = path
        self.images = tuple(images)
        self.fmt = fmt
        self._source = source
        self._cache = cache
        self._clock = clock
        self._log = log
        self._write_file = write_file
        self._report = report

    def write(self, longest: float, wait_until: float | None = None) -> Written:
        """One pass: resolve every image, write the file, report it. Raises what resolving
        raises, ``AuthFileError`` when the file cannot be written."""
        entries = collect(self.images, self.fmt, self._source, self._cache, self._clock,
                          self._log, wait_until)
        self._write_file(self.path, render(entries))
        now = self._clock.time()
        written = Written(self.path, entries, now + refresh_delay(entries, now, longest))
        self._report(written)
        return written

    def watch(self, stopped: Callable[[], bool], interval: float,
              one_pass: Callable[[], Written] | None = None) -> None:
        """Write, then rewrite each time the earliest token is due (at most ``interval`` apart),
        until ``stopped()``. A pass that fails for a reason that may pass (the registry's token
        API, our deadline, a full disk) leaves the last file in place, is reported, and is
        retried after 5 s, doubling up to 5 min; one that cannot pass (a refused destination, a
        bad config or image) ends the watch with its error. ``one_pass`` runs a pass (the
        command wraps ``write`` in its deadline); default ``write(interval)``."""
        run = one_pass or (lambda: self.write(interval))
        failures = 0
        while not stopped():
            try:
                written = run()
            except UnsafeAuthFile:
                raise
            except (CredentialError, DeadlineExceeded, AuthFileError) as exc:
                failures += 1
                delay = min(RETRY_MAX, interval, RETRY_FIRST * 2 ** (failures - 1))
                self._log.warning(f"{exc.one_line()}; {self.path} left as it was, retrying in "
                                  f"{delay:g}s")
            else:
                failures = 0
                delay = max(0.0, written.refresh_at - self._clock.time())
            if stopped():
                break
            self._clock.sleep(delay)


def report_line(written: Written, now: float) -> str:
    """One report line: the file, its keys and where each came from, and the next refresh."""
    import time

    keys = "; ".join(f"{e.key} ({e.describe})" for e in written.entries) or "no entries"
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(written.refresh_at))
    return (f"wrote: {written.path}: {keys}; fresh until {at} (in "
            f"{max(0.0, written.refresh_at - now):.0f}s)")
