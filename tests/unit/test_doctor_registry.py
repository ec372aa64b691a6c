"""The registry probe: containerd's endpoint order, the auth challenges, the media types each
containerd version unpacks; and the real HTTP client's redirects. Nothing reported ever holds
the password or a bearer token."""

from __future__ import annotations

import base64
import http.server
import json
import os
import pty
import select
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ecrcred.containerd_routes import ALL_CAPABILITIES, Endpoint, RegistryHosts
from ecrcred.cri.client import RuntimeVersion
from ecrcred.doctor.registry import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryLogin,
    RegistryProbe,
    goarch,
    version_tuple,
)
from ecrcred.doctor.report import FAIL, OK, SKIP, WARN, Check
from ecrcred.doctor.transport import HttpClient, HttpReply, load_client_pair
from ecrcred.imageref import parse_reference
from tests.support.tls import Pair, encrypt_key, make_ca, make_client_cert, make_server_cert
from tests.unit.fakes import FakeHttp, Route

USER = "robot"
PASSWORD = "pw-7f3a9c-do-not-print"
TOKEN = "tok-4e1d8c-do-not-print"
SOURCE = "static rule registries[0] (static for registry.example.com)"
CREDS = RegistryLogin(USER, PASSWORD, SOURCE)
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
BEARER = f"Bearer {TOKEN}"

HOST = "registry.example.com"
IMAGE = f"{HOST}/team/app:1.0"
API = f"https://{HOST}/v2"
MANIFEST = f"{API}/team/app/manifests/1.0"
REALM = "https://auth.example.com/token"
TOKEN_URL = f"{REALM}?service={HOST}&scope=repository%3Ateam%2Fapp%3Apull"
BASIC_CHALLENGE = 'Basic realm="Registry Realm"'
BEARER_CHALLENGE = f'Bearer realm="{REALM}",service="{HOST}"'

CONTAINERD_14 = RuntimeVersion("containerd", "1.4.13", "v1alpha2")
CONTAINERD_16 = RuntimeVersion("containerd", "1.6.20~ds1", "v1")
CONTAINERD_17 = RuntimeVersion("containerd", "1.7.14", "v1")
CONTAINERD_20 = RuntimeVersion("containerd", "v2.0.4", "v1")
CRI_O = RuntimeVersion("cri-o", "1.29.1", "v1")

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DIGEST = "sha256:" + "a" * 64
AMD64_DIGEST = "sha256:" + "b" * 64
ARM64_DIGEST = "sha256:" + "c" * 64


@pytest.fixture(scope="module")
def client_pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """A real client certificate and key (openssl), for what loads them for real."""
    directory = tmp_path_factory.mktemp("client-cert")
    return make_client_cert(directory, "node", make_ca(directory, "client-ca"))


# -- replies for the fake HTTP seam (tests.unit.fakes.FakeHttp) -------------------------------

def reply(status: int, body: bytes | dict[str, Any] = b"", **headers: str) -> HttpReply:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return HttpReply(status, {k.replace("_", "-"): v for k, v in headers.items()}, raw)


def registry_error(status: int, code: str) -> HttpReply:
    return reply(status, {"errors": [{"code": code, "message": code.lower().replace("_", " ")}]})


def needs(authorization: str, then: HttpReply) -> Callable[[dict[str, str]], HttpReply]:
    """``then`` for a request carrying exactly ``authorization``, a 401 for any other."""

    def answer(headers: dict[str, str]) -> HttpReply:
        if headers.get("Authorization") == authorization:
            return then
        return registry_error(401, "UNAUTHORIZED")

    return answer


def image(config: str = DOCKER_CONFIG, layers: tuple[str, ...] = (GZIP,),
          media_type: str = DOCKER_MANIFEST) -> HttpReply:
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "config": {"mediaType": config, "digest": "sha256:" + "d" * 64, "size": 10},
           "layers": [{"mediaType": t, "digest": "sha256:" + "e" * 64, "size": 10}
                      for t in layers]}
    return reply(200, doc, content_type=media_type, docker_content_digest=DIGEST)


def index(*platforms: tuple[str, str, str], media_type: str = OCI_INDEX) -> HttpReply:
    """An index of (os, architecture, digest) entries."""
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": 10,
                          "platform": {"os": os_name, "architecture": arch}}
                         for os_name, arch, digest in platforms]}
    return reply(200, doc, content_type=media_type)


def schema1() -> HttpReply:
    return reply(200, {"schemaVersion": 1, "name": "team/app", "tag": "1.0", "fsLayers": []},
                 content_type=SCHEMA1)


def open_registry(manifest: HttpReply | None = None) -> dict[str, Route]:
    return {f"{API}/": reply(200), MANIFEST: manifest or image()}


def basic_registry(manifest: HttpReply | None = None) -> dict[str, Route]:
    return {f"{API}/": reply(401, www_authenticate=BASIC_CHALLENGE),
            MANIFEST: needs(BASIC, manifest or image())}


def bearer_registry(manifest: HttpReply | None = None,
                    token_body: dict[str, Any] | None = None) -> dict[str, Route]:
    return {f"{API}/": reply(401, www_authenticate=BEARER_CHALLENGE),
            TOKEN_URL: needs(BASIC, reply(200, token_body or {"token": TOKEN})),
            MANIFEST: needs(BEARER, manifest or image())}


# -- endpoints and the probe ----------------------------------------------------------------------

def server(url: str = f"https://{HOST}", **fields: Any) -> Endpoint:
    return Endpoint(url, ALL_CAPABILITIES, (), False, False, False)._replace(**fields)


def mirror(url: str, **fields: Any) -> Endpoint:
    return server(url, mirror=True)._replace(**fields)


def hosts(*endpoints: Endpoint, host: str = HOST,
          origin: str = "no registry config for this host") -> RegistryHosts:
    return RegistryHosts(host, endpoints or (server(),), origin, ())


def probe(http: FakeHttp, image_ref: str = IMAGE, registry: RegistryHosts | None = None,
          creds: RegistryLogin | None = CREDS,
          runtime: RuntimeVersion | None = CONTAINERD_16) -> dict[str, Check]:
    checks = RegistryProbe(http, 5.0, ("linux", "amd64"), runtime).check(
        parse_reference(image_ref), registry or hosts(), creds)
    found = {c.id: c for c in checks}
    assert len(found) == len(checks), f"a check id twice: {checks}"
    for check in checks:
        assert check.status in (OK, WARN, FAIL, SKIP)
        assert (check.fix != "") == (check.status in (WARN, FAIL)), check
    return found


def statuses(checks: dict[str, Check]) -> dict[str, str]:
    return {i: c.status for i, c in checks.items()}


def every_text(checks: dict[str, Check]) -> str:
    return "\n".join(f"{c.message}\n{c.fix}\n" + "\n".join(c.details) for c in checks.values())


