"""Diagnostics on stderr (never stdout, which belongs to the protocol), with secrets scrubbed.

A few lines of our own instead of ``logging``: the kubelet's cache-hit path pays for every import,
and a plugin needs only levelled lines. Every known secret (passwords we handed out, tokens we
were given) is registered with ``add_secret`` and replaced by ``<redacted>`` in any line, as a
second line of defence behind code that never formats a secret in the first place.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import TextIO

    from ecrcred.seams import Logger

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
_NAMES = {DEBUG: "debug", INFO: "info", WARNING: "warning", ERROR: "error"}
# Shorter strings would scrub ordinary words; real secrets are long.
MIN_SECRET_LENGTH = 6
# The secrets botocore's credential chain takes from the environment: the node's own keys (its
# session token is sent with every request, so an endpoint or proxy can echo it back), the
# legacy name of the session token, and the container credentials endpoint's bearer token.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
              "AWS_CONTAINER_AUTHORIZATION_TOKEN")


class StderrLogger:
    """``ecrcred: <level>: <message>`` lines on a stream, one per call."""

    def __init__(self, stream: TextIO | None = None, level: int = INFO,
                 prefix: str = "ecrcred") -> None:
        self._stream = stream
        self.level = level
        self._prefix = prefix
        self._secrets: set[str] = set()

    def add_secret(self, secret: str | None) -> None:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            self._secrets.add(secret)

    def scrub(self, text: str) -> str:
        return redact(text, self._secrets)

    def _emit(self, level: int, message: str) -> None:
        if level < self.level:
            return
        line = " ".join(self.scrub(message).split())
        if len(line) > MAX_LINE or not line.isprintable():
            # The last line of defence for text a caller forgot to quote (an image, a host):
            # no escape sequence reaches the kubelet's log, and no line floods it.
            line = quote_untrusted(line, MAX_LINE)
        stream = self._stream if self._stream is not None else sys.stderr
        try:
            stream.write(f"{self._prefix}: {_NAMES[level]}: {line}\n")
            stream.flush()
        except (AttributeError, OSError, ValueError):
            # stderr closed (None), full or gone: no other channel is left, and raising here
            # would replace the error being reported (and its exit code) with this one.
            return

    def debug(self, message: str) -> None:
        self._emit(DEBUG, message)

    def info(self, message: str) -> None:
        self._emit(INFO, message)

    def warning(self, message: str) -> None:
        self._emit(WARNING, message)

    def error(self, message: str) -> None:
        self._emit(ERROR, message)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with each secret (of ``MIN_SECRET_LENGTH`` or more) replaced by ``<redacted>``,
    the longest first so that one holding another goes whole. For text about to be cut (by
    ``quote_untrusted``), where the logger's own scrub would no longer see a secret whole."""
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH},
                         key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    return text


def register_environment_secrets(log: Logger, env: Mapping[str, str]) -> None:
    """Give ``log`` the secrets of ``env`` (``SECRET_ENV``) to scrub: an endpoint, a proxy or a
    library that repeats one must not put it in the kubelet's log. Once per command, from the
    CLI: a few dictionary look-ups, nothing read."""
    for name in SECRET_ENV:
        log.add_secret(env.get(name))


MAX_LINE = 4096  # characters of one line: every message is far shorter unless it quotes junk
MAX_QUOTED = 200  # characters of another party's text (AWS, a runtime, a request) we repeat


def quote_untrusted(text: str, limit: int = MAX_QUOTED) -> str:
    """Text that another program, a server or a request gave us, made safe to put in one line:
    at most ``limit`` characters, control and other non-printable characters escaped (a
    ``\\x1b[2J`` or a newline must not rewrite or split the kubelet's log), and a mark when it
    was cut. Secrets are still the logger's job (``scrub``): this bounds and escapes only."""
    cut = len(text) > limit
    shown = text[:limit]
    if not shown.isprintable():
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)
    return f"{shown}...(cut, {len(text)} chars)" if cut else shown
