"""The ECR source: image to lookup, token decoding, expiry trust, identity, endpoint choice."""

from __future__ import annotations

import base64
import datetime
import os
import pwd
import re

import pytest
from botocore.stub import Stubber

from ecrcred.ecrhost import EcrRegistry, parse_ecr_host
from ecrcred.errors import AwsError, AwsThrottled, TokenDecodeError
from ecrcred.sources.aws import AuthorizationData, BotoEcrApi
from ecrcred.sources.ecr import (
    IDENTITY_ENV,
    EcrSource,
    decode_token,
    identity_digest,
)
from ecrcred.tokens import UNTRUSTED_EXPIRY_LIFETIME
from tests.unit.fakes import T0, FakeClock, FakeEcrApi, RecordingLogger

HOUR = 3600.0
ACCOUNT = "123456789012"
HOST = f"{ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com"
ENV = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID0001", "PATH": "/usr/bin"}


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def registry(host: str = HOST) -> EcrRegistry:
    parsed = parse_ecr_host(host)
    assert parsed is not None
    return parsed


def twelve_hour_reply(token: str = b64("AWS:ecr-password-value"), now: float = T0
                      ) -> AuthorizationData:
    return AuthorizationData(token, expires_at=now + 12 * HOUR, server_time=now)


def source(api: FakeEcrApi, env: dict[str, str] | None = None,
           clock: FakeClock | None = None, log: RecordingLogger | None = None) -> EcrSource:
    return EcrSource(api, ENV if env is None else env, clock or FakeClock(),
                     log or RecordingLogger())


# -- lookup -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("image", "registry_key", "describe"), [
    (f"{HOST}/team/app", f"ecr:{HOST}", f"ECR registry {HOST} (account 123456789012, "
                                        "region us-west-2)"),
    (f"{ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.com/app",
     f"ecr:{ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "region us-gov-west-1, FIPS)"),
    (f"{ACCOUNT}.dkr-ecr-fips.us-east-1.on.aws/app",
     f"ecr:{ACCOUNT}.dkr-ecr-fips.us-east-1.on.aws", "region us-east-1, FIPS dual-stack)"),
    ("public.ecr.aws/docker/library/alpine", "ecr-public:public.ecr.aws",
     "ECR Public registry public.ecr.aws"),
    ("ecr-public.aws.com/docker/library/alpine", "ecr-public:ecr-public.aws.com",
     "ECR Public registry ecr-public.aws.com"),
])
def test_lookup_claims_ecr_images_by_host(image: str, registry_key: str, describe: str):
    api = FakeEcrApi()
    lookup = source(api).lookup(image)
    assert lookup is not None
    assert lookup.auth_key == image.split("/", 1)[0]
    assert lookup.cache_key.registry == registry_key
    assert lookup.cache_key.identity == identity_digest(ENV)
    assert describe in lookup.describe
    assert api.asked == [], "a lookup alone never calls the API"


@pytest.mark.parametrize("image", [
    "docker.io/library/busybox",
    "registry.io/public.ecr.aws/app",
    f"registry.io/{HOST}/app",
    f"{HOST}.evil.example/app",
    f"{HOST}:443/app",
])
def test_lookup_returns_none_for_images_whose_host_is_not_ecr(image: str):
    assert source(FakeEcrApi()).lookup(image) is None


def test_a_private_image_with_public_ecr_in_its_path_stays_private():
    lookup = source(FakeEcrApi()).lookup(f"{HOST}/public.ecr.aws/docker/library/alpine")
    assert lookup is not None
    assert lookup.cache_key.registry == f"ecr:{HOST}"


def test_the_lookup_fetch_asks_the_api_for_the_image_registry():
    api = FakeEcrApi(twelve_hour_reply())
    lookup = source(api).lookup(f"{HOST}/app")
    assert lookup is not None
    lookup.fetch()
    assert api.asked == [registry()]


def test_lookup_registry_uses_the_given_auth_key_for_a_mirror():
    lookup = source(FakeEcrApi()).lookup_registry(registry(), auth_key="docker.io")
    assert lookup.auth_key == "docker.io"
    assert lookup.cache_key.registry == f"ecr:{HOST}"


# -- fetch ------------------------------------------------------------------------------------

def test_fetch_decodes_the_token_and_lays_its_expiry_on_our_clock():
    clock = FakeClock(now=T0)
    token = source(FakeEcrApi(twelve_hour_reply()), clock=clock).fetch(registry())
    assert (token.username, token.password) == ("AWS", "ecr-password-value")
    assert token.fetched_at == T0
    assert token.expires_at == T0 + 12 * HOUR