# -- reaching the manifest ------------------------------------------------------------------------

def test_an_open_registry_serves_the_image_without_credentials():
    http = FakeHttp(open_registry())
    checks = probe(http, creds=None)
    assert statuses(checks) == {"registry.endpoint": OK, "registry.auth": OK,
                                "registry.manifest": OK, "registry.media-types": OK}
    assert checks["registry.auth"].message == "the registry serves this image without credentials"
    assert checks["registry.endpoint"].message.startswith(f"https://{HOST} served {IMAGE} (")
    assert f"({DIGEST})" in checks["registry.manifest"].message
    assert "Authorization" not in http.to(MANIFEST).headers


def test_the_manifest_is_asked_with_the_accept_list_containerd_sends():
    http = FakeHttp(open_registry())
    probe(http)
    accept = http.to(MANIFEST).headers["Accept"].split(", ")
    assert {DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX} <= set(accept)


def test_a_basic_challenge_is_answered_with_the_resolved_credentials():
    http = FakeHttp(basic_registry())
    checks = probe(http)
    assert statuses(checks)["registry.auth"] == OK
    assert checks["registry.auth"].message == (
        f"Basic auth accepted as {USER} (credentials from {SOURCE})")
    assert http.to(MANIFEST).headers["Authorization"] == BASIC
    assert "Authorization" not in http.to(f"{API}/").headers, "the ping goes out bare"


def test_a_basic_challenge_without_credentials_fails_auth_and_says_to_add_a_rule():
    http = FakeHttp(basic_registry())
    checks = probe(http, creds=None)
    assert statuses(checks) == {"registry.auth": FAIL}
    assert "asks for Basic credentials and no source gives any" in checks["registry.auth"].message
    assert f"add a rule for {HOST} to the ecrcred config" in checks["registry.auth"].fix
    assert http.urls() == [f"{API}/"], "no manifest request without credentials to send"


@pytest.mark.parametrize("token_body", [
    pytest.param({"token": TOKEN}, id="token"),
    pytest.param({"access_token": TOKEN}, id="access_token"),
    pytest.param({"token": TOKEN, "access_token": "other", "expires_in": 300}, id="both"),
])
def test_a_bearer_challenge_gets_a_token_from_the_realm_with_the_credentials(
        token_body: dict[str, Any]):
    http = FakeHttp(bearer_registry(token_body=token_body))
    checks = probe(http)
    assert statuses(checks)["registry.auth"] == OK
    assert checks["registry.auth"].message.startswith(f"Bearer auth accepted as {USER}")
    assert http.urls() == [f"{API}/", TOKEN_URL, MANIFEST]
    assert http.to(TOKEN_URL).headers == {"Authorization": BASIC}
    assert http.to(MANIFEST).headers["Authorization"] == BEARER


def test_a_bearer_realm_that_already_has_a_query_gets_the_scope_appended():
    realm = "https://auth.example.com/token?client=containerd"
    url = f"{realm}&service={HOST}&scope=repository%3Ateam%2Fapp%3Apull"
    http = FakeHttp({f"{API}/": reply(401, www_authenticate=f'Bearer realm="{realm}",'
                                      f'service="{HOST}"'),
                     url: reply(200, {"token": TOKEN}), MANIFEST: needs(BEARER, image())})
    assert statuses(probe(http))["registry.manifest"] == OK


def test_a_bearer_realm_is_asked_anonymously_without_credentials():
    routes = bearer_registry()
    routes[TOKEN_URL] = reply(200, {"token": TOKEN})
    http = FakeHttp(routes)
    checks = probe(http, creds=None)
    assert statuses(checks)["registry.auth"] == OK
    assert checks["registry.auth"].message == "Bearer auth accepted anonymously (no credentials)"
    assert http.to(TOKEN_URL).headers == {}


@pytest.mark.parametrize(("routes", "said"), [
    pytest.param({f"{API}/": reply(401, www_authenticate=BASIC_CHALLENGE),
                  MANIFEST: registry_error(401, "UNAUTHORIZED")},
                 "the registry answered HTTP 401 (UNAUTHORIZED: unauthorized): the credentials "
                 "were refused", id="basic"),
    pytest.param({f"{API}/": reply(401, www_authenticate=BEARER_CHALLENGE),
                  TOKEN_URL: registry_error(401, "UNAUTHORIZED")},
                 "its token service answered HTTP 401 (UNAUTHORIZED: unauthorized): the "
                 "credentials were refused", id="bearer-realm"),
])
def test_refused_credentials_fail_auth_naming_their_source_but_not_the_password(
        routes: dict[str, Route], said: str):
    checks = probe(FakeHttp(routes))
    assert statuses(checks) == {"registry.auth": FAIL}
    assert checks["registry.auth"].message == f"{IMAGE} was refused: https://{HOST}: {said}"
    assert checks["registry.auth"].fix == f"check what {SOURCE} gives"
    assert PASSWORD not in every_text(checks)


def test_a_401_without_credentials_says_the_registry_needs_them():
    routes = {f"{API}/": reply(401, www_authenticate=BEARER_CHALLENGE),
              TOKEN_URL: registry_error(401, "UNAUTHORIZED")}
    checks = probe(FakeHttp(routes), creds=None)
    assert checks["registry.auth"].message.endswith(": it needs credentials")
    assert "add a rule for" in checks["registry.auth"].fix


def test_a_403_says_to_grant_pull_access_to_the_identity():
    routes = basic_registry()
    routes[MANIFEST] = registry_error(403, "DENIED")
    checks = probe(FakeHttp(routes))
    assert statuses(checks) == {"registry.auth": FAIL}
    assert "HTTP 403 (DENIED: denied)" in checks["registry.auth"].message
    assert checks["registry.auth"].fix == (
        f"grant the identity of {SOURCE} pull access (ecr:BatchGetImage, "
        "ecr:GetDownloadUrlForLayer) on team/app")


def test_an_unknown_challenge_fails_auth_quoting_it():
    checks = probe(FakeHttp({f"{API}/": reply(401, www_authenticate='Negotiate x="y"')}))
    assert statuses(checks) == {"registry.auth": FAIL}
    assert "unknown auth challenge 'Negotiate x=\"y\"'" in checks["registry.auth"].message


def test_a_token_service_that_gives_no_token_fails_the_endpoint():
    routes = bearer_registry()
    routes[TOKEN_URL] = reply(200, {"expires_in": 300})
    checks = probe(FakeHttp(routes))
    assert statuses(checks) == {"registry.endpoint": FAIL}
    assert "its token service answered HTTP 200" in checks["registry.endpoint"].message


