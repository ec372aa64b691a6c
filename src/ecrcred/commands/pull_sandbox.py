"""``ecrcred pull-sandbox``: the sandbox image present and pinned, once or (``--watch``) for good.

Wires ``sandbox.SandboxKeeper`` to the real CRI (``cri.client.GrpcRuntime``), the credentials
``get-credentials`` would give the kubelet, and report lines on stdout. Under ``--watch`` the
token cache is fronted by memory (a watch asks often), SIGTERM and SIGINT stop it cleanly, and a
stdout that goes away ends only the report lines, never the watch. ``--archive`` (or the
config file's ``sandbox.archive``) adds ``cri.containerd_api.ContainerdImporter``: the image
comes back from a tarball on the node when no registry can give it. Under ``--watch`` a
``refresh.Refresher`` thread also keeps the tokens the kubelet's executions use fresh (the
config's ``refresh:``), through a cache of its own (its loads do not count as uses) and the
keeper's router, which the two use one at a time (``OneAtATime``).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import TYPE_CHECKING

from ecrcred import containerd_config
from ecrcred.cache import FileCache, MemoryCache
from ecrcred.clock import SystemClock
from ecrcred.cri.client import GrpcRuntime, resolve_endpoint
from ecrcred.cri.containerd_api import ContainerdImporter
from ecrcred.errors import EXIT_OK, ConfigError, OutputError
from ecrcred.sandbox import Action, RetryPolicy, SandboxKeeper, credentials_resolver, format_action
from ecrcred.settings import pick

if TYPE_CHECKING:
    from ecrcred.cli import Wiring
    from ecrcred.files import StateDir
    from ecrcred.records import Lookup, Pod
    from ecrcred.refresh import Refresher
    from ecrcred.seams import CredentialSource, TokenCache
    from ecrcred.tokens import Token


def sandbox_archive(w: Wiring, state_dir: StateDir | None) -> str | None:
    """``--archive``, else the config file's ``sandbox.archive``, else None (doctor asks too).
    A config file that does not load raises its ConfigError."""
    archive: str | None = w.args.archive
    if archive is None:
        from ecrcred.config.load import config_setting, load_config

        archive = load_config(config_setting(w.args.config, w.env), state_dir,
                              w.log).sandbox_archive
    if archive is not None:
        archive = os.path.abspath(archive)
        w.log.debug(f"sandbox image archive {archive}")
    return archive


class OneAtATime:
    """A credential source whose lookups and fetches run one at a time: the keeper and the
    refresh-ahead thread share one router, so one botocore session and one client per registry
    (a second costs about 9 MB), and a botocore session must not create clients in two threads
    at once. Fetches are rare (a few a day), so waiting for one another costs nothing."""

    def __init__(self, source: CredentialSource) -> None:
        self.name = source.name
        self._source = source
        self._lock = threading.RLock()

    def lookup(self, image: str, pod: Pod | None) -> Lookup | None:
        with self._lock:
            found = self._source.lookup(image, pod)
        if found is None:
            return None
        fetch = found.fetch

        def one_at_a_time() -> Token:
            with self._lock:
                return fetch()

        return found._replace(fetch=one_at_a_time)


def _router(w: Wiring, clock: SystemClock, state_dir: StateDir | None) -> CredentialSource:
    """The credential source; under ``--watch`` shared, one at a time, by the keeper and the
    refresh-ahead thread."""
    router = w.router(clock, state_dir, aws_timeout=10.0)
    return OneAtATime(router) if w.args.watch else router


def _watch_cache(disk: TokenCache, clock: SystemClock) -> TokenCache:
    """The cache of a watch: memory in front of the disk, whose loads are not uses (the
    agent's own reads are not the kubelet's: they must not keep a token "used")."""
    if isinstance(disk, FileCache):
        disk.counts_use = False
    return MemoryCache(disk, clock)


def _start_refresher(w: Wiring, disk: TokenCache, clock: SystemClock, state_dir: StateDir | None,
                     source: CredentialSource, stop: threading.Event,
                     sandbox_image: str) -> threading.Thread | None:
    """The refresh-ahead thread, started (it prefetches the config's ``refresh.prefetch`` and
    the sandbox image's token first), or None when it does not run."""
    ahead = _refresher(w, disk, clock, state_dir, source)
    if ahead is None:
        return None
    refresher, prefetch = ahead
    thread = threading.Thread(target=refresher.run, name="refresh", daemon=True,
                              args=(stop, (*prefetch, sandbox_image)))
    thread.start()
    return thread


def _refresher(w: Wiring, disk: TokenCache, clock: SystemClock, state_dir: StateDir | None,
               source: CredentialSource) -> tuple[Refresher, tuple[str, ...]] | None:
    """The refresh-ahead loop and what it prefetches, or None: no cache on disk, or the
    config's ``refresh.enabled`` is false."""
    from ecrcred.config.load import config_setting, load_config
    from ecrcred.refresh import Refresher

    if not isinstance(disk, FileCache):
        return None
    config = load_config(config_setting(w.args.config, w.env), state_dir, w.log)
    if not config.refresh_enabled:
        w.log.info("refresh ahead is off (refresh.enabled: false in the config)")
        return None
    own = FileCache(disk.directory, clock, w.log, lock_timeout=30.0, counts_use=False)
    return Refresher(own, own, source, clock, w.log), config.prefetch


def _containerd_config(w: Wiring) -> str:
    return pick("--containerd-config", w.args.containerd_config, w.env,
                "ECRCRED_CONTAINERD_CONFIG", containerd_config.DEFAULT_CONFIG).value


def _snapshotter(w: Wiring) -> str | None:
    """The CRI's snapshotter as containerd's config names it (None: unset or unreadable, and
    containerd's default applies)."""
    try:
        found = containerd_config.load(_containerd_config(w)).snapshotter
    except ConfigError:
        return None
    return None if found is None else found.value


def pull_sandbox(w: Wiring) -> int:
    args, env, log = w.args, w.env, w.log
    clock = SystemClock()
    image = args.image
    if image is None:
        found = containerd_config.sandbox_image(_containerd_config(w))
        log.debug(f"sandbox image {found.value} from {found.file} (config version "
                  f"{found.version})")
        image = found.value
    disk, state_dir = w.token_cache(lock_timeout=30.0)
    cache = _watch_cache(disk, clock) if args.watch else disk
    router = _router(w, clock, state_dir)
    archive = sandbox_archive(w, state_dir)

    stdout_lost = False

    def report(action: Action) -> None:
        nonlocal stdout_lost
        try:
            w.stdout.write(log.scrub(format_action(action, args.output)) + "\n", "a report line")
        except OutputError as exc:
            if not args.watch:
                raise
            # The watch's work is the image, not these lines: say so once and keep watching.
            if not stdout_lost:
                log.warning(f"{exc.one_line()}; watching on without report lines")
            stdout_lost = True

    endpoint = resolve_endpoint(args.runtime_endpoint, env)
    credentials = credentials_resolver(router, cache, clock, log)
    stop = threading.Event()
    runtime = GrpcRuntime(endpoint)
    importer = None if archive is None else ContainerdImporter(
        archive, endpoint, configured_snapshotter=lambda: _snapshotter(w))
    try:
        keeper = SandboxKeeper(image, runtime, None if args.no_pin else runtime, credentials,
                               clock, log, report, RetryPolicy(deadline=args.timeout),
                               stop=stop if args.watch else None, archive=importer)
        if not args.watch:
            keeper.ensure("requested")
            return EXIT_OK

        def on_signal(_signum: int, _frame: object) -> None:
            stop.set()
            keeper.stop_watching()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        refreshing = _start_refresher(w, disk, clock, state_dir, router, stop,
                                      keeper.reference.name)
        log.info(f"watching {keeper.image} through {endpoint} (safety net every "
                 f"{args.interval:g}s)")
        keeper.watch(stop, args.interval)
        if refreshing is not None:
            refreshing.join(timeout=5)
        log.info("stopped")
        return EXIT_OK
    finally:
        runtime.close()
        if importer is not None:
            importer.close()
        if isinstance(disk, FileCache):  # the directory it holds open (and the config's)
            disk.close()
