"""The static source: a username with a password read from a file or a variable at every lookup."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from ecrcred.config.rules import StaticOptions
from ecrcred.errors import SecretFileError
from ecrcred.log import StderrLogger
from ecrcred.sources import DEFAULT_UNCACHED_DURATION
from ecrcred.sources.static import MAX_SECRET_BYTES, StaticSource
from tests.unit.fakes import T0, FakeClock, RecordingLogger

USER = "robot$ci-puller"
PASSWORD = "static-password-value-0001"
HOST = "harbor.example.com"
IMAGE = f"{HOST}/team/app"
VAR = "HARBOR_PASSWORD"


def write_secret(path: Path, content: bytes | str, mode: int = 0o600) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    os.chmod(path, mode)
    return path


def file_source(path: Path | str, *, clock: FakeClock | None = None,
                log: RecordingLogger | None = None, **kwargs: int) -> StaticSource:
    return StaticSource(StaticOptions(USER, str(path), None), env={},
                        clock=clock or FakeClock(), log=log or RecordingLogger(), **kwargs)


def env_source(env: dict[str, str], *, log: RecordingLogger | None = None) -> StaticSource:
    return StaticSource(StaticOptions(USER, None, VAR), env=env, clock=FakeClock(),
                        log=log or RecordingLogger())


def password_of(source: StaticSource, image: str = IMAGE) -> str:
    return source.lookup(image, None).fetch().password


# -- reading the password ---------------------------------------------------------------------

@pytest.mark.parametrize(("content", "password"), [
    pytest.param(PASSWORD, PASSWORD, id="no-newline"),
    pytest.param(f"{PASSWORD}\n", PASSWORD, id="lf"),
    pytest.param(f"{PASSWORD}\r\n", PASSWORD, id="crlf"),
    pytest.param(f"{PASSWORD}\n\n", f"{PASSWORD}\n", id="only-one-newline-stripped"),
    pytest.param(f"{PASSWORD}\r\n\r\n", f"{PASSWORD}\r\n", id="only-one-crlf-stripped"),
    pytest.param(f"  {PASSWORD}  \n", f"  {PASSWORD}  ", id="spaces-kept"),
    pytest.param("line-one\nline-two\n", "line-one\nline-two", id="inner-newline-kept"),
    pytest.param("pässwörd-ünïcode\n", "pässwörd-ünïcode", id="utf8"),
])
def test_password_file_loses_exactly_one_trailing_newline(tmp_path: Path, content: str,
                                                           password: str):
    path = write_secret(tmp_path / "password", content)
    assert password_of(file_source(path)) == password


def test_password_file_is_read_again_at_every_lookup(tmp_path: Path):
    path = write_secret(tmp_path / "password", "first-password-value\n")
    source = file_source(path)
    first = source.lookup(IMAGE, None)
    assert first.fetch().password == "first-password-value"

    # Rotated the way a Kubernetes secret volume does it: a new file renamed over the old one.
    write_secret(tmp_path / "new", "second-password-value\n")
    os.replace(tmp_path / "new", path)
    assert password_of(source) == "second-password-value"

    # And rewritten in place.
    write_secret(path, "third-password-value\n")
    assert password_of(source) == "third-password-value"
    assert first.fetch().password == "first-password-value", "a lookup keeps what it read"


def test_a_password_of_exactly_the_size_limit_is_accepted(tmp_path: Path):
    path = write_secret(tmp_path / "password", "p" * MAX_SECRET_BYTES)
    assert password_of(file_source(path)) == "p" * MAX_SECRET_BYTES


def test_password_from_an_environment_variable_is_used_verbatim():
    assert password_of(env_source({VAR: PASSWORD, "OTHER": "x"})) == PASSWORD


def test_password_from_the_environment_is_read_at_every_lookup():
    env = {VAR: "first-password-value"}
    source = env_source(env)
    assert password_of(source) == "first-password-value"
    env[VAR] = "second-password-value"
    assert password_of(source) == "second-password-value"


@pytest.mark.parametrize(("password_file", "password_env"), [
    pytest.param("/etc/ecrcred/password", VAR, id="both"),
    pytest.param(None, None, id="neither"),
])
def test_the_source_wants_exactly_one_place_for_the_password(password_file: str | None,
                                                             password_env: str | None):
    with pytest.raises(ValueError, match="exactly one"):
        StaticSource(StaticOptions(USER, password_file, password_env), env={},
                     clock=FakeClock(), log=RecordingLogger())


# -- failures ---------------------------------------------------------------------------------

def _missing(tmp_path: Path) -> Path:
    return tmp_path / "no-such-file"


def _dangling_symlink(tmp_path: Path) -> Path:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    return link


def _under_a_file(tmp_path: Path) -> Path:
    write_secret(tmp_path / "regular", PASSWORD)
    return tmp_path / "regular" / "password"


def _directory(tmp_path: Path) -> Path:
    (tmp_path / "password.d").mkdir()
    return tmp_path / "password.d"


def _empty(tmp_path: Path) -> Path:
    return write_secret(tmp_path / "password", "")


def _only_a_newline(tmp_path: Path) -> Path:
    return write_secret(tmp_path / "password", "\r\n")


def _oversized(tmp_path: Path) -> Path:
    body = (PASSWORD * (MAX_SECRET_BYTES // len(PASSWORD) + 2)).encode()
    assert len(body) > MAX_SECRET_BYTES
    return write_secret(tmp_path / "password", body)


@pytest.mark.parametrize(("make", "reason"), [
    pytest.param(_missing, "No such file or directory", id="missing"),
    pytest.param(_dangling_symlink, "No such file or directory", id="dangling-symlink"),
    pytest.param(_under_a_file, "Not a directory", id="parent-is-a-file"),
    pytest.param(_directory, "not a regular file", id="directory"),
    pytest.param(_empty, "is empty", id="empty"),
    pytest.param(_only_a_newline, "is empty", id="only-a-newline"),
    pytest.param(_oversized, "is too large", id="oversized"),
])
def test_an_unusable_password_file_raises_secret_file_error_naming_it(tmp_path: Path, make,
                                                                     reason: str):
    path = make(tmp_path)
    log = RecordingLogger()
    with pytest.raises(SecretFileError) as caught:
        file_source(path, log=log).lookup(IMAGE, None)
    error = caught.value
    assert error.code == "SECRET_UNREADABLE"
    assert str(path) in error.message
    assert USER in error.message
    assert reason in error.message
    assert error.hint
    assert PASSWORD not in error.one_line()
    assert log.secrets == [], "nothing was read that could be a password"
    assert all(PASSWORD not in message for _level, message in log.lines)


@pytest.mark.parametrize("env", [
    pytest.param({}, id="unset"),
    pytest.param({VAR: ""}, id="empty"),
    pytest.param({"harbor_password": PASSWORD}, id="other-case"),
])
def test_an_unset_or_empty_password_variable_raises_secret_file_error_naming_it(
        env: dict[str, str]):
    log = RecordingLogger()
    with pytest.raises(SecretFileError) as caught:
        env_source(env, log=log).lookup(IMAGE, None)
    error = caught.value
    assert error.code == "SECRET_UNREADABLE"
    assert VAR in error.message
    assert USER in error.message
    assert PASSWORD not in error.one_line()
    assert log.secrets == []


# -- file permissions -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o666, 0o610, 0o601])
def test_a_password_file_open_to_group_or_others_logs_a_warning_naming_file_and_mode(
        tmp_path: Path, mode: int):
    path = write_secret(tmp_path / "password", PASSWORD, mode=mode)
    log = RecordingLogger()
    assert password_of(file_source(path, log=log)) == PASSWORD, "the warning does not block"
    (warning,) = log.at("warning")
    assert str(path) in warning
    assert f"mode {mode:04o}" in warning
    assert f"chmod 0600 {path}" in warning
    assert PASSWORD not in warning


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_a_password_file_private_to_its_owner_logs_no_warning(tmp_path: Path, mode: int):
    path = write_secret(tmp_path / "password", PASSWORD, mode=mode)
    log = RecordingLogger()
    file_source(path, log=log).lookup(IMAGE, None)
    assert log.at("warning") == []


# -- the lookup -------------------------------------------------------------------------------

@pytest.mark.parametrize(("image", "host"), [
    (IMAGE, HOST),
    ("registry.local:5000/app", "registry.local:5000"),
    ("harbor.example.com/a/b/c", "harbor.example.com"),
    ("localhost/app", "localhost"),
])
def test_the_auth_key_is_the_image_host(tmp_path: Path, image: str, host: str):
    path = write_secret(tmp_path / "password", PASSWORD)
    lookup = file_source(path).lookup(image, None)
    assert lookup.auth_key == host
    assert host in lookup.describe


@pytest.mark.parametrize(("kwargs", "duration"), [
    pytest.param({}, DEFAULT_UNCACHED_DURATION, id="default"),
    pytest.param({"cache_duration": 45}, 45, id="configured"),
    pytest.param({"cache_duration": 0}, 0, id="zero"),
])
def test_the_lookup_is_never_cached_by_us_and_carries_the_configured_duration(
        tmp_path: Path, kwargs: dict[str, int], duration: int):
    path = write_secret(tmp_path / "password", PASSWORD)
    clock = FakeClock(now=T0)
    lookup = file_source(path, clock=clock, **kwargs).lookup(IMAGE, None)
    assert lookup.cache_key is None
    assert lookup.cache_duration == duration
    assert lookup.per_image is False
    token = lookup.fetch()
    assert (token.username, token.password) == (USER, PASSWORD)
    assert (token.fetched_at, token.expires_at) == (T0, T0 + duration)


def test_describe_names_the_user_and_the_file_but_never_the_password(tmp_path: Path):
    path = write_secret(tmp_path / "password", PASSWORD)
    lookup = file_source(path).lookup(IMAGE, None)
    assert USER in lookup.describe
    assert f"file {path}" in lookup.describe
    assert PASSWORD not in lookup.describe
    assert PASSWORD not in repr(lookup.fetch())


def test_describe_names_the_variable_but_never_the_password():
    lookup = env_source({VAR: PASSWORD}).lookup(IMAGE, None)
    assert USER in lookup.describe
    assert f"environment variable {VAR}" in lookup.describe
    assert PASSWORD not in lookup.describe


def test_the_password_from_a_file_is_registered_as_a_secret(tmp_path: Path):
    path = write_secret(tmp_path / "password", f"{PASSWORD}\n")
    log = RecordingLogger()
    file_source(path, log=log).lookup(IMAGE, None)
    assert log.secrets == [PASSWORD]


def test_the_password_from_the_environment_is_registered_as_a_secret():
    log = RecordingLogger()
    env_source({VAR: PASSWORD}, log=log).lookup(IMAGE, None)
    assert log.secrets == [PASSWORD]


def test_a_registered_password_is_scrubbed_from_every_later_log_line(tmp_path: Path):
    path = write_secret(tmp_path / "password", PASSWORD)
    stream = io.StringIO()
    log = StderrLogger(stream)
    source = StaticSource(StaticOptions(USER, str(path), None), env={},
                          clock=FakeClock(), log=log)
    source.lookup(IMAGE, None)
    log.warning(f"a careless line quoting {PASSWORD}")
    assert PASSWORD not in stream.getvalue()
    assert "<redacted>" in stream.getvalue()


def test_a_fifo_as_password_file_fails_at_once_instead_of_blocking(tmp_path):
    fifo = tmp_path / "password.fifo"
    os.mkfifo(fifo)
    source = StaticSource(StaticOptions("robot", str(fifo), None), env={},
                          clock=FakeClock(), log=RecordingLogger())
    with pytest.raises(SecretFileError, match="not a regular file"):
        source.lookup("registry.example.com/app", None)
