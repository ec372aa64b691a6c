"""The kubelet's CredentialProviderConfig: loading it strictly and validating it by the kubelet's
own rules, so that a mistake is found before the kubelet refuses to start on it.

Used by the tests of our shipped ``provider-config.yaml`` and by ``doctor`` ("would the kubelet
even ask us for this image?"). Rules: docs/kubelet.md. The kubelet decodes
strictly: unknown and duplicated fields are errors, so they are errors here too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import yaml

from ecrcred.imageref import glob_match, parses_as_url
from ecrcred.kubelet import API_VERSIONS, parse_go_duration

CONFIG_API_VERSIONS = ("kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v1beta1",
                       "kubelet.config.k8s.io/v1alpha1")
_TOP_FIELDS = {"apiVersion", "kind", "providers"}
_PROVIDER_FIELDS = {"name", "matchImages", "defaultCacheDuration", "apiVersion", "args", "env",
                    "tokenAttributes"}
_TOKEN_FIELDS = {"serviceAccountTokenAudience", "cacheType", "requireServiceAccount",
                 "requiredServiceAccountAnnotationKeys", "optionalServiceAccountAnnotationKeys"}
# A Kubernetes qualified name: an optional DNS subdomain prefix and "/", then a name part.
_QUALIFIED = re.compile(
    r"(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)


class Provider(NamedTuple):
    name: str
    match_images: tuple[str, ...]
    api_version: str
    args: tuple[str, ...]


class StrictLoader(yaml.SafeLoader):
    """YAML that rejects duplicated keys, as the kubelet's strict decoder does."""


