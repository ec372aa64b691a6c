"""Linux inotify through ctypes, to act the moment a file appears in a directory.

Used to SIGKILL an ecrcred process while it writes its token cache: ``wait_created`` returns as
soon as the kernel reports a created name in the watched directory, which is within
microseconds of the writer's ``open(O_CREAT)``, well before its ``fsync`` and ``rename``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import time
from collections.abc import Callable

IN_CREATE = 0x00000100
IN_MOVED_TO = 0x00000080
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class DirectoryWatch:
    """Names created in (or renamed into) one directory, in order."""

    def __init__(self, directory: str, mask: int = IN_CREATE | IN_MOVED_TO) -> None:
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if _libc.inotify_add_watch(self.fd, os.fsencode(directory), mask) < 0:
            errno = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(errno, f"inotify_add_watch {directory} failed")

    def _read(self) -> list[str]:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        names = []
        offset = 0
        while offset < len(data):
            _wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size
            names.append(data[offset:offset + length].rstrip(b"\0").decode())
            offset += length
        return names

    def wait_created(self, predicate: Callable[[str], bool], timeout: float) -> str | None:
        """The first created name for which ``predicate(name)`` is true, or None at timeout."""
        give_up = time.monotonic() + timeout
        while True:
            for name in self._read():
                if predicate(name):
                    return name
            left = give_up - time.monotonic()
            if left <= 0:
                return None
            select.select([self.fd], [], [], left)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> DirectoryWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
