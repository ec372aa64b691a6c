"""Finding the config file and loading it cheaply: validated once, then read in compiled form.

The kubelet execs us once per image, and validating YAML with pydantic costs several times a
whole cache-hit execution. So the validated file is compiled to plain JSON and kept in the state
directory (the token cache's), stamped with the file's device, inode, size, mtime and ctime and
our version; while the stamp holds, loading is one ``stat`` and one small JSON read. Any edit
(or a replaced file: a new inode) changes the stamp, and the next execution validates again, so a
broken edit is reported at once rather than hidden behind the old compiled copy.

Where the file is: ``--config``, else ``ECRCRED_CONFIG``, else ``/etc/ecrcred/config.yaml``. No
file at the default path means ECR-only defaults; a file named by flag or environment that does
not exist is an error (a typo must not silently drop every custom rule).
"""

from __future__ import annotations

import json
import os
import stat

from ecrcred import __version__
from ecrcred.cache import sha256_hex, write_atomic
from ecrcred.config import DEFAULT_CONFIG_PATH
from ecrcred.config.rules import defaults, from_compiled
from ecrcred.errors import ConfigError
from ecrcred.settings import pick

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from ecrcred.config.rules import Config
    from ecrcred.seams import Logger
    from ecrcred.settings import Setting

COMPILED_FORMAT = 1
MAX_CONFIG_BYTES = 1024 * 1024


def config_setting(flag_value: str | None, env: Mapping[str, str]) -> Setting:
    return pick("--config", flag_value, env, "ECRCRED_CONFIG", DEFAULT_CONFIG_PATH)


def load_config(setting: Setting, state_dir: str | None, log: Logger) -> Config:
    """The config named by ``setting``, through the compiled copy in ``state_dir`` when it is
    current (``state_dir`` None: validate every time)."""
    path = os.path.abspath(setting.value)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if setting.origin == "default":
            log.debug(f"no config file at {path}: ECR-only defaults")
            return defaults()
        raise ConfigError(f"config file {path} (from {setting.origin}) does not exist",
                          hint="create it, or point --config / ECRCRED_CONFIG at the right "
                          "file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}",
                          hint="check its permissions") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"config {path} is not a regular file", hint="point --config at a file")
    stamp = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    name = f"config-{sha256_hex(path.encode())[:16]}.json"
    if state_dir is not None:
        compiled = _read_compiled(os.path.join(state_dir, name), path, stamp)
        if compiled is not None:
            try:
                return from_compiled(compiled, path, setting.origin)
            except (KeyError, TypeError, ValueError):  # a layout from another build: redo it
                log.debug(f"compiled copy of {path} has another layout; validating again")
    compiled = _compile(path)
    if state_dir is not None:
        body = json.dumps({"format": COMPILED_FORMAT, "version": __version__, "path": path,
                           "stamp": stamp, "config": compiled}).encode()
        try:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
            write_atomic(state_dir, name, body)
        except OSError as exc:  # the token cache reports an unusable directory once; no more
            log.debug(f"cannot keep the compiled config in {state_dir}: {exc.strerror}")
    log.debug(f"validated config {path}")
    return from_compiled(compiled, path, setting.origin)


def _read_compiled(compiled_path: str, path: str, stamp: list[int]) -> Mapping[str, Any] | None:
    try:
        with open(compiled_path, "rb") as f:
            data = json.loads(f.read(MAX_CONFIG_BYTES))
    except (OSError, ValueError):
        return None
    if (not isinstance(data, dict) or data.get("format") != COMPILED_FORMAT
            or data.get("version") != __version__ or data.get("path") != path
            or data.get("stamp") != stamp or not isinstance(data.get("config"), dict)):
        return None
    config: Mapping[str, Any] = data["config"]
    return config


def _compile(path: str) -> dict[str, Any]:
    from ecrcred.config.schema import compile_text  # pydantic and yaml: only on a change

    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}",
                          hint="check its permissions") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config {path} is larger than {MAX_CONFIG_BYTES} bytes",
                          hint="this is not an ecrcred config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config {path} is not UTF-8 text", hint="save it as UTF-8") from None
    return compile_text(text, path)
