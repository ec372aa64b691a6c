"""The ``ecrcred`` command: argument parsing, the kubelet's ``get-credentials`` path, and the one
place where errors become stderr lines and exit codes.

Exit codes (also in the README): 0 success; 1 no credentials could be produced; 2 bad flags;
3 bad request on stdin; 4 bad configuration; 5 our deadline was hit; 6 the container runtime
failed; 7 the runtime could not pull; 73 an auth file for another runtime could not be written
(or its place is refused); 70 a bug in ecrcred (rerun with --debug for a traceback);
74 stdout could not be written (closed, full, or its reader went away); 130 interrupted. Every
path ends in one of these, a closed stdin, stdout or stderr included: with stderr closed or full
the error line is lost, but not its exit code.

stdout carries only the protocol's JSON (or, for human commands, their report); every diagnostic
goes to stderr as ``ecrcred: <level>: <message>``. With no subcommand and a request on stdin, the
command behaves as ``get-credentials``, so it can replace the reference plugin in place.

``main`` takes its streams (``None``: the process's own), as ``provider.run_plugin`` takes its
bytes, so the command line is tested in-process without touching ``sys``. The human commands'
bodies live in ``ecrcred.commands``, imported only when they run: this module is on the
kubelet's cache-hit path, and only cheap modules are imported at the top (a hit must not load
boto3, pydantic or grpc, nor unmarshal code it never runs).
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

from ecrcred import __version__
from ecrcred.errors import (
    EXIT_INTERNAL,
    EXIT_OK,
    EcrcredError,
    OutputError,
    RequestError,
    UsageError,
)
from ecrcred.log import (
    DEBUG,
    ERROR,
    INFO,
    WARNING,
    StderrLogger,
    quote_untrusted,
    register_environment_secrets,
)
from ecrcred.settings import pick

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Mapping, Sequence
    from typing import BinaryIO, NoReturn, TextIO

    from _typeshed import SupportsWrite

    from ecrcred.files import StateDir
    from ecrcred.router import Router
    from ecrcred.seams import Clock, TokenCache

    Args = argparse.Namespace | SimpleNamespace

DEFAULT_TIMEOUT = 30.0  # seconds; the kubelet SIGKILLs a plugin after 60
# get-credentials' --timeout: no registry answers in less than a second, and the kubelet kills a
# plugin at 60 s. The human commands may wait longer, up to a day (a registry outage at boot).
TIMEOUT_RANGE = (1.0, 55.0)
LONG_RANGE = (1.0, 86400.0)
_STDOUT_HINT = "keep ecrcred's stdout open to a reader that reads it to the end"
COMMANDS = frozenset({"get-credentials", "pull-sandbox", "doctor", "write-auth-file", "version"})
LOG_LEVELS = {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR}


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
         stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Run one command and return its exit code; never raises.

    ``None`` for a stream means the process's own (``sys.stdin.buffer``, ``sys.stdout.buffer``,
    ``sys.stderr``), itself None when the process was started without it: "closed". stdin and
    stdout are bytes (the request and the response are); stderr is text, for the logger."""
    if sys.stdin is None or sys.stdout is None or sys.stderr is None:
        _plug_closed_descriptors()
    argv = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    if stdin is None and sys.stdin is not None:
        stdin = sys.stdin.buffer
    out = Stdout.of(stdout)
    log = StderrLogger(stderr, level=LOG_LEVELS.get(env.get("ECRCRED_LOG_LEVEL", "").lower(), INFO))
    register_environment_secrets(log, env)
    debug = "--debug" in argv or env.get("ECRCRED_DEBUG") == "1"
    try:
        code = _command(argv, env, log, stdin, out)
    except EcrcredError as exc:
        log.error(exc.one_line())
        code = exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        code = 130
    except SystemExit as exc:  # argparse, after writing --help or --version
        code = exc.code if isinstance(exc.code, int) else EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the one catch-all: a bug must still be one line, no secret
        if debug:
            import contextlib
            import traceback

            with contextlib.suppress(AttributeError, OSError, ValueError):  # stderr closed, full
                (stderr or sys.stderr).write(log.scrub(traceback.format_exc()))
        # Only the exception's type: its text may quote data it failed on (a reply holding a
        # secret key, say), and the kubelet logs our stderr. --debug shows the rest, scrubbed.
        log.error(
            f"internal error: {type(exc).__name__}; rerun with --debug for a traceback and "
            "report it [INTERNAL]"
        )
        code = EXIT_INTERNAL
    return _settle(code, log, out, stderr)


