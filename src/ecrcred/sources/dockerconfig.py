"""The docker config source: credentials from ``config.json`` and ``.dockercfg`` files on the node.

Nodes often carry a ``docker login`` file that the kubelet's own keyring used to read, and that
goes wrong in two ways operators keep meeting: the kubelet searches a fixed list of
places, the first file that parses wins even when it has nothing for the image, and under systemd
without ``User=`` there is no HOME, so ``/root/.docker/config.json`` is silently never seen. This
module reproduces that search exactly (so that moving to ecrcred changes nothing that worked) but
makes it visible: every lookup records each place tried and why it did not answer, and a skipped
HOME says so. Inside the chosen file it follows the docker CLI (``credHelpers``, then
``credsStore``, then ``auths``), and it matches ``auths`` keys as the kubelet does: keys normalized
as the keyring's ``Add``, tried in reverse lexicographic order, globbed against the image.

Files are read at every lookup: each kubelet exec is a fresh process, and a long-running watcher
must see an edited file. Nothing read here is ever copied into the token cache.
"""

from __future__ import annotations

import json
import os

from ecrcred._record import Record
from ecrcred.errors import DockerConfigError
from ecrcred.files import Untrusted, read_named
from ecrcred.imageref import (
    DOCKER_HUB,
    glob_host_match,
    glob_match,
    normalize_auth_key,
    registry_host,
)
from ecrcred.log import quote_untrusted
from ecrcred.records import Lookup
from ecrcred.sources import DEFAULT_UNCACHED_DURATION
from ecrcred.sources.helper import helper_name_problem
from ecrcred.tokens import Token, split_basic_auth

MAX_DOCKER_CONFIG_BYTES = 1024 * 1024  # docker's own files are a few KB; more is not one

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ecrcred.config.rules import DockerConfigOptions
    from ecrcred.files import NamedFile
    from ecrcred.records import Pod
    from ecrcred.seams import Clock, CredentialSource, Logger

CONFIG_JSON = "config.json"
DOCKERCFG = ".dockercfg"
# The kubelet's keyring keeps Docker Hub credentials under this host (docker login writes
# "https://index.docker.io/v1/"), while the images it sends us say docker.io.
DOCKER_HUB_INDEX = "index.docker.io"
HOME_UNSET = (
    "skipped: HOME is not set; a systemd service gets no HOME unless the unit sets User= or "
    "Environment=HOME="
)
_CONFIG_JSON_KEYS = ("auths", "credHelpers", "credsStore")
_FIX_HINT = (
    "fix or remove the file (docker login writes a valid one), or list the files to read in the "
    "dockerConfig source's paths"
)


class Tried(Record):
    """One place the search looked at, and what it found there (never a secret)."""

    path: str
    outcome: str  # "used", "missing", "no entry for <host>", "invalid: <reason>", "skipped: ..."


class DockerConfig(Record):
    """The credentials part of one docker config file, keys normalized as the kubelet's keyring."""

    path: str
    auths: dict[str, tuple[str, str]]  # normalized key -> (username, password), with credentials
    cred_helpers: dict[str, str]  # normalized registry host -> helper name
    creds_store: str | None

    def __repr__(self) -> str:  # never let a password reach a log through repr()
        auths = ", ".join(f"{key!r}: <redacted>" for key in self.auths)
        return (
            f"DockerConfig(path={self.path!r}, auths={{{auths}}}, "
            f"cred_helpers={self.cred_helpers!r}, creds_store={self.creds_store!r})"
        )


