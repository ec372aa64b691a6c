"""Reading containerd's own configuration: the sandbox image and the registry config path.

containerd keeps the sandbox (pause) image name in its CRI plugin's config, in a place that
depends on the config version, and merges ``imports`` drop-ins in order, later files winning:

- version 3 (containerd 2.x): ``[plugins."io.containerd.cri.v1.images".pinned_images] sandbox``
- version 2 (containerd 1.6, 1.7): ``[plugins."io.containerd.grpc.v1.cri"] sandbox_image``
- version 1 (no ``version``): ``[plugins.cri] sandbox_image``

Facts: shared/reference/containerd-cri.md. Parsing uses the standard library's tomllib.
"""

from __future__ import annotations

import glob
import os
import tomllib
from typing import Any, NamedTuple

from ecrcred.errors import ConfigError

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


class ContainerdConfig(NamedTuple):
    files: tuple[str, ...]  # every file read, in merge order
    sandbox_image: Found | None
    config_path: Found | None  # registry hosts directory (hosts.toml)
    has_mirrors: Found | None  # the deprecated registry.mirrors form (value: its hosts)


def _dig(table: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(table, dict) or key not in table:
            return None
        table = table[key]
    return table


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"containerd config {path} does not exist",
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
        pending += _imports(current, doc)
    return ContainerdConfig(tuple(files), sandbox, config_path, mirrors)


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
