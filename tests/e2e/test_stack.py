"""The e2e stack itself works, proven with the real tools only (no ecrcred code)."""

from __future__ import annotations

import json
import subprocess
import urllib.error

import pytest

from tests.support.containerd import Containerd
from tests.support.registry import (
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_MANIFEST,
    OCTET_STREAM,
    Registry,
    goarch,
)

pytestmark = pytest.mark.e2e


def _pull(containerd: Containerd, image: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return containerd.ctr("images", "pull", "--hosts-dir", containerd.certs_dir, *extra, image)


def _creds(registry: Registry) -> str:
    return f"{registry.username}:{registry.password}"


def _image_names(containerd: Containerd) -> list[str]:
    return containerd.ctr("images", "ls", "-q", check=True).stdout.split()


def test_registry_refuses_anonymous_and_accepts_its_user(registry: Registry) -> None:
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        registry.request("/v2/", auth=False)
    assert anonymous.value.code == 401
    assert anonymous.value.headers["WWW-Authenticate"].startswith("Basic ")

    status, _, _ = registry.request("/v2/")
    assert status == 200

    with pytest.raises(urllib.error.HTTPError) as wrong:
        registry.request("/v2/", credentials=(registry.username, "wrong"))
    assert wrong.value.code == 401


def test_pause_image_is_stored_as_pushed(registry: Registry, pause_image: str) -> None:
    assert pause_image == f"{registry.host}/eks/pause:3.9"
    media_type, digest, manifest = registry.get_manifest("eks/pause", "3.9")
    assert media_type == OCI_MANIFEST
    assert digest == registry.pushed[("eks/pause", "3.9")]
    assert manifest["config"]["mediaType"] == OCI_CONFIG
    _, _, body = registry.request(f"/v2/eks/pause/blobs/{manifest['config']['digest']}")
    config = json.loads(body)
    assert (config["os"], config["architecture"]) == ("linux", goarch())
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"]) == 1


@pytest.mark.parametrize("manifest_format, manifest_type",
                         [("oci", OCI_MANIFEST), ("docker", DOCKER_MANIFEST)])
def test_old_style_config_media_type_is_stored_unchanged(
        registry: Registry, manifest_format: str, manifest_type: str) -> None:
    tag = f"octet-{manifest_format}"
    digest = registry.push_test_image("old/octet", tag, config_media_type=OCTET_STREAM,
                                      manifest_format=manifest_format)
    media_type, stored_digest, manifest = registry.get_manifest("old/octet", tag)
    assert (media_type, stored_digest) == (manifest_type, digest)
    assert manifest["config"]["mediaType"] == OCTET_STREAM


def test_containerd_runs_on_its_own_socket_with_the_sandbox_image(
        containerd: Containerd, sandbox_image: str) -> None:
    assert containerd.endpoint == "unix://" + containerd.socket
    assert len(containerd.socket) < 100
    dump = subprocess.run([*containerd.runtime.containerd, "--config", containerd.config_path,
                           "config", "dump"], capture_output=True, text=True, check=True).stdout
    assert f'sandbox_image = "{sandbox_image}"' in dump
    assert f'config_path = "{containerd.certs_dir}"' in dump
    assert containerd.ctr("version").returncode == 0
    assert _image_names(containerd) == []


def test_ctr_pull_through_the_mirror_needs_the_credentials(
        containerd: Containerd, registry: Registry, sandbox_image: str) -> None:
    anonymous = _pull(containerd, sandbox_image)
    assert anonymous.returncode != 0
    assert "401 Unauthorized" in anonymous.stderr, anonymous.stderr
    assert f"pulling from host {registry.host}" in anonymous.stderr, anonymous.stderr
    assert sandbox_image not in _image_names(containerd)

    pulled = _pull(containerd, sandbox_image, "--user", _creds(registry))
    assert pulled.returncode == 0, pulled.stderr
    listing = containerd.ctr("images", "ls", check=True).stdout
    line = next(ln for ln in listing.splitlines() if ln.startswith(sandbox_image + " "))
    assert registry.pushed[("eks/pause", "3.9")] in line
    assert f"linux/{goarch()}" in line


def test_restart_keeps_images_and_keeps_pulling(
        containerd: Containerd, registry: Registry, sandbox_image: str) -> None:
    assert _pull(containerd, sandbox_image, "--user", _creds(registry)).returncode == 0
    assert containerd.process is not None
    first_pid = containerd.process.pid

    containerd.restart()

    assert containerd.process.pid != first_pid
    assert sandbox_image in _image_names(containerd)
    removed = containerd.ctr("images", "rm", "--sync", sandbox_image)
    assert removed.returncode == 0, removed.stderr
    assert sandbox_image not in _image_names(containerd)
    again = _pull(containerd, sandbox_image, "--user", _creds(registry))
    assert again.returncode == 0, again.stderr
    assert sandbox_image in _image_names(containerd)


def test_old_style_image_pulls_by_the_registry_name(
        containerd: Containerd, registry: Registry) -> None:
    """containerd 1.6.20 pulls an image whose config is application/octet-stream (the doc's
    'version-dependent' case), here under the registry's own name via a hosts.toml for it."""
    registry.push_test_image("old/octet", "pull", config_media_type=OCTET_STREAM,
                             manifest_format="docker")
    containerd.add_mirror(registry.host, registry)
    image = f"{registry.host}/old/octet:pull"
    pulled = _pull(containerd, image, "--user", _creds(registry))
    assert pulled.returncode == 0, pulled.stderr
    assert image in _image_names(containerd)
