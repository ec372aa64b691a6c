"""``ecrcred doctor`` against the real thing each check is about: a real containerd (1.6.20,
1.7.24 and 2.1.9: each test with a containerd runs once per generation) and its config files,
a real TLS registry that demands credentials (images with an OCI config, an
``application/octet-stream`` config, an OCI index), moto's server as ECR, a real process without
HOME in /proc, and kubelet provider configs with each kind of mistake.

Every run asserts the same contract: a report on stdout (text, or JSON with ``--output json``),
no traceback, no secret anywhere, exit 0 only when no check fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path

import pytest

from ecrcred import containerd_config
from ecrcred.errors import ConfigError
from tests.support.aws import wait_until
from tests.support.containerd import Containerd
from tests.support.processes import Process
from tests.support.registry import OCI_INDEX, OCTET_STREAM, Registry, require
from tests.support.sandbox import static_rule
from tests.support.stack import ECR_HOST, REGISTRY_PASSWORD, REGISTRY_USER, SANDBOX_IMAGE
from tests.support.tls import encrypt_key, make_ca, make_client_cert
from tests.support.token_registry import TokenRegistry

ROOT = Path(__file__).resolve().parents[2]
LEGACY_IMAGE = f"{ECR_HOST}/legacy/app:1"
# for the configs these tests start containerd on themselves: NRI (on by default in 2.x) would
# listen on the machine's /var/run/nri/nri.sock; a name 1.6 lacks is ignored there
NO_NRI = 'disabled_plugins = ["io.containerd.nri.v1.nri"]\n'
# every test with a containerd runs against each generation (tests/conftest.py)
CONTAINERD_GENERATIONS = ("1.6", "1.7", "2.1")


@pytest.fixture
def node(ecrcred_bin, aws, tmp_path) -> dict[str, object]:
    """What a node has besides containerd: the kubelet's provider config and bin dir (ecrcred
    linked into it, as our packages do), and a unit's environment (no HOME)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ecrcred").symlink_to(ecrcred_bin)
    provider_config = tmp_path / "provider-config.yaml"
    shutil.copy(ROOT / "provider-config.yaml", provider_config)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **aws.env(),
           "ECRCRED_CACHE_DIR": str(tmp_path / "cache")}
    return {"bin_dir": bin_dir, "provider_config": provider_config, "env": env}


def doctor(binary, containerd, node, *args, env=None, output="json", timeout=60):
    argv = [binary, "doctor", "--output", output,
            "--provider-config", str(node["provider_config"]),
            "--provider-bin-dir", str(node["bin_dir"]), "--timeout", "5"]
    if containerd is not None:
        argv += ["--containerd-config", containerd.config_path,
                 "--runtime-endpoint", containerd.endpoint]
    result = subprocess.run([*argv, *args], env=node["env"] if env is None else env,
                            capture_output=True, timeout=timeout, check=False)
    out, err = result.stdout.decode(), result.stderr.decode()
    assert "Traceback" not in out + err, err
    assert REGISTRY_PASSWORD not in out + err
    assert result.returncode in (0, 1), (result.returncode, err)
    report = json.loads(out) if output == "json" else None
    if report is not None:
        assert result.returncode == (1 if report["failed"] else 0)
        assert report["failed"] == any(c["status"] == "fail" for c in report["checks"])
    return result.returncode, report, out, err


def by_id(report) -> dict[str, dict[str, str]]:
    return {c["id"]: c for c in report["checks"]}


def write_hosts(certs_dir: str, host: str, text: str) -> None:
    directory = Path(certs_dir) / host
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.toml").write_text(text)


# -- the whole path ------------------------------------------------------------------------------

def test_a_healthy_node_passes_and_says_where_each_answer_came_from(
        ecrcred_bin, containerd, node, aws):
    pulled = subprocess.run([ecrcred_bin, "pull-sandbox", "--containerd-config",
                             containerd.config_path, "--runtime-endpoint", containerd.endpoint],
                            env=node["env"], capture_output=True, timeout=60, check=False)
    assert pulled.returncode == 0, pulled.stderr.decode()
    code, report, _, _ = doctor(ecrcred_bin, containerd, node)
    checks = by_id(report)
    assert code == 0, checks
    assert report["image"] == SANDBOX_IMAGE
    assert report["imageOrigin"] == f"the sandbox image of {containerd.config_path}"
    not_ok = {i: c["status"] for i, c in checks.items() if c["status"] != "ok"}
    version = containerd.runtime.version
    if containerd.runtime.pins_sandbox:
        # 1.7.24 and 2.1 honour the label: the CRI itself reports the image pinned
        assert not_ok == {}, checks
        assert "(the CRI reports it pinned)" in checks["runtime.sandbox-image"]["message"]
    else:
        # containerd 1.6.20 predates label pins in the CRI: the pin is there, but only
        # ecrcred's watch protects it; that is a warning that names the version.
        assert not_ok == {"runtime.sandbox-image": "warn"}, checks
        assert version in checks["runtime.sandbox-image"]["message"]
    assert "account 123456789012, region us-west-2" in checks["credentials.rule"]["message"]
    assert "hit: cached token fresh until" in checks["credentials.token"]["message"]
    assert f"containerd {version}" in checks["runtime.cri"]["message"]
    assert "(mirror)" in checks["runtime.registry-config"]["message"]
    assert "Basic auth accepted as AWS" in checks["registry.auth"]["message"]
    assert "an OCI manifest" in checks["registry.manifest"]["message"]
    assert "application/vnd.oci.image.config.v1+json" in checks["registry.media-types"]["message"]
    assert "never asks providers for the sandbox image" in checks["kubelet.match"]["message"]
    # pull-sandbox fetched the token; doctor only read it from the shared cache.
    assert aws.calls("GetAuthorizationToken") == 1


