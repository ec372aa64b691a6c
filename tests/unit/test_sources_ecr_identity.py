"""The ECR source's registry choice (rule options) and identity (node, assumed role, pod role),
the node identity's cache digest (every input that selects credentials or the endpoint), and the
boto STS adapter."""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from ecrcred.cache import file_stem
from ecrcred.config import DEFAULT_ROLE_ANNOTATIONS
from ecrcred.config.rules import DEFAULT_POD_IDENTITY, EcrOptions, PodIdentityPolicy
from ecrcred.ecrhost import parse_ecr_host
from ecrcred.errors import (
    AwsError,
    ConfigError,
    CredentialError,
    IdentityDenied,
    WiringError,
)
from ecrcred.files import sha256_hex
from ecrcred.records import CacheKey, Lookup, Pod
from ecrcred.sources.aws import AwsCredentials, BotoStsApi
from ecrcred.sources.ecr import (
    ROLE_ENV,
    EcrSource,
    credential_files,
    identity_digest,
    subject_label,
    token_subject,
)
from tests.unit.fakes import T0, FakeClock, FakeEcrApi, RecordingLogger

HOUR = 3600.0
ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
HOST = f"{ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com"
IMAGE = f"{HOST}/team/app"
CUSTOM = "registry.corp.example"
ENV = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID0001", "PATH": "/usr/bin"}

ROLE_A = f"arn:aws:iam::{ACCOUNT}:role/puller-a"
ROLE_B = f"arn:aws:iam::{ACCOUNT}:role/puller-b"
ROLE_C = f"arn:aws:iam::{OTHER_ACCOUNT}:role/team/puller-c"
ECR_ANNOTATION, ROLE_ANNOTATION = DEFAULT_ROLE_ANNOTATIONS
EXTERNAL_ID = "external-id-value-9f8e7d"
ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"


# -- helpers ----------------------------------------------------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(sub: str = "system:serviceaccount:team:puller", iss: str = ISSUER,
        **claims: Any) -> str:
    """A service-account token of the real shape: base64url JSON header and claims, unpadded,
    and an opaque signature (never verified)."""
    header = {"alg": "RS256", "kid": "3f2a9c0b8e1d"}
    body = {"aud": ["sts.amazonaws.com"], "exp": int(T0) + 3600, "iat": int(T0), "iss": iss,
            "kubernetes.io": {"namespace": "team", "serviceaccount": {"name": "puller"}},
            "nbf": int(T0), "sub": sub, **claims}
    signature = b64url(sha256_hex(json.dumps(body).encode()).encode() * 4)
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(body).encode()),
                     signature])


TOKEN = jwt()


