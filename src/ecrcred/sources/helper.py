"""The credential-helper source: credentials from ``docker-credential-<name>`` programs.

Docker's helper protocol is one exec per question: ``docker-credential-<name> get``, the server
URL on stdin, ``{"ServerURL", "Username", "Secret"}`` on stdout, or exit non-zero with
``credentials not found in native keychain`` when the helper has nothing. As in docker-py's
``docker/credentials/``, a small function speaks it and turns every failure into one of two
named errors: ``HelperNotInstalled`` (nothing to run) and ``HelperFailed`` (it ran, and did not
give us a usable answer). The program runs through the ``Runner`` seam so the parsing and the
error mapping are tested without a process; ``SubprocessRunner`` is the real one.

Helpers are third-party programs run as root from the kubelet, so they are treated as hostile:
the runner bounds them in time and in memory (output is capped), and when one is done every
process it started is killed, even one that left its process group (``setsid``, a double fork),
because ecrcred is their child subreaper while a helper runs. Nothing a helper prints is ever
repeated, in a message or in the log: a failing helper's first line is as likely to be a refresh
token as an explanation. Errors name the helper, what happened and the command that shows its
own message. ``helper_name_problem`` is the one rule for what may follow ``docker-credential-``,
shared by the config file's ``credentialHelper`` and a docker config's helper names.
"""

from __future__ import annotations

import _thread
import os

from ecrcred.errors import HelperFailed, HelperNotInstalled
from ecrcred.imageref import DOCKER_HUB, registry_host
from ecrcred.log import quote_untrusted
from ecrcred.sources import DEFAULT_UNCACHED_DURATION, fixed_lookup

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Mapping, Sequence

    from ecrcred.config.rules import HelperOptions
    from ecrcred.records import Lookup, Pod
    from ecrcred.seams import Clock, Logger, Runner, RunResult

PROGRAM_PREFIX = "docker-credential-"
# What docker sends for Docker Hub: the v1 index URL, for historical reasons (cli/config).
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
# Helpers print this (docker-credential-helpers' errCredentialsNotFoundMessage) when they have
# nothing for a server; it is an answer, not a failure.
NOT_FOUND_MESSAGE = "credentials not found in native keychain"
# Username that marks the Secret as an identity (OAuth refresh) token: docker trades it for a
# registry token itself, but the kubelet and the container runtime can only send user/password.
IDENTITY_TOKEN_USERNAME = "<token>"  # noqa: S105 - a marker, not a password
# A helper's answer is a few hundred bytes; a runaway one must not eat the kubelet's plugin.
MAX_OUTPUT = 1 << 20
# PATH is shown in "not installed" messages only when it is this short (readable on one line).
MAX_PATH_SHOWN = 200
# Real helper names are a word or two (ecr-login, gcloud, desktop); this keeps a name readable
# in every message that shows it, and far inside a file name's 255 bytes.
MAX_NAME = 64
# How long the processes a helper left behind get to die of SIGKILL and be reaped: a process in
# uninterruptible sleep (a hung NFS read) cannot die sooner, and must not hold the kubelet longer.
REAP_TIMEOUT = 2.0
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>, since Linux 3.4

_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
# The subreaper flag belongs to the whole process: one helper runs at a time, so that a run never
# clears it under another one, nor kills the processes another one left behind.
_RUN_LOCK = _thread.allocate_lock()
# prctl from the C library, loaded at the first helper run; a str when it cannot be (why not).
_prctl: Callable[[int, int, int, int, int], int] | str | None = None