def test_the_text_report_is_one_line_per_check_with_the_fix(ecrcred_bin, containerd, node):
    code, _, out, _ = doctor(ecrcred_bin, containerd, node, output="text")
    lines = out.splitlines()
    assert lines[0] == f"ecrcred doctor: {SANDBOX_IMAGE} (the sandbox image of " \
                       f"{containerd.config_path})"
    assert lines[-1].endswith("skipped")
    statuses = [line.split()[0] for line in lines[1:-1]]
    assert set(statuses) <= {"OK", "WARN", "FAIL", "SKIP"}, lines
    failing = [line for line in lines if line.startswith("FAIL")]
    assert code == 1 and failing, lines
    assert all("; fix: " in line for line in failing), failing


def test_a_missing_sandbox_image_fails_with_the_command_that_fixes_it(
        ecrcred_bin, containerd, node):
    code, report, _, _ = doctor(ecrcred_bin, containerd, node)
    checks = by_id(report)
    assert code == 1
    assert checks["runtime.sandbox-image"]["status"] == "fail"
    assert "ecrcred pull-sandbox" in checks["runtime.sandbox-image"]["fix"]
    # Everything upstream of the node works: the registry serves the image with our token.
    assert checks["registry.auth"]["status"] == "ok"
    assert checks["registry.manifest"]["status"] == "ok"


# -- media types (old application/octet-stream configs) --------------------------------------

def test_an_octet_stream_config_is_judged_as_this_containerds_real_pull_goes(
        ecrcred_bin, containerd, registry, node):
    registry.push_test_image("legacy/app", "1", config_media_type=OCTET_STREAM,
                             manifest_format="docker")
    code, report, _, _ = doctor(ecrcred_bin, containerd, node, "--image", LEGACY_IMAGE,
                                "--skip", "kubelet")
    media = by_id(report)["registry.media-types"]
    assert "application/octet-stream" in media["message"]
    assert f"this node runs containerd {containerd.runtime.version}" in media["message"]
    pulled = subprocess.run([ecrcred_bin, "pull-sandbox", "--image", LEGACY_IMAGE, "--no-pin",
                             "--runtime-endpoint", containerd.endpoint],
                            env=node["env"], capture_output=True, timeout=60, check=False)
    generation = containerd.runtime.name
    if generation == "2.1":
        # Measured: 2.1 unpacks it (the pull succeeds), and doctor says so.
        assert pulled.returncode == 0, pulled.stderr.decode()
        assert media["status"] == "ok", media
        return
    # The ground for the verdict: this containerd's CRI really cannot unpack it, with the
    # "content digest ... not found" error containerd 1.4.3 gives; 1.7.24 fails the same way.
    assert pulled.returncode == 7
    assert "failed to get reader from content store: content digest" in pulled.stderr.decode()
    assert code == 1, report
    assert media["status"] == "fail"
    assert "1.4.3" in media["message"]
    assert "skopeo copy --format oci" in media["fix"]


def test_an_oci_index_is_resolved_to_the_nodes_platform(ecrcred_bin, containerd, registry, node):
    digest = registry.push_test_image("multi/app", "single")
    _, _, body = registry.request(f"/v2/multi/app/manifests/{digest}",
                                  headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    index = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
             "size": len(body), "platform": {"os": "linux", "architecture": "amd64"}},
        ]}).encode()
    registry.request("/v2/multi/app/manifests/1", method="PUT", data=index,
                     headers={"Content-Type": OCI_INDEX})
    _, report, _, _ = doctor(ecrcred_bin, containerd, node, "--image",
                             f"{ECR_HOST}/multi/app:1", "--skip", "kubelet")
    manifest = by_id(report)["registry.manifest"]
    assert manifest["status"] == "ok", report
    assert "an OCI image index; linux/amd64 is " + digest in manifest["message"]
    assert by_id(report)["registry.media-types"]["status"] == "ok"


# -- the registry's answers --------------------------------------------------------------------

def test_refused_credentials_fail_naming_the_source_not_the_secret(
        ecrcred_bin, containerd, registry, node, tmp_path):
    host = "registry.corp.example"
    write_hosts(containerd.certs_dir, host, f"""\
server = "https://127.0.0.1:1"
[host."https://{registry.host}"]
  capabilities = ["pull", "resolve"]
  ca = ["{registry.cert_path}"]
""")
    env = {**node["env"], **static_rule(tmp_path, [host], "not-the-password")}
    code, report, out, err = doctor(ecrcred_bin, containerd, node, "--image",
                                    f"{host}/eks/pause:3.9", "--skip", "kubelet", env=env)
    auth = by_id(report)["registry.auth"]
    assert code == 1
    assert auth["status"] == "fail"
    assert "401" in auth["message"] and "credentials were refused" in auth["message"]
    assert f"user {REGISTRY_USER}" in auth["fix"] or str(tmp_path) in auth["fix"]
    assert "not-the-password" not in out + err


def test_a_missing_tag_fails_as_a_manifest_not_an_auth_problem(ecrcred_bin, containerd, node):
    code, report, _, _ = doctor(ecrcred_bin, containerd, node, "--image",
                                f"{ECR_HOST}/eks/pause:no-such-tag", "--skip", "kubelet")
    checks = by_id(report)
    assert code == 1
    assert checks["registry.auth"]["status"] == "ok" if "registry.auth" in checks else True
    assert checks["registry.manifest"]["status"] == "fail"
    assert "404" in checks["registry.manifest"]["message"]


