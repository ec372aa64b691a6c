"""``ecrcred doctor``: explain and verify the whole pull path for one image.

Each of these causes has cost operators hours: HOME unset for a systemd service, a
credential provider that never applies to the pause image, an old image's config media type
that containerd fails to unpack, a mirror that crictl uses and ctr does not. The doctor asks
every question of that path in the order a pull meets them, one module per area:

- ``credentials``: which rule and source answer for the image, and a cached token's life;
- ``kubelet``: whether the kubelet would exec ecrcred for it at all;
- ``runtime``: containerd's config and registry route, the CRI, the image present and pinned;
- ``registry``: the registry for real, reached as containerd would, and the media types;
- ``environment``: what a systemd service without HOME would read.

``diagnose`` wires them; its collaborators (the router, the token cache, the runtime, HTTP, the
process table) and containerd's config, read once by the caller, are passed in, so each area is
tested with fakes and the whole against the real stack. ``report`` renders the result; only
``fail`` makes the command exit non-zero.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ecrcred.containerd_config import ContainerdConfig
from ecrcred.doctor.credentials import check_credentials
from ecrcred.doctor.environment import Process, check_environment
from ecrcred.doctor.kubelet import KUBELET_SETTINGS, check_kubelet, check_kubelet_flags
from ecrcred.doctor.registry import RegistryProbe
from ecrcred.doctor.report import Check, Report, fail, skip
from ecrcred.doctor.runtime import check_archive, check_containerd_config, check_runtime
from ecrcred.errors import EcrcredError, UsageError
from ecrcred.imageref import parse_reference

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ecrcred.cri.client import RuntimeVersion
    from ecrcred.errors import ConfigError
    from ecrcred.router import Router
    from ecrcred.seams import Clock, Http, Logger, Runtime, TokenCache
    from ecrcred.settings import Setting

AREAS = ("credentials", "kubelet", "runtime", "registry", "environment")


class Options(NamedTuple):
    image: str  # the image to diagnose
    image_origin: str  # "--image" or where the sandbox image came from
    containerd_config: Setting
    runtime_endpoint: str
    provider_config: Setting
    provider_bin_dir: Setting
    self_path: str | None  # this ecrcred executable, to recognise it in the kubelet's bin dir
    timeout: float  # per network or runtime call
    skip: frozenset[str]  # areas not to check
    platform: tuple[str, str]  # ("linux", "amd64"): which manifest of an index the node pulls
    kubelet_settings: tuple[str, ...] = KUBELET_SETTINGS  # files that set the kubelet's flags
    # the sandbox image's archive (--archive or the config's sandbox.archive), or why the
    # config naming it did not load
    archive: Setting | EcrcredError | None = None


class Collaborators(NamedTuple):
    router: Callable[[], Router]  # raises ConfigError when the ecrcred config is invalid
    cache: TokenCache
    runtime: Callable[[], Runtime]
    http: Http
    running: list[Process]  # the kubelet and cri-dockerd, as /proc shows them
    env: Mapping[str, str]
    clock: Clock
    log: Logger


def diagnose(options: Options, containerd: ContainerdConfig | ConfigError,
             c: Collaborators) -> Report:
    """Every check for ``options.image``.

    ``containerd`` is ``runtime.load_containerd_config(options.containerd_config.value)``, read
    once by the caller (which also took the default image from it): the registry route and the
    sandbox image it names (the kubelet never asks providers for that one, and it must be
    pinned) come from it, or its error is reported."""
    named = containerd.sandbox_image if isinstance(containerd, ContainerdConfig) else None
    sandbox_image = named.value if named is not None else None
    image = options.image
    try:
        ref = parse_reference(image)
    except ValueError as exc:  # from --image: the user's to fix, not an internal error
        raise UsageError(str(exc), hint="pass --image as registry/repository[:tag][@digest]"
                         ) from None
    checks: list[Check] = []

    def skipped(area: str, ids: tuple[str, ...]) -> bool:
        if area in options.skip:
            checks.extend(skip(i, f"skipped by --skip {area}") for i in ids)
            return True
        return False

    creds = None
    if not skipped("credentials", ("credentials.rule", "credentials.token")):
        try:
            router = c.router()
        except EcrcredError as exc:
            checks.append(fail("credentials.config", exc.message, exc.hint))
            checks.append(skip("credentials.rule", "the ecrcred config is invalid"))
        else:
            found, creds = check_credentials(ref.name, router, c.cache, c.clock, c.log)
            checks += found
    is_sandbox = sandbox_image is not None and _same(image, sandbox_image)
    if not skipped("kubelet", ("kubelet.config", "kubelet.provider", "kubelet.match")):
        checks += check_kubelet(ref.name, options.provider_config, options.provider_bin_dir,
                                options.self_path, is_sandbox)
        kubelet = next((p for p in c.running if p.name == "kubelet"), None)
        checks += check_kubelet_flags(kubelet.cmdline if kubelet else None,
                                      options.kubelet_settings)
    found_config, _config, hosts = check_containerd_config(options.containerd_config,
                                                           containerd, ref.name, ref.host)
    version = None
    if not skipped("runtime", ("runtime.containerd-config", "runtime.registry-config",
                               "runtime.cri", "runtime.image")):
        found_runtime, version = _runtime(options, c, is_sandbox)
        checks += found_config + found_runtime
    if not skipped("registry", ("registry.endpoint",)):
        probe = RegistryProbe(c.http, options.timeout, options.platform, version)
        checks += probe.check(ref, hosts, creds)
    if not skipped("environment", ("environment.home", "environment.docker-config")):
        checks += check_environment(ref.name, c.env, c.running, c.clock, c.log)
    return Report(image, options.image_origin, tuple(checks))


def _runtime(options: Options, c: Collaborators,
             is_sandbox: bool) -> tuple[list[Check], RuntimeVersion | None]:
    """The runtime area after containerd's config: the CRI, the image, the archive."""
    checks: list[Check] = []
    version = None
    try:
        runtime = c.runtime()
    except EcrcredError as exc:
        checks.append(fail("runtime.cri", exc.message, exc.hint))
    else:
        try:
            found, version = check_runtime(runtime, options.runtime_endpoint, options.image,
                                           options.image if is_sandbox else None)
        finally:
            close = getattr(runtime, "close", None)
            if close is not None:
                close()
        checks += found
    if options.archive is not None and (is_sandbox or options.image_origin == "--image"):
        checks.append(check_archive(options.archive, options.image))
    return checks, version


def _same(a: str, b: str) -> bool:
    try:
        return parse_reference(a).stored == parse_reference(b).stored
    except ValueError:
        return a == b