def credentials(n: int = 1) -> AwsCredentials:
    return AwsCredentials(f"ASIAEXAMPLEKEY{n:06d}", f"secret-access-key-value-{n:04d}",
                          f"session-token-value-{n:04d}", T0 + HOUR)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class FakeStsApi:
    """The StsApi seam: records every call and hands out fresh credentials for each."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.issued: list[AwsCredentials] = []
        self._error = error

    def _issue(self) -> AwsCredentials:
        if self._error is not None:
            raise self._error
        self.issued.append(credentials(len(self.issued) + 1))
        return self.issued[-1]

    def assume_role(self, role_arn: str, session_name: str, external_id: str | None,
                    region: str) -> AwsCredentials:
        self.calls.append(("assume_role", role_arn, session_name, external_id, region))
        return self._issue()

    def assume_role_with_web_identity(self, role_arn: str, session_name: str, token: str,
                                      region: str) -> AwsCredentials:
        self.calls.append(("web_identity", role_arn, session_name, token, region))
        return self._issue()


def policy(annotations: tuple[str, ...] = DEFAULT_ROLE_ANNOTATIONS, role_arn: str | None = None,
           fallback: str = "node", session_name: str = "ecrcred-pods") -> PodIdentityPolicy:
    return PodIdentityPolicy(annotations, role_arn, fallback, session_name)


def ecr_source(*, api: FakeEcrApi | None = None, sts: FakeStsApi | None = None,
               options: EcrOptions | None = None,
               pod_policy: PodIdentityPolicy = DEFAULT_POD_IDENTITY,
               env: Mapping[str, str] = ENV, log: RecordingLogger | None = None) -> EcrSource:
    return EcrSource(api or FakeEcrApi(), env, FakeClock(), log or RecordingLogger(),
                     sts=sts if sts is not None else FakeStsApi(), options=options,
                     pod_policy=pod_policy)


def pod(token: str = TOKEN, **annotations: str) -> Pod:
    return Pod(token, annotations)


def annotated(role: str, name: str = ECR_ANNOTATION, token: str = TOKEN) -> Pod:
    return Pod(token, {name: role})


def lookup_of(source: EcrSource, image: str = IMAGE, p: Pod | None = None) -> Lookup:
    found = source.lookup(image, p)
    assert found is not None
    return found


def key_of(source: EcrSource, p: Pod | None = None, image: str = IMAGE) -> CacheKey:
    key = lookup_of(source, image, p).cache_key
    assert key is not None
    return key


# -- registry_for: which registry's tokens open a host ----------------------------------------

@pytest.mark.parametrize(("host", "options", "expected"), [
    pytest.param(HOST, EcrOptions(), HOST, id="plain-ecr-host"),
    pytest.param(HOST, EcrOptions(account=ACCOUNT, region="us-west-2"), HOST,
                 id="ecr-host-with-its-own-account-and-region"),
    pytest.param(CUSTOM, EcrOptions(account=ACCOUNT, region="us-west-2"), HOST,
                 id="custom-domain"),
    pytest.param("mirror.corp.example:5000", EcrOptions(account=ACCOUNT, region="eu-central-1"),
                 f"{ACCOUNT}.dkr.ecr.eu-central-1.amazonaws.com", id="custom-domain-with-port"),
    pytest.param(CUSTOM, EcrOptions(account=ACCOUNT, region="cn-north-1"),
                 f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn", id="custom-domain-china"),
    pytest.param(CUSTOM, EcrOptions(account=ACCOUNT, region="us-gov-west-1", fips=True),
                 f"{ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.com", id="custom-domain-fips"),
    pytest.param(CUSTOM, EcrOptions(account=ACCOUNT, region="us-west-2", dualstack=True),
                 f"{ACCOUNT}.dkr-ecr.us-west-2.on.aws", id="custom-domain-dualstack"),
    pytest.param(CUSTOM, EcrOptions(account=ACCOUNT, region="us-east-1", fips=True,
                                    dualstack=True),
                 f"{ACCOUNT}.dkr-ecr-fips.us-east-1.on.aws", id="custom-domain-fips-dualstack"),
    pytest.param(CUSTOM, EcrOptions(account=ACCOUNT, region="cn-northwest-1", dualstack=True),
                 f"{ACCOUNT}.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn",
                 id="custom-domain-china-dualstack"),
    pytest.param(HOST, EcrOptions(fips=True), f"{ACCOUNT}.dkr.ecr-fips.us-west-2.amazonaws.com",
                 id="fips-override"),
    pytest.param(f"{ACCOUNT}.dkr.ecr-fips.us-west-2.amazonaws.com", EcrOptions(fips=False), HOST,
                 id="fips-off-override"),
    pytest.param(HOST, EcrOptions(dualstack=True), f"{ACCOUNT}.dkr-ecr.us-west-2.on.aws",
                 id="dualstack-override"),
    pytest.param(f"{ACCOUNT}.dkr-ecr.us-west-2.on.aws", EcrOptions(dualstack=False), HOST,
                 id="dualstack-off-override"),
    pytest.param(f"{ACCOUNT}.dkr-ecr-fips.us-west-2.on.aws", EcrOptions(),
                 f"{ACCOUNT}.dkr-ecr-fips.us-west-2.on.aws", id="host-flags-kept-by-default"),
    pytest.param(HOST, EcrOptions(account=OTHER_ACCOUNT),
                 f"{OTHER_ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com", id="account-override"),
    pytest.param(HOST, EcrOptions(region="us-east-2"),
                 f"{ACCOUNT}.dkr.ecr.us-east-2.amazonaws.com", id="region-override"),
    pytest.param("public.ecr.aws", EcrOptions(account=ACCOUNT, region="eu-west-1", fips=True,
                                              dualstack=True), "public.ecr.aws",
                 id="public-ignores-overrides"),
    pytest.param("ecr-public.aws.com", EcrOptions(account=ACCOUNT, region="eu-west-1",
                                                  dualstack=False), "ecr-public.aws.com",
                 id="public-dualstack-ignores-overrides"),
])
def test_registry_for_maps_a_host_and_the_rule_options_to_an_ecr_registry(
        host: str, options: EcrOptions, expected: str):
    registry = ecr_source(options=options).registry_for(host)
    assert registry == parse_ecr_host(expected)


@pytest.mark.parametrize(("host", "options"), [
    pytest.param(CUSTOM, EcrOptions(), id="no-options"),
    pytest.param(CUSTOM, EcrOptions(account=ACCOUNT), id="account-only"),
    pytest.param(CUSTOM, EcrOptions(region="us-west-2"), id="region-only"),
    pytest.param(CUSTOM, EcrOptions(fips=True, dualstack=True, role_arn=ROLE_A), id="flags-only"),
    pytest.param(f"{HOST}.evil.example", EcrOptions(region="us-west-2"),
                 id="lookalike-host-region-only"),
])
def test_registry_for_a_non_ecr_host_without_account_and_region_is_none(
        host: str, options: EcrOptions):
    source = ecr_source(options=options)
    assert source.registry_for(host) is None
    assert source.lookup(f"{host}/app") is None


@pytest.mark.parametrize(("options", "says"), [
    pytest.param(EcrOptions(account=ACCOUNT, region="cn-north-1", fips=True),
                 "no FIPS ECR endpoint in region cn-north-1", id="fips-in-china"),
    pytest.param(EcrOptions(account=ACCOUNT, region="us-iso-east-1", fips=True),
                 "no FIPS ECR endpoint in region us-iso-east-1", id="fips-in-iso"),
    pytest.param(EcrOptions(account=ACCOUNT, region="us-iso-east-1", dualstack=True),
                 "us-iso-east-1", id="dualstack-in-iso"),
    pytest.param(EcrOptions(account=ACCOUNT, region="mars-1"), "mars-1", id="unknown-region"),
])
def test_an_impossible_registry_combination_is_a_config_error(options: EcrOptions, says: str):
    source = ecr_source(options=options)
    with pytest.raises(ConfigError) as caught:
        source.registry_for(CUSTOM)
    assert caught.value.code == "BAD_CONFIG"
    assert CUSTOM in caught.value.message
    assert says in caught.value.message
    assert caught.value.hint
    with pytest.raises(ConfigError):
        source.lookup(f"{CUSTOM}/app")


def test_a_fips_override_on_a_china_host_is_a_config_error():
    with pytest.raises(ConfigError, match="FIPS"):
        ecr_source(options=EcrOptions(fips=True)).registry_for(
            f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn")


def test_a_custom_domain_answers_under_its_own_name_with_the_real_registry_behind_it():
    api = FakeEcrApi()
    source = ecr_source(api=api, options=EcrOptions(account=ACCOUNT, region="us-west-2"))
    lookup = lookup_of(source, f"{CUSTOM}/team/app")
    assert lookup.auth_key == CUSTOM
    assert lookup.cache_key == CacheKey(f"ecr:{HOST}", identity_digest(ENV))
    assert f"ECR registry {HOST}" in lookup.describe
    token = lookup.fetch()
    assert token.password == "ecr-password-value"
    ((registry, who),) = api.calls
    assert registry.host == HOST
    assert (registry.account, registry.region, registry.partition) == (ACCOUNT, "us-west-2",
                                                                       "aws")
    assert who is None


def test_a_custom_domain_shares_the_cache_entry_of_the_registry_it_fronts():
    source = ecr_source(options=EcrOptions(account=ACCOUNT, region="us-west-2"))
    assert key_of(source, image=f"{CUSTOM}/app") == key_of(ecr_source(), image=IMAGE)


def test_an_ecr_host_with_overrides_keeps_its_own_name_as_the_auth_key():
    api = FakeEcrApi()
    source = ecr_source(api=api, options=EcrOptions(account=OTHER_ACCOUNT, fips=True))
    lookup = lookup_of(source)
    assert lookup.auth_key == HOST
    lookup.fetch()
    assert api.calls[0][0].host == f"{OTHER_ACCOUNT}.dkr.ecr-fips.us-west-2.amazonaws.com"


# -- who asks: node, assumed role, pod role ----------------------------------------------------

def test_the_node_identity_calls_ecr_with_no_credentials_and_no_sts():
    api, sts, log = FakeEcrApi(), FakeStsApi(), RecordingLogger()
    lookup = lookup_of(ecr_source(api=api, sts=sts, log=log))
    lookup.fetch()
    assert api.calls == [(parse_ecr_host(HOST), None)]
    assert sts.calls == []
    assert log.secrets == ["ecr-password-value"]
    assert " as " not in lookup.describe


# The regional STS endpoint of the registry's region is in the registry's partition (aws-cn,
# aws-us-gov): the region alone says where the role is assumed.
@pytest.mark.parametrize(("host", "region"), [
    (HOST, "us-west-2"),
    (f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn", "cn-north-1"),
    (f"{ACCOUNT}.dkr.ecr-fips.us-gov-east-1.amazonaws.com", "us-gov-east-1"),
    ("public.ecr.aws", "us-east-1"),
])
def test_a_rule_role_is_assumed_in_the_registry_region(host: str, region: str):
    api, sts = FakeEcrApi(), FakeStsApi()
    options = EcrOptions(role_arn=ROLE_A, external_id=EXTERNAL_ID, session_name="node-pull")
    lookup = lookup_of(ecr_source(api=api, sts=sts, options=options), f"{host}/app")
    assert sts.calls == [], "the role is assumed only on a cache miss, in fetch"
    lookup.fetch()
    assert sts.calls == [("assume_role", ROLE_A, "node-pull", EXTERNAL_ID, region)]
    assert api.calls == [(parse_ecr_host(host), sts.issued[0])]
    assert f"role {ROLE_A} (assumed by the node)" in lookup.describe


def test_a_rule_role_without_external_id_passes_none():
    sts = FakeStsApi()
    lookup_of(ecr_source(sts=sts, options=EcrOptions(role_arn=ROLE_A))).fetch()
    assert sts.calls == [("assume_role", ROLE_A, "ecrcred", None, "us-west-2")]


def test_a_role_without_an_sts_client_is_a_wiring_error():
    source = EcrSource(FakeEcrApi(), ENV, FakeClock(), RecordingLogger(),
                       options=EcrOptions(role_arn=ROLE_A))
    with pytest.raises(WiringError, match="no STS client"):
        source.lookup(IMAGE)


@pytest.mark.parametrize(("annotations", "role"), [
    pytest.param({ECR_ANNOTATION: ROLE_A, ROLE_ANNOTATION: ROLE_B}, ROLE_A, id="ecr-role-wins"),
    pytest.param({ROLE_ANNOTATION: ROLE_B}, ROLE_B, id="role-arn-alone"),
    pytest.param({ECR_ANNOTATION: "", ROLE_ANNOTATION: ROLE_B}, ROLE_B, id="empty-skipped"),
    pytest.param({ECR_ANNOTATION: "  \t", ROLE_ANNOTATION: ROLE_B}, ROLE_B, id="blank-skipped"),
    pytest.param({ECR_ANNOTATION: f"  {ROLE_C}\n"}, ROLE_C, id="whitespace-trimmed"),
    pytest.param({ECR_ANNOTATION: "arn:aws-cn:iam::123456789012:role/cn-puller"},
                 "arn:aws-cn:iam::123456789012:role/cn-puller", id="china-arn"),
])
def test_the_pod_role_comes_from_the_first_non_empty_role_annotation(
        annotations: dict[str, str], role: str):
    api, sts = FakeEcrApi(), FakeStsApi()
    lookup = lookup_of(ecr_source(api=api, sts=sts, pod_policy=policy()), p=Pod(TOKEN,
                                                                                 annotations))
    assert sts.calls == []
    lookup.fetch()
    assert sts.calls == [("web_identity", role, "ecrcred-pods", TOKEN, "us-west-2")]
    assert api.calls == [(parse_ecr_host(HOST), sts.issued[0])]
    assert f"role {role} for system:serviceaccount:team:puller" in lookup.describe


@pytest.mark.parametrize(("order", "role"), [
    pytest.param(("example.com/pull-role", ECR_ANNOTATION, ROLE_ANNOTATION), ROLE_C,
                 id="custom-first"),
    pytest.param((ROLE_ANNOTATION, ECR_ANNOTATION), ROLE_B, id="role-arn-first"),
    pytest.param((ECR_ANNOTATION,), ROLE_A, id="ecr-only"),
])
def test_the_annotation_order_is_the_policy_order(order: tuple[str, ...], role: str):
    sts = FakeStsApi()
    annotations = {ECR_ANNOTATION: ROLE_A, ROLE_ANNOTATION: ROLE_B, "example.com/pull-role": ROLE_C}
    source = ecr_source(sts=sts, pod_policy=policy(annotations=order))
    lookup_of(source, p=Pod(TOKEN, annotations)).fetch()
    assert [call[1] for call in sts.calls] == [role]


def test_an_annotation_outside_the_policy_list_is_ignored():
    sts = FakeStsApi()
    source = ecr_source(sts=sts, pod_policy=policy(annotations=(ECR_ANNOTATION,)))
    lookup_of(source, p=annotated(ROLE_B, name=ROLE_ANNOTATION)).fetch()
    assert sts.calls == []


@pytest.mark.parametrize(("policy_role", "env_role", "role"), [
    pytest.param(ROLE_B, None, ROLE_B, id="policy-role"),
    pytest.param(None, ROLE_C, ROLE_C, id="env-role"),
    pytest.param(ROLE_B, ROLE_C, ROLE_B, id="policy-before-env"),
])
def test_without_an_annotation_the_policy_role_then_the_env_role_is_used(
        policy_role: str | None, env_role: str | None, role: str):
    sts = FakeStsApi()
    env = {**ENV, ROLE_ENV: env_role} if env_role else ENV
    source = ecr_source(sts=sts, env=env, pod_policy=policy(role_arn=policy_role))
    lookup_of(source, p=pod()).fetch()
    assert sts.calls == [("web_identity", role, "ecrcred-pods", TOKEN, "us-west-2")]


def test_an_annotation_wins_over_the_policy_and_env_roles():
    sts = FakeStsApi()
    source = ecr_source(sts=sts, env={**ENV, ROLE_ENV: ROLE_C},
                        pod_policy=policy(role_arn=ROLE_B))
    lookup_of(source, p=annotated(ROLE_A)).fetch()
    assert [call[1] for call in sts.calls] == [ROLE_A]


def test_a_pod_role_wins_over_the_rule_role():
    sts = FakeStsApi()
    source = ecr_source(sts=sts, options=EcrOptions(role_arn=ROLE_B))
    lookup_of(source, p=annotated(ROLE_A)).fetch()
    assert [call[:2] for call in sts.calls] == [("web_identity", ROLE_A)]


@pytest.mark.parametrize(("options", "calls"), [
    pytest.param(EcrOptions(), [], id="node"),
    pytest.param(EcrOptions(role_arn=ROLE_B),
                 [("assume_role", ROLE_B, "ecrcred", None, "us-west-2")], id="rule-role"),
])
def test_no_pod_role_with_fallback_node_uses_the_node_identity(options: EcrOptions,
                                                               calls: list[tuple[object, ...]]):
    api, sts = FakeEcrApi(), FakeStsApi()
    source = ecr_source(api=api, sts=sts, options=options, pod_policy=policy(fallback="node"))
    lookup = lookup_of(source, p=pod(**{"example.com/unrelated": "x"}))
    lookup.fetch()
    assert sts.calls == calls
    assert api.calls[0][1] == (sts.issued[0] if calls else None)
    assert key_of(source, p=pod()) == key_of(source, p=None), "the same principal as no pod"


@pytest.mark.parametrize("options", [EcrOptions(), EcrOptions(role_arn=ROLE_B)])
def test_no_pod_role_with_fallback_deny_is_refused_before_any_call(options: EcrOptions):
    api, sts = FakeEcrApi(), FakeStsApi()
    source = ecr_source(api=api, sts=sts, options=options, pod_policy=policy(fallback="deny"))
    with pytest.raises(IdentityDenied) as caught:
        source.lookup(IMAGE, pod(**{ECR_ANNOTATION: "   "}))
    error = caught.value
    assert error.code == "IDENTITY_DENIED"
    assert isinstance(error, CredentialError)
    assert ECR_ANNOTATION in error.message
    assert ROLE_ANNOTATION in error.message
    assert "fallback: node" in error.hint
    assert TOKEN not in error.one_line()
    assert (api.calls, sts.calls) == ([], [])


def test_fallback_deny_still_serves_a_pod_that_names_a_role():
    sts = FakeStsApi()
    source = ecr_source(sts=sts, pod_policy=policy(fallback="deny"))
    lookup_of(source, p=annotated(ROLE_A)).fetch()
    assert [call[1] for call in sts.calls] == [ROLE_A]


def test_fallback_deny_applies_only_to_requests_that_carry_a_pod():
    api = FakeEcrApi()
    source = ecr_source(api=api, pod_policy=policy(fallback="deny", role_arn=ROLE_B))
    lookup_of(source, p=None).fetch()
    assert api.calls[0][1] is None


@pytest.mark.parametrize("value", [
    pytest.param("puller", id="bare-name"),
    pytest.param(f"arn:aws:iam::{ACCOUNT}:user/bob", id="user-arn"),
    pytest.param("arn:aws:iam::12345:role/short-account", id="short-account"),
    pytest.param("arn:aws:s3:::bucket/role", id="other-service"),
    pytest.param(f"arn:aws:iam::{ACCOUNT}:role/", id="no-role-name"),
    pytest.param(f"arn:aws:iam::{ACCOUNT}:role/a b", id="space-in-name"),
    pytest.param(f"{ROLE_A},{ROLE_B}", id="two-arns"),
    pytest.param(f"{ROLE_A}\nx", id="newline"),
])
def test_a_malformed_role_annotation_is_a_bad_role_error(value: str):
    sts = FakeStsApi()
    source = ecr_source(sts=sts)
    with pytest.raises(CredentialError) as caught:
        source.lookup(IMAGE, Pod(TOKEN, {ECR_ANNOTATION: value, ROLE_ANNOTATION: ROLE_B}))
    error = caught.value
    assert error.code == "BAD_ROLE"
    assert ECR_ANNOTATION in error.message
    assert "arn:<partition>:iam::<account>:role/<name>" in error.hint
    assert TOKEN not in error.one_line()
    assert sts.calls == []


def test_a_malformed_role_annotation_is_quoted_at_most_200_characters():
    value = "x" * 5000
    with pytest.raises(CredentialError) as caught:
        ecr_source().lookup(IMAGE, annotated(value))
    assert "x" * 200 in caught.value.message
    assert "x" * 201 not in caught.value.message


# -- cache keys: a token only ever goes back to the identity it was issued to ----------------

def test_different_pod_roles_have_different_cache_keys():
    source = ecr_source()
    assert key_of(source, annotated(ROLE_A)) != key_of(source, annotated(ROLE_B))


def test_the_same_role_for_different_service_accounts_has_different_cache_keys():
    source = ecr_source()
    first = annotated(ROLE_A, token=jwt(sub="system:serviceaccount:team:puller"))
    second = annotated(ROLE_A, token=jwt(sub="system:serviceaccount:other:puller"))
    third = annotated(ROLE_A, token=jwt(sub="system:serviceaccount:team:puller",
                                        iss="https://oidc.other-cluster.example"))
    keys = {key_of(source, p) for p in (first, second, third)}
    assert len(keys) == 3


def test_a_rotated_token_of_the_same_service_account_keeps_the_cache_key():
    source = ecr_source()
    first = annotated(ROLE_A, token=jwt())
    rotated = annotated(ROLE_A, token=jwt(iat=int(T0) + 1800, exp=int(T0) + 5400,
                                          jti="4a0b1e5d-rotated"))
    assert first.token != rotated.token
    assert key_of(source, first) == key_of(source, rotated)


def test_an_unreadable_token_is_keyed_by_its_digest():
    source = ecr_source()
    first = key_of(source, annotated(ROLE_A, token="opaque-token-one"))
    again = key_of(source, annotated(ROLE_A, token="opaque-token-one"))
    second = key_of(source, annotated(ROLE_A, token="opaque-token-two"))
    readable = key_of(source, annotated(ROLE_A))
    assert first == again
    assert len({first, second, readable}) == 3


def test_node_assumed_role_and_pod_role_identities_all_differ():
    node = key_of(ecr_source())
    assumed = key_of(ecr_source(options=EcrOptions(role_arn=ROLE_A)))
    web = key_of(ecr_source(), annotated(ROLE_A))
    assert len({node.identity, assumed.identity, web.identity}) == 3
    assert node.registry == assumed.registry == web.registry == f"ecr:{HOST}"


@pytest.mark.parametrize("options", [
    pytest.param(EcrOptions(role_arn=ROLE_A, external_id="another-external-id"),
                 id="external-id"),
    pytest.param(EcrOptions(role_arn=ROLE_A, external_id=EXTERNAL_ID, session_name="other"),
                 id="session-name"),
    pytest.param(EcrOptions(role_arn=ROLE_A), id="no-external-id"),
    pytest.param(EcrOptions(role_arn=ROLE_B, external_id=EXTERNAL_ID), id="role"),
])
def test_each_part_of_an_assumed_role_partitions_the_cache(options: EcrOptions):
    base = EcrOptions(role_arn=ROLE_A, external_id=EXTERNAL_ID)
    assert key_of(ecr_source(options=options)) != key_of(ecr_source(options=base))


def test_the_pod_identity_key_also_depends_on_the_node_environment():
    other_env = {**ENV, "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:5000"}
    assert (key_of(ecr_source(), annotated(ROLE_A))
            != key_of(ecr_source(env=other_env), annotated(ROLE_A)))


@pytest.mark.parametrize("p", [
    pytest.param(annotated(ROLE_A), id="jwt"),
    pytest.param(annotated(ROLE_A, token="opaque-service-account-token-value"), id="opaque"),
])
def test_no_secret_reaches_the_cache_key_or_the_description(p: Pod):
    options = EcrOptions(role_arn=ROLE_B, external_id=EXTERNAL_ID)
    lookups = [lookup_of(ecr_source(options=options), p=p),
               lookup_of(ecr_source(options=options), p=None)]
    signature = p.token.rsplit(".", 1)[-1]
    for lookup in lookups:
        key = lookup.cache_key
        assert key is not None
        for text in (key.registry, key.identity, file_stem(key), repr(key), lookup.describe):
            assert p.token not in text
            assert signature not in text
            assert EXTERNAL_ID not in text
    assert p.token not in repr(p)


def test_assumed_credentials_are_registered_as_secrets():
    log, sts = RecordingLogger(), FakeStsApi()
    lookup_of(ecr_source(sts=sts, log=log, options=EcrOptions(role_arn=ROLE_A))).fetch()
    (issued,) = sts.issued
    assert issued.secret_access_key in log.secrets
    assert issued.session_token in log.secrets
    assert "ecr-password-value" in log.secrets


def test_pod_credentials_are_registered_as_secrets():
    log, sts = RecordingLogger(), FakeStsApi()
    lookup_of(ecr_source(sts=sts, log=log), p=annotated(ROLE_A)).fetch()
    (issued,) = sts.issued
    assert {issued.secret_access_key, issued.session_token} <= set(log.secrets)
    assert all(TOKEN not in message for _level, message in log.lines)


def test_an_sts_failure_reaches_the_caller_and_ecr_is_not_called():
    api = FakeEcrApi()
    sts = FakeStsApi(error=AwsError("sts:AssumeRoleWithWebIdentity failed: AccessDenied"))
    lookup = lookup_of(ecr_source(api=api, sts=sts), p=annotated(ROLE_A))
    with pytest.raises(AwsError):
        lookup.fetch()
    assert api.calls == []


# -- token_subject ----------------------------------------------------------------------------

def test_token_subject_reads_issuer_and_subject_of_a_service_account_jwt():
    assert token_subject(TOKEN) == f"iss {ISSUER} sub system:serviceaccount:team:puller"


def test_token_subject_reads_claims_that_need_base64url_and_padding():
    # "?>" encodes to "/" and "+" in standard base64: the payload must be read as base64url.
    for filler in ("", "?", "??>", "???>>", "????>>>"):
        token = jwt(note=filler * 7)
        payload = token.split(".")[1]
        assert "=" not in payload
        assert token_subject(token) == f"iss {ISSUER} sub system:serviceaccount:team:puller"
    assert any(c in jwt(note="??>" * 7).split(".")[1] for c in "-_")


def _claims_token(claims: object) -> str:
    return f"{b64url(b'{}')}.{b64url(json.dumps(claims).encode())}.sig"


@pytest.mark.parametrize("token", [
    pytest.param("", id="empty"),
    pytest.param("not-a-jwt", id="no-dots"),
    pytest.param("a.b", id="two-parts"),
    pytest.param(f"{TOKEN}.extra", id="four-parts"),
    pytest.param("a.!!!!.c", id="payload-not-base64"),
    pytest.param(f"a.{b64url(b'not json')}.c", id="payload-not-json"),
    pytest.param(f"a.{b64url(bytes([0xFF, 0xFE, 0x7B]))}.c", id="payload-not-utf8"),
    pytest.param(_claims_token(["iss", "sub"]), id="claims-a-list"),
    pytest.param(_claims_token("iss sub"), id="claims-a-string"),
    pytest.param(_claims_token({"iss": ISSUER}), id="no-sub"),
    pytest.param(_claims_token({"sub": "system:serviceaccount:a:b"}), id="no-iss"),
    pytest.param(_claims_token({"iss": ISSUER, "sub": ""}), id="empty-sub"),
    pytest.param(_claims_token({"iss": ISSUER, "sub": 42}), id="sub-not-a-string"),
    pytest.param(_claims_token({"iss": ["x"], "sub": "s"}), id="iss-not-a-string"),
])
def test_token_subject_falls_back_to_a_digest_for_unreadable_tokens(token: str):
    subject = token_subject(token)
    assert subject == f"token-digest {sha256_hex(token.encode())[:32]}"
    assert re.fullmatch(r"token-digest [0-9a-f]{32}", subject)
    assert subject_label(subject) == "a service account whose token has no readable subject"


def test_token_subject_digests_differ_per_token():
    assert token_subject("garbage-one") != token_subject("garbage-two")


def test_subject_label_is_the_service_account_for_a_readable_token():
    assert subject_label(token_subject(TOKEN)) == "system:serviceaccount:team:puller"


def test_an_unreadable_token_is_described_without_its_digest_or_text():
    token = "opaque-service-account-token-value"
    lookup = lookup_of(ecr_source(), p=annotated(ROLE_A, token=token))
    assert "no readable subject" in lookup.describe
    assert sha256_hex(token.encode())[:32] not in lookup.describe


# -- BotoStsApi, through botocore's Stubber ----------------------------------------------------

EXPIRATION = datetime.datetime(2023, 11, 14, 23, 13, 20, tzinfo=datetime.UTC)
STS_CREDENTIALS = {"AccessKeyId": "ASIAEXAMPLESTUBBED01", "SecretAccessKey": "stub-secret-key",
                   "SessionToken": "stub-session-token", "Expiration": EXPIRATION}


class StubbedStsApi(BotoStsApi):
    """BotoStsApi with one client kept for a Stubber (the real one builds a client per call),
    remembering which region each call asked for."""

    def __init__(self) -> None:
        super().__init__(os.environ)
        self.client = super()._client("us-west-2")
        self.regions: list[str] = []

    def _client(self, region: str) -> Any:
        self.regions.append(region)
        return self.client


@pytest.fixture
def sts_api() -> StubbedStsApi:
    leaked = sorted(name for name in os.environ if name.startswith("AWS_ENDPOINT_URL"))
    assert leaked == [], f"unset {leaked}: botocore would route these tests through them"
    return StubbedStsApi()


@pytest.mark.parametrize(("region", "endpoint"), [
    ("us-west-2", "https://sts.us-west-2.amazonaws.com"),
    ("cn-north-1", "https://sts.cn-north-1.amazonaws.com.cn"),
    ("us-gov-west-1", "https://sts.us-gov-west-1.amazonaws.com"),
])
def test_boto_sts_uses_the_regional_endpoint_of_the_registry_region(region: str, endpoint: str):
    leaked = sorted(name for name in os.environ if name.startswith("AWS_ENDPOINT_URL"))
    assert leaked == []
    client = BotoStsApi(os.environ)._client(region)
    assert client.meta.endpoint_url == endpoint
    assert client.meta.region_name == region
    assert client.meta.config.retries["mode"] == "standard"


def test_boto_assume_role_passes_the_external_id_and_returns_the_credentials(
        sts_api: StubbedStsApi):
    with Stubber(sts_api.client) as stub:
        stub.add_response("assume_role", {"Credentials": STS_CREDENTIALS},
                          expected_params={"RoleArn": ROLE_A, "RoleSessionName": "node-pull",
                                           "ExternalId": EXTERNAL_ID})
        got = sts_api.assume_role(ROLE_A, "node-pull", EXTERNAL_ID, "cn-north-1")
        stub.assert_no_pending_responses()
    assert got == AwsCredentials("ASIAEXAMPLESTUBBED01", "stub-secret-key", "stub-session-token",
                                 EXPIRATION.timestamp())
    assert sts_api.regions == ["cn-north-1"]
    assert "stub-secret-key" not in repr(got)


@pytest.mark.parametrize("external_id", [None, ""])
def test_boto_assume_role_sends_no_external_id_when_none_is_given(
        sts_api: StubbedStsApi, external_id: str | None):
    with Stubber(sts_api.client) as stub:
        stub.add_response("assume_role", {"Credentials": STS_CREDENTIALS},
                          expected_params={"RoleArn": ROLE_A, "RoleSessionName": "ecrcred"})
        sts_api.assume_role(ROLE_A, "ecrcred", external_id, "us-west-2")
        stub.assert_no_pending_responses()


def test_boto_assume_role_with_web_identity_passes_the_token(sts_api: StubbedStsApi):
    with Stubber(sts_api.client) as stub:
        stub.add_response("assume_role_with_web_identity", {"Credentials": STS_CREDENTIALS},
                          expected_params={"RoleArn": ROLE_A, "RoleSessionName": "ecrcred-pods",
                                           "WebIdentityToken": TOKEN})
        got = sts_api.assume_role_with_web_identity(ROLE_A, "ecrcred-pods", TOKEN,
                                                    "us-gov-west-1")
        stub.assert_no_pending_responses()
    assert got.access_key_id == "ASIAEXAMPLESTUBBED01"
    assert got.expiration == EXPIRATION.timestamp()
    assert sts_api.regions == ["us-gov-west-1"]


def _assume(api: BotoStsApi) -> AwsCredentials:
    return api.assume_role(ROLE_A, "ecrcred", EXTERNAL_ID, "us-west-2")


def _assume_web(api: BotoStsApi) -> AwsCredentials:
    return api.assume_role_with_web_identity(ROLE_A, "ecrcred", TOKEN, "us-west-2")


@pytest.mark.parametrize(("operation", "call", "who"), [
    pytest.param("assume_role", _assume, "the node's AWS identity", id="assume-role"),
    pytest.param("assume_role_with_web_identity", _assume_web, "the pod's service account",
                 id="web-identity"),
])
def test_boto_sts_access_denied_names_the_trust_policy_and_no_secret(
        sts_api: StubbedStsApi, operation: str, call, who: str):
    with Stubber(sts_api.client) as stub:
        stub.add_client_error(operation, "AccessDenied",
                              f"Not authorized to perform sts:{operation}")
        with pytest.raises(AwsError) as caught:
            call(sts_api)
    error = caught.value
    assert error.code == "AWS_ACCESS_DENIED"
    assert ROLE_A in error.message
    assert "AccessDenied" in error.message
    assert "trust policy" in error.hint
    assert who in error.hint
    assert ROLE_A in error.hint
    line = error.one_line()
    assert TOKEN not in line
    assert TOKEN.split(".")[1] not in line
    assert EXTERNAL_ID not in line


def test_boto_sts_rejected_token_points_at_the_oidc_provider(sts_api: StubbedStsApi):
    with Stubber(sts_api.client) as stub:
        stub.add_client_error("assume_role_with_web_identity", "InvalidIdentityToken",
                              "No OpenIDConnect provider found in your account")
        with pytest.raises(AwsError) as caught:
            _assume_web(sts_api)
    assert caught.value.code == "AWS_INVALID_IDENTITY_TOKEN"
    assert "OIDC provider" in caught.value.hint
    assert TOKEN not in caught.value.one_line()


@pytest.mark.parametrize(("operation", "call", "reply"), [
    pytest.param("assume_role", _assume, {}, id="assume-role-no-credentials"),
    pytest.param("assume_role_with_web_identity", _assume_web, {}, id="web-no-credentials"),
    pytest.param("assume_role", _assume, {"AssumedRoleUser": {
        "AssumedRoleId": "AROAEXAMPLE:ecrcred", "Arn": f"{ROLE_A}/ecrcred"}},
        id="assume-role-user-only"),
])
def test_boto_sts_reply_without_credentials_is_an_aws_error(
        sts_api: StubbedStsApi, operation: str, call, reply: dict[str, Any]):
    with Stubber(sts_api.client) as stub:
        stub.add_response(operation, reply)
        with pytest.raises(AwsError) as caught:
            call(sts_api)
    assert caught.value.code == "AWS_EMPTY"
    assert "AWS_ENDPOINT_URL_STS" in caught.value.hint


def test_the_ecr_source_hands_the_pod_token_to_sts_and_its_credentials_to_ecr(
        sts_api: StubbedStsApi):
    api = FakeEcrApi()
    source = EcrSource(api, ENV, FakeClock(), RecordingLogger(), sts=sts_api,
                       pod_policy=policy())
    lookup = lookup_of(source, p=annotated(ROLE_B))
    with Stubber(sts_api.client) as stub:
        stub.add_response("assume_role_with_web_identity", {"Credentials": STS_CREDENTIALS},
                          expected_params={"RoleArn": ROLE_B, "RoleSessionName": "ecrcred-pods",
                                           "WebIdentityToken": TOKEN})
        lookup.fetch()
        stub.assert_no_pending_responses()
    ((_registry, who),) = api.calls
    assert who is not None
    assert (who.access_key_id, who.secret_access_key, who.session_token) == (
        "ASIAEXAMPLESTUBBED01", "stub-secret-key", "stub-session-token")


# -- the node's cache identity: every input that selects credentials or the endpoint -----------
# botocore reads os.environ, ecrcred passes its env on: the digest must change with each input
# botocore's credential chain and endpoint resolution act on, and with the files they read.

def node_env(home: Path, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin", "HOME": str(home), **extra}


def aws_file(home: Path, name: str, text: str) -> Path:
    path = home / ".aws" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(("name", "value"), [
    ("HOME", "/root"),
    ("AWS_PROFILE", "ops"),
    ("AWS_DEFAULT_PROFILE", "ops"),
    ("AWS_CONFIG_FILE", "/etc/aws/config"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/etc/aws/credentials"),
    ("AWS_CREDENTIAL_FILE", "/etc/aws/ec2-credentials"),
    ("BOTO_CONFIG", "/etc/aws/boto.cfg"),
    ("AWS_LOGIN_CACHE_DIRECTORY", "/var/cache/aws-login"),
    ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID0002"),
    ("AWS_SECRET_ACCESS_KEY", "another-secret-access-key"),
    ("AWS_SESSION_TOKEN", "another-session-token"),
    ("AWS_SECURITY_TOKEN", "another-session-token"),
    ("AWS_ROLE_ARN", ROLE_A),
    ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/token"),
    ("AWS_ROLE_SESSION_NAME", "operator"),
    ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc"),
    ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials"),
    ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-bearer-token"),
    ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/var/run/secrets/pod-identity/token"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1338"),
    ("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6"),
    ("AWS_IMDS_USE_IPV6", "true"),
    ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
    ("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:5000"),
    ("AWS_ENDPOINT_URL_ECR_PUBLIC", "http://127.0.0.1:5000"),
    ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:5000"),
    ("AWS_ENDPOINT_URL_SSO", "http://127.0.0.1:5000"),
    ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
    ("AWS_USE_FIPS_ENDPOINT", "true"),
    ("AWS_USE_DUALSTACK_ENDPOINT", "true"),
    ("AWS_STS_REGIONAL_ENDPOINTS", "legacy"),
    ("AWS_CA_BUNDLE", "/etc/ssl/proxy.pem"),
    ("AWS_DATA_PATH", "/opt/aws-models"),
    ("REQUESTS_CA_BUNDLE", "/etc/ssl/proxy.pem"),
])
def test_the_node_identity_changes_with_each_input_that_selects_credentials_or_the_endpoint(
        tmp_path: Path, name: str, value: str):
    env = node_env(tmp_path)
    changed = identity_digest({**env, name: value})
    assert changed != identity_digest(env), f"{name} set"
    assert changed != identity_digest({**env, name: value + "-2"}), f"{name} changed"


@pytest.mark.parametrize("name", ["HOME", "AWS_CONFIG_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                                  "AWS_SESSION_TOKEN"])
def test_an_empty_variable_is_not_an_unset_one(tmp_path: Path, name: str):
    # botocore tells them apart: HOME="" puts ~/.aws at /.aws, an empty AWS_CONFIG_FILE means no
    # config file, an empty container URI still selects the container provider.
    env = node_env(tmp_path)
    unset = {k: v for k, v in env.items() if k != name}
    assert identity_digest({**unset, name: ""}) != identity_digest(unset)


def test_two_homes_with_different_credentials_files_are_two_identities(tmp_path: Path):
    first, second = tmp_path / "a", tmp_path / "b"
    aws_file(first, "credentials", "[default]\naws_access_key_id = AKIAFIRST\n")
    aws_file(second, "credentials", "[default]\naws_access_key_id = AKIASECOND\n")
    assert identity_digest(node_env(first)) != identity_digest(node_env(second))


def test_a_home_and_no_home_are_two_identities(tmp_path: Path):
    # The kubelet under systemd has no HOME; an operator's sudo has HOME=/root.
    with_home = node_env(tmp_path)
    without = {k: v for k, v in with_home.items() if k != "HOME"}
    assert identity_digest(with_home) != identity_digest(without)


def test_home_counts_even_when_every_file_is_named_elsewhere(tmp_path: Path):
    # SSO's token cache, the sign-in cache and extra service models are under ~/.aws too.
    named = {"AWS_CONFIG_FILE": "/etc/aws/config", "AWS_SHARED_CREDENTIALS_FILE": "/etc/aws/c",
             "BOTO_CONFIG": "/etc/aws/boto.cfg"}
    assert (identity_digest(node_env(tmp_path / "a", **named))
            != identity_digest(node_env(tmp_path / "b", **named)))


def test_an_unchanged_environment_and_unchanged_files_are_the_same_identity(tmp_path: Path):
    aws_file(tmp_path, "credentials", "[default]\naws_access_key_id = AKIAFIRST\n")
    aws_file(tmp_path, "config", "[default]\nregion = us-west-2\n")
    env = node_env(tmp_path, AWS_PROFILE="default")
    assert identity_digest(env) == identity_digest(dict(env))
    assert identity_digest(env, ROLE_A) == identity_digest(dict(env), ROLE_A)


@pytest.mark.parametrize("name", ["credentials", "config"])
def test_an_edited_created_or_removed_shared_file_is_another_identity(tmp_path: Path, name: str):
    env = node_env(tmp_path)
    absent = identity_digest(env)
    path = aws_file(tmp_path, name, "[default]\naws_access_key_id = AKIAFIRST\n")
    created = identity_digest(env)
    path.write_text("[default]\naws_access_key_id = AKIASECOND-LONGER\n")
    edited = identity_digest(env)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # same size, another mtime
    touched = identity_digest(env)
    path.unlink()
    assert len({absent, created, edited, touched}) == 4
    assert identity_digest(env) == absent


def test_a_swapped_credentials_file_of_the_same_size_and_mtime_is_another_identity(
        tmp_path: Path):
    # The symlink is followed, as botocore follows it: the inode of what it points at counts.
    home = tmp_path / "home"
    first = aws_file(tmp_path, "first", "[default]\naws_access_key_id = AKIAFIRST\n")
    second = aws_file(tmp_path, "second", "[default]\naws_access_key_id = AKIASECND\n")
    for path in (first, second):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    link = home / ".aws" / "credentials"
    link.parent.mkdir(parents=True)
    link.symlink_to(first)
    before = identity_digest(node_env(home))
    link.unlink()
    link.symlink_to(second)
    assert identity_digest(node_env(home)) != before


@pytest.mark.parametrize(("variable", "default"), [
    ("AWS_CREDENTIAL_FILE", None),
    ("BOTO_CONFIG", None),
    ("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
    ("AWS_CONFIG_FILE", "config"),
])
def test_a_named_credential_file_is_fingerprinted_where_it_points(
        tmp_path: Path, variable: str, default: str | None):
    path = tmp_path / "elsewhere" / "file"
    path.parent.mkdir()
    env = node_env(tmp_path / "home", **{variable: str(path)})
    absent = identity_digest(env)
    path.write_text("[default]\naws_access_key_id = AKIAFIRST\n")
    assert identity_digest(env) != absent
    if default is not None:  # the file under HOME is no longer the one read
        before = identity_digest(env)
        aws_file(tmp_path / "home", default, "[default]\n")
        assert identity_digest(env) == before


def test_credential_files_are_resolved_as_botocore_resolves_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    env = {"HOME": "/home/op/", "CREDS": "/srv/creds", "AWS_CONFIG_FILE": "relative/config",
           "AWS_SHARED_CREDENTIALS_FILE": "${CREDS}/credentials",
           "AWS_CREDENTIAL_FILE": "~/$CREDS/ec2"}
    assert credential_files(env) == [
        str(tmp_path / "relative" / "config"),  # absolute, from the working directory
        "/srv/creds/credentials",  # $VAR, as botocore's configloader expands it
        "/home/op/$CREDS/ec2",  # ~ only: the EC2 credentials file is not expandvars'ed
        "/etc/boto.cfg",
        "/home/op/.boto",
    ]


def test_without_home_the_files_are_those_of_the_user_ecrcred_runs_as():
    import pwd

    home = pwd.getpwuid(os.getuid()).pw_dir.rstrip("/")
    files = credential_files({"PATH": "/usr/bin"})
    assert files[:2] == [f"{home}/.aws/config", f"{home}/.aws/credentials"]
    assert credential_files({"HOME": ""})[:2] == ["/.aws/config", "/.aws/credentials"]


@pytest.mark.parametrize(("name", "value"), [
    ("AWS_REGION", "eu-west-1"),
    ("AWS_DEFAULT_REGION", "eu-west-1"),
    ("AWS_RETRY_MODE", "adaptive"),
    ("AWS_MAX_ATTEMPTS", "9"),
    ("HTTPS_PROXY", "http://proxy.corp.example:3128"),
    ("AWS_SDK_LOAD_CONFIG", "1"),
])
def test_the_node_identity_ignores_what_only_changes_how_or_where_a_call_goes(
        tmp_path: Path, name: str, value: str):
    env = node_env(tmp_path)
    assert identity_digest({**env, name: value}) == identity_digest(env)


def test_the_secrets_of_the_environment_count_only_as_digests(tmp_path: Path):
    env = node_env(tmp_path, AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                   AWS_SESSION_TOKEN="IQoJb3JpZ2luX2VjEXAMPLETOKEN")
    digest = identity_digest(env)
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    assert digest != identity_digest({**env, "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2VjOTHER"})


def test_the_node_identity_only_stats_the_files_and_never_opens_them(tmp_path: Path):
    # A FIFO blocks whoever opens it for reading: the digest must come back all the same.
    (tmp_path / ".aws").mkdir()
    os.mkfifo(tmp_path / ".aws" / "credentials")
    done: list[str] = []
    worker = threading.Thread(target=lambda: done.append(identity_digest(node_env(tmp_path))),
                              daemon=True)
    worker.start()
    worker.join(10)
    assert done, "identity_digest opened ~/.aws/credentials"


def test_the_node_identity_loads_no_module(tmp_path: Path):
    # The kubelet's cache-hit path computes it: no botocore, nothing new at all.
    code = ("import sys\nfrom ecrcred.sources.ecr import identity_digest\n"
            "before = set(sys.modules)\n"
            f"identity_digest({{'HOME': {str(tmp_path)!r}, 'AWS_PROFILE': 'ops'}})\n"
            "print(sorted(set(sys.modules) - before))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"
