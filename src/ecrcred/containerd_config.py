"""Reading containerd's own configuration: the sandbox image and the registry config path.

containerd keeps the sandbox (pause) image name in its CRI plugin's config, in a place that
depends on the config version:

- version 3 (containerd 2.x): ``[plugins."io.containerd.cri.v1.images".pinned_images] sandbox``
- version 2 (containerd 1.6, 1.7): ``[plugins."io.containerd.grpc.v1.cri"] sandbox_image``
- version 1 (no ``version``): ``[plugins.cri] sandbox_image``

``imports`` add files, read breadth first (a file's imports after every file already queued),
each once. How they merge depends on the containerd generation, which the root file's version
tells (``load``):

- containerd 1.6/1.7 (root version 1 or 2; ``mergeConfig`` in services/server/config): each
  ``[plugins."<id>"]`` table a file has replaces that plugin's whole table (containerd issue
  5837): a drop-in with only ``...cri".registry.mirrors."*"`` leaves no ``sandbox_image`` and no
  other mirror. Keys are read by the last ``version`` any file set (1: ``cri``; 2 or more: full
  plugin URIs, and then a key like ``cri`` keeps containerd from starting). An import pattern
  with ``*`` is globbed as written, a relative one from the daemon's working directory (``/``
  under systemd), not from the importing file's directory. Seen on containerd 1.6.20 with
  ``containerd config dump``.
- containerd 2.x (root version 3; cmd/containerd/server/config, PR 9982): a drop-in with an
  older or no version is first migrated (``cri`` to ``io.containerd.grpc.v1.cri``, then its
  ``sandbox_image`` and ``registry`` to the images plugin), then tables merge key by key, a
  file's value (an array too) replacing the one before. Relative imports are in the importing
  file's directory.

A missing import that is not a pattern keeps containerd from starting: a ConfigError here.

It also answers "where would containerd's CRI send a pull for this host?" (``registry_hosts``):
the ``<config_path>/<host>/hosts.toml`` mirrors with their CA files and client certificates, or
the deprecated ``registry.mirrors`` / ``registry.configs`` tables (``mirrors."*"`` standing in
for a host without its own entry), then the host itself. ``doctor`` follows that list to reach
the registry the way containerd would.

Facts: docs/containerd.md. Parsing uses the standard library's tomllib.
"""

from __future__ import annotations

import copy
import glob
import os
import tomllib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from ecrcred.errors import ConfigError, ConfigMissing
from ecrcred.imageref import DOCKER_HUB

DEFAULT_CONFIG = "/etc/containerd/config.toml"
# containerd 1.x globs a relative import pattern from its working directory: systemd's default
DAEMON_WORKING_DIRECTORY = "/"

_CRI_V1 = "cri"
_CRI_V2 = "io.containerd.grpc.v1.cri"
_IMAGES_V3 = "io.containerd.cri.v1.images"
# (plugin table, key path inside it) per config version
_SANDBOX_KEYS = {
    3: (_IMAGES_V3, ("pinned_images", "sandbox")),
    2: (_CRI_V2, ("sandbox_image",)),
    1: (_CRI_V1, ("sandbox_image",)),
}
_REGISTRY_KEYS = {
    3: (_IMAGES_V3, ("registry",)),
    2: (_CRI_V2, ("registry",)),
    1: (_CRI_V1, ("registry",)),
}


class Found(NamedTuple):
    value: str
    file: str  # which file set it
    version: int  # the config version it was read as (3: containerd 2.x)


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
    notes: tuple[str, ...] = ()  # what in the files containerd would not do as written


NO_CONFIG = ContainerdConfig((), None, None, None)  # containerd's defaults: no file at all


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


def _read(path: str, imported_by: str | None = None) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        if imported_by is not None:
            raise ConfigError(
                f"{imported_by} imports {path}, which does not exist: containerd does not start "
                f"(\"failed to load TOML: {path}: open {path}: no such file or directory\")",
                hint="create the file, or remove it from imports") from None
        raise ConfigMissing(f"containerd config {path} does not exist",
                          hint="pass --containerd-config or --image") from None
    except OSError as exc:
        raise ConfigError(f"cannot read containerd config {path}: {exc.strerror}",
                          hint="run as root, or pass --image") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"containerd config {path} is not valid TOML ({exc})",
                          hint="check it with 'containerd config dump'") from None