def test_a_missing_manifest_fails_the_manifest_check_and_says_to_check_the_tag():
    routes = basic_registry()
    routes[MANIFEST] = registry_error(404, "MANIFEST_UNKNOWN")
    checks = probe(FakeHttp(routes))
    assert statuses(checks) == {"registry.endpoint": OK, "registry.manifest": FAIL}
    assert checks["registry.endpoint"].message == f"reached https://{HOST}"
    assert checks["registry.manifest"].message == (
        f"no manifest for {IMAGE}: https://{HOST}: the registry answered HTTP 404 "
        "(MANIFEST_UNKNOWN: manifest unknown)")
    assert checks["registry.manifest"].fix == f"check the tag, or push {IMAGE} to https://{HOST}"


def test_docker_hub_library_paths_missing_from_a_mirror_say_the_mirror_must_serve_them():
    # registry.mirrors."docker.io" pointed at a mirror without library/ paths
    hub_mirror = "https://atomhub.example.cn"
    http = FakeHttp({
        f"{hub_mirror}/v2/": reply(200),
        f"{hub_mirror}/v2/library/alpine/manifests/3?ns=docker.io":
            registry_error(404, "MANIFEST_UNKNOWN"),
    })
    registry = hosts(mirror(hub_mirror), server("https://registry-1.docker.io"), host="docker.io")
    checks = probe(http, "alpine:3", registry, creds=None)
    assert statuses(checks) == {"registry.endpoint": OK, "registry.manifest": FAIL}
    assert "library/ paths (an image named busybox is pulled as library/busybox" in checks[
        "registry.manifest"].fix
    assert "docker.io/library/alpine:3" in checks["registry.manifest"].message
    assert "(all 2 endpoints failed; -v shows each)" in checks["registry.manifest"].message
    assert "https://registry-1.docker.io: unreachable: Connection refused" in checks[
        "registry.manifest"].details, "the server was tried too"


def test_docker_hub_library_paths_missing_without_a_mirror_get_the_plain_fix():
    hub = "https://registry-1.docker.io"
    http = FakeHttp({f"{hub}/v2/": reply(200),
                     f"{hub}/v2/library/alpine/manifests/3": registry_error(404, "NOT_FOUND")})
    checks = probe(http, "alpine:3", hosts(server(hub), host="docker.io"), creds=None)
    assert checks["registry.manifest"].fix.startswith("check the tag")


def test_endpoints_are_tried_in_order_until_one_serves_the_manifest():
    first, second = "https://mirror-a.example.com", "https://mirror-b.example.com"
    routes = {f"{second}/v2/": reply(200),
              f"{second}/v2/team/app/manifests/1.0?ns={HOST}":
                  registry_error(404, "MANIFEST_UNKNOWN"),
              **basic_registry()}
    http = FakeHttp(routes)
    checks = probe(http, registry=hosts(mirror(first), mirror(second), server()))
    assert statuses(checks)["registry.endpoint"] == OK
    assert checks["registry.endpoint"].message.startswith(
        f"https://{HOST} served {IMAGE} ({first} (mirror) -> {second} (mirror) -> "
        f"https://{HOST}; from no registry config for this host)")
    assert [url.split("/v2")[0] for url in http.urls()] == [
        first, second, second, f"https://{HOST}", f"https://{HOST}"]


def test_endpoints_without_the_pull_capability_are_not_tried():
    resolve_only = mirror("https://mirror.example.com", capabilities=("resolve",))
    http = FakeHttp(basic_registry())
    checks = probe(http, registry=hosts(resolve_only, server()))
    assert statuses(checks)["registry.manifest"] == OK
    assert not any(u.startswith("https://mirror.example.com") for u in http.urls())


def test_no_endpoint_with_the_pull_capability_fails_and_names_the_capability():
    resolve_only = mirror("https://mirror.example.com", capabilities=("resolve",))
    checks = probe(FakeHttp({}), registry=hosts(resolve_only, origin="/etc/c/hosts.toml"))
    assert statuses(checks) == {"registry.endpoint": FAIL}
    assert "has the pull capability (/etc/c/hosts.toml)" in checks["registry.endpoint"].message
    assert '"pull", "resolve"' in checks["registry.endpoint"].fix


def untrusted() -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                                          "failed: unable to get local issuer certificate")
    exc.verify_message = "unable to get local issuer certificate"
    return exc


@pytest.mark.parametrize(("origin", "fix"), [
    pytest.param(f"/etc/containerd/certs.d/{HOST}/hosts.toml",
                 f'add the registry\'s CA file to ca = ["..."] for https://{HOST} in '
                 f"/etc/containerd/certs.d/{HOST}/hosts.toml", id="hosts-toml"),
    pytest.param("no registry config for this host",
                 f'give containerd the CA: a hosts.toml for {HOST} with ca = ["..."]',
                 id="no-registry-config"),
])
def test_an_untrusted_certificate_fails_the_endpoint_and_says_where_the_ca_goes(
        origin: str, fix: str):
    checks = probe(FakeHttp({f"{API}/": untrusted()}), registry=hosts(origin=origin))
    assert statuses(checks) == {"registry.endpoint": FAIL}
    assert checks["registry.endpoint"].message == (
        f"TLS to https://{HOST} failed: certificate not trusted (unable to get local issuer "
        "certificate)")
    assert checks["registry.endpoint"].fix == fix


def test_the_ca_files_and_skip_verify_of_each_endpoint_go_with_its_requests():
    http = FakeHttp(bearer_registry())
    probe(http, registry=hosts(server(ca=("/etc/ssl/registry-ca.pem",), skip_verify=True)))
    assert {(s.ca, s.skip_verify) for s in http.sent} == {(("/etc/ssl/registry-ca.pem",), True)}


@pytest.mark.parametrize(("error", "said"), [
    pytest.param(ConnectionRefusedError(111, "Connection refused"), "Connection refused",
                 id="refused"),
    pytest.param(TimeoutError("timed out"), "timed out", id="timeout"),
    pytest.param(socket.gaierror(-2, "Name or service not known"),
                 "cannot resolve the host name (Name or service not known)", id="dns"),
])
def test_an_unreachable_registry_fails_the_endpoint_naming_the_route(error: OSError, said: str):
    checks = probe(FakeHttp({f"{API}/": error}))
    assert statuses(checks) == {"registry.endpoint": FAIL}
    assert checks["registry.endpoint"].message == (
        f"no endpoint served {IMAGE}: https://{HOST}: {said}")
    assert checks["registry.endpoint"].fix == (
        f"check the network path from this node to https://{HOST}")


