"""A private containerd for tests (1.6, 1.7 or 2.x): its own root, state and socket.

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
``registry.configs`` tables, which containerd refuses beside ``config_path``. Both speak the
config version of the runtime: version 2 tables (``io.containerd.grpc.v1.cri``) for 1.6 and
1.7, version 3 tables (``io.containerd.cri.v1.images`` ...) for 2.x.

Generations (``Runtime``): ``host_runtime()`` is the machine's own containerd (Debian 12: 1.6);
``runtime("1.7")`` and ``runtime("2.1")`` come from a Debian root of their own release made by
``scripts/runtime-root`` (trixie, sid) and are started without chroot, through that root's
dynamic loader: ``$ROOT/lib64/ld-linux-x86-64.so.2 --library-path $ROOT/lib/...:$ROOT/usr/lib/...
$ROOT/usr/bin/containerd``. The binary then runs on the C library it was built for while every
path it opens stays the host's (the test's temp dir). This works because neither containerd
nor ctr re-executes itself through /proc/self/exe (which would name the loader) on the paths
the tests take: pulls, image records, events, the CRI image service. Shims, which are started
by name from PATH, are never needed: no test runs a container.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import Process
from tests.support.registry import MissingTool, Registry, goarch, require

NAMESPACE = "k8s.io"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes with the NUL; leave room for ".ttrpc"

# Plugins that probe host features this stack does not use (and log errors when absent).
# A name a generation does not have is ignored by it (aufs is gone in 2.x, blockfile and erofs
# are new in 1.7 and 2.1).
DISABLED_PLUGINS = (
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.blockfile",
    "io.containerd.snapshotter.v1.erofs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
)
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Runtime:
    """One containerd generation: how to run its ``containerd`` and ``ctr``, and which config
    version it is written for. ``name`` ("1.6", "1.7", "2.1") is the generation the tests name
    (ids ``[containerd-1.7]``); ``version`` is what ``containerd --version`` said."""

    name: str
    containerd: tuple[str, ...]
    ctr: tuple[str, ...]
    config_version: int
    version: str = ""
    root: str = ""  # the Debian root it runs from; "" for the machine's own

    @property
    def id(self) -> str:
        return f"containerd-{self.name}"

    @property
    def major_minor(self) -> tuple[int, int]:
        major, minor = self.name.split(".")[:2]
        return int(major), int(minor)

    @property
    def registry_table(self) -> str:
        """The CRI's registry table in this generation's config version, for ``extra_config``:
        ``plugins."io.containerd.grpc.v1.cri".registry`` (2), ``...cri.v1.images".registry``
        (3). A version 3 file is not migrated, so a version 2 table in it is not read at all."""
        plugin = "io.containerd.cri.v1.images" if self.config_version >= 3 else \
            "io.containerd.grpc.v1.cri"
        return f'plugins."{plugin}".registry'

    @property
    def pins_sandbox(self) -> bool:
        """Whether the CRI labels the sandbox image pinned itself when it pulls it (1.6.22+,
        1.7.3+, 2.x; docs/containerd.md): Debian 12's 1.6.20 does not, trixie's 1.7.24 and
        sid's 2.1 do, so there ecrcred finds the image already pinned after its pull."""
        return self.major_minor >= (1, 7)


class RuntimeUnavailable(Exception):
    """A generation's root could not be built, or its containerd does not run here."""


# Generation -> the Debian suite whose root carries it ("" for the machine's own containerd).
GENERATIONS: dict[str, str] = {"1.6": "", "1.7": "trixie", "2.1": "sid"}


