"""The ``ecrcred`` command: argument parsing, wiring of the real collaborators, and the one place
where errors become stderr lines and exit codes.

Exit codes (also in the README): 0 success; 1 no credentials could be produced; 2 bad flags;
3 bad request on stdin; 4 bad configuration; 5 our deadline was hit; 6 the container runtime
failed; 7 the runtime could not pull; 70 a bug in ecrcred (rerun with --debug for a traceback);
74 stdout could not be written (closed, full, or its reader went away); 130 interrupted. Every
path ends in one of these, a closed stdin, stdout or stderr included: with stderr closed or full
the error line is lost, but not its exit code.

stdout carries only the protocol's JSON (or, for human commands, their report); every diagnostic
goes to stderr as ``ecrcred: <level>: <message>``. With no subcommand and a request on stdin, the
command behaves as ``get-credentials``, so it can replace the reference plugin in place.

Only cheap modules are imported at the top: a cache hit must not load boto3, pydantic or grpc.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

from ecrcred import __version__
from ecrcred.errors import (
    EXIT_INTERNAL,
    EXIT_OK,
    ConfigError,
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
    from typing import NoReturn

    from _typeshed import SupportsWrite

    from ecrcred.containerd_config import ContainerdConfig
    from ecrcred.doctor import Options
    from ecrcred.doctor.environment import Process
    from ecrcred.files import StateDir
    from ecrcred.router import Router
    from ecrcred.seams import Clock, CredentialSource, TokenCache

DEFAULT_TIMEOUT = 30.0  # seconds; the kubelet SIGKILLs a plugin after 60
# get-credentials' --timeout: no registry answers in less than a second, and the kubelet kills a
# plugin at 60 s. The human commands may wait longer, up to a day (a registry outage at boot).
TIMEOUT_RANGE = (1.0, 55.0)
LONG_RANGE = (1.0, 86400.0)
_STDOUT_HINT = "keep ecrcred's stdout open to a reader that reads it to the end"
COMMANDS = frozenset({"get-credentials", "pull-sandbox", "doctor", "version"})
LOG_LEVELS = {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR}


def build_parser() -> argparse.ArgumentParser:
    import argparse  # not at the top: the kubelet's fast path never needs it

    class _Parser(argparse.ArgumentParser):
        """argparse, but a usage error is one line on stderr like every other error."""

        def error(self, message: str) -> NoReturn:
            raise UsageError(f"{self.prog}: {message}", hint=f"see '{self.prog} --help'")

        def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
            # --help and --version (no file: stdout, which is closed). argparse drops a write
            # that fails, and would exit 0; its errors go to stderr through error() above.
            if file is None or file is sys.stdout:
                _write_stdout(message, "the help or version text")
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

    common = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="store_true",
                        help="log debug lines to stderr (env ECRCRED_LOG_LEVEL=debug)")
    common.add_argument("--debug", action="store_true",
                        help="on an internal error, print the traceback")

    parser = _Parser(
        prog="ecrcred",
        description="Image-pull credentials for Kubernetes nodes: Amazon ECR and private "
        "registries, for the kubelet and for the sandbox image.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"ecrcred {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    cache_opts = _Parser(add_help=False)
    cache_opts.add_argument("--config", default=None,
                            help="ecrcred config: registry rules and credential sources (env "
                            "ECRCRED_CONFIG; default /etc/ecrcred/config.yaml; none: ECR only)")
    cache_opts.add_argument("--cache-dir", default=None,
                            help="token cache directory shared by all executions "
                            "(env ECRCRED_CACHE_DIR; default /var/lib/ecrcred/cache)")
    cache_opts.add_argument("--no-cache", action="store_true", default=False,
                            help="do not read or write the token cache")

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
        "pull-sandbox", parents=[common, cache_opts],
        help="make sure the sandbox (pause) image is present and pinned, through the CRI",
        description="Make sure the container runtime has the sandbox image, pulling it through "
        "the CRI with the same credentials get-credentials gives the kubelet, and pin it so the "
        "kubelet's image GC keeps it. With --watch, put it back whenever it is removed.",
    )
    sandbox.add_argument("--image", default=None,
                         help="the sandbox image (default: from containerd's config)")
    sandbox.add_argument("--containerd-config", default=None,
                         help="containerd config to read the sandbox image from (env "
                         "ECRCRED_CONTAINERD_CONFIG; default /etc/containerd/config.toml)")
    sandbox.add_argument("--runtime-endpoint", default=None,
                         help="CRI socket (env CONTAINER_RUNTIME_ENDPOINT; default "
                         "unix:///run/containerd/containerd.sock)")
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
        "doctor", parents=[common, cache_opts],
        help="explain and verify the whole pull path for an image (default: the sandbox image)",
        description="Check, for one image, every step of a pull on this node: which rule and "
        "credential source answer and whether a token is cached; whether the kubelet's "
        "credential provider config would run ecrcred for it; containerd's registry config, "
        "the CRI and the image on the node (present, pinned); the registry itself, reached as "
        "containerd would (mirrors, CA files, auth, manifest, media types); and the "
        "environment a systemd service without HOME gets. One line per check: ok, warn, fail "
        "or skip, with the fix. Exit 0 when nothing fails, 1 when a check fails.",
    )
    doctor.add_argument("--image", default=None,
                        help="the image to check (default: the sandbox image of containerd's "
                        "config)")
    doctor.add_argument("--containerd-config", default=None,
                        help="containerd config (env ECRCRED_CONTAINERD_CONFIG; default "
                        "/etc/containerd/config.toml)")
    doctor.add_argument("--runtime-endpoint", default=None,
                        help="CRI socket (env CONTAINER_RUNTIME_ENDPOINT; default "
                        "unix:///run/containerd/containerd.sock)")
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

    sub.add_parser("version", parents=[common], help="print the version and build information")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    if sys.stdin is None or sys.stdout is None or sys.stderr is None:
        _plug_closed_descriptors()
    argv = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    log = StderrLogger(level=LOG_LEVELS.get(env.get("ECRCRED_LOG_LEVEL", "").lower(), INFO))
    register_environment_secrets(log, env)
    debug = "--debug" in argv or env.get("ECRCRED_DEBUG") == "1"
    try:
        code = _command(argv, env, log)
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
                sys.stderr.write(log.scrub(traceback.format_exc()))
        # Only the exception's type: its text may quote data it failed on (a reply holding a
        # secret key, say), and the kubelet logs our stderr. --debug shows the rest, scrubbed.
        log.error(
            f"internal error: {type(exc).__name__}; rerun with --debug for a traceback and "
            "report it [INTERNAL]"
        )
        code = EXIT_INTERNAL
    return _settle(code, log)


def _command(argv: list[str], env: Mapping[str, str], log: StderrLogger) -> int:
    if not COMMANDS.intersection(argv) and not {"-h", "--help", "--version"} & set(argv):
        # The kubelet runs a provider with only its configured args: with no subcommand,
        # behave as get-credentials so ecrcred can replace the reference plugin in place.
        if sys.stdin is not None and sys.stdin.isatty():
            raise UsageError("no command given",
                             hint="run 'ecrcred --help', or pipe a request to get-credentials")
        argv = ["get-credentials", *argv]
    args = _kubelet_fast_path(argv) or build_parser().parse_args(argv)
    if getattr(args, "verbose", False):
        log.level = DEBUG
    command = args.command
    if command == "get-credentials":
        return _get_credentials(args, env, log)
    if command == "pull-sandbox":
        return _pull_sandbox(args, env, log)
    if command == "doctor":
        return _doctor(args, env, log)
    if command == "version":
        return _version()
    raise UsageError(f"unknown command {command!r}", hint="see 'ecrcred --help'")


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


def _write_stdout(data: str | bytes, what: str) -> None:
    """Write and flush ``data`` on stdout, or raise OutputError saying why it could not be."""
    stream = sys.stdout
    if stream is None:
        raise OutputError(f"cannot write {what}: stdout is closed", hint=_STDOUT_HINT)
    try:
        if isinstance(data, bytes):
            stream.buffer.write(data)
        else:
            stream.write(data)
        stream.flush()
    except (OSError, ValueError) as exc:
        _discard(stream)
        raise _stdout_error(what, exc) from None


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


def _settle(code: int, log: StderrLogger) -> int:
    """Flush stdout and stderr while the exit code can still say what happened: left to Python's
    exit, a flush that fails prints "Exception ignored ..." and makes the exit code 120."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError) as exc:
        _discard(sys.stdout)
        if code == EXIT_OK:  # what was written (--help, a report) did not all arrive
            error = _stdout_error("the output", exc)
            log.error(error.one_line())
            code = error.exit_code
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):
        _discard(sys.stderr)
    return code


