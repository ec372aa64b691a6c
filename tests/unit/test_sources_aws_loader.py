"""The data loader the AWS adapters give botocore (``sources.aws._loader``) against botocore's
own: the same services found, the same data read, the same search paths; and the adapters' own
session, a plain botocore session, resolving the environment's credentials."""

from __future__ import annotations

import os
from pathlib import Path

import botocore.session
import pytest
from botocore.exceptions import UnknownServiceError
from botocore.loaders import create_loader

from ecrcred.ecrhost import parse_ecr_host
from ecrcred.sources import aws
from ecrcred.sources.aws import SERVICES, AwsCredentials, BotoEcrApi, _loader, _session


@pytest.fixture(autouse=True)
def fresh_loaders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws, "_LOADERS", {})


@pytest.mark.parametrize("type_name", ["service-2", "endpoint-rule-set-1", "paginators-1"])
def test_it_lists_exactly_the_services_of_ours_that_botocore_lists(type_name: str):
    theirs = create_loader().list_available_services(type_name)
    ours = _loader(None).list_available_services(type_name)
    assert ours == [name for name in theirs if name in SERVICES]
    if type_name != "paginators-1":
        assert ours == sorted(SERVICES)


@pytest.mark.parametrize("service", sorted(SERVICES))
@pytest.mark.parametrize("type_name", ["service-2", "endpoint-rule-set-1"])
def test_it_reads_the_same_models_as_botocore(service: str, type_name: str):
    theirs = create_loader().load_service_model(service, type_name)
    ours = _loader(None).load_service_model(service, type_name)
    assert ours == theirs
    assert list(ours) == list(theirs)  # the order botocore's OrderedDicts kept


@pytest.mark.parametrize("name", ["endpoints", "partitions", "_retry",
                                  "sdk-default-configuration"])
def test_it_reads_the_same_data_files_as_botocore(name: str):
    theirs, their_path = create_loader().load_data_with_path(name)
    ours, our_path = _loader(None).load_data_with_path(name)
    assert (ours, our_path) == (theirs, their_path)
    assert _loader(None).is_builtin_path(our_path)  # the endpoint resolver asks this


def test_a_service_we_never_call_is_unknown_to_it():
    with pytest.raises(UnknownServiceError):
        _loader(None).load_service_model("s3", "service-2")


def test_aws_data_path_is_searched_first_as_botocore_does(tmp_path: Path):
    model = tmp_path / "sts" / "2011-06-15"
    model.mkdir(parents=True)
    (model / "service-2.json").write_text('{"metadata": {"x": 1}, "operations": {}, '
                                          '"shapes": {}, "version": "2.0"}')
    data_path = f"{tmp_path}{os.pathsep}/nonexistent"
    theirs = create_loader(data_path)
    ours = _loader(data_path)
    assert ours.search_paths == theirs.search_paths
    assert ours.load_service_model("sts", "service-2") == theirs.load_service_model(
        "sts", "service-2")
    assert ours.load_service_model("sts", "service-2")["metadata"] == {"x": 1}


def test_one_loader_serves_every_session_of_the_process(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)
    first, second = _session(os.environ, None), _session(os.environ, None)
    assert first.get_component("data_loader") is second.get_component("data_loader")


def test_the_session_is_botocores_and_takes_an_assumed_roles_keys(
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANODE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "node-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    node = _session(os.environ, None)
    assert isinstance(node, botocore.session.Session)
    assert node.get_credentials().get_frozen_credentials().access_key == "AKIANODE"
    role = _session(os.environ, AwsCredentials("ASIAROLE", "role-secret", "role-token", None))
    frozen = role.get_credentials().get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (
        "ASIAROLE", "role-secret", "role-token")


def test_a_client_signs_for_the_registrys_region_and_reaches_its_endpoint(
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANODE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "node-secret")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR", "AWS_PROFILE", "AWS_DATA_PATH"):
        monkeypatch.delenv(name, raising=False)
    for host, url in [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "https://api.ecr.eu-west-1.amazonaws.com"),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
         "https://api.ecr.cn-north-1.amazonaws.com.cn"),
        ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
         "https://ecr-fips.us-gov-west-1.amazonaws.com"),
    ]:
        registry = parse_ecr_host(host)
        assert registry is not None
        client = BotoEcrApi(os.environ)._client(registry, None)
        assert client.meta.region_name == registry.region
        assert client.meta.endpoint_url == url, host