def test_mirrors_get_the_ns_query_and_the_server_does_not():
    hub_mirror = "https://mirror.example.com"
    http = FakeHttp({f"{hub_mirror}/v2/": reply(200),
                     f"{hub_mirror}/v2/team/app/manifests/1.0?ns={HOST}":
                         registry_error(404, "MANIFEST_UNKNOWN"),
                     **open_registry()})
    probe(http, registry=hosts(mirror(hub_mirror), server()))
    assert http.urls() == [f"{hub_mirror}/v2/", f"{hub_mirror}/v2/team/app/manifests/1.0?ns={HOST}",
                           f"{API}/", MANIFEST]


def test_override_path_makes_the_endpoint_path_the_api_root():
    proxied = "https://proxy.example.com/artifactory/api/docker/hub"
    http = FakeHttp({f"{proxied}/": reply(200),
                     f"{proxied}/team/app/manifests/1.0?ns={HOST}": image()})
    checks = probe(http, registry=hosts(mirror(proxied, override_path=True)))
    assert statuses(checks)["registry.manifest"] == OK
    assert http.urls() == [f"{proxied}/", f"{proxied}/team/app/manifests/1.0?ns={HOST}"]


def test_a_manifest_that_is_not_json_fails_the_endpoint():
    checks = probe(FakeHttp(open_registry(reply(200, b"<html>login</html>",
                                                content_type="text/html"))))
    assert statuses(checks) == {"registry.endpoint": FAIL}
    assert "the manifest is not JSON" in checks["registry.endpoint"].message


# -- indexes and platforms ------------------------------------------------------------------------

@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_an_index_is_resolved_to_the_node_platform_with_the_same_authorization(media_type: str):
    routes = bearer_registry(index(("linux", "arm64", ARM64_DIGEST),
                                   ("linux", "amd64", AMD64_DIGEST), media_type=media_type))
    platform_url = f"{API}/team/app/manifests/{AMD64_DIGEST}"
    routes[platform_url] = needs(BEARER, image(OCI_CONFIG, (OCI_GZIP,), OCI_MANIFEST))
    http = FakeHttp(routes)
    checks = probe(http)
    assert statuses(checks) == {"registry.endpoint": OK, "registry.auth": OK,
                                "registry.manifest": OK, "registry.media-types": OK}
    assert http.urls()[-1] == platform_url
    assert http.to(platform_url).headers["Authorization"] == BEARER
    assert f"; linux/amd64 is {AMD64_DIGEST} (an OCI manifest)" in checks[
        "registry.manifest"].message
    assert OCI_GZIP in checks["registry.media-types"].message


def test_an_index_through_a_mirror_keeps_the_ns_query_for_the_platform_manifest():
    hub_mirror = "https://mirror.example.com"
    base = f"{hub_mirror}/v2/team/app/manifests"
    http = FakeHttp({f"{hub_mirror}/v2/": reply(200),
                     f"{base}/1.0?ns={HOST}": index(("linux", "amd64", AMD64_DIGEST)),
                     f"{base}/{AMD64_DIGEST}?ns={HOST}": image()})
    checks = probe(http, registry=hosts(mirror(hub_mirror)))
    assert statuses(checks)["registry.media-types"] == OK


def test_an_index_without_the_node_platform_fails_listing_the_platforms_it_has():
    doc = json.loads(index(("linux", "arm64", ARM64_DIGEST)).body)
    doc["manifests"].append({"mediaType": OCI_MANIFEST, "digest": DIGEST, "size": 1,
                             "platform": {"os": "linux", "architecture": "arm",
                                          "variant": "v7"}})
    http = FakeHttp(open_registry(reply(200, doc, content_type=OCI_INDEX)))
    checks = probe(http)
    assert statuses(checks)["registry.manifest"] == FAIL
    assert checks["registry.manifest"].message == (
        f"{IMAGE} is an OCI image index without linux/amd64 (it has: linux/arm/v7, "
        "linux/arm64)")
    assert checks["registry.manifest"].fix == f"push a linux/amd64 image to {IMAGE}"
    assert "registry.media-types" not in checks


def test_a_platform_manifest_that_cannot_be_fetched_fails_the_manifest_check():
    routes = open_registry(index(("linux", "amd64", AMD64_DIGEST)))
    routes[f"{API}/team/app/manifests/{AMD64_DIGEST}"] = registry_error(404, "MANIFEST_UNKNOWN")
    checks = probe(FakeHttp(routes))
    assert statuses(checks)["registry.manifest"] == FAIL
    assert f"linux/amd64 manifest {AMD64_DIGEST} answered HTTP 404" in checks[
        "registry.manifest"].message


@pytest.mark.parametrize(("answer", "said"), [
    pytest.param(ConnectionResetError(104, "Connection reset by peer"),
                 "could not be fetched (Connection reset by peer)", id="reset"),
    pytest.param(reply(200, b"<html>", content_type="text/html"), "is not JSON", id="not-json"),
])
def test_a_platform_manifest_that_breaks_fails_the_manifest_check_instead_of_the_doctor(
        answer: Route, said: str):
    routes = open_registry(index(("linux", "amd64", AMD64_DIGEST)))
    routes[f"{API}/team/app/manifests/{AMD64_DIGEST}"] = answer
    checks = probe(FakeHttp(routes))
    assert statuses(checks)["registry.manifest"] == FAIL
    assert f"linux/amd64 manifest {AMD64_DIGEST} {said}" in checks["registry.manifest"].message


def test_a_reference_with_a_tag_and_a_digest_is_fetched_by_the_digest_as_containerd_does():
    by_digest = f"{API}/team/app/manifests/{DIGEST}"
    http = FakeHttp({f"{API}/": reply(200), by_digest: index(("linux", "amd64", AMD64_DIGEST)),
                     f"{API}/team/app/manifests/{AMD64_DIGEST}": image()})
    checks = probe(http, f"{IMAGE}@{DIGEST}")
    assert statuses(checks)["registry.media-types"] == OK
    assert http.urls() == [f"{API}/", by_digest, f"{API}/team/app/manifests/{AMD64_DIGEST}"]


def challenging_manifest(challenge: str) -> dict[str, Route]:
    """A registry that serves /v2/ to anyone and challenges the manifest request itself."""
    expected = BASIC if challenge == BASIC_CHALLENGE else BEARER

    def manifest(headers: dict[str, str]) -> HttpReply:
        if headers.get("Authorization") == expected:
            return image()
        return reply(401, {"errors": []}, www_authenticate=challenge)

    return {f"{API}/": reply(200), TOKEN_URL: needs(BASIC, reply(200, {"token": TOKEN})),
            MANIFEST: manifest}