def _version(containerd: tuple[str, ...]) -> str:
    """What ``containerd --version`` says its version is ("1.7.24~ds1"), or RuntimeUnavailable."""
    try:
        done = subprocess.run([*containerd, "--version"], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeUnavailable(f"{containerd[-1]} does not run: {e}") from e
    if done.returncode != 0:
        raise RuntimeUnavailable(f"{containerd[-1]} does not run (exit {done.returncode}): "
                                 f"{done.stderr.strip()[-500:]}")
    fields = done.stdout.split()  # "containerd github.com/containerd/containerd 1.7.24~ds1 ..."
    return fields[2].lstrip("v") if len(fields) > 2 else done.stdout.strip()


def host_runtime() -> Runtime:
    """The machine's own containerd and ctr (scripts/setup installs Debian 12's 1.6)."""
    tools = require("containerd", "ctr")
    containerd = (tools["containerd"],)
    return Runtime("1.6", containerd, (tools["ctr"],), 2, _version(containerd))


# machine -> (Debian's multiarch directory, the dynamic loader), as scripts/runtime-root builds
_MULTIARCH = {"x86_64": ("x86_64-linux-gnu", "lib64/ld-linux-x86-64.so.2"),
              "aarch64": ("aarch64-linux-gnu", "lib/ld-linux-aarch64.so.1")}


def _loader_prefix(root: str, binary: str) -> tuple[str, ...]:
    triplet, loader = _MULTIARCH.get(platform.machine(), _MULTIARCH["x86_64"])
    libs = f"{root}/lib/{triplet}:{root}/usr/lib/{triplet}"
    return (f"{root}/{loader}", "--library-path", libs, f"{root}/usr/bin/{binary}")


def rooted_runtime(name: str, root: str) -> Runtime:
    """The containerd of a Debian root made by scripts/runtime-root, run through its loader.

    Fails (RuntimeUnavailable) unless ``containerd --version`` runs and is of generation
    ``name``'s major version: a sid that moved on to another minor release is still "2.1" to the
    test ids, and says so in ``version``."""
    containerd, ctr = _loader_prefix(root, "containerd"), _loader_prefix(root, "ctr")
    version = _version(containerd)
    major = name.partition(".")[0]
    if version.partition(".")[0] != major:
        raise RuntimeUnavailable(f"{root} holds containerd {version}, not {name}")
    return Runtime(name, containerd, ctr, 3 if int(major) >= 2 else 2, version, root)


def runtime(name: str, timeout: float = 1800) -> Runtime:
    """Generation ``name``: the host's, or its root built (or found cached) by
    scripts/runtime-root. Raises RuntimeUnavailable with the reason when it cannot be had."""
    suite = GENERATIONS[name]
    if not suite:
        try:
            return host_runtime()
        except MissingTool as e:
            raise RuntimeUnavailable(str(e)) from e
    try:
        done = subprocess.run([str(ROOT / "scripts" / "runtime-root"), suite],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeUnavailable(f"scripts/runtime-root {suite}: {e}") from e
    if done.returncode != 0:
        raise RuntimeUnavailable(f"scripts/runtime-root {suite} failed "
                                 f"(exit {done.returncode}): {done.stderr.strip()[-1500:]}")
    return rooted_runtime(name, done.stdout.strip().splitlines()[-1])


def _toml(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Containerd:
    """containerd on a unix socket in a work dir, with the CRI plugin's sandbox image set."""

    TOOLS = ("containerd", "ctr")

    def __init__(self, workdir: Path | str, sandbox_image: str, *,
                 start_timeout: float = 30.0, extra_config: str = "",
                 config_path: bool = True, runtime: Runtime | None = None) -> None:
        self.runtime = runtime if runtime is not None else host_runtime()
        # argv prefixes: a rooted generation's binary runs through its root's loader
        self.tools = {"containerd": self.runtime.containerd, "ctr": self.runtime.ctr}
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
        text = (self._config_v3 if self.runtime.config_version >= 3 else self._config_v2)(
            config_path)
        Path(self.config_path).write_text(text + extra)

    def _common(self) -> str:
        w = self.workdir
        disabled = ", ".join(_toml(p) for p in DISABLED_PLUGINS)
        return f"""\
root = {_toml(self.root)}
state = {_toml(self.state)}
disabled_plugins = [{disabled}]

[grpc]
  address = {_toml(self.socket)}

[plugins."io.containerd.internal.v1.opt"]
  path = {_toml(str(w / "opt"))}
"""

    def _config_v2(self, config_path: bool) -> str:
        """1.6 and 1.7. 1.7 has NRI too (off by default there; said explicitly)."""
        w = self.workdir
        registry = (f"""\
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = {_toml(self.certs_dir)}
""" if config_path else "")
        nri = ("""
[plugins."io.containerd.nri.v1.nri"]
  disable = true
""" if self.runtime.major_minor >= (1, 7) else "")
        return f"""\
version = 2
{self._common()}{nri}
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {_toml(self.sandbox_image)}
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {_toml(str(w / "cni" / "bin"))}
    conf_dir = {_toml(str(w / "cni" / "net.d"))}
{registry}"""

    def _config_v3(self, config_path: bool) -> str:
        """2.x: the CRI plugin is split into images, runtime and the gRPC server.

        - the transfer service unpacks ``ctr`` pulls (and, in 2.1, CRI pulls): with no
          ``unpack_config`` for the native snapshotter every pull fails with "no unpack
          platforms defined";
        - NRI is on by default and listens on /var/run/nri/nri.sock, machine-wide: off.
        """
        w = self.workdir
        registry = (f"""\
[plugins."io.containerd.cri.v1.images".registry]
  config_path = {_toml(self.certs_dir)}
""" if config_path else "")
        return f"""\
version = 3
{self._common()}
[plugins."io.containerd.nri.v1.nri"]
  disable = true

[[plugins."io.containerd.transfer.v1.local".unpack_config]]
  platform = {_toml("linux/" + goarch())}
  snapshotter = "native"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "native"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = {_toml(self.sandbox_image)}

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = [{_toml(str(w / "cni" / "bin"))}]
  conf_dir = {_toml(str(w / "cni" / "net.d"))}

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"

{registry}"""

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
        self.process = Process([*self.runtime.containerd, "--config", self.config_path],
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
            proc = subprocess.run([*self.runtime.ctr, "--address", self.socket, "version"],
                                  capture_output=True, timeout=5)
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode == 0

    def ctr(self, *args: str, timeout: float = 120,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        """``ctr --address <sock> -n k8s.io ARGS`` (text output captured)."""
        env = dict(os.environ, CONTAINERD_SNAPSHOTTER="native")
        return subprocess.run([*self.runtime.ctr, "--address", self.socket, "-n", NAMESPACE,
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
