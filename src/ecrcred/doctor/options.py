"""What ``doctor`` checks and where things are: its flags, then the running kubelet's own flags,
then the paths our packages install.

Discovery lives here, beside the checks that use it, and not in the CLI: only ``doctor`` reads
the kubelet's command line or containerd's config before it starts. ``doctor_options`` also
reads containerd's config, once: its sandbox image is the default image, and ``diagnose`` judges
that same reading (a config edited between two reads cannot make them disagree).
"""

from __future__ import annotations

import platform
import shutil
import sys
from typing import TYPE_CHECKING

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
from ecrcred.errors import ConfigError, UsageError
from ecrcred.settings import Setting, pick

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from ecrcred.containerd_config import ContainerdConfig
    from ecrcred.doctor.environment import Process


def doctor_options(env: Mapping[str, str], running: list[Process], *, image: str | None,
                   containerd_config_flag: str | None, runtime_endpoint: str | None,
                   provider_config: str | None, provider_bin_dir: str | None, timeout: float,
                   skip: Iterable[str]) -> tuple[Options, ContainerdConfig | ConfigError]:
    """The ``Options`` for one doctor run, from its flags (None: not given) and what ``running``
    shows of the kubelet; and containerd's config as read (or the error reading it)."""
    kubelet = next((p for p in running if p.name == "kubelet"), None)
    flags = kubelet_flags(kubelet.cmdline) if kubelet else {}

    def setting(value: str | None, flag: str, default: str) -> Setting:
        if value is not None:
            return Setting(value, f"flag --{flag.split('-', 4)[-1]}")
        if kubelet is not None and flag in flags:
            return Setting(flags[flag], f"the running kubelet's {flag} (pid {kubelet.pid})")
        return Setting(default, "default")

    containerd = pick("--containerd-config", containerd_config_flag, env,
                      "ECRCRED_CONTAINERD_CONFIG", containerd_config.DEFAULT_CONFIG)
    loaded = load_containerd_config(containerd.value)
    found = None if isinstance(loaded, ConfigError) else loaded.sandbox_image
    sandbox = found.value if found else None
    origin = f"the sandbox image of {found.file}" if found else ""
    if image is not None:
        origin = "--image"
    elif sandbox is not None:
        image = sandbox
    else:
        raise UsageError(f"no --image given and {containerd.value} names no sandbox image",
                         hint="pass --image IMAGE (or --containerd-config)")
    # The frozen executable is itself; a package install is the ``ecrcred`` on PATH.
    self_path = sys.executable if getattr(sys, "frozen", False) else shutil.which("ecrcred")
    return Options(
        image=image, image_origin=origin, containerd_config=containerd,
        runtime_endpoint=resolve_endpoint(runtime_endpoint, env),
        provider_config=setting(provider_config, CONFIG_FLAG, DEFAULT_PROVIDER_CONFIG),
        provider_bin_dir=setting(provider_bin_dir, BIN_DIR_FLAG, DEFAULT_BIN_DIR),
        self_path=self_path, timeout=timeout, skip=frozenset(skip),
        platform=("linux", goarch(platform.machine()))), loaded
