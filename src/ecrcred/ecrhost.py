"""Recognizing Amazon ECR registry hosts: every partition, FIPS, dual-stack, and ECR Public.

A host is ECR only when the whole host has an ECR shape: a 12-digit account, a known dkr part, a
region, and a partition suffix that fits both. ``…amazonaws.com.evil.example`` is not ECR, and an
image *path* that contains ``public.ecr.aws`` does not make a private image public: only the host
is looked at. Facts: docs/ecr.md.

Standard library only: this is on the cache-hit path.
"""

from __future__ import annotations

import re

from ecrcred._record import Record

PUBLIC_HOSTS = {"public.ecr.aws": False, "ecr-public.aws.com": True}  # host -> dual-stack
PUBLIC_API_REGION = "us-east-1"  # the ecr-public API exists only there


class Partition(Record):
    name: str
    region: str  # a regex, compiled only when a host of this partition is checked
    dualstack: bool  # whether this suffix is the partition's dual-stack domain
    fips: bool = False  # whether ECR has FIPS registry hosts under this suffix


_ANY_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d+"

# suffix -> partition. The region pattern keeps a host from pairing a region with another
# partition's domain (``cn-north-1`` only under ``.cn``). ECR has FIPS registry hosts only in the
# commercial and GovCloud regions (IPv4 and dual-stack).
PARTITIONS: dict[str, Partition] = {
    "amazonaws.com": Partition(
        "aws", r"(?!cn-|us-iso|eu-iso|eusc-)" + _ANY_REGION, dualstack=False,
        fips=True,
    ),
    "amazonaws.com.cn": Partition("aws-cn", r"cn-[a-z]+-\d+", dualstack=False),
    "amazonaws.eu": Partition("aws-eusc", r"eusc-[a-z]+-[a-z]+-\d+", dualstack=False),
    "c2s.ic.gov": Partition("aws-iso", r"us-iso-[a-z]+-\d+", dualstack=False),
    "sc2s.sgov.gov": Partition("aws-iso-b", r"us-isob-[a-z]+-\d+", dualstack=False),
    "cloud.adc-e.uk": Partition("aws-iso-e", r"eu-isoe-[a-z]+-\d+", dualstack=False),
    "csp.hci.ic.gov": Partition("aws-iso-f", r"us-isof-[a-z]+-\d+", dualstack=False),
    "on.aws": Partition(
        "aws", r"(?!cn-|us-iso|eu-iso|eusc-)" + _ANY_REGION, dualstack=True,
        fips=True,
    ),
    "on.amazonwebservices.com.cn": Partition(
        "aws-cn", r"cn-[a-z]+-\d+", dualstack=True
    ),
}

# dkr part -> (fips, dual-stack)
DKR_PARTS = {
    "dkr.ecr": (False, False),
    "dkr.ecr-fips": (True, False),
    "dkr-ecr": (False, True),
    "dkr-ecr-fips": (True, True),
}

_DIGITS = frozenset("0123456789")
_REGION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


class EcrRegistry(Record):
    """A registry whose tokens come from ECR (private) or ECR Public."""

    host: str
    account: str | None  # None for ECR Public
    region: str
    partition: str
    fips: bool
    dualstack: bool

    @property
    def public(self) -> bool:
        return self.account is None

    @property
    def api(self) -> str:
        """The botocore service name that issues this registry's tokens."""
        return "ecr-public" if self.public else "ecr"

    def describe(self) -> str:
        """For messages: which registry, account, region and endpoint variant."""
        if self.public:
            return f"ECR Public registry {self.host}"
        variant = " ".join(v for v, on in (("FIPS", self.fips), ("dual-stack", self.dualstack))
                           if on)
        return (f"ECR registry {self.host} (account {self.account}, region "
                f"{self.region}{', ' + variant if variant else ''})")


def parse_ecr_host(host: str) -> EcrRegistry | None:
    """The ECR registry a host names, or None when the host is not an ECR host."""
    if host in PUBLIC_HOSTS:
        return EcrRegistry(
            host, None, PUBLIC_API_REGION, "aws", fips=False, dualstack=PUBLIC_HOSTS[host]
        )
    # <12-digit account>.<dkr part>.<region>.<partition suffix>, read label by label: cheaper
    # on every kubelet exec than compiling one big regex, and no less strict.
    labels = host.split(".")
    if len(labels) < 5 or len(labels[0]) != 12 or not _DIGITS.issuperset(labels[0]):
        return None
    if labels[1] == "dkr" and labels[2] in ("ecr", "ecr-fips"):
        dkr, region, suffix = f"dkr.{labels[2]}", labels[3], ".".join(labels[4:])
    elif labels[1] in ("dkr-ecr", "dkr-ecr-fips"):
        dkr, region, suffix = labels[1], labels[2], ".".join(labels[3:])
    else:
        return None
    if not region or not _REGION_CHARS.issuperset(region) or suffix not in PARTITIONS:
        return None
    account = labels[0]
    partition = PARTITIONS[suffix]
    fips, dualstack = DKR_PARTS[dkr]
    if dualstack != partition.dualstack or (fips and not partition.fips):
        return None
    if not re.fullmatch(partition.region, region):
        return None
    name = partition.name
    if name == "aws" and region.startswith("us-gov-"):
        name = "aws-us-gov"  # GovCloud shares the commercial domains
    return EcrRegistry(host, account, region, name, fips, dualstack)


def private_host(account: str, region: str, *, fips: bool = False, dualstack: bool = False) -> str:
    """The registry host for an account and region, derived from the same tables that
    ``parse_ecr_host`` reads (used for custom-domain rules and tests)."""
    dkr = next(part for part, flags in DKR_PARTS.items() if flags == (fips, dualstack))
    # The ASCII check first, as parse_ecr_host does: the patterns' \d would take "us-west-٢".
    for suffix, partition in PARTITIONS.items() if _REGION_CHARS.issuperset(region) else ():
        if partition.dualstack == dualstack and re.fullmatch(partition.region, region):
            return f"{account}.{dkr}.{region}.{suffix}"
    variant = " (dual-stack)" if dualstack else ""
    raise ValueError(f"no ECR domain for region {region!r}{variant}")
