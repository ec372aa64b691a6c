"""The credential-helper source: credentials from ``docker-credential-<name>`` programs.

Docker's helper protocol is one exec per question: ``docker-credential-<name> get``, the server
URL on stdin, ``{"ServerURL", "Username", "Secret"}`` on stdout, or exit non-zero with
``credentials not found in native keychain`` when the helper has nothing. As in docker-py's
``docker/credentials/``, a small function speaks it and turns every failure into one of two
named errors: ``HelperNotInstalled`` (nothing to run) and ``HelperFailed`` (it ran, and did not
give us a usable answer). The program runs through the ``Runner`` seam so the parsing and the
error mapping are tested without a process; ``SubprocessRunner`` is the real one. Helpers are
third-party code run from the kubelet: the runner bounds them in time (the whole process group
is killed) and in memory (output is capped), and nothing they print that may hold a secret is
ever repeated in a message.
"""

from __future__ import annotations

import os

from ecrcred.errors import HelperFailed, HelperNotInstalled
from ecrcred.imageref import DOCKER_HUB, registry_host
from ecrcred.sources import DEFAULT_UNCACHED_DURATION, fixed_lookup

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Mapping, Sequence

    from ecrcred.seams import Clock, Logger, Runner, RunResult
    from ecrcred.sources import Lookup, Pod

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
# How much of a helper's own error line a message repeats.
MAX_DETAIL = 200
# PATH is shown in "not installed" messages only when it is this short (readable on one line).
MAX_PATH_SHOWN = 200

_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


class SubprocessRunner:
    """``Runner`` over ``subprocess.Popen``: no shell, own session, output capped, and on a
    timeout the whole process group killed (a helper's children too) and reaped."""

    def __init__(self, max_output: int = MAX_OUTPUT) -> None:
        self._max_output = max_output

    def run(self, argv: Sequence[str], stdin: bytes, timeout: float,
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
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group is already gone
        pass
    except PermissionError:  # a setuid member; the leader is still ours
        proc.kill()
    proc.wait()


def helper_program(name: str) -> str:
    """The helper's program name; ValueError when ``name`` could name a path, not a program."""
    if not name or not set(name) <= _NAME_CHARS:
        raise ValueError(
            f"credential helper name {name!r} is not valid: use only letters, digits, '.', '_' "
            f"and '-' (the part after {PROGRAM_PREFIX!r}, e.g. 'ecr-login')"
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
    try:
        result = runner.run([path, "get"], server.encode(), timeout, env)
    except subprocess.TimeoutExpired:
        raise HelperFailed(
            f"{program} did not answer within {timeout:g}s for {server} and was killed",
            hint=f"check that {program} works on the node (run 'echo {server} | {path} get' as "
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
        detail = _first_line(result)
        raise HelperFailed(
            f"{program} {status} for {server}" + (f": {detail}" if detail else ""),
            hint=f"run 'echo {server} | {path} get' on the node as the kubelet's user to see "
            "why",
        )
    answer = _parse_answer(result.stdout)
    if answer is None:
        raise HelperFailed(
            f"{program} answered for {server} with something other than a JSON object with "
            "non-empty string Username and Secret (its output is not shown: it may hold a "
            "secret)",
            hint=f"check that {program} implements docker's credential helper protocol",
            code="HELPER_BAD_ANSWER",
        )
    username, secret = answer
    if username == IDENTITY_TOKEN_USERNAME:
        raise HelperFailed(
            f"{program} answered for {server} with an identity token (Username "
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


def _first_line(result: RunResult) -> str:
    """The helper's first non-empty line of stderr, else of stdout, shortened and printable.
    A stdout line that looks like JSON is not repeated: it may be an answer holding a secret."""
    for stream, is_stdout in ((result.stderr, False), (result.stdout, True)):
        for raw in stream.decode("utf-8", errors="replace").splitlines():
            line = "".join(c if c.isprintable() else "?" for c in raw.strip())
            if not line:
                continue
            if is_stdout and line[0] in "{[":
                return ""
            return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 3] + "..."
    return ""


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

    def __init__(self, helper: str, runner: Runner, env: Mapping[str, str], clock: Clock,
                 log: Logger, timeout: float = 5.0,
                 cache_duration: int = DEFAULT_UNCACHED_DURATION) -> None:
        self._helper = helper
        self._program = helper_program(helper)  # a bad name fails here, at configuration
        self._runner = runner
        self._env = env
        self._clock = clock
        self._log = log
        self._timeout = timeout
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
