"""Whose token the shared cache serves, and what of AWS's text reaches the kubelet's log, with
``ecrcred get-credentials`` exec'd as the kubelet execs it against the AWS stand-in.

The cache is shared by every execution on the node: the kubelet's (no HOME under systemd, the
instance role), an operator's ``sudo ecrcred doctor`` or ``pull-sandbox`` (HOME=/root and its
``~/.aws``). A token is served only to the identity it was fetched as. The stand-in's
``tokens_per_caller`` makes each token name the access key it was issued to
(``AWS:token-for-<key id>``), so a test sees whose token it was given, and its faults make it
echo what an endpoint or a proxy could: the node's own secrets, control bytes, megabytes.
"""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from tests.faults.conftest import ECR
from tests.hostile.conftest import clean_failure
from tests.support.aws import AwsStandIn
from tests.support.kubelet import check_response, exec_provider, request

IMAGE = f"{ECR}/app"
# The node's own session token and secret key, as a provider config's env would carry them.
NODE_SECRET = "nodeSecretAccessKey/wJalrXUtnFEMI/K7MDENG"
NODE_SESSION = "IQoJb3JpZ2luX2VjNodeSessionToken" + "Q" * 120
IMDS_KEY = "test-key"  # moto's instance role


def password(result) -> str:
    assert result.returncode == 0, result.stderr.decode()
    doc = check_response(result.stdout, request(IMAGE))
    return str(doc["auth"][ECR]["password"])


def token_for(key_id: str) -> str:
    return f"token-for-{key_id}"


def home_with_keys(home: Path, key_id: str) -> Path:
    """A HOME whose ~/.aws/credentials holds ``key_id`` (as root's would after ``aws
    configure``)."""
    (home / ".aws").mkdir(parents=True)
    write_keys(home, key_id)
    return home