def test_fetch_measures_the_lifetime_on_the_server_clock():
    # The node's clock is two hours ahead of the registry's.
    server_now = T0 - 2 * HOUR
    reply = AuthorizationData(b64("AWS:pw-value"), expires_at=server_now + 12 * HOUR,
                              server_time=server_now)
    token = source(FakeEcrApi(reply), clock=FakeClock(now=T0)).fetch(registry())
    assert token.expires_at == T0 + 12 * HOUR


@pytest.mark.parametrize(("decoded", "password"), [
    ("AWS:simple-password", "simple-password"),
    ("AWS:pass:with:colons", "pass:with:colons"),
    ("AWS:trailing:", "trailing:"),
    ("AWS::leading-colon", ":leading-colon"),
])
def test_fetch_splits_the_token_at_the_first_colon(decoded: str, password: str):
    reply = twelve_hour_reply(token=b64(decoded))
    token = source(FakeEcrApi(reply)).fetch(registry())
    assert (token.username, token.password) == ("AWS", password)


def test_fetch_registers_the_password_as_a_secret_with_the_logger():
    log = RecordingLogger()
    source(FakeEcrApi(twelve_hour_reply()), log=log).fetch(registry())
    assert log.secrets == ["ecr-password-value"]


@pytest.mark.parametrize("token", [
    pytest.param("not base64 at all!", id="not-base64"),
    pytest.param("QVdTOnBhc3M", id="bad-padding"),
    pytest.param(b64("AWSpasswordwithoutcolon"), id="no-colon"),
    pytest.param(b64("AWS:"), id="empty-password"),
    pytest.param(b64(":password-value"), id="empty-username"),
    pytest.param(b64(b"AWS:\xff\xfe-not-utf8"), id="not-utf8"),
    pytest.param("", id="empty"),
])
def test_a_token_that_is_not_base64_user_password_raises_token_decode_error(token: str):
    log = RecordingLogger()
    reply = twelve_hour_reply(token=token)
    with pytest.raises(TokenDecodeError) as caught:
        source(FakeEcrApi(reply), log=log).fetch(registry())
    message = caught.value.one_line()
    assert HOST in message
    assert "base64 of user:password" in message
    if token:
        assert token not in message
    assert "password-value" not in message
    assert log.secrets == []


def test_decode_token_is_usable_on_its_own():
    assert decode_token(b64("AWS:a:b"), registry()) == ("AWS", "a:b")


@pytest.mark.parametrize(("expires_at", "server_time"), [
    pytest.param(None, T0, id="missing-expiry"),
    pytest.param(1_420_113_600.0, T0, id="moto-2015-expiry"),
    pytest.param(T0 - 60, None, id="past-expiry-no-date"),
])
def test_an_untrusted_expiry_is_cached_one_hour_with_one_warning(
        expires_at: float | None, server_time: float | None):
    log = RecordingLogger()
    reply = AuthorizationData(b64("AWS:pw-value"), expires_at, server_time)
    token = source(FakeEcrApi(reply), log=log, clock=FakeClock(now=T0)).fetch(registry())
    assert token.expires_at == T0 + UNTRUSTED_EXPIRY_LIFETIME
    (warning,) = log.at("warning")
    assert HOST in warning
    assert "pw-value" not in warning


def test_a_trusted_expiry_logs_no_warning():
    log = RecordingLogger()
    source(FakeEcrApi(twelve_hour_reply()), log=log).fetch(registry())
    assert log.at("warning") == []


def test_authorization_data_repr_hides_the_token():
    text = repr(twelve_hour_reply(token=b64("AWS:secret-password-value")))
    assert b64("AWS:secret-password-value") not in text
    assert "<redacted>" in text


# -- identity ---------------------------------------------------------------------------------

BASE_ENV = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID0001", "AWS_PROFILE": "nodes",
            "AWS_ENDPOINT_URL_ECR": "https://ecr.internal.example"}


@pytest.mark.parametrize(("name", "value"), [
    ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID0002"),
    ("AWS_ACCESS_KEY_ID", ""),
    ("AWS_PROFILE", "other-profile"),
    ("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:5000"),
    ("AWS_ENDPOINT_URL_ECR_PUBLIC", "http://127.0.0.1:5000"),
    ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/pull"),
    ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
])
def test_identity_digest_changes_with_each_identity_variable(name: str, value: str):
    changed = {**BASE_ENV, name: value}
    assert identity_digest(changed) != identity_digest(BASE_ENV)