@pytest.mark.parametrize("challenge", [BASIC_CHALLENGE, BEARER_CHALLENGE])
def test_a_registry_open_at_v2_that_challenges_the_manifest_gets_the_credentials(challenge: str):
    # containerd never pings /v2/: it asks for the manifest and answers that challenge (Nexus
    # with anonymous access answers /v2/ and challenges private repositories).
    expected = BASIC if challenge == BASIC_CHALLENGE else BEARER
    http = FakeHttp(challenging_manifest(challenge))
    checks = probe(http)
    assert statuses(checks) == {"registry.endpoint": OK, "registry.auth": OK,
                                "registry.manifest": OK, "registry.media-types": OK}
    scheme = challenge.split(maxsplit=1)[0]
    assert checks["registry.auth"].message.startswith(f"{scheme} auth accepted as")
    assert http.urls()[-1] == MANIFEST
    assert http.sent[-1].headers["Authorization"] == expected


def test_a_manifest_challenge_without_credentials_says_the_registry_needs_them():
    http = FakeHttp({f"{API}/": reply(200),
                     MANIFEST: reply(401, {"errors": []}, www_authenticate=BASIC_CHALLENGE)})
    checks = probe(http, creds=None)
    assert statuses(checks) == {"registry.auth": FAIL}
    assert "no source gives any" in checks["registry.auth"].message
    assert http.urls() == [f"{API}/", MANIFEST]


# -- client certificates (mutual TLS) -------------------------------------------------------------

NODE_PAIR = ("/etc/ssl/node.pem", "/etc/ssl/node.key")
MIRROR = "https://mirror.example.com"
MIRROR_API = f"{MIRROR}/v2"


def loads_every_pair(pair: tuple[str, str]) -> tuple[str, str] | None:
    return None


def client_probe(http: FakeHttp, registry: RegistryHosts,
                 check: Callable[[tuple[str, str]], tuple[str, str] | None] = loads_every_pair,
                 ) -> dict[str, Check]:
    checks = RegistryProbe(http, 5.0, ("linux", "amd64"), CONTAINERD_16, check).check(
        parse_reference(IMAGE), registry, CREDS)
    return {c.id: c for c in checks}


def test_each_endpoints_client_certificate_goes_with_all_its_requests():
    bearer_mirror = {f"{MIRROR_API}/": reply(401, www_authenticate=BEARER_CHALLENGE),
                     TOKEN_URL: needs(BASIC, reply(200, {"token": TOKEN})),
                     f"{MIRROR_API}/team/app/manifests/1.0?ns={HOST}": registry_error(404, "X")}
    http = FakeHttp({**bearer_mirror, **open_registry()})
    client_probe(http, hosts(mirror(MIRROR, client=(NODE_PAIR,)), server()))
    assert {s.url: s.client for s in http.sent} == {
        f"{MIRROR_API}/": (NODE_PAIR,), TOKEN_URL: (NODE_PAIR,),  # the realm too, as containerd
        f"{MIRROR_API}/team/app/manifests/1.0?ns={HOST}": (NODE_PAIR,),
        f"{API}/": (), MANIFEST: ()}


def test_an_unusable_client_certificate_fails_before_any_request_naming_file_and_host():
    # containerd loads every endpoint's pairs first and fails the pull on any error, even for
    # an endpoint that cannot pull
    http = FakeHttp(open_registry())
    resolve_only = mirror(MIRROR, capabilities=("resolve",), client=(NODE_PAIR,))
    origin = f"/etc/containerd/certs.d/{HOST}/hosts.toml"
    checks = client_probe(http, hosts(resolve_only, server(), origin=origin),
                          lambda pair: (pair[0], "No such file or directory"))
    assert statuses(checks) == {"registry.endpoint": FAIL}
    check = checks["registry.endpoint"]
    assert check.message == (
        f"client certificate /etc/ssl/node.pem for {MIRROR} cannot be used: No such file or "
        f"directory; containerd fails every pull from {HOST} before its first request")
    assert f"client = ... in {origin}" in check.fix
    assert check.details == (f"{MIRROR}: client /etc/ssl/node.pem + /etc/ssl/node.key",)
    assert http.sent == [], "no request: containerd would send none"


def certificate_required() -> ssl.SSLError:
    return ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate "
                           "required (_ssl.c:2580)")


@pytest.mark.parametrize(("client", "said"), [
    pytest.param((), "wants a client certificate and none is configured", id="none-configured"),
    pytest.param((NODE_PAIR,), "refused the client certificate", id="refused"),
])
def test_a_registry_that_wants_a_client_certificate_fails_with_the_client_fix(
        client: tuple[tuple[str, str], ...], said: str):
    origin = f"/etc/containerd/certs.d/{HOST}/hosts.toml"
    checks = client_probe(FakeHttp({f"{API}/": certificate_required()}),
                          hosts(server(client=client), origin=origin))
    assert statuses(checks) == {"registry.endpoint": FAIL}
    assert checks["registry.endpoint"].message == (
        f"TLS to https://{HOST} failed: the registry {said} ([SSL: "
        "TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required (_ssl.c:2580))")
    assert checks["registry.endpoint"].fix == (
        f'give https://{HOST} a client certificate it trusts: client = [["cert.pem", '
        f'"key.pem"]] for it in {origin}')


def test_load_client_pair_names_the_file_and_why_it_cannot_be_used(tmp_path: Path,
                                                                    client_pair: Pair):
    missing = str(tmp_path / "absent.pem")
    assert load_client_pair((missing, "")) == (missing, "No such file or directory")
    assert load_client_pair((client_pair.cert, str(tmp_path))) == (str(tmp_path),
                                                                  "Is a directory")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not pem\n")
    files, why = load_client_pair((str(garbage), client_pair.key)) or ("", "")
    assert files == f"{garbage} + {client_pair.key}"
    assert why.startswith("not a PEM certificate and its private key (")


def test_a_lone_certificate_without_its_key_is_refused_as_containerd_refuses_it(
        client_pair: Pair):
    # client = ["cert.pem", "key.pem"] is two combined files to containerd, not a pair
    files, why = load_client_pair((client_pair.cert, "")) or ("", "")
    assert files == client_pair.cert
    assert "not a PEM file holding both a certificate and its private key" in why
    assert "each string in a client array" in why


@pytest.mark.parametrize("form", ["pair", "combined"])
def test_load_client_pair_accepts_a_pair_and_a_combined_file(client_pair: Pair, form: str):
    pair = (client_pair.cert, client_pair.key) if form == "pair" else (client_pair.combined, "")
    assert load_client_pair(pair) is None


