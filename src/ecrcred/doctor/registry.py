"""The registry, reached for real the way containerd's CRI would reach it.

For each endpoint containerd would try for the image's host (hosts.toml mirrors with their CA
files and client certificates, then the server: ``containerd_routes.registry_hosts``), in order,
until one serves the manifest: ping ``/v2/``, follow its auth challenge (Basic, or Bearer through
the token realm) with the credentials ecrcred resolved, fetch the manifest with the Accept list
containerd sends, resolve an index to the node's platform, and judge the media types against
what containerd versions unpack (images built by Docker < 1.10 carry an
``application/octet-stream`` config, which old containerd fails to unpack with "content digest
... not found"; schema 1 is disabled in 2.0 and removed in 2.1).

Before the first request, every client certificate of every endpoint is loaded, as containerd
does (one it cannot load fails every pull of the host). When every endpoint fails, the verdict
names the most informative failure (``_verdict``), not the first.

HTTP goes through the ``Http`` seam (``seams.py``); the real one, ``transport.HttpClient``,
and the loading of client certificates live in ``transport.py``, so this module is the checks
alone. Nothing here prints a credential or a token.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlencode

from ecrcred.containerd_routes import ClientPair
from ecrcred.doctor.report import Check, fail, ok, warn
from ecrcred.doctor.transport import CLIENT_CERT_ALERT, HttpReply, load_client_pair, tls_reason
from ecrcred.imageref import DOCKER_HUB

if TYPE_CHECKING:
    from ecrcred.containerd_routes import Endpoint, RegistryHosts
    from ecrcred.cri.client import RuntimeVersion
    from ecrcred.imageref import ImageRef
    from ecrcred.seams import Http

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
           "application/vnd.docker.distribution.manifest.v1+prettyjws")
ACCEPT = ", ".join((DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX, "*/*"))
IMAGE_CONFIGS = ("application/vnd.docker.container.image.v1+json",
                 "application/vnd.oci.image.config.v1+json")
OCTET_STREAM = "application/octet-stream"
# The newest containerd seen failing to unpack an octet-stream config, and the oldest seen
# unpacking it, both in tests/e2e/test_doctor.py against the real runtimes: 1.6.20 and 1.7.24
# fail with the "content digest ... not found" error 1.4.3 gives; 2.1.9 unpacks it. Versions
# between are not measured: a warning there.
OCTET_STREAM_FAILS_UP_TO = (1, 7, 24)
OCTET_STREAM_WORKS_FROM = (2, 1, 9)
LAYERS = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "",
    "application/vnd.oci.image.layer.v1.tar": "",
    "application/vnd.oci.image.layer.v1.tar+gzip": "",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "foreign",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "foreign",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "foreign",
}
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


# (cert, key) -> (the file or files, why they cannot be used), or None when they load
ClientCheck = Callable[[ClientPair], tuple[str, str] | None]


def goarch(machine: str) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
            "s390x": "s390x"}.get(machine, machine)


def version_tuple(version: str) -> tuple[int, ...]:
    """``1.6.20~ds1`` -> (1, 6, 20); what cannot be read -> ()."""
    found = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", version)
    return tuple(int(x) for x in found.groups() if x is not None) if found else ()


class RegistryLogin(NamedTuple):
    """The username and password doctor logs in to the registry with, as get-credentials
    would answer them."""

    username: str
    password: str
    describe: str  # where they came from (never the secret)

    def __repr__(self) -> str:
        return f"RegistryLogin(username={self.username!r}, password=<redacted>, ...)"


class _Failure(NamedTuple):
    endpoint: str
    kind: str  # a key of _RANK
    detail: str


# How much a failure tells about why the image cannot be pulled: lower tells more (_verdict).
_RANK = {"denied": 0, "auth": 1, "missing": 2, "client-cert": 3, "tls": 3, "server": 4,
         "unreachable": 5}


def _verdict(failures: list[_Failure]) -> _Failure:
    """The failure the summary names when every endpoint failed: the one that says most.

    containerd reports the first failure that is not a 404 (its resolver's ``firstErr``), which
    is often a dead mirror's "connection refused" standing in front of the upstream that said
    why. The further a request got, the more its failure says about this pull:

    1. ``denied`` (403): the registry knows who we are and refuses this repository;
    2. ``auth`` (401, or a challenge we cannot answer): it wants other credentials, or any;
    3. ``missing`` (404): we were let in and the tag or repository is not there;
    4. ``client-cert`` / ``tls``: a server answered, but the node's TLS settings for it are wrong
       (a client certificate it wants or refuses; a CA we lack);
    5. ``server``: it answered something unusable (a 5xx, a manifest that is not JSON);
    6. ``unreachable``: no answer at all (refused, timed out, no such name).

    Ties go to the earlier endpoint, the one containerd tries first. Every failure stays in
    the check's details (``-v``, and ``details`` in JSON).
    """
    return min(failures, key=lambda f: _RANK.get(f.kind, len(_RANK)))


class _Served(NamedTuple):
    endpoint: Endpoint
    auth: str  # how we got in: "anonymous", "Basic", "Bearer"
    media_type: str
    manifest: dict[str, Any]
    headers: dict[str, str]
    authorization: str | None  # the header that worked (a secret: never printed)


class RegistryProbe:
    """Walks the endpoints of one image as containerd would, and judges what it finds."""

    def __init__(self, http: Http, timeout: float, platform: tuple[str, str],
                 runtime: RuntimeVersion | None,
                 client_check: ClientCheck = load_client_pair) -> None:
        self._http = http
        self._timeout = timeout
        self._os, self._arch = platform
        self._runtime = runtime
        self._version = version_tuple(runtime.version) if runtime else ()
        self._client_check = client_check
        self._steps: list[str] = []

    def check(self, ref: ImageRef, hosts: RegistryHosts,
              creds: RegistryLogin | None) -> list[Check]:
        unusable = self._client_certificates(hosts)
        if unusable is not None:
            return [unusable]
        pulling = [e for e in hosts.endpoints if e.pulls]
        failures: list[_Failure] = []
        served = None
        for endpoint in pulling:
            served = self._manifest(endpoint, ref, creds, failures)
            if served is not None:
                break
        steps = tuple(self._steps)
        route = hosts.route(pulling_only=True)
        if served is None:
            return self._no_endpoint(ref, hosts, creds, failures, route, steps)
        who = (f"as {creds.username} (credentials from {creds.describe})" if creds else
               "anonymously (no credentials)")
        checks = [
            ok("registry.endpoint", f"{served.endpoint.url} served {ref} ({route}; from "
               f"{hosts.origin})", steps),
            ok("registry.auth", f"{served.auth} auth accepted {who}" if served.auth != "anonymous"
               else "the registry serves this image without credentials", steps),
        ]
        return checks + self._judge(ref, served)

    def _client_certificates(self, hosts: RegistryHosts) -> Check | None:
        """A FAIL naming the first client certificate file that cannot be used, if any.

        containerd loads the client pairs of every endpoint of the host (pull capability or not)
        before its first request, and any error ("unable to read CERT file", "failed to load
        X509 key pair") fails the whole pull: no endpoint is tried."""
        for endpoint in hosts.endpoints:
            for pair in endpoint.client:
                problem = self._client_check(pair)
                if problem is None:
                    continue
                files, why = problem
                where = (f"client = ... in {hosts.origin}" if hosts.origin.endswith("hosts.toml")
                         else f"the client certificate settings of {hosts.origin}")
                return fail("registry.endpoint",
                            f"client certificate {files} for {endpoint.url} cannot be used: {why}"
                            f"; containerd fails every pull from {hosts.host} before its first "
                            "request", "put a readable, unencrypted PEM certificate and key "
                            f"there, or fix {where} (a certificate with its key in another file "
                            'is a pair: client = [["cert.pem", "key.pem"]])',
                            tuple(f"{e.url}: client {c}{' + ' + k if k else ''}"
                                  for e in hosts.endpoints for c, k in e.client))
        return None

    # -- reaching the manifest ---------------------------------------------------------------

    def _api(self, endpoint: Endpoint) -> str:
        return endpoint.url if endpoint.override_path else endpoint.url + "/v2"

    def _get(self, endpoint: Endpoint, url: str, headers: dict[str, str]) -> HttpReply:
        return self._http.get(url, headers, ca=endpoint.ca, skip_verify=endpoint.skip_verify,
                              timeout=self._timeout, client=endpoint.client)

    def _manifest_url(self, endpoint: Endpoint, ref: ImageRef, reference: str) -> str:
        query = f"?ns={ref.host}" if endpoint.mirror else ""
        return f"{self._api(endpoint)}/{ref.repository}/manifests/{reference}{query}"

    def _manifest(self, endpoint: Endpoint, ref: ImageRef, creds: RegistryLogin | None,
                  failures: list[_Failure]) -> _Served | None:
        url = self._manifest_url(endpoint, ref, _reference(ref))
        try:
            ping = self._get(endpoint, self._api(endpoint) + "/", {})
            self._steps.append(f"GET {self._api(endpoint)}/ -> {ping.status}")
            headers = {"Accept": ACCEPT}
            how = "anonymous"
            authorization: str | None = None

            def login(challenge: str) -> bool:
                nonlocal how, authorization
                how, authorization = self._authorize(endpoint, challenge, ref, creds, failures)
                if authorization is not None:
                    headers["Authorization"] = authorization
                return authorization is not None

            def fetch() -> HttpReply:
                reply = self._get(endpoint, url, headers)
                self._steps.append(f"GET {url} ({how}) -> {reply.status}")
                return reply

            if ping.status == 401 and not login(ping.headers.get("www-authenticate", "")):
                return None
            reply = fetch()
            challenge = reply.headers.get("www-authenticate", "")
            if reply.status == 401 and authorization is None and challenge:
                # containerd never pings: it asks for the manifest and answers its challenge
                # (a registry may serve /v2/ to anyone and still guard the repository).
                if not login(challenge):
                    return None
                reply = fetch()
        except ssl.SSLError as exc:
            if CLIENT_CERT_ALERT.search(str(exc)):
                presented = "refused the client certificate" if endpoint.client else \
                    "wants a client certificate and none is configured"
                failures.append(_Failure(endpoint.url, "client-cert",
                                         f"the registry {presented} ({tls_reason(exc)})"))
            else:
                failures.append(_Failure(endpoint.url, "tls", tls_reason(exc)))
            return None
        except OSError as exc:  # socket errors and timeouts are OSErrors
            failures.append(_Failure(endpoint.url, "unreachable", _os_reason(exc)))
            return None
        if reply.status == 200:
            try:
                manifest = json.loads(reply.body)
            except ValueError:
                failures.append(_Failure(endpoint.url, "server", "the manifest is not JSON"))
                return None
            return _Served(endpoint, how, _media_type(reply, manifest), manifest, reply.headers,
                           authorization)
        failures.append(_classify(endpoint.url, reply, creds is not None))
        return None

    def _authorize(self, endpoint: Endpoint, challenge: str, ref: ImageRef,
                   creds: RegistryLogin | None,
                   failures: list[_Failure]) -> tuple[str, str | None]:
        scheme = challenge.split(" ", 1)[0].lower()
        params = dict(_CHALLENGE.findall(challenge))
        basic = (base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
                 if creds else None)
        if scheme == "basic":
            if basic is None:
                failures.append(_Failure(endpoint.url, "auth", "it asks for Basic credentials "
                                         "and no source gives any"))
                return "Basic", None
            return "Basic", f"Basic {basic}"
        if scheme == "bearer" and params.get("realm"):
            query = {"service": params.get("service", ""),
                     "scope": f"repository:{ref.repository}:pull"}
            token_url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urlencode(
                {k: v for k, v in query.items() if v})
            # containerd's authorizer asks the realm through the endpoint's own TLS client
            reply = self._get(endpoint, token_url,
                              {"Authorization": f"Basic {basic}"} if basic else {})
            self._steps.append(f"GET {params['realm']} (token, "
                               f"{'Basic' if basic else 'anonymous'}) -> {reply.status}")
            token = None
            if reply.status == 200:
                try:
                    body = json.loads(reply.body)
                    token = body.get("token") or body.get("access_token")
                except (ValueError, AttributeError):
                    token = None
            if not isinstance(token, str) or not token:
                failures.append(_classify(endpoint.url, reply, creds is not None,
                                          what="its token service"))
                return "Bearer", None
            return "Bearer", f"Bearer {token}"
        failures.append(_Failure(endpoint.url, "auth", f"unknown auth challenge {challenge!r}"))
        return scheme or "unknown", None

    def _no_endpoint(self, ref: ImageRef, hosts: RegistryHosts, creds: RegistryLogin | None,
                     failures: list[_Failure], route: str, steps: tuple[str, ...]) -> list[Check]:
        if not failures:
            return [fail("registry.endpoint", f"no endpoint for {hosts.host} has the pull "
                         f"capability ({hosts.origin})",
                         'give the mirror capabilities = ["pull", "resolve"]')]
        details = steps + tuple(f"{f.endpoint}: {f.kind}: {f.detail}" for f in failures)
        chosen = _verdict(failures)
        also = (f" (all {len(failures)} endpoints failed; -v shows each)" if len(failures) > 1
                else "")
        said = f"{chosen.endpoint}: {chosen.detail}{also}"
        in_hosts_toml = hosts.origin.endswith("hosts.toml")
        if chosen.kind in ("auth", "denied"):
            fix = (f"check what {creds.describe} gives" if creds else
                   f"add a rule for {ref.host} to the ecrcred config (or, for ECR, let the "
                   "node's role call ecr:GetAuthorizationToken)")
            if chosen.kind == "denied":
                fix = f"grant the identity of {creds.describe if creds else 'the node'} pull " \
                      f"access (ecr:BatchGetImage, ecr:GetDownloadUrlForLayer) on {ref.repository}"
            return [fail("registry.auth", f"{ref} was refused: {said}", fix, details)]
        if chosen.kind == "missing":
            fix = f"check the tag, or push {ref} to {chosen.endpoint}"
            if ref.host == DOCKER_HUB and ref.repository.startswith("library/") and any(
                    e.mirror for e in hosts.endpoints):
                fix = ("this mirror must serve Docker Hub's library/ paths (an image "
                       "named busybox is pulled as library/busybox, which a mirror without "
                       "them answers 404): use a mirror that proxies docker.io, or the full "
                       "path it serves")
            return [ok("registry.endpoint", f"reached {route}", steps),
                    fail("registry.manifest", f"no manifest for {ref}: {said}", fix, details)]
        if chosen.kind == "client-cert":
            pair = 'client = [["cert.pem", "key.pem"]]'
            fix = (f"give {chosen.endpoint} a client certificate it trusts: {pair} for it in "
                   f"{hosts.origin}" if in_hosts_toml else
                   f"give containerd a client certificate the registry trusts: a hosts.toml for "
                   f"{hosts.host} with {pair}")
            return [fail("registry.endpoint", f"TLS to {chosen.endpoint} failed: {chosen.detail}"
                         f"{also}", fix, details)]
        if chosen.kind == "tls":
            fix = (f"add the registry's CA file to ca = [\"...\"] for {chosen.endpoint} in "
                   f"{hosts.origin}" if in_hosts_toml else
                   f"give containerd the CA: a hosts.toml for {hosts.host} with ca = [\"...\"]")
            return [fail("registry.endpoint", f"TLS to {chosen.endpoint} failed: {chosen.detail}"
                         f"{also}", fix, details)]
        return [fail("registry.endpoint", f"no endpoint served {ref}: {said}",
                     f"check the network path from this node to {route}", details)]

    # -- judging what was served -------------------------------------------------------------

    def _judge(self, ref: ImageRef, served: _Served) -> list[Check]:
        media_type, manifest = served.media_type, served.manifest
        if media_type in SCHEMA1 or manifest.get("schemaVersion") == 1:
            return [self._schema1(ref)]
        described = f"{ref} is {_name(media_type)}"
        if media_type in (DOCKER_LIST, OCI_INDEX) or "manifests" in manifest:
            chosen = _platform(manifest, self._os, self._arch)
            if chosen is None:
                platforms = sorted({_platform_name(m.get("platform") or {})
                                    for m in manifest.get("manifests", []) if isinstance(m, dict)})
                return [fail("registry.manifest", f"{described} without {self._os}/{self._arch}"
                             f" (it has: {', '.join(platforms) or 'nothing'})",
                             f"push a {self._os}/{self._arch} image to {ref}")]
            digest = str(chosen.get("digest", ""))
            its = f"{described}; its {self._os}/{self._arch} manifest {digest}"
            try:
                reply = self._get(
                    served.endpoint, self._manifest_url(served.endpoint, ref, digest),
                    {"Accept": ACCEPT, **({"Authorization": served.authorization}
                                          if served.authorization else {})})
            except OSError as exc:
                return [fail("registry.manifest", f"{its} could not be fetched "
                             f"({_os_reason(exc)})", f"check the network path to "
                             f"{served.endpoint.url}")]
            if reply.status != 200:
                return [fail("registry.manifest", f"{its} answered HTTP {reply.status}",
                             "re-push the image")]
            try:
                manifest = json.loads(reply.body)
            except ValueError:
                return [fail("registry.manifest", f"{its} is not JSON", "re-push the image")]
            media_type = _media_type(reply, manifest)
            described += f"; {self._os}/{self._arch} is {digest} ({_name(media_type)})"
        else:
            described += f" ({served.headers.get('docker-content-digest', 'no digest header')})"
        if media_type in SCHEMA1 or manifest.get("schemaVersion") == 1:
            return [self._schema1(ref)]
        return [ok("registry.manifest", described), self._media_types(ref, manifest)]

    def _runtime_name(self) -> str:
        if self._runtime is None:
            return "the runtime (version unknown)"
        return f"{self._runtime.name} {self._runtime.version}"

    def _schema1(self, ref: ImageRef) -> Check:
        version = self._version
        message = (f"{ref} has a Docker schema 1 manifest: containerd 2.0 disables it and 2.1 "
                   f"removed it; this node runs {self._runtime_name()}")
        fix = f"re-push it as schema 2 or OCI (e.g. skopeo copy --format v2s2 ... {ref})"
        if self._runtime and self._runtime.name == "containerd" and version >= (2, 0):
            return fail("registry.manifest", message, fix)
        return warn("registry.manifest", message, fix)

    def _media_types(self, ref: ImageRef, manifest: dict[str, Any]) -> Check:
        config = manifest.get("config")
        if not isinstance(config, dict):
            config = {}
        config_type = str(config.get("mediaType", ""))
        layers = [str(layer.get("mediaType", "")) for layer in manifest.get("layers") or []
                  if isinstance(layer, dict)]
        kinds = ", ".join(sorted(set(layers))) or "no layers"
        found = f"config {config_type or '(none)'}; {len(layers)} layers: {kinds}"
        name = self._runtime_name()
        version = self._version
        is_containerd = self._runtime is not None and self._runtime.name == "containerd"
        if config_type == OCTET_STREAM:
            message = (f"{ref}: {found}. containerd does not unpack an application/octet-stream "
                       "config (Docker < 1.10 images): \"failed to extract layer ... content "
                       "digest ... not found\" on 1.4.3, 1.6.20 and 1.7.24 (measured by "
                       f"ecrcred's tests); this node runs {name}")
            fix = (f"rebuild {ref} with a current builder, or convert it "
                   "(skopeo copy --format oci docker://SRC docker://DST)")
            if is_containerd and version and version <= OCTET_STREAM_FAILS_UP_TO:
                return fail("registry.media-types", message, fix)
            if is_containerd and version and version >= OCTET_STREAM_WORKS_FROM:
                return ok("registry.media-types", f"{ref}: {found}; this node runs {name}, "
                          "which unpacks an application/octet-stream config (2.1.9 and later, "
                          "measured by ecrcred's tests; 1.7.24 and older do not)")
            return warn("registry.media-types", message + " (not measured on this version)",
                        fix)
        if config_type not in IMAGE_CONFIGS:
            return fail("registry.media-types", f"{ref} is not a container image ({found})",
                        "point the pod at a container image; OCI artifacts such as Helm charts "
                        "cannot run")
        unknown = [t for t in layers if t not in LAYERS]
        if unknown:
            return fail("registry.media-types", f"{ref}: layers of types containerd does not "
                        f"unpack: {', '.join(sorted(set(unknown)))}",
                        "rebuild the image with a current builder")
        if any(LAYERS[t] == "zstd" for t in layers) and is_containerd and version < (1, 5):
            return fail("registry.media-types", f"{ref}: zstd layers need containerd 1.5 or "
                        f"newer; this node runs {name}", "push a gzip variant of the image")
        if any(LAYERS[t] == "foreign" for t in layers):
            return warn("registry.media-types", f"{ref}: {found}; foreign layers are fetched "
                        "from URLs outside the registry", "make sure the node can reach them")
        return ok("registry.media-types", f"{found}: {name} unpacks these")


def _media_type(reply: HttpReply, manifest: dict[str, Any]) -> str:
    """The Content-Type the registry served, else the manifest's own mediaType."""
    return (reply.headers.get("content-type", "").split(";")[0].strip()
            or str(manifest.get("mediaType", "")))


def _reference(ref: ImageRef) -> str:
    """What containerd asks the registry for: the digest when there is one, else the tag."""
    return ref.digest or ref.tag or "latest"


def _classify(endpoint: str, reply: HttpReply, had_creds: bool,
              what: str = "the registry") -> _Failure:
    error = ""
    try:
        errors = json.loads(reply.body).get("errors") or []
        error = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors[:2])
    except (ValueError, AttributeError, TypeError):
        pass
    said = f"{what} answered HTTP {reply.status}" + (f" ({error})" if error else "")
    if reply.status == 401:
        return _Failure(endpoint, "auth", said + (": the credentials were refused" if had_creds
                                                  else ": it needs credentials"))
    if reply.status == 403:
        return _Failure(endpoint, "denied", said)
    if reply.status == 404:
        return _Failure(endpoint, "missing", said)
    return _Failure(endpoint, "server", said)


def _platform(index: dict[str, Any], os_name: str, arch: str) -> dict[str, Any] | None:
    for entry in index.get("manifests") or []:
        platform = entry.get("platform") if isinstance(entry, dict) else None
        if isinstance(platform, dict) and platform.get("os") == os_name and platform.get(
                "architecture") == arch:
            return dict(entry)
    return None


def _platform_name(platform: dict[str, Any]) -> str:
    name = f"{platform.get('os', '?')}/{platform.get('architecture', '?')}"
    return name + (f"/{platform['variant']}" if platform.get("variant") else "")


def _name(media_type: str) -> str:
    return {DOCKER_MANIFEST: "a Docker schema 2 manifest", DOCKER_LIST: "a Docker manifest list",
            OCI_MANIFEST: "an OCI manifest", OCI_INDEX: "an OCI image index"}.get(
                media_type, f"a manifest of type {media_type or '(none)'}")


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror})"
    return getattr(exc, "strerror", None) or " ".join(str(exc).split()) or type(exc).__name__
