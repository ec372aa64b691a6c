"""``build/botocore_data.py``: the artifact's slimmed ``endpoints.json`` resolves every shipped
service in every region of every partition exactly as botocore's whole file does."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

import botocore
import pytest
from botocore.exceptions import BotoCoreError
from botocore.regions import EndpointResolver

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(botocore.__file__).parent / "data"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("botocore_data", ROOT / "build/botocore_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


botocore_data = load()


def datas() -> list[tuple[str, str, str]]:
    """PyInstaller's data entries for botocore's data folder, as its botocore hook makes them."""
    return [(str(Path("botocore/data") / path.relative_to(DATA)), str(path), "DATA")
            for path in sorted(DATA.rglob("*")) if path.is_file()]


def resolve(resolver: EndpointResolver, args: tuple[object, ...]) -> object:
    """What ``construct_endpoint`` returns, or the error it raises (a variant the partition
    does not model, such as dual-stack STS in some regions)."""
    try:
        return resolver.construct_endpoint(*args)
    except BotoCoreError as exc:
        return type(exc).__name__, str(exc)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {dest: source for dest, source, _ in
            botocore_data.slim_datas(datas(), str(tmp_path_factory.mktemp("work")))}


def test_only_the_three_services_models_and_the_top_level_files_are_shipped(shipped):
    services = {dest.split(os.sep)[2] for dest in shipped if dest.count(os.sep) > 2}
    assert services == {"ecr", "ecr-public", "sts"}
    top = {dest for dest in shipped if dest.count(os.sep) == 2}
    assert top == {str(Path("botocore/data") / p.name) for p in DATA.iterdir() if p.is_file()}
    assert not botocore_data.keep("boto3/data/ec2/2016-11-15/resources-1.json")


def test_the_endpoint_prefixes_are_read_from_the_models(shipped):
    prefixes = botocore_data.endpoint_prefixes(
        (dest, source, "DATA") for dest, source in shipped.items())
    assert prefixes == {"api.ecr", "api.ecr-public", "sts"}


def test_the_slimmed_endpoints_resolve_as_botocores_whole_file(shipped):
    whole = json.loads((DATA / "endpoints.json").read_text())
    slim_path = shipped[str(Path(botocore_data.ENDPOINTS))]
    assert slim_path != str(DATA / "endpoints.json")
    slim = json.loads(Path(slim_path).read_text())
    assert Path(slim_path).stat().st_size < 100_000
    theirs, ours = EndpointResolver(whole, True), EndpointResolver(slim, True)
    checked = 0
    assert len(slim["partitions"]) == len(whole["partitions"])
    for partition, slimmed in zip(whole["partitions"], slim["partitions"], strict=True):
        assert {k: v for k, v in partition.items() if k != "services"} == {
            k: v for k, v in slimmed.items() if k != "services"}
        regions = [*partition["regions"], "xx-unknown-9"]
        for prefix in ("api.ecr", "api.ecr-public", "sts"):
            for region in regions:
                for fips in (False, True):
                    for dualstack in (False, True):
                        args = (prefix, region, None, dualstack, fips)
                        assert resolve(ours, args) == resolve(theirs, args), args
                        checked += 1
    assert checked > 300
    assert ours.get_available_partitions() == theirs.get_available_partitions()
    assert ours.get_partition_for_region("eu-west-1") == "aws"