def on_a_terminal(code: str, timeout: float = 20.0) -> str:
    """What ``python -c code`` prints when a pseudo-terminal is its controlling terminal and its
    stdin, and nobody types. OpenSSL asks for a key's passphrase on /dev/tty: a prompt fails the
    test after ``timeout`` (the child killed by its pid) instead of hanging it."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a new session whose controlling terminal is the pty
        os.execv(sys.executable, [sys.executable, "-c", code])  # noqa: S606 - no shell wanted
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"no answer within {timeout}s (waiting for a passphrase?): "
                            f"{output.decode(errors='replace')!r}")
            if not select.select([fd], [], [], 0.1)[0]:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child has exited and closed the terminal
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.waitpid(pid, 0)
        os.close(fd)
    return output.decode(errors="replace")


@pytest.mark.parametrize("form", ["pkcs8", "traditional", "combined"])
def test_an_encrypted_client_key_fails_as_in_containerd_without_asking_for_a_passphrase(
        tmp_path: Path, client_pair: Pair, form: str):
    # containerd 1.6.20 refuses both encrypted forms: "failed to load X509 key pair: tls:
    # failed to parse private key"; doctor must say so, not sit at "Enter PEM pass phrase:"
    encrypted = encrypt_key(client_pair, tmp_path, "traditional" if form == "traditional"
                            else "pkcs8")
    pair = (encrypted.combined, "") if form == "combined" else (encrypted.cert, encrypted.key)
    output = on_a_terminal(f"""\
from ecrcred.doctor.transport import HttpClient, load_client_pair
print("CHECK", " | ".join(load_client_pair({pair!r}) or ("loaded",)))
try:
    HttpClient().get("https://127.0.0.1:9/v2/", {{}}, ca=(), skip_verify=False, timeout=5,
                     client=({pair!r},))
except OSError as exc:
    print("GET", type(exc).__name__, exc)
