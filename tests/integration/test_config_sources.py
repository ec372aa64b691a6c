"""The config file and every credential source, through ``ecrcred get-credentials`` exec'd as the
kubelet execs it: moto's server for ECR and STS, docker config files in the real formats, and a
real ``docker-credential-*`` executable on PATH."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest

from tests.integration.test_get_credentials import ECR, MOTO_PASSWORD, assert_clean_failure
from tests.support.kubelet import check_response, exec_provider, request

HELPER_BIN = Path(__file__).resolve().parents[1] / "support" / "bin"
ROLE_A = "arn:aws:iam::123456789012:role/team-a-pull"
ROLE_B = "arn:aws:iam::123456789012:role/team-b-pull"
HEADER = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ"  # {"alg":"RS256","kid":"test"}


def sa_token(namespace: str, name: str, serial: int = 0) -> str:
    """A service-account token in the real shape (the signature is not checked by anyone here)."""
    claims = {"iss": "https://oidc.example/cluster", "aud": ["sts.amazonaws.com"],
              "sub": f"system:serviceaccount:{namespace}:{name}", "jti": f"jti-{serial}",
              "exp": int(time.time()) + 3600}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{HEADER}.{payload}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk{serial}"


def write_config(tmp_path: Path, registries: list[dict], **extra: object) -> Path:
    path = tmp_path / "ecrcred.yaml"
    doc = {"apiVersion": "ecrcred.io/v1alpha1", "kind": "EcrcredConfig",
           "registries": registries, **extra}
    path.write_text(json.dumps(doc, indent=2))  # JSON is YAML; the README shows the YAML form
    return path


@pytest.fixture
def env(kubelet_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The kubelet's environment with ECRCRED_CONFIG naming a config with no rules yet."""
    return {**kubelet_env, "ECRCRED_CONFIG": str(write_config(tmp_path, []))}


def answer(ecrcred_bin: str, image: str, env: dict[str, str], **extra: object) -> dict:
    req = request(image, **extra)
    result = exec_provider(ecrcred_bin, req, env)
    assert result.returncode == 0, result.stderr.decode()
    return check_response(result.stdout, req)


def token_files(env: dict[str, str]) -> list[Path]:
    cache = Path(env["ECRCRED_CACHE_DIR"])
    return sorted(p for p in cache.glob("*.json") if not p.name.startswith("config-"))


# -- static -----------------------------------------------------------------------------------

def test_static_rule_answers_from_the_password_file_and_rereads_it(ecrcred_bin, env, tmp_path):
    secret = tmp_path / "harbor.password"
    secret.write_text("first-Pw-8e1\n")
    secret.chmod(0o600)
    write_config(tmp_path, [{"match": ["harbor.example.com:8443"],
                             "static": {"username": "robot$ci", "passwordFile": str(secret)}}])
    doc = answer(ecrcred_bin, "harbor.example.com:8443/team/app", env)
    assert doc["auth"] == {"harbor.example.com:8443": {"username": "robot$ci",
                                                       "password": "first-Pw-8e1"}}
    assert doc["cacheKeyType"] == "Registry"
    assert doc["cacheDuration"] == "5m0s"
    assert token_files(env) == []  # the secret is never copied into our cache

    secret.write_text("rotated-Pw-77\n")
    doc = answer(ecrcred_bin, "harbor.example.com:8443/team/app", env)
    assert doc["auth"]["harbor.example.com:8443"]["password"] == "rotated-Pw-77"


def test_static_password_file_readable_by_others_is_warned_about_by_name(
        ecrcred_bin, env, tmp_path):
    secret = tmp_path / "open.password"
    secret.write_text("open-Pw-1\n")
    secret.chmod(0o644)
    write_config(tmp_path, [{"match": ["registry.example.com"],
                             "static": {"username": "u", "passwordFile": str(secret)}}])
    req = request("registry.example.com/app")
    result = exec_provider(ecrcred_bin, req, env)
    assert result.returncode == 0, result.stderr.decode()
    err = result.stderr.decode()
    assert f"password file {secret} is accessible to other users (mode 0644)" in err
    assert "open-Pw-1" not in err


def test_static_password_from_the_providers_env(ecrcred_bin, env, tmp_path):
    write_config(tmp_path, [{"match": ["registry.example.com"], "cacheDuration": "90s",
                             "static": {"username": "u", "passwordEnv": "REGISTRY_PASSWORD"}}])
    doc = answer(ecrcred_bin, "registry.example.com/app", {**env, "REGISTRY_PASSWORD": "env-Pw"})
    assert doc["auth"]["registry.example.com"]["password"] == "env-Pw"
    assert doc["cacheDuration"] == "1m30s"
    result = exec_provider(ecrcred_bin, request("registry.example.com/app"), env)
    assert_clean_failure(result, 1, "REGISTRY_PASSWORD", "SECRET_UNREADABLE")