@pytest.mark.parametrize(("name", "value"), [
    ("PATH", "/usr/local/bin"),
    ("AWS_REGION", "eu-west-1"),
    ("ECRCRED_CACHE_DIR", "/tmp/cache"),
])
def test_identity_digest_ignores_variables_that_do_not_choose_the_principal(name: str, value: str):
    assert identity_digest({**BASE_ENV, name: value}) == identity_digest(BASE_ENV)


def test_identity_digest_changes_with_the_role_arn():
    assert identity_digest(BASE_ENV, "arn:aws:iam::1:role/a") != identity_digest(BASE_ENV)
    assert (identity_digest(BASE_ENV, "arn:aws:iam::1:role/a")
            != identity_digest(BASE_ENV, "arn:aws:iam::1:role/b"))


def test_identity_digest_is_short_hex_and_contains_no_input_text():
    env = {name: f"value-of-{name.lower()}" for name in IDENTITY_ENV}
    digest = identity_digest(env, "arn:aws:iam::123456789012:role/pull")
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    for text in [*env.values(), "123456789012", "AKIA"]:
        assert text.lower() not in digest
    assert digest == identity_digest(dict(env), "arn:aws:iam::123456789012:role/pull")


def test_sources_with_different_identities_use_different_cache_keys():
    image = f"{HOST}/app"
    first = source(FakeEcrApi(), env={"AWS_PROFILE": "a"}).lookup(image)
    second = source(FakeEcrApi(), env={"AWS_PROFILE": "b"}).lookup(image)
    assert first is not None
    assert second is not None
    assert first.cache_key.registry == second.cache_key.registry
    assert first.cache_key != second.cache_key


# -- BotoEcrApi: endpoint choice, without network ---------------------------------------------

@pytest.fixture(scope="module")
def boto_api() -> BotoEcrApi:
    leaked = sorted(name for name in os.environ if name.startswith("AWS_ENDPOINT_URL"))
    assert leaked == [], f"unset {leaked}: botocore would route these tests through them"
    assert "AWS_USE_FIPS_ENDPOINT" not in os.environ
    assert "AWS_USE_DUALSTACK_ENDPOINT" not in os.environ
    return BotoEcrApi(os.environ)


@pytest.mark.parametrize(("host", "endpoint", "region"), [
    pytest.param(HOST, "https://api.ecr.us-west-2.amazonaws.com", "us-west-2", id="ipv4"),
    pytest.param(f"{ACCOUNT}.dkr.ecr-fips.us-west-2.amazonaws.com",
                 "https://ecr-fips.us-west-2.amazonaws.com", "us-west-2", id="fips"),
    pytest.param(f"{ACCOUNT}.dkr-ecr.us-west-2.on.aws", "https://ecr.us-west-2.api.aws",
                 "us-west-2", id="dualstack"),
    pytest.param(f"{ACCOUNT}.dkr-ecr-fips.us-west-2.on.aws", "https://ecr-fips.us-west-2.api.aws",
                 "us-west-2", id="dualstack-fips"),
    pytest.param(f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn",
                 "https://api.ecr.cn-north-1.amazonaws.com.cn", "cn-north-1", id="china"),
    pytest.param(f"{ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                 "https://ecr-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1",
                 id="govcloud-fips"),
    pytest.param("public.ecr.aws", "https://api.ecr-public.us-east-1.amazonaws.com", "us-east-1",
                 id="public"),
    pytest.param("ecr-public.aws.com", "https://ecr-public.us-east-1.api.aws", "us-east-1",
                 id="public-dualstack"),
])
def test_boto_client_uses_the_registry_region_and_its_fips_or_dualstack_endpoint(
        boto_api: BotoEcrApi, host: str, endpoint: str, region: str):
    client = boto_api._client(registry(host), None)
    assert client.meta.endpoint_url == endpoint
    assert client.meta.region_name == region


