"""``ecrcred pull-sandbox``: the sandbox image present and pinned, once or (``--watch``) for good.

Wires ``sandbox.SandboxKeeper`` to the real CRI (``cri.client.GrpcRuntime``), the credentials
``get-credentials`` would give the kubelet, and report lines on stdout. Under ``--watch`` the
token cache is fronted by memory (a watch asks often), SIGTERM and SIGINT stop it cleanly, and a
stdout that goes away ends only the report lines, never the watch.
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

from ecrcred import containerd_config
from ecrcred.cache import FileCache, MemoryCache
from ecrcred.clock import SystemClock
from ecrcred.cri.client import GrpcRuntime, resolve_endpoint
from ecrcred.errors import EXIT_OK, OutputError
from ecrcred.sandbox import Action, RetryPolicy, SandboxKeeper, credentials_resolver, format_action
from ecrcred.settings import pick

if TYPE_CHECKING:
    from ecrcred.cli import Wiring
    from ecrcred.seams import TokenCache


def pull_sandbox(w: Wiring) -> int:
    args, env, log = w.args, w.env, w.log
    clock = SystemClock()
    image = args.image
    if image is None:
        config = pick("--containerd-config", args.containerd_config, env,
                      "ECRCRED_CONTAINERD_CONFIG", containerd_config.DEFAULT_CONFIG)
        found = containerd_config.sandbox_image(config.value)
        log.debug(f"sandbox image {found.value} from {found.file} (config version "
                  f"{found.version})")
        image = found.value
    cache: TokenCache
    disk, state_dir = w.token_cache(lock_timeout=30.0)
    cache = disk
    if args.watch:
        cache = MemoryCache(cache, clock)
    router = w.router(clock, state_dir, aws_timeout=10.0)

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
        if isinstance(disk, FileCache):  # the directory it holds open (and the config's)
            disk.close()