# -- docker config ------------------------------------------------------------------------------

def test_docker_config_follows_the_kubelet_search_and_shows_the_home_trap(
        ecrcred_bin, env, tmp_path):
    home = tmp_path / "root-home"
    (home / ".docker").mkdir(parents=True)
    auth = base64.b64encode(b"quay-user:quay-Pw-3").decode()
    docker_config = home / ".docker" / "config.json"
    docker_config.write_text(json.dumps({"auths": {"https://quay.io": {"auth": auth}}}))
    docker_config.chmod(0o600)
    root_dir = tmp_path / "kubelet"
    root_dir.mkdir()
    write_config(tmp_path, [{"match": ["quay.io"],
                             "dockerConfig": {"kubeletRootDir": str(root_dir)}}])
    debug = {**env, "ECRCRED_LOG_LEVEL": "debug"}

    # Under systemd without HOME: the root user's docker login is not seen, and the log says why.
    result = exec_provider(ecrcred_bin, request("quay.io/team/app"), debug)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert f"{root_dir}/config.json (missing)" in err
    assert "skipped: HOME is not set" in err
    assert "quay-Pw-3" not in err

    doc = answer(ecrcred_bin, "quay.io/team/app", {**env, "HOME": str(home)})
    assert doc["auth"] == {"quay.io": {"username": "quay-user", "password": "quay-Pw-3"}}


def test_docker_config_path_keys_make_the_answer_per_image(ecrcred_bin, env, tmp_path):
    config = tmp_path / "docker.json"
    config.write_text(json.dumps({"auths": {
        "quay.io/team-a": {"username": "a", "password": "a-Pw"},
        "quay.io": {"username": "any", "password": "any-Pw"},
    }}))
    config.chmod(0o600)
    write_config(tmp_path, [{"match": ["quay.io"], "dockerConfig": {"paths": [str(config)]}}])
    doc = answer(ecrcred_bin, "quay.io/team-a/app", env)
    assert doc["cacheKeyType"] == "Image"
    assert doc["auth"] == {"quay.io/team-a/app": {"username": "a", "password": "a-Pw"}}
    doc = answer(ecrcred_bin, "quay.io/other/app", env)
    assert doc["auth"]["quay.io/other/app"]["password"] == "any-Pw"


# -- credential helpers ------------------------------------------------------------------------

@pytest.fixture
def helper_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    store = tmp_path / "helper-store.json"
    store.write_text(json.dumps({"gcr.example.com": {"Username": "oauth2accesstoken",
                                                     "Secret": "helper-Secret-42"}}))
    return {**env, "PATH": f"{HELPER_BIN}:{env['PATH']}",
            "ECRCRED_TEST_HELPER_STORE": str(store)}


def test_credential_helper_on_path_answers(ecrcred_bin, helper_env, tmp_path):
    write_config(tmp_path, [{"match": ["gcr.example.com"],
                             "credentialHelper": {"name": "ecrcred-test"}}])
    doc = answer(ecrcred_bin, "gcr.example.com/project/app", helper_env)
    assert doc["auth"] == {"gcr.example.com": {"username": "oauth2accesstoken",
                                               "password": "helper-Secret-42"}}


def test_a_hanging_credential_helper_is_killed_at_its_timeout(ecrcred_bin, helper_env, tmp_path):
    write_config(tmp_path, [{"match": ["gcr.example.com"],
                             "credentialHelper": {"name": "ecrcred-test", "timeout": "1s"}}])
    started = time.monotonic()
    result = exec_provider(ecrcred_bin, request("gcr.example.com/project/app"),
                           {**helper_env, "ECRCRED_TEST_HELPER_MODE": "hang"})
    assert time.monotonic() - started < 10
    assert_clean_failure(result, 1, "docker-credential-ecrcred-test", "killed")


def test_a_missing_credential_helper_is_named(ecrcred_bin, env, tmp_path):
    write_config(tmp_path, [{"match": ["gcr.example.com"],
                             "credentialHelper": {"name": "not-installed-here"}}])
    result = exec_provider(ecrcred_bin, request("gcr.example.com/app"), env)
    assert_clean_failure(result, 1, "docker-credential-not-installed-here",
                         "HELPER_NOT_INSTALLED")


# -- mirrors and ECR options --------------------------------------------------------------------

