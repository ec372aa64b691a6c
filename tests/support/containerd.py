"""A private containerd (1.6, config version 2) for tests: its own root, state and socket.

``Containerd(workdir, sandbox_image)`` writes ``config.toml`` with everything under the work
dir (root, state, socket, ``certs.d``, the opt plugin's dir, CNI dirs), starts
``containerd --config`` and waits until ``ctr version`` answers on the socket. Nothing of the
machine's own containerd (``/run/containerd``, ``/var/lib/containerd``, ``/etc/cni``) is used.

Unix socket paths are limited to 107 bytes: when the work dir would make the socket path too
long, a short directory ``/tmp/ecd-*`` is made instead and removed again by ``stop()``.

``ctr()`` runs ``ctr --address <sock> -n k8s.io ...`` with ``CONTAINERD_SNAPSHOTTER=native``,
the snapshotter the CRI plugin is configured with, so images pulled with ``ctr`` unpack the
same way as CRI pulls (ctr would otherwise unpack into overlayfs).

``extra_config`` is appended to the generated TOML: it may add tables, not repeat one that is
already written (containerd refuses to start on "duplicated tables"). With
``config_path=False`` the registry table is left out, for the deprecated ``registry.mirrors`` /
``registry.configs`` tables, which containerd refuses beside ``config_path``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.processes import Process
from tests.support.registry import Registry, require

NAMESPACE = "k8s.io"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes with the NUL; leave room for ".ttrpc"

# Plugins that probe host features this stack does not use (and log errors when absent).
DISABLED_PLUGINS = (
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
)


def _toml(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Containerd:
    """containerd on a unix socket in a work dir, with the CRI plugin's sandbox image set."""

    TOOLS = ("containerd", "ctr")

    def __init__(self, workdir: Path | str, sandbox_image: str, *,
                 start_timeout: float = 30.0, extra_config: str = "",
                 config_path: bool = True) -> None:
        self.tools = require(*self.TOOLS)
        workdir = Path(workdir)
        self._own_dir: Path | None = None
        if len(str(workdir / "containerd.sock.ttrpc")) > _MAX_SOCKET_PATH:
            workdir = Path(tempfile.mkdtemp(prefix="ecd-", dir="/tmp"))
            self._own_dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.sandbox_image = sandbox_image
        self.root = str(workdir / "root")
        self.state = str(workdir / "state")
        self.socket = str(workdir / "containerd.sock")
        self.endpoint = "unix://" + self.socket
        self.certs_dir = str(workdir / "certs.d")
        self.config_path = str(workdir / "config.toml")
        self.log_path = str(workdir / "containerd.log")
        self.start_timeout = start_timeout
        self.timings: dict[str, float] = {}
        Path(self.certs_dir).mkdir(exist_ok=True)
        self._write_config(extra_config, config_path)
        self.process: Process | None = None
        self.start()

    # -- config --------------------------------------------------------------------------------

    def _write_config(self, extra: str, config_path: bool) -> None:
        w = self.workdir
        disabled = ", ".join(_toml(p) for p in DISABLED_PLUGINS)
        registry = (f"""\
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = {_toml(self.certs_dir)}
""" if config_path else "")
        Path(self.config_path).write_text(f"""\
version = 2
root = {_toml(self.root)}
state = {_toml(self.state)}
disabled_plugins = [{disabled}]

[grpc]
  address = {_toml(self.socket)}

[plugins."io.containerd.internal.v1.opt"]
  path = {_toml(str(w / "opt"))}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {_toml(self.sandbox_image)}
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {_toml(str(w / "cni" / "bin"))}
    conf_dir = {_toml(str(w / "cni" / "net.d"))}
{registry}{extra}""")

    def add_mirror(self, upstream_host: str, registry: Registry) -> str:
        """Make ``upstream_host`` resolve to ``registry`` (CRI pulls; ``ctr`` with --hosts-dir).

        Writes ``<certs.d>/<upstream_host>/hosts.toml`` in the form verified on 1.6.20 (the
        ``ca`` as an array; the upstream as ``server``, the mirror as a ``host`` entry).
        containerd reads hosts.toml on every pull: no restart needed.

        ``add_mirror(registry.host, registry)`` makes the registry's own name usable too: without
        a hosts.toml, ``ctr`` talks plain HTTP to ``127.0.0.1:PORT`` (a loopback host) and the
        TLS registry answers "400 Bad Request".
        """
        d = Path(self.certs_dir) / upstream_host
        d.mkdir(parents=True, exist_ok=True)
        path = d / "hosts.toml"
        path.write_text(f"""\
server = {_toml("https://" + upstream_host)}

[host.{_toml(registry.url)}]
  capabilities = ["pull", "resolve"]
  ca = [{_toml(registry.cert_path)}]
""")
        return str(path)

    # -- process -------------------------------------------------------------------------------

    def start(self) -> None:
        if self.process is not None and self.process.alive():
            raise RuntimeError(f"containerd already running as pid {self.process.pid}")
        t0 = time.monotonic()
        self.process = Process([self.tools["containerd"], "--config", self.config_path],
                               self.log_path)
        try:
            self.process.wait_for(lambda: os.path.exists(self.socket), self.start_timeout,
                                  "containerd (socket)")
            self.timings["socket"] = time.monotonic() - t0
            self.process.wait_for(self._answers, self.start_timeout, "containerd (ctr version)")
        except BaseException:
            self.stop()  # never leave a half-started containerd (or our short dir) behind
            raise
        self.timings["start"] = time.monotonic() - t0

    def _answers(self) -> bool:
        try:
            proc = subprocess.run([self.tools["ctr"], "--address", self.socket, "version"],
                                  capture_output=True, timeout=5)
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode == 0

    def ctr(self, *args: str, timeout: float = 120,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        """``ctr --address <sock> -n k8s.io ARGS`` (text output captured)."""
        env = dict(os.environ, CONTAINERD_SNAPSHOTTER="native")
        return subprocess.run([self.tools["ctr"], "--address", self.socket, "-n", NAMESPACE,
                               *args], capture_output=True, text=True, timeout=timeout,
                              env=env, check=check)

    def shim_pids(self) -> list[int]:
        """Pids of containerd shims serving this instance (their argv names our socket)."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if (argv and b"containerd-shim" in os.path.basename(argv[0])
                    and self.socket.encode() in argv):
                pids.append(int(entry))
        return pids

    def _stop_process(self, timeout: float) -> list[int]:
        """Stop our containerd; kill shims it left (by pid); return those shims' pids."""
        if self.process is not None:
            self.process.stop(timeout)
        leftovers = self.shim_pids()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return leftovers

    def restart(self, timeout: float = 15.0) -> None:
        """Stop our containerd by pid and start it again on the same root, state and socket."""
        self._stop_process(timeout)
        self.start()

    def stop(self, timeout: float = 15.0) -> list[int]:
        """Stop containerd; return the pids of shims that had to be killed (expected: none)."""
        leftovers = self._stop_process(timeout)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None
        return leftovers

    def log_tail(self, lines: int = 30) -> str:
        return self.process.log_tail(lines) if self.process else ""
