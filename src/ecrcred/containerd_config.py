"""Reading containerd's own configuration: its files and imports merged, the sandbox image, and
the snapshotter the CRI unpacks for (what ``pull-sandbox --archive`` unpacks for on 2.x).

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

The merged config also carries what the registry routes need (``config_path``, the deprecated
``registry.mirrors`` / ``registry.configs`` per host as ``LegacyHost``); following them to "where
would containerd's CRI send a pull for this host?" is ``containerd_routes``' job, doctor's only.

Facts: docs/containerd.md. Parsing uses the standard library's tomllib.
"""

from __future__ import annotations

import copy
import errno
import glob
import os
import tomllib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from ecrcred import files
from ecrcred.errors import ConfigError, ConfigMissing

DEFAULT_CONFIG = "/etc/containerd/config.toml"
# containerd's config files and hosts.toml are a few KB; a larger one is not one of them.
MAX_FILE = 1 << 20
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
# the snapshotter the CRI unpacks images for (the archive import unpacks for the same one)
_SNAPSHOTTER_KEYS = {
    3: (_IMAGES_V3, ("snapshotter",)),
    2: (_CRI_V2, ("containerd", "snapshotter")),
    1: (_CRI_V1, ("containerd", "snapshotter")),
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
    snapshotter: Found | None = None  # the CRI's snapshotter; None: containerd's default
    version: int = 2  # the version the merged config was read as (3: containerd 2.x)


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


def read_file(path: str) -> bytes:
    """The bytes of a small regular file, opened without blocking (a FIFO planted at ``path``
    would hold us otherwise). OSError as ``open`` raises it, ``files.Untrusted`` ("not a
    regular file") too, and EFBIG when it holds more than ``MAX_FILE`` bytes."""
    data = files.read_small(path, MAX_FILE).data
    if len(data) > MAX_FILE:
        raise OSError(errno.EFBIG, f"larger than {MAX_FILE >> 20} MiB", path)
    return data


def _str(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) and value else None


def _read(path: str, imported_by: str | None = None) -> dict[str, Any]:
    try:
        return tomllib.loads(read_file(path).decode())
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
    return ContainerdConfig(tuple(files), sandbox, config_path, mirrors, legacy, tuple(notes),
                            found(_SNAPSHOTTER_KEYS[read_as]), read_as)


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
