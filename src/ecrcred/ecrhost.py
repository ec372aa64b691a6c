"""Recognizing Amazon ECR registry hosts: every partition, FIPS, dual-stack, and ECR Public.

A host is ECR only when the whole host has an ECR shape: a 12-digit account, a known dkr part, a
region, and a partition suffix that fits both. ``…amazonaws.com.evil.example`` is not ECR, and an
image *path* that contains ``public.ecr.aws`` does not make a private image public: only the host
is looked at. Facts: docs/ecr.md.

Standard library only, and no ``re``: this is on the cache-hit path, where importing ``re``
(with ``enum``) would cost more instructions than the rest of ecrcred; a region is read word by
word instead (``tests/unit/test_ecrhost.py`` checks it against the regular expressions that
specify each partition's regions).
"""

from __future__ import annotations

from ecrcred._record import Record

PUBLIC_HOSTS = {"public.ecr.aws": False, "ecr-public.aws.com": True}  # host -> dual-stack
PUBLIC_API_REGION = "us-east-1"  # the ecr-public API exists only there


class Partition(Record):
    """A partition's domain, and the shape of the regions under it: ``lead`` words, then
    ``words`` more words, then a number (``cn-north-1``: lead ``("cn",)``, one word). No lead:
    the commercial shape, a two-letter word, one or more words and a number, and no other
    partition's lead (``us-west-2``, ``us-gov-west-1``, ``ap-southeast-3``)."""

    name: str
    lead: tuple[str, ...]
    words: int
    dualstack: bool  # whether this suffix is the partition's dual-stack domain
    fips: bool = False  # whether ECR has FIPS registry hosts under this suffix


# Regions that begin like these belong to another partition, never to the commercial domains.
_OTHER_LEADS = ("cn-", "us-iso", "eu-iso", "eusc-")

# suffix -> partition. The region shape keeps a host from pairing a region with another
# partition's domain (``cn-north-1`` only under ``.cn``). ECR has FIPS registry hosts only in the
# commercial and GovCloud regions (IPv4 and dual-stack).
PARTITIONS: dict[str, Partition] = {
    "amazonaws.com": Partition("aws", (), 0, dualstack=False, fips=True),
    "amazonaws.com.cn": Partition("aws-cn", ("cn",), 1, dualstack=False),
    "amazonaws.eu": Partition("aws-eusc", ("eusc",), 2, dualstack=False),
    "c2s.ic.gov": Partition("aws-iso", ("us", "iso"), 1, dualstack=False),
    "sc2s.sgov.gov": Partition("aws-iso-b", ("us", "isob"), 1, dualstack=False),
    "cloud.adc-e.uk": Partition("aws-iso-e", ("eu", "isoe"), 1, dualstack=False),
    "csp.hci.ic.gov": Partition("aws-iso-f", ("us", "isof"), 1, dualstack=False),
    "on.aws": Partition("aws", (), 0, dualstack=True, fips=True),
    "on.amazonwebservices.com.cn": Partition("aws-cn", ("cn",), 1, dualstack=True),
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


def region_fits(region: str, partition: Partition) -> bool:
    """Whether ``region`` has the shape of ``partition``'s regions (see ``Partition``)."""
    if not _REGION_CHARS.issuperset(region):  # ASCII only: "us-west-٢" is no region
        return False
    *words, number = region.split("-")
    # [a-z]+ words: within _REGION_CHARS, a non-empty word of no digits ("".isalpha() is False)
    if not number or not _DIGITS.issuperset(number) or not all(w.isalpha() for w in words):
        return False
    if partition.lead:
        return (tuple(words[:len(partition.lead)]) == partition.lead
                and len(words) == len(partition.lead) + partition.words)
    return len(words) >= 2 and len(words[0]) == 2 and not region.startswith(_OTHER_LEADS)


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
    if not region_fits(region, partition):
        return None
    name = partition.name
    if name == "aws" and region.startswith("us-gov-"):
        name = "aws-us-gov"  # GovCloud shares the commercial domains
    return EcrRegistry(host, account, region, name, fips, dualstack)


def private_host(account: str, region: str, *, fips: bool = False, dualstack: bool = False) -> str:
    """The registry host for an account and region, derived from the same tables that
    ``parse_ecr_host`` reads (used for custom-domain rules and tests)."""
    dkr = next(part for part, flags in DKR_PARTS.items() if flags == (fips, dualstack))
    for suffix, partition in PARTITIONS.items():
        if partition.dualstack == dualstack and region_fits(region, partition):
            return f"{account}.{dkr}.{region}.{suffix}"
    variant = " (dual-stack)" if dualstack else ""
    raise ValueError(f"no ECR domain for region {region!r}{variant}")