def helper_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a credential helper (the part after ``docker-credential-``), or
    None when it can: the one rule for the config file and for docker config files. The name
    becomes a file name looked up on PATH, so no '/' (a path), no leading '-' (an option to
    whoever reads it) or '.' (a hidden or relative name), and nothing that is not plain text."""
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME:
        return f"it is longer than {MAX_NAME} characters"
    bad = next((c for c in name if c not in _NAME_CHARS), None)
    if bad is not None:
        # repr of one character: escaped when it is a control character, never the whole name.
        return f"it contains {bad!r}; use only letters, digits, '.', '_' and '-'"
    if name[0] in "-.":
        return f"it starts with {name[0]!r}"
    return None


class SubprocessRunner:
    """``Runner`` over ``subprocess.Popen``: no shell, own session, output capped; on a timeout
    the helper's process group is killed, and after every run each process the helper started
    that is still alive, wherever it went, is killed and reaped."""

    def __init__(self, max_output: int = MAX_OUTPUT, log: Logger | None = None) -> None:
        self._max_output = max_output
        self._log = log
        self._told_no_subreaper = False

    def run(self, argv: Sequence[str], stdin: bytes, timeout: float,
            env: Mapping[str, str]) -> RunResult:
        with _RUN_LOCK:
            reaper = self._become_subreaper()
            try:
                # Our children from before this run are someone else's: never killed here.
                before = _children() if reaper else set()
                try:
                    return self._run(argv, stdin, timeout, env)
                finally:
                    if reaper:
                        self._kill_left_behind(argv, before)
            finally:
                if reaper:
                    _set_subreaper(0)

    def _run(self, argv: Sequence[str], stdin: bytes, timeout: float,
             env: Mapping[str, str]) -> RunResult:
        import subprocess
        import time

        deadline = time.monotonic() + timeout
        # A session of its own makes the helper a process-group leader, so a timeout can kill
        # everything it started, and a signal meant for the kubelet's group does not reach it.
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=dict(env), close_fds=True, start_new_session=True,
        )
        try:
            stdout, stderr = self._exchange(proc, stdin, deadline, argv, timeout)
            returncode = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            # A fresh exception without the output: what a helper printed may hold a secret.
            raise subprocess.TimeoutExpired(list(argv), timeout) from None
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        return subprocess.CompletedProcess(list(argv), returncode, stdout, stderr)

    def _become_subreaper(self) -> bool:
        """Make this process the child subreaper, so that a helper's orphaned descendants (a
        ``setsid`` child, a double-forked daemon) become our children instead of init's and can
        be found and killed. False, said once in the debug log, where that is not possible."""
        why_not = _set_subreaper(1)
        if why_not is None:
            return True
        if not self._told_no_subreaper and self._log is not None:
            self._told_no_subreaper = True
            self._log.debug(
                f"cannot make ecrcred a child subreaper ({why_not}): a credential helper's "
                "processes are killed with its process group only, and one that left it (setsid) "
                "may outlive the helper"
            )
        return False

    def _kill_left_behind(self, argv: Sequence[str], before: set[tuple[int, int]]) -> None:
        """SIGKILL and reap every child of ours that was not there before the helper ran: the
        helper's descendants, re-parented to us as their parents died. A grandchild comes to us
        only once its parent is dead, so this goes round until a round finds no one, or until
        ``REAP_TIMEOUT`` has passed: descendants that keep forking would otherwise keep it going
        for ever (``pull-sandbox --watch`` has no alarm to end it)."""
        import contextlib
        import signal
        import time

        deadline = time.monotonic() + REAP_TIMEOUT
        killed: set[int] = set()
        while True:
            left = [pid for pid, started in _children() if (pid, started) not in before]
            if not left:
                break
            if time.monotonic() >= deadline:
                if self._log is not None:
                    self._log.warning(
                        f"{len(left)} process(es) that {os.path.basename(argv[0])} started were "
                        f"still appearing after {REAP_TIMEOUT:g}s of killing them; left running"
                    )
                break
            for pid in left:
                # Our child, alive or a zombie we have not reaped: its pid cannot be reused yet.
                with contextlib.suppress(ProcessLookupError):  # reaped since the listing
                    os.kill(pid, signal.SIGKILL)
            unreaped = [pid for pid in left if not _reap(pid, deadline)]
            killed.update(left)
            if unreaped:
                if self._log is not None:
                    self._log.warning(
                        f"{len(unreaped)} process(es) that {os.path.basename(argv[0])} started "
                        f"did not die within {REAP_TIMEOUT:g}s of SIGKILL (pids "
                        f"{', '.join(map(str, unreaped))}); they may be stuck in the kernel"
                    )
                break
        if killed and self._log is not None:
            self._log.debug(f"killed {len(killed)} process(es) that {os.path.basename(argv[0])} "
                            "left behind")

    def _exchange(self, proc: subprocess.Popen[bytes], data: bytes, deadline: float,
                  argv: Sequence[str], timeout: float) -> tuple[bytes, bytes]:
        """Write ``data`` to the child's stdin and read its stdout and stderr to EOF, keeping at
        most ``max_output`` bytes of each, until ``deadline``. (``communicate`` cannot cap.)"""
        import select
        import selectors
        import subprocess
        import time

        stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
        if stdin is None or stdout is None or stderr is None:  # not with PIPE; for the checker
            raise RuntimeError("subprocess.Popen did not create the pipes asked for")
        kept = {stdout.fileno(): bytearray(), stderr.fileno(): bytearray()}
        pending = memoryview(data)
        with selectors.DefaultSelector() as selector:
            if pending:
                selector.register(stdin, selectors.EVENT_WRITE)
            else:
                stdin.close()
            selector.register(stdout, selectors.EVENT_READ)
            selector.register(stderr, selectors.EVENT_READ)
            # EOF on both pipes, not the helper's exit, ends this: a child it left behind that
            # still holds them keeps us here until the deadline, and is then killed with it.
            while selector.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise subprocess.TimeoutExpired(list(argv), timeout)
                for key, _ in selector.select(remaining):
                    if key.fileobj is stdin:
                        try:
                            # At most PIPE_BUF once writable: a write that cannot block.
                            written = os.write(key.fd, pending[: select.PIPE_BUF])
                        except BrokenPipeError:  # it exited or closed stdin without reading
                            written = len(pending)
                        pending = pending[written:]
                        if not pending:
                            selector.unregister(stdin)
                            stdin.close()
                        continue
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        continue
                    buffer = kept[key.fd]
                    room = self._max_output - len(buffer)
                    if room > 0:
                        buffer += chunk[:room]
                    # Past the cap the rest is read and dropped, so the helper never blocks on
                    # a full pipe; the deadline still bounds how long that goes on.
        return bytes(kept[stdout.fileno()]), bytes(kept[stderr.fileno()])


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the helper's process group (it leads it: ``start_new_session``) and reap it."""
    import contextlib
    import signal
    import subprocess

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group is already gone
        pass
    except PermissionError:  # a setuid member; the leader is still ours
        proc.kill()
    # Bounded: a leader in uninterruptible sleep (a hung NFS read) cannot die of SIGKILL sooner,
    # and must not hold the kubelet longer; it is reaped later or by init once we exit.
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=REAP_TIMEOUT)


