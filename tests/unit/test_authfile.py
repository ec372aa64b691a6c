"""``write-auth-file``: the two formats and their keys, the file on disk (mode, owner, atomic
replacement, refused destinations), the refresh schedule with a fake clock, CRI-O's pause image,
and the command in-process."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
from pathlib import Path

import pytest

from ecrcred import authfile, cli, crio_config
from ecrcred.errors import ConfigError, CredentialError, NoSourceError, SourceError, UsageError
from ecrcred.files import Untrusted, write_private_file
from ecrcred.records import CacheKey, Lookup, Pod
from ecrcred.tokens import Token
from tests.unit.fakes import T0, CountingFetch, DictCache, FakeClock, FakeSource, RecordingLogger

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
IMAGE = f"{ECR}/eks/pause"
HOUR = 3600.0


def token(password: str = "ecr-token-password-1", fetched: float = T0,  # noqa: S107
          life: float = 12 * HOUR) -> Token:
    return Token("AWS", password, fetched + life, fetched)


def decoded(body: bytes) -> dict[str, tuple[str, str]]:
    out = {}
    for key, entry in json.loads(body)["auths"].items():
        assert set(entry) == {"auth"}
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        out[key] = (user, password)
    return out


class PathSource:
    """A source whose answers hold only for their image's path (``per_image``), as a path rule's."""

    name = "path"

    def lookup(self, image: str, pod: Pod | None = None) -> Lookup | None:
        return Lookup(image.split("/", 1)[0], CacheKey(f"path:{image}", "id"),
                      lambda: token("path-password-1"), f"path rule for {image}", per_image=True)


def collect(images, fmt=authfile.CONTAINERS_AUTH, source=None, clock=None):
    source = source or FakeSource({ECR, "docker.io"}, CountingFetch(token(), token()))
    return authfile.collect(images, fmt, source, DictCache(), clock or FakeClock(),
                            RecordingLogger())


# -- formats and keys ---------------------------------------------------------------------------

def test_containers_auth_holds_the_registry_host_and_base64_user_colon_password():
    entries = collect([IMAGE, f"{ECR}/app"])
    body = authfile.render(entries)
    assert decoded(body) == {ECR: ("AWS", "ecr-token-password-1")}
    assert body.endswith(b"\n")


def test_docker_hub_is_docker_io_for_containers_auth_and_the_index_url_for_docker_config():
    hub = authfile.image_name("pause:3.9")
    assert hub == "docker.io/library/pause"
    assert [e.key for e in collect([hub])] == ["docker.io"]
    assert [e.key for e in collect([hub], authfile.DOCKER_CONFIG)] == [
        "https://index.docker.io/v1/"]


def test_an_answer_for_a_path_only_is_written_under_that_path():
    entries = collect([f"{ECR}/team/app"], source=PathSource())
    assert [e.key for e in entries] == [f"{ECR}/team/app"]


def test_an_image_no_source_knows_is_an_error_naming_it():
    with pytest.raises(NoSourceError, match=r"quay\.io/app"):
        collect(["quay.io/app"])


def test_a_bad_reference_is_a_usage_error():
    with pytest.raises(UsageError, match="not an image reference"):
        authfile.image_name("Not An/Image")


def test_two_images_with_different_credentials_under_one_key_are_refused():
    class Two:
        name = "two"

        def lookup(self, image, pod=None):
            password = f"password-for-{image.rsplit('/', 1)[1]}"
            return Lookup(ECR, None, lambda: token(password), "two")

    with pytest.raises(CredentialError, match="different credentials"):
        collect([f"{ECR}/a", f"{ECR}/b"], source=Two())


def test_an_entry_never_shows_its_password_in_repr():
    (entry,) = collect([IMAGE])
    assert "ecr-token-password-1" not in repr(entry)


# -- the file on disk ---------------------------------------------------------------------------

def test_the_file_is_0600_ours_and_its_missing_directory_0700(tmp_path: Path):
    path = tmp_path / "etc" / "crio" / "auth.json"
    write_private_file(str(path), b'{"auths": {}}\n')
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes() == b'{"auths": {}}\n'


def test_the_file_is_replaced_whole_and_no_temp_file_is_left(tmp_path: Path):
    path = tmp_path / "auth.json"
    path.write_bytes(b"old")
    path.chmod(0o644)
    with path.open("rb") as reader:  # a reader that opened the old file keeps it whole
        write_private_file(str(path), b"new")
        assert reader.read() == b"old"
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["auth.json"]


def test_a_symlink_at_the_destination_is_refused_and_its_target_untouched(tmp_path: Path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"target")
    link = tmp_path / "auth.json"
    link.symlink_to(target)
    with pytest.raises(Untrusted, match="a symlink"):
        write_private_file(str(link), b"secret")
    assert target.read_bytes() == b"target"
    assert link.is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["auth.json", "elsewhere"]


def test_a_directory_at_the_destination_is_refused(tmp_path: Path):
    (tmp_path / "auth.json").mkdir()
    with pytest.raises(Untrusted, match="not a regular file"):
        write_private_file(str(tmp_path / "auth.json"), b"secret")


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777])
def test_a_directory_others_can_write_to_is_refused(tmp_path: Path, mode: int):
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(mode)
    with pytest.raises(Untrusted, match="writable by"):
        write_private_file(str(directory / "auth.json"), b"secret")
    assert os.listdir(directory) == []


def test_a_directory_another_user_owns_is_refused(tmp_path: Path):
    # As tests/hostile does: the tests run as root (./scripts/test), which can give one away.
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    with pytest.raises(Untrusted, match="owned by uid 65534"):
        write_private_file(str(directory / "auth.json"), b"secret")
    assert os.listdir(directory) == []


def test_a_symlinked_directory_is_refused(tmp_path: Path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(Untrusted, match="symlink"):
        write_private_file(str(tmp_path / "link" / "auth.json"), b"secret")
    assert os.listdir(real) == []


# -- the refresh schedule -----------------------------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.files: list[bytes] = []

    def __call__(self, path: str, body: bytes) -> None:
        self.files.append(body)


def keeper(fetch, clock, write=None, images=(IMAGE,)):
    written: list[authfile.Written] = []
    k = authfile.AuthFileKeeper("/etc/crio/ecrcred-auth.json", list(images),
                                authfile.CONTAINERS_AUTH, FakeSource({ECR}, fetch), DictCache(),
                                clock, RecordingLogger(), write or Recorder(), written.append)
    return k, written


def stop_after(passes: int, recorder: Recorder):
    return lambda: len(recorder.files) >= passes


def test_a_watch_rewrites_an_hour_before_each_token_expires_with_a_new_token():
    clock = FakeClock()
    fetch = CountingFetch(*(token(f"password-{n}", T0 + n * 11 * HOUR) for n in range(3)))
    recorder = Recorder()
    k, written = keeper(fetch, clock, recorder)
    k.watch(stop_after(3, recorder), interval=86400)
    assert clock.sleeps == [11 * HOUR, 11 * HOUR]
    assert fetch.calls == 3
    assert [decoded(f)[ECR][1] for f in recorder.files] == ["password-0", "password-1",
                                                           "password-2"]
    assert [w.refresh_at for w in written] == [T0 + 11 * HOUR * n for n in (1, 2, 3)]


def test_a_short_token_is_rewritten_at_half_its_life_and_the_interval_caps_a_long_wait():
    clock = FakeClock()
    fetch = CountingFetch(token("short-lived-1", T0, life=HOUR), token("short-lived-2",
                                                                       T0 + HOUR / 2))
    recorder = Recorder()
    k, _ = keeper(fetch, clock, recorder)
    k.watch(stop_after(2, recorder), interval=86400)
    assert clock.sleeps == [HOUR / 2]

    clock, recorder = FakeClock(), Recorder()
    k, _ = keeper(CountingFetch(token(), token()), clock, recorder)
    k.watch(stop_after(2, recorder), interval=600)
    assert clock.sleeps == [600]


def test_a_token_already_due_is_not_rewritten_in_a_loop():
    assert authfile.refresh_delay([authfile.Entry("k", "u", "p", T0 - 10, "d")], T0,
                                  3600) == authfile.MIN_DELAY


def test_a_failed_pass_writes_nothing_and_is_retried_with_a_doubling_delay():
    clock = FakeClock()
    failure = SourceError("the token API failed", hint="wait")
    fetch = CountingFetch(failure, failure, failure, token("the-password", T0 + 35))
    recorder = Recorder()
    k, _ = keeper(fetch, clock, recorder)
    k.watch(stop_after(1, recorder), interval=86400)
    assert clock.sleeps == [5, 10, 20]
    assert [decoded(f)[ECR][1] for f in recorder.files] == ["the-password"]
    warnings = k._log.at("warning")  # type: ignore[attr-defined]
    assert len(warnings) == 3 and "retrying in 5s" in warnings[0]


def test_when_the_api_fails_at_refresh_the_valid_token_is_kept_and_asked_again_soon():
    clock = FakeClock()
    failure = SourceError("the token API failed", hint="wait")
    fetch = CountingFetch(token("first-password", T0), failure,
                          token("second-password", T0 + 11 * HOUR + 30))
    recorder = Recorder()
    k, _ = keeper(fetch, clock, recorder)
    k.watch(stop_after(3, recorder), interval=86400)
    # The cache serves the token, still good for an hour, as a last resort (fetch.get_or_fetch).
    assert clock.sleeps == [11 * HOUR, authfile.MIN_DELAY]
    assert [decoded(f)[ECR][1] for f in recorder.files] == ["first-password", "first-password",
                                                           "second-password"]


def test_a_refused_destination_ends_the_watch():
    from ecrcred.errors import UnsafeAuthFile

    def refuse(path: str, body: bytes) -> None:
        raise UnsafeAuthFile("refusing", hint="fix it")

    k, _ = keeper(CountingFetch(token()), FakeClock(), refuse)
    with pytest.raises(UnsafeAuthFile):
        k.watch(lambda: False, interval=3600)


# -- CRI-O's pause image ------------------------------------------------------------------------

def test_crio_pause_image_comes_from_the_last_drop_in_that_sets_it(tmp_path: Path):
    conf = tmp_path / "crio.conf"
    conf.write_text('[crio.image]\npause_image = "registry.k8s.io/pause:3.9"\n')
    dropins = tmp_path / "crio.conf.d"
    dropins.mkdir()
    (dropins / "10-ecr.conf").write_text(f'[crio.image]\npause_image = "{ECR}/eks/pause:3.9"\n')
    (dropins / "20-other.conf").write_text('[crio.runtime]\nlog_level = "info"\n')
    found = crio_config.pause_image(str(conf))
    assert (found.value, found.file) == (f"{ECR}/eks/pause:3.9", str(dropins / "10-ecr.conf"))


def test_crio_without_a_pause_image_asks_for_image(tmp_path: Path):
    with pytest.raises(ConfigError, match="no pause_image") as refused:
        crio_config.pause_image(str(tmp_path / "crio.conf"))
    assert "pass --image" in refused.value.one_line()


# -- the command, in-process -------------------------------------------------------------------

PASSWORD = "static-password-6d2e"


def run(tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    config = tmp_path / "config.yaml"
    config.write_text('apiVersion: ecrcred.io/v1alpha1\nkind: EcrcredConfig\nregistries:\n'
                      '  - match: ["static.example"]\n'
                      '    static: {username: robot, passwordEnv: AUTH_FILE_PASSWORD}\n')
    out, err = io.BytesIO(), io.BytesIO()
    text_err = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
    code = cli.main(["write-auth-file", "--no-cache", "--config", str(config), *argv],
                    {"PATH": "/usr/bin:/bin", "AUTH_FILE_PASSWORD": PASSWORD},
                    stdin=io.BytesIO(b""), stdout=out, stderr=text_err)
    text_err.detach()
    return code, out.getvalue().decode(), err.getvalue().decode()


def test_the_command_writes_the_file_and_reports_without_the_secret(tmp_path: Path):
    path = tmp_path / "out" / "auth.json"
    code, out, err = run(tmp_path, "--image", "static.example/app:1", "--file", str(path))
    assert (code, err) == (0, "")
    assert decoded(path.read_bytes()) == {"static.example": ("robot", PASSWORD)}
    assert out.startswith(f"wrote: {path}: static.example (")
    assert PASSWORD not in out


def test_the_command_refuses_a_symlink_in_one_line_with_exit_73(tmp_path: Path):
    (tmp_path / "auth.json").symlink_to(tmp_path / "elsewhere")
    code, out, err = run(tmp_path, "--image", "static.example/app", "--file",
                         str(tmp_path / "auth.json"))
    assert code == 73
    assert out == ""
    assert err.count("\n") == 1 and "is a symlink" in err and "[AUTH_FILE_UNSAFE]" in err
    assert PASSWORD not in err
    assert not (tmp_path / "elsewhere").exists()


def test_docker_config_without_an_image_is_a_usage_error(tmp_path: Path):
    code, _, err = run(tmp_path, "--format", "docker-config", "--file",
                       str(tmp_path / "config.json"))
    assert code == 2 and "needs --image" in err and "Traceback" not in err


def test_the_command_defaults_to_the_pause_image_of_crio_conf(tmp_path: Path):
    conf = tmp_path / "crio.conf"
    conf.write_text('[crio.image]\npause_image = "static.example/pause:3.9"\n'
                    'pause_image_auth_file = "/etc/crio/ecrcred-auth.json"\n')
    path = tmp_path / "crio" / "ecrcred-auth.json"
    code, _, err = run(tmp_path, "--crio-config", str(conf), "--file", str(path))
    assert (code, err) == (0, "")
    assert decoded(path.read_bytes()) == {"static.example": ("robot", PASSWORD)}


def test_an_invalid_pause_image_in_crio_conf_is_a_config_error_naming_the_file(tmp_path: Path):
    conf = tmp_path / "crio.conf"
    conf.write_text('[crio.image]\npause_image = "Not An Image"\n')
    code, _, err = run(tmp_path, "--crio-config", str(conf), "--file", str(tmp_path / "a.json"))
    assert code == 4 and f"{conf}: pause_image" in err and "[BAD_CONFIG]" in err


@pytest.mark.parametrize("flag", ["--interval", "--timeout"])
@pytest.mark.parametrize("value", ["0", "nan", "inf", "86401"])
def test_times_outside_1_to_86400_seconds_are_usage_errors(tmp_path: Path, flag: str,
                                                           value: str):
    code, _, err = run(tmp_path, "--image", "static.example/app", "--file",
                       str(tmp_path / "a.json"), flag, value)
    assert code == 2 and "[USAGE]" in err
    assert not (tmp_path / "a.json").exists()