def _imports(path: str, doc: dict[str, Any], v2_daemon: bool,
             notes: list[str]) -> list[str]:
    """The files an ``imports`` list names, as containerd's ``resolveImports`` finds them: a
    pattern (with ``*``) globbed, matches in order; any other path kept, missing or not.

    containerd 2.x puts a relative path in the importing file's directory; 1.x does that for a
    plain path only, and globs a relative pattern from its own working directory."""
    out = []
    base = os.path.dirname(path)
    for pattern in doc.get("imports") or []:
        if not isinstance(pattern, str):
            continue
        if "*" not in pattern or v2_daemon:
            full = os.path.normpath(pattern)
            full = full if os.path.isabs(full) else os.path.join(base, full)
        else:
            full = pattern
            if not os.path.isabs(pattern):
                full = os.path.join(DAEMON_WORKING_DIRECTORY, pattern)
                notes.append(
                    f'imports = ["{pattern}"] in {path} is a relative pattern: containerd 1.x '
                    f"globs it from its working directory ({DAEMON_WORKING_DIRECTORY} under "
                    f"systemd), not from {base}; write it as an absolute path")
        if "*" in full:
            out += sorted(glob.glob(full, include_hidden=True))
        else:
            out.append(full)
    return out


_Path = tuple[str, ...]


def _walk(table: dict[str, Any], prefix: _Path) -> Iterator[_Path]:
    for key, value in table.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _walk(value, (*prefix, key))


class _Plugins:
    """The ``plugins`` tables merged so far, and the file that last set each key path."""

    def __init__(self) -> None:
        self.tables: dict[str, Any] = {}
        self.origin: dict[_Path, str] = {}

    def _forget(self, path: _Path) -> None:
        self.origin = {p: f for p, f in self.origin.items() if p[:len(path)] != path}

    def _remember(self, value: Any, path: _Path, file: str) -> None:
        self.origin[path] = file
        if isinstance(value, dict):
            for sub in _walk(value, path):
                self.origin[sub] = file

    def replace(self, plugins: dict[str, Any], file: str) -> None:
        """containerd 1.x: each plugin table of the file replaces the one before, whole."""
        for key, value in plugins.items():
            self.tables[key] = value
            self._forget((key,))
            self._remember(value, (key,), file)

    def merge(self, plugins: dict[str, Any], file: str) -> None:
        """containerd 2.x (mergo with override): tables merge key by key, any other value of
        the file (arrays included) replaces the one before."""
        self._merge(self.tables, plugins, (), file)

    def _merge(self, into: dict[str, Any], new: dict[str, Any], prefix: _Path,
               file: str) -> None:
        for key, value in new.items():
            path = (*prefix, key)
            old = into.get(key)
            if isinstance(value, dict) and isinstance(old, dict):
                self.origin[path] = file
                self._merge(old, value, path, file)
                continue
            into[key] = copy.deepcopy(value)
            self._forget(path)
            self._remember(value, path, file)


def _migrate_to_v3(plugins: dict[str, Any], version: int) -> dict[str, Any]:
    """A drop-in older than its version 3 root, as containerd 2.x migrates it before merging:
    ``v1Migrate`` (plugin ``cri`` is ``io.containerd.grpc.v1.cri``), then the images plugin's
    ``configMigration`` (its ``sandbox_image`` and ``registry`` move to the images plugin)."""
    plugins = copy.deepcopy(plugins)
    if version <= 1 and _CRI_V1 in plugins:
        plugins[_CRI_V2] = plugins.pop(_CRI_V1)
    cri = plugins.get(_CRI_V2)
    if isinstance(cri, dict):
        images = plugins.get(_IMAGES_V3)
        if not isinstance(images, dict):
            images = plugins[_IMAGES_V3] = {}
        if "sandbox_image" in cri:
            pinned = images.get("pinned_images")
            if not isinstance(pinned, dict):
                pinned = images["pinned_images"] = {}
            pinned["sandbox"] = cri["sandbox_image"]
        if "registry" in cri:
            images["registry"] = cri["registry"]
    return plugins


