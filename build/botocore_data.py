"""Which of botocore's data files the artifact ships, and its slimmed ``endpoints.json``.

Imported by ``ecrcred.spec`` (PyInstaller runs the spec with ``build/`` on ``sys.path``) and by
``tests/unit/test_build_botocore_data.py``, which checks the slimmed endpoints against
botocore's own for every region of every partition.

botocore carries models for about 460 services (tens of MB); ecrcred makes clients of three.
Every client creation also parses ``endpoints.json`` (1.2 MB, every service of every partition)
to build its legacy endpoint resolver, which botocore still asks for the signing region and name
of the service it makes a client of; only the entries of the shipped services can ever be asked
for, so the artifact carries those and the partitions' own fields, whole.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable
from typing import Any

# The services ecrcred makes clients of (``sources.aws.SERVICES``).
BOTOCORE_SERVICES = frozenset({"ecr", "ecr-public", "sts"})
ENDPOINTS = "botocore/data/endpoints.json"


def keep(dest: str) -> bool:
    """Whether the data file at ``dest`` (its path in the bundle) is shipped: every top-level
    file of botocore's data (endpoints, partitions, retries, defaults), the models of
    ``BOTOCORE_SERVICES``, and none of boto3's resource models (ecrcred makes no resources)."""
    parts = dest.replace(os.sep, "/").split("/")
    if parts[:2] == ["botocore", "data"] and len(parts) > 3:
        return parts[2] in BOTOCORE_SERVICES
    return parts[:2] != ["boto3", "data"]


def endpoint_prefixes(datas: Iterable[tuple[str, str, str]]) -> set[str]:
    """The ``endpointPrefix`` of every service model among ``datas`` (PyInstaller's
    ``(dest, source, kind)`` entries): the keys ``endpoints.json`` files services under
    (``api.ecr`` for ``ecr``)."""
    found = set()
    for dest, source, _kind in datas:
        parts = dest.replace(os.sep, "/").split("/")
        if parts[:2] == ["botocore", "data"] and len(parts) == 5 \
                and parts[4] in ("service-2.json", "service-2.json.gz"):
            opener: Any = gzip.open if source.endswith(".gz") else open
            with opener(source, "rb") as f:
                found.add(json.load(f)["metadata"]["endpointPrefix"])
    return found


def slim_endpoints(endpoints: dict[str, Any], prefixes: set[str]) -> dict[str, Any]:
    """``endpoints`` (the parsed ``endpoints.json``) with only the services of ``prefixes`` in
    each partition; every other field as it was."""
    slim = dict(endpoints)
    slim["partitions"] = [
        {**partition, "services": {name: service for name, service in
                                   partition["services"].items() if name in prefixes}}
        for partition in endpoints["partitions"]]
    return slim


def slim_datas(datas: list[tuple[str, str, str]], workdir: str) -> list[tuple[str, str, str]]:
    """PyInstaller's data entries, ``keep``-filtered, with ``endpoints.json`` replaced by its
    slimmed copy (written to ``workdir``)."""
    kept = [entry for entry in datas if keep(entry[0])]
    prefixes = endpoint_prefixes(kept)
    out = []
    for dest, source, kind in kept:
        shipped = source
        if dest.replace(os.sep, "/") == ENDPOINTS:
            with open(source, "rb") as f:
                endpoints = json.load(f)
            shipped = os.path.join(workdir, "endpoints.json")
            os.makedirs(workdir, exist_ok=True)
            with open(shipped, "w", encoding="utf-8") as f:
                json.dump(slim_endpoints(endpoints, prefixes), f, separators=(",", ":"))
        out.append((dest, shipped, kind))
    return out