class _Unusable(DockerConfigError):
    """A file that exists but cannot be used; ``reason`` is the message without the path."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"docker config file {path} {reason}", hint=_FIX_HINT)
        self.reason = reason


def _candidates(root_dir: str, cwd: str, home: str | None) -> list[tuple[str, str | None]]:
    """The kubelet's search order as (path, reason it is skipped or None)."""
    out: list[tuple[str, str | None]] = []
    for name, home_dir, fs_root_dir in ((CONFIG_JSON, ".docker", "/.docker"), (DOCKERCFG, "", "/")):
        out.append((_absolute(cwd, os.path.join(root_dir, name)), None))
        out.append((_absolute(cwd, name), None))
        if home:
            out.append((_absolute(cwd, os.path.join(home, home_dir, name)), None))
        else:
            # The kubelet would join "" and read a path relative to its working directory; that
            # is never the root user's docker login, so say so instead of pretending to look.
            out.append((os.path.join("$HOME", home_dir, name), HOME_UNSET))
        out.append((os.path.join(fs_root_dir, name), None))
    seen: set[str] = set()
    unique = []
    for path, skipped in out:
        if path not in seen:  # root dir, cwd and HOME are often the same directory
            seen.add(path)
            unique.append((path, skipped))
    return unique


def _absolute(cwd: str, path: str) -> str:
    # As the kubelet's filepath.Abs, but against the working directory we were given.
    return os.path.normpath(os.path.join(cwd, path))


def search_paths(root_dir: str, cwd: str, home: str | None) -> list[str]:
    """The files the kubelet would read, in its order: every ``config.json`` place (root dir,
    working dir, ``$HOME/.docker``, ``/.docker``), then every ``.dockercfg`` place (root dir,
    working dir, ``$HOME``, ``/``). The HOME places are left out when HOME is unset or empty."""
    return [path for path, skipped in _candidates(root_dir, cwd, home) if skipped is None]


