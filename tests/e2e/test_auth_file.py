"""``ecrcred write-auth-file`` with the real executable, moto as ECR and the registry that
demands credentials, read back by real clients of each format: skopeo (containers/image, what
CRI-O pulls with) for containers-auth.json, and the kubelet-style docker config reader
(``sources.dockerconfig``, as cri-dockerd's keyring reads ``/.docker/config.json``) for the
docker config."""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from ecrcred.sources.dockerconfig import read_docker_config
from tests.support.aws import AwsStandIn, wait_until
from tests.support.processes import Process
from tests.support.registry import OCI_MANIFEST, Registry
from tests.support.stack import ECR_HOST, PAUSE_REPO, PAUSE_TAG, REGISTRY_PASSWORD, REGISTRY_USER

pytestmark = pytest.mark.e2e


def mirror_config(tmp_path: Path, registry: Registry) -> Path:
    """The registry's host answered with the ECR registry's token (moto's), as a mirror of it."""
    path = tmp_path / "ecrcred.yaml"
    doc = {"apiVersion": "ecrcred.io/v1alpha1", "kind": "EcrcredConfig",
           "registries": [{"match": [registry.host], "mirrorOf": ECR_HOST}]}
    path.write_text(json.dumps(doc))
    return path


def write_auth_file(binary: str, env: dict[str, str], *args: str
                    ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, "write-auth-file", *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def skopeo_inspect(registry: Registry, authfile: Path, home: Path
                   ) -> subprocess.CompletedProcess[str]:
    # HOME and XDG_RUNTIME_DIR of our own: skopeo must find no other credentials than the file.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_RUNTIME_DIR": str(home)}
    return subprocess.run(
        [registry.tools["skopeo"], "inspect", "--authfile", str(authfile), "--tls-verify=false",
         f"docker://{registry.host}/{PAUSE_REPO}:{PAUSE_TAG}"],
        env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def env(node_env: dict[str, str], tmp_path: Path, registry: Registry) -> dict[str, str]:
    return {**node_env, "ECRCRED_CONFIG": str(mirror_config(tmp_path, registry))}


def test_skopeo_pulls_with_the_containers_auth_file(ecrcred_bin, env, registry, pause_image,
                                                     aws: AwsStandIn, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    empty = tmp_path / "empty.json"
    empty.write_text('{"auths": {}}')
    refused = skopeo_inspect(registry, empty, home)
    assert refused.returncode != 0 and "unauthorized" in refused.stderr.lower()

    path = tmp_path / "crio" / "ecrcred-auth.json"
    result = write_auth_file(ecrcred_bin, env, "--image", pause_image, "--file", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote: {path}: {registry.host} (")
    assert REGISTRY_PASSWORD not in result.stdout + result.stderr
    st = path.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, os.geteuid())
    doc = json.loads(path.read_text())
    assert list(doc["auths"]) == [registry.host]  # only the registry asked for
    assert base64.b64decode(doc["auths"][registry.host]["auth"]).decode() == \
        f"{REGISTRY_USER}:{REGISTRY_PASSWORD}"
    assert aws.calls("GetAuthorizationToken") == 1

    inspected = skopeo_inspect(registry, path, home)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Digest"] == registry.pushed[(PAUSE_REPO, PAUSE_TAG)]

    # A second write is served from the token cache get-credentials shares.
    again = write_auth_file(ecrcred_bin, env, "--image", pause_image, "--file", str(path))
    assert again.returncode == 0, again.stderr
    assert aws.calls("GetAuthorizationToken") == 1


def test_the_docker_config_reads_back_as_the_kubelet_reads_it_and_opens_the_registry(
        ecrcred_bin, env, registry, pause_image, tmp_path):
    path = tmp_path / ".docker" / "config.json"  # cri-dockerd with HOME=/ reads /.docker/...
    result = write_auth_file(ecrcred_bin, env, "--format", "docker-config", "--image",
                             pause_image, "--file", str(path))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    config = read_docker_config(str(path))
    assert config is not None
    assert config.auths == {registry.host: (REGISTRY_USER, REGISTRY_PASSWORD)}
    assert (config.cred_helpers, config.creds_store) == ({}, None)
    user, password = config.auths[registry.host]
    status, _, _ = registry.request(f"/v2/{PAUSE_REPO}/manifests/{PAUSE_TAG}", method="HEAD",
                                    credentials=(user, password),
                                    headers={"Accept": OCI_MANIFEST})
    assert status == 200

    # skopeo (containers/image) reads docker's config.json format too.
    home = tmp_path / "home"
    home.mkdir()
    inspected = skopeo_inspect(registry, path, home)
    assert inspected.returncode == 0, inspected.stderr


def test_a_symlink_at_the_destination_is_refused_in_one_line(ecrcred_bin, env, pause_image,
                                                             tmp_path):
    target = tmp_path / "elsewhere.json"
    link = tmp_path / "auth.json"
    link.symlink_to(target)
    result = write_auth_file(ecrcred_bin, env, "--image", pause_image, "--file", str(link))
    assert result.returncode == 73
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "[AUTH_FILE_UNSAFE]" in result.stderr
    assert "Traceback" not in result.stderr and REGISTRY_PASSWORD not in result.stderr
    assert not target.exists()


def test_watch_rewrites_the_file_and_stops_cleanly_on_sigterm(ecrcred_bin, env, registry,
                                                              pause_image, tmp_path):
    path = tmp_path / "crio" / "ecrcred-auth.json"
    log = tmp_path / "watch.log"
    watcher = Process([ecrcred_bin, "write-auth-file", "--watch", "--interval", "1",
                       "--image", pause_image, "--file", str(path)], str(log), env=env)
    try:
        watcher.wait_for(path.exists, 30, "write-auth-file --watch")
        first = path.stat().st_ino
        # --interval 1 caps the wait: each rewrite is a new file renamed into place.
        assert wait_until(lambda: path.stat().st_ino != first, 10), watcher.log_tail()
        home = tmp_path / "home"
        home.mkdir()
        inspected = skopeo_inspect(registry, path, home)
        assert inspected.returncode == 0, inspected.stderr
        os.kill(watcher.pid, signal.SIGTERM)
        assert watcher.popen.wait(10) == 0, watcher.log_tail()
        text = log.read_text()
        assert "stopped" in text and REGISTRY_PASSWORD not in text
        assert sorted(os.listdir(path.parent)) == ["ecrcred-auth.json"]
    finally:
        watcher.stop()
