"""What a systemd service without HOME reads: the process table from a fake /proc, and the
docker config files of the kubelet's search in temporary home directories."""

from __future__ import annotations

import base64
import json
import os
import pwd
from pathlib import Path

import pytest

from ecrcred.doctor.environment import KUBELET_ROOT, Process, check_environment, processes
from ecrcred.doctor.report import OK, WARN, Check
from ecrcred.sources.dockerconfig import search_paths
from tests.unit.fakes import FakeClock, RecordingLogger

HOST = "reg.example.lan:5000"
IMAGE = f"{HOST}/infra/pause"
PASSWORD = "Harbor12345-do-not-print"
NO_SUCH_UID = 3_999_999


@pytest.fixture(autouse=True)
def _no_docker_config_outside_home() -> None:
    # The search always includes these; a machine that has them would answer for the tests.
    fixed = [p for p in search_paths(KUBELET_ROOT, "/", None) if not p.startswith("$HOME")]
    present = [p for p in fixed if os.path.exists(p)]
    if present:
        pytest.fail(f"{present} exist on this machine and take part in every search; remove "
                    "them to run these tests")


def docker_login(path: Path, *hosts: str, legacy: bool = False) -> Path:
    """A docker config file with credentials for ``hosts`` (``.dockercfg`` form if legacy)."""
    entries = {h: {"auth": base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
               for h in hosts}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries if legacy else {"auths": entries}))
    path.chmod(0o600)
    return path


def service(name: str, pid: int, env: dict[str, str] | None) -> Process:
    return Process(pid, name, [f"/usr/bin/{name}"], env, 0)


def check(env: dict[str, str], running: list[Process] | None = None,
          uid: int | None = None) -> dict[str, Check]:
    checks = check_environment(IMAGE, env, running or [], FakeClock(), RecordingLogger(), uid)
    assert [c.id for c in checks] == ["environment.home", "environment.docker-config"]
    for c in checks:
        assert PASSWORD not in f"{c.message} {c.fix} {c.details}"
    return {c.id: c for c in checks}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


# -- environment.home -----------------------------------------------------------------------------

def test_a_service_without_home_misses_the_docker_login_of_the_operator(home: Path):
    # cri-dockerd under systemd, docker login done as root in a shell
    login = docker_login(home / ".docker" / "config.json", HOST)
    cri_dockerd = service("cri-dockerd", 5894, {"PATH": "/usr/bin", "LANG": "C.UTF-8"})
    checks = check({"HOME": str(home)}, [cri_dockerd])
    found = checks["environment.home"]
    assert found.status == WARN
    assert found.message.startswith(f"cri-dockerd (pid 5894) has no HOME, so {login} (which has "
                                    f"credentials for {HOST}) is never read")
    assert found.message.endswith("a systemd service gets no HOME unless its unit sets one")
    assert found.fix.startswith(f"add Environment=HOME={home} to the unit")
    assert f"paths: [{login}]" in found.fix
    assert found.details == (f"this process (HOME set): HOME={home}, cri-dockerd (pid 5894): "
                             "HOME=unset",)


def test_every_service_without_home_is_named(home: Path):
    docker_login(home / ".dockercfg", HOST, legacy=True)
    running = [service("kubelet", 812, {}), service("cri-dockerd", 5894, {"HOME": ""})]
    found = check({"HOME": str(home)}, running)["environment.home"]
    assert found.status == WARN
    assert found.message.startswith("kubelet (pid 812), cri-dockerd (pid 5894) has no HOME, so "
                                    f"{home / '.dockercfg'}")


def test_a_service_whose_environment_cannot_be_read_is_not_judged(home: Path):
    docker_login(home / ".docker" / "config.json", HOST)
    found = check({"HOME": str(home)}, [service("kubelet", 812, None)])["environment.home"]
    assert found.status == OK
    assert "kubelet" not in found.message


def test_services_with_home_are_ok_and_told_how_to_see_what_a_bare_service_sees(home: Path):
    docker_login(home / ".docker" / "config.json", HOST)
    running = [service("kubelet", 812, {"HOME": "/root"})]
    found = check({"HOME": str(home)}, running)["environment.home"]
    assert found.status == OK
    assert found.message.startswith(f"HOME is set for this process (HOME set): HOME={home}, "
                                    "kubelet (pid 812): HOME=/root")
    assert "env -i ecrcred doctor" in found.message


def test_an_emptied_environment_with_nothing_to_lose_is_ok():
    with pytest.raises(KeyError):
        pwd.getpwuid(NO_SUCH_UID)
    checks = check({}, uid=NO_SUCH_UID)
    found = checks["environment.home"]
    assert found.status == OK
    assert found.message == (
        "this process (HOME unset) has no HOME (as a systemd service without User= or "
        "Environment=HOME=); no docker login under the home directory has credentials for "
        f"{HOST}, so nothing is lost")
    searched = checks["environment.docker-config"]
    assert (searched.status, searched.message) == (
        OK, f"no docker config file the kubelet reads has credentials for {HOST} (none exists)")
    assert "$HOME/.dockercfg: skipped: HOME is not set; a systemd service gets no HOME unless " \
           "the unit sets User= or Environment=HOME=" in searched.details


