"""The compiled config as plain records, and which rule answers for an image.

Precedence (the README has examples): rules whose ``match`` patterns match the image by the
kubelet's glob rules are candidates; the most specific matching pattern wins: a host without
wildcards before one with wildcards, then more literal characters in the host, then a longer path
prefix; on a tie, the rule written first. If the chosen rule's source has nothing for the image
(a docker config without an entry, a helper that says "not found"), the next candidate is asked;
after every rule, an ECR or ECR Public host is still answered by the ECR source.

Each rule carries its source's options as one typed record (``EcrOptions``, ``StaticOptions``,
``DockerConfigOptions``, ``HelperOptions``, ``MirrorOptions``), built here from the compiled
JSON and handed to the sources as they are. The pydantic models in ``schema`` only validate; these
records are the one definition the rest of the program reads.

Standard library only: this is on the cache-hit path.
"""

from __future__ import annotations

from ecrcred._record import Record
from ecrcred.config import DEFAULT_ROLE_ANNOTATIONS
from ecrcred.imageref import glob_host_match, glob_match, glob_specificity

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TypeAlias


class EcrOptions(Record):
    """A rule's ``ecr:`` options: ECR, optionally for a host that is not an ECR name (account
    and region say which registry it fronts), through an assumed role, FIPS or dual-stack."""

    region: str | None = None
    account: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    session_name: str = "ecrcred"
    fips: bool | None = None  # None: as the registry's host name says
    dualstack: bool | None = None


class StaticOptions(Record):
    """A rule's ``static:`` options: exactly one of ``password_file`` and ``password_env``."""

    username: str
    password_file: str | None
    password_env: str | None


class DockerConfigOptions(Record):
    """A rule's ``dockerConfig:`` options: ``paths`` in order (None: the kubelet's search)."""

    paths: tuple[str, ...] | None
    kubelet_root_dir: str


class HelperOptions(Record):
    """A rule's ``credentialHelper:`` options: ``docker-credential-<name>``, its timeout."""

    name: str
    timeout: float = 5.0  # seconds (the file's are whole seconds)


class MirrorOptions(Record):
    """A rule's ``mirrorOf:``: the registry (``host[:port][/path]``) this host mirrors."""

    target: str


if TYPE_CHECKING:
    SourceOptions: TypeAlias = (
        EcrOptions | StaticOptions | DockerConfigOptions | HelperOptions | MirrorOptions)


class Rule(Record):
    position: int  # index in the file's registries list, for messages ("registries[2]") and ties
    match: tuple[str, ...]
    source: str  # ecr | static | dockerConfig | credentialHelper | mirrorOf
    options: SourceOptions  # the record of ``source``'s kind
    cache_duration: int | None  # seconds the kubelet may keep the answer; None: the source's

    @property
    def name(self) -> str:
        return f"registries[{self.position}] ({self.source} for {', '.join(self.match)})"

    @property
    def has_path(self) -> bool:
        return any("/" in p and p.split("/", 1)[1].strip("/") for p in self.match)


class PodIdentityPolicy(Record):
    role_annotations: tuple[str, ...]
    role_arn: str | None
    fallback: str  # "node" | "deny"
    session_name: str


class Config(Record):
    path: str | None  # None: no file, ECR-only defaults
    origin: str  # "flag --config", "env ECRCRED_CONFIG", "default"
    rules: tuple[Rule, ...]
    pod_identity: PodIdentityPolicy
    sandbox_archive: str | None = None  # sandbox.archive: pull-sandbox's --archive
    # refresh: the node agent (pull-sandbox --watch) refreshes the tokens executions use ahead
    # of their expiry (``refresh_enabled``) and fetches those of ``prefetch`` (images or
    # registry hosts) when it starts. Fields, not a record of their own: a class costs every
    # cache hit with a config its definition.
    refresh_enabled: bool = True
    prefetch: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.path is None:
            return "no config file (ECR-only defaults)"
        return f"config {self.path} (from {self.origin}, {len(self.rules)} rules)"


DEFAULT_POD_IDENTITY = PodIdentityPolicy(DEFAULT_ROLE_ANNOTATIONS, None, "node", "ecrcred")


def defaults(path: str | None = None, origin: str = "default") -> Config:
    return Config(path, origin, (), DEFAULT_POD_IDENTITY)


def _docker_config(paths: list[str] | None = None,
                   kubelet_root_dir: str = "/var/lib/kubelet") -> DockerConfigOptions:
    return DockerConfigOptions(None if paths is None else tuple(paths), kubelet_root_dir)


# The compiled form's source name -> the record its options become. A name or an option this
# build does not know raises KeyError or TypeError, which ``load`` takes as a compiled copy of
# another layout and validates the file again.
_OPTIONS: dict[str, Callable[..., SourceOptions]] = {
    "ecr": EcrOptions,
    "static": StaticOptions,
    "dockerConfig": _docker_config,
    "credentialHelper": HelperOptions,
    "mirrorOf": MirrorOptions,
}


def from_compiled(data: Mapping[str, Any], path: str, origin: str) -> Config:
    """The records from ``schema.compile_text``'s output (already validated)."""
    rules = tuple(
        Rule(r["index"], tuple(r["match"]), r["source"], _OPTIONS[r["source"]](**r["options"]),
             r["cacheDuration"])
        for r in data["registries"]
    )
    pod = data["podIdentity"]
    policy = PodIdentityPolicy(tuple(pod["role_annotations"]), pod["role_arn"], pod["fallback"],
                               pod["session_name"])
    # No "sandbox" (a copy compiled before it existed): no archive, as the file then had none.
    sandbox = data.get("sandbox") or {}
    # The same for "refresh": the defaults.
    refresh = data.get("refresh") or {}
    return Config(path, origin, rules, policy, sandbox.get("archive"),
                  bool(refresh.get("enabled", True)), tuple(refresh.get("prefetch") or ()))


def candidates(config: Config, image: str) -> list[Rule]:
    """The rules that match ``image`` (``host/repository``), most specific first."""
    ranked = []
    for rule in config.rules:
        best = max((glob_specificity(p) for p in rule.match if glob_match(p, image)),
                   default=None)
        if best is not None:
            ranked.append((best, -rule.position, rule))
    ranked.sort(key=lambda item: item[:2], reverse=True)
    return [rule for _, _, rule in ranked]


def path_scoped(config: Config, image: str) -> bool:
    """Whether some rule with a path could match another image of this host. Then an answer
    must be keyed by image, not by registry: a Registry-keyed answer would be reused by the
    kubelet for a sibling path that another rule gives other credentials."""
    return any(rule.has_path and any(glob_host_match(p, image) for p in rule.match)
               for rule in config.rules)
