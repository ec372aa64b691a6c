"""Faults of AWS and of what it answers, for ``ecrcred get-credentials`` exec'd as the kubelet
execs it (issue 7, "Faults and bad input"). The stand-in is moto's server with injected faults.

Already covered in ``tests/integration`` and not repeated here: throttling twice then success,
AccessDenied, an API slower than the deadline (with and without a stale token to fall back on),
tokens that do not decode (not base64, no colon, empty password), an expired cache entry never
served. The table of all of them is ``tests/faults/README.md``.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ecrcred.kubelet import parse_go_duration
from tests.faults.conftest import ECR, MOTO_PASSWORD, cache_files, clean_failure, warnings
from tests.support.kubelet import check_response, exec_provider, request

ROLE = "arn:aws:iam::123456789012:role/image-pull"
SA_TOKEN = ("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL29pZGMuZXhhbXBsZSIsInN1YiI6InN5c3RlbTpz"
            "ZXJ2aWNlYWNjb3VudDp0ZWFtOnB1bGxlciJ9.c2lnbmF0dXJlLXNlY3JldC1wYXJ0")
EXTERNAL_ID = "external-id-Secret-42"
GO_MAX_SECONDS = 9223372036  # Go's time.Duration holds int64 nanoseconds


def token(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def ecr_reply(auth_token: str, expires_at: float) -> dict[str, object]:
    return {"authorizationData": [{"authorizationToken": auth_token, "expiresAt": expires_at,
                                   "proxyEndpoint": f"https://{ECR}"}]}


def cache_duration(result) -> float:
    doc = check_response(result.stdout, request(f"{ECR}/app"))
    seconds = parse_go_duration(doc["cacheDuration"])
    assert 0 <= seconds <= GO_MAX_SECONDS, doc["cacheDuration"]
    return seconds


def role_config(tmp_path: Path) -> Path:
    path = tmp_path / "ecrcred.json"
    path.write_text(json.dumps({
        "apiVersion": "ecrcred.io/v1alpha1", "kind": "EcrcredConfig",
        "registries": [{"match": [ECR], "ecr": {"roleArn": ROLE, "externalId": EXTERNAL_ID}}]}))
    return path


def pod_request() -> dict[str, object]:
    return request(f"{ECR}/app", serviceAccountToken=SA_TOKEN,
                   serviceAccountAnnotations={"eks.amazonaws.com/role-arn": ROLE})


# -- throttling and 5xx -------------------------------------------------------------------------

def test_persistent_throttling_ends_in_one_clear_error_after_four_jittered_attempts(
        ecrcred_bin, kubelet_env, aws, tmp_path):
    gaps = []
    for run in range(2):
        aws.reset()
        aws.fault(code="ThrottlingException", status=400, times=50)
        started = time.monotonic()
        # A cache of its own each time: the first run's throttling holds the second one back
        # (test_a_burst_under_throttling_makes_one_call_and_every_execution_says_why).
        env = dict(kubelet_env, ECRCRED_CACHE_DIR=str(tmp_path / f"cache-{run}"))
        result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), env)
        elapsed = time.monotonic() - started
        clean_failure(result, 1, "ThrottlingException", ECR, "[AWS_THROTTLING]")
        times = aws.call_times("GetAuthorizationToken")
        assert len(times) == 4, "standard retry mode: 4 attempts in all"
        # Backoff is random * 2^attempt (at most 1 + 2 + 4 s), well inside the 30 s deadline.
        assert elapsed < 20
        gaps += [b - a for a, b in itertools.pairwise(times)]
    # Full jitter: each wait is uniform in [0, 2^n) s, so six of them spread over more than
    # 0.15 s (all six inside 0.15 s: p < 1e-4); a fixed backoff gives six equal gaps.
    assert max(gaps) - min(gaps) > 0.15, gaps


def test_a_burst_under_throttling_makes_one_call_and_every_execution_says_why(
        ecrcred_bin, kubelet_env, aws):
    aws.fault(code="ThrottlingException", status=400, times=500)
    # --timeout 8: a hold (5 to 7.5 s) may be waited out only in the first 4 s, and the first
    # fetch's own retries take part of those; so no execution here has time to wait.
    short = dict(kubelet_env, ECRCRED_TIMEOUT="8")
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(
            lambda i: exec_provider(ecrcred_bin, request(f"{ECR}/i{i}"), short), range(6)))
    # One execution fetches (botocore's 4 attempts) and is throttled; the five queued behind it
    # on the cache lock find the throttling remembered and do not call again.
    assert aws.calls("GetAuthorizationToken") == 4
    lines = [clean_failure(result, 1, ECR) for result in results]
    assert sum("ThrottlingException" in line and line.endswith("[AWS_THROTTLING]")
               for line in lines) == 1, lines
    held = [line for line in lines if line.endswith("[AWS_THROTTLED_RECENTLY]")]
    assert len(held) == 5, lines
    for line in held:
        assert f"AWS throttled the token request for {ECR}" in line
        assert "ecrcred sends no new one until" in line

    # A later execution inside the hold fails at once, still without a call.
    started = time.monotonic()
    again = exec_provider(ecrcred_bin, request(f"{ECR}/app"), short)
    clean_failure(again, 1, "[AWS_THROTTLED_RECENTLY]")
    assert time.monotonic() - started < 5
    assert aws.calls("GetAuthorizationToken") == 4

    # AWS recovers; once the hold is over the next execution fetches and clears the hold.
    aws.reset()
    (hold,) = Path(kubelet_env["ECRCRED_CACHE_DIR"]).glob("*.throttled")
    time.sleep(max(0.0, json.loads(hold.read_text())["until"] - time.time()) + 0.2)
    after = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    assert after.returncode == 0, after.stderr.decode()
    assert aws.calls("GetAuthorizationToken") == 1
    assert not hold.exists()


def test_executions_with_time_wait_the_hold_out_and_one_call_serves_the_whole_queue(
        ecrcred_bin, kubelet_env, aws):
    # AWS throttles exactly one fetch (botocore's 4 attempts), then recovers.
    aws.fault(code="ThrottlingException", status=400, times=4)
    first = exec_provider(ecrcred_bin, request(f"{ECR}/first"), kubelet_env)
    clean_failure(first, 1, "[AWS_THROTTLING]")
    (hold,) = Path(kubelet_env["ECRCRED_CACHE_DIR"]).glob("*.throttled")
    until = json.loads(hold.read_text())["until"]
    assert 4.5 < until - time.time() <= 7.5, "a hold of 5 to 7.5 s from the throttled fetch"
    assert aws.calls("GetAuthorizationToken") == 4

    # The node's burst arrives during the hold, with the default 30 s timeout: the first to take
    # the lock waits the hold out and fetches once; the others then find that token.
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(
            lambda i: exec_provider(ecrcred_bin, request(f"{ECR}/i{i}"), kubelet_env), range(4)))
    finished = time.time()
    for result in results:
        assert result.returncode == 0, result.stderr.decode()
        assert b"Traceback" not in result.stderr
    waited = [r for r in results if b"waiting for the hold to end" in r.stderr]
    assert len(waited) == 1, [r.stderr.decode() for r in results]
    assert finished >= until, "nobody called AWS before the hold was over"
    assert aws.calls("GetAuthorizationToken") == 5, "one more call for the whole queue"
    assert not hold.exists()


def test_a_burst_under_throttling_with_a_valid_token_cached_is_served_it_with_one_fetch(
        ecrcred_bin, kubelet_env, aws):
    assert exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env).returncode == 0
    (cached,) = Path(kubelet_env["ECRCRED_CACHE_DIR"]).glob("*.json")
    doc = json.loads(cached.read_text())
    now = time.time()
    doc.update(fetched_at=now - 11.5 * 3600, expires_at=now + 1800)  # stale, 30 min to live
    cached.write_text(json.dumps(doc))
    aws.reset()
    aws.fault(code="ThrottlingException", status=400, times=500)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(
            lambda i: exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env), range(4)))
    assert aws.calls("GetAuthorizationToken") == 4, "one fetch, botocore's 4 attempts"
    for result in results:
        assert result.returncode == 0, result.stderr.decode()
        assert cache_duration(result) == 60
        assert len(warnings(result, "serving the cached token")) == 1
    held = [r for r in results if b"[AWS_THROTTLED_RECENTLY]" in r.stderr]
    assert len(held) == 3, [r.stderr.decode() for r in results]


def test_throttling_that_outlasts_the_deadline_ends_at_the_deadline(ecrcred_bin, kubelet_env,
                                                                   aws):
    aws.fault(code="ThrottlingException", status=400, times=50, delay_ms=700)
    started = time.monotonic()
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"),
                           dict(kubelet_env, ECRCRED_TIMEOUT="2"))
    elapsed = time.monotonic() - started
    clean_failure(result, 5, "did not finish within 2s", "[DEADLINE]")
    assert elapsed < 8, "retries must not outlive our own deadline"
    assert aws.calls("GetAuthorizationToken") < 4


def test_ecr_5xx_twice_is_retried_and_answered(ecrcred_bin, kubelet_env, aws):
    aws.fault(code="ServiceUnavailableException", status=503, times=2)
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    assert result.returncode == 0, result.stderr.decode()
    doc = check_response(result.stdout, request(f"{ECR}/app"))
    assert doc["auth"][ECR]["password"] == MOTO_PASSWORD
    assert aws.calls("GetAuthorizationToken") == 3


@pytest.mark.parametrize(("status", "code", "raw", "needle"), [
    (500, "InternalServerError", None, "InternalServerError"),
    (503, "ServiceUnavailableException", None, "ServiceUnavailable"),
    (502, "", "<html><body><h1>502 Bad Gateway</h1></body></html>", "502"),
], ids=["500", "503", "proxy-502-html"])
def test_ecr_5xx_that_persists_is_one_clear_error_after_bounded_retries(
        ecrcred_bin, kubelet_env, aws, status, code, raw, needle):
    aws.fault(code=code, status=status, times=50, raw=raw)
    started = time.monotonic()
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    clean_failure(result, 1, needle, ECR)
    assert aws.calls("GetAuthorizationToken") == 4
    assert time.monotonic() - started < 20
    assert cache_files(Path(kubelet_env["ECRCRED_CACHE_DIR"])) == {}


# -- replies that are not what AWS documents ----------------------------------------------------

@pytest.mark.parametrize(("fault", "code"), [
    ({"body": "<html>captive portal</html>"}, "AWS_BAD_REPLY"),
    ({"body": {"authorizationData": [{"authorizationToken": token("AWS", "pw-with-bad-expiry"),
                                      "expiresAt": "soon"}]}}, "AWS_BAD_REPLY"),
    ({"body": {"authorizationData": {"authorizationToken": token("AWS", "pw-not-a-list")}}},
     "AWS_BAD_REPLY"),
    ({"body": {"authorizationData": []}}, "AWS_EMPTY"),
    ({"body": {"authorizationData": [{"expiresAt": 1}]}}, "AWS_EMPTY"),
    ({"raw": "<html><body>Sign in to the proxy</body></html>", "status": 200}, "AWS_EMPTY"),
    ({"raw": '{"authorizationData":[{"authorizationToken":"' + token("AWS", "cut-Secret-pw")
             + '","expiresAt":17', "status": 200, "content_type": "application/x-amz-json-1.1"},
     "AWS_EMPTY"),
], ids=["json-string", "expiry-not-a-time", "data-not-a-list", "empty-list", "no-token",
        "html-200", "truncated-json"])
def test_an_ecr_reply_that_is_not_what_aws_documents_is_a_clear_error_not_an_internal_one(
        ecrcred_bin, kubelet_env, aws, fault, code):
    aws.fault(**fault)
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    clean_failure(result, 1, ECR, f"[{code}]",
                  secrets=("pw-with-bad-expiry", "pw-not-a-list", "cut-Secret-pw"))
    assert cache_files(Path(kubelet_env["ECRCRED_CACHE_DIR"])) == {}


@pytest.mark.parametrize("decoded", [b":password-without-user", b"AWS:\xff\xfe-not-utf8"],
                         ids=["empty-user", "not-utf8"])
def test_a_token_with_an_empty_user_or_bytes_that_are_not_text_is_refused(
        ecrcred_bin, kubelet_env, aws, decoded):
    aws.fault(body=ecr_reply(base64.b64encode(decoded).decode(), time.time() + 43200))
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    clean_failure(result, 1, "[BAD_TOKEN]", secrets=("password-without-user",))
    assert cache_files(Path(kubelet_env["ECRCRED_CACHE_DIR"])) == {}


# -- expiry -------------------------------------------------------------------------------------

def test_a_token_already_expired_on_arrival_is_kept_at_most_one_hour_and_never_past_it(
        ecrcred_bin, kubelet_env, aws):
    aws.fault(body=ecr_reply(token("AWS", "pw-expired-on-arrival"), time.time() - 60))
    before = time.time()
    first = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    assert first.returncode == 0, first.stderr.decode()
    assert 0 < cache_duration(first) <= 1800, "refreshed after 30 minutes at the latest"
    assert len(warnings(first, "expiry is missing, already past")) == 1
    (cached,) = Path(kubelet_env["ECRCRED_CACHE_DIR"]).glob("*.json")
    doc = json.loads(cached.read_text())
    # Recorded with the hour we grant it, not the past expiry (which would read as expired),
    # nor anything longer.
    assert before <= doc["fetched_at"] and doc["expires_at"] - doc["fetched_at"] == 3600
    # A second execution inside the window is a cache hit, with what is left of the 30 minutes.
    second = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    assert second.returncode == 0 and aws.calls("GetAuthorizationToken") == 1
    assert cache_duration(second) <= 1800
    # Once its hour is over, it is not served, not even as a last resort while ECR fails.
    doc.update(fetched_at=doc["fetched_at"] - 3601, expires_at=doc["expires_at"] - 3601)
    cached.write_text(json.dumps(doc))
    aws.fault(code="ServiceUnavailableException", status=503, times=50)
    third = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    clean_failure(third, 1, "ServiceUnavailable", secrets=("pw-expired-on-arrival",))


@pytest.mark.parametrize("years", [1, 300], ids=["a-year", "300-years"])
def test_an_expiry_implausibly_far_away_is_not_trusted_and_the_duration_stays_go_parsable(
        ecrcred_bin, kubelet_env, aws, years):
    aws.fault(body=ecr_reply(token("AWS", "pw-far-future"), time.time() + years * 365 * 86400))
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), kubelet_env)
    assert result.returncode == 0, result.stderr.decode()
    # ECR tokens live 12 hours: a longer life is not believed, the token gets the one hour an
    # untrusted expiry gets (before the fix: cacheDuration 2628000h, which Go cannot parse).
    assert cache_duration(result) <= 1800
    assert len(warnings(result, "more than 7 days away")) == 1
    (cached,) = Path(kubelet_env["ECRCRED_CACHE_DIR"]).glob("*.json")
    doc = json.loads(cached.read_text())
    assert doc["expires_at"] - doc["fetched_at"] == 3600


# -- STS: a rule's role (AssumeRole) and a pod's role (AssumeRoleWithWebIdentity) -----------------

def test_assume_role_denied_fails_naming_the_role_and_its_trust_policy(
        ecrcred_bin, kubelet_env, aws, tmp_path):
    env = dict(kubelet_env, ECRCRED_CONFIG=str(role_config(tmp_path)))
    aws.fault("AssumeRole", status=403, code="AccessDenied", times=5,
              message=f"User is not authorized to perform: sts:AssumeRole on resource: {ROLE}")
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), env)
    clean_failure(result, 1, f"sts:AssumeRole of {ROLE}", "trust policy", "[AWS_ACCESS_DENIED]",
                  secrets=(EXTERNAL_ID,))
    assert aws.calls("AssumeRole") == 1, "AccessDenied is not retried"
    assert aws.calls("GetAuthorizationToken") == 0
    assert cache_files(Path(kubelet_env["ECRCRED_CACHE_DIR"])) == {}


@pytest.mark.parametrize(("code", "needle"), [
    ("InvalidIdentityToken", "OIDC provider"),
    ("AccessDenied", "trust policy"),
    ("ExpiredTokenException", "OIDC provider"),
])
def test_web_identity_refused_fails_naming_the_role_and_never_echoes_the_token(
        ecrcred_bin, kubelet_env, aws, code, needle):
    aws.fault("AssumeRoleWithWebIdentity", status=400, code=code, times=5)
    result = exec_provider(ecrcred_bin, pod_request(), dict(kubelet_env,
                                                            ECRCRED_LOG_LEVEL="debug"))
    clean_failure(result, 1, f"sts:AssumeRoleWithWebIdentity of {ROLE}", needle,
                  secrets=(SA_TOKEN, SA_TOKEN.split(".")[2]))
    assert aws.calls("GetAuthorizationToken") == 0
    assert cache_files(Path(kubelet_env["ECRCRED_CACHE_DIR"])) == {}


@pytest.mark.parametrize("action", ["AssumeRole", "AssumeRoleWithWebIdentity"])
def test_sts_throttling_and_5xx_are_retried_and_then_answered(ecrcred_bin, kubelet_env, aws,
                                                            tmp_path, action):
    env = dict(kubelet_env, ECRCRED_CONFIG=str(role_config(tmp_path)))
    req = pod_request() if action == "AssumeRoleWithWebIdentity" else request(f"{ECR}/app")
    aws.fault(action, status=400, code="Throttling", times=1)
    aws.fault(action, status=503, code="ServiceUnavailable", times=1)
    result = exec_provider(ecrcred_bin, req, env)
    assert result.returncode == 0, result.stderr.decode()
    assert check_response(result.stdout, req)["auth"][ECR]["password"] == MOTO_PASSWORD
    assert aws.calls(action) == 3


@pytest.mark.parametrize("action", ["AssumeRole", "AssumeRoleWithWebIdentity"])
def test_sts_5xx_that_persists_is_one_clear_error(ecrcred_bin, kubelet_env, aws, tmp_path,
                                                  action):
    env = dict(kubelet_env, ECRCRED_CONFIG=str(role_config(tmp_path)))
    req = pod_request() if action == "AssumeRoleWithWebIdentity" else request(f"{ECR}/app")
    aws.fault(action, status=500, code="InternalFailure", times=50)
    result = exec_provider(ecrcred_bin, req, env)
    clean_failure(result, 1, f"sts:{action} of {ROLE}", "InternalFailure",
                  secrets=(SA_TOKEN, EXTERNAL_ID))
    assert aws.calls(action) == 4
    assert aws.calls("GetAuthorizationToken") == 0


STS_SECRET = "sts-Secret-Access-Key-from-a-cut-reply"


@pytest.mark.parametrize("action", ["AssumeRole", "AssumeRoleWithWebIdentity"])
@pytest.mark.parametrize(("status", "reply"), [
    (200, f"<{{a}}Response><{{a}}Result><Credentials><AccessKeyId>ASIACUT</AccessKeyId>"
          f"<SecretAccessKey>{STS_SECRET}</SecretAccessKey><SessionToken>FwoGZX"),
    (200, "<{a}Response><{a}Result></{a}Result></{a}Response>"),
    (502, "<html><body>Bad Gateway</body></html>"),
], ids=["truncated-with-credentials", "no-credentials", "proxy-502-html"])
def test_an_sts_reply_that_is_cut_or_not_sts_is_a_clear_error_and_leaks_no_secret(
        ecrcred_bin, kubelet_env, aws, tmp_path, action, status, reply):
    # Before the fix a cut reply was "internal error: ResponseParserError: ... b'<...>'", with
    # the reply, secret access key and all, on the kubelet's log.
    env = dict(kubelet_env, ECRCRED_CONFIG=str(role_config(tmp_path)))
    req = pod_request() if action == "AssumeRoleWithWebIdentity" else request(f"{ECR}/app")
    aws.fault(action, status=status, raw=reply.format(a=action), content_type="text/xml",
              times=50)
    result = exec_provider(ecrcred_bin, req, dict(env, ECRCRED_LOG_LEVEL="debug"))
    clean_failure(result, 1, f"sts:{action} of {ROLE}", secrets=(STS_SECRET, SA_TOKEN))
    assert aws.calls("GetAuthorizationToken") == 0


def test_ecr_denied_to_an_assumed_role_says_the_role_needs_the_permission(
        ecrcred_bin, kubelet_env, aws, tmp_path):
    env = dict(kubelet_env, ECRCRED_CONFIG=str(role_config(tmp_path)))
    aws.fault(code="AccessDeniedException", status=400, times=5)
    result = exec_provider(ecrcred_bin, request(f"{ECR}/app"), env)
    line = clean_failure(result, 1, "[AWS_ACCESS_DENIED]", secrets=(EXTERNAL_ID,))
    assert aws.calls("AssumeRole") == 1
    assert "the role assumed for this registry" in line and "node's AWS identity" not in line


# -- a hung API under a burst ---------------------------------------------------------------------

def test_a_burst_behind_a_hung_token_api_all_end_by_the_deadline_and_the_next_one_works(
        ecrcred_bin, kubelet_env, aws):
    aws.fault(status=0, delay_ms=15000, times=50)  # every call hangs past botocore's timeout
    env = dict(kubelet_env, ECRCRED_TIMEOUT="3")
    started = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: exec_provider(ecrcred_bin, request(f"{ECR}/i{i}"), env),
                                range(6)))
    # One holds the lock and hits our deadline inside botocore's retries (4 attempts of a 3 s
    # read timeout would take 12 s); the others give up waiting for its lock before that.
    assert time.monotonic() - started < 10, "nobody may outlive the 3 s deadline by much"
    lines = [clean_failure(result, 5, "[DEADLINE]") for result in results]
    assert sum("another ecrcred process" in line for line in lines) >= 1, lines
    aws.reset()
    after = exec_provider(ecrcred_bin, request(f"{ECR}/app"), env)
    assert after.returncode == 0, after.stderr.decode()