def _command(argv: list[str], env: Mapping[str, str], log: StderrLogger, stdin: BinaryIO | None,
             out: Stdout) -> int:
    if not COMMANDS.intersection(argv) and not {"-h", "--help", "--version"} & set(argv):
        # The kubelet runs a provider with only its configured args: with no subcommand,
        # behave as get-credentials so ecrcred can replace the reference plugin in place.
        if stdin is not None and stdin.isatty():
            raise UsageError("no command given",
                             hint="run 'ecrcred --help', or pipe a request to get-credentials")
        argv = ["get-credentials", *argv]
    args = _kubelet_fast_path(argv) or build_parser(out).parse_args(argv)
    if getattr(args, "verbose", False):
        log.level = DEBUG
    wiring = Wiring(args, env, log, stdin, out)
    command = args.command
    if command == "get-credentials":
        return _get_credentials(wiring)
    if command == "pull-sandbox":
        from ecrcred.commands.pull_sandbox import pull_sandbox

        return pull_sandbox(wiring)
    if command == "doctor":
        from ecrcred.commands.doctor import doctor

        return doctor(wiring)
    if command == "write-auth-file":
        from ecrcred.commands.auth_file import write_auth_file

        return write_auth_file(wiring)
    if command == "version":
        return _version(out)
    raise UsageError(f"unknown command {command!r}", hint="see 'ecrcred --help'")


