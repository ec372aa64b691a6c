"""``ecrcred get-credentials`` exec'd as the kubelet execs it, against moto's server as AWS."""

from __future__ import annotations

import base64
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ecrcred.kubelet import parse_go_duration
from tests.support.kubelet import API, check_response, exec_provider, request

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
MOTO_PASSWORD = "123456789012-auth-token"  # moto's token for that registry id


def assert_clean_failure(result, code: int, *needles: str) -> str:
    """The contract for every failure: nothing on stdout, one stderr line, no traceback."""
    assert result.returncode == code, result.stderr.decode()
    assert result.stdout == b""
    err = result.stderr.decode()
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got: {err}"
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return lines[0]


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha1"])
def test_answers_each_plugin_api_version_with_the_same_version(ecrcred_bin, kubelet_env, aws,
                                                                  version):
    req = request(f"{ECR}/team/app", api_version=f"{API}/{version}")
    result = exec_provider(ecrcred_bin, req, kubelet_env)
    assert result.returncode == 0, result.stderr.decode()
    doc = check_response(result.stdout, req)
    assert doc["cacheKeyType"] == "Registry"
    assert doc["auth"] == {ECR: {"username": "AWS", "password": MOTO_PASSWORD}}
    # moto's expiry is in 2015: we trust it not, cache an hour and tell the kubelet < 1h.
    assert doc["cacheDuration"].startswith(("29m", "30m0s"))
    assert MOTO_PASSWORD not in result.stderr.decode()
    assert aws.calls("GetAuthorizationToken") == 1


def test_no_subcommand_behaves_as_get_credentials(ecrcred_bin, kubelet_env):
    req = request(f"{ECR}/app")
    result = exec_provider(ecrcred_bin, req, kubelet_env, args=())
    assert result.returncode == 0, result.stderr.decode()
    check_response(result.stdout, req)


def test_needs_no_home_and_writes_nothing_relative_to_cwd(ecrcred_bin, kubelet_env, tmp_path):
    assert "HOME" not in kubelet_env
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    assert result.returncode == 0, result.stderr.decode()
    cache = Path(kubelet_env["ECRCRED_CACHE_DIR"])
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    files = [p for p in cache.iterdir() if p.suffix == ".json"]
    assert len(files) == 1
    assert oct(files[0].stat().st_mode & 0o777) == "0o600"
    assert ECR not in files[0].name and "auth-token" not in files[0].name


def test_second_execution_is_served_from_the_disk_cache(ecrcred_bin, kubelet_env, aws):
    req = request(f"{ECR}/one")
    first = exec_provider(ecrcred_bin, req, kubelet_env)
    second = exec_provider(ecrcred_bin, request(f"{ECR}/two"), kubelet_env)
    assert first.returncode == second.returncode == 0
    assert aws.calls("GetAuthorizationToken") == 1
    assert json.loads(second.stdout)["auth"] == json.loads(first.stdout)["auth"]


def test_concurrent_executions_for_one_registry_make_exactly_one_api_call(
        ecrcred_bin, kubelet_env, aws):
    n = 24
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(
            lambda i: exec_provider(ecrcred_bin, request(f"{ECR}/image-{i}"), kubelet_env),
            range(n)))
    for r in results:
        assert r.returncode == 0, r.stderr.decode()
        assert json.loads(r.stdout)["auth"][ECR]["password"] == MOTO_PASSWORD
    assert aws.calls("GetAuthorizationToken") == 1


def test_different_identities_do_not_share_cached_tokens(ecrcred_bin, kubelet_env, aws):
    exec_provider(ecrcred_bin, request(f"{ECR}/a"), kubelet_env)
    other = dict(kubelet_env, AWS_ACCESS_KEY_ID="AKIDOTHERIDENTITY000")
    result = exec_provider(ecrcred_bin, request(f"{ECR}/a"), other)
    assert result.returncode == 0
    assert aws.calls("GetAuthorizationToken") == 2


def test_each_registry_gets_its_own_token_and_auth_key(ecrcred_bin, kubelet_env, aws):
    other = "210987654321.dkr.ecr.eu-central-1.amazonaws.com"
    result = exec_provider(ecrcred_bin, request(f"{other}/app"), kubelet_env)
    doc = check_response(result.stdout, request(f"{other}/app"))
    assert doc["auth"] == {other: {"username": "AWS", "password": "210987654321-auth-token"}}


@pytest.mark.parametrize("host", ["public.ecr.aws", "ecr-public.aws.com"])
def test_ecr_public_tokens_come_from_the_ecr_public_api(ecrcred_bin, kubelet_env, aws, host):
    req = request(f"{host}/eks-distro/kubernetes/pause")
    result = exec_provider(ecrcred_bin, req, kubelet_env)
    assert result.returncode == 0, result.stderr.decode()
    doc = check_response(result.stdout, req)
    assert list(doc["auth"]) == [host]
    assert aws.calls("SpencerFrontendService.GetAuthorizationToken") == 1
    assert aws.calls("AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken") == 0
    # a real 12-hour expiry: the kubelet may cache until an hour before it
    assert doc["cacheDuration"].startswith(("10h59m", "11h0m"))


