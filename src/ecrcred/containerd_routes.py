"""Where containerd's CRI sends a pull for a registry host, in the order it tries them.

``registry_hosts`` answers it from a loaded ``ContainerdConfig`` (``containerd_config.load``):
with ``config_path``, the ``<config_path>/<host>/hosts.toml`` mirrors with their CA files and
client certificates (or, without a readable hosts.toml, the directory's certificate files);
without it, the deprecated ``registry.mirrors`` / ``registry.configs`` tables (``mirrors."*"``
standing in for a host without its own entry); then the host itself. ``doctor`` follows that list
to reach the registry the way containerd would; nothing on the kubelet's path imports this.

A room of its own because it reads other files (hosts.toml, certificate directories) by other
rules (containerd's ``config/hosts`` package) than the config it starts from.

Facts: docs/containerd.md. Parsing uses the standard library's tomllib.
"""

from __future__ import annotations

import os
import tomllib
from typing import Any, NamedTuple

from ecrcred.containerd_config import ContainerdConfig, LegacyHost, _table, read_file
from ecrcred.errors import ConfigError
from ecrcred.imageref import DOCKER_HUB

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

    def route(self, *, pulling_only: bool = False) -> str:
        """``url -> url (mirror) -> ...``, in the order containerd tries them."""
        return " -> ".join(f"{e.url}{' (mirror)' if e.mirror else ''}" for e in self.endpoints
                           if e.pulls or not pulling_only)


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


class _Undecodable(Exception):
    """What makes containerd's ``parseHostsFile`` fail: it logs "failed to decode hosts.toml"
    and reads the host directory as if it had no hosts.toml (``loadHostDir``)."""


def _string_list(value: Any, field: str, directory: str) -> tuple[str, ...]:
    """``ca``: one file (a string) or an array of files, relative ones in the host directory."""
    if isinstance(value, str):
        return (_absolute(value, directory),)
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise _Undecodable(f"{field} = {value!r}: unable to cast a value to string")
        return tuple(_absolute(v, directory) for v in value)
    raise _Undecodable(f"invalid type {value!r} for {field!r}")


def _absolute(path: str, directory: str) -> str:
    """containerd's ``makeAbsPath``: a relative ``ca`` or ``client`` path is in the host dir."""
    return path if os.path.isabs(path) else os.path.join(directory, path)