def test_a_mirror_gets_the_ecr_registrys_credentials_under_its_own_host(
        ecrcred_bin, env, tmp_path, aws):
    write_config(tmp_path, [{"match": ["docker.io", "mirror.internal:5000"],
                             "mirrorOf": f"{ECR}/docker-hub"}])
    doc = answer(ecrcred_bin, "docker.io/library/alpine", env)
    assert doc["auth"] == {"docker.io": {"username": "AWS", "password": MOTO_PASSWORD}}
    doc = answer(ecrcred_bin, "mirror.internal:5000/library/alpine", env)
    assert doc["auth"] == {"mirror.internal:5000": {"username": "AWS", "password": MOTO_PASSWORD}}
    # Both hosts share the registry's cached token.
    assert aws.calls("GetAuthorizationToken") == 1


def test_a_custom_domain_in_front_of_ecr_is_answered_with_that_accounts_token(
        ecrcred_bin, env, tmp_path, aws):
    write_config(tmp_path, [{"match": ["registry.corp.example"],
                             "ecr": {"account": "123456789012", "region": "us-west-2"}}])
    doc = answer(ecrcred_bin, "registry.corp.example/app", env)
    assert doc["auth"] == {"registry.corp.example": {"username": "AWS",
                                                     "password": MOTO_PASSWORD}}
    assert aws.calls("GetAuthorizationToken") == 1


def test_a_rule_role_is_assumed_first_and_its_token_kept_apart(ecrcred_bin, env, tmp_path, aws):
    aws.tokens_per_caller()
    node = answer(ecrcred_bin, f"{ECR}/app", env)["auth"][ECR]["password"]
    assert node == f"token-for-{env['AWS_ACCESS_KEY_ID']}"
    write_config(tmp_path, [{"match": [ECR], "ecr": {"roleArn": ROLE_A,
                                                     "externalId": "ext-id-Secret"}}])
    assumed = answer(ecrcred_bin, f"{ECR}/app", env)["auth"][ECR]["password"]
    assert assumed != node
    assert aws.calls("AssumeRole") == 1
    again = answer(ecrcred_bin, f"{ECR}/app", env)["auth"][ECR]["password"]
    assert again == assumed
    assert aws.calls("AssumeRole") == 1
    assert len(token_files(env)) == 2


# -- per-pod identity ---------------------------------------------------------------------------

def test_a_token_of_role_a_never_answers_for_role_b(ecrcred_bin, env, aws):
    aws.tokens_per_caller()
    token = sa_token("team", "puller")

    def for_role(role: str) -> str:
        doc = answer(ecrcred_bin, f"{ECR}/app", env, serviceAccountToken=token,
                     serviceAccountAnnotations={"eks.amazonaws.com/ecr-role-arn": role})
        return doc["auth"][ECR]["password"]

    a, b = for_role(ROLE_A), for_role(ROLE_B)
    assert a != b
    assert aws.calls("AssumeRoleWithWebIdentity") == 2
    assert for_role(ROLE_A) == a and for_role(ROLE_B) == b  # each from its own cache entry
    assert aws.calls("AssumeRoleWithWebIdentity") == 2
    node = answer(ecrcred_bin, f"{ECR}/app", env)["auth"][ECR]["password"]
    assert node not in (a, b)
    files = token_files(env)
    assert len(files) == 3
    for path in files:  # neither the service-account token nor its claims reach the disk
        assert token not in path.name and token not in path.read_text()
        assert "puller" not in path.read_text()


def test_another_service_account_does_not_get_a_cached_role_token(ecrcred_bin, env, aws):
    annotations = {"eks.amazonaws.com/role-arn": ROLE_A}
    for name in ("allowed", "other"):
        answer(ecrcred_bin, f"{ECR}/app", env, serviceAccountToken=sa_token("team", name),
               serviceAccountAnnotations=annotations)
    # The second account's token had to be exchanged by STS itself, so its trust policy decides.
    assert aws.calls("AssumeRoleWithWebIdentity") == 2
    # The same account with a rotated token is the same identity: served from the cache.
    answer(ecrcred_bin, f"{ECR}/app", env, serviceAccountToken=sa_token("team", "allowed", 7),
           serviceAccountAnnotations=annotations)
    assert aws.calls("AssumeRoleWithWebIdentity") == 2


def test_fallback_deny_refuses_a_pod_without_a_role(ecrcred_bin, env, tmp_path, aws):
    write_config(tmp_path, [], podIdentity={"fallback": "deny"})
    token = sa_token("team", "no-role")
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app", serviceAccountToken=token), env)
    assert_clean_failure(result, 1, "fallback is deny", "IDENTITY_DENIED")
    assert token not in result.stderr.decode()
    assert aws.calls("GetAuthorizationToken") == 0