def test_private_image_with_public_ecr_in_its_path_stays_private(ecrcred_bin, kubelet_env, aws):
    req = request(f"{ECR}/public.ecr.aws/mirror")
    result = exec_provider(ecrcred_bin, req, kubelet_env)
    assert list(check_response(result.stdout, req)["auth"]) == [ECR]
    assert aws.calls("SpencerFrontendService.GetAuthorizationToken") == 0


@pytest.mark.parametrize("image", [
    f"{ECR}.evil.example/app",
    "docker.io/library/busybox",
    "public.ecr.aws.evil.example/x",
    "12345678901.dkr.ecr.us-west-2.amazonaws.com/short-account",
])
def test_non_ecr_hosts_are_refused_without_calling_aws(ecrcred_bin, kubelet_env, aws, image):
    result = exec_provider(ecrcred_bin, request(image), kubelet_env)
    assert_clean_failure(result, 1, "NO_SOURCE", image.split("/")[0])
    assert aws.calls("GetAuthorizationToken") == 0


@pytest.mark.parametrize(("stdin", "needle"), [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"{not json", "not valid JSON"),
    (b"[1,2]", "not an object"),
    (json.dumps({"kind": "Pod", "apiVersion": f"{API}/v1", "image": ECR}).encode(), "kind"),
    (json.dumps({"kind": "CredentialProviderRequest", "apiVersion": f"{API}/v2",
                 "image": ECR}).encode(), "apiVersion"),
    (json.dumps({"kind": "CredentialProviderRequest", "apiVersion": f"{API}/v1"}).encode(),
     "no image"),
    (b"{" + b" " * (2 << 20) + b"}", "larger than"),
    (b"\xff\xfe\x00garbage", "not valid JSON"),
])
def test_bad_stdin_gets_one_clear_line_and_exit_3(ecrcred_bin, kubelet_env, aws, stdin, needle):
    result = exec_provider(ecrcred_bin, stdin, kubelet_env)
    assert_clean_failure(result, 3, needle, "BAD_REQUEST")
    assert aws.calls("GetAuthorizationToken") == 0


def test_service_account_token_is_used_for_the_pods_role_and_never_echoed(
        ecrcred_bin, kubelet_env, aws):
    sa_token = "eyJhbGciOiJSUzI1NiJ9.service-account-token-for-test.sig"
    role = "arn:aws:iam::123456789012:role/pull"
    req = request(f"{ECR}/app", serviceAccountToken=sa_token,
                  serviceAccountAnnotations={"eks.amazonaws.com/role-arn": role})
    result = exec_provider(ecrcred_bin, req, dict(kubelet_env, ECRCRED_LOG_LEVEL="debug"))
    assert result.returncode == 0, result.stderr.decode()
    check_response(result.stdout, req)
    assert sa_token.encode() not in result.stdout + result.stderr
    assert aws.calls("AssumeRoleWithWebIdentity") == 1


def test_a_malformed_role_annotation_is_refused_naming_it(ecrcred_bin, kubelet_env, aws):
    req = request(f"{ECR}/app", serviceAccountToken="a.b.c",
                  serviceAccountAnnotations={"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"})
    result = exec_provider(ecrcred_bin, req, kubelet_env)
    assert_clean_failure(result, 1, "eks.amazonaws.com/role-arn", "BAD_ROLE")
    assert aws.calls("GetAuthorizationToken") == 0


def test_throttling_is_retried_inside_the_deadline(ecrcred_bin, kubelet_env, aws):
    aws.fault(code="ThrottlingException", times=2)
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    assert result.returncode == 0, result.stderr.decode()
    assert aws.calls("GetAuthorizationToken") == 3


def test_access_denied_fails_at_once_with_what_to_grant(ecrcred_bin, kubelet_env, aws):
    aws.fault(code="AccessDeniedException", status=400, times=5,
              message="User is not authorized to perform ecr:GetAuthorizationToken")
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    line = assert_clean_failure(result, 1, "AccessDeniedException", "ecr:GetAuthorizationToken",
                                ECR)
    assert "AWS_ACCESS_DENIED" in line
    assert aws.calls("GetAuthorizationToken") == 1
    assert kubelet_env["AWS_SECRET_ACCESS_KEY"] not in result.stderr.decode()


def test_slow_api_hits_our_deadline_with_a_message(ecrcred_bin, kubelet_env, aws):
    aws.fault(status=0, delay_ms=8000, times=1)
    started = time.monotonic()
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"),
                           dict(kubelet_env, ECRCRED_TIMEOUT="1.5"))
    elapsed = time.monotonic() - started
    assert_clean_failure(result, 5, "did not finish within 1.5s", "DEADLINE")
    assert elapsed < 6


