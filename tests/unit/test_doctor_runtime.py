"""The runtime's side of the doctor: containerd's config and registry route, the CRI, and the
image present (and for the sandbox image, pinned), with a fake runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecrcred.containerd_config import ContainerdConfig
from ecrcred.containerd_routes import RegistryHosts, registry_hosts
from ecrcred.cri.client import PINNED_LABEL, PINNED_VALUE, ImageInfo, RuntimeVersion
from ecrcred.doctor.report import FAIL, OK, SKIP, WARN, Check
from ecrcred.doctor.runtime import check_containerd_config, check_runtime, load_containerd_config
from ecrcred.errors import RuntimeServiceError
from ecrcred.settings import Setting
from tests.unit.fakes import FakeRuntime

ENDPOINT = "unix:///run/containerd/containerd.sock"
SANDBOX = "123456789012.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.9"
APP = "registry.example.com/team/app:1.0"
CONTAINERD_16 = RuntimeVersion("containerd", "1.6.20", "v1")
CRI_DOCKERD = RuntimeVersion("docker", "24.0.7", "v1")


def info(pinned: bool = False) -> ImageInfo:
    return ImageInfo("sha256:" + "0123456789abcdef" * 4, (SANDBOX,), (), 300_000, pinned)


def unreachable() -> RuntimeServiceError:
    return RuntimeServiceError(
        f"cannot reach the container runtime at {ENDPOINT} to ask its version (socket "
        "/run/containerd/containerd.sock does not exist)", hint="is containerd running?",
        code="RUNTIME_UNREACHABLE")


def unsupported() -> RuntimeServiceError:
    return RuntimeServiceError("the runtime does not implement what is needed",
                               hint="use --no-pin on other runtimes", code="RUNTIME_UNSUPPORTED")


def run(runtime: FakeRuntime, image: str = SANDBOX,
        sandbox: str | None = SANDBOX) -> dict[str, Check]:
    checks, _ = check_runtime(runtime, ENDPOINT, image, sandbox)
    return {c.id: c for c in checks}


def statuses(checks: dict[str, Check]) -> dict[str, str]:
    return {i: c.status for i, c in checks.items()}


# -- the CRI and the image ------------------------------------------------------------------------

def test_an_unreachable_cri_fails_and_skips_the_image_check_that_needs_it():
    for image, sandbox, dependent in ((SANDBOX, SANDBOX, "runtime.sandbox-image"),
                                      (APP, None, "runtime.image")):
        checks, version = check_runtime(FakeRuntime(unreachable()), ENDPOINT, image, sandbox)
        assert version is None
        assert [(c.id, c.status) for c in checks] == [("runtime.cri", FAIL), (dependent, SKIP)]
        assert checks[0].message == unreachable().message
        assert checks[0].fix == "is containerd running?"
        assert checks[1].message == "the CRI is not reachable (runtime.cri)"


def test_a_reachable_cri_names_the_runtime_version_and_endpoint():
    runtime = FakeRuntime(images={SANDBOX: info(pinned=True)})
    checks, version = check_runtime(runtime, ENDPOINT, SANDBOX, SANDBOX)
    assert version == CONTAINERD_16
    assert checks[0] == Check("runtime.cri", OK, f"containerd 1.6.20 (CRI v1) at {ENDPOINT}")


def test_an_absent_sandbox_image_fails_and_says_to_run_pull_sandbox():
    checks = run(FakeRuntime())
    assert statuses(checks) == {"runtime.cri": OK, "runtime.sandbox-image": FAIL}
    check = checks["runtime.sandbox-image"]
    assert f"the sandbox image {SANDBOX} is not on this node" in check.message
    assert ("the runtime pulls it itself for every new pod, without credentials"
            in check.message)
    assert "a new pod cannot start: 401 until someone pulls it by hand" in check.message
    assert check.fix.startswith("run 'ecrcred pull-sandbox'")
    assert "ecrcred-sandbox-watch.service" in check.fix


def test_a_sandbox_image_the_cri_reports_pinned_is_ok():
    checks = run(FakeRuntime(images={SANDBOX: info(pinned=True)}))
    assert statuses(checks) == {"runtime.cri": OK, "runtime.sandbox-image": OK}
    assert "(the CRI reports it pinned)" in checks["runtime.sandbox-image"].message


def test_a_label_only_pin_warns_naming_the_runtime_version():
    runtime = FakeRuntime(images={SANDBOX: info(pinned=False)},
                          labels={SANDBOX: {PINNED_LABEL: PINNED_VALUE}})
    checks = run(runtime)
    check = checks["runtime.sandbox-image"]
    assert check.status == WARN
    assert f"label {PINNED_LABEL}={PINNED_VALUE}, but containerd 1.6.20 does not report" in (
        check.message)
    assert "(containerd < 1.6.25 / 1.7.10)" in check.message
    assert "ecrcred-sandbox-watch.service" in check.fix


@pytest.mark.parametrize("labels", [
    pytest.param({}, id="no-labels"),
    pytest.param({PINNED_LABEL: "unpinned"}, id="other-value"),
    pytest.param({"io.cri-containerd.image": "managed"}, id="other-label"),
])
def test_a_sandbox_image_without_a_pin_warns_that_gc_may_delete_it(labels: dict[str, str]):
    checks = run(FakeRuntime(images={SANDBOX: info()}, labels={SANDBOX: labels}))
    check = checks["runtime.sandbox-image"]
    assert check.status == WARN
    assert "present but not pinned: the kubelet's image GC may delete it" in check.message
    assert "it pins it" in check.fix


@pytest.mark.parametrize(("present", "state"), [
    (True, "is present (sha256:0123456789ab)"),
    (False, "is not present (the kubelet pulls it)"),
])
def test_an_image_that_is_not_the_sandbox_is_ok_present_or_not(present: bool, state: str):
    runtime = FakeRuntime(images={APP: info()} if present else {})
    checks = run(runtime, APP, sandbox=None)
    assert statuses(checks) == {"runtime.cri": OK, "runtime.image": OK}
    assert checks["runtime.image"].message == f"{APP} {state}"


def test_the_image_is_asked_for_by_its_normalized_name():
    runtime = FakeRuntime(images={"docker.io/library/pause:3.9": info(pinned=True)})
    checks = run(runtime, "pause:3.9", "pause:3.9")
    assert runtime.asked == ["docker.io/library/pause:3.9"]
    assert checks["runtime.sandbox-image"].status == OK


def test_a_failing_image_status_fails_the_image_check():
    error = RuntimeServiceError("container runtime failed to get the status", hint="check logs")
    checks = run(FakeRuntime(status_error=error), APP, None)
    assert statuses(checks) == {"runtime.cri": OK, "runtime.image": FAIL}
    assert checks["runtime.image"].message == error.message


def test_an_invalid_image_fails_the_image_check():
    checks = run(FakeRuntime(), "Bad Image", None)
    assert checks["runtime.image"].status == FAIL
    assert "invalid image reference" in checks["runtime.image"].message


@pytest.mark.parametrize(("image", "sandbox", "pinned", "expected"), [
    pytest.param(APP, None, False, OK, id="other-image"),
    pytest.param(SANDBOX, SANDBOX, True, OK, id="sandbox-pinned-by-the-cri"),
    pytest.param(SANDBOX, SANDBOX, False, WARN, id="sandbox-not-pinned"),
])
def test_a_runtime_without_containerds_api_is_judged_by_the_cri_alone(
        image: str, sandbox: str | None, pinned: bool, expected: str):
    # cri-dockerd and CRI-O answer the CRI but not containerd's images API
    runtime = FakeRuntime(CRI_DOCKERD, images={image: info(pinned)}, labels_error=unsupported())
    checks = run(runtime, image, sandbox)
    assert checks["runtime.cri"].message.startswith("docker 24.0.7")
    assert list(statuses(checks).values()) == [OK, expected]


# -- containerd's config and the registry route ---------------------------------------------------

def write(path: Path, text: str) -> Setting:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return Setting(str(path), "flag --containerd-config")


V2 = 'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "' + SANDBOX + '"\n'
REGISTRY = '[plugins."io.containerd.grpc.v1.cri".registry'
ECR_HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"


def config_checks(setting: Setting, host: str = "registry.example.com",
                  image: str = "registry.example.com/team/app"
                  ) -> tuple[dict[str, Check], ContainerdConfig | None, RegistryHosts]:
    checks, config, hosts = check_containerd_config(
        setting, load_containerd_config(setting.value), image, host)
    return {c.id: c for c in checks}, config, hosts


def test_a_missing_containerd_config_skips_both_checks_and_routes_to_the_host(tmp_path: Path):
    setting = Setting(str(tmp_path / "absent.toml"), "default")
    checks, config, hosts = config_checks(setting)
    assert statuses(checks) == {"runtime.containerd-config": SKIP,
                                "runtime.registry-config": SKIP}
    assert f"no containerd config at {setting.value} (from default)" in checks[
        "runtime.containerd-config"].message
    assert config is None
    assert [e.url for e in hosts.endpoints] == ["https://registry.example.com"]


def test_an_invalid_containerd_config_fails_and_skips_the_registry_check(tmp_path: Path):
    checks, config, _ = config_checks(write(tmp_path / "config.toml", "version = [2\n"))
    assert statuses(checks) == {"runtime.containerd-config": FAIL,
                                "runtime.registry-config": SKIP}
    assert "is not valid TOML" in checks["runtime.containerd-config"].message
    assert "containerd config dump" in checks["runtime.containerd-config"].fix
    assert config is None


def test_a_valid_config_names_its_files_and_sandbox_image(tmp_path: Path):
    setting = write(tmp_path / "config.toml", V2)
    checks, config, hosts = config_checks(setting)
    assert checks["runtime.containerd-config"] == Check(
        "runtime.containerd-config", OK, f"{setting.value}: sandbox image {SANDBOX} (from "
        f"{setting.value})")
    assert checks["runtime.registry-config"].status == OK
    assert checks["runtime.registry-config"].message == (
        "pulls of registry.example.com/team/app go https://registry.example.com (no registry "
        "config for this host)")
    assert config is not None and hosts == registry_hosts(config, "registry.example.com")


def test_a_config_without_a_sandbox_image_says_containerd_uses_its_default(tmp_path: Path):
    checks, _, _ = config_checks(write(tmp_path / "config.toml", "version = 2\n"))
    assert "containerd uses its built-in default" in checks["runtime.containerd-config"].message


def test_config_path_beside_registry_mirrors_fails_because_the_cri_plugin_will_not_load(
        tmp_path: Path):
    setting = write(tmp_path / "config.toml",
                    f'{V2}{REGISTRY}]\nconfig_path = "{tmp_path}/certs.d"\n'
                    f'{REGISTRY}.mirrors."docker.io"]\nendpoint = ["https://m.example.com"]\n')
    checks, _, _ = config_checks(setting)
    check = checks["runtime.registry-config"]
    assert check.status == FAIL
    assert "`mirrors` cannot be set when `config_path` is provided" in check.message
    assert "hosts.toml" in check.fix


def test_registry_mirrors_alone_warn_that_ctr_ignores_them(tmp_path: Path):
    setting = write(tmp_path / "config.toml",
                    f'{V2}{REGISTRY}.mirrors."docker.io"]\nendpoint = ["https://m.example.com"]\n')
    checks, _, hosts = config_checks(setting, "docker.io", "docker.io/library/alpine")
    check = checks["runtime.registry-config"]
    assert check.status == WARN
    assert "ctr ignores it (ctr and crictl pull from different places)" in check.message
    assert ("pulls of docker.io/library/alpine go https://m.example.com (mirror) -> "
            "https://registry-1.docker.io") in check.message
    assert "--hosts-dir" in check.fix
    assert [e.url for e in hosts.endpoints] == ["https://m.example.com",
                                                "https://registry-1.docker.io"]


@pytest.mark.parametrize(("host", "why"), [
    pytest.param(ECR_HOST, "an ECR token in it expired 12 hours after it was written", id="ecr"),
    pytest.param("registry.example.com", "they never refresh and ctr ignores them", id="other"),
])
def test_static_registry_configs_auth_warns_and_never_shows_the_password(
        tmp_path: Path, host: str, why: str):
    setting = write(tmp_path / "config.toml",
                    f'{V2}{REGISTRY}.configs."{host}".auth]\nusername = "AWS"\n'
                    'password = "eyJwYXlsb2FkIjoic2VjcmV0In0"\n')
    checks, _, _ = config_checks(setting, host, f"{host}/app")
    check = checks["runtime.registry-config"]
    assert check.status == WARN
    assert why in check.message
    assert f'registry.configs."{host}".auth' in check.message
    assert "pull-sandbox" in check.fix
    assert "eyJwYXlsb2FkIjoic2VjcmV0In0" not in repr(checks)


@pytest.mark.parametrize("text", [
    pytest.param('[host.\n[host."https://mirror.example.com"]\n', id="not-toml"),
    pytest.param('[host."https://mirror.example.com"]\ncapabilities = ["pull", "fly"]\n',
                 id="unknown-capability"),
])
def test_a_hosts_toml_containerd_cannot_decode_warns_and_routes_as_its_fallback(
        tmp_path: Path, text: str):
    # containerd logs "failed to decode hosts.toml" and pulls from the host itself with the
    # directory's certificate files (loadCertFiles): the route doctor then probes
    certs = tmp_path / "certs.d"
    directory = certs / "registry.example.com"
    write(directory / "hosts.toml", text)
    write(directory / "ca.crt", "")
    write(directory / "node.cert", "")
    setting = write(tmp_path / "config.toml", f'{V2}{REGISTRY}]\nconfig_path = "{certs}"\n')
    checks, _, hosts = config_checks(setting)
    check = checks["runtime.registry-config"]
    assert statuses(checks) == {"runtime.containerd-config": OK, "runtime.registry-config": WARN}
    assert check.message.startswith(f"{directory} (hosts.toml ignored: certificates only): "
                                    f"containerd cannot decode {directory}/hosts.toml (")
    assert "pulls go to https://registry.example.com itself" in check.message
    assert [(e.url, e.ca, e.client) for e in hosts.endpoints] == [
        ("https://registry.example.com", (f"{directory}/ca.crt",),
         ((f"{directory}/node.cert", ""),))]


def test_a_hosts_toml_route_is_ok_and_detailed_per_endpoint(tmp_path: Path):
    certs = tmp_path / "certs.d"
    write(certs / "registry.example.com" / "hosts.toml",
          '[host."https://mirror.example.com"]\ncapabilities = ["pull", "resolve"]\n'
          'ca = ["/etc/ssl/m.pem"]\nskip_verify = true\n')
    setting = write(tmp_path / "config.toml", f'{V2}{REGISTRY}]\nconfig_path = "{certs}"\n')
    checks, _, hosts = config_checks(setting)
    check = checks["runtime.registry-config"]
    assert check.status == OK
    assert "go https://mirror.example.com (mirror) -> https://registry.example.com" in (
        check.message)
    assert check.details == (
        "https://mirror.example.com: capabilities pull, resolve; ca /etc/ssl/m.pem; skip_verify",
        "https://registry.example.com: capabilities pull, resolve, push; ca system")
    assert len(hosts.endpoints) == 2


def test_an_unreadable_hosts_toml_fails_the_registry_check_naming_it(tmp_path: Path):
    # containerd fails every pull of the host: "read .../hosts.toml: is a directory"
    certs = tmp_path / "certs.d"
    (certs / "registry.example.com" / "hosts.toml").mkdir(parents=True)
    setting = write(tmp_path / "config.toml", f'{V2}{REGISTRY}]\nconfig_path = "{certs}"\n')
    checks, config, hosts = config_checks(setting)
    assert statuses(checks) == {"runtime.containerd-config": OK, "runtime.registry-config": FAIL}
    assert checks["runtime.registry-config"].message.startswith(
        f"cannot read {certs}/registry.example.com/hosts.toml (not a regular file): containerd "
        "fails every pull from registry.example.com")
    assert config is not None
    assert [e.url for e in hosts.endpoints] == ["https://registry.example.com"]


def test_an_import_containerd_would_not_find_warns_on_the_config(tmp_path: Path):
    drop = tmp_path / "conf.d"
    write(drop / "10.toml", 'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n'
                            'sandbox_image = "x/p:1"\n')
    setting = write(tmp_path / "config.toml", 'imports = ["conf.d/*.toml"]\n' + V2)
    checks, _, _ = config_checks(setting)
    check = checks["runtime.containerd-config"]
    assert check.status == WARN
    assert check.message.startswith(f"{setting.value}: sandbox image {SANDBOX} (from "
                                    f"{setting.value}); imports = [\"conf.d/*.toml\"] in ")
    assert "containerd 1.x globs it from its working directory" in check.message
    assert check.fix == "fix the imports as the note says"


def test_the_config_is_judged_as_it_was_read_once_not_read_again(tmp_path: Path):
    # doctor reads containerd's config once (the CLI takes the sandbox image from that reading)
    setting = write(tmp_path / "config.toml", V2)
    loaded = load_containerd_config(setting.value)
    Path(setting.value).write_text("version = [2\n")  # what a second reading would see
    checks, config, _ = check_containerd_config(setting, loaded, "registry.example.com/team/app",
                                                "registry.example.com")
    assert statuses({c.id: c for c in checks}) == {"runtime.containerd-config": OK,
                                                   "runtime.registry-config": OK}
    assert config is loaded


def test_an_unreadable_config_is_reported_from_the_one_reading(tmp_path: Path):
    setting = write(tmp_path / "config.toml", "version = [2\n")
    loaded = load_containerd_config(setting.value)
    Path(setting.value).write_text(V2)
    checks, config, _ = check_containerd_config(setting, loaded, "registry.example.com/team/app",
                                                "registry.example.com")
    assert checks[0].status == FAIL and "is not valid TOML" in checks[0].message
    assert config is None


@pytest.mark.parametrize("table", [
    'cert_file = "/etc/ssl/node.pem"\nkey_file = "/etc/ssl/node.key"\n',
    "",
])
def test_any_legacy_tls_table_beside_config_path_fails_as_containerd_refuses_it(
        tmp_path: Path, table: str):
    # containerd's ValidatePluginConfig: configs."<host>".tls != nil, whatever the table holds
    certs = tmp_path / "certs.d"
    certs.mkdir()
    setting = write(tmp_path / "config.toml",
                    f'{V2}{REGISTRY}]\nconfig_path = "{certs}"\n'
                    f'{REGISTRY}.configs."mirror.example.com".tls]\n{table}')
    check = config_checks(setting)[0]["runtime.registry-config"]
    assert check.status == FAIL
    assert "`configs.tls` cannot be set when `config_path` is provided" in check.message
    # containerd 2.1 starts on it and ignores the table (measured in tests/e2e/test_doctor.py)
    assert 'containerd 2.x ignores registry.configs."mirror.example.com".tls' in check.message


def test_legacy_tls_with_mirrors_says_containerd_2_ignores_it(tmp_path: Path):
    setting = write(tmp_path / "config.toml",
                    f'{V2}{REGISTRY}.mirrors."registry.example.com"]\n'
                    'endpoint = ["https://mirror.example.com"]\n'
                    f'{REGISTRY}.configs."mirror.example.com".tls]\nca_file = "/etc/ca.pem"\n')
    check = config_checks(setting)[0]["runtime.registry-config"]
    assert check.status == WARN and "deprecated registry.mirrors" in check.message
    assert 'containerd 2.x ignores registry.configs."mirror.example.com".tls' in check.message


def test_client_certificates_are_in_the_route_details(tmp_path: Path):
    certs = tmp_path / "certs.d"
    write(certs / "registry.example.com" / "hosts.toml",
          '[host."https://mirror.example.com"]\ncapabilities = ["pull", "resolve"]\n'
          'client = ["/etc/ssl/both.pem", ["/etc/ssl/c.pem", "/etc/ssl/k.pem"]]\n')
    setting = write(tmp_path / "config.toml", f'{V2}{REGISTRY}]\nconfig_path = "{certs}"\n')
    check = config_checks(setting)[0]["runtime.registry-config"]
    assert check.details[0] == (
        "https://mirror.example.com: capabilities pull, resolve; ca system; client "
        "/etc/ssl/both.pem (certificate and key), /etc/ssl/c.pem + /etc/ssl/k.pem")
