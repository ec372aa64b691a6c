"""Running ``ecrcred pull-sandbox`` against a test containerd, and reading what it left, for the
end-to-end, fault and hostile suites (the ``node_env`` fixture is in tests/conftest.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from tests.support.containerd import Containerd


def node_environment(aws_env: Mapping[str, str], cache_dir: str) -> dict[str, str]:
    """A systemd unit's environment: no HOME, AWS reachable as the stand-in."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **aws_env, "ECRCRED_CACHE_DIR": cache_dir}


def pull_sandbox(binary: str, containerd: Containerd, env: Mapping[str, str], *args: str,
                 timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """``pull-sandbox`` pointed at ``containerd``'s config and socket, with ``args``."""
    return subprocess.run(
        [binary, "pull-sandbox", "--containerd-config", containerd.config_path,
         "--runtime-endpoint", containerd.endpoint, *args],
        env=dict(env), capture_output=True, timeout=timeout, check=False)


def images(containerd: Containerd) -> list[str]:
    """The image names containerd's k8s.io namespace holds."""
    out = containerd.ctr("images", "ls", "-q", check=True).stdout
    return (out.decode() if isinstance(out, bytes) else out).split()
