"""Would the kubelet even ask ecrcred for this image?

Given the kubelet's ``--image-credential-provider-config`` and
``--image-credential-provider-bin-dir`` (taken from the running kubelet's command line when there
is one, else the paths our packages install): is the file valid by the kubelet's own rules
(``kubeletconfig.validate``; the kubelet refuses to start otherwise), is there a provider whose
executable in the bin dir is ecrcred, and do its ``matchImages`` cover the image. The sandbox
image is the exception that catches operators out: the kubelet never asks credential providers
for it, the runtime pulls it alone.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

from ecrcred import files, kubeletconfig
from ecrcred.doctor.report import Check, fail, ok, skip, warn
from ecrcred.ecrhost import parse_ecr_host
from ecrcred.imageref import glob_match, registry_host

if TYPE_CHECKING:
    from ecrcred.settings import Setting

DEFAULT_PROVIDER_CONFIG = "/etc/kubernetes/ecrcred/provider-config.yaml"
DEFAULT_BIN_DIR = "/usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec"
# A provider config is a few KB: more is not one, and is not read.
MAX_CONFIG = 1 << 20
CONFIG_FLAG = "--image-credential-provider-config"
BIN_DIR_FLAG = "--image-credential-provider-bin-dir"


# Where a kubelet's flags are set on the nodes we know (systemd units and their drop-ins, the
# environment files they read, EKS's): read to find a flag the kubelet no longer accepts, since
# a kubelet that refuses to start is not there to be asked.
KUBELET_SETTINGS = (
    "/etc/systemd/system/kubelet.service", "/usr/lib/systemd/system/kubelet.service",
    "/lib/systemd/system/kubelet.service", "/etc/systemd/system/kubelet.service.d",
    "/usr/lib/systemd/system/kubelet.service.d", "/etc/default/kubelet",
    "/etc/sysconfig/kubelet", "/etc/eks/kubelet/environment",
)
# Flags removed from the kubelet, and since which release it refuses to start with them.
REMOVED_FLAGS = {"--pod-infra-container-image": "1.35"}


def check_kubelet_flags(running_cmdline: list[str] | None, settings: tuple[str, ...],
                        ) -> list[Check]:
    """``kubelet.flags``: a removed flag on the running kubelet's command line or in the files
    that set its flags. Reported only when one is found (a 1.35 kubelet given
    ``--pod-infra-container-image`` does not start, so the node never becomes ready)."""
    found: list[str] = []
    for flag, release in REMOVED_FLAGS.items():
        if running_cmdline is not None and any(a == flag or a.startswith(flag + "=")
                                                for a in running_cmdline):
            found.append(f"{flag} (on the running kubelet's command line; refused since "
                         f"Kubernetes {release})")
        found += [f"{flag} (in {path}; refused since Kubernetes {release})"
                  for path in _setting_files(settings) if _mentions(path, flag)]
    if not found:
        return []
    return [fail("kubelet.flags", f"the kubelet is given {found[0]}: a kubelet of that release "
                 "or later refuses to start with it",
                 "remove the flag; the sandbox image is the runtime's own setting "
                 "(containerd: pinned_images.sandbox in 2.x, sandbox_image in 1.x; CRI-O: "
                 "pause_image)", tuple(found))]


def _setting_files(settings: tuple[str, ...]) -> list[str]:
    out = []
    for path in settings:
        if os.path.isdir(path):
            try:
                out += [os.path.join(path, n) for n in sorted(os.listdir(path))
                        if n.endswith(".conf")]
            except OSError:
                continue
        else:
            out.append(path)
    return out


def _mentions(path: str, flag: str) -> bool:
    try:
        data = files.read_small(path, MAX_CONFIG).data
    except OSError:  # absent, unreadable, not a regular file: nothing to report from it
        return False
    for line in data.decode("utf-8", "replace").splitlines():
        if line.lstrip().startswith("#"):
            continue
        if any(w == flag or w.startswith(flag + "=") for w in line.replace('"', " ").split()):
            return True
    return False


def kubelet_flags(cmdline: list[str]) -> dict[str, str]:
    """The two provider flags from a kubelet command line (``--flag=v`` or ``--flag v``)."""
    found: dict[str, str] = {}
    for i, arg in enumerate(cmdline):
        for flag in (CONFIG_FLAG, BIN_DIR_FLAG):
            if arg.startswith(flag + "="):
                found[flag] = arg.split("=", 1)[1]
            elif arg == flag and i + 1 < len(cmdline):
                found[flag] = cmdline[i + 1]
    return found


def _suggested_pattern(image: str) -> str:
    host = registry_host(image)
    registry = parse_ecr_host(host)
    if registry is not None and not registry.public:
        # The host with its account and region as globs: *.dkr.ecr.*.amazonaws.com, and the
        # FIPS, dual-stack and other partitions' forms alike.
        labels = host.split(".")
        labels[0] = "*"
        labels[labels.index(registry.region)] = "*"
        return ".".join(labels)
    return host


def check_kubelet(image: str, config: Setting, bin_dir: Setting, self_path: str | None,
                  is_sandbox: bool) -> list[Check]:
    """``kubelet.config``, ``kubelet.provider``, ``kubelet.match``."""
    try:
        # Without blocking (a FIFO there would hang doctor) and bounded, as the kubelet's own
        # config files are small; Untrusted ("not a regular file") is an OSError below.
        data = files.read_small(config.value, MAX_CONFIG).data
        if len(data) > MAX_CONFIG:
            raise OSError(errno.EFBIG, f"larger than {MAX_CONFIG >> 20} MiB", config.value)
        text = data.decode("utf-8")
    except FileNotFoundError:
        return [fail("kubelet.config", f"{config.value} (from {config.origin}) does not exist",
                     f"pass the kubelet {CONFIG_FLAG}=<file> (our packages install "
                     f"{DEFAULT_PROVIDER_CONFIG}), or tell doctor with --provider-config"),
                skip("kubelet.provider", "no provider config to read"),
                skip("kubelet.match", "no provider config to read")]
    except OSError as exc:
        return [fail("kubelet.config", f"cannot read {config.value}: {exc.strerror}",
                     "run doctor as root"),
                skip("kubelet.provider", "no provider config to read"),
                skip("kubelet.match", "no provider config to read")]
    doc, errors = kubeletconfig.load(text)
    if not errors:
        errors = kubeletconfig.validate(doc)
    if errors:
        return [fail("kubelet.config", f"{config.value} would stop the kubelet from starting: "
                     + "; ".join(errors[:3]) + (f" (and {len(errors) - 3} more)"
                                                if len(errors) > 3 else ""),
                     "fix the file; the kubelet reads it strictly (unknown or duplicated fields "
                     "are errors)", tuple(errors)),
                skip("kubelet.provider", "the provider config is invalid"),
                skip("kubelet.match", "the provider config is invalid")]
    checks = [ok("kubelet.config", f"{config.value} (from {config.origin}) is valid by the "
                 "kubelet's rules")]
    provider, provider_check = _our_provider(doc, bin_dir, self_path)
    checks.append(provider_check)
    if provider is None:
        return [*checks, skip("kubelet.match", "no provider runs ecrcred")]
    return [*checks, _match(image, doc, provider, is_sandbox)]


def _our_provider(doc: Any, bin_dir: Setting,
                  self_path: str | None) -> tuple[kubeletconfig.Provider | None, Check]:
    providers = kubeletconfig.providers(doc)
    if not os.path.isdir(bin_dir.value):
        return None, fail("kubelet.provider", f"the bin dir {bin_dir.value} (from "
                          f"{bin_dir.origin}) does not exist",
                          f"point the kubelet's {BIN_DIR_FLAG} at the directory holding ecrcred")
    details = []
    ours = None
    for provider in providers:
        path = os.path.join(bin_dir.value, provider.name)
        real = os.path.realpath(path)
        if not os.path.exists(path):
            details.append(f"{provider.name}: {path} does not exist")
            continue
        is_us = (self_path is not None and real == os.path.realpath(self_path)) or (
            os.path.basename(real) == "ecrcred")
        details.append(f"{provider.name}: {path} -> {real}{' (ecrcred)' if is_us else ''}")
        if is_us and ours is None:
            ours = (provider, path)
    if ours is None:
        names = ", ".join(p.name for p in providers)
        return None, fail("kubelet.provider", f"no provider of the config ({names}) is an "
                          f"ecrcred executable in {bin_dir.value}",
                          f"link {bin_dir.value}/ecrcred to the ecrcred executable and name a "
                          "provider 'ecrcred'", tuple(details))
    provider, path = ours
    if not os.access(path, os.X_OK):
        return None, fail("kubelet.provider", f"{path} is not executable",
                          f"chmod 0755 {path}", tuple(details))
    args = " ".join(provider.args)
    if provider.args and provider.args[0] != "get-credentials":
        return provider, warn("kubelet.provider", f"provider {provider.name} runs {path} with "
                              f"args [{args}]", "give it args: [get-credentials] (or none)",
                              tuple(details))
    return provider, ok("kubelet.provider", f"provider {provider.name} runs {path}"
                        + (f" {args}" if args else ""), tuple(details))


def _match(image: str, doc: Any, provider: kubeletconfig.Provider, is_sandbox: bool) -> Check:
    patterns = [p for p in provider.match_images if glob_match(p, image)]
    others = [p.name for p in kubeletconfig.providers(doc)
              if p.name != provider.name and any(glob_match(m, image) for m in p.match_images)]
    also = (f"; also matched by {', '.join(others)}: the kubelet runs each matching provider"
            if others else "")
    sandbox_note = ("; but the kubelet never asks providers for the sandbox image: the "
                    "runtime pulls it alone (runtime.sandbox-image)" if is_sandbox else "")
    if patterns:
        return ok("kubelet.match", f"matchImages {patterns[0]!r} of provider {provider.name} "
                  f"covers {image}{also}{sandbox_note}")
    message = (f"no matchImages of provider {provider.name} ({', '.join(provider.match_images)}) "
               f"covers {image}{also}")
    fix = f"add {_suggested_pattern(image)!r} to matchImages"
    if is_sandbox:
        # For the sandbox image that is harmless: pull-sandbox pulls it, not the kubelet.
        return ok("kubelet.match", message + sandbox_note)
    return fail("kubelet.match", message, fix)
