"""``ecrcred doctor``: gather the options and the real collaborators, diagnose, print the report.

The checks themselves are the ``ecrcred.doctor`` package's; this is only their wiring to the
node (the process table, the CRI socket, HTTP, the token cache and ecrcred's own config) and to
stdout. Exit 0 when no check fails, 1 when one does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ecrcred.clock import SystemClock
from ecrcred.commands.pull_sandbox import sandbox_archive
from ecrcred.cri.client import GrpcRuntime
from ecrcred.doctor import Collaborators, diagnose
from ecrcred.doctor.environment import processes
from ecrcred.doctor.options import doctor_options
from ecrcred.doctor.report import render_json, render_text
from ecrcred.doctor.transport import HttpClient
from ecrcred.errors import EXIT_OK, ConfigError
from ecrcred.settings import Setting

if TYPE_CHECKING:
    from ecrcred.cli import Wiring
    from ecrcred.files import StateDir


def _archive(w: Wiring, state_dir: StateDir | None) -> Setting | ConfigError | None:
    """The archive pull-sandbox would use, where it was named; a config that does not load is
    a finding (credentials.config reports it too), not the end of doctor."""
    origin = ("flag --archive" if w.args.archive is not None
              else "the config file's sandbox.archive")
    try:
        path = sandbox_archive(w, state_dir)
    except ConfigError as exc:
        return exc
    return None if path is None else Setting(path, origin)


def doctor(w: Wiring) -> int:
    args, env, log = w.args, w.env, w.log
    clock = SystemClock()
    running = processes()
    options, containerd = doctor_options(
        env, running, image=args.image, containerd_config_flag=args.containerd_config,
        runtime_endpoint=args.runtime_endpoint, provider_config=args.provider_config,
        provider_bin_dir=args.provider_bin_dir, timeout=args.timeout, skip=args.skip)
    # An unusable cache never raises here: FileCache warns once and goes on without one, and
    # doctor reports the rest.
    cache, state_dir = w.token_cache(lock_timeout=args.timeout)
    options = options._replace(archive=_archive(w, state_dir))
    collaborators = Collaborators(
        router=lambda: w.router(clock, state_dir, aws_timeout=args.timeout),
        cache=cache,
        runtime=lambda: GrpcRuntime(options.runtime_endpoint, call_timeout=args.timeout),
        http=HttpClient(), running=running, env=env, clock=clock, log=log)
    report = diagnose(options, containerd, collaborators)
    text = render_json(report) if args.output == "json" else render_text(
        report, verbose=getattr(args, "verbose", False))
    w.stdout.write(log.scrub(text), "the report")
    return 1 if report.failed else EXIT_OK
