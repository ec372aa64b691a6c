"""Small files, read and written as root without trusting the file system: the one place for it.

ecrcred runs as root and reads files that other users may have planted or swapped (its own state
directory, config files, password files, docker configs). Everything here follows three rules,
modelled on OpenSSH's StrictModes:

- **Nothing another user could have put in place is believed.** A directory is trusted when it
  and every directory above it belong to root or to us and nobody else can write to them (a
  parent such as ``/tmp`` may be writable by all when its sticky bit stops others renaming our
  entries); a file in a trusted directory is believed only when it is a regular file of ours
  that no one else can read or write.
- **No unexpected symlink is followed, and no path is looked up twice.** The state directory is
  opened once, component by component with ``O_NOFOLLOW``, and every later operation is relative
  to that open descriptor, so a path swapped mid-run cannot redirect a read or a write. A
  symlink is followed only in a parent of the directory, and only when root or we own it (it sits
  in a directory already checked, so nobody else could have made it).
- **We change the mode only of what we created.** A directory ecrcred makes is 0700; one it found
  is used or refused, never chmod'ed.

Reads are bounded and never block: ``O_NONBLOCK`` so that a FIFO planted where a file should be
reads as empty instead of hanging until the deadline, and ``fstat`` of the opened descriptor (not
a ``stat`` of the path before it) decides what the file is.

Standard library only, and cheap: the kubelet's cache-hit path opens the state directory and one
file through here.
"""

from __future__ import annotations

import errno
import os
import stat

from ecrcred._record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from ecrcred.seams import Logger

try:  # the builtin module: hashlib would load OpenSSL, 2-4 ms on every kubelet exec
    from _sha256 import sha256 as _sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - Python builds without it (3.12+ names it _sha2)
    from hashlib import sha256 as _sha256

_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
MAX_SYMLINKS = 40  # as the kernel's own lookup limit: a loop of links ends in an error
LEFTOVER_AGE = 60.0  # seconds; a live writer's temp file exists for milliseconds


def sha256_hex(data: bytes) -> str:
    return str(_sha256(data).hexdigest())


