"""Which source answers for an image: the config's rules, mirrors, and the built-in ECR fallback.

The ``Router`` is the one ``CredentialSource`` that ``get-credentials`` and ``pull-sandbox`` ask.
It walks the matching rules from the most specific (``config.rules.candidates``); the first
source that has something answers. A ``mirrorOf`` rule resolves its target registry through the
same rules and answers with the target's credentials under the mirror's own host. After the
rules, ECR and ECR Public hosts are answered by the ECR source, so a config never has to list
them.

It also decides the answer's scope: when a rule with a path could match this host, the answer is
keyed by image, because a registry-keyed answer would be reused by the kubelet for sibling paths.

Sources are built on first use, so an execution imports only the modules of the sources it asks.
"""

from __future__ import annotations

from ecrcred.config.rules import (
    DockerConfigOptions,
    EcrOptions,
    HelperOptions,
    MirrorOptions,
    StaticOptions,
    candidates,
    path_scoped,
)
from ecrcred.errors import ConfigError
from ecrcred.imageref import registry_host
from ecrcred.log import quote_untrusted

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ecrcred.config.rules import Config, Rule
    from ecrcred.ecrhost import EcrRegistry
    from ecrcred.records import Lookup, Pod
    from ecrcred.seams import Clock, CredentialSource, EcrApi, Logger, Runner, StsApi
    from ecrcred.sources.aws import AuthorizationData, AwsCredentials
    from ecrcred.sources.ecr import EcrSource

MAX_MIRROR_HOPS = 4


class SourceFactory:
    """Builds each rule's source once, with the real collaborators (botocore clients, subprocess
    runner) created only when a source first needs them. Tests pass their own ``ecr_api``,
    ``sts_api`` and ``runner``."""

    def __init__(self, config: Config, env: Mapping[str, str], clock: Clock, log: Logger, *,
                 cwd: str, aws_timeout: float = 10.0, ecr_api: EcrApi | None = None,
                 sts_api: StsApi | None = None, runner: Runner | None = None) -> None:
        self.config = config
        self._env = env
        self._clock = clock
        self._log = log
        self._cwd = cwd
        self._aws_timeout = aws_timeout
        self._ecr_api = ecr_api
        self._sts_api = sts_api
        self._runner = runner
        self._sources: dict[int, CredentialSource] = {}
        self._default_ecr: EcrSource | None = None

    def _apis(self) -> tuple[EcrApi, StsApi]:
        if self._ecr_api is None or self._sts_api is None:
            lazy = _LazyAws(self._env, self._aws_timeout)
            self._ecr_api = self._ecr_api or lazy
            self._sts_api = self._sts_api or lazy
        return self._ecr_api, self._sts_api

    def _ecr(self, options: EcrOptions | None) -> EcrSource:
        from ecrcred.sources.ecr import EcrSource

        api, sts = self._apis()
        return EcrSource(api, self._env, self._clock, self._log, sts=sts, options=options,
                         pod_policy=self.config.pod_identity)

    def default_ecr(self) -> EcrSource:
        if self._default_ecr is None:
            self._default_ecr = self._ecr(None)
        return self._default_ecr

    def helper(self, options: HelperOptions, cache_duration: int) -> CredentialSource:
        from ecrcred.sources.helper import HelperSource, SubprocessRunner

        if self._runner is None:
            self._runner = SubprocessRunner(log=self._log)
        return HelperSource(options, self._runner, self._env, self._clock, self._log,
                            cache_duration=cache_duration)

    def source(self, rule: Rule) -> CredentialSource:
        if rule.position not in self._sources:
            self._sources[rule.position] = self._build(rule)
        return self._sources[rule.position]

    def _build(self, rule: Rule) -> CredentialSource:
        """The source of ``rule``, chosen by the type of its options record. A secret that is
        not a token lives the rule's ``cacheDuration`` (``sources.kubelet_cache_duration``)."""
        from ecrcred.sources import kubelet_cache_duration

        o = rule.options
        duration = kubelet_cache_duration(rule.cache_duration)
        if isinstance(o, EcrOptions):
            return self._ecr(o)
        if isinstance(o, StaticOptions):
            from ecrcred.sources.static import StaticSource

            return StaticSource(o, env=self._env, clock=self._clock, log=self._log,
                                cache_duration=duration)
        if isinstance(o, DockerConfigOptions):
            from ecrcred.sources.dockerconfig import DockerConfigSource

            # A docker config's credHelpers and credsStore run with the default timeout.
            return DockerConfigSource(
                o, cwd=self._cwd,
                home=self._env.get("HOME") or None,
                helpers=lambda name: self.helper(HelperOptions(name), duration),
                clock=self._clock, log=self._log, cache_duration=duration)
        if isinstance(o, HelperOptions):
            return self.helper(o, duration)
        # A mirror has no source of its own (``Router._ask`` follows it); anything else is a
        # record this build does not know.
        raise ConfigError(f"{rule.name}: unknown source {rule.source!r}",
                          hint="this config was compiled by another ecrcred version; touch it")