def test_without_home_the_login_to_compare_with_is_the_passwd_home_of_the_user():
    entry = next((e for e in pwd.getpwall() if e.pw_dir not in ("", "/") and not any(
        os.path.exists(os.path.join(e.pw_dir, name)) for name in (".docker", ".dockercfg"))),
        None)
    assert entry is not None, "some passwd entry has a home without docker configs"
    found = check({}, uid=entry.pw_uid)["environment.home"]
    assert f"no docker login under {entry.pw_dir} has credentials" in found.message


def test_the_home_env_wins_over_the_passwd_home(home: Path):
    login = docker_login(home / ".docker" / "config.json", HOST)
    found = check({"HOME": str(home)}, [service("cri-dockerd", 7, {})],
                  uid=NO_SUCH_UID)["environment.home"]
    assert str(login) in found.message


def test_a_login_for_another_registry_is_nothing_to_lose(home: Path):
    docker_login(home / ".docker" / "config.json", "other.example.com")
    found = check({"HOME": str(home)}, [service("cri-dockerd", 7, {})])["environment.home"]
    assert found.status == OK
    assert "nothing is lost" in found.message


# -- environment.docker-config --------------------------------------------------------------------

def test_the_first_file_that_parses_hides_a_later_one_with_the_entry(home: Path):
    # the kubelet's keyring stops at the first file that parses
    first = docker_login(home / ".docker" / "config.json", "other.example.com")
    later = docker_login(home / ".dockercfg", HOST, legacy=True)
    found = check({"HOME": str(home)})["environment.docker-config"]
    assert found.status == WARN
    assert found.message == (
        "the kubelet's keyring reads only the first docker config file that parses, "
        f"{first}, which has nothing for {HOST}; {later} has an entry but is never read")
    assert found.fix == f"merge the {HOST} entry into {first}"
    assert f"{first}: no entry for {HOST}" in found.details


def test_a_first_file_with_the_entry_is_ok(home: Path):
    login = docker_login(home / ".docker" / "config.json", HOST)
    docker_login(home / ".dockercfg", HOST, legacy=True)
    found = check({"HOME": str(home)})["environment.docker-config"]
    assert found.status == OK
    assert found.message == (f"{login} has credentials for {HOST} (the kubelet's keyring and "
                             "cri-dockerd would use it)")


def test_a_file_that_does_not_parse_is_passed_over_as_the_kubelet_does(home: Path):
    broken = home / ".docker" / "config.json"
    broken.parent.mkdir()
    broken.write_text("{not json")
    login = docker_login(home / ".dockercfg", HOST, legacy=True)
    found = check({"HOME": str(home)})["environment.docker-config"]
    assert found.status == OK
    assert str(login) in found.message
    assert any(d.startswith(f"{broken}: invalid") for d in found.details)


def test_no_file_with_the_entry_is_ok_and_says_so(home: Path):
    docker_login(home / ".docker" / "config.json", "other.example.com")
    found = check({"HOME": str(home)})["environment.docker-config"]
    assert found.status == OK
    assert found.message == f"no docker config file the kubelet reads has credentials for {HOST}"


# -- the process table ----------------------------------------------------------------------------

def fake_process(proc: Path, pid: str, comm: str | None, cmdline: list[str] | None = None,
                 environ: dict[str, str] | None = None) -> None:
    base = proc / pid
    base.mkdir(parents=True)
    if comm is not None:
        (base / "comm").write_text(comm + "\n")
    if cmdline is not None:
        (base / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in cmdline))
    if environ is not None:
        (base / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0"
                                                for k, v in environ.items()))


def test_processes_reads_the_services_command_line_and_environment(tmp_path: Path):
    proc = tmp_path / "proc"
    fake_process(proc, "5894", "cri-dockerd", ["/usr/bin/cri-dockerd", "--network-plugin=cni"],
                 {"PATH": "/usr/bin", "NOTIFY_SOCKET": "/run/systemd/notify", "EMPTY": "",
                  "EQ": "a=b"})
    fake_process(proc, "812", "kubelet", ["/usr/bin/kubelet", "--image-credential-provider-config",
                                          "/etc/k.yaml"])  # environ unreadable: not root
    fake_process(proc, "17", "bash", ["-bash"], {"HOME": "/root"})
    fake_process(proc, "23", None)  # gone between the listing and the read
    (proc / "self").mkdir()
    (proc / "uptime").write_text("1 1\n")
    uid = os.stat(proc).st_uid
    assert processes(str(proc)) == [
        Process(812, "kubelet", ["/usr/bin/kubelet", "--image-credential-provider-config",
                                 "/etc/k.yaml"], None, uid),
        Process(5894, "cri-dockerd", ["/usr/bin/cri-dockerd", "--network-plugin=cni"],
                {"PATH": "/usr/bin", "NOTIFY_SOCKET": "/run/systemd/notify", "EMPTY": "",
                 "EQ": "a=b"}, uid),
    ]


def test_processes_can_be_asked_for_other_names(tmp_path: Path):
    proc = tmp_path / "proc"
    fake_process(proc, "17", "bash", ["-bash"], {})
    assert [p.pid for p in processes(str(proc), names=("bash",))] == [17]


def test_processes_without_a_proc_tree_is_empty(tmp_path: Path):
    assert processes(str(tmp_path / "absent")) == []