def read_docker_config(path: str, *, log: Logger | None = None) -> DockerConfig | None:
    """Read one docker config file: None when it does not exist, DockerConfigError when it exists
    but cannot be used. The format is told by content: an object with ``auths``, ``credHelpers``
    or ``credsStore`` is a ``config.json``, anything else the legacy ``.dockercfg`` bare map.
    With ``log``, warns when a file holding passwords is open to group or others."""
    try:
        named = read_named(path, MAX_DOCKER_CONFIG_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except Untrusted:  # a FIFO would block the plugin until the kubelet kills it
        raise _Unusable(path, "is not a regular file") from None
    except OSError as exc:
        raise _Unusable(path, f"cannot be read: {exc.strerror}") from None
    found = named.found
    if len(found.data) > MAX_DOCKER_CONFIG_BYTES:
        raise _Unusable(path, f"is larger than {MAX_DOCKER_CONFIG_BYTES} bytes")
    try:
        data = json.loads(found.data)
    except json.JSONDecodeError as exc:  # the message has a position, never the content
        raise _Unusable(path, f"is not valid JSON ({exc.msg} at line {exc.lineno} column "
                              f"{exc.colno})") from None
    except UnicodeDecodeError:
        raise _Unusable(path, "is not UTF-8 text") from None
    except RecursionError:  # json's C parser recurses per nesting level
        raise _Unusable(path, "is nested too deeply to be a docker config") from None
    except ValueError:  # a number too long to convert, say
        raise _Unusable(path, "holds a value that is not valid in a docker config") from None
    config = _parse(path, data)
    if log is not None:
        _warn_about_mode(path, named, config, log)
    return config


def _warn_about_mode(path: str, named: NamedFile, config: DockerConfig, log: Logger) -> None:
    """A docker config names the helper programs root will run and holds passwords: say so when
    another user could have written it, or may read it."""
    found = named.found
    if config.auths and not found.private:
        log.warning(
            f"docker config file {path} is readable or writable by group or others (mode "
            f"{found.mode:04o}) and holds registry passwords; run chmod 600 {path}"
        )
    why = named.stranger
    if why and (config.cred_helpers or config.creds_store or config.auths):
        log.warning(f"docker config file {path} could have been written by another user "
                    f"({why}); it chooses the credentials and helper programs root uses: make "
                    f"it and its directories root's, with no write for group or others")


def _parse(path: str, data: object) -> DockerConfig:
    if not isinstance(data, dict):
        raise _Unusable(path, "is not a JSON object")
    if any(key in data for key in _CONFIG_JSON_KEYS):
        entries = data.get("auths")
        if entries is None:
            entries = {}
        if not isinstance(entries, dict):
            raise _Unusable(path, 'has an "auths" that is not an object')
        return DockerConfig(
            path=path,
            auths=_auths(path, entries),
            cred_helpers=_cred_helpers(path, data.get("credHelpers")),
            creds_store=_creds_store(path, data.get("credsStore")),
        )
    return DockerConfig(path=path, auths=_auths(path, data), cred_helpers={}, creds_store=None)


def _auths(path: str, entries: dict[str, object]) -> dict[str, tuple[str, str]]:
    auths: dict[str, tuple[str, str]] = {}
    for key, entry in entries.items():
        credentials = _entry(path, key, entry)
        # The kubelet keeps every entry of a key and tries them in file order; the first is
        # the one it would try first.
        if credentials is not None:
            auths.setdefault(normalize_auth_key(key), credentials)
    return auths


def _entry(path: str, key: str, entry: object) -> tuple[str, str] | None:
    """(username, password) of one entry, None when it holds no credentials."""
    if entry is None:  # JSON null decodes to an empty entry in Go
        return None
    if not isinstance(entry, dict):
        raise _Unusable(path, f'has an entry "{key}" that is not an object')
    fields: dict[str, str] = {}
    for name in ("username", "password", "auth"):
        value = entry.get(name)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise _Unusable(path, f'has an entry "{key}" whose "{name}" is not a string')
        fields[name] = value
    username, password = fields["username"], fields["password"]
    if fields["auth"]:  # the kubelet's rule: a non-empty auth wins over username and password
        username, password = _decode_auth(path, key, fields["auth"])
    if not username and not password:
        return None  # docker writes such entries when a credsStore holds the secret
    return username, password


def _decode_auth(path: str, key: str, auth: str) -> tuple[str, str]:
    """Split base64 ``user:password`` at the first colon, as the kubelet's keyring does."""
    pair = split_basic_auth(auth)
    if pair is None:
        raise _Unusable(path, f'has an entry "{key}" whose "auth" is not base64 of '
                              "username:password")
    return pair


def _cred_helpers(path: str, value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _Unusable(path, 'has a "credHelpers" that is not an object of helper names')
    helpers = {}
    for host, name in value.items():
        if not name:  # docker reads an empty name as no helper for that registry
            continue
        _check_helper_name(path, f'"credHelpers" entry for "{quote_untrusted(host)}"', name)
        helpers[normalize_auth_key(host)] = name
    return helpers


def _creds_store(path: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Unusable(path, 'has a "credsStore" that is not a helper name')
    if not value:  # docker reads "" as no store
        return None
    _check_helper_name(path, '"credsStore"', value)
    return value


def _check_helper_name(path: str, field: str, name: str) -> None:
    # The name becomes docker-credential-<name>, run as root from PATH: a '/' would make it a
    # path to any program. Refused here, by the rule the config file's own helper names follow,
    # so that it is this file that is named as unusable, not an error deep in the helper source.
    problem = helper_name_problem(name)
    if problem is not None:
        raise _Unusable(path, f"has a {field} that is not a usable helper name ({problem})")


def is_default_registry(image: str) -> bool:
    """Whether ``image`` is pulled from Docker Hub, by the kubelet's ``isDefaultRegistryMatch``."""
    first, slash, _ = image.partition("/")
    if not first:
        return False
    if not slash or first in (DOCKER_HUB, DOCKER_HUB_INDEX):
        return True
    return "." not in first and ":" not in first


class _Answer(Record):
    """What the chosen file says for an image: a helper to ask, or an ``auths`` key."""

    via: str  # "credHelpers", "credsStore" or "auths"
    name: str  # the helper's name, or the matched auths key


def _answer(config: DockerConfig, image: str) -> _Answer | None:
    host = registry_host(image)
    hosts = [host]
    if is_default_registry(image):
        hosts += [DOCKER_HUB, DOCKER_HUB_INDEX]
    for candidate in hosts:
        helper = config.cred_helpers.get(candidate)
        if helper:
            return _Answer("credHelpers", helper)
    if config.creds_store:
        return _Answer("credsStore", config.creds_store)
    # Reverse order puts "quay.io/coreos" before "quay.io", as the kubelet sorts its index.
    for key in sorted(config.auths, reverse=True):
        if glob_match(key, image):
            return _Answer("auths", key)
    if is_default_registry(image) and DOCKER_HUB_INDEX in config.auths:
        return _Answer("auths", DOCKER_HUB_INDEX)
    return None


def _per_image(config: DockerConfig, key: str, image: str) -> bool:
    """Whether the answer must be keyed by image: the key has a path, or another key of a host
    that matches this image's has one (a registry-keyed answer would reach that path too)."""
    if "/" in key:
        return True
    hub = is_default_registry(image)
    for other in config.auths:
        other_host, slash, _ = other.partition("/")
        if slash and (glob_host_match(other, image)
                      or (hub and other_host in (DOCKER_HUB, DOCKER_HUB_INDEX))):
            return True
    return False


class DockerConfigSource:
    """Credentials from the node's docker config files, searched as the kubelet searches them."""

    name = "dockerConfig"

    def __init__(
        self,
        options: DockerConfigOptions,
        *,
        cwd: str,
        home: str | None,
        helpers: Callable[[str], CredentialSource],
        clock: Clock,
        log: Logger,
        cache_duration: int = DEFAULT_UNCACHED_DURATION,
    ) -> None:
        if options.paths is None:
            self._candidates = _candidates(options.kubelet_root_dir, cwd, home)
        else:
            self._candidates = [(_absolute(cwd, path), None) for path in options.paths]
        self._helpers = helpers
        self._clock = clock
        self._log = log
        self._cache_duration = cache_duration

    def explain(self, image: str) -> tuple[DockerConfig | None, list[Tried]]:
        """The file that answers for ``image`` (None: no usable file) and every place tried."""
        config, tried, _ = self._search(image)
        return config, tried

    def _search(self, image: str) -> tuple[DockerConfig | None, list[Tried], _Answer | None]:
        tried: list[Tried] = []
        for path, skipped in self._candidates:
            if skipped is not None:
                tried.append(Tried(path, skipped))
                continue
            try:
                config = read_docker_config(path, log=self._log)
            except _Unusable as exc:
                tried.append(Tried(path, f"invalid: {exc.reason}"))
                self._log.warning(f"{exc.message}; skipping it and searching on; {exc.hint}")
                continue
            if config is None:
                tried.append(Tried(path, "missing"))
                continue
            # The first file that parses is the file, as in the kubelet, even with no entry.
            answer = _answer(config, image)
            outcome = "used" if answer is not None else f"no entry for {registry_host(image)}"
            tried.append(Tried(path, outcome))
            return config, tried, answer
        return None, tried, None

    def lookup(self, image: str, pod: Pod | None) -> Lookup | None:
        config, tried, answer = self._search(image)
        places = ", ".join(f"{t.path} ({t.outcome})" for t in tried)
        if config is None:
            result = "no docker config file found"
        elif answer is None:
            result = "nothing found"
        elif answer.via == "auths":
            result = f"answering with key {answer.name}"
        else:
            result = f"asking credential helper {answer.name} ({answer.via})"
        self._log.debug(f"docker config for {image}: {places}; {result}")
        if config is None or answer is None:
            return None
        if answer.via != "auths":
            found = self._helpers(answer.name).lookup(image, pod)
            if found is None:
                self._log.debug(f"credential helper {answer.name} ({answer.via} of docker "
                                f"config {config.path}) has nothing for {quote_untrusted(image)}")
                return None
            return found._replace(
                describe=f"{found.describe} (via {answer.via} of docker config {config.path})"
            )
        return self._from_auths(config, answer.name, image)

    def _from_auths(self, config: DockerConfig, key: str, image: str) -> Lookup:
        username, password = config.auths[key]
        self._log.add_secret(password)
        clock = self._clock
        duration = self._cache_duration

        def fetch() -> Token:  # unlike fixed_lookup's, this token lives from when it is fetched
            now = clock.time()
            return Token(username, password, expires_at=now + duration, fetched_at=now)

        return Lookup(
            auth_key=registry_host(image),
            cache_key=None,  # the secret already lives in a file; never copy it into our cache
            fetch=fetch,
            describe=f"docker config {config.path} (key {key})",
            cache_duration=duration,
            per_image=_per_image(config, key, image),
        )