""")
    assert "pass phrase" not in output.lower()
    named = encrypted.combined if form == "combined" else encrypted.key
    assert f"CHECK {named} | the private key is encrypted (it needs a passphrase): " \
           "containerd cannot use an encrypted key" in output, output
    assert "write it unencrypted, e.g. 'openssl pkey -in KEY -out PLAIN.key'" in output
    # the HTTP client refuses it too, before connecting (an SSLError, as the Http seam says)
    assert "GET EncryptedKey the client private key is encrypted" in output, output


# -- the verdict when every endpoint fails -------------------------------------------------------

MIRROR_B = "https://mirror-b.example.com"


def outcome(url: str, kind: str) -> dict[str, Route]:
    """Routes for one endpoint that fails the way ``kind`` says."""
    api = f"{url}/v2"
    manifest = f"{api}/team/app/manifests/1.0" + ("" if url == f"https://{HOST}" else
                                                   f"?ns={HOST}")
    return {
        "refused": {},
        "tls": {f"{api}/": untrusted()},
        "client-cert": {f"{api}/": certificate_required()},
        "auth": {f"{api}/": reply(401, www_authenticate=BASIC_CHALLENGE),
                 manifest: registry_error(401, "UNAUTHORIZED")},
        "denied": {f"{api}/": reply(200), manifest: registry_error(403, "DENIED")},
        "missing": {f"{api}/": reply(200), manifest: registry_error(404, "MANIFEST_UNKNOWN")},
        "server": {f"{api}/": reply(200), manifest: reply(503, b"down")},
    }[kind]


@pytest.mark.parametrize(("kinds", "chosen", "check_id"), [
    # the brief's case: a dead mirror in front of the upstream that said why
    pytest.param(("refused", "auth"), 1, "registry.auth", id="auth-over-refused"),
    pytest.param(("refused", "missing"), 1, "registry.manifest", id="missing-over-refused"),
    pytest.param(("missing", "auth"), 1, "registry.auth", id="auth-over-missing"),
    pytest.param(("auth", "denied"), 1, "registry.auth", id="denied-over-auth"),
    pytest.param(("tls", "missing"), 1, "registry.manifest", id="missing-over-tls"),
    pytest.param(("refused", "tls"), 1, "registry.endpoint", id="tls-over-refused"),
    pytest.param(("server", "client-cert"), 1, "registry.endpoint", id="client-cert-over-5xx"),
    pytest.param(("refused", "server"), 1, "registry.endpoint", id="server-over-refused"),
    pytest.param(("tls", "client-cert"), 0, "registry.endpoint", id="tls-ties-client-cert"),
    pytest.param(("refused", "refused"), 0, "registry.endpoint", id="tie-earlier-wins"),
    pytest.param(("missing", "missing"), 0, "registry.manifest", id="tie-missing"),
    pytest.param(("denied", "refused", "auth"), 0, "registry.auth", id="three-denied-first"),
])
def test_when_every_endpoint_fails_the_most_informative_failure_is_the_verdict(
        kinds: tuple[str, ...], chosen: int, check_id: str):
    urls = [MIRROR, MIRROR_B, f"https://{HOST}"][-len(kinds):]
    routes: dict[str, Route] = {}
    for url, kind in zip(urls, kinds, strict=True):
        routes.update(outcome(url, kind))
    endpoints = [mirror(u) if u != f"https://{HOST}" else server() for u in urls]
    checks = probe(FakeHttp(routes), registry=hosts(*endpoints))
    check = checks[check_id]
    assert check.status == FAIL, checks
    named = urls[chosen]
    others = [u for u in urls if u != named]
    assert named in check.message
    assert not any(f"{u}:" in check.message or f"TLS to {u}" in check.message
                   for u in others), "only the verdict's endpoint is in the message"
    assert f"(all {len(kinds)} endpoints failed; -v shows each)" in check.message
    listed = [d for d in check.details if any(d.startswith(f"{u}: ") for u in urls)]
    assert [d.split(": ", 1)[0] for d in listed] == urls, "every endpoint in the details"


def test_with_one_endpoint_the_message_does_not_count_endpoints():
    checks = probe(FakeHttp(outcome(f"https://{HOST}", "auth")))
    assert "endpoints failed" not in checks["registry.auth"].message


# -- media types ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("runtime", "status"), [
    pytest.param(CONTAINERD_16, WARN, id="containerd-1.6-warns"),
    pytest.param(CONTAINERD_20, FAIL, id="containerd-2.0-fails"),
    pytest.param(RuntimeVersion("containerd", "2.1.0", "v1"), FAIL, id="containerd-2.1-fails"),
    pytest.param(None, WARN, id="unknown-runtime-warns"),
])
def test_a_schema1_manifest_warns_before_containerd_2_and_fails_from_it(
        runtime: RuntimeVersion | None, status: str):
    checks = probe(FakeHttp(open_registry(schema1())), runtime=runtime)
    assert statuses(checks)["registry.manifest"] == status
    assert "Docker schema 1 manifest: containerd 2.0 disables it" in checks[
        "registry.manifest"].message
    assert "--format v2s2" in checks["registry.manifest"].fix


def test_a_schema1_manifest_is_recognised_by_its_schema_version_alone():
    body = reply(200, {"schemaVersion": 1, "fsLayers": []}, content_type="application/json")
    checks = probe(FakeHttp(open_registry(body)), runtime=CONTAINERD_20)
    assert statuses(checks)["registry.manifest"] == FAIL


@pytest.mark.parametrize(("config", "layers", "runtime", "status", "needle"), [
    pytest.param(DOCKER_CONFIG, (GZIP, GZIP), CONTAINERD_16, OK, "containerd 1.6.20~ds1 unpacks",
                 id="docker-image"),
    pytest.param(OCI_CONFIG, (OCI_GZIP,), CONTAINERD_20, OK, "containerd v2.0.4 unpacks",
                 id="oci-image"),
    pytest.param("application/octet-stream", (GZIP,), CONTAINERD_14, FAIL,
                 "this node runs containerd 1.4.13", id="octet-stream-config-on-1.4"),
    pytest.param("application/octet-stream", (GZIP,), CONTAINERD_16, FAIL,
                 "this node runs containerd 1.6.20~ds1", id="octet-stream-config-on-1.6.20"),
    pytest.param("application/octet-stream", (GZIP,), CONTAINERD_17, FAIL,
                 "this node runs containerd 1.7.14", id="octet-stream-config-on-1.7"),
    pytest.param("application/octet-stream", (GZIP,), CONTAINERD_20, WARN,
                 "this node runs containerd v2.0.4 (not measured on this version)",
                 id="octet-stream-config-on-2.0"),
    pytest.param("application/octet-stream", (GZIP,), RuntimeVersion("containerd", "2.1.9", "v1"),
                 OK, "this node runs containerd 2.1.9, which unpacks an application/octet-stream",
                 id="octet-stream-config-on-2.1.9"),
    pytest.param("application/octet-stream", (GZIP,), CRI_O, WARN,
                 "this node runs cri-o 1.29.1 (not measured", id="octet-stream-config-on-cri-o"),
    pytest.param("application/vnd.cncf.helm.config.v1+json",
                 ("application/vnd.cncf.helm.chart.content.v1.tar+gzip",), CONTAINERD_16, FAIL,
                 "is not a container image", id="helm-chart"),
    pytest.param(DOCKER_CONFIG, (GZIP, "application/vnd.example.layer.v1+lz4"), CONTAINERD_16,
                 FAIL, "application/vnd.example.layer.v1+lz4", id="unknown-layer-type"),
    pytest.param(OCI_CONFIG, (ZSTD,), CONTAINERD_14, FAIL, "zstd layers need containerd 1.5",
                 id="zstd-on-1.4"),
    pytest.param(OCI_CONFIG, (ZSTD,), CONTAINERD_16, OK, "unpacks", id="zstd-on-1.6"),
    pytest.param(DOCKER_CONFIG, (FOREIGN, GZIP), CONTAINERD_16, WARN,
                 "foreign layers are fetched from URLs outside the registry",
                 id="foreign-layers"),
])
def test_media_types_are_judged_by_what_the_runtime_version_unpacks(
        config: str, layers: tuple[str, ...], runtime: RuntimeVersion, status: str, needle: str):
    checks = probe(FakeHttp(open_registry(image(config, layers))), runtime=runtime)
    assert statuses(checks)["registry.manifest"] == OK
    assert statuses(checks)["registry.media-types"] == status
    assert needle in checks["registry.media-types"].message


def test_an_octet_stream_config_names_the_failing_versions_and_how_to_convert():
    checks = probe(FakeHttp(open_registry(image("application/octet-stream"))), runtime=None)
    check = checks["registry.media-types"]
    assert check.status == WARN
    assert "on 1.4.3, 1.6.20 and 1.7.24" in check.message
    assert "content digest ... not found" in check.message
    assert "the runtime (version unknown)" in check.message
    assert "skopeo copy --format oci" in check.fix


# -- secrets --------------------------------------------------------------------------------------

@pytest.mark.parametrize("routes", [
    pytest.param(basic_registry(), id="basic-ok"),
    pytest.param(bearer_registry(), id="bearer-ok"),
    pytest.param({**bearer_registry(index(("linux", "amd64", AMD64_DIGEST))),
                  f"{API}/team/app/manifests/{AMD64_DIGEST}": needs(BEARER, image())},
                 id="bearer-index"),
    pytest.param({**basic_registry(), MANIFEST: registry_error(401, "UNAUTHORIZED")},
                 id="basic-refused"),
    pytest.param({**bearer_registry(), MANIFEST: registry_error(401, "UNAUTHORIZED")},
                 id="token-refused"),
    pytest.param({**bearer_registry(), MANIFEST: registry_error(403, "DENIED")}, id="denied"),
    pytest.param({**bearer_registry(), MANIFEST: registry_error(404, "MANIFEST_UNKNOWN")},
                 id="missing"),
    pytest.param({**bearer_registry(), MANIFEST: ConnectionResetError(104, "reset")},
                 id="reset"),
    pytest.param(challenging_manifest(BASIC_CHALLENGE), id="manifest-challenge-basic"),
    pytest.param(challenging_manifest(BEARER_CHALLENGE), id="manifest-challenge-bearer"),
])
def test_no_check_ever_holds_the_password_or_the_token(routes: dict[str, Route]):
    checks = probe(FakeHttp(routes))
    text = every_text(checks) + repr(list(checks.values()))
    for secret in (PASSWORD, TOKEN, BASIC.split(" ")[1]):
        assert secret not in text


def test_credentials_do_not_show_the_password_in_their_repr():
    assert PASSWORD not in repr(CREDS)


# -- small helpers --------------------------------------------------------------------------------

@pytest.mark.parametrize(("version", "expected"), [
    ("1.6.20~ds1", (1, 6, 20)),
    ("v2.0.4", (2, 0, 4)),
    ("1.7", (1, 7)),
    ("unknown", ()),
])
def test_version_tuple_reads_the_leading_numbers(version: str, expected: tuple[int, ...]):
    assert version_tuple(version) == expected


@pytest.mark.parametrize(("machine", "arch"), [
    ("x86_64", "amd64"), ("aarch64", "arm64"), ("armv7l", "arm"), ("riscv64", "riscv64"),
])
def test_goarch_names_the_machine_as_image_indexes_do(machine: str, arch: str):
    assert goarch(machine) == arch


# -- the real HTTP client against loopback servers ------------------------------------------------

class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers /redirect-* with a 302 (the server's ``redirects`` table) and anything else with
    200, remembering the Authorization header each path got."""

    server: _Server

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        location = self.server.redirects.get(self.path)
        if location is not None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.seen: list[tuple[str, str | None]] = []
        self.redirects: dict[str, str] = {}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def servers() -> Iterator[tuple[_Server, _Server]]:
    pair = (_Server(), _Server())
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in pair]
    for thread in threads:
        thread.start()
    try:
        yield pair
    finally:
        for s in pair:
            s.shutdown()
            s.server_close()
        for thread in threads:
            thread.join(5)


