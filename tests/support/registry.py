"""A private registry on 127.0.0.1 that needs credentials, over TLS (distribution, htpasswd).

``Registry(workdir)`` makes a self-signed certificate for IP 127.0.0.1 (usable as the ``ca`` of a
containerd ``hosts.toml``), an htpasswd file, a distribution config with filesystem storage
under ``workdir``, then starts ``docker-registry serve`` on a free port and waits until ``/v2/``
answers 401 over TLS. ``push_test_image`` writes a tiny OCI image layout and pushes it with
skopeo; it returns the manifest digest as the registry stores it.

``Registry(workdir, client_certificates=True)`` also demands mutual TLS: a client CA in
``http.tls.clientcas`` (distribution then requires and verifies a client certificate) and a
client certificate it signed, ``client`` (cert, key and a combined file), which the registry's
own requests and skopeo present.

A missing tool raises ``MissingTool`` (a test fixture turns it into a failure, never a skip).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import platform
import secrets
import shutil
import socket
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.processes import Process
from tests.support.tls import Pair, make_ca, make_client_cert, make_server_cert

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCTET_STREAM = "application/octet-stream"
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
           "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


class MissingTool(RuntimeError):
    """Commands the e2e stack needs are not installed."""

    def __init__(self, names: list[str]) -> None:
        listed = ", ".join(f"`{n}`" for n in names)
        super().__init__(f"{listed} not found on PATH: run ./scripts/test, which installs "
                         "the e2e tools (containerd, docker-registry, skopeo, apache2-utils, "
                         "openssl)")
        self.names = names


def require(*names: str) -> dict[str, str]:
    """The full path of each command, or MissingTool naming every one that is absent."""
    found = {name: shutil.which(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise MissingTool(missing)
    return {name: path for name, path in found.items() if path is not None}


def goarch() -> str:
    machine = platform.machine().lower()
    return _GOARCH.get(machine, machine)


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (callers retry if it is taken since)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {' '.join(argv)}\n"
                           f"{proc.stdout}{proc.stderr}")
    return proc


class Registry:
    """docker-registry on 127.0.0.1:<free port>, TLS with a self-signed cert, htpasswd auth."""

    TOOLS = ("docker-registry", "openssl", "htpasswd", "skopeo")

    def __init__(self, workdir: Path | str, username: str = "ecrcred",
                 password: str | None = None, start_timeout: float = 30.0,
                 client_certificates: bool = False) -> None:
        self.tools = require(*self.TOOLS)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(18)
        self.pushed: dict[tuple[str, str], str] = {}
        self.timings: dict[str, float] = {}
        t0 = time.monotonic()
        made = make_server_cert(self.workdir, "registry")
        self.cert_path, self.key_path = made.cert, made.key
        self.client_ca: Pair | None = None
        self.client: Pair | None = None
        if client_certificates:
            self.client_ca = make_ca(self.workdir / "client-ca", "client-ca")
            self.client = make_client_cert(self.workdir / "client", "node", self.client_ca)
        self.htpasswd_path = str(self.workdir / "htpasswd")
        self._make_htpasswd()
        self.timings["files"] = time.monotonic() - t0
        self._ssl = ssl.create_default_context(cafile=self.cert_path)
        if self.client is not None:
            self._ssl.load_cert_chain(self.client.cert, self.client.key)
        self.process: Process | None = None
        t1 = time.monotonic()
        self._start(start_timeout)
        self.timings["start"] = time.monotonic() - t1

    # -- setup ---------------------------------------------------------------------------------

    def _make_htpasswd(self) -> None:
        out = _run([self.tools["htpasswd"], "-Bbn", self.username, self.password]).stdout
        # htpasswd -n prints the entry and then a blank line; the registry wants one entry a
        # line and stops accepting when a blank one follows.
        Path(self.htpasswd_path).write_text(out.splitlines()[0].strip() + "\n")

    def _write_config(self, port: int) -> str:
        storage = self.workdir / "storage"
        storage.mkdir(exist_ok=True)
        config = self.workdir / "config.yml"
        clientcas = (f"    clientcas:\n      - {self.client_ca.cert}\n" if self.client_ca else "")
        config.write_text(f"""\
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: {secrets.token_hex(16)}
  tls:
    certificate: {self.cert_path}
    key: {self.key_path}
{clientcas}auth:
  htpasswd:
    realm: ecrcred-test
    path: {self.htpasswd_path}
