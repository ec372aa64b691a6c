"""Reading containerd's own configuration: the sandbox image and the registry config path.

containerd keeps the sandbox (pause) image name in its CRI plugin's config, in a place that
depends on the config version, and merges ``imports`` drop-ins in order, later files winning:

- version 3 (containerd 2.x): ``[plugins."io.containerd.cri.v1.images".pinned_images] sandbox``
- version 2 (containerd 1.6, 1.7): ``[plugins."io.containerd.grpc.v1.cri"] sandbox_image``
- version 1 (no ``version``): ``[plugins.cri] sandbox_image``

It also answers "where would containerd's CRI send a pull for this host?" (``registry_hosts``):
the ``<config_path>/<host>/hosts.toml`` mirrors with their CA files and client certificates, or
the deprecated ``registry.mirrors`` / ``registry.configs`` tables (``mirrors."*"`` standing in
for a host without its own entry), then the host itself. ``doctor`` follows that list to reach
the registry the way containerd would.

Facts: shared/reference/containerd-cri.md. Parsing uses the standard library's tomllib.
"""

from __future__ import annotations

import glob
import os
import tomllib
from typing import Any, NamedTuple

from ecrcred.errors import ConfigError, ConfigMissing

DEFAULT_CONFIG = "/etc/containerd/config.toml"

# (plugin table, key path inside it) per config version
_SANDBOX_KEYS = {
    3: ("io.containerd.cri.v1.images", ("pinned_images", "sandbox")),
    2: ("io.containerd.grpc.v1.cri", ("sandbox_image",)),
    1: ("cri", ("sandbox_image",)),
}
_REGISTRY_KEYS = {
    3: ("io.containerd.cri.v1.images", ("registry",)),
    2: ("io.containerd.grpc.v1.cri", ("registry",)),
    1: ("cri", ("registry",)),
}


class Found(NamedTuple):
    value: str
    file: str  # which file set it
    version: int


class LegacyHost(NamedTuple):
    """The deprecated per-host CRI registry settings (``registry.mirrors`` / ``.configs``)."""

    endpoints: tuple[str, ...]  # registry.mirrors."<host>".endpoint
    ca_file: str | None  # registry.configs."<host>".tls.ca_file
    skip_verify: bool  # registry.configs."<host>".tls.insecure_skip_verify
    has_auth: bool  # registry.configs."<host>".auth is set (static credentials; never kept)
    file: str
    cert_file: str | None = None  # registry.configs."<host>".tls.cert_file (client certificate)
    key_file: str | None = None  # registry.configs."<host>".tls.key_file (its private key)
    # a registry.mirrors."<host>" table exists, even without endpoints: mirrors."*" then does
    # not apply to the host
    mirrored: bool = False
    has_tls: bool = False  # a registry.configs."<host>".tls table exists, whatever it holds


class ContainerdConfig(NamedTuple):
    files: tuple[str, ...]  # every file read, in merge order
    sandbox_image: Found | None
    config_path: Found | None  # registry hosts directory (hosts.toml)
    has_mirrors: Found | None  # the deprecated registry.mirrors form (value: its hosts)
    legacy: dict[str, LegacyHost] = {}  # noqa: RUF012 - NamedTuple default, never mutated


def _dig(table: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(table, dict) or key not in table:
            return None
        table = table[key]
    return table


def _table(doc: Any, key: str) -> dict[str, Any]:
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, dict) else {}


def _str(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) and value else None


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigMissing(f"containerd config {path} does not exist",
                          hint="pass --containerd-config or --image") from None
    except OSError as exc:
        raise ConfigError(f"cannot read containerd config {path}: {exc.strerror}",
                          hint="run as root, or pass --image") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"containerd config {path} is not valid TOML ({exc})",
                          hint="check it with 'containerd config dump'") from None


def _imports(path: str, doc: dict[str, Any]) -> list[str]:
    """The files an ``imports`` list names, globs expanded, relative to the importing file."""
    out = []
    base = os.path.dirname(path)
    for pattern in doc.get("imports") or []:
        if not isinstance(pattern, str):
            continue
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        matches = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
        out += [m for m in matches if os.path.isfile(m)]
    return out


