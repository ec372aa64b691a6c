"""Properties of ECR host recognition (``ecrcred.ecrhost``), checked with hypothesis.

test_ecrhost.py has the tables (one host per partition and variant, the look-alikes) and the
agreement with the regex the label parser replaced; these generate hosts across every partition,
FIPS and dual-stack variant, account and region, and say what holds for all of them: a built
host reads back, a parsed host rebuilds to itself, and anything added, removed or upper-cased
stops being ECR.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from ecrcred.ecrhost import (
    DKR_PARTS,
    PARTITIONS,
    PUBLIC_API_REGION,
    PUBLIC_HOSTS,
    parse_ecr_host,
    private_host,
)

accounts = st.text(alphabet="0123456789", min_size=12, max_size=12)
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=9)
numbers = st.integers(min_value=1, max_value=99).map(str)

# Regions of each partition's shape (the region names AWS uses, and made-up ones alike).
REGION_PREFIX = {
    "aws": st.sampled_from(["us", "eu", "ap", "ca", "sa", "me", "af", "il", "mx"]),
    "aws-us-gov": st.just("us-gov"),
    "aws-cn": st.just("cn"),
    "aws-eusc": st.builds(lambda w: f"eusc-{w}", words),
    "aws-iso": st.just("us-iso"),
    "aws-iso-b": st.just("us-isob"),
    "aws-iso-e": st.just("eu-isoe"),
    "aws-iso-f": st.just("us-isof"),
}


def regions(partition: str) -> st.SearchStrategy[str]:
    return st.builds(lambda p, w, n: f"{p}-{w}-{n}", REGION_PREFIX[partition], words, numbers)


# Which partition (as parse_ecr_host names it) a suffix serves, with GovCloud on the commercial
# domains, and whether ECR has FIPS hosts there.
SHAPES = [
    (suffix, name, partition.dualstack, partition.fips)
    for suffix, partition in PARTITIONS.items()
    for name in ([partition.name, "aws-us-gov"] if partition.name == "aws" else
                 [partition.name])
]


@st.composite
def private_registries(draw: st.DrawFn) -> tuple[str, str, str, bool, bool, str]:
    """(account, region, partition, fips, dualstack, suffix) for a host ECR could have."""
    suffix, name, dualstack, has_fips = draw(st.sampled_from(SHAPES))
    region = draw(regions(name))
    fips = draw(st.booleans()) if has_fips else False
    if name == "aws":
        assume(not re.match(r"(cn-|us-iso|eu-iso|eusc-|us-gov-)", region))
    return draw(accounts), region, name, fips, dualstack, suffix


@given(private_registries())
def test_every_built_host_reads_back_with_its_account_region_and_variant(
        registry: tuple[str, str, str, bool, bool, str]):
    account, region, partition, fips, dualstack, suffix = registry
    host = private_host(account, region, fips=fips, dualstack=dualstack)
    assert host.endswith("." + suffix)
    parsed = parse_ecr_host(host)
    assert parsed is not None, host
    assert (parsed.host, parsed.account, parsed.region, parsed.partition, parsed.fips,
            parsed.dualstack) == (host, account, region, partition, fips, dualstack)
    assert not parsed.public
    assert parsed.api == "ecr"


@given(private_registries())
def test_fips_hosts_exist_only_where_ecr_has_them(
        registry: tuple[str, str, str, bool, bool, str]):
    account, region, partition, _fips, dualstack, _suffix = registry
    host = private_host(account, region, fips=True, dualstack=dualstack)
    parsed = parse_ecr_host(host)
    if partition in ("aws", "aws-us-gov"):
        assert parsed is not None and parsed.fips
    else:  # private_host builds the name; the ECR source refuses it (a ConfigError)
        assert parsed is None


label_soup = st.lists(st.sampled_from(
    ["123456789012", "000000000000", "12345678901", "dkr", "ecr", "ecr-fips", "dkr-ecr",
     "dkr-ecr-fips", "us-west-2", "us-gov-west-1", "cn-north-1", "eusc-de-east-1",
     "us-iso-east-1", "us-isob-east-1", "eu-isoe-west-1", "us-isof-south-1", "amazonaws",
     "com", "cn", "eu", "on", "aws", "amazonwebservices", "c2s", "sc2s", "ic", "sgov", "gov",
     "cloud", "adc-e", "uk", "csp", "hci", "public", "ecr-public", "x", ""]),
    min_size=1, max_size=9).map(".".join)


@given(label_soup | st.text(max_size=80))
@example("123456789012.dkr.ecr.us-west-2.amazonaws.com")
def test_a_parsed_host_rebuilds_to_itself(host: str):
    parsed = parse_ecr_host(host)
    if parsed is None:
        return
    assert parsed.host == host
    if host in PUBLIC_HOSTS:
        assert parsed.public and parsed.region == PUBLIC_API_REGION
        assert parsed.api == "ecr-public"
        return
    assert parsed.account is not None
    assert len(parsed.account) == 12 and parsed.account.isascii() and parsed.account.isdigit()
    assert private_host(parsed.account, parsed.region, fips=parsed.fips,
                        dualstack=parsed.dualstack) == host


def some_host(registry: tuple[str, str, str, bool, bool, str]) -> str:
    account, region, _partition, fips, dualstack, _suffix = registry
    return private_host(account, region, fips=fips, dualstack=dualstack)


host_chars = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)


@given(private_registries() | st.sampled_from(sorted(PUBLIC_HOSTS)).map(lambda h: ("", h)),
       host_chars)
def test_a_label_added_before_or_after_an_ecr_host_makes_it_not_ecr(
        registry: tuple[str, ...], label: str):
    host = some_host(registry) if len(registry) == 6 else registry[1]  # type: ignore[arg-type]
    assert parse_ecr_host(f"{host}.{label}") is None
    assert parse_ecr_host(f"{label}.{host}") is None
    assert parse_ecr_host(f"{host}:{len(label)}") is None, "a port is not part of the host"
    assert parse_ecr_host(f"{host}.") is None


@given(private_registries(), st.data())
def test_dropping_any_label_makes_a_host_not_ecr(
        registry: tuple[str, str, str, bool, bool, str], data: st.DataObject):
    labels = some_host(registry).split(".")
    i = data.draw(st.integers(min_value=0, max_value=len(labels) - 1))
    assert parse_ecr_host(".".join(labels[:i] + labels[i + 1:])) is None


@given(private_registries() | st.sampled_from(sorted(PUBLIC_HOSTS)).map(lambda h: ("", h)),
       st.data())
def test_an_upper_case_letter_anywhere_makes_a_host_not_ecr(
        registry: tuple[str, ...], data: st.DataObject):
    host = some_host(registry) if len(registry) == 6 else registry[1]  # type: ignore[arg-type]
    letters = [i for i, c in enumerate(host) if c.isalpha()]
    i = data.draw(st.sampled_from(letters))
    assert parse_ecr_host(host[:i] + host[i].upper() + host[i + 1:]) is None


@given(private_registries(), st.sampled_from(sorted(DKR_PARTS)))
def test_the_dkr_part_must_fit_the_suffix(
        registry: tuple[str, str, str, bool, bool, str], dkr: str):
    account, region, partition, _fips, _dualstack, suffix = registry
    fips, dualstack = DKR_PARTS[dkr]
    parsed = parse_ecr_host(f"{account}.{dkr}.{region}.{suffix}")
    fits = dualstack == PARTITIONS[suffix].dualstack and (
        not fips or partition in ("aws", "aws-us-gov"))
    assert (parsed is not None) == fits


@given(st.text(max_size=20), st.booleans(), st.booleans())
@example("us-west-\u0662", False, False)  # an Arabic-Indic digit: a host no parser takes (fixed)
@example("us-west-\uff12", True, False)  # a full-width digit
def test_private_host_builds_a_host_parse_ecr_host_reads_or_raises_value_error(
        region: str, fips: bool, dualstack: bool):
    try:
        host = private_host("123456789012", region, fips=fips, dualstack=dualstack)
    except ValueError as exc:
        assert "no ECR domain" in str(exc)
        return
    parsed = parse_ecr_host(host)
    if parsed is None:  # only a FIPS name where ECR has none
        assert fips and not host.endswith((".amazonaws.com", ".on.aws"))
        return
    assert (parsed.region, parsed.fips, parsed.dualstack) == (region, fips, dualstack)


@pytest.mark.parametrize("region", ["us-west-\u0662", "cn-north-\u0661", "us-iso-east-\uff11"])
def test_private_host_refuses_regions_with_non_ascii_digits(region: str):
    # Regression: the partitions' region patterns use \d, which takes any Unicode digit, so
    # private_host built "123456789012.dkr.ecr.us-west-٢.amazonaws.com", a host that
    # parse_ecr_host (ASCII only) does not read.
    with pytest.raises(ValueError, match="no ECR domain"):
        private_host("123456789012", region)


@given(st.sampled_from(sorted(PUBLIC_HOSTS)), st.text(max_size=30))
def test_ecr_public_is_only_its_two_exact_hosts(host: str, path: str):
    parsed = parse_ecr_host(host)
    assert parsed is not None and parsed.public
    assert parsed.dualstack == PUBLIC_HOSTS[host]
    assert parse_ecr_host(f"{host}/{path}") is None, "the caller passes the host, never a path"