""")
        return str(config)

    def _start(self, timeout: float) -> None:
        last_error: Exception | None = None
        for _attempt in range(3):  # the free port may be taken between probe and bind
            port = free_port()
            config = self._write_config(port)
            self.port = port
            self.host = f"127.0.0.1:{port}"
            self.url = f"https://{self.host}"
            process = Process([self.tools["docker-registry"], "serve", config],
                              str(self.workdir / "registry.log"))
            try:
                process.wait_for(self._answers_401, timeout, "docker-registry")
            except BaseException as e:
                process.stop()
                if not isinstance(e, RuntimeError):
                    raise
                last_error = e
                if "address already in use" in str(e):
                    continue
                raise
            self.process = process
            return
        raise RuntimeError(f"docker-registry did not start: {last_error}")

    def _answers_401(self) -> bool:
        try:
            self.request("/v2/", auth=False, timeout=2)
        except urllib.error.HTTPError as e:
            return e.code == 401
        except (OSError, ssl.SSLError):
            return False
        return False

    # -- HTTP ----------------------------------------------------------------------------------

    def request(self, path: str, *, auth: bool = True, method: str = "GET",
                headers: dict[str, str] | None = None, data: bytes | None = None,
                credentials: tuple[str, str] | None = None,
                timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        """One HTTPS request to the registry; HTTPError on 4xx/5xx.

        Basic auth with the registry's user (or ``credentials``) unless ``auth=False``.
        """
        hdrs = dict(headers or {})
        if auth:
            user, password = credentials or (self.username, self.password)
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            hdrs["Authorization"] = f"Basic {token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            # The error holds the open connection: close it now (its code and headers stay), or
            # the socket is left to the garbage collector, a ResourceWarning in a later test.
            e.close()
            raise

    def get_manifest(self, repo: str, ref: str) -> tuple[str, str, dict[str, Any]]:
        """(media type, digest, decoded manifest) as the registry stores it."""
        _, headers, body = self.request(f"/v2/{repo}/manifests/{ref}",
                                        headers={"Accept": MANIFEST_ACCEPT})
        lower = {k.lower(): v for k, v in headers.items()}
        media_type = lower.get("content-type", "")
        digest = lower.get("docker-content-digest", _digest(body))
        return media_type, digest, json.loads(body)

    # -- images --------------------------------------------------------------------------------

    def push_test_image(self, repo: str, tag: str, *, config_media_type: str = OCI_CONFIG,
                        manifest_format: str = "oci", content: bytes | None = None) -> str:
        """Push a tiny single-layer linux/<GOARCH> image as repo:tag; return its manifest digest.

        ``config_media_type`` may be ``OCTET_STREAM`` to imitate images built by Docker < 1.10;
        ``manifest_format`` is ``"oci"`` or ``"docker"`` (schema 2). The stored manifest is
        read back and checked, so a tool that rewrote the media types is noticed here.
        """
        if manifest_format not in ("oci", "docker"):
            raise ValueError(f"manifest_format must be 'oci' or 'docker', not {manifest_format!r}")
        layout = self.workdir / "layouts" / f"{repo.replace('/', '_')}_{tag}_{secrets.token_hex(4)}"
        manifest_type, source = self._write_layout(layout, tag, config_media_type,
                                                   manifest_format, content)
        dest = f"docker://{self.host}/{repo}:{tag}"
        argv = [self.tools["skopeo"], "--insecure-policy", "copy", "--quiet",
                "--dest-creds", f"{self.username}:{self.password}",
                "--dest-tls-verify=false", "--preserve-digests", source, dest]
        if self.client is not None:
            # skopeo takes a client certificate from a directory: <name>.cert and <name>.key
            cert_dir = self.workdir / "skopeo-certs"
            cert_dir.mkdir(exist_ok=True)
            shutil.copy(self.client.cert, cert_dir / "client.cert")
            shutil.copy(self.client.key, cert_dir / "client.key")
            argv[-2:-2] = ["--dest-cert-dir", str(cert_dir)]
        _run(argv, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.workdir)})
        stored_type, digest, manifest = self.get_manifest(repo, tag)
        if stored_type != manifest_type or manifest["config"]["mediaType"] != config_media_type:
            raise RuntimeError(f"registry stores {repo}:{tag} as {stored_type} with config "
                               f"{manifest['config']['mediaType']}, not {manifest_type} with "
                               f"{config_media_type}")
        shutil.rmtree(layout)
        self.pushed[(repo, tag)] = digest
        return digest

    @staticmethod
    def _write_layout(layout: Path, tag: str, config_media_type: str, manifest_format: str,
                      content: bytes | None) -> tuple[str, str]:
        """Write the image; return (manifest media type, skopeo source reference).

        OCI manifests go into an OCI image layout (``oci:<dir>:<tag>``). skopeo 1.9's ``oci:``
        transport only finds index entries of the OCI manifest type, so a Docker schema 2
        manifest goes into skopeo's own ``dir:`` layout instead (manifest.json, blobs by hex
        digest, a version file), which skopeo copies as is.
        """
        oci = manifest_format == "oci"
        blobs = layout / "blobs" / "sha256" if oci else layout
        blobs.mkdir(parents=True)

        def put(data: bytes) -> str:
            digest = _digest(data)
            (blobs / digest.split(":", 1)[1]).write_bytes(data)
            return digest

        script = content if content is not None else b"#!/bin/sh\n# ecrcred test pause\nexit 0\n"
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo("pause")
            info.size, info.mode, info.mtime = len(script), 0o755, 0
            tar.addfile(info, io.BytesIO(script))
        layer_tar = raw.getvalue()
        layer = gzip.compress(layer_tar, mtime=0)
        config = json.dumps({
            "architecture": goarch(),
            "os": "linux",
            "config": {"Entrypoint": ["/pause"]},
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer_tar)]},
            "history": [{"created_by": "ecrcred tests/support/registry.py"}],
        }, sort_keys=True).encode()
        manifest_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_media_type, "digest": put(config),
                       "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER if oci else DOCKER_LAYER, "digest": put(layer),
                        "size": len(layer)}],
        }, sort_keys=True).encode()
        if not oci:
            (layout / "manifest.json").write_bytes(manifest)
            (layout / "version").write_text("Directory Transport Version: 1.1\n")
            return manifest_type, f"dir:{layout}"
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": manifest_type, "digest": put(manifest),
                           "size": len(manifest),
                           "annotations": {"org.opencontainers.image.ref.name": tag}}],
        }
        (layout / "index.json").write_text(json.dumps(index))
        (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        return manifest_type, f"oci:{layout}:{tag}"

    # -- teardown ------------------------------------------------------------------------------

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log_tail(self, lines: int = 30) -> str:
        return self.process.log_tail(lines) if self.process else ""