def _client_pairs(value: Any, directory: str) -> tuple[ClientPair, ...]:
    """``client`` the way containerd's ``parseHostConfig`` reads it (1.5 to 2.x).

    ``"a.pem"`` is one file holding the certificate and its key; in an array, each string is
    such a file too (so ``["cert.pem", "key.pem"]`` is two combined files, not a pair), and
    each two-string array is a certificate and its key. Any other shape fails the decoding.
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
            raise _Undecodable(
                f"client = {value!r} is not a shape containerd reads (a file, an array of "
                "files, or an array of [certificate, key] pairs; write client = "
                '[["/path/cert.pem", "/path/key.pem"]])')
    return tuple(pairs)


# fields go-toml must convert to one type (else "Can't convert ..."), and that type's name
_TYPES = {"skip_verify": (bool, "a boolean"), "override_path": (bool, "a boolean"),
          "capabilities": (list, "an array"), "header": (dict, "a table")}


def _hosts_toml_endpoint(url: str, table: dict[str, Any], host: str,
                         directory: str) -> Endpoint:
    """One endpoint as ``parseHostConfig`` reads it, or _Undecodable where it fails."""
    for field, (kind, named) in _TYPES.items():
        if field in table and not isinstance(table[field], kind):
            raise _Undecodable(f"{field} = {table[field]!r} is not {named}")
    if not url.startswith("http"):
        url = "https://" + url
    capabilities = table.get("capabilities") or list(ALL_CAPABILITIES)  # [] means all too
    caps = []
    for capability in capabilities:
        if not isinstance(capability, str):
            raise _Undecodable(f"capabilities = {capabilities!r}: not strings")
        if capability.lower() not in ALL_CAPABILITIES:
            raise _Undecodable(f"unknown capability {capability}")
        caps.append(capability.lower())
    ca = _string_list(table["ca"], "ca", directory) if "ca" in table else ()
    client = _client_pairs(table["client"], directory) if "client" in table else ()
    for name, value in _table(table, "header").items():
        if not (isinstance(value, str) or (isinstance(value, list)
                                           and all(isinstance(v, str) for v in value))):
            raise _Undecodable(f"invalid type {value!r} for header {name!r}")
    return Endpoint(url.rstrip("/"), tuple(caps), ca, table.get("skip_verify") is True,
                    table.get("override_path") is True, _is_mirror(url, host), client)


def _hosts_toml(path: str, data: bytes, host: str, version: int) -> tuple[Endpoint, ...]:
    """``parseHostsFile``: each ``[host."…"]`` in file order, then the top level (``server``,
    default the host itself). containerd 1.x (go-toml v1) also fails a file without any
    ``host`` table ("invalid `host` tree"), so a lone ``server = …`` is ignored there; 2.x
    reads it."""
    try:
        doc = tomllib.loads(data.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _Undecodable(f"not valid TOML: {exc}") from None
    hosts = doc.get("host")
    if version < 3 and not isinstance(hosts, dict):
        raise _Undecodable('no [host."…"] table, which containerd 1.x needs ("invalid `host` '
                           'tree"); add the mirror as a [host."…"] table, or an empty [host]')
    if hosts is not None and not isinstance(hosts, dict):
        raise _Undecodable(f"host = {hosts!r} is not a table")
    directory = os.path.dirname(path)
    endpoints = []
    for url, table in (hosts or {}).items():
        if not isinstance(table, dict):
            raise _Undecodable(f'host."{url}" is not a table')
        endpoints.append(_hosts_toml_endpoint(url, table, host, directory))
    server = doc.get("server", "")
    if not isinstance(server, str):
        raise _Undecodable(f"server = {server!r} is not a string")
    endpoints.append(_hosts_toml_endpoint(server or default_server(host), doc, host, directory))
    return tuple(endpoints)


def _cert_files(directory: str) -> tuple[tuple[str, ...], tuple[ClientPair, ...]]:
    """A host directory read as containerd's ``loadCertFiles`` reads it (no hosts.toml, an empty
    one, or one it cannot decode): each ``*.crt`` file is a CA; each ``*.cert`` a client
    certificate, with its key in the ``.key`` file of the same name when there is one (else in
    the ``.cert`` file itself). Files in name order, hidden ones too, directories skipped."""
    names = sorted(e.name for e in os.scandir(directory) if not e.is_dir(follow_symlinks=False))
    cas = tuple(os.path.join(directory, n) for n in names if n.endswith(".crt"))
    pairs = []
    for name in names:
        if name.endswith(".cert"):
            cert = os.path.join(directory, name)
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
    """containerd's ``hostPaths``: ``<host>_<port>_`` first (for a host with a port), then
    ``<host>``, then ``_default``; the first that exists, whatever it is."""
    names = [host, "_default"]
    colon = host.rfind(":")
    if colon > 0:
        names.insert(0, f"{host[:colon]}_{host[colon + 1:]}_")
    for name in names:
        directory = os.path.join(config_path, name)
        if os.path.exists(directory):
            return directory
    return None


def registry_hosts(config: ContainerdConfig, host: str) -> RegistryHosts:
    """Where containerd's CRI sends a pull for ``host``, in the order it tries them.

    With ``config_path``: ``<config_path>/<host>/hosts.toml`` (or ``<host>_<port>_/``, or
    ``_default/``), its ``[host."…"]`` entries in file order, then ``server`` (default
    ``https://<host>``), each with its ``ca`` and ``client`` files (relative ones in the host
    directory). Without a hosts.toml, with an empty one, or with one containerd cannot decode
    (it logs "failed to decode hosts.toml" and goes on: a note here), the directory's ``*.crt``
    files are CAs and its ``*.cert``/``*.key`` files client certificates for the host itself
    (``loadCertFiles``). A hosts.toml containerd cannot read fails every pull: a ConfigError.
    Without ``config_path``: the deprecated ``registry.mirrors`` endpoints (see
    ``_legacy_hosts_for``), then the host itself.
    """
    own = default_server(host)
    if config.config_path is None:
        return _legacy_hosts_for(config, host)
    directory = _host_dir(config.config_path.value, host)
    if directory is None:
        return _direct(host, f"no {os.path.join(config.config_path.value, host)}/hosts.toml")
    path = os.path.join(directory, "hosts.toml")
    try:
        data = read_file(path)
    except FileNotFoundError:
        data = None
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path} ({exc.strerror}): containerd fails every pull from {host} "
            f'("failed to resolve reference ...: read {path}: ...")',
            hint=f"make {path} a readable file, or remove it") from None
    notes: tuple[str, ...] = ()
    why = "no hosts.toml" if data is None else "empty hosts.toml"
    if data:
        try:
            return RegistryHosts(host, _hosts_toml(path, data, host, config.config_path.version),
                                 path, ())
        except _Undecodable as exc:
            why = "hosts.toml ignored"
            notes = (f"containerd cannot decode {path} ({exc}): it logs \"failed to decode "
                     "hosts.toml\" and ignores the whole file, so pulls go to "
                     f"{own} itself with only the directory's certificate files "
                     "(*.crt, *.cert, *.key)",)
    cas, client = _cert_files(directory)
    return RegistryHosts(host, (Endpoint(own, ALL_CAPABILITIES, cas, False, False, False,
                                         client),),
                         f"{directory} ({why}: certificates only)", notes)


def _direct(host: str, origin: str) -> RegistryHosts:
    """The route when nothing configures the host: the host itself, every capability."""
    return RegistryHosts(host, (Endpoint(default_server(host), ALL_CAPABILITIES, (), False, False,
                                         False),), origin, ())


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
        return _direct(host, "no registry config for this host")
    urls = list(mirrors.endpoints) if mirrors.mirrored else []
    if own not in urls:
        urls.append(own)
    endpoints = []
    for url in urls:
        # registry.configs."<host>".tls is keyed by the endpoint's own host, mirrors included;
        # containerd 2.x reads no registry.configs tls at all (measured on 2.1.9: a pull then
        # fails TLS against a private CA), so for a version 3 config it plays no part.
        tls = config.legacy.get(_url_host(url)) if config.version < 3 else None
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
