"""The compiled config as plain records, and which rule answers for an image.

Precedence (the README has examples): rules whose ``match`` patterns match the image by the
kubelet's glob rules are candidates; the most specific matching pattern wins: a host without
wildcards before one with wildcards, then more literal characters in the host, then a longer path
prefix; on a tie, the rule written first. If the chosen rule's source has nothing for the image
(a docker config without an entry, a helper that says "not found"), the next candidate is asked;
after every rule, an ECR or ECR Public host is still answered by the ECR source.

Standard library only: this is on the cache-hit path.
"""

from __future__ import annotations

from ecrcred._record import Record
from ecrcred.config import DEFAULT_ROLE_ANNOTATIONS
from ecrcred.imageref import glob_host_match, glob_match, glob_specificity

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class Rule(Record):
    position: int  # index in the file's registries list, for messages ("registries[2]") and ties
    match: tuple[str, ...]
    source: str  # ecr | static | dockerConfig | credentialHelper | mirrorOf
    options: Mapping[str, Any]
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

    def describe(self) -> str:
        if self.path is None:
            return "no config file (ECR-only defaults)"
        return f"config {self.path} (from {self.origin}, {len(self.rules)} rules)"


DEFAULT_POD_IDENTITY = PodIdentityPolicy(DEFAULT_ROLE_ANNOTATIONS, None, "node", "ecrcred")


def defaults(path: str | None = None, origin: str = "default") -> Config:
    return Config(path, origin, (), DEFAULT_POD_IDENTITY)


def from_compiled(data: Mapping[str, Any], path: str, origin: str) -> Config:
    """The records from ``schema.compile_text``'s output (already validated)."""
    rules = tuple(
        Rule(r["index"], tuple(r["match"]), r["source"], r["options"], r["cacheDuration"])
        for r in data["registries"]
    )
    pod = data["podIdentity"]
    policy = PodIdentityPolicy(tuple(pod["role_annotations"]), pod["role_arn"], pod["fallback"],
                               pod["session_name"])
    return Config(path, origin, rules, policy)


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
