"""The boto3 adapters' error mapping: what AWS (or whatever answers in its place) says is
repeated bounded, escaped and without any secret ecrcred knows of; a reply botocore cannot read
is AWS_BAD_REPLY, not an internal error."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import Credentials, DeferredRefreshableCredentials
from botocore.exceptions import CredentialRetrievalError, EndpointConnectionError
from botocore.stub import Stubber
from botocore.utils import parse_timestamp

from ecrcred.ecrhost import EcrRegistry, parse_ecr_host
from ecrcred.errors import AwsError, WiringError
from ecrcred.sources.aws import (
    MAX_CODE_TEXT,
    AwsCredentials,
    BotoEcrApi,
    BotoStsApi,
    call_aws,
    chain_secrets,
)

ACCOUNT = "123456789012"
HOST = f"{ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/puller"
# The node's own keys, as the kubelet's provider config would pass them.
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYnodeSECRETkey"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjENodeSessionToken" + "x" * 300
NODE_ENV = {"AWS_ACCESS_KEY_ID": "AKIANODEKEY000000001", "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_SESSION_TOKEN": SESSION_TOKEN, "PATH": "/usr/bin"}
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def registry() -> EcrRegistry:
    parsed = parse_ecr_host(HOST)
    assert parsed is not None
    return parsed


@pytest.fixture
def node_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore reads os.environ, and the adapters refuse any other environment: the node's
    keys there (and no stray endpoint)."""
    for name, value in NODE_ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL_STS",
                 "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def ecr_error(api: BotoEcrApi, code: str, message: str,
              credentials: AwsCredentials | None = None) -> AwsError:
    client = api._client(registry(), credentials)
    with Stubber(client) as stub:
        stub.add_client_error("get_authorization_token", code, message)
        with pytest.raises(AwsError) as caught:
            api.get_authorization_token(registry(), credentials)
    return caught.value


def assert_one_clean_line(error: AwsError, *absent: str) -> str:
    line = error.one_line()
    assert not CONTROL.search(line), line
    for text in absent:
        assert text not in line
    return line


# -- the server's text: bounded and escaped ----------------------------------------------------

def test_a_huge_aws_error_message_is_cut_to_about_200_characters(node_keys: None):
    error = ecr_error(BotoEcrApi(os.environ), "AccessDeniedException", "A" * 300_000)
    line = assert_one_clean_line(error)
    assert "A" * 200 in line and "A" * 201 not in line
    assert "(cut, 300000 chars)" in line
    assert len(line) < 800
    assert error.code == "AWS_ACCESS_DENIED"


def test_control_characters_in_an_aws_error_message_are_escaped_not_emitted(node_keys: None):
    message = "denied\x1b[2J\nfake: line\r\nbell\x07"
    line = assert_one_clean_line(ecr_error(BotoEcrApi(os.environ), "AccessDeniedException",
                                           message))
    assert r"denied\x1b[2J\nfake: line\r\nbell\x07" in line


@pytest.mark.parametrize(("code", "ours"), [
    ("AccessDeniedException", "AWS_ACCESS_DENIED"),
    ("Throttling", "AWS_THROTTLING"),
    ("Evil] [OK\x1b[2J", "AWS_EVIL_O_K2_J"),
    ("Ünïcode", "AWS_NCODE"),
    ("\n\t", "AWS_UNKNOWN"),
    ("B" * 10_000, "AWS_" + "_".join("B" * MAX_CODE_TEXT)),
])
def test_an_aws_error_code_is_quoted_and_our_code_keeps_only_its_letters_and_digits(
        node_keys: None, code: str, ours: str):
    error = ecr_error(BotoEcrApi(os.environ), code, "no")
    line = assert_one_clean_line(error)
    assert error.code == ours
    assert re.fullmatch(r"AWS_[A-Z0-9_]+", error.code)
    assert line.endswith(f"[{ours}]")
    assert len(line) < 1200


def test_a_botocore_error_quoting_a_credentials_endpoint_is_bounded_and_escaped():
    def call() -> Any:
        raise CredentialRetrievalError(provider="container-role",
                                       error_msg="Received: \x1b[2J" + "Z" * 100_000)

    with pytest.raises(AwsError) as caught:
        call_aws("ecr:GetAuthorizationToken for x", call, lambda code: "")
    line = assert_one_clean_line(caught.value)
    assert caught.value.code == "AWS_CLIENT"
    assert r"\x1b[2J" in line and "Z" * 201 not in line


