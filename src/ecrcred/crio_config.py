"""CRI-O's sandbox image, read from its config as CRI-O reads it, for ``write-auth-file``'s default.

CRI-O names the sandbox image ``pause_image`` in ``[crio.image]`` of ``/etc/crio/crio.conf``,
and its drop-in directory (``/etc/crio/crio.conf.d``) overrides it: every regular file there, in
name order, each value replacing the one before. A node whose config sets none pulls CRI-O's
built-in default, a public image that needs no auth file: ``write-auth-file`` then asks for
``--image`` rather than guess.
"""

from __future__ import annotations

import os
import tomllib
from typing import Any

from ecrcred.containerd_config import Found, read_file
from ecrcred.errors import ConfigError

DEFAULT_CONFIG = "/etc/crio/crio.conf"


def dropin_dir(config: str) -> str:
    """CRI-O's drop-in directory for a config file: ``crio.conf.d`` beside ``crio.conf``."""
    return config + ".d"


def pause_image(config: str = DEFAULT_CONFIG) -> Found:
    """The sandbox image CRI-O would pull, and the file that set it; ConfigError when none
    does, or a file cannot be read or parsed."""
    files = [config] if os.path.exists(config) else []
    directory = dropin_dir(config)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        names = []
    except OSError as exc:
        raise ConfigError(f"cannot list CRI-O's drop-in directory {directory}: {exc.strerror}",
                          hint="run as root, or pass --image") from None
    files += [p for p in (os.path.join(directory, n) for n in names) if os.path.isfile(p)]
    found: Found | None = None
    for path in files:
        value = _pause_image(_read(path))
        if value is not None:
            found = Found(value, path, 0)
    if found is None:
        where = ", ".join(files) if files else f"{config} (missing) and {directory}"
        raise ConfigError(f"no pause_image in [crio.image] of {where}",
                          hint="pass --image with the sandbox image CRI-O pulls (CRI-O's "
                          "built-in default is public and needs no auth file)")
    return found


def _pause_image(doc: dict[str, Any]) -> str | None:
    crio = doc.get("crio")
    image = crio.get("image") if isinstance(crio, dict) else None
    value = image.get("pause_image") if isinstance(image, dict) else None
    return value if isinstance(value, str) and value else None


def _read(path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(read_file(path).decode())
    except OSError as exc:
        raise ConfigError(f"cannot read CRI-O config {path}: {exc.strerror}",
                          hint="run as root, or pass --image") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"CRI-O config {path} is not valid TOML ({exc})",
                          hint="fix it (crio config shows what CRI-O reads), or pass --image"
                          ) from None
