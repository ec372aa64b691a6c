"""The router: the most specific rule answers, then the next, then the built-in ECR source;
mirrors, the answer's scope and cache duration, and sources built once, on first use."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ecrcred.config import API_VERSION, KIND
from ecrcred.config.rules import Config, Rule, defaults, from_compiled
from ecrcred.config.schema import compile_text
from ecrcred.ecrhost import parse_ecr_host
from ecrcred.errors import ConfigError, IdentityDenied
from ecrcred.imageref import registry_host
from ecrcred.records import CacheKey, Lookup, Pod
from ecrcred.router import MAX_MIRROR_HOPS, Router, SourceFactory
from ecrcred.seams import CredentialSource
from ecrcred.sources import DEFAULT_UNCACHED_DURATION
from ecrcred.sources.ecr import EcrSource
from ecrcred.tokens import Token
from tests.unit.fakes import T0, FakeClock, FakeEcrApi, RecordingLogger, UnusedStsApi

PATH = "/etc/ecrcred/config.yaml"
ACCOUNT = "123456789012"
ECR = f"{ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com"
ENV = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID0001", "PATH": "/usr/bin",
       "REGISTRY_PASSWORD": "static-password-value"}
ROLE = "arn:aws:iam::123456789012:role/image-puller"
POD = Pod("eyJhbGciOiJSUzI1NiJ9.service-account.signature", {})


# -- fakes --------------------------------------------------------------------------------------

class ScriptedSource:
    """A credential source answering for ``hosts`` (None: for every image), remembering each
    question with the pod it came with."""

    def __init__(self, name: str, hosts: set[str] | None = None, *,
                 cache_duration: int | None = DEFAULT_UNCACHED_DURATION,
                 per_image: bool = False) -> None:
        self.name = name
        self._hosts = hosts
        self._cache_duration = cache_duration
        self._per_image = per_image
        self.asked: list[tuple[str, Pod | None]] = []

    def lookup(self, image: str, pod: Pod | None = None) -> Lookup | None:
        self.asked.append((image, pod))
        host = registry_host(image)
        if self._hosts is not None and host not in self._hosts:
            return None
        token = Token("user", f"{self.name}-password", T0 + 3600, T0)
        return Lookup(
            auth_key=host,
            cache_key=CacheKey(registry=f"{self.name}:{host}", identity="test"),
            fetch=lambda: token,
            describe=f"{self.name} for {host}",
            cache_duration=self._cache_duration,
            per_image=self._per_image,
        )

    @property
    def images(self) -> list[str]:
        return [image for image, _ in self.asked]


class Factory(SourceFactory):
    """The real factory with fake AWS APIs, where the rules at the positions in ``fakes`` get
    those sources instead of real ones; every build is counted."""

    def __init__(self, config: Config, fakes: dict[int, CredentialSource] | None = None) -> None:
        self.ecr_api = FakeEcrApi(password="ecr-password")
        self.log = RecordingLogger()
        super().__init__(config, ENV, FakeClock(), self.log, cwd="/nonexistent",
                         ecr_api=self.ecr_api, sts_api=UnusedStsApi())
        self.fakes = fakes or {}
        self.builds: list[int] = []

    def _build(self, rule: Rule) -> CredentialSource:
        self.builds.append(rule.position)
        fake = self.fakes.get(rule.position)
        return fake if fake is not None else super()._build(rule)


def config(*registries: dict[str, Any], pod_identity: dict[str, Any] | None = None) -> Config:
    """A config compiled from these ``registries`` entries, as ``load_config`` would give it."""
    doc: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND, "registries": list(registries)}
    if pod_identity is not None:
        doc["podIdentity"] = pod_identity
    return from_compiled(compile_text(json.dumps(doc), PATH), PATH, "flag --config")


def fake_rule(*match: str, **extra: Any) -> dict[str, Any]:
    """A rule whose source the test replaces with a fake (a helper, so a real one never runs)."""
    return {"match": list(match), "credentialHelper": {"name": "not-to-be-run"}, **extra}


def mirror(match: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"match": [match], "mirrorOf": target, **extra}


def ecr_rule(match: str, **options: Any) -> dict[str, Any]:
    return {"match": [match], "ecr": options}


def router(cfg: Config, fakes: dict[int, CredentialSource] | None = None
           ) -> tuple[Router, Factory]:
    factory = Factory(cfg, fakes)
    return Router(factory, factory.log), factory


def answer(route: Router, image: str, pod: Pod | None = None) -> Lookup:
    found = route.lookup(image, pod)
    assert found is not None
    return found


# -- which rule answers ---------------------------------------------------------------------------

@pytest.mark.parametrize(("image", "answering"), [
    ("registry.example.com/team/app", "team"),
    ("registry.example.com/other", "host"),
    ("mirror.example.com/app", "wildcard"),
])
def test_the_most_specific_matching_rule_answers(image: str, answering: str):
    sources = {name: ScriptedSource(name) for name in ("wildcard", "host", "team")}
    cfg = config(fake_rule("*.example.com"), fake_rule("registry.example.com"),
                 fake_rule("registry.example.com/team"))
    route, _ = router(cfg, {0: sources["wildcard"], 1: sources["host"], 2: sources["team"]})
    found = answer(route, image)
    assert found.describe == f"{answering} for {registry_host(image)}"
    assert found.cache_key == CacheKey(f"{answering}:{registry_host(image)}", "test")
    assert found.fetch().password == f"{answering}-password"
    assert {name: source.images for name, source in sources.items()} == {
        name: [image] if name == answering else [] for name in sources}


def test_a_rule_with_nothing_for_the_image_hands_over_to_the_next_candidate():
    team = ScriptedSource("team", hosts=set())
    host = ScriptedSource("host")
    wildcard = ScriptedSource("wildcard")
    cfg = config(fake_rule("*.example.com"), fake_rule("registry.example.com"),
                 fake_rule("registry.example.com/team"))
    route, factory = router(cfg, {0: wildcard, 1: host, 2: team})
    found = answer(route, "registry.example.com/team/app")
    assert found.describe == "host for registry.example.com"
    assert (team.images, host.images, wildcard.images) == (
        ["registry.example.com/team/app"], ["registry.example.com/team/app"], [])
    assert factory.log.at("debug") == [
        "registry.example.com/team/app: registries[2] (credentialHelper for "
        "registry.example.com/team) has nothing; trying the next rule",
        "registry.example.com/team/app: registries[1] (credentialHelper for "
        "registry.example.com) answers",
    ]


def test_the_rule_source_is_asked_with_the_pod():
    source = ScriptedSource("host")
    route, _ = router(config(fake_rule("registry.example.com")), {0: source})
    answer(route, "registry.example.com/app", POD)
    assert source.asked == [("registry.example.com/app", POD)]


def test_an_ecr_host_no_rule_answers_for_goes_to_the_built_in_ecr_source():
    declining = ScriptedSource("declining", hosts=set())
    route, factory = router(config(fake_rule("*.dkr.ecr.*.amazonaws.com")), {0: declining})
    found = answer(route, f"{ECR}/team/app")
    assert declining.images == [f"{ECR}/team/app"]
    assert found.auth_key == ECR
    assert found.cache_key is not None
    assert found.cache_key.registry == f"ecr:{ECR}"
    assert found.cache_duration is None, "the ECR token's own freshness decides"
    assert found.fetch().password == "ecr-password"
    assert factory.ecr_api.asked == [parse_ecr_host(ECR)]


@pytest.mark.parametrize(("image", "registry"), [
    (f"{ECR}/app", f"ecr:{ECR}"),
    ("public.ecr.aws/docker/library/alpine", "ecr-public:public.ecr.aws"),
])
def test_without_a_config_ecr_hosts_are_still_answered(image: str, registry: str):
    route, factory = router(defaults())
    found = answer(route, image)
    assert found.auth_key == registry_host(image)
    assert found.cache_key is not None
    assert found.cache_key.registry == registry
    assert found.per_image is False
    assert factory.builds == []


def test_a_non_ecr_host_without_rules_gets_none():
    route, _ = router(defaults())
    assert route.lookup("registry.example.com/app") is None


def test_a_non_ecr_host_whose_rules_all_have_nothing_gets_none():
    declining = ScriptedSource("declining", hosts=set())
    other = ScriptedSource("other")
    route, _ = router(config(fake_rule("*.example.com"), fake_rule("other.example.com")),
                      {0: declining, 1: other})
    assert route.lookup("registry.example.com/app") is None
    assert declining.images == ["registry.example.com/app"]
    assert other.asked == [], "a rule that does not match is never asked"


def test_a_rule_that_does_not_match_is_never_built():
    route, factory = router(config(fake_rule("other.example.com"), fake_rule("*.example.com")),
                            {0: ScriptedSource("other"), 1: ScriptedSource("wildcard")})
    answer(route, "registry.example.com/app")
    assert factory.builds == [1]


# -- mirrors ------------------------------------------------------------------------------------

def test_a_mirror_answers_with_the_target_registry_credentials_under_its_own_host():
    route, factory = router(config(mirror("docker.io", f"{ECR}/docker-hub")))
    found = answer(route, "docker.io/library/alpine")
    assert found.auth_key == "docker.io"
    assert found.cache_key is not None
    assert found.cache_key.registry == f"ecr:{ECR}", "the target's token, cached as the target's"
    assert found.describe.endswith(", handed to mirror docker.io")
    assert f"ECR registry {ECR}" in found.describe
    assert found.fetch().password == "ecr-password"
    assert factory.ecr_api.asked == [parse_ecr_host(ECR)]


@pytest.mark.parametrize(("match", "target", "image", "asked"), [
    ("docker.io", f"{ECR}/docker-hub", "docker.io/library/alpine",
     f"{ECR}/docker-hub/library/alpine"),
    ("docker.io", f"{ECR}/docker-hub/", "docker.io/library/alpine",
     f"{ECR}/docker-hub/library/alpine"),
    ("docker.io", ECR, "docker.io/library/alpine", f"{ECR}/library/alpine"),
    ("ghcr.io/acme", f"{ECR}/github", "ghcr.io/acme/tools/cli", f"{ECR}/github/acme/tools/cli"),
    ("mirror.local:5000", f"{ECR}/local", "mirror.local:5000/team/app", f"{ECR}/local/team/app"),
    ("docker.io", f"{ECR}/docker-hub", "docker.io", f"{ECR}/docker-hub"),
])
def test_a_mirror_asks_for_the_repository_under_the_target_path(
        match: str, target: str, image: str, asked: str):
    target_source = ScriptedSource("target")
    route, _ = router(config(mirror(match, target), fake_rule(ECR)), {1: target_source})
    found = answer(route, image, POD)
    assert target_source.asked == [(asked, POD)]
    assert found.auth_key == registry_host(image)


def test_mirrors_may_chain_to_a_registry_that_answers():
    route, _ = router(config(mirror("a.example.com", "b.example.com/a"),
                             mirror("b.example.com", f"{ECR}/b")))
    found = answer(route, "a.example.com/app")
    assert found.auth_key == "a.example.com"
    assert found.describe.endswith("handed to mirror b.example.com, handed to mirror a.example.com")


@pytest.mark.parametrize("cfg", [
    pytest.param(config(mirror("a.example.com", "b.example.com"),
                        mirror("b.example.com", "a.example.com")), id="two-mirrors"),
    pytest.param(config(mirror("a.example.com", "a.example.com/cache")), id="own-host"),
])
def test_mirrors_that_lead_to_each_other_are_a_config_error(cfg: Config):
    route, _ = router(cfg)
    with pytest.raises(ConfigError) as caught:
        route.lookup("a.example.com/app")
    assert f"mirrors lead to each other more than {MAX_MIRROR_HOPS} times" in caught.value.message
    assert "(mirrorOf for " in caught.value.message
    assert "must not be another mirror's host" in caught.value.hint


def test_a_mirror_whose_target_nothing_answers_is_a_config_error_naming_the_rule():
    route, _ = router(config(fake_rule("quay.example.com"),
                             mirror("docker.io", "registry.example.com/hub")),
                      {0: ScriptedSource("quay")})
    with pytest.raises(ConfigError) as caught:
        route.lookup("docker.io/library/alpine")
    assert caught.value.message == (
        "registries[1] (mirrorOf for docker.io): nothing gives credentials for the mirror "
        "target registry.example.com")
    assert "point mirrorOf at an ECR registry or add a rule for the target" in caught.value.hint


@pytest.mark.parametrize(("mirror_duration", "expected"), [
    pytest.param(None, 120, id="target-rule-duration"),
    pytest.param("1h", 3600, id="mirror-rule-duration-wins"),
    pytest.param("0s", 0, id="mirror-zero-wins"),
])
def test_a_mirror_answer_keeps_the_target_rule_duration_unless_the_mirror_has_one(
        mirror_duration: str | None, expected: int):
    mirror_extra = {} if mirror_duration is None else {"cacheDuration": mirror_duration}
    cfg = config(mirror("docker.io", f"{ECR}/hub", **mirror_extra),
                 fake_rule(ECR, cacheDuration="2m"))
    route, _ = router(cfg, {1: ScriptedSource("target")})
    assert answer(route, "docker.io/library/alpine").cache_duration == expected


# -- ecr rules ----------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [
    pytest.param({}, id="no-options"),
    pytest.param({"account": "012345678901"}, id="account-only"),
    pytest.param({"region": "eu-west-1"}, id="region-only"),
    pytest.param({"roleArn": ROLE}, id="role-only"),
])
def test_an_ecr_rule_for_a_host_that_is_not_ecr_needs_account_and_region(
        options: dict[str, Any]):
    route, _ = router(config(ecr_rule("registry.example.com", **options)))
    with pytest.raises(ConfigError) as caught:
        route.lookup("registry.example.com/app")
    assert caught.value.message == (
        "registries[0] (ecr for registry.example.com) matches registry.example.com, which is "
        "not an ECR host name")
    assert caught.value.hint == (
        "set ecr.account and ecr.region to say which ECR registry it fronts")


def test_an_ecr_rule_for_a_custom_domain_answers_with_that_registry_under_the_domain():
    route, factory = router(config(ecr_rule("ecr.example.com", account="012345678901",
                                            region="eu-west-1")))
    found = answer(route, "ecr.example.com/team/app")
    target = "012345678901.dkr.ecr.eu-west-1.amazonaws.com"
    assert found.auth_key == "ecr.example.com"
    assert found.cache_key is not None
    assert found.cache_key.registry == f"ecr:{target}"
    assert found.fetch().password == "ecr-password"
    assert factory.ecr_api.asked == [parse_ecr_host(target)]


def test_an_ecr_rule_with_fips_maps_the_domain_to_the_fips_endpoint():
    route, _ = router(config(ecr_rule("ecr.example.com", account="012345678901",
                                      region="us-gov-west-1", fips=True)))
    found = answer(route, "ecr.example.com/app")
    assert found.cache_key is not None
    assert found.cache_key.registry == "ecr:012345678901.dkr.ecr-fips.us-gov-west-1.amazonaws.com"


def test_an_ecr_rule_passes_its_role_to_the_ecr_source():
    route, _ = router(config(ecr_rule("*.dkr.ecr.*.amazonaws.com", roleArn=ROLE)))
    found = answer(route, f"{ECR}/app")
    assert found.describe.endswith(f"as role {ROLE} (assumed by the node)")
    assert found.auth_key == ECR


@pytest.mark.parametrize("cfg", [
    pytest.param(config(pod_identity={"fallback": "deny"}), id="built-in-ecr"),
    pytest.param(config(ecr_rule("*.dkr.ecr.*.amazonaws.com"), pod_identity={"fallback": "deny"}),
                 id="ecr-rule"),
])
def test_the_pod_identity_policy_reaches_the_ecr_sources(cfg: Config):
    route, _ = router(cfg)
    with pytest.raises(IdentityDenied):
        route.lookup(f"{ECR}/app", POD)
    assert answer(route, f"{ECR}/app").auth_key == ECR, "without a pod, the node's identity"


def test_a_compiled_rule_of_an_unknown_source_is_a_config_error():
    cfg = Config(PATH, "flag --config", (Rule(0, ("registry.example.com",), "vault", {}, None),),
                 defaults().pod_identity)
    route, _ = router(cfg)
    with pytest.raises(ConfigError) as caught:
        route.lookup("registry.example.com/app")
    assert caught.value.message == (
        "registries[0] (vault for registry.example.com): unknown source 'vault'")
    assert "touch it" in caught.value.hint


# -- cache duration and scope ---------------------------------------------------------------------

@pytest.mark.parametrize(("rule_duration", "source_duration", "expected"), [
    pytest.param("1m", 300, 60, id="rule-overrides-source"),
    pytest.param(None, 300, 300, id="source-without-rule-duration"),
    pytest.param("0s", 300, 0, id="rule-zero-means-do-not-cache"),
    pytest.param("6h", None, 21600, id="rule-overrides-token-freshness"),
    pytest.param(None, None, None, id="token-freshness"),
])
def test_a_rule_cache_duration_overrides_the_source_answer(
        rule_duration: str | None, source_duration: int | None, expected: int | None):
    extra = {} if rule_duration is None else {"cacheDuration": rule_duration}
    source = ScriptedSource("host", cache_duration=source_duration)
    route, _ = router(config(fake_rule("registry.example.com", **extra)), {0: source})
    assert answer(route, "registry.example.com/app").cache_duration == expected


def test_an_ecr_rule_cache_duration_overrides_the_token_freshness():
    rule = {**ecr_rule("*.dkr.ecr.*.amazonaws.com"), "cacheDuration": "30m"}
    route, _ = router(config(rule))
    assert answer(route, f"{ECR}/app").cache_duration == 1800


@pytest.mark.parametrize(("extra", "expected"), [
    pytest.param({"cacheDuration": "2m"}, 120, id="rule-duration"),
    pytest.param({}, DEFAULT_UNCACHED_DURATION, id="default-uncached-duration"),
])
def test_a_real_static_rule_answers_with_the_rule_duration(extra: dict[str, Any], expected: int):
    rule = {"match": ["registry.example.com"],
            "static": {"username": "robot", "passwordEnv": "REGISTRY_PASSWORD"}, **extra}
    route, _ = router(config(rule))
    found = answer(route, "registry.example.com/app")
    assert found.cache_duration == expected
    assert found.fetch() == Token("robot", "static-password-value", T0 + expected, T0)


@pytest.mark.parametrize(("rules", "image", "per_image"), [
    pytest.param([fake_rule("registry.example.com")], "registry.example.com/app", False,
                 id="host-rule-only"),
    pytest.param([fake_rule("registry.example.com/team"), fake_rule("registry.example.com")],
                 "registry.example.com/other", True,
                 id="host-rule-answers-but-a-path-rule-exists"),
    pytest.param([fake_rule("registry.example.com/team")], "registry.example.com/team/app", True,
                 id="path-rule-answers"),
    pytest.param([fake_rule("other.example.com/team"), fake_rule("registry.example.com")],
                 "registry.example.com/app", False, id="path-rule-for-another-host"),
])
def test_the_answer_is_per_image_when_a_path_rule_exists_for_the_host(
        rules: list[dict[str, Any]], image: str, per_image: bool):
    fakes: dict[int, CredentialSource] = {i: ScriptedSource(f"s{i}") for i in range(len(rules))}
    route, _ = router(config(*rules), fakes)
    assert answer(route, image).per_image is per_image


def test_a_source_per_image_answer_stays_per_image():
    source = ScriptedSource("host", per_image=True)
    route, _ = router(config(fake_rule("registry.example.com")), {0: source})
    assert answer(route, "registry.example.com/app").per_image is True


def test_a_built_in_ecr_answer_is_per_image_when_a_path_rule_exists_for_the_host():
    route, _ = router(config(fake_rule(f"{ECR}/team")), {0: ScriptedSource("team", set())})
    assert answer(route, f"{ECR}/other").per_image is True


def test_a_mirror_answer_is_per_image_when_a_path_rule_exists_for_the_mirror_host():
    route, _ = router(config(mirror("docker.io", f"{ECR}/hub"),
                             fake_rule("docker.io/acme")), {1: ScriptedSource("acme")})
    assert answer(route, "docker.io/library/alpine").per_image is True
    route, _ = router(config(mirror("docker.io", f"{ECR}/hub")))
    assert answer(route, "docker.io/library/alpine").per_image is False


# -- building sources -----------------------------------------------------------------------------

def test_a_rule_source_is_built_once_and_reused():
    rule = {"match": ["registry.example.com"],
            "static": {"username": "robot", "passwordEnv": "REGISTRY_PASSWORD"}}
    route, factory = router(config(rule))
    for image in ("registry.example.com/a", "registry.example.com/b", "registry.example.com/a"):
        answer(route, image)
    assert factory.builds == [0]
    the_rule = factory.config.rules[0]
    assert factory.source(the_rule) is factory.source(the_rule)


def test_the_built_in_ecr_source_is_built_once():
    route, factory = router(defaults())
    answer(route, f"{ECR}/a")
    first = factory.default_ecr()
    answer(route, f"{ECR}/b")
    assert factory.default_ecr() is first
    assert isinstance(first, EcrSource)


@pytest.mark.parametrize(("rule", "kind"), [
    pytest.param({"match": ["r.io"], "static": {"username": "u", "passwordFile": "/run/pw"}},
                 "static", id="static"),
    pytest.param({"match": ["r.io"], "dockerConfig": {}}, "dockerConfig", id="docker-config"),
    pytest.param({"match": ["r.io"], "credentialHelper": {"name": "gcloud"}}, "credentialHelper",
                 id="credential-helper"),
    pytest.param({"match": ["r.io"], "ecr": {"account": ACCOUNT, "region": "us-west-2"}}, "ecr",
                 id="ecr"),
])
def test_each_source_kind_is_built_from_its_compiled_options(rule: dict[str, Any], kind: str):
    factory = Factory(config(rule))
    assert factory.source(factory.config.rules[0]).name == kind


# -- explain: the steps behind an answer, for doctor ----------------------------------------------

def test_explain_lists_the_matching_rules_in_precedence_order_and_each_answer():
    team = ScriptedSource("team", hosts=set())
    host = ScriptedSource("host")
    wildcard = ScriptedSource("wildcard")
    cfg = config(fake_rule("*.example.com"), fake_rule("registry.example.com"),
                 fake_rule("registry.example.com/team"), fake_rule("other.example.com"))
    route, _ = router(cfg, {0: wildcard, 1: host, 2: team, 3: ScriptedSource("other")})
    found, steps = route.explain("registry.example.com/team/app")
    assert found is not None and found.describe == "host for registry.example.com"
    assert steps == [
        f"registry.example.com/team/app: 3 of 4 rules of {PATH} match (most specific first: "
        "registries[2] (credentialHelper for registry.example.com/team), "
        "registries[1] (credentialHelper for registry.example.com), "
        "registries[0] (credentialHelper for *.example.com))",
        "registries[2] (credentialHelper for registry.example.com/team) has nothing for "
        "registry.example.com/team/app; next",
        "registries[1] (credentialHelper for registry.example.com) answers: host for "
        "registry.example.com",
    ]
    assert wildcard.asked == [], "explain stops where lookup stops"


def test_explain_gives_the_same_answer_as_lookup():
    cfg = config(fake_rule("registry.example.com/team"), fake_rule("registry.example.com"))
    route, _ = router(cfg, {0: ScriptedSource("team"), 1: ScriptedSource("host")})
    found, _ = route.explain("registry.example.com/team/app", POD)
    expected = answer(route, "registry.example.com/team/app", POD)
    assert found is not None
    assert (found.auth_key, found.cache_key, found.describe, found.cache_duration,
            found.per_image) == (expected.auth_key, expected.cache_key, expected.describe,
                                 expected.cache_duration, expected.per_image)


def test_explain_falls_through_every_rule_to_the_built_in_ecr_source_last():
    declining = ScriptedSource("declining", hosts=set())
    route, _ = router(config(fake_rule("*.dkr.ecr.*.amazonaws.com")), {0: declining})
    found, steps = route.explain(f"{ECR}/app")
    assert found is not None and found.auth_key == ECR
    assert steps == [
        f"{ECR}/app: 1 of 1 rules of {PATH} match (most specific first: registries[0] "
        "(credentialHelper for *.dkr.ecr.*.amazonaws.com))",
        f"registries[0] (credentialHelper for *.dkr.ecr.*.amazonaws.com) has nothing for "
        f"{ECR}/app; next",
        f"built-in ECR source: ECR registry {ECR} (account {ACCOUNT}, region us-west-2)",
    ]


def test_explain_says_when_nothing_answers_a_host_that_is_not_ecr():
    route, _ = router(defaults())
    found, steps = route.explain("registry.example.com/app")
    assert found is None
    assert steps == ["registry.example.com/app: 0 of 0 rules of no config file match",
                     "built-in ECR source: registry.example.com is not an ECR host"]


def test_explain_follows_a_mirror_to_its_target_and_back():
    route, _ = router(config(mirror("docker.io", f"{ECR}/hub"), fake_rule("other.example.com")),
                      {1: ScriptedSource("other")})
    found, steps = route.explain("docker.io/library/alpine")
    described = f"ECR registry {ECR} (account {ACCOUNT}, region us-west-2)"
    assert found is not None and found.auth_key == "docker.io"
    assert steps == [
        f"docker.io/library/alpine: 1 of 2 rules of {PATH} match (most specific first: "
        "registries[0] (mirrorOf for docker.io))",
        f"registries[0] (mirrorOf for docker.io): docker.io mirrors {ECR}; asking for "
        f"{ECR}/hub/library/alpine",
        f"{ECR}/hub/library/alpine: 0 of 2 rules of {PATH} match",
        f"built-in ECR source: {described}",
        f"registries[0] (mirrorOf for docker.io) answers: {described}, handed to mirror "
        "docker.io",
    ]


def test_explain_raises_the_lookup_config_error():
    route, _ = router(config(ecr_rule("registry.example.com")))
    with pytest.raises(ConfigError, match="not an ECR host name"):
        route.explain("registry.example.com/app")


def test_explain_never_holds_a_secret():
    rule = {"match": ["registry.example.com"],
            "static": {"username": "robot", "passwordEnv": "REGISTRY_PASSWORD"}}
    route, _ = router(config(rule, mirror("docker.io", f"{ECR}/hub")))
    steps = route.explain("registry.example.com/app")[1] + route.explain(
        "docker.io/library/alpine")[1]
    assert not any(secret in step for step in steps
                   for secret in ("static-password-value", "ecr-password"))