def test_unusable_cache_dir_degrades_to_no_cache_with_one_warning(ecrcred_bin, kubelet_env,
                                                                  tmp_path, aws):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = dict(kubelet_env, ECRCRED_CACHE_DIR=str(blocker / "cache"))
    for _ in range(2):
        result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), env)
        assert result.returncode == 0
        check_response(result.stdout, request(f"{ECR}/app"))
        warnings = [line for line in result.stderr.decode().splitlines() if "cache" in line]
        assert len(warnings) == 1, result.stderr.decode()
    assert aws.calls("GetAuthorizationToken") == 2


@pytest.mark.parametrize("content", [b"{truncated", b"", b"\x00\x01binary",
                                     b'{"version": 99}', b"[]"])
def test_corrupt_cache_file_is_ignored_and_rewritten(ecrcred_bin, kubelet_env, aws, content):
    first = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    assert first.returncode == 0
    (cache_file,) = Path(kubelet_env["ECRCRED_CACHE_DIR"]).glob("*.json")
    cache_file.write_bytes(content)
    second = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    assert second.returncode == 0, second.stderr.decode()
    answers = [json.loads(r.stdout) for r in (first, second)]
    # The same answer; cacheDuration counts down, so a slow second run may give a second less.
    durations = [a.pop("cacheDuration") for a in answers]
    assert answers[0] == answers[1]
    seconds = [parse_go_duration(d) for d in durations]
    assert 0 <= seconds[0] - seconds[1] <= 5, durations
    assert aws.calls("GetAuthorizationToken") == 2
    assert json.loads(cache_file.read_bytes())["password"] == MOTO_PASSWORD


def test_expired_cache_entry_is_never_served(ecrcred_bin, kubelet_env, aws):
    exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    (cache_file,) = Path(kubelet_env["ECRCRED_CACHE_DIR"]).glob("*.json")
    doc = json.loads(cache_file.read_bytes())
    doc.update(password="expired-password-must-not-be-served", expires_at=time.time() - 10)
    cache_file.write_text(json.dumps(doc))
    aws.fault(code="ServiceUnavailableException", status=503, times=20)
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    assert_clean_failure(result, 1, "ServiceUnavailable")
    assert b"expired-password" not in result.stdout + result.stderr


def test_stale_but_unexpired_token_is_served_briefly_when_the_api_fails(
        ecrcred_bin, kubelet_env, aws):
    exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    (cache_file,) = Path(kubelet_env["ECRCRED_CACHE_DIR"]).glob("*.json")
    doc = json.loads(cache_file.read_bytes())
    now = time.time()
    doc.update(fetched_at=now - 11.5 * 3600, expires_at=now + 1800)  # inside the refresh margin
    cache_file.write_text(json.dumps(doc))
    aws.fault(code="ServiceUnavailableException", status=503, times=20)
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    assert result.returncode == 0, result.stderr.decode()
    resp = check_response(result.stdout, request(f"{ECR}/app"))
    assert resp["cacheDuration"] == "1m0s"
    assert "serving the cached token" in result.stderr.decode()


@pytest.mark.parametrize("token", ["%%%not-base64%%%", base64.b64encode(b"no-colon").decode(),
                                   base64.b64encode(b"AWS:").decode()])
def test_token_that_does_not_decode_is_a_clear_error(ecrcred_bin, kubelet_env, aws, token):
    aws.fault(body={"authorizationData": [{"authorizationToken": token,
                                           "expiresAt": time.time() + 43200}]})
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    assert_clean_failure(result, 1, "BAD_TOKEN", ECR)
    assert not list(Path(kubelet_env["ECRCRED_CACHE_DIR"]).glob("*.json"))


def test_timeout_flag_is_validated(ecrcred_bin, kubelet_env):
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env,
                           args=("get-credentials", "--timeout", "90"))
    assert_clean_failure(result, 2, "timeout", "60s")


def test_password_of_cached_token_is_not_in_any_file_name(ecrcred_bin, kubelet_env):
    exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    names = " ".join(os.listdir(kubelet_env["ECRCRED_CACHE_DIR"]))
    assert "auth-token" not in names and "123456789012" not in names
    assert base64.b64encode(MOTO_PASSWORD.encode()).decode() not in names


def test_stale_but_valid_token_is_served_when_the_api_hangs_past_our_deadline(
        ecrcred_bin, kubelet_env, aws):
    exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    (cache_file,) = Path(kubelet_env["ECRCRED_CACHE_DIR"]).glob("*.json")
    doc = json.loads(cache_file.read_bytes())
    now = time.time()
    doc.update(fetched_at=now - 11.5 * 3600, expires_at=now + 1800)
    cache_file.write_text(json.dumps(doc))
    aws.fault(status=0, delay_ms=8000, times=10)
    started = time.monotonic()
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"),
                           dict(kubelet_env, ECRCRED_TIMEOUT="1.5"))
    assert time.monotonic() - started < 6
    assert result.returncode == 0, result.stderr.decode()
    assert check_response(result.stdout, request(f"{ECR}/app"))["cacheDuration"] == "1m0s"
    assert "did not answer within our deadline" in result.stderr.decode()
