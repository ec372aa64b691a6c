"""Running ``ecrcred pull-sandbox`` against a test containerd, and reading what it left, for the
end-to-end, fault and hostile suites (the ``node_env`` fixture is in tests/conftest.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.support.containerd import Containerd
from tests.support.stack import REGISTRY_PASSWORD, REGISTRY_USER


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


def static_rule(directory: Path, hosts: Sequence[str],
                password: str = REGISTRY_PASSWORD) -> dict[str, str]:
    """The environment for an ecrcred config whose one rule gives the test registry's user
    and ``password`` (from a 0600 file) to ``hosts``."""
    secret = directory / "registry.password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    config = directory / "ecrcred.yaml"
    match = ", ".join(f'"{host}"' for host in hosts)
    config.write_text(f"""\
apiVersion: ecrcred.io/v1alpha1
kind: EcrcredConfig
registries:
  - match: [{match}]
    static:
      username: {REGISTRY_USER}
      passwordFile: {secret}
""")
    return {"ECRCRED_CONFIG": str(config)}