def _kubelet_fast_path(argv: list[str]) -> SimpleNamespace | None:
    """The kubelet runs ``ecrcred get-credentials`` with no flags, once per image: skip building
    the argparse parser for that exact argv (it costs more than the rest of a cache hit)."""
    if argv != ["get-credentials"]:
        return None
    return SimpleNamespace(command="get-credentials", config=None, cache_dir=None,
                           no_cache=False, timeout=None)


def _get_credentials(args: argparse.Namespace | SimpleNamespace, env: Mapping[str, str],
                     log: StderrLogger) -> int:
    from ecrcred.clock import SystemClock
    from ecrcred.deadline import Expired, deadline
    from ecrcred.errors import DeadlineExceeded
    from ecrcred.provider import run_plugin

    timeout_setting = pick("--timeout", args.timeout, env, "ECRCRED_TIMEOUT", str(DEFAULT_TIMEOUT))
    low, high = TIMEOUT_RANGE
    timeout = _seconds(timeout_setting.value, low, high)
    if timeout is None:
        raise UsageError(f"timeout '{quote_untrusted(timeout_setting.value)}' (from "
                         f"{timeout_setting.origin}) is not a number of seconds from {low:g} to "
                         f"{high:g}", hint="the kubelet kills a plugin after 60s")
    clock = SystemClock()
    # The lock wait ends before the deadline, so its own message (who holds it) can be seen.
    cache, state_dir = _token_cache(args, env, log, lock_timeout=timeout * 0.8)
    # A throttling hold (at most 7.5 s) is waited out only in the first half of our time: the
    # fetch after it needs the other half.
    wait_until = clock.monotonic() + timeout / 2

    with deadline(timeout, "get-credentials",
                  hint="check the node's network path to the registry's token API, or raise "
                  "--timeout (ECRCRED_TIMEOUT)"):
        sources = _sources(args, env, log, clock, state_dir, aws_timeout=min(10.0, timeout))
        output = run_plugin(_read_request(), sources, cache, clock, log, wait_until)
        # Still inside the deadline: a stdout pipe that nobody reads must not hold us past it.
        try:
            _write_stdout(output, "the response")
        except Expired:
            _discard(sys.stdout)  # or exit's own flush would block on the pipe again
            raise DeadlineExceeded(f"the response could not be written on stdout within "
                                   f"{timeout:g}s: nothing reads it",
                                   hint="the kubelet reads a plugin's stdout to the end; check "
                                   "what ecrcred's stdout is connected to") from None
    return EXIT_OK


