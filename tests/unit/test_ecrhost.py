"""Recognizing ECR hosts: every partition, FIPS, dual-stack, ECR Public, and look-alikes."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ecrcred import ecrhost
from ecrcred.ecrhost import PARTITIONS, EcrRegistry, parse_ecr_host, private_host

A = "123456789012"


@pytest.mark.parametrize(("host", "region", "fips", "dualstack"), [
    pytest.param(f"{A}.dkr.ecr.us-west-2.amazonaws.com", "us-west-2", False, False,
                 id="commercial"),
    pytest.param(f"{A}.dkr.ecr.ap-southeast-2.amazonaws.com", "ap-southeast-2", False, False,
                 id="commercial-ap"),
    pytest.param(f"{A}.dkr.ecr-fips.us-west-2.amazonaws.com", "us-west-2", True, False, id="fips"),
    pytest.param(f"{A}.dkr-ecr.us-west-2.on.aws", "us-west-2", False, True, id="dualstack"),
    pytest.param(f"{A}.dkr-ecr-fips.us-east-1.on.aws", "us-east-1", True, True,
                 id="dualstack-fips"),
    pytest.param(f"{A}.dkr.ecr.us-gov-west-1.amazonaws.com", "us-gov-west-1", False, False,
                 id="govcloud"),
    pytest.param(f"{A}.dkr.ecr-fips.us-gov-east-1.amazonaws.com", "us-gov-east-1", True, False,
                 id="govcloud-fips"),
    pytest.param(f"{A}.dkr-ecr.us-gov-west-1.on.aws", "us-gov-west-1", False, True,
                 id="govcloud-dualstack"),
    pytest.param(f"{A}.dkr.ecr.cn-north-1.amazonaws.com.cn", "cn-north-1", False, False,
                 id="china"),
    pytest.param(f"{A}.dkr.ecr.cn-northwest-1.amazonaws.com.cn", "cn-northwest-1", False, False,
                 id="china-northwest"),
    pytest.param(f"{A}.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn", "cn-north-1", False, True,
                 id="china-dualstack"),
    pytest.param(f"{A}.dkr.ecr.eusc-de-east-1.amazonaws.eu", "eusc-de-east-1", False, False,
                 id="eusc"),
    pytest.param(f"{A}.dkr.ecr.us-iso-east-1.c2s.ic.gov", "us-iso-east-1", False, False, id="iso"),
    pytest.param(f"{A}.dkr.ecr.us-isob-east-1.sc2s.sgov.gov", "us-isob-east-1", False, False,
                 id="iso-b"),
    pytest.param(f"{A}.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk", "eu-isoe-west-1", False, False,
                 id="iso-e"),
    pytest.param(f"{A}.dkr.ecr.us-isof-south-1.csp.hci.ic.gov", "us-isof-south-1", False, False,
                 id="iso-f"),
])
def test_parse_ecr_host_recognizes_private_registries(
        host: str, region: str, fips: bool, dualstack: bool):
    registry = parse_ecr_host(host)
    assert registry is not None
    assert registry.host == host
    assert registry.account == A
    assert registry.region == region
    assert (registry.fips, registry.dualstack) == (fips, dualstack)
    assert not registry.public
    assert registry.api == "ecr"


@pytest.mark.parametrize(("host", "partition"), [
    (f"{A}.dkr.ecr.us-west-2.amazonaws.com", "aws"),
    (f"{A}.dkr-ecr.us-west-2.on.aws", "aws"),
    (f"{A}.dkr.ecr.cn-north-1.amazonaws.com.cn", "aws-cn"),
    (f"{A}.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn", "aws-cn"),
    (f"{A}.dkr.ecr.eusc-de-east-1.amazonaws.eu", "aws-eusc"),
    (f"{A}.dkr.ecr.us-iso-east-1.c2s.ic.gov", "aws-iso"),
    (f"{A}.dkr.ecr.us-isob-east-1.sc2s.sgov.gov", "aws-iso-b"),
    (f"{A}.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk", "aws-iso-e"),
    (f"{A}.dkr.ecr.us-isof-south-1.csp.hci.ic.gov", "aws-iso-f"),
])
def test_parse_ecr_host_names_the_partition_of_each_suffix(host: str, partition: str):
    registry = parse_ecr_host(host)
    assert registry is not None
    assert registry.partition == partition


def test_every_partition_suffix_is_recognized_somewhere_in_the_table():
    # Guards the tables above against a suffix added to PARTITIONS without a test.
    tested = {"amazonaws.com", "on.aws", "amazonaws.com.cn", "on.amazonwebservices.com.cn",
              "amazonaws.eu", "c2s.ic.gov", "sc2s.sgov.gov", "cloud.adc-e.uk", "csp.hci.ic.gov"}
    assert set(PARTITIONS) == tested


@pytest.mark.parametrize(("host", "dualstack"), [
    ("public.ecr.aws", False),
    ("ecr-public.aws.com", True),
])
def test_parse_ecr_host_recognizes_ecr_public_in_us_east_1(host: str, dualstack: bool):
    assert parse_ecr_host(host) == EcrRegistry(host, None, "us-east-1", "aws", fips=False,
                                               dualstack=dualstack)
    registry = parse_ecr_host(host)
    assert registry is not None
    assert registry.public
    assert registry.api == "ecr-public"


@pytest.mark.parametrize("host", [
    pytest.param(f"{A}.dkr.ecr.us-west-2.amazonaws.com.evil.example", id="extra-suffix"),
    pytest.param(f"{A}.dkr.ecr.us-west-2.amazonaws.com.", id="trailing-dot"),
    pytest.param(f"evil{A}.dkr.ecr.us-west-2.amazonaws.com", id="prefix"),
    pytest.param(f"x.{A}.dkr.ecr.us-west-2.amazonaws.com", id="extra-label"),
    pytest.param(f"{A}.dkr.ecr.us-west-2.amazonaws.com:443", id="with-port"),
    pytest.param("12345678901.dkr.ecr.us-west-2.amazonaws.com", id="11-digit-account"),
    pytest.param("1234567890123.dkr.ecr.us-west-2.amazonaws.com", id="13-digit-account"),
    pytest.param("12345678901a.dkr.ecr.us-west-2.amazonaws.com", id="non-digit-account"),
    pytest.param(f"{A}.dkr.ecr.cn-north-1.amazonaws.com", id="cn-region-commercial-suffix"),
    pytest.param(f"{A}.dkr.ecr.us-west-2.amazonaws.com.cn", id="us-region-china-suffix"),
    pytest.param(f"{A}.dkr.ecr.us-iso-east-1.amazonaws.com", id="iso-region-commercial-suffix"),
    pytest.param(f"{A}.dkr.ecr.eusc-de-east-1.amazonaws.com", id="eusc-region-commercial-suffix"),
    pytest.param(f"{A}.dkr.ecr.us-west-2.amazonaws.eu", id="us-region-eusc-suffix"),
    pytest.param(f"{A}.dkr.ecr.us-west-2.c2s.ic.gov", id="us-region-iso-suffix"),
    pytest.param(f"{A}.dkr.ecr.us-isob-east-1.c2s.ic.gov", id="iso-b-region-iso-suffix"),
    pytest.param(f"{A}.dkr.ecr.cn-north-1.on.aws", id="cn-region-dualstack-suffix"),
    pytest.param(f"{A}.dkr-ecr.us-west-2.amazonaws.com", id="dualstack-dkr-ipv4-suffix"),
    pytest.param(f"{A}.dkr-ecr-fips.us-west-2.amazonaws.com", id="dualstack-fips-ipv4-suffix"),
    pytest.param(f"{A}.dkr-ecr.cn-north-1.amazonaws.com.cn", id="dualstack-dkr-china-suffix"),
    pytest.param(f"{A}.dkr-ecr.us-iso-east-1.c2s.ic.gov", id="dualstack-dkr-iso-suffix"),
    pytest.param(f"{A}.dkr.ecr.us-west-2.on.aws", id="ipv4-dkr-dualstack-suffix"),
    pytest.param(f"{A}.dkr.ecr.cn-north-1.on.amazonwebservices.com.cn",
                 id="ipv4-dkr-china-dualstack-suffix"),
    pytest.param(f"{A}.dkr.ecr-fips.cn-north-1.amazonaws.com.cn", id="fips-in-china"),
    pytest.param(f"{A}.dkr-ecr-fips.cn-north-1.on.amazonwebservices.com.cn",
                 id="dualstack-fips-in-china"),
    pytest.param(f"{A}.dkr.ecr-fips.eusc-de-east-1.amazonaws.eu", id="fips-in-eusc"),
    pytest.param(f"{A}.dkr.ecr-fips.us-iso-east-1.c2s.ic.gov", id="fips-in-iso"),
    pytest.param(f"{A}.dkr.ecr-fips.us-isob-east-1.sc2s.sgov.gov", id="fips-in-iso-b"),
    pytest.param(f"{A}.dkr.ecr.us-west.amazonaws.com", id="region-without-number"),
    pytest.param(f"{A}.dkr.ecr..amazonaws.com", id="empty-region"),
    pytest.param(f"{A}.ecr.us-west-2.amazonaws.com", id="no-dkr"),
    pytest.param(f"{A}.dkr.ecr-dualstack.us-west-2.amazonaws.com", id="unknown-dkr-part"),
    pytest.param(f"{A}.DKR.ECR.us-west-2.amazonaws.com", id="uppercase-dkr"),
    pytest.param(f"{A}.dkr.ecr.US-WEST-2.amazonaws.com", id="uppercase-region"),
    pytest.param(f"{A}.dkr.ecr.us-west-2.AMAZONAWS.COM", id="uppercase-suffix"),
    pytest.param("PUBLIC.ECR.AWS", id="uppercase-public"),
    pytest.param("public.ecr.aws.evil.example", id="public-extra-suffix"),
    pytest.param("x.public.ecr.aws", id="public-extra-label"),
    pytest.param("public.ecr.aws:443", id="public-with-port"),
    pytest.param("registry.io", id="other-registry"),
    pytest.param("docker.io", id="docker-hub"),
    pytest.param("", id="empty"),
])
def test_parse_ecr_host_rejects_hosts_that_are_not_ecr(host: str):
    assert parse_ecr_host(host) is None


@pytest.mark.parametrize(("region", "fips", "dualstack", "host"), [
    ("us-west-2", False, False, f"{A}.dkr.ecr.us-west-2.amazonaws.com"),
    ("us-west-2", True, False, f"{A}.dkr.ecr-fips.us-west-2.amazonaws.com"),
    ("us-west-2", False, True, f"{A}.dkr-ecr.us-west-2.on.aws"),
    ("us-west-2", True, True, f"{A}.dkr-ecr-fips.us-west-2.on.aws"),
    ("us-gov-west-1", True, False, f"{A}.dkr.ecr-fips.us-gov-west-1.amazonaws.com"),
    ("cn-north-1", False, False, f"{A}.dkr.ecr.cn-north-1.amazonaws.com.cn"),
    ("cn-north-1", False, True, f"{A}.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn"),
    ("eusc-de-east-1", False, False, f"{A}.dkr.ecr.eusc-de-east-1.amazonaws.eu"),
    ("us-iso-east-1", False, False, f"{A}.dkr.ecr.us-iso-east-1.c2s.ic.gov"),
    ("us-isob-east-1", False, False, f"{A}.dkr.ecr.us-isob-east-1.sc2s.sgov.gov"),
    ("eu-isoe-west-1", False, False, f"{A}.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk"),
    ("us-isof-south-1", False, False, f"{A}.dkr.ecr.us-isof-south-1.csp.hci.ic.gov"),
])
def test_private_host_builds_the_host_and_parse_ecr_host_reads_it_back(
        region: str, fips: bool, dualstack: bool, host: str):
    built = private_host(A, region, fips=fips, dualstack=dualstack)
    assert built == host
    registry = parse_ecr_host(built)
    assert registry is not None
    assert (registry.account, registry.region, registry.fips, registry.dualstack) == (
        A, region, fips, dualstack)


# The host parser reads labels instead of compiling one big regex (a cost on every kubelet
# exec); this is the regex it replaced, kept here as the reference it must agree with.
_REFERENCE = re.compile(
    r"(?P<account>[0-9]{12})\.(?P<dkr>dkr\.ecr|dkr\.ecr-fips|dkr-ecr|dkr-ecr-fips)\."
    r"(?P<region>[a-z0-9-]+)\.(?P<suffix>"
    + "|".join(re.escape(s) for s in sorted(ecrhost.PARTITIONS, key=len, reverse=True)) + r")"
)
_LABELS = st.sampled_from(["123456789012", "12345678901", "dkr", "ecr", "ecr-fips", "dkr-ecr",
                           "dkr-ecr-fips", "dkr.ecr", "us-west-2", "cn-north-1", "us-gov-east-1",
                           "eusc-de-east-1", "us-iso-east-1", "amazonaws", "com", "cn", "on",
                           "aws", "amazonwebservices", "eu", "x", "", "US-WEST-2", "evil"])


@given(st.lists(_LABELS, min_size=1, max_size=8))
def test_host_parser_agrees_with_the_reference_regex_on_shape(labels: list[str]):
    host = ".".join(labels)
    m = _REFERENCE.fullmatch(host)
    parsed = ecrhost.parse_ecr_host(host)
    if m is None:
        assert parsed is None or host in ecrhost.PUBLIC_HOSTS
    elif parsed is not None:
        assert (parsed.account, parsed.region) == (m["account"], m["region"])
        assert (parsed.fips, parsed.dualstack) == ecrhost.DKR_PARTS[m["dkr"]]


# The region shapes are read word by word (``re`` stays off the cache-hit path); these are the
# regular expressions that specify them, kept here as the reference they must agree with.
_ANY_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d+"
_REGION_REFERENCE = {
    "amazonaws.com": r"(?!cn-|us-iso|eu-iso|eusc-)" + _ANY_REGION,
    "on.aws": r"(?!cn-|us-iso|eu-iso|eusc-)" + _ANY_REGION,
    "amazonaws.com.cn": r"cn-[a-z]+-\d+",
    "on.amazonwebservices.com.cn": r"cn-[a-z]+-\d+",
    "amazonaws.eu": r"eusc-[a-z]+-[a-z]+-\d+",
    "c2s.ic.gov": r"us-iso-[a-z]+-\d+",
    "sc2s.sgov.gov": r"us-isob-[a-z]+-\d+",
    "cloud.adc-e.uk": r"eu-isoe-[a-z]+-\d+",
    "csp.hci.ic.gov": r"us-isof-[a-z]+-\d+",
}


def test_every_partition_has_a_reference_region_pattern():
    assert set(_REGION_REFERENCE) == set(ecrhost.PARTITIONS)


_REGION_WORDS = st.sampled_from(["us", "cn", "eu", "eusc", "iso", "isob", "isoe", "isof", "gov",
                                 "west", "north", "de", "east", "a", "", "1", "x1", "ab"])


@settings(max_examples=3000)
@given(st.lists(_REGION_WORDS, min_size=1, max_size=5), st.sampled_from(["", "1", "12", "-"]),
       st.sampled_from(sorted(ecrhost.PARTITIONS)))
@example(["us", "west"], "2", "amazonaws.com")
@example(["us", "iso", "east"], "1", "amazonaws.com")
@example(["us", "west"], "٢", "amazonaws.com")
def test_region_shapes_agree_with_the_reference_patterns(words: list[str], number: str,
                                                         suffix: str):
    region = "-".join(words) + ("-" + number if number else "")
    expected = re.fullmatch(_REGION_REFERENCE[suffix], region, re.ASCII) is not None
    assert ecrhost.region_fits(region, ecrhost.PARTITIONS[suffix]) == expected, region
