"""The shipped provider-config.yaml: valid by the kubelet's rules, and its patterns cover every
ECR host form and nothing that only looks like one."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from ecrcred import ecrhost, kubeletconfig

CONFIG = Path(__file__).parents[1] / "provider-config.yaml"

REGIONS = {
    "amazonaws.com": ["us-west-2", "eu-central-1", "us-gov-west-1", "ap-southeast-5"],
    "on.aws": ["us-east-1", "us-gov-east-1"],
    "amazonaws.com.cn": ["cn-north-1", "cn-northwest-1"],
    "on.amazonwebservices.com.cn": ["cn-north-1"],
    "amazonaws.eu": ["eusc-de-east-1"],
    "c2s.ic.gov": ["us-iso-east-1"],
    "sc2s.sgov.gov": ["us-isob-east-1"],
    "cloud.adc-e.uk": ["eu-isoe-west-1"],
    "csp.hci.ic.gov": ["us-isof-south-1"],
}


def every_ecr_host() -> list[str]:
    """Every combination of dkr part, region and suffix that ecrhost accepts as ECR."""
    hosts = []
    for suffix, regions in REGIONS.items():
        for dkr, region in itertools.product(ecrhost.DKR_PARTS, regions):
            host = f"123456789012.{dkr}.{region}.{suffix}"
            if ecrhost.parse_ecr_host(host) is not None:
                hosts.append(host)
    return hosts + list(ecrhost.PUBLIC_HOSTS)


@pytest.fixture(scope="module")
def doc():
    doc, errors = kubeletconfig.load(CONFIG.read_text())
    assert errors == []
    return doc


def test_shipped_config_passes_the_kubelets_validation(doc):
    assert kubeletconfig.validate(doc) == []


def test_shipped_config_runs_get_credentials_with_the_v1_api(doc):
    (provider,) = kubeletconfig.providers(doc)
    assert provider.name == "ecrcred"
    assert provider.args == ("get-credentials",)
    assert provider.api_version == "credentialprovider.kubelet.k8s.io/v1"


def test_the_host_table_is_not_trivially_small():
    hosts = every_ecr_host()
    assert len(hosts) >= 17  # 4 variants commercial x4 regions ... plus every other partition
    assert {ecrhost.parse_ecr_host(h).partition for h in hosts} == {  # type: ignore[union-attr]
        "aws", "aws-us-gov", "aws-cn", "aws-eusc", "aws-iso", "aws-iso-b", "aws-iso-e",
        "aws-iso-f"}


@pytest.mark.parametrize("host", every_ecr_host())
def test_every_ecr_host_form_is_matched(doc, host):
    image = f"{host}/team/app"
    assert kubeletconfig.matching_provider(doc, image) is not None


@pytest.mark.parametrize("image", [
    "123456789012.dkr.ecr.us-west-2.amazonaws.com.evil.example/app",
    "evil.example/123456789012.dkr.ecr.us-west-2.amazonaws.com/app",
    "public.ecr.aws.evil.example/app",
    "evilpublic.ecr.aws/app",
    "docker.io/library/busybox",
    "registry.k8s.io/pause",
    "ghcr.io/public.ecr.aws/x",
    "123456789012.dkr.ecr.us-west-2.amazonaws.com:443/app",
    "a.b.dkr.ecr.us-west-2.amazonaws.com/nested-account",
    "123456789012.dkr.ecr.amazonaws.com/no-region",
    "123456789012.DKR.ECR.us-west-2.amazonaws.com/case",
])
def test_look_alikes_and_other_registries_are_not_matched(doc, image):
    assert kubeletconfig.matching_provider(doc, image) is None


# -- the per-pod identity variant -----------------------------------------------------------------

POD_IDENTITY = Path(__file__).parents[1] / "provider-config-pod-identity.yaml"


@pytest.fixture(scope="module")
def pod_doc():
    doc, errors = kubeletconfig.load(POD_IDENTITY.read_text())
    assert errors == []
    return doc


def test_pod_identity_config_passes_the_kubelets_validation(pod_doc):
    assert kubeletconfig.validate(pod_doc) == []


def test_pod_identity_config_is_refused_when_the_feature_gate_is_off(pod_doc):
    assert any("tokenAttributes" in e for e in kubeletconfig.validate(
        pod_doc, token_attributes_enabled=False))


def test_pod_identity_config_sends_the_annotations_ecrcred_reads_by_default(pod_doc):
    from ecrcred.config import DEFAULT_ROLE_ANNOTATIONS

    (provider,) = pod_doc["providers"]
    attributes = provider["tokenAttributes"]
    assert attributes["serviceAccountTokenAudience"] == "sts.amazonaws.com"
    assert attributes["cacheType"] == "ServiceAccount"
    assert tuple(attributes["optionalServiceAccountAnnotationKeys"]) == DEFAULT_ROLE_ANNOTATIONS


def test_pod_identity_config_matches_the_same_images(doc, pod_doc):
    assert kubeletconfig.patterns(pod_doc) == kubeletconfig.patterns(doc)


@pytest.mark.parametrize("config", [CONFIG, POD_IDENTITY], ids=["plain", "pod-identity"])
def test_each_shipped_config_gets_ecr_credentials_on_a_node_with_only_the_binary(
        config, ecrcred_bin, aws, tmp_path):
    """The kubelet runs the plugin with exactly the config's args and env: on a node with no
    ecrcred config file, that must still answer ECR (a provider env naming a config path that
    does not exist made every lookup fail with BAD_CONFIG)."""
    from tests.support.kubelet import check_response, exec_provider, request

    doc, errors = kubeletconfig.load(config.read_text())
    assert errors == []
    (provider,) = kubeletconfig.providers(doc)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **aws.env()}
    for entry in doc["providers"][0].get("env", []):
        env[entry["name"]] = entry["value"]
    env["ECRCRED_CACHE_DIR"] = str(tmp_path / "cache")  # not the node's /var/lib/ecrcred
    req = request("123456789012.dkr.ecr.us-west-2.amazonaws.com/app")
    result = exec_provider(ecrcred_bin, req, env, args=provider.args)
    assert result.returncode == 0, result.stderr.decode()
    assert check_response(result.stdout, req)["auth"]