def test_boto_clients_are_reused_per_service_and_region(boto_api: BotoEcrApi):
    first = boto_api._client(registry(HOST), None)
    same_region = boto_api._client(registry("210987654321.dkr.ecr.us-west-2.amazonaws.com"), None)
    other_region = boto_api._client(registry(f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"), None)
    assert first is same_region
    assert first is not other_region


def test_boto_client_uses_standard_retries_unless_the_environment_sets_them(
        boto_api: BotoEcrApi):
    retries = boto_api._client(registry(), None).meta.config.retries
    assert retries["mode"] == "standard"


# -- BotoEcrApi: replies and errors, through botocore's own Stubber ----------------------------

EXPIRES = datetime.datetime(2023, 11, 15, 10, 13, 20, tzinfo=datetime.UTC)
DATE_HEADER = "Tue, 14 Nov 2023 22:13:20 GMT"  # T0


def test_boto_api_reads_token_expiry_and_server_date(boto_api: BotoEcrApi):
    client = boto_api._client(registry(), None)
    with Stubber(client) as stub:
        stub.add_response(
            "get_authorization_token",
            {"authorizationData": [{"authorizationToken": b64("AWS:pw"), "expiresAt": EXPIRES,
                                    "proxyEndpoint": f"https://{HOST}"}],
             "ResponseMetadata": {"HTTPHeaders": {"date": DATE_HEADER}}},
            expected_params={"registryIds": [ACCOUNT]},
        )
        data = boto_api.get_authorization_token(registry())
    assert data == AuthorizationData(b64("AWS:pw"), EXPIRES.timestamp(), T0)


def test_boto_api_calls_ecr_public_without_registry_ids(boto_api: BotoEcrApi):
    public = registry("public.ecr.aws")
    client = boto_api._client(public, None)
    with Stubber(client) as stub:
        stub.add_response(
            "get_authorization_token",
            {"authorizationData": {"authorizationToken": b64("AWS:pw"), "expiresAt": EXPIRES}},
            expected_params={},
        )
        data = boto_api.get_authorization_token(public)
    assert (data.token, data.expires_at, data.server_time) == (b64("AWS:pw"),
                                                               EXPIRES.timestamp(), None)


@pytest.mark.parametrize(("code", "our_code", "hint"), [
    ("AccessDeniedException", "AWS_ACCESS_DENIED", "allow ecr:GetAuthorizationToken"),
    ("ThrottlingException", "AWS_THROTTLING", "throttling"),
    ("InvalidParameterException", "AWS_INVALID_PARAMETER", "account 123456789012"),
    ("UnrecognizedClientException", "AWS_UNRECOGNIZED_CLIENT", "credentials are invalid"),
    ("ServerException", "AWS_SERVER", "--debug"),
])
def test_boto_api_turns_client_errors_into_aws_errors_with_a_hint(
        boto_api: BotoEcrApi, code: str, our_code: str, hint: str):
    client = boto_api._client(registry(), None)
    with Stubber(client) as stub:
        stub.add_client_error("get_authorization_token", code, "the service said no")
        with pytest.raises(AwsError) as caught:
            boto_api.get_authorization_token(registry())
    assert caught.value.code == our_code
    assert hint in caught.value.hint
    assert code in caught.value.message
    assert HOST in caught.value.message


@pytest.mark.parametrize(("code", "throttled"), [
    ("ThrottlingException", True),
    ("TooManyRequestsException", True),
    ("ServerException", False),
    ("AccessDeniedException", False),
])
def test_boto_api_marks_throttling_so_the_cache_can_hold_back(boto_api: BotoEcrApi, code: str,
                                                              throttled: bool):
    client = boto_api._client(registry(), None)
    with Stubber(client) as stub:
        stub.add_client_error("get_authorization_token", code, "Rate exceeded")
        with pytest.raises(AwsError) as caught:
            boto_api.get_authorization_token(registry())
    assert isinstance(caught.value, AwsThrottled) is throttled
    assert caught.value.code.startswith("AWS_")


def test_boto_api_reports_an_empty_reply(boto_api: BotoEcrApi):
    client = boto_api._client(registry(), None)
    with Stubber(client) as stub:
        stub.add_response("get_authorization_token", {"authorizationData": []})
        with pytest.raises(AwsError) as caught:
            boto_api.get_authorization_token(registry())
    assert caught.value.code == "AWS_EMPTY"


def test_an_unset_home_and_the_users_own_home_are_one_identity_any_other_home_another():
    # botocore expands "~" to HOME, else to the password database's home: the same files
    own = pwd.getpwuid(os.getuid()).pw_dir
    unset = {k: v for k, v in BASE_ENV.items() if k != "HOME"}
    assert identity_digest({**unset, "HOME": own}) == identity_digest(unset)
    assert identity_digest({**unset, "HOME": own + "/"}) == identity_digest(unset)
    assert identity_digest({**unset, "HOME": "/home/operator"}) != identity_digest(unset)
    assert identity_digest({**unset, "HOME": ""}) != identity_digest(unset)