def test_an_unreachable_endpoint_is_named_bounded_and_escaped():
    def call() -> Any:
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9/\x1b[2J" + "p" * 1000)

    with pytest.raises(AwsError) as caught:
        call_aws("ecr:GetAuthorizationToken for x", call, lambda code: "")
    line = assert_one_clean_line(caught.value)
    assert caught.value.code == "AWS_UNREACHABLE"
    assert "http://127.0.0.1:9/" in line and "p" * 201 not in line


# -- secrets: removed before the text is cut ---------------------------------------------------

@pytest.mark.parametrize("secret", [SECRET_KEY, SESSION_TOKEN], ids=["secret-key", "session"])
@pytest.mark.parametrize("at", [0, 190], ids=["whole", "across-the-cut"])
def test_the_nodes_environment_secrets_echoed_by_aws_never_reach_the_message(
        node_keys: None, secret: str, at: int):
    # Cut at 200 characters, a secret starting at 190 would leave its first 10 behind, where
    # the logger's scrub no longer sees it whole.
    message = "m" * at + secret + " trailing"
    line = assert_one_clean_line(ecr_error(BotoEcrApi(os.environ), "AccessDeniedException",
                                           message), secret[:10])
    assert "<redacted>" in line


def test_secrets_the_credential_chain_resolved_are_removed_too(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    # The environment names no secret: only botocore's chain (a credentials file here, IMDS or
    # a container endpoint on a node) knows this session token.
    for name in (*NODE_ENV, "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR"):
        monkeypatch.delenv(name, raising=False)
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {NODE_ENV['AWS_ACCESS_KEY_ID']}\n"
                           f"aws_secret_access_key = {SECRET_KEY}\n"
                           f"aws_session_token = {SESSION_TOKEN}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent"))
    api = BotoEcrApi(os.environ)
    line = assert_one_clean_line(ecr_error(api, "AccessDeniedException",
                                           "m" * 150 + SESSION_TOKEN), SESSION_TOKEN[:5])
    assert "<redacted>" in line


def test_an_assumed_roles_secrets_echoed_by_ecr_never_reach_the_message(node_keys: None):
    assumed = AwsCredentials("ASIAASSUMED000000001", "assumed-secret-access-key-value",
                             "assumed-session-token-" + "t" * 200, None)
    error = ecr_error(BotoEcrApi(os.environ), "AccessDeniedException",
                      "m" * 192 + assumed.session_token + assumed.secret_access_key, assumed)
    assert_one_clean_line(error, assumed.session_token[:8], assumed.secret_access_key)


def test_a_pods_token_echoed_by_sts_never_reaches_the_message(node_keys: None):
    token = "eyJhbGciOiJSUzI1NiJ9." + "p" * 600 + ".signature"
    api = BotoStsApi(os.environ)
    client = api._client("us-west-2")
    with Stubber(client) as stub:
        stub.add_client_error("assume_role_with_web_identity", "InvalidIdentityToken",
                              "m" * 195 + token)
        with pytest.raises(AwsError) as caught:
            api.assume_role_with_web_identity(ROLE, "ecrcred", token, "us-west-2")
    assert_one_clean_line(caught.value, token[:8])


class _Session:
    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials

    def get_credentials(self) -> Any:
        return self.credentials


def test_chain_secrets_are_what_the_chain_holds():
    held = Credentials("AKIAHELD", "held-secret-key", "held-session-token")
    assert chain_secrets(_Session(held)) == ["held-secret-key", "held-session-token"]
    assert chain_secrets(_Session(None)) == []
    assert chain_secrets(None) == []


def test_chain_secrets_never_fetch_or_refresh_credentials():
    # An error path must not call AWS again: credentials still to be fetched give none.
    fetched: list[int] = []

    def refresh() -> dict[str, str]:
        fetched.append(1)
        return {"access_key": "AKIA", "secret_key": "s" * 20, "token": "t" * 20,
                "expiry_time": "2000-01-01T00:00:00Z"}

    deferred = DeferredRefreshableCredentials(refresh, "assume-role")
    assert chain_secrets(_Session(deferred)) == []
    assert fetched == []


# -- replies botocore cannot read ---------------------------------------------------------------

@pytest.mark.parametrize("value", [1e20, -1e20, 1e12, float("nan")])
def test_an_expiry_no_datetime_can_hold_is_a_bad_reply_not_an_internal_error(value: float):
    # botocore's own timestamp parser, as it reads ECR's expiresAt (1e20: RuntimeError).
    with pytest.raises(AwsError) as caught:
        call_aws("ecr:GetAuthorizationToken for x", lambda: parse_timestamp(value),
                 lambda code: "")
    assert caught.value.code == "AWS_BAD_REPLY"
    assert "AWS_ENDPOINT_URL" in caught.value.hint


def test_a_reply_nested_deeper_than_the_parser_goes_is_a_bad_reply():
    def call() -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    with pytest.raises(AwsError) as caught:
        call_aws("ecr:GetAuthorizationToken for x", call, lambda code: "")
    assert caught.value.code == "AWS_BAD_REPLY"


# -- the environment botocore reads ----------------------------------------------------------

@pytest.mark.parametrize("make", [BotoEcrApi, BotoStsApi], ids=["ecr", "sts"])
@pytest.mark.parametrize("differ", ["HOME", "AWS_PROFILE", "AWS_SECRET_ACCESS_KEY",
                                    "AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL_NEWSERVICE"])
def test_an_environment_botocore_would_not_read_is_refused_as_a_wiring_bug(
        node_keys: None, make: Any, differ: str):
    # The cache key is made of the environment ecrcred was given; botocore reads the process's.
    # A difference in a variable that decides identity or endpoints would file a token under
    # an identity it was not fetched as, so no session is made.
    env = dict(os.environ)
    env[differ] = "/somewhere/else"
    api = make(env)
    with pytest.raises(WiringError, match=differ):
        api._client(registry(), None) if make is BotoEcrApi else api._client("us-west-2")


def test_a_copy_of_the_process_environment_and_other_variables_are_accepted(node_keys: None):
    env = dict(os.environ, LANG="C.UTF-8", AWS_REGION="eu-west-1", HTTPS_PROXY="http://p:3128")
    client = BotoEcrApi(env)._client(registry(), None)
    assert client.meta.region_name == "us-west-2"