def test_a_docker_hub_mirror_without_library_paths_is_named_as_the_cause(
        ecrcred_bin, containerd, registry, node, tmp_path):
    # The mirror serves eks/pause but not Docker Hub's library/ namespace.
    write_hosts(containerd.certs_dir, "docker.io", f"""\
server = "https://127.0.0.1:1"
[host."https://{registry.host}"]
  capabilities = ["pull", "resolve"]
  ca = ["{registry.cert_path}"]
""")
    env = {**node["env"], **static_rule(tmp_path, ["docker.io"], REGISTRY_PASSWORD)}
    code, report, _, _ = doctor(ecrcred_bin, containerd, node, "--image", "pause:3.9",
                                "--skip", "kubelet", env=env)
    manifest = by_id(report)["registry.manifest"]
    assert code == 1
    assert report["image"] == "pause:3.9"
    assert "/v2/library/pause/manifests/3.9?ns=docker.io" in " ".join(manifest["details"])
    assert "library/ paths" in manifest["fix"] and "library/busybox" in manifest["fix"]


def test_a_mirror_without_its_ca_is_a_tls_failure_with_the_hosts_toml_fix(
        ecrcred_bin, containerd, registry, node):
    host = "noca.corp.example"
    write_hosts(containerd.certs_dir, host, f"""\
server = "https://127.0.0.1:1"
[host."https://{registry.host}"]
  capabilities = ["pull", "resolve"]
""")
    code, report, _, _ = doctor(ecrcred_bin, containerd, node, "--image",
                                f"{host}/eks/pause:3.9", "--skip", "kubelet",
                                "--skip", "credentials")
    endpoint = by_id(report)["registry.endpoint"]
    assert code == 1
    assert endpoint["status"] == "fail"
    assert "certificate not trusted" in endpoint["message"]
    assert "ca = [" in endpoint["fix"] and "hosts.toml" in endpoint["fix"]


# -- Bearer token auth, as Docker Hub and most hosted registries ---------------------------------

@pytest.fixture(scope="module")
def token_registry(tmp_path_factory) -> TokenRegistry:
    reg = TokenRegistry(tmp_path_factory.mktemp("treg"), username=REGISTRY_USER,
                        password="token-registry-password")
    try:
        reg.push_test_image("team/app", "1")
        yield reg
    finally:
        reg.stop()


@pytest.mark.parametrize("password", ["token-registry-password", "not-the-password"])
def test_bearer_auth_goes_through_the_token_realm_with_our_credentials(
        ecrcred_bin, containerd, token_registry, node, tmp_path, password):
    host = "hub.corp.example"
    write_hosts(containerd.certs_dir, host, f"""server = "https://127.0.0.1:1"
[host."https://{token_registry.host}"]
  capabilities = ["pull", "resolve"]
  ca = ["{token_registry.cert_path}"]
""")
    env = {**node["env"], **static_rule(tmp_path, [host], password)}
    image = f"{host}/team/app:1"
    asked = len(token_registry.token_server.requests)
    code, report, out, err = doctor(ecrcred_bin, containerd, node, "--image", image,
                                    "--skip", "kubelet", env=env)
    checks = by_id(report)
    assert password not in out + err
    scopes = [r["scope"] for r in token_registry.token_server.requests[asked:]]
    assert "repository:team/app:pull" in scopes
    if password == "not-the-password":
        assert checks["registry.auth"]["status"] == "fail"
        assert "token service answered HTTP 401" in checks["registry.auth"]["message"]
        return
    assert checks["registry.auth"]["status"] == "ok", checks
    assert checks["registry.auth"]["message"].startswith("Bearer auth accepted as AWS")
    assert checks["registry.manifest"]["status"] == "ok"
    # containerd itself takes the same path with the credentials pull-sandbox hands it.
    pulled = subprocess.run([ecrcred_bin, "pull-sandbox", "--image", image, "--no-pin",
                             "--runtime-endpoint", containerd.endpoint],
                            env=env, capture_output=True, timeout=60, check=False)
    assert pulled.returncode == 0, pulled.stderr.decode()
    assert code == 0, checks


# -- a registry that demands a client certificate (mutual TLS) ---------------------------------

MTLS_HOST = "mtls.corp.example"


@pytest.fixture(scope="module")
def mtls_registry(tmp_path_factory) -> Registry:
    reg = Registry(tmp_path_factory.mktemp("mreg"), username=REGISTRY_USER,
                   password=REGISTRY_PASSWORD, client_certificates=True)
    try:
        reg.push_test_image("eks/pause", "3.9")
        yield reg
    finally:
        reg.stop()


def write_mtls_hosts(containerd, registry: Registry, client_line: str) -> None:
    write_hosts(containerd.certs_dir, MTLS_HOST, f"""\
server = "https://127.0.0.1:1"
[host."https://{registry.host}"]
  capabilities = ["pull", "resolve"]
  ca = ["{registry.cert_path}"]
{client_line}""")