def test_a_redirect_to_another_host_port_drops_the_authorization_header(
        servers: tuple[_Server, _Server]):
    origin, blobs = servers
    origin.redirects["/v2/app/blobs/x"] = f"{blobs.base}/storage/x"
    got = HttpClient().get(f"{origin.base}/v2/app/blobs/x", {"Authorization": BEARER},
                           ca=(), skip_verify=False, timeout=5)
    assert got.status == 200 and json.loads(got.body) == {"ok": True}
    assert origin.seen == [("/v2/app/blobs/x", BEARER)]
    assert blobs.seen == [("/storage/x", None)]


def test_a_redirect_on_the_same_host_keeps_the_authorization_header(
        servers: tuple[_Server, _Server]):
    origin, _ = servers
    origin.redirects["/v2/app/manifests/1"] = "/v2/app/manifests/sha256-1"
    got = HttpClient().get(f"{origin.base}/v2/app/manifests/1", {"Authorization": BEARER},
                           ca=(), skip_verify=False, timeout=5)
    assert got.status == 200
    assert origin.seen == [("/v2/app/manifests/1", BEARER), ("/v2/app/manifests/sha256-1", BEARER)]


def test_once_dropped_the_authorization_header_stays_dropped_on_the_way_back(
        servers: tuple[_Server, _Server]):
    origin, other = servers
    origin.redirects["/start"] = f"{other.base}/bounce"
    other.redirects["/bounce"] = f"{origin.base}/end"
    HttpClient().get(f"{origin.base}/start", {"Authorization": BEARER}, ca=(), skip_verify=False,
                     timeout=5)
    assert origin.seen == [("/start", BEARER), ("/end", None)]


def test_the_client_answers_headers_in_lower_case_and_follows_at_most_three_redirects(
        servers: tuple[_Server, _Server]):
    origin, _ = servers
    for i in range(5):
        origin.redirects[f"/r{i}"] = f"/r{i + 1}"
    got = HttpClient().get(f"{origin.base}/r0", {}, ca=(), skip_verify=False, timeout=5)
    assert got.status == 302
    assert got.headers["location"] == "/r4"
    assert [path for path, _ in origin.seen] == ["/r0", "/r1", "/r2", "/r3"]


def test_a_closed_port_is_an_oserror():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OSError):
        HttpClient().get(f"http://127.0.0.1:{port}/v2/", {}, ca=(), skip_verify=False, timeout=5)


# -- the real HTTP client against a loopback server that demands a client certificate -------------

class _MutualTls(http.server.ThreadingHTTPServer):
    """HTTPS on 127.0.0.1 that answers 200 only after the TLS handshake accepted a client
    certificate signed by ``client_ca``."""

    def __init__(self, server_cert: Pair, client_ca: Pair) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.seen: list[tuple[str, str | None]] = []
        self.redirects: dict[str, str] = {}
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(server_cert.cert, server_cert.key)
        context.load_verify_locations(cafile=client_ca.cert)
        context.verify_mode = ssl.CERT_REQUIRED
        self.socket = context.wrap_socket(self.socket, server_side=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a refused handshake is what some tests are about


@pytest.fixture(scope="module")
def mutual_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Pair, Pair]]:
    directory = tmp_path_factory.mktemp("mtls")
    server_cert = make_server_cert(directory, "server")
    client_ca = make_ca(directory, "client-ca")
    server = _MutualTls(server_cert, client_ca)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (f"https://127.0.0.1:{server.server_address[1]}", server_cert,
               make_client_cert(directory, "node", client_ca))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("form", ["pair", "combined"])
def test_the_client_presents_the_endpoints_client_certificate(
        mutual_tls: tuple[str, Pair, Pair], form: str):
    url, server_cert, node = mutual_tls
    pair = (node.cert, node.key) if form == "pair" else (node.combined, "")
    got = HttpClient().get(f"{url}/v2/", {}, ca=(server_cert.cert,), skip_verify=False,
                           timeout=5, client=(pair,))
    assert got.status == 200


def test_a_client_certificate_from_another_ca_is_named_as_refused(
        mutual_tls: tuple[str, Pair, Pair], tmp_path: Path):
    url, server_cert, _ = mutual_tls
    stranger = make_client_cert(tmp_path, "stranger", make_ca(tmp_path, "other-ca"))
    registry = RegistryHosts("127.0.0.1", (server(url, ca=(server_cert.cert,),
                                                  client=((stranger.cert, stranger.key),)),),
                             "/etc/containerd/certs.d/127.0.0.1/hosts.toml", ())
    checks = RegistryProbe(HttpClient(), 5.0, ("linux", "amd64"), CONTAINERD_16).check(
        parse_reference(f"{url.removeprefix('https://')}/team/app:1.0"), registry, None)
    assert [c.id for c in checks] == ["registry.endpoint"]
    assert "the registry refused the client certificate" in checks[0].message
    assert 'client = [["cert.pem", "key.pem"]]' in checks[0].fix


def test_a_reset_after_the_tls_13_handshake_is_asked_again_over_tls_12(
        mutual_tls: tuple[str, Pair, Pair], tmp_path: Path):
    # Go's TLS server (distribution's, containerd's peers) judges the client certificate after
    # a TLS 1.3 handshake has ended for the client and often resets the connection before its
    # alert is read: the client sees only EOF or a reset. This server does exactly that on the
    # first connection and refuses the certificate inside a TLS 1.2 handshake on the second.
    _, server_cert, _ = mutual_tls
    client_ca = make_ca(tmp_path, "client-ca")
    stranger = make_client_cert(tmp_path, "stranger", make_ca(tmp_path, "other-ca"))
    resetting = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    resetting.minimum_version = ssl.TLSVersion.TLSv1_3
    resetting.load_cert_chain(server_cert.cert, server_cert.key)
    refusing = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    refusing.load_cert_chain(server_cert.cert, server_cert.key)
    refusing.load_verify_locations(cafile=client_ca.cert)
    refusing.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[str] = []

    def serve() -> None:
        for context in (resetting, refusing):
            conn, _ = listener.accept()
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    seen.append(str(tls.version()))
                    tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                   (1).to_bytes(4, "little") + (0).to_bytes(4, "little"))
            except (ssl.SSLError, OSError) as exc:
                seen.append(type(exc).__name__)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        with pytest.raises(ssl.SSLError) as caught:
            HttpClient().get(f"https://127.0.0.1:{port}/v2/", {}, ca=(server_cert.cert,),
                             skip_verify=False, timeout=5,
                             client=((stranger.cert, stranger.key),))
    finally:
        thread.join(10)
        listener.close()
    assert "ALERT_UNKNOWN_CA" in str(caught.value), "the refusal, named"
    assert seen[0] == "TLSv1.3" and len(seen) == 2, seen
