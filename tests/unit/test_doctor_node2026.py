"""doctor on the node of 2026: a containerd 2.x pin that never holds, a lazy-loading
snapshotter, a kubelet flag that Kubernetes 1.35 refuses, and the sandbox image's archive."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecrcred import containerd_config
from ecrcred.doctor.kubelet import check_kubelet_flags
from ecrcred.doctor.runtime import check_archive, sandbox_settings
from ecrcred.errors import ConfigError
from ecrcred.settings import Setting
from tests.unit.test_archive import LOCAL, oci_members, write_tar

V3 = 'version = 3\n[plugins."io.containerd.cri.v1.images".pinned_images]\nsandbox = "{}"\n'
V2 = 'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "{}"\n'


def settings_of(tmp_path: Path, text: str) -> list[tuple[str, str, str]]:
    path = tmp_path / "config.toml"
    path.write_text(text)
    config = containerd_config.load(str(path))
    return [(c.id, c.status, c.message) for c in sandbox_settings(config)]


@pytest.mark.parametrize(("value", "stored"), [
    ("localhost/kubernetes/pause", "localhost/kubernetes/pause:latest"),
    ("pause:3.10", "docker.io/library/pause:3.10"),
    ("602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause",
     "602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:latest"),
])
def test_a_containerd_2_pin_by_a_name_it_does_not_store_is_a_warning(
        tmp_path: Path, value: str, stored: str):
    [(check, status, message)] = settings_of(tmp_path, V3.format(value))
    assert (check, status) == ("runtime.sandbox-pin", "warn")
    assert f'"{value}"' in message and f"stores that image as {stored}" in message


@pytest.mark.parametrize("text", [
    V3.format("localhost/kubernetes/pause:latest"),
    V3.format("registry.k8s.io/pause:3.10"),
    V2.format("localhost/kubernetes/pause"),  # 1.x: its pin is not by exact string
])
def test_a_pin_containerd_will_hold_is_not_reported(tmp_path: Path, text: str):
    assert settings_of(tmp_path, text) == []


@pytest.mark.parametrize(("snapshotter", "reported"), [
    ("soci", True), ("stargz", True), ("overlayfs", False), ("native", False)])
def test_a_lazy_loading_snapshotter_for_the_cri_is_a_warning(
        tmp_path: Path, snapshotter: str, reported: bool):
    text = (V3.format("registry.k8s.io/pause:3.10")
            + f'[plugins."io.containerd.cri.v1.images"]\nsnapshotter = "{snapshotter}"\n')
    found = settings_of(tmp_path, text)
    assert [c for c, _, _ in found] == (["runtime.snapshotter"] if reported else [])


def test_the_removed_pod_infra_flag_on_the_running_kubelet_fails(tmp_path: Path):
    [check] = check_kubelet_flags(
        ["/usr/bin/kubelet", "--pod-infra-container-image=registry.k8s.io/pause:3.10"], ())
    assert (check.id, check.status) == ("kubelet.flags", "fail")
    assert "--pod-infra-container-image" in check.message and "1.35" in check.details[0]
    assert "remove the flag" in check.fix


def test_the_removed_flag_in_a_unit_drop_in_fails_even_with_no_kubelet_running(tmp_path: Path):
    # a kubelet that refuses to start is not in /proc: the files that would give it the flag
    dropins = tmp_path / "kubelet.service.d"
    dropins.mkdir()
    (dropins / "10-args.conf").write_text(
        '[Service]\nEnvironment="KUBELET_EXTRA_ARGS=--node-labels=a=b '
        '--pod-infra-container-image=localhost/kubernetes/pause"\n')
    (dropins / "README").write_text("--pod-infra-container-image is not read from here\n")
    [check] = check_kubelet_flags(None, (str(dropins), str(tmp_path / "absent")))
    assert check.status == "fail"
    assert str(dropins / "10-args.conf") in check.details[0]


def test_a_commented_out_flag_and_a_clean_node_report_nothing(tmp_path: Path):
    env = tmp_path / "kubelet"
    env.write_text("# --pod-infra-container-image=old\nKUBELET_ARGS=--v=2\n")
    assert check_kubelet_flags(["/usr/bin/kubelet", "--v=2"], (str(env),)) == []


# -- the sandbox image's archive --------------------------------------------------------------

def test_an_archive_holding_the_sandbox_image_is_ok(tmp_path: Path):
    path = write_tar(tmp_path / "pause.tar", oci_members())
    check = check_archive(Setting(str(path), "flag --archive"), LOCAL)
    assert (check.id, check.status) == ("runtime.sandbox-archive", "ok")
    assert f"holds {LOCAL}" in check.message and "flag --archive" in check.message


def test_an_archive_without_the_image_fails_and_names_what_it_holds(tmp_path: Path):
    path = write_tar(tmp_path / "pause.tar", oci_members())
    check = check_archive(Setting(str(path), "config"), "localhost/kubernetes/pause:3.10")
    assert check.status == "fail"
    assert f"it holds: {LOCAL}" in check.message


def test_a_missing_or_writable_archive_and_an_unloadable_config_fail(tmp_path: Path):
    missing = check_archive(Setting(str(tmp_path / "absent.tar"), "config"), LOCAL)
    writable = write_tar(tmp_path / "w.tar", oci_members(), mode=0o666)
    loose = check_archive(Setting(str(writable), "config"), LOCAL)
    broken = check_archive(ConfigError("config /etc/ecrcred/config.yaml: bad", hint="fix"),
                           LOCAL)
    assert [c.status for c in (missing, loose, broken)] == ["fail"] * 3
    assert broken.message == "config /etc/ecrcred/config.yaml: bad"
