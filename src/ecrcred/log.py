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
    from typing import TextIO

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
_NAMES = {DEBUG: "debug", INFO: "info", WARNING: "warning", ERROR: "error"}


class StderrLogger:
    """``ecrcred: <level>: <message>`` lines on a stream, one per call."""

    def __init__(self, stream: TextIO | None = None, level: int = INFO,
                 prefix: str = "ecrcred") -> None:
        self._stream = stream
        self.level = level
        self._prefix = prefix
        self._secrets: set[str] = set()

    def add_secret(self, secret: str | None) -> None:
        # Short strings would scrub ordinary words; real secrets are long.
        if secret and len(secret) >= 6:
            self._secrets.add(secret)

    def scrub(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "<redacted>")
        return text

    def _emit(self, level: int, message: str) -> None:
        if level < self.level:
            return
        line = " ".join(self.scrub(message).split())
        stream = self._stream if self._stream is not None else sys.stderr
        stream.write(f"{self._prefix}: {_NAMES[level]}: {line}\n")
        stream.flush()

    def debug(self, message: str) -> None:
        self._emit(DEBUG, message)

    def info(self, message: str) -> None:
        self._emit(INFO, message)

    def warning(self, message: str) -> None:
        self._emit(WARNING, message)

    def error(self, message: str) -> None:
        self._emit(ERROR, message)
