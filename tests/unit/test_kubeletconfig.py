"""The kubelet's CredentialProviderConfig rules, one mistake at a time."""

from __future__ import annotations

import copy

import pytest

from ecrcred import kubeletconfig

V1 = "credentialprovider.kubelet.k8s.io/v1"
GOOD = {
    "apiVersion": "kubelet.config.k8s.io/v1",
    "kind": "CredentialProviderConfig",
    "providers": [{
        "name": "ecrcred",
        "apiVersion": V1,
        "matchImages": ["*.dkr.ecr.*.amazonaws.com"],
        "defaultCacheDuration": "12h",
        "args": ["get-credentials"],
        "env": [{"name": "AWS_REGION", "value": "us-west-2"}],
        "tokenAttributes": {
            "serviceAccountTokenAudience": "sts.amazonaws.com",
            "cacheType": "ServiceAccount",
            "requireServiceAccount": False,
            "optionalServiceAccountAnnotationKeys": ["eks.amazonaws.com/ecr-role-arn"],
        },
    }],
}


def mutated(path: str, value: object) -> dict:
    doc = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node: object = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
    if value is DELETE:
        del node[last]  # type: ignore[union-attr]
    else:
        node[last] = value  # type: ignore[index]
    return doc


DELETE = object()


def test_a_correct_config_has_no_errors():
    assert kubeletconfig.validate(GOOD) == []


@pytest.mark.parametrize(("path", "value", "needle"), [
    ("kind", "Config", "kind"),
    ("apiVersion", "v1", "apiVersion"),
    ("extra", 1, "unknown field 'extra'"),
    ("providers", [], "at least one provider"),
    ("providers.0.name", "bin/ecrcred", "name"),
    ("providers.0.name", "my plugin", "name"),
    ("providers.0.name", "..", "name"),
    ("providers.0.name", DELETE, "name: required"),
    ("providers.0.apiVersion", DELETE, "apiVersion"),
    ("providers.0.apiVersion", "credentialprovider.kubelet.k8s.io/v2", "apiVersion"),
    ("providers.0.matchImages", [], "matchImages"),
    ("providers.0.matchImages", ["registry.io:port/x"], "does not parse"),
    ("providers.0.matchImages", ["a b.io"], "does not parse"),
    ("providers.0.defaultCacheDuration", DELETE, "defaultCacheDuration"),
    ("providers.0.defaultCacheDuration", "-1h", "defaultCacheDuration"),
    ("providers.0.defaultCacheDuration", "twelve hours", "not a Go duration"),
    ("providers.0.defaultCacheDuration", "", "defaultCacheDuration"),
    ("providers.0.matchImages", ["x[^a].registry.io"], "does not parse"),
    ("providers.0.args", "get-credentials", "args"),
    ("providers.0.env", [{"name": "", "value": "x"}], "env"),
    ("providers.0.env", [{"name": "A", "value": "x", "extra": 1}], "env"),
    ("providers.0.unknown", True, "unknown field 'unknown'"),
    ("providers.0.tokenAttributes.serviceAccountTokenAudience", DELETE, "Audience: required"),
    ("providers.0.tokenAttributes.requireServiceAccount", DELETE, "requireServiceAccount"),
    ("providers.0.tokenAttributes.cacheType", DELETE, "cacheType"),
    ("providers.0.tokenAttributes.cacheType", "Image", "cacheType"),
    ("providers.0.tokenAttributes.optionalServiceAccountAnnotationKeys", ["not a key!"],
     "qualified name"),
    ("providers.0.tokenAttributes.optionalServiceAccountAnnotationKeys", ["a/b", "a/b"],
     "duplicated"),
    ("providers.0.tokenAttributes.requiredServiceAccountAnnotationKeys", ["a/b"],
     "requireServiceAccount: true"),
    ("providers.0.tokenAttributes.requiredServiceAccountAnnotationKeys",
     ["eks.amazonaws.com/ecr-role-arn"], "both required and optional"),
    ("providers.0.apiVersion", "credentialprovider.kubelet.k8s.io/v1beta1", "only allowed"),
])
def test_each_mistake_is_named(path, value, needle):
    errors = kubeletconfig.validate(mutated(path, value))
    assert errors, f"{path}={value!r} should be rejected"
    assert any(needle in e for e in errors), errors


def test_duplicate_provider_names_are_rejected():
    doc = copy.deepcopy(GOOD)
    doc["providers"].append(copy.deepcopy(doc["providers"][0]))
    assert any("duplicated" in e for e in kubeletconfig.validate(doc))


def test_token_attributes_need_the_feature_gate():
    errors = kubeletconfig.validate(GOOD, token_attributes_enabled=False)
    assert any("feature gate" in e for e in errors)


def test_duplicated_yaml_keys_are_parse_errors():
    _, errors = kubeletconfig.load("kind: A\nkind: B\n")
    assert errors and "duplicated field 'kind'" in errors[0]


def test_json_is_accepted_too():
    doc, errors = kubeletconfig.load('{"kind": "CredentialProviderConfig"}')
    assert errors == [] and doc == {"kind": "CredentialProviderConfig"}


def test_matching_provider_uses_the_kubelets_glob_rules():
    assert kubeletconfig.matching_provider(GOOD, "1.dkr.ecr.r.amazonaws.com/x") is not None
    assert kubeletconfig.matching_provider(GOOD, "1.dkr.ecr.r.amazonaws.com:5000/x") is None
