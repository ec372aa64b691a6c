"""``ecrcred pull-sandbox``: the sandbox image present and pinned, once or (``--watch``) for good.

Wires ``sandbox.SandboxKeeper`` to the real CRI (``cri.client.GrpcRuntime``), the credentials
``get-credentials`` would give the kubelet, and report lines on stdout. Under ``--watch`` the
token cache is fronted by memory (a watch asks often), SIGTERM and SIGINT stop it cleanly, and a
stdout that goes away ends only the report lines, never the watch. ``--archive`` (or the
config file's ``sandbox.archive``) adds ``cri.containerd_api.ContainerdImporter``: the image
comes back from a tarball on the node when no registry can give it.
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
    from ecrcred.seams import TokenCache


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
    cache: TokenCache
    disk, state_dir = w.token_cache(lock_timeout=30.0)
    cache = disk
    if args.watch:
        cache = MemoryCache(cache, clock)
    router = w.router(clock, state_dir, aws_timeout=10.0)
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
        log.info(f"watching {keeper.image} through {endpoint} (safety net every "
                 f"{args.interval:g}s)")
        keeper.watch(stop, args.interval)
        log.info("stopped")
        return EXIT_OK
    finally:
        runtime.close()
        if importer is not None:
            importer.close()
        if isinstance(disk, FileCache):  # the directory it holds open (and the config's)
            disk.close()