def test_fallback_node_serves_a_pod_without_a_role_with_node_credentials(ecrcred_bin, env, aws):
    doc = answer(ecrcred_bin, f"{ECR}/app", env, serviceAccountToken=sa_token("team", "plain"))
    assert doc["auth"][ECR]["password"] == MOTO_PASSWORD
    assert aws.calls("AssumeRoleWithWebIdentity") == 0


# -- the config file itself ---------------------------------------------------------------------

def test_a_bad_config_is_one_line_naming_file_and_field_exit_4(ecrcred_bin, env, tmp_path, aws):
    path = write_config(tmp_path, [{"match": ["registry.example.com"],
                                    "static": {"username": "u", "password": "inline-Pw"}}])
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), env)
    line = assert_clean_failure(result, 4, str(path), "registries[0].static", "BAD_CONFIG")
    assert "inline-Pw" not in line
    assert aws.calls("GetAuthorizationToken") == 0


def test_a_named_config_that_does_not_exist_is_an_error(ecrcred_bin, env):
    os.unlink(env["ECRCRED_CONFIG"])
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), env)
    assert_clean_failure(result, 4, env["ECRCRED_CONFIG"], "env ECRCRED_CONFIG", "does not exist")


def test_an_edited_config_takes_effect_at_the_next_execution(ecrcred_bin, env, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("pw-1")
    secret.chmod(0o600)
    rule = {"match": ["registry.example.com"], "static": {"username": "first",
                                                           "passwordFile": str(secret)}}
    write_config(tmp_path, [rule])
    assert answer(ecrcred_bin, "registry.example.com/app", env)["auth"][
        "registry.example.com"]["username"] == "first"
    compiled = list(Path(env["ECRCRED_CACHE_DIR"]).glob("config-*.json"))
    assert len(compiled) == 1 and oct(compiled[0].stat().st_mode & 0o777) == "0o600"
    rule["static"]["username"] = "second"  # type: ignore[index]
    write_config(tmp_path, [rule])
    assert answer(ecrcred_bin, "registry.example.com/app", env)["auth"][
        "registry.example.com"]["username"] == "second"
    write_config(tmp_path, [{"match": ["registry.example.com"]}])  # broken edit: reported now
    result = exec_provider(ecrcred_bin, request("registry.example.com/app"), env)
    assert_clean_failure(result, 4, "registries[0]", "expected exactly one source")


def test_path_scoped_rules_answer_per_image(ecrcred_bin, env, tmp_path):
    secrets = {}
    for team in ("a", "b"):
        secrets[team] = tmp_path / f"team-{team}.pw"
        secrets[team].write_text(f"team-{team}-Pw")
        secrets[team].chmod(0o600)
    write_config(tmp_path, [
        {"match": ["registry.example.com/team-a"],
         "static": {"username": "a", "passwordFile": str(secrets["a"])}},
        {"match": ["registry.example.com"],
         "static": {"username": "b", "passwordFile": str(secrets["b"])}},
    ])
    doc = answer(ecrcred_bin, "registry.example.com/team-a/app", env)
    assert doc["cacheKeyType"] == "Image"
    assert doc["auth"] == {"registry.example.com/team-a/app": {"username": "a",
                                                               "password": "team-a-Pw"}}
    # The broader rule's answer is per image too: keyed by registry, the kubelet would reuse it
    # for team-a's images.
    doc = answer(ecrcred_bin, "registry.example.com/team-b/app", env)
    assert doc["cacheKeyType"] == "Image"
    assert doc["auth"]["registry.example.com/team-b/app"]["username"] == "b"


def test_no_rule_and_not_ecr_is_a_clear_error(ecrcred_bin, env, tmp_path):
    write_config(tmp_path, [])
    result = exec_provider(ecrcred_bin, request("ghcr.io/org/app"), env)
    assert_clean_failure(result, 1, "ghcr.io", "NO_SOURCE")


def test_nothing_secret_in_cache_file_names(ecrcred_bin, env, tmp_path, aws):
    write_config(tmp_path, [{"match": [ECR], "ecr": {"roleArn": ROLE_A,
                                                     "externalId": "ext-id-Secret"}}])
    answer(ecrcred_bin, f"{ECR}/app", env, serviceAccountToken=sa_token("team", "x"),
           serviceAccountAnnotations={"eks.amazonaws.com/role-arn": ROLE_B})
    names = " ".join(os.listdir(env["ECRCRED_CACHE_DIR"]))
    for needle in ("ext-id-Secret", "team-a", "team-b", MOTO_PASSWORD, "serviceaccount"):
        assert needle not in names
