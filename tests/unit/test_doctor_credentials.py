"""Which rule and source answer for an image, and the token's life, through the real router and
sources over a fake ECR API and an in-memory token cache. Never a password in what is said."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ecrcred.config import API_VERSION, KIND
from ecrcred.config.rules import Config, Rule, defaults, from_compiled
from ecrcred.config.schema import compile_text
from ecrcred.doctor.credentials import check_credentials
from ecrcred.doctor.registry import RegistryLogin
from ecrcred.doctor.report import FAIL, OK, WARN, Check
from ecrcred.errors import AwsError
from ecrcred.records import Lookup, Pod
from ecrcred.router import Router, SourceFactory
from ecrcred.seams import CredentialSource
from ecrcred.tokens import Token
from tests.unit.fakes import (
    T0,
    DictCache,
    FakeClock,
    FakeEcrApi,
    RecordingLogger,
    UnusedStsApi,
)

PATH = "/etc/ecrcred/config.yaml"
ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
ECR_DESCRIBED = f"ECR registry {ECR} (account 123456789012, region us-west-2)"
ECR_PASSWORD = "ecr-password-do-not-print"
STATIC_PASSWORD = "static-password-do-not-print"
ENV = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID0001", "REGISTRY_PASSWORD": STATIC_PASSWORD}
HOUR = 3600.0


def config(*registries: dict[str, Any]) -> Config:
    if not registries:
        return defaults()
    doc = {"apiVersion": API_VERSION, "kind": KIND, "registries": list(registries)}
    return from_compiled(compile_text(json.dumps(doc), PATH), PATH, "flag --config")


STATIC = {"match": ["registry.example.com"],
          "static": {"username": "robot", "passwordEnv": "REGISTRY_PASSWORD"}}


class QuietSource:
    """A credential source that does not register its secret with the logger itself."""

    name = "quiet"

    def lookup(self, image: str, pod: Pod | None = None) -> Lookup | None:
        token = Token("quiet-user", "quiet-password-do-not-print", T0 + HOUR, T0)
        return Lookup(image.split("/", 1)[0], None, lambda: token, "a quiet source", 60)


class Factory(SourceFactory):
    """The real factory; a rule at a position in ``fakes`` gets that source instead."""

    def __init__(self, cfg: Config, log: RecordingLogger, clock: FakeClock, api: FakeEcrApi,
                 fakes: dict[int, CredentialSource]) -> None:
        super().__init__(cfg, ENV, clock, log, cwd="/nonexistent", ecr_api=api,
                         sts_api=UnusedStsApi())
        self.fakes = fakes

    def _build(self, rule: Rule) -> CredentialSource:
        return self.fakes.get(rule.position) or super()._build(rule)


class Doctor:
    """The real router and sources, a fake ECR API, a dict cache, a clock at T0."""

    def __init__(self, cfg: Config, api: FakeEcrApi | None = None,
                 fakes: dict[int, CredentialSource] | None = None) -> None:
        self.clock = FakeClock()
        self.log = RecordingLogger()
        self.api = api or FakeEcrApi(password=ECR_PASSWORD)
        self.cache = DictCache()
        factory = Factory(cfg, self.log, self.clock, self.api, fakes or {})
        self.router = Router(factory, self.log)

    def check(self, image: str) -> tuple[dict[str, Check], RegistryLogin | None]:
        checks, creds = check_credentials(image, self.router, self.cache, self.clock, self.log)
        for c in checks:
            text = f"{c.message} {c.fix} {c.details}"
            assert ECR_PASSWORD not in text and STATIC_PASSWORD not in text
        return {c.id: c for c in checks}, creds

    def cache_key(self, image: str) -> Any:
        found = self.router.lookup(image)
        assert found is not None and found.cache_key is not None
        return found.cache_key


def test_an_image_no_source_answers_for_warns_with_the_steps_taken():
    checks, creds = Doctor(config()).check("registry.example.com/app")
    assert creds is None
    assert list(checks) == ["credentials.rule"]
    rule = checks["credentials.rule"]
    assert rule.status == WARN
    assert rule.message == ("no rule and no built-in source gives credentials for "
                            "registry.example.com/app")
    assert "fine for a public registry" in rule.fix
    assert rule.details == ("registry.example.com/app: 0 of 0 rules of no config file match",
                            "built-in ECR source: registry.example.com is not an ECR host")


def test_an_ecr_token_not_yet_cached_is_fetched_and_handed_to_the_registry_check():
    doctor = Doctor(config())
    checks, creds = doctor.check(f"{ECR}/team/app")
    rule = checks["credentials.rule"]
    assert (rule.status, rule.message) == (OK, f"{ECR_DESCRIBED} (answer keyed by registry {ECR})")
    assert checks["credentials.rule"].details[-1] == f"built-in ECR source: {ECR_DESCRIBED}"
    token = checks["credentials.token"]
    assert token.status == OK
    assert token.message == ("user AWS, miss: no cached token yet; the token now in use expires "
                             "2023-11-15T10:13:20Z, in 12h00m")
    assert creds == RegistryLogin("AWS", ECR_PASSWORD, ECR_DESCRIBED)
    assert len(doctor.api.calls) == 1
    assert ECR_PASSWORD in doctor.log.secrets, "the CLI scrubs the report with these"


def test_a_fresh_cached_token_names_when_it_stops_being_fresh_and_is_used():
    doctor = Doctor(config())
    image = f"{ECR}/team/app"
    doctor.cache.tokens[doctor.cache_key(image)] = Token("AWS", ECR_PASSWORD, T0 + 6 * HOUR,
                                                         T0 - 6 * HOUR)
    checks, creds = doctor.check(image)
    assert checks["credentials.token"].message == (
        "user AWS, hit: cached token fresh until 2023-11-15T03:13:20Z, in 5h00m (expires "
        "2023-11-15T04:13:20Z, in 6h00m); the token now in use expires 2023-11-15T04:13:20Z, "
        "in 6h00m")
    assert len(doctor.api.calls) == 0
    assert creds is not None and creds.password == ECR_PASSWORD


def test_a_stale_cached_token_is_said_to_be_stale_and_replaced():
    doctor = Doctor(config())
    image = f"{ECR}/team/app"
    doctor.cache.tokens[doctor.cache_key(image)] = Token("AWS", "old", T0 + 0.5 * HOUR,
                                                         T0 - 11.5 * HOUR)
    checks, _ = doctor.check(image)
    assert checks["credentials.token"].message.startswith(
        "user AWS, miss: cached token is stale (expires 2023-11-14T22:43:20Z, in 0h30m); the "
        "token now in use expires 2023-11-15T10:13:20Z")
    assert len(doctor.api.calls) == 1


def test_a_failing_source_fails_the_token_check_with_its_hint_and_the_cache_state():
    error = AwsError("ECR GetAuthorizationToken for 123456789012 failed: AccessDeniedException",
                     hint="grant the node role ecr:GetAuthorizationToken")
    checks, creds = Doctor(config(), FakeEcrApi(error=error)).check(f"{ECR}/team/app")
    assert creds is None
    assert checks["credentials.rule"].status == OK
    token = checks["credentials.token"]
    assert token.status == FAIL
    assert token.message == f"{error.message} (no cached token yet)"
    assert token.fix == "grant the node role ecr:GetAuthorizationToken"


def test_an_expired_cached_token_is_named_when_the_source_fails():
    doctor = Doctor(config(), FakeEcrApi(error=AwsError("throttled", hint="wait")))
    image = f"{ECR}/team/app"
    doctor.cache.tokens[doctor.cache_key(image)] = Token("AWS", "old", T0 - 2 * 60, T0 - 12 * HOUR)
    token = doctor.check(image)[0]["credentials.token"]
    assert token.status == FAIL
    assert token.message == ("throttled (cached token is stale (expires 2023-11-14T22:11:20Z, "
                             "2 min ago))")


def test_a_rule_that_cannot_answer_fails_the_rule_check():
    ecr_elsewhere = {"match": ["registry.example.com"], "ecr": {}}
    checks, creds = Doctor(config(ecr_elsewhere)).check("registry.example.com/app")
    assert creds is None
    rule = checks["credentials.rule"]
    assert rule.status == FAIL
    assert rule.message.startswith("asking the rules for registry.example.com/app failed: "
                                   "registries[0] (ecr for registry.example.com) matches")
    assert rule.fix == "set ecr.account and ecr.region to say which ECR registry it fronts"


def test_a_direct_source_is_read_at_each_request_and_never_cached():
    doctor = Doctor(config(STATIC))
    checks, creds = doctor.check("registry.example.com/app")
    described = checks["credentials.rule"].message.split(" (answer keyed")[0]
    assert described.startswith("static credentials for registry.example.com (user robot")
    assert checks["credentials.token"].message == (
        f"user robot from {described}; read at each request, never cached by ecrcred")
    assert creds == RegistryLogin("robot", STATIC_PASSWORD, described)
    assert doctor.cache.loads == 0 and doctor.cache.stores == []


def test_an_answer_keyed_by_image_says_so():
    team = {**STATIC, "match": ["registry.example.com/team"]}
    checks, _ = Doctor(config(team)).check("registry.example.com/team/app")
    assert "(answer keyed by image registry.example.com)" in checks["credentials.rule"].message


def test_a_mirror_rule_answers_with_the_target_credentials_and_says_so():
    mirror = {"match": ["docker.io"], "mirrorOf": f"{ECR}/hub"}
    checks, creds = Doctor(config(mirror)).check("docker.io/library/alpine")
    assert checks["credentials.rule"].message == (
        f"{ECR_DESCRIBED}, handed to mirror docker.io (answer keyed by registry docker.io)")
    assert any("docker.io mirrors" in step for step in checks["credentials.rule"].details)
    assert creds is not None and creds.username == "AWS"


@pytest.mark.parametrize("image", [f"{ECR}/app", "registry.example.com/app"])
def test_the_password_is_never_in_a_check_but_always_registered_as_a_secret(image: str):
    doctor = Doctor(config(STATIC))
    checks, creds = doctor.check(image)
    assert creds is not None
    assert creds.password in doctor.log.secrets
    assert creds.password not in repr(list(checks.values())) + repr(creds)


def test_the_password_is_registered_as_a_secret_even_when_the_source_did_not():
    helper = {"match": ["registry.example.com"], "credentialHelper": {"name": "not-run"}}
    doctor = Doctor(config(helper), fakes={0: QuietSource()})
    checks, creds = doctor.check("registry.example.com/app")
    assert creds == RegistryLogin("quiet-user", "quiet-password-do-not-print", "a quiet source")
    assert doctor.log.secrets == ["quiet-password-do-not-print"]
    assert "quiet-password-do-not-print" not in repr(list(checks.values()))
