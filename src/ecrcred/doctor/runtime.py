"""The container runtime's side: its registry config, and the image on the node.

- ``runtime.containerd-config``: the config file and its imports, merged as containerd merges
  them (``containerd_config.load``), and the sandbox image it names.
- ``runtime.registry-config``: where containerd's CRI sends a pull for the image's host: a
  hosts.toml under ``config_path``, or the deprecated ``registry.mirrors`` form, which ``ctr``
  ignores (so ``ctr`` and ``crictl`` pull the same image from different places) and which
  containerd refuses beside ``config_path``; static
  ``registry.configs.auth`` credentials, which never refresh.
- ``runtime.cri``: the CRI answers on the socket, and which runtime and version it is (the
  registry check names versions in its verdicts).
- ``runtime.sandbox-image`` / ``runtime.image``: the image is present; the sandbox image is
  pinned (containerd's label), so the kubelet's image GC keeps it: the runtime pulls the
  sandbox image itself, without credentials, so once it is gone no new pod can start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ecrcred import containerd_config
from ecrcred.containerd_config import NO_CONFIG, ContainerdConfig
from ecrcred.containerd_routes import RegistryHosts, registry_hosts
from ecrcred.cri.client import PINNED_LABEL, PINNED_VALUE
from ecrcred.doctor.report import Check, fail, ok, skip, warn
from ecrcred.ecrhost import parse_ecr_host
from ecrcred.errors import ConfigError, ConfigMissing, EcrcredError, RuntimeServiceError
from ecrcred.imageref import parse_reference

if TYPE_CHECKING:
    from ecrcred.cri.client import RuntimeVersion
    from ecrcred.seams import Runtime
    from ecrcred.settings import Setting


def load_containerd_config(path: str) -> ContainerdConfig | ConfigError:
    """containerd's config, read once per doctor run: the CLI takes the sandbox image from it and
    ``check_containerd_config`` judges it, so both see the same files (and a config edited
    between two reads cannot make them disagree). Its error is a finding, not a crash."""
    try:
        return containerd_config.load(path)
    except ConfigError as exc:
        return exc


def check_containerd_config(path: Setting, loaded: ContainerdConfig | ConfigError, image: str,
                            host: str,
                            ) -> tuple[list[Check], ContainerdConfig | None, RegistryHosts]:
    """``runtime.containerd-config`` and ``runtime.registry-config``; and the pull route.

    ``loaded`` is ``load_containerd_config(path.value)``; ``path`` names where it came from."""
    default = registry_hosts(NO_CONFIG, host)
    if isinstance(loaded, ConfigMissing):
        return [skip("runtime.containerd-config", f"no containerd config at {path.value} "
                     f"(from {path.origin}): pass --containerd-config on a containerd node"),
                skip("runtime.registry-config", "no containerd config to read")], None, default
    if isinstance(loaded, ConfigError):
        return [fail("runtime.containerd-config", loaded.message, loaded.hint),
                skip("runtime.registry-config", "the containerd config is unreadable")], None, \
            default
    config = loaded
    sandbox = config.sandbox_image
    said = (f"sandbox image {sandbox.value} (from {sandbox.file})" if sandbox else
            "no sandbox image set: containerd uses its built-in default (registry.k8s.io/pause)")
    read = f"{', '.join(config.files)}: {said}"
    checks = [warn("runtime.containerd-config", f"{read}; " + "; ".join(config.notes),
                   "fix the imports as the note says") if config.notes else
              ok("runtime.containerd-config", read)]
    checks += sandbox_settings(config)
    try:
        hosts = registry_hosts(config, host)
    except ConfigError as exc:
        return [*checks, fail("runtime.registry-config", exc.message, exc.hint)], config, default
    checks.append(_registry_config(config, hosts, image))
    return checks, config, hosts


def check_archive(archive: Setting | EcrcredError, image: str) -> Check:
    """``runtime.sandbox-archive``: the archive ``pull-sandbox`` would restore ``image`` from
    opens, passes the same checks (owner, mode, members) and holds the image for this node's
    platform; read as the import reads it, without containerd."""
    if isinstance(archive, EcrcredError):  # the ecrcred config naming it did not load
        return fail("runtime.sandbox-archive", archive.message, archive.hint)
    from ecrcred.cri.archive import Archive  # only when an archive is configured

    try:
        with Archive(archive.value) as opened:
            found = opened.find(image)
    except EcrcredError as exc:
        return fail("runtime.sandbox-archive", exc.message, exc.hint)
    return ok("runtime.sandbox-archive", f"{archive.value} (from {archive.origin}) holds "
              f"{found.name} ({len(found.layers)} layers, manifest "
              f"{found.manifest.digest[:19]}): pull-sandbox restores it from there with no "
              "network")


# Snapshotters that fetch an image's layers lazily, when a container first reads them, with
# credentials of their own rather than the CRI's (so a sandbox image "present" on the node can
# still fail to start a pod once its token has expired).
LAZY_SNAPSHOTTERS = ("soci", "stargz", "nydus", "overlaybd")


def sandbox_settings(config: ContainerdConfig) -> list[Check]:
    """Warnings about how containerd itself keeps the sandbox image, reported only when one
    applies: a ``pinned_images.sandbox`` that containerd 2.x will not pin (it pins only the
    exact name it stores the image under, so a tagless or shortened name never matches), and
    a lazy-loading snapshotter for the CRI."""
    checks = []
    named = config.sandbox_image
    if named is not None and named.version == 3:
        try:
            stored = parse_reference(named.value).stored
        except ValueError:
            stored = named.value  # the registry check reports a reference that does not parse
        if stored != named.value:
            checks.append(warn(
                "runtime.sandbox-pin",
                f"{named.file} sets pinned_images.sandbox = \"{named.value}\", but containerd "
                f"stores that image as {stored} and 2.x pins only the exact name it is given: "
                "containerd never pins it, so its image garbage collection (or crictl rmi "
                "--prune) may remove it (ecrcred pull-sandbox pins it with its own label)",
                f"write pinned_images.sandbox = \"{stored}\""))
    lazy = config.snapshotter
    if lazy is not None and lazy.value.split("-")[0] in LAZY_SNAPSHOTTERS:
        checks.append(warn(
            "runtime.snapshotter",
            f"{lazy.file} makes the CRI unpack images with the {lazy.value} snapshotter, which "
            "fetches layers lazily when a container reads them, with its own credentials: the "
            "sandbox image can be present yet fail a pod start once those credentials lapse",
            "give the snapshotter credentials that refresh (its own keychain or the CRI's), or "
            "keep the sandbox image on the default snapshotter"))
    return checks


def _registry_config(config: ContainerdConfig, hosts: RegistryHosts, image: str) -> Check:
    route = hosts.route()
    details = tuple(f"{e.url}: capabilities {', '.join(e.capabilities)}; ca "
                    f"{', '.join(e.ca) or 'system'}{'; skip_verify' if e.skip_verify else ''}"
                    + (f"; client {', '.join(_pair(p) for p in e.client)}" if e.client else "")
                    for e in hosts.endpoints)
    if config.config_path is not None and config.has_mirrors is not None:
        return fail("runtime.registry-config",
                    f"{config.has_mirrors.file} sets the deprecated registry.mirrors "
                    f"({config.has_mirrors.value}) and {config.config_path.file} sets "
                    "config_path: containerd's CRI plugin does not load (\"invalid plugin "
                    "config: `mirrors` cannot be set when `config_path` is provided\"), so no "
                    "pod can start",
                    "move each mirror to <config_path>/<host>/hosts.toml and delete the "
                    "registry.mirrors tables", details)
    # containerd 1.x refuses any registry.configs."<host>".tls table beside config_path, even
    # an empty one (ValidatePluginConfig checks TLS != nil); 2.x no longer knows the key and
    # ignores it ("Ignoring unknown key in TOML"), with or without config_path: measured on
    # 2.1.9, whose pull through such a mirror then fails TLS.
    with_tls = sorted(h for h, legacy in config.legacy.items() if legacy.has_tls)
    ignored_tls = (f"; containerd 2.x ignores registry.configs.\"{with_tls[0]}\".tls (removed "
                   "in 2.0): there its CA and client certificate are not used" if with_tls
                   else "")
    if config.config_path is not None and with_tls:
        return fail("runtime.registry-config",
                    f"registry.configs.\"{with_tls[0]}\".tls (deprecated) is set beside "
                    f"config_path ({config.config_path.file}): containerd 1.x's CRI plugin "
                    "does not load (\"invalid plugin config: `configs.tls` cannot be set when "
                    "`config_path` is provided\"), so no pod can start" + ignored_tls,
                    f"put the CA in <config_path>/{with_tls[0]}/hosts.toml (ca = [\"...\"]) "
                    "and delete the registry.configs tls tables", details)
    legacy = config.legacy.get(hosts.host)
    if legacy is not None and legacy.has_auth:
        registry = parse_ecr_host(hosts.host)
        why = ("an ECR token in it expired 12 hours after it was written" if registry else
               "they never refresh and ctr ignores them")
        return warn("runtime.registry-config",
                    f"{legacy.file} holds static credentials for {hosts.host} "
                    f"(registry.configs.\"{hosts.host}\".auth, deprecated): {why}",
                    "remove them; ecrcred pull-sandbox gives the runtime fresh credentials "
                    "through the CRI", details)
    if config.has_mirrors is not None:
        return warn("runtime.registry-config",
                    f"{config.has_mirrors.file} uses the deprecated registry.mirrors form "
                    f"({config.has_mirrors.value}); pulls of {image} go {route}. crictl and the "
                    "kubelet use it, ctr ignores it (ctr and crictl pull from different "
                    "places)" + ignored_tls,
                    "set config_path and write <config_path>/<host>/hosts.toml instead "
                    "(ctr then takes --hosts-dir <config_path>)", details)
    if hosts.notes:
        return warn("runtime.registry-config", f"{hosts.origin}: " + "; ".join(hosts.notes),
                    "fix the file as the note says", details)
    return ok("runtime.registry-config", f"pulls of {image} go {route} ({hosts.origin})",
              details)


def _pair(pair: tuple[str, str]) -> str:
    cert, key = pair
    return f"{cert} + {key}" if key else f"{cert} (certificate and key)"


def check_runtime(runtime: Runtime, endpoint: str, image: str,
                  sandbox: str | None) -> tuple[list[Check], RuntimeVersion | None]:
    """``runtime.cri``, then the image: present, and for the sandbox image pinned."""
    try:
        version = runtime.version()
    except RuntimeServiceError as exc:
        reason = "the CRI is not reachable (runtime.cri)"
        return [fail("runtime.cri", exc.message, exc.hint),
                skip("runtime.sandbox-image" if image == sandbox else "runtime.image",
                     reason)], None
    checks = [ok("runtime.cri", f"{version.name} {version.version} (CRI {version.api_version}) "
                 f"at {endpoint}")]
    try:
        name = parse_reference(image).stored
        info = runtime.image_status(name)
    except ValueError as exc:
        return [*checks, fail("runtime.image", str(exc), "pass a valid --image")], version
    except RuntimeServiceError as exc:
        return [*checks, fail("runtime.image", exc.message, exc.hint)], version
    labels = None
    if image == sandbox and info is not None and not info.pinned:
        try:
            labels = runtime.labels(name)
        except RuntimeServiceError:
            labels = None  # no containerd images API (cri-dockerd, CRI-O): only the CRI's pin
    if image != sandbox:
        state = f"present ({info.id[:19]})" if info else "not present (the kubelet pulls it)"
        return [*checks, ok("runtime.image", f"{image} is {state}")], version
    if info is None:
        return [*checks, fail(
            "runtime.sandbox-image", f"the sandbox image {image} is not on this node: the "
            "runtime pulls it itself for every new pod, without credentials (the kubelet's "
            "credential providers never apply to it), so a new pod cannot start: 401 until "
            "someone pulls it by hand",
            "run 'ecrcred pull-sandbox', and enable ecrcred-sandbox.service and "
            "ecrcred-sandbox-watch.service")], version
    pinned = info.pinned or (labels or {}).get(PINNED_LABEL) == PINNED_VALUE
    if not pinned:
        return [*checks, warn(
            "runtime.sandbox-image", f"the sandbox image {image} is present but not pinned: "
            "the kubelet's image GC may delete it, and the runtime pulls it again without "
            "credentials, so new pods fail with 401 once it is gone",
            "run 'ecrcred pull-sandbox' (it pins it), and enable "
            "ecrcred-sandbox-watch.service to put it back after any removal")], version
    if info.pinned:
        return [*checks, ok("runtime.sandbox-image", f"the sandbox image {image} is present "
                            "and pinned (the CRI reports it pinned)")], version
    return [*checks, warn(
        "runtime.sandbox-image", f"the sandbox image {image} is present with label "
        f"{PINNED_LABEL}={PINNED_VALUE}, but {version.name} {version.version} does not report "
        "label pins through the CRI (containerd < 1.6.25 / 1.7.10), so the kubelet's image GC "
        "may still delete it",
        "keep ecrcred-sandbox-watch.service running (it puts the image back within seconds), "
        "or upgrade containerd")], version