def _mapping(loader: StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicated field {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load(text: str) -> tuple[Any, list[str]]:
    """Parse YAML or JSON strictly; return the document and any parse errors."""
    try:
        return yaml.load(text, Loader=StrictLoader), []  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        return None, [f"not valid YAML/JSON: {' '.join(str(exc).split())}"]


def validate(doc: Any, token_attributes_enabled: bool = True) -> list[str]:
    """Every rule the kubelet applies at start; an empty list means the kubelet accepts it."""
    if not isinstance(doc, dict):
        return ["the document is not a mapping"]
    errors = [f"unknown field {k!r}" for k in sorted(set(doc) - _TOP_FIELDS)]
    if doc.get("kind") != "CredentialProviderConfig":
        errors.append(f"kind is {doc.get('kind')!r}, expected 'CredentialProviderConfig'")
    if doc.get("apiVersion") not in CONFIG_API_VERSIONS:
        errors.append(f"apiVersion {doc.get('apiVersion')!r} is not one of "
                      + ", ".join(CONFIG_API_VERSIONS))
    providers = doc.get("providers")
    if not isinstance(providers, list) or not providers:
        errors.append("providers: at least one provider is required")
        return errors
    names: set[str] = set()
    for i, provider in enumerate(providers):
        errors += [f"providers[{i}].{e}" for e in _validate_provider(provider, names,
                                                                     token_attributes_enabled)]
    return errors


def _validate_provider(p: Any, names: set[str], token_attributes_enabled: bool) -> list[str]:
    if not isinstance(p, dict):
        return ["is not a mapping"]
    errors = [f"unknown field {k!r}" for k in sorted(set(p) - _PROVIDER_FIELDS)]
    name = p.get("name")
    if not isinstance(name, str) or not name:
        errors.append("name: required")
    elif "/" in name or " " in name or name in (".", ".."):
        errors.append(f"name {name!r}: must not contain '/' or ' ' and not be '.' or '..'")
    elif name in names:
        errors.append(f"name {name!r}: duplicated")
    else:
        names.add(name)
    api_version = p.get("apiVersion")
    if api_version not in API_VERSIONS:
        errors.append(f"apiVersion {api_version!r}: required, one of " + ", ".join(API_VERSIONS))
    match_images = p.get("matchImages")
    if not isinstance(match_images, list) or not match_images:
        errors.append("matchImages: at least one entry is required")
    else:
        for j, pattern in enumerate(match_images):
            if not isinstance(pattern, str) or not parses_as_url(pattern):
                errors.append(f"matchImages[{j}] {pattern!r}: does not parse as a URL")
    duration = p.get("defaultCacheDuration")
    try:
        if not isinstance(duration, str) or parse_go_duration(duration) < 0:
            errors.append(f"defaultCacheDuration {duration!r}: required, a duration >= 0")
    except ValueError:
        errors.append(f"defaultCacheDuration {duration!r}: not a Go duration (e.g. 12h, 30m)")
    args = p.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        errors.append("args: must be a list of strings")
    env = p.get("env", [])
    if not isinstance(env, list) or not all(
            isinstance(e, dict) and set(e) <= {"name", "value"} and isinstance(e.get("name"), str)
            and e.get("name") and isinstance(e.get("value", ""), str) for e in env):
        errors.append("env: must be a list of {name, value} with non-empty names")
    if "tokenAttributes" in p:
        errors += _validate_token_attributes(p["tokenAttributes"], api_version,
                                             token_attributes_enabled)
    return errors


def _validate_token_attributes(t: Any, api_version: Any, enabled: bool) -> list[str]:
    if not enabled:
        return ["tokenAttributes: needs the KubeletServiceAccountTokenForCredentialProviders "
                "feature gate"]
    if api_version != "credentialprovider.kubelet.k8s.io/v1":
        return ["tokenAttributes: only allowed with apiVersion "
                "credentialprovider.kubelet.k8s.io/v1"]
    if not isinstance(t, dict):
        return ["tokenAttributes: is not a mapping"]
    errors = [f"tokenAttributes: unknown field {k!r}" for k in sorted(set(t) - _TOKEN_FIELDS)]
    if not isinstance(t.get("serviceAccountTokenAudience"), str) or not t.get(
            "serviceAccountTokenAudience"):
        errors.append("tokenAttributes.serviceAccountTokenAudience: required")
    if not isinstance(t.get("requireServiceAccount"), bool):
        errors.append("tokenAttributes.requireServiceAccount: required (true or false)")
    if t.get("cacheType") not in ("Token", "ServiceAccount"):
        errors.append("tokenAttributes.cacheType: required (Token or ServiceAccount)")
    required = t.get("requiredServiceAccountAnnotationKeys") or []
    optional = t.get("optionalServiceAccountAnnotationKeys") or []
    for field, keys in (("requiredServiceAccountAnnotationKeys", required),
                        ("optionalServiceAccountAnnotationKeys", optional)):
        if not isinstance(keys, list):
            errors.append(f"tokenAttributes.{field}: must be a list")
            continue
        for key in keys:
            if not isinstance(key, str) or not _QUALIFIED.fullmatch(key):
                errors.append(f"tokenAttributes.{field}: {key!r} is not a qualified name")
        if len(set(map(str, keys))) != len(keys):
            errors.append(f"tokenAttributes.{field}: duplicated keys")
    if isinstance(required, list) and isinstance(optional, list):
        both = sorted(set(map(str, required)) & set(map(str, optional)))
        if both:
            errors.append(f"tokenAttributes: keys both required and optional: {both}")
        if required and t.get("requireServiceAccount") is not True:
            errors.append("tokenAttributes.requiredServiceAccountAnnotationKeys: needs "
                          "requireServiceAccount: true")
    return errors


def providers(doc: Any) -> list[Provider]:
    """The providers of a validated document."""
    return [Provider(p["name"], tuple(p["matchImages"]), p["apiVersion"],
                     tuple(p.get("args", []))) for p in doc["providers"]]


def matching_provider(doc: Any, image: str) -> Provider | None:
    """The first provider whose matchImages would make the kubelet exec it for ``image``."""
    for provider in providers(doc):
        if any(glob_match(pattern, image) for pattern in provider.match_images):
            return provider
    return None


def patterns(doc: Any) -> Sequence[str]:
    return [pattern for provider in providers(doc) for pattern in provider.match_images]