def pull(ecrcred_bin, containerd, image, env,
         timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """The real containerd's CRI pull of ``image``, with the credentials ecrcred resolves;
    pull-sandbox retries for ``timeout`` seconds and logs containerd's error for each try."""
    return subprocess.run([ecrcred_bin, "pull-sandbox", "--image", image, "--no-pin",
                           "--runtime-endpoint", containerd.endpoint, "--timeout", str(timeout)],
                          env=env, capture_output=True, timeout=timeout + 30, check=False)


@pytest.mark.parametrize("shape", ["pair", "combined-file", "relative-pair"])
def test_a_registry_demanding_a_client_certificate_is_reached_with_the_hosts_toml_client(
        ecrcred_bin, containerd, mtls_registry, node, tmp_path, shape):
    client = mtls_registry.client
    assert client is not None
    if shape == "relative-pair":  # relative to the host directory, as containerd reads it
        host_dir = Path(containerd.certs_dir) / MTLS_HOST
        host_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(client.cert, host_dir / "node.pem")
        shutil.copy(client.key, host_dir / "node.key")
    line = {"pair": f'  client = [["{client.cert}", "{client.key}"]]\n',
            "combined-file": f'  client = "{client.combined}"\n',
            "relative-pair": '  client = [["node.pem", "node.key"]]\n'}[shape]
    write_mtls_hosts(containerd, mtls_registry, line)
    env = {**node["env"], **static_rule(tmp_path, [MTLS_HOST], REGISTRY_PASSWORD)}
    image = f"{MTLS_HOST}/eks/pause:3.9"
    code, report, _, _ = doctor(ecrcred_bin, containerd, node, "--image", image,
                                "--skip", "kubelet", env=env)
    checks = by_id(report)
    assert checks["registry.endpoint"]["status"] == "ok", checks
    assert checks["registry.endpoint"]["message"].startswith(f"https://{mtls_registry.host} "
                                                             "served")
    assert checks["registry.manifest"]["status"] == "ok", checks
    assert "client " in " ".join(checks["runtime.registry-config"]["details"])
    # containerd 1.6.20 reads the same hosts.toml the same way: its pull goes through.
    pulled = pull(ecrcred_bin, containerd, image, env)
    assert pulled.returncode == 0, pulled.stderr.decode()
    assert code == 0, checks


@pytest.mark.parametrize("case", ["none", "another-ca"])
def test_a_refused_client_certificate_is_named_with_the_client_fix(
        ecrcred_bin, containerd, mtls_registry, node, tmp_path, case):
    line, said = "", "the registry wants a client certificate and none is configured"
    if case == "another-ca":
        # Go refuses it after a TLS 1.3 handshake, usually with a reset that hides its alert
        stranger = make_client_cert(tmp_path, "stranger", make_ca(tmp_path, "other-ca"))
        line = f'  client = [["{stranger.cert}", "{stranger.key}"]]\n'
        said = "the registry refused the client certificate"
    write_mtls_hosts(containerd, mtls_registry, line)
    env = {**node["env"], **static_rule(tmp_path, [MTLS_HOST], REGISTRY_PASSWORD)}
    image = f"{MTLS_HOST}/eks/pause:3.9"
    code, report, _, _ = doctor(ecrcred_bin, containerd, node, "--image", image,
                                "--skip", "kubelet", env=env)
    endpoint = by_id(report)["registry.endpoint"]
    assert code == 1
    assert endpoint["status"] == "fail"
    # the mirror's refusal, not the dead upstream's "connection refused", is the verdict
    assert endpoint["message"].startswith(
        f"TLS to https://{mtls_registry.host} failed: {said}"), endpoint
    assert "(all 2 endpoints failed; -v shows each)" in endpoint["message"]
    assert 'client = [["cert.pem", "key.pem"]]' in endpoint["fix"]
    assert "hosts.toml" in endpoint["fix"]
    pulled = pull(ecrcred_bin, containerd, image, env, timeout=3)
    assert pulled.returncode != 0, "containerd cannot pull with it either"
    if case == "none":
        assert "bad certificate" in pulled.stderr.decode(), pulled.stderr.decode()


@pytest.mark.parametrize("case", ["missing-file", "two-strings", "encrypted-key"])
def test_a_client_certificate_containerd_cannot_load_fails_naming_it_as_the_pull_fails(
        ecrcred_bin, containerd, mtls_registry, node, tmp_path, case):
    client = mtls_registry.client
    assert client is not None
    missing = str(tmp_path / "no-such" / "node.pem")
    if case == "missing-file":
        line, named, why = (f'  client = [["{missing}", "{client.key}"]]\n', missing,
                            "No such file or directory")
    elif case == "encrypted-key":
        # containerd cannot decrypt it; doctor must not ask for its passphrase either
        encrypted = encrypt_key(client, tmp_path / "encrypted", "pkcs8")
        line, named, why = (f'  client = [["{client.cert}", "{encrypted.key}"]]\n',
                            encrypted.key, "the private key is encrypted (it needs a passphrase)")
    else:
        # client = ["cert", "key"] is two files that each hold a certificate and its key to
        # containerd, not a pair
        line, named, why = (f'  client = ["{client.cert}", "{client.key}"]\n', client.cert,
                            "not a PEM file holding both a certificate and its private key")
    write_mtls_hosts(containerd, mtls_registry, line)
    env = {**node["env"], **static_rule(tmp_path, [MTLS_HOST], REGISTRY_PASSWORD)}
    image = f"{MTLS_HOST}/eks/pause:3.9"
    code, report, _, _ = doctor(ecrcred_bin, containerd, node, "--image", image,
                                "--skip", "kubelet", env=env)
    endpoint = by_id(report)["registry.endpoint"]
    assert code == 1
    assert endpoint["status"] == "fail"
    assert endpoint["message"].startswith(
        f"client certificate {named} for https://{mtls_registry.host} cannot be used: {why}")
    assert f"containerd fails every pull from {MTLS_HOST}" in endpoint["message"]
    pulled = pull(ecrcred_bin, containerd, image, env, timeout=3)
    assert pulled.returncode != 0
    said = pulled.stderr.decode()
    assert ("unable to read CERT file" if case == "missing-file" else
            "failed to load X509 key pair") in said, said


# -- containerd's registry config (deprecated mirrors ctr ignores) -----------------------------

def _legacy_config(tmp_path: Path, registry, *, with_config_path: bool) -> Path:
    config = tmp_path / "containerd-legacy.toml"
    config_path = (f'  [plugins."io.containerd.grpc.v1.cri".registry]\n'
                   f'    config_path = "{tmp_path}/certs.d"\n') if with_config_path else ""
    config.write_text(f"""\
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{SANDBOX_IMAGE}"
{config_path}\
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{ECR_HOST}"]
    endpoint = ["https://{registry.host}"]
  [plugins."io.containerd.grpc.v1.cri".registry.configs."{registry.host}".tls]
    ca_file = "{registry.cert_path}"
""")
    return config


def test_the_deprecated_mirrors_form_is_followed_and_warned_about(
        ecrcred_bin, registry, node, tmp_path):
    config = _legacy_config(tmp_path, registry, with_config_path=False)
    code, report, _, _ = doctor(ecrcred_bin, None, node, "--containerd-config", str(config),
                                "--skip", "runtime")
    # --skip runtime leaves out the config checks too; ask for them with the runtime gone.
    checks = by_id(report)
    assert checks["registry.endpoint"]["status"] == "ok", checks
    assert registry.host in checks["registry.endpoint"]["message"]
    assert code == 0
    code, report, _, _ = doctor(ecrcred_bin, None, node, "--containerd-config", str(config),
                                "--runtime-endpoint", f"unix://{tmp_path}/none.sock",
                                "--skip", "registry")
    config_check = by_id(report)["runtime.registry-config"]
    assert config_check["status"] == "warn"
    assert "deprecated registry.mirrors" in config_check["message"]
    assert "ctr ignores it" in config_check["message"]


def test_the_legacy_wildcard_mirror_is_the_route_containerd_pulls_through(
        ecrcred_bin, registry, pause_image, node, tmp_path, containerd_runtime):
    # registry.mirrors."*" stands in for every host without a mirrors entry of its own: a host
    # that resolves nowhere is pulled from the local registry by containerd 1.6.20's and
    # 1.7.24's CRI, and doctor follows the same endpoint. containerd 2.1 (in its version 3
    # table) still follows the mirror but ignores registry.configs.tls: its pull fails TLS, and
    # doctor's route check says why.
    legacy_tls_ignored = containerd_runtime.major_minor >= (2, 0)
    host = "wild.corp.example"
    image = f"{host}/eks/pause:3.9"
    workdir = Path(tempfile.mkdtemp(prefix="ecd-", dir="/tmp"))
    table = containerd_runtime.registry_table
    wildcard = f"""\
  [{table}.mirrors."*"]
    endpoint = ["{registry.url}"]
  [{table}.configs."{registry.host}".tls]
    ca_file = "{registry.cert_path}"
"""
    try:
        cd = Containerd(workdir, SANDBOX_IMAGE, config_path=False, extra_config=wildcard,
                        runtime=containerd_runtime)
        try:
            env = {**node["env"], **static_rule(tmp_path, [host], REGISTRY_PASSWORD)}
            pulled = subprocess.run([ecrcred_bin, "pull-sandbox", "--image", image, "--no-pin",
                                     "--runtime-endpoint", cd.endpoint, "--timeout",
                                     "5" if legacy_tls_ignored else "30"],
                                    env=env, capture_output=True, timeout=60, check=False)
            if legacy_tls_ignored:
                said = pulled.stderr.decode()
                assert pulled.returncode != 0 and "x509" in said, said
            else:
                assert pulled.returncode == 0, pulled.stderr.decode()
            code, report, _, _ = doctor(ecrcred_bin, cd, node, "--image", image,
                                        "--skip", "kubelet", env=env)
        finally:
            leftover = cd.stop()
        assert not leftover
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    checks = by_id(report)
    route = checks["runtime.registry-config"]
    assert route["status"] == "warn", route  # the deprecated form, which ctr ignores
    assert f"go {registry.url} (mirror) -> https://{host}" in route["message"]
    assert f'containerd 2.x ignores registry.configs."{registry.host}".tls' in route["message"]
    if legacy_tls_ignored:
        return  # doctor's endpoint check still uses that CA (it reads 1.x's tables)
    endpoint = checks["registry.endpoint"]
    assert endpoint["status"] == "ok", checks
    assert endpoint["message"].startswith(f"{registry.url} served {image}")
    assert f'registry.mirrors."*" in {cd.config_path}' in endpoint["message"]
    assert checks["registry.manifest"]["status"] == "ok"
    assert code == 0, checks


def test_mirrors_beside_config_path_fail_as_the_real_containerd_does(
        ecrcred_bin, containerd, registry, node, tmp_path):
    config = _legacy_config(tmp_path, registry, with_config_path=True)
    code, report, _, _ = doctor(ecrcred_bin, None, node, "--containerd-config", str(config),
                                "--runtime-endpoint", containerd.endpoint, "--skip", "registry")
    check = by_id(report)["runtime.registry-config"]
    assert code == 1
    assert check["status"] == "fail"
    assert "`mirrors` cannot be set when `config_path` is provided" in check["message"]
    # The same words from containerd itself, started on that file.
    text = config.read_text().replace(
        "version = 2\n", f'version = 2\nroot = "{tmp_path}/root"\nstate = "{tmp_path}/state"\n'
        f"{NO_NRI}[grpc]\n  address = \"{tmp_path}/c.sock\"\n", 1)
    real = tmp_path / "real.toml"
    real.write_text(text)
    log = tmp_path / "containerd.log"
    process = Process([*containerd.runtime.containerd, "--config", str(real)], str(log))
    try:
        assert wait_until(lambda: "cannot be set when" in log.read_text(errors="replace"),
                          20, 0.1), \
            log.read_text(errors="replace")[-2000:]
    finally:
        process.stop()


def test_legacy_tls_beside_config_path_fails_as_the_real_containerd_does(
        ecrcred_bin, containerd, registry, node, tmp_path):
    config = tmp_path / "containerd-tls.toml"
    config.write_text(f"""\
version = 2
root = "{tmp_path}/root"
state = "{tmp_path}/state"
{NO_NRI}[grpc]
  address = "{tmp_path}/c.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{SANDBOX_IMAGE}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{containerd.certs_dir}"
  [plugins."io.containerd.grpc.v1.cri".registry.configs."{registry.host}".tls]
    ca_file = "{registry.cert_path}"
""")
    code, report, _, _ = doctor(ecrcred_bin, None, node, "--containerd-config", str(config),
                                "--runtime-endpoint", containerd.endpoint, "--skip", "registry")
    check = by_id(report)["runtime.registry-config"]
    assert code == 1 and check["status"] == "fail"
    assert "`configs.tls` cannot be set when `config_path` is provided" in check["message"]
    # containerd 1.x refuses the table; 2.1 migrates the file and drops the key (measured)
    said = ('key="registry configs' if containerd.runtime.major_minor >= (2, 0) else
            "`configs.tls` cannot be set")
    log = tmp_path / "containerd.log"
    process = Process([*containerd.runtime.containerd, "--config", str(config)], str(log))
    try:
        assert wait_until(lambda: said in log.read_text(errors="replace"), 20, 0.1), \
            log.read_text(errors="replace")[-2000:]
    finally:
        process.stop()


def test_a_version_3_config_gives_the_sandbox_image_and_the_hosts_dir(
        ecrcred_bin, containerd, node, tmp_path):
    config = tmp_path / "containerd-v3.toml"
    config.write_text(f"""\
version = 3
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{SANDBOX_IMAGE}"
[plugins."io.containerd.cri.v1.images".registry]
  config_path = "{containerd.certs_dir}"
""")
    code, report, _, _ = doctor(ecrcred_bin, None, node, "--containerd-config", str(config),
                                "--runtime-endpoint", containerd.endpoint, "--skip", "kubelet")
    checks = by_id(report)
    assert report["image"] == SANDBOX_IMAGE
    assert checks["runtime.registry-config"]["status"] == "ok"
    assert checks["registry.manifest"]["status"] == "ok", checks
    assert code == 1 and checks["runtime.sandbox-image"]["status"] == "fail"


# -- containerd's merge of imports, against its own `config dump` ----------------------------

DEFAULT_SANDBOX_16 = "registry.k8s.io/pause:3.6"  # containerd 1.6's when none is configured
CRI = '[plugins."io.containerd.grpc.v1.cri"'
MAIN_16 = f"""\
version = 2
imports = [IMPORTS]
{CRI}]
  sandbox_image = "main.example/pause:1"
{CRI}.registry]
  config_path = "/etc/main-certs.d"
{CRI}.registry.mirrors."docker.io"]
  endpoint = ["https://hub.example"]
"""
MERGE_SHAPES = {
    "wildcard-mirror-only": {"10": f'{CRI}.registry.mirrors."*"]\nendpoint = ["https://c.example"]\n'},
    "another-cri-key-only": {"10": f'{CRI}.cni]\nbin_dir = "/drop/bin"\n'},
    "two-cri-drop-ins": {"10": f'{CRI}]\nsandbox_image = "ten.example/p:1"\n',
                         "20": f'{CRI}.registry]\nconfig_path = "/etc/twenty"\n'},
    "versionless-v2-keys": {"10": f'{CRI}]\nsandbox_image = "drop.example/p:1"\n'},
    "version-1-drop-in": {"10": f'version = 1\n{CRI}]\nsandbox_image = "drop.example/p:1"\n'},
    "another-plugin-only": {"10": '[plugins."io.containerd.internal.v1.opt"]\npath = "/x"\n'},
    "legacy-tls-and-auth": {"10": f'{CRI}.registry.configs."r.example".tls]\nca_file = "/r.pem"\n'
                                  f'{CRI}.registry.configs."a.example".auth]\nusername = "u"\n'},
    "nested-import": {"10": 'imports = ["NESTED"]\n',
                      "nested": f'{CRI}]\nsandbox_image = "nested.example/p:1"\n'},
}


def _config_dump(main: Path) -> subprocess.CompletedProcess[str]:
    """``containerd --config main config dump``, run from / as systemd runs containerd."""
    return subprocess.run([require("containerd")["containerd"], "--config", str(main), "config",
                           "dump"], cwd="/", capture_output=True, text=True, timeout=30,
                          check=False)


def _as_dumped(main: Path) -> dict[str, object]:
    """containerd's own merged view of ``main`` and its imports, in the terms of ``_as_loaded``."""
    done = _config_dump(main)
    assert done.returncode == 0, done.stderr
    dump = tomllib.loads(done.stdout)
    cri = dump["plugins"]["io.containerd.grpc.v1.cri"]
    registry = cri["registry"]
    configs = registry.get("configs", {})
    return {"files": set(dump["imports"]),
            "sandbox_image": cri["sandbox_image"], "config_path": registry["config_path"],
            "mirrors": {h: m["endpoint"] for h, m in registry.get("mirrors", {}).items()},
            "tls": {h: c["tls"]["ca_file"] for h, c in configs.items() if "tls" in c},
            "auth": sorted(h for h, c in configs.items() if any(c.get("auth", {}).values()))}


def _as_loaded(main: Path) -> dict[str, object]:
    """ecrcred's merged view of ``main`` and its imports (containerd_config.load)."""
    config = containerd_config.load(str(main))
    return {"files": set(config.files),
            "sandbox_image": config.sandbox_image.value if config.sandbox_image
            else DEFAULT_SANDBOX_16,
            "config_path": config.config_path.value if config.config_path else "",
            "mirrors": {h: list(x.endpoints) for h, x in config.legacy.items() if x.mirrored},
            "tls": {h: x.ca_file or "" for h, x in config.legacy.items() if x.has_tls},
            "auth": sorted(h for h, x in config.legacy.items() if x.has_auth)}


@pytest.mark.parametrize("shape", [*MERGE_SHAPES, "relative-pattern"])
def test_imports_merge_as_containerd_1_6_dumps_them(tmp_path, shape):
    drop = tmp_path / "conf.d"
    drop.mkdir()
    for name, text in MERGE_SHAPES.get(shape, {"10": MERGE_SHAPES["versionless-v2-keys"]["10"]}
                                       ).items():
        target = tmp_path / "nested.toml" if name == "nested" else drop / f"{name}.toml"
        target.write_text(text.replace("NESTED", str(tmp_path / "nested.toml")))
    pattern = "conf.d/*.toml" if shape == "relative-pattern" else f"{drop}/*.toml"
    main = tmp_path / "config.toml"
    main.write_text(MAIN_16.replace("IMPORTS", f'"{pattern}"'))
    assert _as_loaded(main) == _as_dumped(main)


def test_a_short_plugin_name_stops_containerd_1_6_as_doctor_says(tmp_path):
    drop = tmp_path / "conf.d"
    drop.mkdir()
    (drop / "10.toml").write_text('[plugins.cri]\nsandbox_image = "x.example/p:1"\n')
    main = tmp_path / "config.toml"
    main.write_text(MAIN_16.replace("IMPORTS", f'"{drop}/*.toml"'))
    with pytest.raises(ConfigError) as err:
        containerd_config.load(str(main))
    said = 'invalid plugin key URI "cri" expect io.containerd.x.vx'
    assert said in err.value.message
    done = _config_dump(main)
    assert done.returncode != 0 and said in done.stderr, done.stderr


# -- a hosts.toml containerd cannot decode: its fallback, as the real pull shows ---------------

FALLBACK_HOST = "fallback.corp.example"  # resolves nowhere: only a mirror reaches the registry


@pytest.mark.parametrize("case", ["not-toml", "unknown-capability", "empty", "a-directory"])
def test_a_hosts_toml_containerd_cannot_use_is_followed_to_where_containerd_goes(
        ecrcred_bin, containerd, registry, node, tmp_path, case):
    # containerd 1.6.20 (loadHostDir): a hosts.toml it cannot decode is logged and ignored, an
    # empty one is no hosts.toml: either way the pull goes to the host itself with the
    # directory's *.crt/*.cert/*.key files, and a broken node.cert there fails it before any
    # request. A hosts.toml it cannot read fails the pull by itself.
    directory = Path(containerd.certs_dir) / FALLBACK_HOST
    directory.mkdir()
    mirror = (f'[host."{registry.url}"]\n  capabilities = ["pull", "resolve"]\n'
              f'  ca = ["{registry.cert_path}"]\n')
    hosts_toml = directory / "hosts.toml"
    if case == "a-directory":
        hosts_toml.mkdir()
    else:
        hosts_toml.write_text({"not-toml": "[host.\n" + mirror,
                               "unknown-capability": mirror.replace('"resolve"', '"fly"'),
                               "empty": ""}[case])
    (directory / "node.cert").write_text("not a certificate\n")
    image = f"{FALLBACK_HOST}/eks/pause:3.9"
    env = {**node["env"], **static_rule(tmp_path, [FALLBACK_HOST], REGISTRY_PASSWORD)}
    code, report, _, _ = doctor(ecrcred_bin, containerd, node, "--image", image,
                                "--skip", "kubelet", env=env)
    checks = by_id(report)
    route, endpoint = checks["runtime.registry-config"], checks["registry.endpoint"]
    pulled = pull(ecrcred_bin, containerd, image, env, timeout=3)
    said = pulled.stderr.decode()
    assert code == 1 and pulled.returncode != 0, said
    if case in ("not-toml", "unknown-capability"):
        # 2.1 names the file in the same log line: "failed to decode <dir>/hosts.toml"
        logged = (f"failed to decode {hosts_toml}" if containerd.runtime.major_minor >= (2, 0)
                  else "failed to decode hosts.toml")
        assert logged in containerd.log_tail(200)
    if case == "a-directory":
        assert route["status"] == "fail", checks
        assert route["message"].startswith(f"cannot read {hosts_toml} (not a regular file): "
                                           f"containerd fails every pull from {FALLBACK_HOST}")
        assert f"read {hosts_toml}: is a directory" in said, said
        return
    assert route["status"] == ("ok" if case == "empty" else "warn"), checks
    assert f"go https://{FALLBACK_HOST} (" in route["message"] or (
        f"containerd cannot decode {hosts_toml} (" in route["message"]), route
    assert registry.url not in route["message"], "the mirror is not on containerd's route"
    assert endpoint["status"] == "fail", checks
    assert endpoint["message"].startswith(
        f"client certificate {directory}/node.cert for https://{FALLBACK_HOST} cannot be used")
    assert "failed to load X509 key pair" in said, said


# -- the environment of a systemd service (no HOME) --------------------------------------------

def test_an_emptied_environment_still_gives_a_whole_report(ecrcred_bin, containerd, node):
    code, report, _, _ = doctor(ecrcred_bin, containerd, node, env={})
    checks = by_id(report)
    assert "has no HOME" in checks["environment.home"]["message"]
    steps = " ".join(checks["environment.docker-config"]["details"])
    assert "$HOME/.docker/config.json: skipped: HOME is not set" in steps
    # No AWS credentials in an empty environment: that is the failing check, with its fix.
    assert checks["credentials.token"]["status"] == "fail"
    assert code == 1


def test_a_runtime_service_without_home_misses_the_docker_login(
        ecrcred_bin, registry, node, tmp_path):
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    import base64

    auth = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
    (home / ".docker" / "config.json").write_text(json.dumps(
        {"auths": {registry.host: {"auth": auth}}}))
    # A process named cri-dockerd, started as systemd starts a unit without User=: no HOME.
    fake = tmp_path / "cri-dockerd"
    shutil.copy("/bin/sleep", fake)
    process = Process([str(fake), "60"], str(tmp_path / "fake.log"), env={})
    try:
        env = {**node["env"], "HOME": str(home)}
        _, report, _, _ = doctor(ecrcred_bin, None, node, "--image",
                                 f"{registry.host}/eks/pause:3.9", "--skip", "runtime",
                                 "--skip", "registry", "--skip", "kubelet", env=env)
    finally:
        process.stop()
    check = by_id(report)["environment.home"]
    assert check["status"] == "warn", check
    assert f"cri-dockerd (pid {process.pid})" in check["message"]
    assert str(home / ".docker" / "config.json") in check["message"]
    assert "Environment=HOME=" in check["fix"]


# -- the kubelet's provider config ---------------------------------------------------------------

GOOD_PROVIDER = """\
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: ecrcred
    matchImages: ["*.dkr.ecr.*.amazonaws.com"]
    defaultCacheDuration: 12h
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args: [get-credentials]
"""


@pytest.mark.parametrize(("change", "expected"), [
    (("kind: CredentialProviderConfig", "kind: CredentialProviderConfiguration"), "kind is"),
    (("apiVersion: kubelet.config.k8s.io/v1\n", "apiVersion: kubelet.config.k8s.io/v2\n"),
     "apiVersion"),
    (("    args:", "    argz:"), "unknown field 'argz'"),
    (("    args: [get-credentials]\n", "    args: [get-credentials]\n    name: other\n"),
     "duplicated field 'name'"),
    (('    matchImages: ["*.dkr.ecr.*.amazonaws.com"]\n', "    matchImages: []\n"),
     "matchImages: at least one entry"),
    (("defaultCacheDuration: 12h", "defaultCacheDuration: 12 hours"), "not a Go duration"),
    (("apiVersion: credentialprovider.kubelet.k8s.io/v1\n",
      "apiVersion: credentialprovider.kubelet.k8s.io/v1beta1\n    tokenAttributes:\n"
      "      serviceAccountTokenAudience: sts.amazonaws.com\n      cacheType: Token\n"
      "      requireServiceAccount: false\n"),
     "tokenAttributes: only allowed with apiVersion credentialprovider.kubelet.k8s.io/v1"),
])
def test_each_kind_of_provider_config_mistake_fails_naming_it(
        ecrcred_bin, node, change, expected):
    assert change[0] in GOOD_PROVIDER
    Path(node["provider_config"]).write_text(GOOD_PROVIDER.replace(*change))
    code, report, _, _ = doctor(ecrcred_bin, None, node, "--image", SANDBOX_IMAGE.replace(
        "eks/pause", "app/web"), "--skip", "runtime", "--skip", "registry",
                                "--skip", "credentials", "--skip", "environment")
    check = by_id(report)["kubelet.config"]
    assert code == 1
    assert check["status"] == "fail"
    assert expected in check["message"] + " ".join(check["details"]), check


@pytest.mark.parametrize("case", ["no binary", "not executable", "matchImages miss"])
def test_the_kubelet_would_not_run_ecrcred_for_the_image(ecrcred_bin, node, case):
    Path(node["provider_config"]).write_text(GOOD_PROVIDER)
    image = f"{ECR_HOST}/app/web:1"
    link = Path(node["bin_dir"]) / "ecrcred"
    if case == "no binary":
        link.unlink()
    elif case == "not executable":
        link.unlink()
        link.write_text("#!/bin/sh\n")
        link.chmod(0o644)
    else:
        image = "registry.corp.example/app/web:1"
    code, report, _, _ = doctor(ecrcred_bin, None, node, "--image", image, "--skip", "runtime",
                                "--skip", "registry", "--skip", "credentials",
                                "--skip", "environment")
    checks = by_id(report)
    assert code == 1
    if case == "matchImages miss":
        assert checks["kubelet.match"]["status"] == "fail"
        assert "'registry.corp.example'" in checks["kubelet.match"]["fix"]
    else:
        assert checks["kubelet.provider"]["status"] == "fail", checks
    assert os.path.exists(ecrcred_bin)