def _read_request() -> bytes:
    from ecrcred.kubelet import MAX_REQUEST_BYTES, REQUEST_HINT

    if sys.stdin is None:
        raise RequestError("no request on stdin (stdin is closed)", hint=REQUEST_HINT)
    try:
        return sys.stdin.buffer.read(MAX_REQUEST_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RequestError(f"cannot read the request on stdin: {reason}",
                           hint=REQUEST_HINT) from None


def _token_cache(args: argparse.Namespace | SimpleNamespace, env: Mapping[str, str],
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


def _sources(args: argparse.Namespace | SimpleNamespace, env: Mapping[str, str],
             log: StderrLogger, clock: Clock, state_dir: StateDir | None,
             aws_timeout: float) -> list[CredentialSource]:
    """The one source both commands ask: the config's rules, then ECR hosts."""
    return [_router(args, env, log, clock, state_dir, aws_timeout)]


def _router(args: argparse.Namespace | SimpleNamespace, env: Mapping[str, str],
            log: StderrLogger, clock: Clock, state_dir: StateDir | None,
            aws_timeout: float) -> Router:
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


def _pull_sandbox(args: argparse.Namespace | SimpleNamespace, env: Mapping[str, str],
                  log: StderrLogger) -> int:
    import signal
    import threading

    from ecrcred import containerd_config
    from ecrcred.cache import MemoryCache
    from ecrcred.clock import SystemClock
    from ecrcred.cri.client import GrpcRuntime, resolve_endpoint
    from ecrcred.sandbox import (
        Action,
        RetryPolicy,
        SandboxKeeper,
        credentials_resolver,
        format_action,
    )

    clock = SystemClock()
    image = args.image
    if image is None:
        config = pick("--containerd-config", args.containerd_config, env,
                      "ECRCRED_CONTAINERD_CONFIG", containerd_config.DEFAULT_CONFIG)
        found = containerd_config.sandbox_image(config.value)
        log.debug(f"sandbox image {found.value} from {found.file} (config version "
                  f"{found.version})")
        image = found.value
    cache, state_dir = _token_cache(args, env, log, lock_timeout=30.0)
    if args.watch:
        cache = MemoryCache(cache, clock)
    sources = _sources(args, env, log, clock, state_dir, aws_timeout=10.0)

    stdout_lost = False

    def report(action: Action) -> None:
        nonlocal stdout_lost
        try:
            _write_stdout(log.scrub(format_action(action, args.output)) + "\n", "a report line")
        except OutputError as exc:
            if not args.watch:
                raise
            # The watch's work is the image, not these lines: say so once and keep watching.
            if not stdout_lost:
                log.warning(f"{exc.one_line()}; watching on without report lines")
            stdout_lost = True

    endpoint = resolve_endpoint(args.runtime_endpoint, env)
    credentials = credentials_resolver(sources, cache, clock, log)
    stop = threading.Event()
    runtime = GrpcRuntime(endpoint)
    try:
        keeper = SandboxKeeper(image, runtime, None if args.no_pin else runtime, credentials,
                               clock, log, report, RetryPolicy(deadline=args.timeout),
                               stop=stop if args.watch else None)
        if not args.watch:
            keeper.ensure("requested")
            return EXIT_OK

        def on_signal(_signum: int, _frame: object) -> None:
            stop.set()
            keeper.stop_watching()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        log.info(f"watching {keeper.image} through {endpoint} (safety net every "
                 f"{args.interval:g}s)")
        keeper.watch(stop, args.interval)
        log.info("stopped")
        return EXIT_OK
    finally:
        runtime.close()


def _doctor(args: argparse.Namespace | SimpleNamespace, env: Mapping[str, str],
            log: StderrLogger) -> int:
    from ecrcred.cache import NullCache
    from ecrcred.clock import SystemClock
    from ecrcred.cri.client import GrpcRuntime
    from ecrcred.doctor import Collaborators, diagnose
    from ecrcred.doctor.environment import processes
    from ecrcred.doctor.registry import HttpClient
    from ecrcred.doctor.report import render_json, render_text

    clock = SystemClock()
    running = processes()
    options, containerd = _doctor_options(args, env, running)
    try:
        cache, state_dir = _token_cache(args, env, log, lock_timeout=args.timeout)
    except EcrcredError as exc:
        log.warning(f"{exc.one_line()}; checking without the token cache")
        cache, state_dir = NullCache(), None
    collaborators = Collaborators(
        router=lambda: _router(args, env, log, clock, state_dir, aws_timeout=args.timeout),
        cache=cache,
        runtime=lambda: GrpcRuntime(options.runtime_endpoint, call_timeout=args.timeout),
        http=HttpClient(), running=running, env=env, clock=clock, log=log)
    report = diagnose(options, containerd, collaborators)
    text = render_json(report) if args.output == "json" else render_text(
        report, verbose=getattr(args, "verbose", False))
    _write_stdout(log.scrub(text), "the report")
    return 1 if report.failed else EXIT_OK


def _doctor_options(args: argparse.Namespace | SimpleNamespace, env: Mapping[str, str],
                    running: list[Process],
                    ) -> tuple[Options, ContainerdConfig | ConfigError]:
    """What to check and where things are: flags, then the running kubelet's own flags, then
    the paths our packages install. Also containerd's config, read here once: its sandbox image
    is the default image, and ``diagnose`` judges the same reading."""
    import platform
    import shutil

    from ecrcred import containerd_config
    from ecrcred.cri.client import resolve_endpoint
    from ecrcred.doctor import Options
    from ecrcred.doctor.kubelet import (
        BIN_DIR_FLAG,
        CONFIG_FLAG,
        DEFAULT_BIN_DIR,
        DEFAULT_PROVIDER_CONFIG,
        kubelet_flags,
    )
    from ecrcred.doctor.registry import goarch
    from ecrcred.doctor.runtime import load_containerd_config
    from ecrcred.settings import Setting

    kubelet = next((p for p in running if p.name == "kubelet"), None)
    flags = kubelet_flags(kubelet.cmdline) if kubelet else {}

    def setting(value: str | None, flag: str, default: str) -> Setting:
        if value is not None:
            return Setting(value, f"flag --{flag.split('-', 4)[-1]}")
        if kubelet is not None and flag in flags:
            return Setting(flags[flag], f"the running kubelet's {flag} (pid {kubelet.pid})")
        return Setting(default, "default")

    containerd = pick("--containerd-config", args.containerd_config, env,
                      "ECRCRED_CONTAINERD_CONFIG", containerd_config.DEFAULT_CONFIG)
    loaded = load_containerd_config(containerd.value)
    found = None if isinstance(loaded, ConfigError) else loaded.sandbox_image
    sandbox = found.value if found else None
    origin = f"the sandbox image of {found.file}" if found else ""
    image = args.image
    if image is not None:
        origin = "--image"
    elif sandbox is not None:
        image = sandbox
    else:
        raise UsageError(f"no --image given and {containerd.value} names no sandbox image",
                         hint="pass --image IMAGE (or --containerd-config)")
    self_path = sys.executable if getattr(sys, "frozen", False) else shutil.which("ecrcred")
    return Options(
        image=image, image_origin=origin, containerd_config=containerd,
        runtime_endpoint=resolve_endpoint(args.runtime_endpoint, env),
        provider_config=setting(args.provider_config, CONFIG_FLAG, DEFAULT_PROVIDER_CONFIG),
        provider_bin_dir=setting(args.provider_bin_dir, BIN_DIR_FLAG, DEFAULT_BIN_DIR),
        self_path=self_path, timeout=args.timeout, skip=frozenset(args.skip),
        platform=("linux", goarch(platform.machine()))), loaded


def _version() -> int:
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
    _write_stdout(f"ecrcred {__version__} ({how}, Python {platform.python_version()}, "
                  f"{platform.machine()})\n", "the version")
    return EXIT_OK