def load(path: str = DEFAULT_CONFIG) -> ContainerdConfig:
    """Read a containerd config and its imports the way containerd merges them."""
    files: list[str] = []
    pending = [path]
    sandbox = config_path = mirrors = None
    legacy: dict[str, LegacyHost] = {}
    while pending:
        current = pending.pop(0)
        if current in files:
            continue
        doc = _read(current)
        files.append(current)
        version = doc.get("version", 1)
        if not isinstance(version, int) or version not in _SANDBOX_KEYS:
            raise ConfigError(f"containerd config {current} has version {version!r}",
                              hint="ecrcred reads config versions 1, 2 and 3")
        plugins = doc.get("plugins")
        if not isinstance(plugins, dict):
            plugins = {}
        plugin, key = _SANDBOX_KEYS[version]
        value = _dig(plugins.get(plugin), key)
        if isinstance(value, str) and value:
            sandbox = Found(value, current, version)
        plugin, key = _REGISTRY_KEYS[version]
        registry = _dig(plugins.get(plugin), key)
        if not isinstance(registry, dict):
            registry = {}
        if isinstance(registry.get("config_path"), str) and registry["config_path"]:
            config_path = Found(registry["config_path"], current, version)
        if isinstance(registry.get("mirrors"), dict) and registry["mirrors"]:
            mirrors = Found(",".join(sorted(registry["mirrors"])), current, version)
        legacy.update(_legacy_hosts(registry, current, legacy))
        pending += _imports(current, doc)
    return ContainerdConfig(tuple(files), sandbox, config_path, mirrors, legacy)


def _legacy_hosts(registry: dict[str, Any], file: str,
                  known: dict[str, LegacyHost]) -> dict[str, LegacyHost]:
    """``registry.mirrors`` and ``registry.configs`` per host, merged over earlier files."""
    mirrors = _table(registry, "mirrors")
    configs = _table(registry, "configs")
    out: dict[str, LegacyHost] = {}
    for host in sorted(set(mirrors) | set(configs)):
        before = known.get(host, LegacyHost((), None, False, False, file))
        mirror = mirrors.get(host)
        endpoint = mirror.get("endpoint") if isinstance(mirror, dict) else None
        endpoints = before.endpoints
        if isinstance(endpoint, list):
            endpoints = tuple(e for e in endpoint if isinstance(e, str) and e)
        config = _table(configs, host)
        tls = _table(config, "tls")
        ca_file = _str(tls, "ca_file") or before.ca_file
        skip = tls.get("insecure_skip_verify") is True or before.skip_verify
        auth = config.get("auth")
        has_auth = before.has_auth or (isinstance(auth, dict) and any(auth.values()))
        out[host] = LegacyHost(endpoints, ca_file or None, skip, has_auth, file,
                               _str(tls, "cert_file") or before.cert_file,
                               _str(tls, "key_file") or before.key_file,
                               before.mirrored or isinstance(mirror, dict),
                               before.has_tls or isinstance(config.get("tls"), dict))
    return out


def sandbox_image(path: str = DEFAULT_CONFIG) -> Found:
    """The configured sandbox image, or a ConfigError that lists where we looked."""
    config = load(path)
    if config.sandbox_image is None:
        places = "; ".join(
            f'v{v}: [plugins."{plugin}"] {".".join(key)}'
            for v, (plugin, key) in sorted(_SANDBOX_KEYS.items(), reverse=True))
        raise ConfigError(
            f"no sandbox image is configured in {', '.join(config.files)} (looked for {places})",
            hint="pass --image, or set the sandbox image in containerd's config",
        )
    return config.sandbox_image


# -- where a pull for a host goes ------------------------------------------------------------

DOCKER_HUB = "docker.io"
DOCKER_HUB_SERVER = "https://registry-1.docker.io"
ALL_CAPABILITIES = ("pull", "resolve", "push")


# A client certificate and its private key, as containerd loads them; an empty key means the
# key is in the certificate's file.
ClientPair = tuple[str, str]


class Endpoint(NamedTuple):
    """One place containerd would try for a registry host, in order."""

    url: str  # scheme://host[:port][/path]
    capabilities: tuple[str, ...]
    ca: tuple[str, ...]  # CA files to trust besides the system's
    skip_verify: bool
    override_path: bool  # the url's path replaces /v2
    mirror: bool  # not the image's own host: containerd adds ?ns=<host> to its requests
    client: tuple[ClientPair, ...] = ()  # client certificates to present (mutual TLS)

    @property
    def pulls(self) -> bool:
        return "pull" in self.capabilities