def write_keys(home: Path, key_id: str) -> None:
    (home / ".aws" / "credentials").write_text(
        f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = secret-of-{key_id}\n")


def file_env(kubelet_env: dict[str, str]) -> dict[str, str]:
    """The kubelet's environment without keys of its own: credentials come from the chain."""
    return {k: v for k, v in kubelet_env.items()
            if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}


def instance_role_env(kubelet_env: dict[str, str], aws: AwsStandIn) -> dict[str, str]:
    """The kubelet on an EC2 node: no HOME, no keys, the instance role from IMDS (the
    stand-in's)."""
    env = file_env(kubelet_env)
    del env["AWS_EC2_METADATA_DISABLED"]
    env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = aws.url
    return env


def calls(aws: AwsStandIn) -> int:
    return aws.calls("GetAuthorizationToken")


# -- whose token ---------------------------------------------------------------------------------

def test_an_operators_token_from_roots_home_is_never_served_to_the_kubelet(
        ecrcred_bin, kubelet_env, aws, tmp_path):
    # Without HOME, botocore reads the home of the user it runs as: this node's root must have
    # no ~/.aws of its own, or the kubelet below would not be on the instance role.
    root_home = pwd.getpwuid(os.getuid()).pw_dir
    assert not Path(root_home, ".aws").exists(), f"move {root_home}/.aws away for this test"
    aws.tokens_per_caller()
    kubelet = instance_role_env(kubelet_env, aws)
    assert "HOME" not in kubelet
    operator = dict(kubelet, HOME=str(home_with_keys(tmp_path / "root", "AKIDROOTOPERATOR0001")))

    # sudo ecrcred ... with HOME=/root fills the shared cache first
    assert password(exec_provider(ecrcred_bin, request(IMAGE), operator)) == token_for(
        "AKIDROOTOPERATOR0001")
    assert calls(aws) == 1
    # the kubelet is another identity: it fetches its own, as the instance role
    assert password(exec_provider(ecrcred_bin, request(IMAGE), kubelet)) == token_for(IMDS_KEY)
    assert calls(aws) == 2
    # and each is then served its own from the cache
    assert password(exec_provider(ecrcred_bin, request(IMAGE), kubelet)) == token_for(IMDS_KEY)
    assert password(exec_provider(ecrcred_bin, request(IMAGE), operator)) == token_for(
        "AKIDROOTOPERATOR0001")
    assert calls(aws) == 2


def test_two_homes_with_different_credentials_files_make_two_calls_and_each_gets_its_own(
        ecrcred_bin, kubelet_env, aws, tmp_path):
    aws.tokens_per_caller()
    first = dict(file_env(kubelet_env), HOME=str(home_with_keys(tmp_path / "a", "AKIDHOMEA00001")))
    second = dict(file_env(kubelet_env), HOME=str(home_with_keys(tmp_path / "b",
                                                                 "AKIDHOMEB00002")))
    assert password(exec_provider(ecrcred_bin, request(IMAGE), first)) == token_for(
        "AKIDHOMEA00001")
    assert password(exec_provider(ecrcred_bin, request(IMAGE), second)) == token_for(
        "AKIDHOMEB00002")
    assert calls(aws) == 2


def test_an_unchanged_home_is_served_from_the_cache(ecrcred_bin, kubelet_env, aws, tmp_path):
    aws.tokens_per_caller()
    env = dict(file_env(kubelet_env), HOME=str(home_with_keys(tmp_path / "h", "AKIDHOMEH00001")))
    for _ in range(2):
        assert password(exec_provider(ecrcred_bin, request(IMAGE), env)) == token_for(
            "AKIDHOMEH00001")
    assert calls(aws) == 1


def test_an_edited_credentials_file_is_another_identity(ecrcred_bin, kubelet_env, aws,
                                                         tmp_path):
    aws.tokens_per_caller()
    home = home_with_keys(tmp_path / "h", "AKIDBEFOREEDIT0001")
    env = dict(file_env(kubelet_env), HOME=str(home))
    assert password(exec_provider(ecrcred_bin, request(IMAGE), env)) == token_for(
        "AKIDBEFOREEDIT0001")
    write_keys(home, "AKIDAFTEREDIT00002")  # same length, same file: another size or mtime
    assert password(exec_provider(ecrcred_bin, request(IMAGE), env)) == token_for(
        "AKIDAFTEREDIT00002")
    assert calls(aws) == 2


# -- what of AWS's text reaches stderr -------------------------------------------------------------

@pytest.mark.parametrize("pad", [0, 185], ids=["whole", "across-the-cut"])
def test_the_nodes_secret_key_and_session_token_echoed_by_aws_are_not_printed(
        ecrcred_bin, kubelet_env, aws, pad):
    env = dict(kubelet_env, AWS_SECRET_ACCESS_KEY=NODE_SECRET, AWS_SESSION_TOKEN=NODE_SESSION)
    aws.fault(code="AccessDeniedException", status=400, times=5,
              message="e" * pad + f"{NODE_SESSION} signed with {NODE_SECRET}")
    result = exec_provider(ecrcred_bin, request(IMAGE), env)
    line = clean_failure(result, 1, ECR, "[AWS_ACCESS_DENIED]",
                         secrets=(NODE_SECRET, NODE_SESSION, NODE_SESSION[:12], NODE_SECRET[:12]))
    assert "<redacted>" in line


def test_a_300_kb_aws_error_message_with_control_bytes_is_one_bounded_escaped_line(
        ecrcred_bin, kubelet_env, aws):
    message = "denied\x1b[2J\r\nFAKE: ecrcred: info: all good\n" + "A" * 300_000
    aws.fault(code="AccessDenied\x1b]0;title\x07Exception", status=400, times=5, message=message)
    result = exec_provider(ecrcred_bin, request(IMAGE), kubelet_env)
    line = clean_failure(result, 1, ECR, r"denied\x1b[2J\r\nFAKE")
    err = result.stderr.decode()
    assert "\x1b" not in err and "\x07" not in err and "\r" not in err
    assert len(err.splitlines()) == 1, err[:2000]
    assert len(line) < 1200
    assert "(cut, " in line
    code = line.rsplit("[", 1)[1].rstrip("]")
    assert code.startswith("AWS_") and code.replace("_", "").isalnum(), line


@pytest.mark.parametrize("expires_at", [1e20, -1e20], ids=["1e20", "minus-1e20"])
def test_an_expiry_botocore_cannot_turn_into_a_time_is_a_bad_reply(
        ecrcred_bin, kubelet_env, aws, expires_at):
    body = {"authorizationData": [{"authorizationToken": "QVdTOnB3LWJhZC1leHBpcnk=",
                                   "expiresAt": expires_at,
                                   "proxyEndpoint": f"https://{ECR}"}]}
    assert "e+20" in json.dumps(body)
    aws.fault(body=body)
    result = exec_provider(ecrcred_bin, request(IMAGE), kubelet_env)
    clean_failure(result, 1, ECR, "[AWS_BAD_REPLY]", secrets=("pw-bad-expiry",))
    assert list(Path(kubelet_env["ECRCRED_CACHE_DIR"]).glob("*.json")) == []


def test_every_line_is_scrubbed_of_the_environments_secrets_whatever_printed_them(
        ecrcred_bin, kubelet_env, aws):
    # Not only AWS's replies: any message that repeats a value (here a flag's) holding one.
    env = dict(kubelet_env, AWS_SESSION_TOKEN=NODE_SESSION)
    result = exec_provider(ecrcred_bin, request(IMAGE), env,
                           args=("get-credentials", "--timeout", NODE_SESSION))
    line = clean_failure(result, 2, "[USAGE]", secrets=(NODE_SESSION,))
    assert "<redacted>" in line
    assert calls(aws) == 0