class _LazyAws:
    """``EcrApi`` and ``StsApi`` that import ``sources.aws`` (and botocore) at the first real call:
    a cache hit builds an ECR source but never calls AWS."""

    def __init__(self, env: Mapping[str, str], timeout: float) -> None:
        self._env = env
        self._timeout = timeout
        self._ecr: EcrApi | None = None
        self._sts: StsApi | None = None

    def get_authorization_token(self, registry: EcrRegistry,
                                credentials: AwsCredentials | None) -> AuthorizationData:
        if self._ecr is None:
            from ecrcred.sources.aws import BotoEcrApi

            self._ecr = BotoEcrApi(self._env, self._timeout)
        return self._ecr.get_authorization_token(registry, credentials)

    def _sts_api(self) -> StsApi:
        if self._sts is None:
            from ecrcred.sources.aws import BotoStsApi

            self._sts = BotoStsApi(self._env, self._timeout)
        return self._sts

    def assume_role(self, role_arn: str, session_name: str, external_id: str | None,
                    region: str) -> AwsCredentials:
        return self._sts_api().assume_role(role_arn, session_name, external_id, region)

    def assume_role_with_web_identity(self, role_arn: str, session_name: str, token: str,
                                      region: str) -> AwsCredentials:
        return self._sts_api().assume_role_with_web_identity(role_arn, session_name, token,
                                                             region)


class Router:
    """The config's rules as one ``CredentialSource``."""

    name = "router"

    def __init__(self, factory: SourceFactory, log: Logger) -> None:
        self._factory = factory
        self._config = factory.config
        self._log = log

    def lookup(self, image: str, pod: Pod | None = None) -> Lookup | None:
        return self._lookup(image, pod, hops=0, trace=None)

    def explain(self, image: str, pod: Pod | None = None) -> tuple[Lookup | None, list[str]]:
        """``lookup``, and every step it took: each matching rule in precedence order and what
        it said, then the built-in ECR source. For ``doctor``; never a secret."""
        trace: list[str] = []
        return self._lookup(image, pod, hops=0, trace=trace), trace

    def _lookup(self, image: str, pod: Pod | None, hops: int,
                trace: list[str] | None) -> Lookup | None:
        rules = candidates(self._config, image)
        if trace is not None:
            where = self._config.path or "no config file"
            trace.append(f"{image}: {len(rules)} of {len(self._config.rules)} rules of {where} "
                         "match" + (" (most specific first: " + ", ".join(
                             r.name for r in rules) + ")" if rules else ""))
        for rule in rules:
            found = self._ask(rule, image, pod, hops, trace)
            if found is not None:
                self._log.debug(f"{image}: {rule.name} answers")
                if trace is not None:
                    trace.append(f"{rule.name} answers: {found.describe}")
                return self._scoped(found, rule, image)
            self._log.debug(f"{image}: {rule.name} has nothing; trying the next rule")
            if trace is not None:
                trace.append(f"{rule.name} has nothing for {image}; next")
        found = self._factory.default_ecr().lookup(image, pod)
        if trace is not None:
            trace.append(f"built-in ECR source: {found.describe}" if found is not None else
                         f"built-in ECR source: {registry_host(image)} is not an ECR host")
        if found is not None:
            return self._scoped(found, None, image)
        return None

    def _ask(self, rule: Rule, image: str, pod: Pod | None, hops: int,
             trace: list[str] | None) -> Lookup | None:
        host = registry_host(image)
        if isinstance(rule.options, MirrorOptions):
            if hops >= MAX_MIRROR_HOPS:
                raise ConfigError(f"{rule.name}: mirrors lead to each other more than "
                                  f"{MAX_MIRROR_HOPS} times from {quote_untrusted(host)}",
                                  hint="a mirrorOf target must not be another mirror's host")
            target_base = rule.options.target.rstrip("/")
            repository = image.split("/", 1)[1] if "/" in image else ""
            target = f"{target_base}/{repository}" if repository else target_base
            if trace is not None:
                trace.append(f"{rule.name}: {host} mirrors {registry_host(target)}; asking for "
                             f"{target}")
            found = self._lookup(target, pod, hops + 1, trace)
            if found is None:
                raise ConfigError(
                    f"{rule.name}: nothing gives credentials for the mirror target "
                    f"{registry_host(target)}",
                    hint="point mirrorOf at an ECR registry or add a rule for the target")
            return found._replace(auth_key=host,
                                  describe=f"{found.describe}, handed to mirror {host}")
        found = self._factory.source(rule).lookup(image, pod)
        if found is None and isinstance(rule.options, EcrOptions):
            # The host is the request's (a glob matched it): bounded and escaped.
            raise ConfigError(
                f"{rule.name} matches {quote_untrusted(host)}, which is not an ECR host name",
                hint="set ecr.account and ecr.region to say which ECR registry it fronts")
        return found

    def _scoped(self, found: Lookup, rule: Rule | None, image: str) -> Lookup:
        """The answer as the rule gives it: the rule's ``cacheDuration``, when it has one, in
        place of the source's (``provider`` turns it into the number the kubelet sees), and keyed
        by image when a path rule could match another image of the host."""
        duration = found.cache_duration
        if rule is not None and rule.cache_duration is not None:
            duration = rule.cache_duration
        return found._replace(cache_duration=duration,
                              per_image=found.per_image or path_scoped(self._config, image))