def _set_subreaper(value: int) -> str | None:
    """prctl(PR_SET_CHILD_SUBREAPER, value): None when done, else why it could not be."""
    global _prctl  # noqa: PLW0603 - loaded once per process, as the C library is
    if _prctl is None:
        _prctl = _load_prctl()
    if isinstance(_prctl, str):
        return _prctl
    if _prctl(PR_SET_CHILD_SUBREAPER, value, 0, 0, 0) != 0:
        return "prctl(PR_SET_CHILD_SUBREAPER) failed"
    return None


def _load_prctl() -> Callable[[int, int, int, int, int], int] | str:
    """prctl from the C library already linked in, called through ``_ctypes`` (the C module
    under ctypes) rather than ctypes itself: the release build leaves the ctypes package out,
    because PyInstaller's bootstrap imports it at every start when it is bundled (about 1.5 ms
    of every cache hit). Its calls pass Python ints as C ints, which is what prctl's arguments
    here are. Imported at a helper's first run, never on the kubelet's cache-hit path."""
    import sys

    if not sys.platform.startswith("linux"):
        return f"not on Linux ({sys.platform})"
    try:
        import _ctypes
    except ImportError:
        return "this build has no _ctypes"
    try:
        # dlopen(NULL): the program itself and the C library it links (typeshed wants a path)
        address = _ctypes.dlsym(_ctypes.dlopen(None, os.RTLD_NOW), "prctl")  # type: ignore[arg-type]
    except (OSError, AttributeError):
        return "the C library has no prctl"
    call = getattr(_ctypes, "call_function", None)
    if call is None:
        return "this Python's _ctypes cannot call C functions directly"

    def prctl(option: int, arg2: int, arg3: int, arg4: int, arg5: int) -> int:
        result: int = call(address, (option, arg2, arg3, arg4, arg5))
        return result

    return prctl