class RegistryHosts(NamedTuple):
    host: str
    endpoints: tuple[Endpoint, ...]
    origin: str  # the hosts.toml, the legacy table, or "no registry config for this host"
    notes: tuple[str, ...]  # what in that config containerd would not do as written


def default_server(host: str) -> str:
    return DOCKER_HUB_SERVER if host == DOCKER_HUB else f"https://{host}"


def _url_host(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0]


def _is_mirror(url: str, host: str) -> bool:
    """containerd's ``isProxy`` (it then adds ``?ns=<host>``): an endpoint on another host, except
    Docker Hub's own server for docker.io."""
    endpoint_host = _url_host(url)
    return endpoint_host != host and (host, endpoint_host) != (DOCKER_HUB,
                                                               _url_host(DOCKER_HUB_SERVER))


def _string_list(value: Any, field: str, notes: list[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        notes.append(f"{field} is a string; containerd 1.6 needs an array (\"{field} = "
                     f"[\"{value}\"]\")")
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def _absolute(path: str, directory: str) -> str:
    """containerd's ``makeAbsPath``: a relative ``ca`` or ``client`` path is in the host dir."""
    return path if os.path.isabs(path) else os.path.join(directory, path)


def _client_pairs(value: Any, directory: str, where: str) -> tuple[ClientPair, ...]:
    """``client`` the way containerd's ``parseHostConfig`` reads it (1.5 to 2.x).

    ``"a.pem"`` is one file holding the certificate and its key; in an array, each string is
    such a file too (so ``["cert.pem", "key.pem"]`` is two combined files, not a pair), and
    each two-string array is a certificate and its key. Any other shape makes containerd
    log "failed to decode hosts.toml" and ignore the whole file: a ConfigError here.
    """
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        items = [None]
    pairs: list[ClientPair] = []
    for item in items:
        if isinstance(item, str):
            pairs.append((_absolute(item, directory), ""))
        elif (isinstance(item, list) and len(item) == 2
              and all(isinstance(p, str) for p in item)):
            pairs.append((_absolute(item[0], directory), _absolute(item[1], directory)))
        else:
            raise ConfigError(
                f"{where}: client = {value!r} is not a shape containerd reads (a file, an "
                "array of files, or an array of [certificate, key] pairs): containerd logs "
                "\"failed to decode hosts.toml\" and ignores the whole file",
                hint='write client = [["/path/cert.pem", "/path/key.pem"]]')
    return tuple(pairs)


def _hosts_toml_endpoint(url: str, table: dict[str, Any], host: str, notes: list[str],
                         path: str) -> Endpoint:
    if "://" not in url:
        url = "https://" + url
    capabilities = table.get("capabilities")
    caps = (tuple(c for c in capabilities if isinstance(c, str))
            if isinstance(capabilities, list) else ALL_CAPABILITIES)
    directory = os.path.dirname(path)
    ca = tuple(_absolute(c, directory) for c in _string_list(table.get("ca"), "ca", notes))
    client = (_client_pairs(table["client"], directory, path) if "client" in table else ())
    return Endpoint(url.rstrip("/"), caps, ca, table.get("skip_verify") is True,
                    table.get("override_path") is True, _is_mirror(url, host), client)


def _cert_files(directory: str) -> tuple[tuple[str, ...], tuple[ClientPair, ...]]:
    """A host directory without hosts.toml, as containerd's ``loadCertFiles`` reads it: each
    ``*.crt`` is a CA; each ``*.cert`` a client certificate, with its key in the ``.key`` file
    of the same name when there is one (else in the ``.cert`` file itself)."""
    cas = tuple(sorted(glob.glob(os.path.join(directory, "*.crt"))))
    pairs = []
    for cert in sorted(glob.glob(os.path.join(directory, "*.cert"))):
        key = cert[:-len(".cert")] + ".key"
        pairs.append((cert, key if os.path.exists(key) else ""))
    return cas, tuple(pairs)


def _legacy_client(tls: LegacyHost | None, url: str) -> tuple[ClientPair, ...]:
    """``registry.configs."<host>".tls`` cert_file and key_file: containerd's ``getTLSConfig``
    wants both or neither, and fails every pull through the endpoint otherwise."""
    if tls is None or not (tls.cert_file or tls.key_file):
        return ()
    if tls.cert_file and tls.key_file:
        return ((tls.cert_file, tls.key_file),)
    given, missing = ("cert_file", "key_file") if tls.cert_file else ("key_file", "cert_file")
    raise ConfigError(
        f'registry.configs."{_url_host(url)}".tls in {tls.file} sets {given} without '
        f"{missing}: containerd fails every pull through {url} (\"{given.split('_')[0]} file "
        f"... was specified, but no corresponding {missing.split('_')[0]} file was "
        "specified\")", hint="set both cert_file and key_file, or neither")


def _host_dir(config_path: str, host: str) -> str | None:
    for name in (host, "_default"):
        directory = os.path.join(config_path, name)
        if os.path.isdir(directory):
            return directory
    return None


def registry_hosts(config: ContainerdConfig, host: str) -> RegistryHosts:
    """Where containerd's CRI sends a pull for ``host``, in the order it tries them.

    With ``config_path``: ``<config_path>/<host>/hosts.toml`` (or ``_default/``), its
    ``[host."…"]`` entries in file order, then ``server`` (default ``https://<host>``), each with
    its ``ca`` and ``client`` files (relative ones in the host directory); without a
    hosts.toml, the directory's ``*.crt`` files are CAs and its ``*.cert``/``*.key`` files client
    certificates for the host itself. Without ``config_path``: the deprecated
    ``registry.mirrors`` endpoints (see ``_legacy_hosts_for``), then the host itself.
    """
    notes: list[str] = []
    own = default_server(host)
    if config.config_path is not None:
        directory = _host_dir(config.config_path.value, host)
        if directory is None:
            return RegistryHosts(host, (Endpoint(own, ALL_CAPABILITIES, (), False, False,
                                                 False),),
                                 f"no {os.path.join(config.config_path.value, host)}/hosts.toml",
                                 ())
        path = os.path.join(directory, "hosts.toml")
        if not os.path.isfile(path):
            cas, client = _cert_files(directory)
            return RegistryHosts(host, (Endpoint(own, ALL_CAPABILITIES, cas, False, False,
                                                 False, client),),
                                 f"{directory} (certificates only)", ())
        doc = _read(path)
        endpoints = [_hosts_toml_endpoint(url, table, host, notes, path)
                     for url, table in _table(doc, "host").items() if isinstance(table, dict)]
        server = _str(doc, "server") or own
        endpoints.append(_hosts_toml_endpoint(server, doc, host, notes, path))
        return RegistryHosts(host, tuple(endpoints), path, tuple(notes))
    return _legacy_hosts_for(config, host)


def _legacy_hosts_for(config: ContainerdConfig, host: str) -> RegistryHosts:
    """The deprecated route: ``registry.mirrors."<host>"``, or ``registry.mirrors."*"`` when the
    host has no mirrors table of its own, then the host itself.

    containerd's CRI (``registryEndpoints`` in pkg/cri/server/image_pull.go, the same from 1.5
    to 1.7, so in 1.6.20) takes ``Mirrors[host]`` when that key exists, even with no endpoints,
    and ``Mirrors["*"]`` otherwise; ``registry.configs`` plays no part in that choice.
    """
    own = default_server(host)
    legacy = config.legacy.get(host)
    wildcard = config.legacy.get("*")
    mirrors = legacy
    if (legacy is None or not legacy.mirrored) and wildcard is not None and wildcard.mirrored:
        mirrors = wildcard
    if mirrors is None:
        return RegistryHosts(host, (Endpoint(own, ALL_CAPABILITIES, (), False, False, False),),
                             "no registry config for this host", ())
    urls = list(mirrors.endpoints) if mirrors.mirrored else []
    if own not in urls:
        urls.append(own)
    endpoints = []
    for url in urls:
        # registry.configs."<host>".tls is keyed by the endpoint's own host, mirrors included.
        tls = config.legacy.get(_url_host(url))
        ca = (tls.ca_file,) if tls is not None and tls.ca_file else ()
        # An endpoint with a path is used as given; without one containerd adds /v2.
        has_path = "/" in url.split("://", 1)[-1].rstrip("/")
        endpoints.append(Endpoint(url.rstrip("/"), ALL_CAPABILITIES, ca,
                                  tls is not None and tls.skip_verify, has_path,
                                  _is_mirror(url, host), _legacy_client(tls, url)))
    origin = (f'registry.mirrors."*" in {mirrors.file} (deprecated; {host} has no mirrors '
              "entry of its own)" if mirrors is wildcard else
              f'registry.mirrors/configs."{host}" in {mirrors.file} (deprecated)')
    return RegistryHosts(host, tuple(endpoints), origin, ())
