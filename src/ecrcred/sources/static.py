"""The static source: a fixed username with a password read from a file or an environment variable.

For registries without a token API (Harbor robot accounts, a registry behind htpasswd, Artifactory
tokens). The password is read at every lookup, never kept: each kubelet execution is a fresh
process, and a long-running ``pull-sandbox --watch`` must see a rotated secret as soon as the file
changes. It is never copied into the token cache either (``cache_key`` None): the file is already
where the secret lives, and the kubelet is told to keep the answer only for the rule's
``cacheDuration`` (5 minutes by default), so a rotation reaches the kubelet within that time.
"""

from __future__ import annotations

from ecrcred.errors import SecretFileError
from ecrcred.files import Untrusted, read_named
from ecrcred.imageref import registry_host
from ecrcred.sources import DEFAULT_UNCACHED_DURATION, fixed_lookup

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see _record.py)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ecrcred.config.rules import StaticOptions
    from ecrcred.records import Lookup, Pod
    from ecrcred.seams import Clock, Logger

MAX_SECRET_BYTES = 64 * 1024


class StaticSource:
    name = "static"

    def __init__(self, options: StaticOptions, *, env: Mapping[str, str], clock: Clock,
                 log: Logger, cache_duration: int = DEFAULT_UNCACHED_DURATION) -> None:
        if (options.password_file is None) == (options.password_env is None):
            raise ValueError("exactly one of password_file and password_env")
        self._username = options.username
        self._file = options.password_file
        self._env_name = options.password_env
        self._env = env
        self._clock = clock
        self._log = log
        self._duration = cache_duration

    @property
    def origin(self) -> str:
        return f"file {self._file}" if self._file else f"environment variable {self._env_name}"

    def lookup(self, image: str, pod: Pod | None) -> Lookup:
        password = self._read_password()
        self._log.add_secret(password)
        host = registry_host(image)
        return fixed_lookup(
            host, self._username, password,
            describe=f"static credentials for {host} (user {self._username}, password from "
            f"{self.origin})",
            duration=self._duration, clock=self._clock,
        )

    def _read_password(self) -> str:
        if self._env_name is not None:
            value = self._env.get(self._env_name, "")
            if not value:
                raise SecretFileError(
                    f"environment variable {self._env_name} (the password for user "
                    f"{self._username}) is not set or empty",
                    hint="set it in the provider's env in the kubelet's credential provider "
                    "config, or in the unit's Environment=")
            return value
        path = self._file
        assert path is not None  # noqa: S101 - the constructor guarantees one of the two
        try:
            named = read_named(path, MAX_SECRET_BYTES)
        except OSError as exc:
            what = exc.why if isinstance(exc, Untrusted) else exc.strerror
            raise SecretFileError(
                f"cannot read password file {path} for user {self._username}: {what}",
                hint="create it (mode 0600) or fix passwordFile in the ecrcred config") from None
        found = named.found
        raw = found.data
        stranger = named.stranger
        if not found.private:
            replaced = f"; it could have been replaced by another user ({stranger})" \
                if stranger else ""
            self._log.warning(
                f"password file {path} is accessible to other users (mode "
                f"{found.mode:04o}); run: chmod 0600 {path}{replaced}")
        elif stranger:
            self._log.warning(
                f"password file {path} could have been replaced by another user ({stranger}); "
                "make it and its directories root's, with no write for group or others")
        # One trailing newline is what `echo secret > file` leaves; it is not part of a password.
        password = raw.decode("utf-8", errors="replace").removesuffix("\n").removesuffix("\r")
        if not password or len(raw) > MAX_SECRET_BYTES:
            raise SecretFileError(f"password file {path} for user {self._username} is "
                                  f"{'empty' if not password else 'too large'}",
                                  hint="write the password alone into the file")
        return password