def _version(doc: dict[str, Any], path: str) -> int:
    """The file's ``version``, 0 when it has none."""
    version = doc.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version not in (0, 1, 2, 3):
        raise ConfigError(f"containerd config {path} has version {version!r}",
                          hint="ecrcred reads config versions 1, 2 and 3")
    return version


def load(path: str = DEFAULT_CONFIG) -> ContainerdConfig:
    """Read a containerd config and its imports, merged the way containerd merges them: as
    containerd 2.x does for a version 3 root, as 1.6/1.7 do otherwise (see the module doc)."""
    files: list[str] = []
    pending: list[tuple[str, str | None]] = [(path, None)]
    plugins = _Plugins()
    notes: list[str] = []
    root_version = effective = 0
    while pending:
        current, imported_by = pending.pop(0)
        if current in files:
            continue
        doc = _read(current, imported_by)
        version = _version(doc, current)
        if not files:
            root_version = version
        files.append(current)
        table = doc.get("plugins")
        table = table if isinstance(table, dict) else {}
        if root_version == 3:
            plugins.merge(table if version == 3 else _migrate_to_v3(table, version), current)
        else:
            plugins.replace(table, current)
            effective = version or effective  # a later file's version wins, as in mergo
        pending += [(f, current) for f in _imports(current, doc, root_version == 3, notes)]
    read_as = 3 if root_version == 3 else (2 if effective >= 2 else 1)
    if read_as == 2:
        for name in plugins.tables:
            if len(name.split(".")) < 4:
                raise ConfigError(
                    f'[plugins."{name}"] in {plugins.origin[(name,)]} is not a plugin URI, and '
                    f"the merged config is version {effective}: containerd does not start "
                    f'(invalid plugin key URI "{name}" expect io.containerd.x.vx)',
                    hint="use the full plugin name, e.g. io.containerd.grpc.v1.cri")

    def found(key: tuple[str, tuple[str, ...]], leaf: tuple[str, ...] = ()) -> Found | None:
        where = (key[0], *key[1], *leaf)
        value = _dig(plugins.tables, where)
        if not isinstance(value, str) or not value:
            return None
        return Found(value, plugins.origin[where], read_as)

    sandbox = found(_SANDBOX_KEYS[read_as])
    config_path = found(_REGISTRY_KEYS[read_as], ("config_path",))
    plugin, key = _REGISTRY_KEYS[read_as]
    registry = _dig(plugins.tables, (plugin, *key))
    registry = registry if isinstance(registry, dict) else {}
    mirrors = None
    if _table(registry, "mirrors"):
        mirrors = Found(",".join(sorted(registry["mirrors"])),
                        plugins.origin[(plugin, *key, "mirrors")], read_as)
    legacy = _legacy_hosts(registry, lambda *sub: plugins.origin.get((plugin, *key, *sub)),
                           files)
    return ContainerdConfig(tuple(files), sandbox, config_path, mirrors, legacy, tuple(notes))


def _legacy_hosts(registry: dict[str, Any], origin: Callable[..., str | None],
                  files: list[str]) -> dict[str, LegacyHost]:
    """``registry.mirrors`` and ``registry.configs`` per host, from the merged registry table;
    each host's ``file`` is the last file that set its mirrors or configs table."""
    mirrors = _table(registry, "mirrors")
    configs = _table(registry, "configs")
    out: dict[str, LegacyHost] = {}
    for host in sorted(set(mirrors) | set(configs)):
        mirror = mirrors.get(host)
        endpoint = mirror.get("endpoint") if isinstance(mirror, dict) else None
        endpoints = (tuple(e for e in endpoint if isinstance(e, str) and e)
                     if isinstance(endpoint, list) else ())
        config = _table(configs, host)
        tls = _table(config, "tls")
        auth = config.get("auth")
        set_by = [f for f in (origin("mirrors", host), origin("configs", host)) if f]
        file = max(set_by, key=files.index) if set_by else files[-1]
        out[host] = LegacyHost(endpoints, _str(tls, "ca_file"),
                               tls.get("insecure_skip_verify") is True,
                               isinstance(auth, dict) and any(auth.values()), file,
                               _str(tls, "cert_file"), _str(tls, "key_file"),
                               isinstance(mirror, dict), isinstance(config.get("tls"), dict))
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
        with open(path, "rb") as f:
            data = f.read()
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
