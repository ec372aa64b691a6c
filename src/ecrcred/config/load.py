"""Finding the config file and loading it cheaply: validated once, then read in compiled form.

The kubelet execs us once per image, and validating YAML with pydantic costs several times a
whole cache-hit execution. So the validated file is compiled to plain JSON and kept in the state
directory (the token cache's, opened and checked by ``files.StateDir``), bound to the SHA-256 of
the file's bytes and our version; while they match, loading is one bounded read of the file, a
digest and one small JSON read. Any edit changes the digest and the next execution validates
again, so a broken edit is reported at once rather than hidden behind the old compiled copy.
The binding is to content, not to ``stat`` facts (inode, size, times), because anyone can
``stat`` a file: a compiled copy someone else wrote could otherwise stand in for root's config
and name any file as a password file.

The config decides which files root reads and which programs it runs, so it must be root's (or
ours): a file, or a directory above it, that another user could write is refused, as OpenSSH
refuses such an ``authorized_keys``.

Where the file is: ``--config``, else ``ECRCRED_CONFIG``, else ``/etc/ecrcred/config.yaml``. No
file at the default path means ECR-only defaults; a file named by flag or environment that does
not exist is an error (a typo must not silently drop every custom rule).
"""

from __future__ import annotations

import os

from ecrcred import __version__, jsonwire
from ecrcred.config import DEFAULT_CONFIG_PATH
from ecrcred.config.rules import defaults, from_compiled
from ecrcred.errors import ConfigError
from ecrcred.files import Untrusted, read_named, sha256_hex
from ecrcred.settings import pick

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from ecrcred.config.rules import Config
    from ecrcred.files import StateDir
    from ecrcred.seams import Logger
    from ecrcred.settings import Setting

COMPILED_FORMAT = 2  # 2: bound to the file's digest (1 was bound to stat facts)
MAX_CONFIG_BYTES = 1024 * 1024


def config_setting(flag_value: str | None, env: Mapping[str, str]) -> Setting:
    return pick("--config", flag_value, env, "ECRCRED_CONFIG", DEFAULT_CONFIG_PATH)


def load_config(setting: Setting, state: StateDir | None, log: Logger) -> Config:
    """The config named by ``setting``, through the compiled copy in ``state`` when it was made
    from these very bytes (``state`` None: validate every time)."""
    path = os.path.abspath(setting.value)
    raw = _read(path, setting)
    if raw is None:
        log.debug(f"no config file at {path}: ECR-only defaults")
        return defaults()
    digest = sha256_hex(raw)
    name = f"config-{sha256_hex(path.encode())[:16]}.json"
    if state is not None:
        compiled = _read_compiled(state, name, path, digest)
        if compiled is not None:
            try:
                return from_compiled(compiled, path, setting.origin)
            except (KeyError, TypeError, ValueError):  # a layout from another build: redo it
                log.debug(f"compiled copy of {path} has another layout; validating again")
    compiled = _compile(path, raw)
    if state is not None:
        body = jsonwire.dumps({"format": COMPILED_FORMAT, "version": __version__,
                               "path": path, "sha256": digest, "config": compiled}).encode()
        try:
            state.write_atomic(name, body)
        except OSError as exc:  # the token cache reports an unusable directory once; no more
            log.debug(f"cannot keep the compiled config in {state.path}: {exc.strerror}")
    log.debug(f"validated config {path}")
    return from_compiled(compiled, path, setting.origin)


def _read(path: str, setting: Setting) -> bytes | None:
    """The config file's bytes (None: no file at the default path), refused when it is not a
    regular file, too large, or could have been written by a user other than root and us."""
    try:
        named = read_named(path, MAX_CONFIG_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        if setting.origin == "default":
            return None
        raise ConfigError(f"config file {path} (from {setting.origin}) does not exist",
                          hint="create it, or point --config / ECRCRED_CONFIG at the right "
                          "file") from None
    except Untrusted:
        raise ConfigError(f"config {path} is not a regular file",
                          hint="point --config at a file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}",
                          hint="check its permissions") from None
    found = named.found
    if len(found.data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config {path} is larger than {MAX_CONFIG_BYTES} bytes",
                          hint="this is not an ecrcred config file")
    if named.stranger:
        raise ConfigError(
            f"config {path} is not used: {named.stranger}, so another user could choose the "
            "files and programs ecrcred reads and runs as root",
            hint="make the file, every directory above it and any symlink on the way root's, "
            "with no write for group or others (chown root:, chmod go-w)")
    return found.data


def _read_compiled(state: StateDir, name: str, path: str,
                   digest: str) -> Mapping[str, Any] | None:
    try:
        data = jsonwire.loads(state.read(name, MAX_CONFIG_BYTES).data)
    except (OSError, ValueError, RecursionError):
        return None
    if (not isinstance(data, dict) or data.get("format") != COMPILED_FORMAT
            or data.get("version") != __version__ or data.get("path") != path
            or data.get("sha256") != digest or not isinstance(data.get("config"), dict)):
        return None
    config: Mapping[str, Any] = data["config"]
    return config


def _compile(path: str, raw: bytes) -> dict[str, Any]:
    from ecrcred.config.schema import compile_text  # pydantic and yaml: only on a change

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config {path} is not UTF-8 text", hint="save it as UTF-8") from None
    return compile_text(text, path)