def _children() -> set[tuple[int, int]]:
    """(pid, start time) of every process whose parent is this one, read from /proc. The start
    time tells a new child from an old one whose pid was reused."""
    me = os.getpid()
    found: set[tuple[int, int]] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:
                fields = parent_and_start(file.read())
        except OSError:  # it exited since the listing
            continue
        if fields is not None and fields[0] == me:
            found.add((int(entry), fields[1]))
    return found


def parent_and_start(stat: bytes) -> tuple[int, int] | None:
    """(parent pid, start time) from the text of a ``/proc/<pid>/stat``; None when it is not one.

    Field 2, the command name in parentheses, is whatever the program was called and may hold
    spaces and ')' itself (a helper names its children): the fields after it start after the
    last ')'. Then come state (3), ppid (4) ... starttime (22)."""
    fields = stat[stat.rfind(b")") + 1:].split()
    try:
        return int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _reap(pid: int, deadline: float) -> bool:
    """Wait for our child ``pid`` to exit and reap it, until ``deadline``; True once it is gone."""
    import time

    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # already reaped
            return True
        if done:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


def helper_program(name: str) -> str:
    """The helper's program name; ValueError when ``name`` could name a path, not a program
    (the config schema and the docker config reader refuse such names with their own errors)."""
    problem = helper_name_problem(name)
    if problem is not None:
        raise ValueError(
            f"credential helper name {name!r} is not valid: {problem} (the part after "
            f"{PROGRAM_PREFIX!r} is a plain name of letters, digits, '.', '_' and '-', e.g. "
            "'ecr-login')"
        )
    return PROGRAM_PREFIX + name


def server_url(host: str) -> str:
    """What docker writes on a helper's stdin for a registry host."""
    if host in (DOCKER_HUB, "index.docker.io"):
        return DOCKER_HUB_SERVER
    return host


def helper_get(name: str, server: str, runner: Runner, env: Mapping[str, str],
               timeout: float) -> tuple[str, str] | None:
    """``(username, secret)`` from ``docker-credential-<name> get`` for ``server``; None when
    the helper has nothing for it. Raises HelperNotInstalled or HelperFailed."""
    import shutil
    import subprocess

    program = helper_program(name)
    search = _search_path(env)
    path = shutil.which(program, path=search)
    if path is None:
        raise HelperNotInstalled(
            f"{program} is not installed: not found on PATH"
            + (f" ({search or 'empty'})" if len(search) <= MAX_PATH_SHOWN else ""),
            hint=f"install {program} on the node, or set PATH in the kubelet's environment (its "
            "systemd unit, or the env of this provider in the kubelet's credential provider "
            "config) to include the directory that holds it",
        )
    path = os.path.abspath(path)
    shown = quote_untrusted(server)  # the request's host: bounded and escaped in messages
    try:
        result = runner.run([path, "get"], server.encode(), timeout, env)
    except subprocess.TimeoutExpired:
        raise HelperFailed(
            f"{program} did not answer within {timeout:g}s for {shown} and was killed",
            hint=f"check that {program} works on the node (run 'echo {shown} | {path} get' as "
            "the kubelet's user); a helper that prompts or waits for a network is not usable "
            "here",
            code="HELPER_TIMEOUT",
        ) from None
    except FileNotFoundError:
        # Found a moment ago: it was removed since, or its #! interpreter does not exist.
        raise HelperNotInstalled(
            f"{program} at {path} could not be started: the file or the interpreter on its #! "
            "line does not exist",
            hint=f"reinstall {program} on the node",
        ) from None
    except OSError as exc:
        raise HelperFailed(
            f"{program} at {path} could not be started: {exc.strerror or type(exc).__name__}",
            hint=f"check that {path} is an executable for this node's architecture and that "
            "its file system is not mounted noexec",
        ) from None
    if result.returncode != 0:
        if _says_not_found(result.stdout):
            return None
        status = (f"was killed by signal {-result.returncode}" if result.returncode < 0
                  else f"exited with status {result.returncode}")
        # What it printed is not repeated, here or in the log: helpers put tokens in their
        # error lines, and the kubelet logs ours. The command shows the helper's own message.
        raise HelperFailed(
            f"{program} {status} for {shown} (its output is not shown: it may hold a secret)",
            hint=f"run 'echo {shown} | {path} get' on the node as the kubelet's user to see its "
            "own message",
        )
    answer = _parse_answer(result.stdout)
    if answer is None:
        raise HelperFailed(
            f"{program} answered for {shown} with something other than a JSON object with "
            "non-empty string Username and Secret (its output is not shown: it may hold a "
            "secret)",
            hint=f"check that {program} implements docker's credential helper protocol",
            code="HELPER_BAD_ANSWER",
        )
    username, secret = answer
    if username == IDENTITY_TOKEN_USERNAME:
        raise HelperFailed(
            f"{program} answered for {shown} with an identity token (Username "
            f"{IDENTITY_TOKEN_USERNAME!r}), which the kubelet and the container runtime cannot "
            "use",
            hint="log the helper in with a username and password or access token instead of an "
            "OAuth identity token, or use another source for this registry",
            code="HELPER_IDENTITY_TOKEN",
        )
    return username, secret