class Untrusted(OSError):
    """A path exists but someone other than root or us could have put it there, or it is not
    the kind of file it should be. ``why`` says so in words for a one-line message."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(errno.EPERM, why, path)
        self.path = path
        self.why = why


class SmallFile(Record):
    """A file's bytes (at most ``limit + 1`` of them: more means too large) and what ``fstat``
    said of the descriptor they were read from."""

    data: bytes
    uid: int
    mode: int  # the permission bits

    @property
    def private(self) -> bool:
        """No permission for group or others (0600 or less)."""
        return not self.mode & 0o077


def read_small(path: str, limit: int, *, dir_fd: int | None = None,
               follow: bool = True) -> SmallFile:
    """Up to ``limit + 1`` bytes of a regular file, opened without blocking; with
    ``follow=False`` a symlink at ``path`` is refused (ELOOP). Raises OSError (FileNotFoundError
    when missing, ``Untrusted`` when it is not a regular file)."""
    flags = _READ_FLAGS if follow else _READ_FLAGS | os.O_NOFOLLOW
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Untrusted(path, "not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return SmallFile(b"".join(chunks), st.st_uid, stat.S_IMODE(st.st_mode))


def strangers_may_write(uid: int, mode: int, euid: int, *, sticky_ok: bool) -> str:
    """Why a file or directory with this owner and mode could be changed by a user other than
    root and ``euid``, or "" when it cannot."""
    if uid not in (0, euid):
        return f"owned by uid {uid}"
    if mode & 0o022 and not (sticky_ok and mode & stat.S_ISVTX):
        who = {0o022: "group and others", 0o020: "its group"}.get(mode & 0o022, "others")
        return f"writable by {who} (mode {stat.S_IMODE(mode):04o})"
    return ""


class NamedFile(Record):
    """A file that root's own configuration names, read (``found``), and why a user other than
    root and us could have written it or redirected the path to it (``stranger``; "" when
    none could)."""

    found: SmallFile
    stranger: str


def read_named(path: str, limit: int, euid: int | None = None) -> NamedFile:
    """Read a file named by root's configuration (a config, password or docker config file),
    following symlinks as a path does, and judge everything the read went through: each
    directory from ``/`` down (``open_trusted_dir``), each symlink on the way and the directories
    its target runs through, and the file itself by the descriptor that was read. The read and
    the judgement are one walk, so no path is looked up twice.

    A path through something another user could change is still read (through the plain path)
    and ``stranger`` says why: the caller refuses it (the config file) or warns (a password
    file). Raises OSError as ``read_small`` does (FileNotFoundError when it is missing); a
    directory that cannot be opened is an error, never taken as trusted."""
    euid = os.geteuid() if euid is None else euid
    current = os.path.abspath(path)
    for _link in range(MAX_SYMLINKS + 1):
        directory, name = os.path.split(current)
        try:
            fd = open_trusted_dir(directory, euid, holds_named_file=True)
        except Untrusted as exc:
            return NamedFile(read_small(path, limit), f"{exc.path} is {exc.why}")
        try:
            found = read_small(name, limit, dir_fd=fd, follow=False)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                raise
            if st.st_uid not in (0, euid):
                return NamedFile(read_small(path, limit),
                                 f"{current} is a symlink owned by uid {st.st_uid}")
            current = os.path.join(directory, os.readlink(name, dir_fd=fd))
            continue
        finally:
            os.close(fd)
        why = strangers_may_write(found.uid, found.mode, euid, sticky_ok=False)
        return NamedFile(found, f"{current} is {why}" if why else "")
    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)


def open_trusted_dir(path: str, euid: int | None = None, *, create: bool = False,
                     holds_named_file: bool = False) -> int:
    """An open descriptor of directory ``path``, reached from ``/`` one component at a time
    without following a symlink we did not expect, each component owned by root or ``euid`` and
    writable by nobody else (a sticky parent such as /tmp excepted; never the directory itself).

    With ``create``, missing components are made 0700 (ours, so that mode is ours to set). The
    last component must not be a symlink; a symlink above it is followed when root or we own it
    (the directory holding it has been checked, so nobody else could have made it), and the walk
    starts again from ``/`` along its target. Raises ``Untrusted`` naming the first component
    that fails, or another OSError.

    ``holds_named_file``: the directory of a file that root's own configuration names (a config
    or password file) rather than our state directory: it may itself be a trusted symlink or
    sticky, as any of its parents may."""
    euid = os.geteuid() if euid is None else euid
    path = os.path.normpath(os.path.abspath(path))
    for _link in range(MAX_SYMLINKS + 1):
        restart = _walk(path, euid, create, holds_named_file)
        if isinstance(restart, int):
            return restart
        path = restart
    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)


def _walk(path: str, euid: int, create: bool, lenient_last: bool) -> int | str:
    """One walk of ``open_trusted_dir``: the descriptor, or the path to walk again when a
    trusted symlink was met (its target put in its place, resolved as text: every component
    before it is a real directory, so ``..`` in the target means what it says)."""
    parts = [p for p in path.split("/") if p]
    fd = os.open("/", _DIR_FLAGS)
    try:
        _check_dir(fd, "/", euid, last=not parts and not lenient_last)
        where = ""
        for index, name in enumerate(parts):
            last = index == len(parts) - 1 and not lenient_last
            where = f"{where}/{name}"
            try:
                child = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:  # noqa: SIM105 - contextlib.suppress would cost the hot path its import
                    os.mkdir(name, 0o700, dir_fd=fd)
                except FileExistsError:
                    pass  # another process made it between our two calls: checked below
                child = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR),
                                             where) from None
                if last:
                    raise Untrusted(where, "a symlink (the directory itself must not be one)"
                                    ) from None
                if st.st_uid not in (0, euid):
                    raise Untrusted(where, f"a symlink owned by uid {st.st_uid}") from None
                target = os.readlink(name, dir_fd=fd)
                rest = "/".join(parts[index + 1:])
                return os.path.normpath(os.path.join(os.path.dirname(where) or "/", target,
                                                     rest))
            os.close(fd)
            fd = child
            _check_dir(fd, where, euid, last=last)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check_dir(fd: int, where: str, euid: int, *, last: bool) -> None:
    st = os.fstat(fd)
    why = strangers_may_write(st.st_uid, st.st_mode, euid, sticky_ok=not last)
    if why:
        raise Untrusted(where, why)


class StateDir:
    """ecrcred's own directory (the token cache, locks, holds and the compiled config), opened
    once and checked (``open_trusted_dir``); every file operation is relative to that descriptor.
    A directory that cannot be used or trusted is the caller's to report: it goes on without one
    (no caching), as for an unwritable directory."""

    def __init__(self, path: str, fd: int, euid: int, mode: int) -> None:
        self.path = path
        self.fd = fd
        self._euid = euid
        self._mode = mode

    @classmethod
    def open(cls, path: str, euid: int, *, create: bool = True) -> StateDir:
        """Open and check ``path`` (made 0700 when missing and ``create``). Raises ``Untrusted``
        when another user could change what is in it, PermissionError when we cannot write to
        it, another OSError when it cannot be opened."""
        fd = open_trusted_dir(path, euid, create=create)
        st = os.fstat(fd)
        if euid != 0 and not (st.st_uid == euid and st.st_mode & stat.S_IWUSR
                              and st.st_mode & stat.S_IXUSR):
            os.close(fd)
            raise PermissionError(errno.EACCES, "not writable", path)
        return cls(path, fd, euid, stat.S_IMODE(st.st_mode))

    @property
    def readable_by_others(self) -> bool:
        return bool(self._mode & 0o077)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:  # as a file object does: a long-lived process opens many caches
        self.close()

    def join(self, name: str) -> str:
        return os.path.join(self.path, name)

    def read(self, name: str, limit: int) -> SmallFile:
        """A file of ours in the directory: regular, owned by us, private to us. Raises OSError
        (``Untrusted`` for a file someone else made or could read or change)."""
        found = read_small(name, limit, dir_fd=self.fd, follow=False)
        if found.uid != self._euid:
            raise Untrusted(self.join(name), f"owned by uid {found.uid}")
        if not found.private:
            raise Untrusted(self.join(name), f"readable or writable by others (mode "
                                             f"{found.mode:04o})")
        return found

    def write_atomic(self, name: str, body: bytes) -> None:
        """Replace ``name`` (mode 0600) so that a reader sees the old file or the whole new one,
        never part of it, even if we are killed mid-write: temp file in the directory, fsync,
        rename, fsync of the directory. Raises OSError; leaves no temp file behind."""
        # pid and a random part: writers in other PID namespaces (the DaemonSet's watcher) may
        # have our pid, and O_EXCL must never meet another writer's file, nor we remove it.
        tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=self.fd)
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            os.fsync(self.fd)
        except BaseException:  # OSError, or our deadline mid-write: leave no copy of a password
            self.unlink(tmp)
            raise
        self._sweep_leftovers(name)

    def _sweep_leftovers(self, name: str) -> None:
        """Remove temp files of ``name`` that writers killed mid-write (SIGKILL, OOM, power)
        left: they may hold a password, and nothing else would ever remove them. Only those
        older than ``LEFTOVER_AGE`` next to the file just written (file system times, no clock
        needed): a writer in another PID namespace may be writing one right now."""
        prefix, suffix = f".{name}.", ".tmp"
        try:
            newest = os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mtime
            with os.scandir(self.fd) as entries:
                for entry in entries:
                    if (entry.name.startswith(prefix) and entry.name.endswith(suffix)
                            and entry.is_file(follow_symlinks=False)
                            and entry.stat(follow_symlinks=False).st_mtime
                            < newest - LEFTOVER_AGE):
                        self.unlink(entry.name)
        except OSError:
            pass  # best effort: the cache works with or without the sweep

    def unlink(self, name: str) -> None:
        """Remove ``name`` if it is there (a symlink itself, never its target)."""
        try:  # noqa: SIM105 - contextlib.suppress would cost the hot path its import
            os.unlink(name, dir_fd=self.fd)
        except OSError:
            pass

    def open_lock(self, name: str, log: Logger) -> int | None:
        """A descriptor of our lock file ``name`` to ``flock``, or None (go unlocked, as without
        a cache). A lock file that is not a regular 0600 file of ours (a symlink, a FIFO, one
        another user made and may hold locked for good) is replaced, with a warning."""
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        for _attempt in range(2):
            try:
                fd = os.open(name, flags | os.O_CREAT, 0o600, dir_fd=self.fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.EACCES):
                    log.debug(f"cannot open lock file {self.join(name)} ({reason(exc)}); "
                              "going unlocked")
                    return None
                why = "a symlink" if exc.errno == errno.ELOOP else reason(exc)
            else:
                st = os.fstat(fd)
                if (stat.S_ISREG(st.st_mode) and st.st_uid == self._euid
                        and not st.st_mode & 0o077):
                    return fd
                os.close(fd)
                why = (f"owned by uid {st.st_uid}" if st.st_uid != self._euid
                       else "not a regular file" if not stat.S_ISREG(st.st_mode)
                       else f"mode {stat.S_IMODE(st.st_mode):04o}")
            log.warning(f"lock file {self.join(name)} is {why}; replacing it")
            try:
                os.unlink(name, dir_fd=self.fd)
            except IsADirectoryError:
                try:
                    os.rmdir(name, dir_fd=self.fd)
                except OSError as exc:
                    log.debug(f"cannot remove {self.join(name)} ({reason(exc)}); going unlocked")
                    return None
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.debug(f"cannot remove {self.join(name)} ({reason(exc)}); going unlocked")
                return None
        return None


def write_private_file(path: str, body: bytes, euid: int | None = None) -> None:
    """Replace the file at ``path`` with ``body`` for another program to read (a container
    runtime's auth file), by the state directory's own means: its directory opened and checked
    as ``StateDir.open`` does (missing components made 0700; refused when another user could
    write to it or it is itself a symlink), then ``StateDir.write_atomic`` (a 0600 file of ours,
    temp file, fsync, rename, fsync of the directory).

    Something already at ``path`` that is not a regular file is refused, a symlink above all:
    the rename would not follow it, but a link there means someone meant the credentials to go
    elsewhere, and replacing it silently would hide that. Raises ``Untrusted`` naming what is
    refused, or another OSError."""
    state, name = _private_file_place(path, euid)
    try:
        state.write_atomic(name, body)
    finally:
        state.close()


def check_private_file_place(path: str, euid: int | None = None) -> None:
    """What ``write_private_file`` would refuse, refused now (its directory made when
    missing), so a command fails before it fetches the secrets it would write."""
    _private_file_place(path, euid)[0].close()


def _private_file_place(path: str, euid: int | None) -> tuple[StateDir, str]:
    euid = os.geteuid() if euid is None else euid
    directory, name = os.path.split(os.path.abspath(path))
    if not name or path.endswith("/"):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    state = StateDir.open(directory, euid, create=True)
    try:
        st = os.stat(name, dir_fd=state.fd, follow_symlinks=False)
    except FileNotFoundError:
        return state, name
    except BaseException:
        state.close()
        raise
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        state.close()
        raise Untrusted(state.join(name), "a symlink" if stat.S_ISLNK(st.st_mode)
                        else "not a regular file")
    return state, name


def reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
