"""``ecrcred pull-sandbox --archive`` against a real containerd: the EKS AL2023 case, a sandbox
image named ``localhost/kubernetes/pause:latest`` that no registry serves, brought back from a
tarball (OCI layout or docker-archive, written by skopeo from the test registry's image, or
by ``ctr images export`` as EKS makes /etc/eks/pause.tar)
through containerd's content, images, leases, snapshots and diff APIs.

Uses the ``containerd`` fixture as the other e2e tests do (whatever containerd generations it
runs), with ``--image`` naming the localhost image."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ecrcred.cri.client import PINNED_LABEL, PINNED_VALUE, GrpcRuntime
from tests.support.aws import wait_until
from tests.support.processes import Process
from tests.support.sandbox import pull_sandbox
from tests.support.stack import REGISTRY_PASSWORD, REGISTRY_USER, SANDBOX_IMAGE

LOCAL = "localhost/kubernetes/pause:latest"
# Every generation the fixtures offer (tests/conftest.py): the content, images, leases,
# snapshots and diff APIs are the same on each.
CONTAINERD_GENERATIONS = ("1.6", "1.7", "2.1")


def make_archive(registry, pause_image: str, path: Path, transport: str,
                 name: str = LOCAL) -> Path:
    """``pause_image`` from the test registry as ``transport`` (oci-archive, docker-archive)
    at ``path``, holding it as ``name``."""
    subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
         "--src-creds", f"{REGISTRY_USER}:{REGISTRY_PASSWORD}", f"docker://{pause_image}",
         f"{transport}:{path}:{name}"],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(path.parent)},
        check=True, capture_output=True, timeout=120)
    path.chmod(0o644)
    return path


def ctr_export(ecrcred_bin, containerd, node_env, path: Path) -> Path:
    """The EKS AL2023 way: the image in containerd as ``LOCAL``, then ``ctr images export``
    (how /etc/eks/pause.tar is made), then gone again."""
    pulled = pull_sandbox(ecrcred_bin, containerd, node_env, "--no-pin")
    assert pulled.returncode == 0, pulled.stderr.decode()
    containerd.ctr("images", "tag", SANDBOX_IMAGE, LOCAL, check=True)
    containerd.ctr("images", "export", str(path), LOCAL, check=True)
    containerd.ctr("images", "rm", SANDBOX_IMAGE, LOCAL, check=True)
    path.chmod(0o644)
    return path


@pytest.fixture
def runtime(containerd):
    rt = GrpcRuntime(containerd.endpoint)
    try:
        yield rt
    finally:
        rt.close()


def _seen_by_cri(runtime: GrpcRuntime, image: str) -> bool:
    return runtime.image_status(image) is not None


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive", "ctr-export"])
def test_archive_import_restores_a_localhost_image_seen_by_the_cri_and_pinned(
        ecrcred_bin, containerd, registry, pause_image, node_env, runtime, tmp_path, transport):
    if transport == "ctr-export":
        archive = ctr_export(ecrcred_bin, containerd, node_env, tmp_path / "pause.tar")
    else:
        archive = make_archive(registry, pause_image, tmp_path / "pause.tar", transport)
    assert runtime.image_status(LOCAL) is None
    result = pull_sandbox(ecrcred_bin, containerd, node_env, "--image", LOCAL,
                          "--archive", str(archive))
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith(f"imported: {LOCAL} (requested,"), lines
    assert f"from archive {archive}" in lines[0]
    assert lines[1].startswith(f"pinned: {LOCAL}"), lines
    # The CRI adds the image to its store from containerd's /images/create event.
    assert wait_until(lambda: _seen_by_cri(runtime, LOCAL), 5)
    labels = runtime.labels(LOCAL)
    assert labels is not None
    assert labels.get(PINNED_LABEL) == PINNED_VALUE
    assert labels.get("io.cri-containerd.image") == "managed"
    # Unpacked for the CRI's snapshotter (native here): the config blob references the top
    # snapshot, which exists.
    info = containerd.ctr("content", "ls", check=True).stdout
    refs = re.findall(r"containerd\.io/gc\.ref\.snapshot\.native=(sha256:[0-9a-f]{64})", info)
    assert refs, info
    chain = refs[0]
    snap = containerd.ctr("snapshots", "--snapshotter", "native", "info", chain)
    assert snap.returncode == 0, snap.stderr
    # containerd's own verdict: every blob there, and unpacked (its UNPACKED column)
    check = containerd.ctr("images", "check", f"name=={LOCAL}", check=True).stdout
    assert re.search(r"\bcomplete \((\d+)/\1\)", check), check
    assert check.split()[-1] == "true", check
    # Once there, nothing to do.
    again = pull_sandbox(ecrcred_bin, containerd, node_env, "--image", LOCAL,
                         "--archive", str(archive), "--output", "json")
    assert again.returncode == 0, again.stderr.decode()
    assert [line.split('"action": "')[1].split('"')[0]
            for line in again.stdout.decode().splitlines()] == ["present", "already-pinned"]


def test_archive_without_the_image_lists_what_it_holds(
        ecrcred_bin, containerd, registry, pause_image, node_env, tmp_path):
    archive = make_archive(registry, pause_image, tmp_path / "pause.tar", "oci-archive")
    result = pull_sandbox(ecrcred_bin, containerd, node_env, "--image",
                          "localhost/kubernetes/pause:3.10", "--archive", str(archive))
    assert result.returncode == 4, result.stderr.decode()
    err = result.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "does not hold localhost/kubernetes/pause:3.10" in err and LOCAL in err, err
    assert "ARCHIVE_NO_IMAGE" in err


def test_a_failed_pull_falls_back_to_the_archive_named_in_the_config_file(
        ecrcred_bin, containerd, registry, pause_image, node_env, runtime, tmp_path):
    # A registry host that refuses connections: one attempt, then the archive.
    image = "127.0.0.1:9/eks/pause:3.9"
    archive = make_archive(registry, pause_image, tmp_path / "pause.tar", "oci-archive",
                           name=image)
    config = tmp_path / "ecrcred.yaml"
    config.write_text("apiVersion: ecrcred.io/v1alpha1\nkind: EcrcredConfig\n"
                      f"sandbox:\n  archive: {archive}\n")
    config.chmod(0o644)
    started = time.monotonic()
    result = pull_sandbox(ecrcred_bin, containerd, dict(node_env, ECRCRED_CONFIG=str(config)),
                          "--image", image, "--timeout", "120")
    assert result.returncode == 0, result.stderr.decode()
    assert time.monotonic() - started < 30
    assert result.stdout.decode().startswith(f"imported: {image}")
    assert wait_until(lambda: _seen_by_cri(runtime, image), 5)


def test_watch_restores_an_archive_backed_image_within_a_second(
        ecrcred_bin, containerd, registry, pause_image, node_env, runtime, tmp_path):
    archive = make_archive(registry, pause_image, tmp_path / "pause.tar", "oci-archive")
    log = tmp_path / "watch.log"
    argv = [ecrcred_bin, "pull-sandbox", "--watch", "--interval", "30", "--image", LOCAL,
            "--archive", str(archive), "--containerd-config", containerd.config_path,
            "--runtime-endpoint", containerd.endpoint]
    watcher = Process(argv, str(log), env=dict(node_env, ECRCRED_LOG_LEVEL="debug"))
    try:
        watcher.wait_for(lambda: "pinned: " in log.read_text(), 30, "pull-sandbox --watch")
        assert wait_until(lambda: _seen_by_cri(runtime, LOCAL), 5)
        for round_ in range(4):
            # CRI RemoveImage collects garbage before it answers; ctr's delete leaves GC to run
            # after, while the import finds the removed image's blobs and snapshots present
            if round_ % 2:
                containerd.ctr("images", "rm", LOCAL, check=True)
            else:
                runtime.remove_image(LOCAL)
            deleted = time.monotonic()
            assert wait_until(lambda: _seen_by_cri(runtime, LOCAL), 10, interval=0.005), \
                watcher.log_tail()
            restored = time.monotonic() - deleted
            print(f"round {round_}: restored {restored:.3f}s after deletion")
            assert restored < 5
            # the pin follows the import by a few milliseconds: wait for it
            assert wait_until(lambda: (runtime.labels(LOCAL) or {}).get(PINNED_LABEL)
                              == PINNED_VALUE, 5), watcher.log_tail()
        assert "imported: " in log.read_text()
        # Whatever GC ran after the last deletion left the restored image whole.
        time.sleep(0.5)
        check = containerd.ctr("images", "check", f"name=={LOCAL}", check=True).stdout
        assert re.search(r"\bcomplete \((\d+)/\1\)", check), check
        os.kill(watcher.pid, signal.SIGTERM)
        assert watcher.popen.wait(10) == 0
    finally:
        watcher.stop()


@pytest.mark.parametrize(("member", "words"), [
    ("../../etc/cron.d/x", "outside the archive"),
    ("link", "links are never followed"),
])
def test_a_hostile_archive_is_one_line_and_nothing_is_imported(
        ecrcred_bin, containerd, node_env, runtime, tmp_path, member, words):
    import io
    import json
    import tarfile

    path = tmp_path / "hostile.tar"
    with tarfile.open(path, "w") as tar:
        manifest = json.dumps([{"Config": "c.json", "RepoTags": [LOCAL],
                                "Layers": ["link"]}]).encode()
        for name, data in (("manifest.json", manifest), ("c.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(info, io.BytesIO(b""))
    path.chmod(0o644)
    result = pull_sandbox(ecrcred_bin, containerd, node_env, "--image", LOCAL,
                          "--archive", str(path))
    assert result.returncode == 4, result.stderr.decode()
    err = result.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert words in err and "[BAD_ARCHIVE]" in err, err
    assert runtime.image_status(LOCAL) is None