def build_parser(stdout: Stdout | None = None) -> argparse.ArgumentParser:
    """The parser of every command; ``--help`` and ``--version`` write on ``stdout``."""
    import argparse  # not at the top: the kubelet's fast path never needs it

    out = stdout if stdout is not None else Stdout.of(None)

    class _Parser(argparse.ArgumentParser):
        """argparse, but a usage error is one line on stderr like every other error."""

        def error(self, message: str) -> NoReturn:
            raise UsageError(f"{self.prog}: {message}", hint=f"see '{self.prog} --help'")

        def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
            # --help and --version (no file: stdout, which is closed). argparse drops a write
            # that fails, and would exit 0; its errors go to stderr through error() above.
            if file is None or file is sys.stdout:
                out.write(message, "the help or version text")
            else:
                super()._print_message(message, file)

    def seconds(low: float, high: float) -> Callable[[str], float]:
        """An argparse type: float() alone takes "nan", "inf" and "1e-7"."""

        def parse(text: str) -> float:
            value = _seconds(text, low, high)
            if value is None:
                raise argparse.ArgumentTypeError(f"'{quote_untrusted(text)}' is not a number "
                                                 f"of seconds from {low:g} to {high:g}")
            return value

        return parse

    # Parent parsers: each option shared by several commands is declared once.
    common = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="store_true",
                        help="log debug lines to stderr (env ECRCRED_LOG_LEVEL=debug)")
    common.add_argument("--debug", action="store_true",
                        help="on an internal error, print the traceback")

    cache_opts = _Parser(add_help=False)
    cache_opts.add_argument("--config", default=None,
                            help="ecrcred config: registry rules and credential sources (env "
                            "ECRCRED_CONFIG; default /etc/ecrcred/config.yaml; none: ECR only)")
    cache_opts.add_argument("--cache-dir", default=None,
                            help="token cache directory shared by all executions "
                            "(env ECRCRED_CACHE_DIR; default /var/lib/ecrcred/cache)")
    cache_opts.add_argument("--no-cache", action="store_true", default=False,
                            help="do not read or write the token cache")

    # pull-sandbox and doctor: the image, and where containerd is.
    node_opts = _Parser(add_help=False)
    node_opts.add_argument("--image", default=None,
                           help="the image (default: the sandbox image of containerd's config)")
    node_opts.add_argument("--containerd-config", default=None,
                           help="containerd config, where the sandbox image is read (env "
                           "ECRCRED_CONTAINERD_CONFIG; default /etc/containerd/config.toml)")
    node_opts.add_argument("--runtime-endpoint", default=None,
                           help="CRI socket (env CONTAINER_RUNTIME_ENDPOINT; default "
                           "unix:///run/containerd/containerd.sock)")
    node_opts.add_argument("--archive", default=None, metavar="FILE",
                           help="an OCI-layout or docker-archive tarball holding the sandbox "
                           "image (e.g. /etc/eks/pause.tar): imported through containerd's API "
                           "when the image's registry is localhost or a pull fails; doctor "
                           "checks it holds the image (config: sandbox.archive)")

    parser = _Parser(
        prog="ecrcred",
        description="Image-pull credentials for Kubernetes nodes: Amazon ECR and private "
        "registries, for the kubelet and for the sandbox image.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"ecrcred {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    creds = sub.add_parser(
        "get-credentials", parents=[common, cache_opts],
        help="kubelet credential provider: a CredentialProviderRequest on stdin, the response "
        "on stdout",
        description="Read one CredentialProviderRequest (credentialprovider.kubelet.k8s.io v1, "
        "v1beta1 or v1alpha1) on stdin and write one CredentialProviderResponse on stdout.",
    )
    creds.add_argument("--timeout", default=None,
                       help="give up after this many seconds, well before the kubelet's 60s "
                       f"kill (env ECRCRED_TIMEOUT; default {DEFAULT_TIMEOUT:g})")

    sandbox = sub.add_parser(
        "pull-sandbox", parents=[common, cache_opts, node_opts],
        help="make sure the sandbox (pause) image is present and pinned, through the CRI",
        description="Make sure the container runtime has the sandbox image, pulling it through "
        "the CRI with the same credentials get-credentials gives the kubelet, and pin it so the "
        "kubelet's image GC keeps it. With --watch, put it back whenever it is removed.",
    )
    sandbox.add_argument("--no-pin", action="store_true", default=False,
                         help="do not set containerd's pinned label (needed for non-containerd "
                         "runtimes)")
    sandbox.add_argument("--watch", action="store_true", default=False,
                         help="keep running: restore the image after deletion or GC")
    sandbox.add_argument("--interval", type=seconds(*LONG_RANGE), default=60.0,
                         help="with --watch: seconds between safety-net checks (default 60)")
    sandbox.add_argument("--timeout", type=seconds(*LONG_RANGE), default=120.0,
                         help="seconds a pull may take, retries included (default 120)")
    sandbox.add_argument("--output", choices=("text", "json"), default="text",
                         help="one line per action, as text or JSON")

    doctor = sub.add_parser(
        "doctor", parents=[common, cache_opts, node_opts],
        help="explain and verify the whole pull path for an image (default: the sandbox image)",
        description="Check, for one image, every step of a pull on this node: which rule and "
        "credential source answer and whether a token is cached; whether the kubelet's "
        "credential provider config would run ecrcred for it; containerd's registry config, "
        "the CRI and the image on the node (present, pinned); the registry itself, reached as "
        "containerd would (mirrors, CA files, auth, manifest, media types); and the "
        "environment a systemd service without HOME gets. One line per check: ok, warn, fail "
        "or skip, with the fix. Exit 0 when nothing fails, 1 when a check fails.",
    )
    doctor.add_argument("--provider-config", default=None,
                        help="the kubelet's --image-credential-provider-config (default: the "
                        "running kubelet's flag, else /etc/kubernetes/ecrcred/"
                        "provider-config.yaml)")
    doctor.add_argument("--provider-bin-dir", default=None,
                        help="the kubelet's --image-credential-provider-bin-dir (default: the "
                        "running kubelet's flag, else /usr/libexec/kubernetes/kubelet-plugins/"
                        "credential-provider/exec)")
    doctor.add_argument("--timeout", type=seconds(*LONG_RANGE), default=10.0,
                        help="seconds each registry or runtime call may take (default 10)")
    doctor.add_argument("--skip", action="append", default=[],
                        choices=("credentials", "kubelet", "runtime", "registry", "environment"),
                        help="leave out an area (repeatable)")
    doctor.add_argument("--output", choices=("text", "json"), default="text",
                        help="a line per check, or one JSON document for tools")

    auth = sub.add_parser(
        "write-auth-file", parents=[common, cache_opts],
        help="write image-pull credentials into a file CRI-O or cri-dockerd reads",
        description="Resolve credentials for the images as get-credentials would for the "
        "kubelet and write them, for their registries only, into a file another runtime reads: "
        "containers-auth.json (CRI-O's pause_image_auth_file) or a docker config.json "
        "(cri-dockerd, with HOME=/). The file is written atomically, mode 0600. With --watch, "
        "rewrite it before the earliest token in it is due.",
    )
    auth.add_argument("--format", choices=("containers-auth", "docker-config"),
                      default="containers-auth",
                      help="containers-auth (CRI-O, podman, skopeo) or docker-config "
                      "(cri-dockerd, docker); default containers-auth")
    auth.add_argument("--image", action="extend", nargs="+", metavar="IMAGE",
                      help="images whose registries to write (repeatable; default for "
                      "containers-auth: CRI-O's pause_image)")
    auth.add_argument("--file", default=None,
                      help="the file to write (default /etc/crio/ecrcred-auth.json for "
                      "containers-auth, /.docker/config.json for docker-config)")
    auth.add_argument("--crio-config", default=None,
                      help="CRI-O's config, where pause_image is read, with its .d drop-ins "
                      "(default /etc/crio/crio.conf)")
    auth.add_argument("--watch", action="store_true", default=False,
                      help="keep running: rewrite the file before its tokens are due")
    auth.add_argument("--interval", type=seconds(*LONG_RANGE), default=3600.0,
                      help="with --watch: the longest time between rewrites (default 3600)")
    auth.add_argument("--timeout", type=seconds(*LONG_RANGE), default=120.0,
                      help="seconds one write may take, token fetches included (default 120)")

    sub.add_parser("version", parents=[common], help="print the version and build information")
    return parser


class Stdout:
    """Where a command's output goes, and the one way it is written: bytes on a binary stream,
    flushed at once, and any failure an ``OutputError`` (exit 74) that says why. ``stream`` None:
    stdout is closed."""

    def __init__(self, stream: BinaryIO | None, encoding: str = "utf-8",
                 errors: str = "strict") -> None:
        self.stream = stream
        self._encoding = encoding  # for text (help, reports): the process's own, as print's
        self._errors = errors

    @classmethod
    def of(cls, stream: BinaryIO | None) -> Stdout:
        """``stream``, or (None) the process's stdout, encoding text as it would."""
        if stream is not None:
            return cls(stream)
        text = sys.stdout
        if text is None:
            return cls(None)
        return cls(text.buffer, text.encoding, text.errors or "strict")

    def write(self, data: str | bytes, what: str) -> None:
        """Write and flush ``data``, or raise OutputError saying why it could not be."""
        stream = self.stream
        if stream is None:
            raise OutputError(f"cannot write {what}: stdout is closed", hint=_STDOUT_HINT)
        try:
            stream.write(data if isinstance(data, bytes) else
                         data.encode(self._encoding, self._errors))
            stream.flush()
        except (OSError, ValueError) as exc:  # a UnicodeEncodeError is a ValueError too
            self.discard()
            raise _stdout_error(what, exc) from None

    def flush(self) -> OutputError | None:
        """Flush what is still buffered; the error, not raised, when that fails."""
        try:
            if self.stream is not None:
                self.stream.flush()
        except (OSError, ValueError) as exc:
            self.discard()
            return _stdout_error("the output", exc)
        return None

    def discard(self) -> None:
        """See ``_discard``: what is still buffered goes nowhere."""
        _discard(self.stream)


class Wiring:
    """What a command is handed besides its flags: the environment, the logger, its streams,
    and the collaborators ``get-credentials``, ``pull-sandbox`` and ``doctor`` build alike (the
    token cache, the router of credential sources), so the three always agree."""

    def __init__(self, args: Args, env: Mapping[str, str], log: StderrLogger,
                 stdin: BinaryIO | None, stdout: Stdout) -> None:
        self.args = args
        self.env = env
        self.log = log
        self.stdin = stdin
        self.stdout = stdout

    def token_cache(self, lock_timeout: float) -> tuple[TokenCache, StateDir | None]:
        return _token_cache(self.args, self.env, self.log, lock_timeout)

    def router(self, clock: Clock, state_dir: StateDir | None, aws_timeout: float) -> Router:
        return _router(self.args, self.env, self.log, clock, state_dir, aws_timeout)


def _plug_closed_descriptors() -> None:
    """Open /dev/null on whichever of descriptors 0, 1 and 2 we were started without (Python
    then gives None for that sys.stdin, stdout or stderr, and None it stays: the code below
    knows the stream is gone). Otherwise the next file we open takes that number, and a child
    or a C library writing to its "stderr" would write into it: a token cache file, say."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null == fd:
                os.set_inheritable(fd, True)
            else:
                os.dup2(null, fd)
                os.close(null)


def _seconds(text: str, low: float, high: float) -> float | None:
    """``text`` as seconds from ``low`` to ``high``, else None (also for "nan" and "inf")."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if low <= value <= high else None


def _stdout_error(what: str, exc: OSError | ValueError) -> OutputError:
    # EPIPE, ENOSPC, EBADF...: the system's words say it. A ValueError is a closed file object.
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "it is closed"
    return OutputError(f"cannot write {what} on stdout: {reason}", hint=_STDOUT_HINT)


def _discard(stream: object) -> None:
    """Point ``stream``'s descriptor at /dev/null, so that what its buffer still holds goes
    nowhere at exit instead of failing again (or blocking, on a pipe nobody reads)."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
        null = os.open(os.devnull, os.O_WRONLY)
    except (AttributeError, OSError, ValueError):  # no descriptor: nothing will flush it
        return
    try:
        os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)


def _settle(code: int, log: StderrLogger, out: Stdout, stderr: TextIO | None) -> int:
    """Flush stdout and stderr while the exit code can still say what happened: left to Python's
    exit, a flush that fails prints "Exception ignored ..." and makes the exit code 120."""
    error = out.flush()
    if error is not None and code == EXIT_OK:  # what was written (help, a report) was cut short
        log.error(error.one_line())
        code = error.exit_code
    err = stderr if stderr is not None else sys.stderr
    try:
        if err is not None:
            err.flush()
    except (OSError, ValueError):
        _discard(err)
    return code


def _kubelet_fast_path(argv: list[str]) -> SimpleNamespace | None:
    """The kubelet runs ``ecrcred get-credentials`` with no flags, once per image: skip building
    the argparse parser for that exact argv (it costs more than the rest of a cache hit)."""
    if argv != ["get-credentials"]:
        return None
    return SimpleNamespace(command="get-credentials", config=None, cache_dir=None,
                           no_cache=False, timeout=None)


def _get_credentials(w: Wiring) -> int:
    from ecrcred.clock import SystemClock
    from ecrcred.deadline import Expired, deadline
    from ecrcred.errors import DeadlineExceeded
    from ecrcred.provider import run_plugin

    timeout_setting = pick("--timeout", w.args.timeout, w.env, "ECRCRED_TIMEOUT",
                           str(DEFAULT_TIMEOUT))
    low, high = TIMEOUT_RANGE
    timeout = _seconds(timeout_setting.value, low, high)
    if timeout is None:
        raise UsageError(f"timeout '{quote_untrusted(timeout_setting.value)}' (from "
                         f"{timeout_setting.origin}) is not a number of seconds from {low:g} to "
                         f"{high:g}", hint="the kubelet kills a plugin after 60s")
    clock = SystemClock()
    # A throttling hold (at most 7.5 s) is waited out only in the first half of our time: the
    # fetch after it needs the other half.
    wait_until = clock.monotonic() + timeout / 2

    with deadline(timeout, "get-credentials",
                  hint="check the node's network path to the registry's token API, or raise "
                  "--timeout (ECRCRED_TIMEOUT)"):
        # Inside the deadline: opening the cache directory walks (and may make) its path, and a
        # hung mount there must end in our error line, not in the kubelet's SIGKILL.
        # The lock wait ends before the deadline, so its own message (who holds it) can be seen.
        cache, state_dir = w.token_cache(lock_timeout=timeout * 0.8)
        router = w.router(clock, state_dir, aws_timeout=min(10.0, timeout))
        output = run_plugin(_read_request(w.stdin), router, cache, clock, w.log, wait_until)
        # Still inside the deadline: a stdout pipe that nobody reads must not hold us past it.
        try:
            w.stdout.write(output, "the response")
        except Expired:
            w.stdout.discard()  # or exit's own flush would block on the pipe again
            raise DeadlineExceeded(f"the response could not be written on stdout within "
                                   f"{timeout:g}s: nothing reads it",
                                   hint="the kubelet reads a plugin's stdout to the end; check "
                                   "what ecrcred's stdout is connected to") from None
    return EXIT_OK


def _read_request(stdin: BinaryIO | None) -> bytes:
    from ecrcred.kubelet import MAX_REQUEST_BYTES, REQUEST_HINT

    if stdin is None:
        raise RequestError("no request on stdin (stdin is closed)", hint=REQUEST_HINT)
    try:
        return stdin.read(MAX_REQUEST_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RequestError(f"cannot read the request on stdin: {reason}",
                           hint=REQUEST_HINT) from None


def _token_cache(args: Args, env: Mapping[str, str],
                 log: StderrLogger, lock_timeout: float) -> tuple[TokenCache, StateDir | None]:
    """The token cache, and its directory, opened and checked (also where the compiled config
    is kept); None when there is none to use."""
    from ecrcred.cache import DEFAULT_CACHE_DIR, FileCache, NullCache
    from ecrcred.clock import SystemClock

    if args.no_cache:
        return NullCache(), None
    cache_dir = pick("--cache-dir", args.cache_dir, env, "ECRCRED_CACHE_DIR", DEFAULT_CACHE_DIR)
    log.debug(f"token cache {cache_dir.value} (from {cache_dir.origin})")
    cache = FileCache(cache_dir.value, SystemClock(), log, lock_timeout=lock_timeout)
    return cache, cache.state()


def _router(args: argparse.Namespace | SimpleNamespace, env: Mapping[str, str],
            log: StderrLogger, clock: Clock, state_dir: StateDir | None,
            aws_timeout: float) -> Router:
    """The one source both commands ask: the config's rules, then ECR hosts."""
    from ecrcred.config.load import config_setting, load_config
    from ecrcred.router import Router, SourceFactory

    config = load_config(config_setting(args.config, env), state_dir, log)
    log.debug(config.describe())
    try:
        cwd = os.getcwd()
    except OSError:  # the kubelet's working directory was removed under it
        cwd = "/"
    factory = SourceFactory(config, env, clock, log, cwd=cwd, aws_timeout=aws_timeout)
    return Router(factory, log)


def _version(out: Stdout) -> int:
    """The version, and for the shipped artifact the build facts ``build/build`` embedded."""
    import json
    import platform

    info: dict[str, str] = {}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_build_info.json")
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        pass
    frozen = getattr(sys, "frozen", False)
    if frozen and info:
        how = (f"pyinstaller {info.get('mode', '?')}, commit {info.get('commit', '?')}, built "
               f"{info.get('built', '?')}")
    else:
        how = "pyinstaller" if frozen else "python package"
    out.write(f"ecrcred {__version__} ({how}, Python {platform.python_version()}, "
              f"{platform.machine()})\n", "the version")
    return EXIT_OK