def _search_path(env: Mapping[str, str]) -> str:
    """The env's PATH without relative entries: what Go's exec.LookPath (docker's own lookup)
    also refuses, and a program found relative to the kubelet's working directory is not one
    anyone installed on purpose."""
    entries = env.get("PATH", os.defpath).split(os.pathsep)
    return os.pathsep.join(entry for entry in entries if os.path.isabs(entry))


def _says_not_found(stdout: bytes) -> bool:
    text = stdout.decode("utf-8", errors="replace").lower()
    return any(line.strip() == NOT_FOUND_MESSAGE for line in text.splitlines())


def _parse_answer(stdout: bytes) -> tuple[str, str] | None:
    """Username and Secret from a helper's JSON answer; None when it is not one. Returns rather
    than raises, so no exception (a JSONDecodeError carries the whole document) holds the text."""
    import json

    try:
        answer = json.loads(stdout)
    except ValueError:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8
        return None
    if not isinstance(answer, dict):
        return None
    username, secret = answer.get("Username"), answer.get("Secret")
    if not isinstance(username, str) or not isinstance(secret, str) or not username or not secret:
        return None
    return username, secret


class HelperSource:
    """Credentials for any registry from one ``docker-credential-<name>`` helper."""

    name = "credentialHelper"

    def __init__(self, options: HelperOptions, runner: Runner, env: Mapping[str, str],
                 clock: Clock, log: Logger,
                 cache_duration: int = DEFAULT_UNCACHED_DURATION) -> None:
        self._helper = options.name
        self._program = helper_program(options.name)  # a bad name fails here, at configuration
        self._runner = runner
        self._env = env
        self._clock = clock
        self._log = log
        self._timeout = options.timeout
        self._cache_duration = cache_duration

    def lookup(self, image: str, pod: Pod | None) -> Lookup | None:
        # The helper runs now, not in fetch: its answer is not kept in our token cache, so there
        # is no cache hit to save it for, and "nothing found" must be known to route the image.
        host = registry_host(image)
        server = server_url(host)
        answer = helper_get(self._helper, server, self._runner, self._env, self._timeout)
        if answer is None:
            self._log.debug(f"{self._program} has no credentials for {server}")
            return None
        username, secret = answer
        self._log.add_secret(secret)
        self._log.debug(f"{self._program} answered for {server}")
        return fixed_lookup(host, username, secret,
                            describe=f"credential helper {self._program} for {server}",
                            duration=self._cache_duration, clock=self._clock)
