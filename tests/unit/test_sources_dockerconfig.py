"""The docker config source: the kubelet's search order, file formats, key matching, helpers."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from ecrcred.config.rules import DockerConfigOptions
from ecrcred.errors import DockerConfigError
from ecrcred.records import Lookup, Pod
from ecrcred.sources import DEFAULT_UNCACHED_DURATION
from ecrcred.sources.dockerconfig import (
    HOME_UNSET,
    DockerConfig,
    DockerConfigSource,
    Tried,
    read_docker_config,
    search_paths,
)
from ecrcred.tokens import Token
from tests.unit.fakes import T0, FakeClock, RecordingLogger

# Fixed places the kubelet always searches; a machine that has them would answer for the tests.
FS_ROOT_FILES = ("/.docker/config.json", "/.dockercfg")
QUAY_PASSWORD = "quay-password-Zq81x"


@pytest.fixture(autouse=True)
def _no_docker_config_at_fs_root() -> None:
    present = [path for path in FS_ROOT_FILES if os.path.exists(path)]
    if present:
        pytest.fail(f"{present} exist on this machine and would take part in every search; "
                    "remove them to run these tests")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def login(username: str, password: str) -> dict[str, str]:
    """An auths entry as ``docker login`` writes it."""
    return {"auth": b64(f"{username}:{password}")}


def write(path: Path, content: object, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(json.dumps(content))
    path.chmod(mode)
    return path


class FakeHelper:
    """A credential helper source that answers every image with the same Lookup (or None)."""

    def __init__(self, name: str, answer: Lookup | None) -> None:
        self.name = name
        self.answer = answer
        self.asked: list[tuple[str, Pod | None]] = []

    def lookup(self, image: str, pod: Pod | None) -> Lookup | None:
        self.asked.append((image, pod))
        return self.answer


def helper_lookup(name: str) -> Lookup:
    def fetch() -> Token:
        return Token("helper-user", f"{name}-password", T0 + 60, T0)

    return Lookup(auth_key="quay.io", cache_key=None, fetch=fetch,
                  describe=f"credential helper {name}", per_image=False)


class Helpers:
    """The ``helpers`` factory: one FakeHelper per name, remembering the names asked for."""

    def __init__(self, nothing_from: tuple[str, ...] = ()) -> None:
        self._nothing_from = nothing_from
        self.made: dict[str, FakeHelper] = {}

    def __call__(self, name: str) -> FakeHelper:
        answer = None if name in self._nothing_from else helper_lookup(name)
        return self.made.setdefault(name, FakeHelper(name, answer))


class Node:
    """A kubelet's view of the file system under tmp_path: root dir, working dir and HOME."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.root = tmp_path / "var/lib/kubelet"
        self.cwd = tmp_path / "cwd"
        self.home = tmp_path / "root"
        for directory in (self.root, self.cwd, self.home):
            directory.mkdir(parents=True)
        self.clock = FakeClock()
        self.log = RecordingLogger()
        self.helpers = Helpers()

    def source(self, paths: list[str] | None = None, *, home: str | None = "<set>",
               cache_duration: int = DEFAULT_UNCACHED_DURATION) -> DockerConfigSource:
        return DockerConfigSource(
            DockerConfigOptions(None if paths is None else tuple(paths), str(self.root)),
            cwd=str(self.cwd),
            home=str(self.home) if home == "<set>" else home,
            helpers=self.helpers,
            clock=self.clock,
            log=self.log,
            cache_duration=cache_duration,
        )

    def lookup(self, image: str, paths: list[str] | None = None, *, home: str | None = "<set>",
               cache_duration: int = DEFAULT_UNCACHED_DURATION) -> Lookup | None:
        source = self.source(paths, home=home, cache_duration=cache_duration)
        return source.lookup(image, None)

    def username(self, image: str) -> str | None:
        found = self.lookup(image)
        return None if found is None else found.fetch().username


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def auths(**entries: dict[str, str]) -> dict[str, object]:
    return {"auths": dict(entries)}


# -- where the kubelet looks -------------------------------------------------------------------

def test_search_paths_follow_the_kubelet_order_with_home():
    assert search_paths("/var/lib/kubelet", "/srv", "/root") == [
        "/var/lib/kubelet/config.json",
        "/srv/config.json",
        "/root/.docker/config.json",
        "/.docker/config.json",
        "/var/lib/kubelet/.dockercfg",
        "/srv/.dockercfg",
        "/root/.dockercfg",
        "/.dockercfg",
    ]


@pytest.mark.parametrize("home", [None, ""], ids=["unset", "empty"])
def test_search_paths_leave_out_home_when_it_is_unset_or_empty(home: str | None):
    assert search_paths("/var/lib/kubelet", "/srv", home) == [
        "/var/lib/kubelet/config.json",
        "/srv/config.json",
        "/.docker/config.json",
        "/var/lib/kubelet/.dockercfg",
        "/srv/.dockercfg",
        "/.dockercfg",
    ]


def test_search_paths_resolve_a_relative_root_dir_against_cwd_and_list_each_file_once():
    assert search_paths("", "/", "/") == [
        "/config.json", "/.docker/config.json", "/.dockercfg",
    ]


def test_unset_home_is_recorded_as_skipped_where_the_kubelet_would_have_looked(node: Node):
    config, tried = node.source(home=None).explain("quay.io/app")

    assert config is None
    root, cwd = node.root, node.cwd
    assert tried == [
        Tried(f"{root}/config.json", "missing"),
        Tried(f"{cwd}/config.json", "missing"),
        Tried("$HOME/.docker/config.json", HOME_UNSET),
        Tried("/.docker/config.json", "missing"),
        Tried(f"{root}/.dockercfg", "missing"),
        Tried(f"{cwd}/.dockercfg", "missing"),
        Tried("$HOME/.dockercfg", HOME_UNSET),
        Tried("/.dockercfg", "missing"),
    ]
    assert "User=" in HOME_UNSET and "Environment=HOME=" in HOME_UNSET


def test_unset_home_never_reads_a_home_relative_path_under_the_working_directory(node: Node):
    # The kubelet joins "" and ends up reading <cwd>/.docker/config.json: the HOME trap.
    write(node.cwd / ".docker/config.json", auths(**{"quay.io": login("u", QUAY_PASSWORD)}))

    assert node.lookup("quay.io/app", home=None) is None


def test_home_config_json_is_found_when_home_is_set(node: Node):
    write(node.home / ".docker/config.json", auths(**{"quay.io": login("root", QUAY_PASSWORD)}))

    assert node.username("quay.io/app") == "root"


# -- first valid file wins ---------------------------------------------------------------------

def test_first_valid_file_wins_even_when_it_has_no_entry_for_the_image(node: Node):
    write(node.root / "config.json", auths(**{"quay.io": login("kubelet", "p1-password")}))
    write(node.home / ".docker/config.json", auths(**{"ghcr.io": login("home", "p2-password")}))

    config, tried = node.source().explain("ghcr.io/app")

    assert node.lookup("ghcr.io/app") is None
    assert config is not None
    assert config.path == f"{node.root}/config.json"
    assert tried == [Tried(f"{node.root}/config.json", "no entry for ghcr.io")]


def test_first_valid_file_answers_and_later_files_are_not_tried(node: Node):
    write(node.cwd / "config.json", auths(**{"quay.io": login("cwd", QUAY_PASSWORD)}))
    write(node.home / ".docker/config.json", auths(**{"quay.io": login("home", "p2-password")}))

    _, tried = node.source().explain("quay.io/app")

    assert node.username("quay.io/app") == "cwd"
    assert tried == [Tried(f"{node.root}/config.json", "missing"),
                     Tried(f"{node.cwd}/config.json", "used")]


def test_invalid_file_is_skipped_with_a_warning_naming_it_and_the_search_goes_on(node: Node):
    bad = write(node.root / "config.json", b"{not json")
    write(node.home / ".docker/config.json", auths(**{"quay.io": login("home", QUAY_PASSWORD)}))

    _, tried = node.source().explain("quay.io/app")

    assert node.username("quay.io/app") == "home"
    assert tried[0].path == str(bad)
    assert tried[0].outcome.startswith("invalid: is not valid JSON")
    assert tried[-1] == Tried(f"{node.home}/.docker/config.json", "used")
    warnings = node.log.at("warning")
    assert warnings and all(str(bad) in line for line in warnings)


@pytest.mark.parametrize(("where", "expected"), [
    pytest.param("home-config-json", "config-json",
                 id="any-config-json-beats-an-earlier-dockercfg"),
    pytest.param("none", "dockercfg", id="dockercfg-when-no-config-json-exists"),
    pytest.param("invalid", "dockercfg", id="dockercfg-when-every-config-json-is-invalid"),
])
def test_legacy_dockercfg_is_used_only_when_no_config_json_is_usable(
        node: Node, where: str, expected: str):
    write(node.root / ".dockercfg", {"quay.io": login("dockercfg", "legacy-password")})
    if where == "home-config-json":
        write(node.home / ".docker/config.json",
              auths(**{"quay.io": login("config-json", QUAY_PASSWORD)}))
    elif where == "invalid":
        write(node.home / ".docker/config.json", b"[]")

    assert node.username("quay.io/app") == expected


def test_explicit_paths_are_read_in_order_and_the_default_places_are_not(node: Node):
    write(node.root / "config.json", auths(**{"quay.io": login("kubelet", "p0-password")}))
    first = node.tmp / "etc/missing.json"
    second = write(node.tmp / "etc/second.json", {"quay.io": login("second", QUAY_PASSWORD)})
    third = write(node.tmp / "etc/third.json", auths(**{"quay.io": login("third", "p3-pass")}))

    source = node.source([str(first), str(second), str(third)])
    _, tried = source.explain("quay.io/app")

    assert tried == [Tried(str(first), "missing"), Tried(str(second), "used")]
    found = source.lookup("quay.io/app", None)
    assert found is not None
    assert found.fetch().username == "second"


def test_relative_explicit_paths_are_resolved_against_the_working_directory(node: Node):
    write(node.cwd / "creds/config.json", auths(**{"quay.io": login("rel", QUAY_PASSWORD)}))

    found = node.lookup("quay.io/app", paths=["creds/config.json"])

    assert found is not None
    assert found.describe == f"docker config {node.cwd}/creds/config.json (key quay.io)"


def test_files_are_read_again_at_every_lookup(node: Node):
    path = node.root / "config.json"
    write(path, auths(**{"quay.io": login("before", "before-password")}))
    source = node.source()
    first = source.lookup("quay.io/app", None)

    write(path, auths(**{"quay.io": login("after", "after-password")}))
    second = source.lookup("quay.io/app", None)

    assert first is not None and second is not None
    assert (first.fetch().username, second.fetch().username) == ("before", "after")


# -- reading one file --------------------------------------------------------------------------

def test_read_docker_config_returns_none_for_a_missing_file(tmp_path: Path):
    assert read_docker_config(str(tmp_path / "config.json")) is None
    write(tmp_path / "file", b"")
    assert read_docker_config(str(tmp_path / "file/config.json")) is None


@pytest.mark.parametrize(("content", "reason"), [
    pytest.param(b"{not json", "is not valid JSON", id="not-json"),
    pytest.param(b'{"a": "\x80"}', "is not UTF-8", id="not-utf8"),
    pytest.param([1, 2], "is not a JSON object", id="array"),
    pytest.param({"auths": []}, '"auths" that is not an object', id="auths-not-object"),
    pytest.param({"auths": {"r.io": "x"}}, 'entry "r.io" that is not an object',
                 id="entry-not-object"),
    pytest.param({"r.io": 5}, 'entry "r.io" that is not an object', id="legacy-entry-not-object"),
    pytest.param({"auths": {"r.io": {"auth": "%%%secret-not-b64"}}},
                 '"auth" is not base64 of username:password', id="auth-not-base64"),
    pytest.param({"auths": {"r.io": {"auth": b64("nocolon-secret")}}},
                 '"auth" is not base64 of username:password', id="auth-without-colon"),
    pytest.param({"auths": {"r.io": {"username": 5, "password": "x"}}},
                 '"username" is not a string', id="username-not-string"),
    pytest.param({"credHelpers": {"r.io": 1}}, '"credHelpers" that is not an object',
                 id="cred-helpers-not-names"),
    pytest.param({"credsStore": ["desktop"]}, '"credsStore" that is not a helper name',
                 id="creds-store-not-name"),
])
def test_read_docker_config_rejects_an_unusable_file_naming_it(
        tmp_path: Path, content: object, reason: str):
    path = write(tmp_path / "config.json", content)

    with pytest.raises(DockerConfigError) as caught:
        read_docker_config(str(path))

    assert str(path) in caught.value.message
    assert reason in caught.value.message
    assert "secret" not in caught.value.one_line()


def test_read_docker_config_rejects_a_directory(tmp_path: Path):
    (tmp_path / "config.json").mkdir()

    with pytest.raises(DockerConfigError, match="is not a regular file"):
        read_docker_config(str(tmp_path / "config.json"))


@pytest.mark.parametrize("name", ["config.json", ".dockercfg"])
@pytest.mark.parametrize("content", [
    pytest.param(auths(**{"quay.io": login("u", QUAY_PASSWORD)}), id="config-json-format"),
    pytest.param({"quay.io": login("u", QUAY_PASSWORD)}, id="dockercfg-format"),
])
def test_format_is_told_by_content_not_by_file_name(tmp_path: Path, name: str, content: object):
    config = read_docker_config(str(write(tmp_path / name, content)))

    assert config is not None
    assert config.auths == {"quay.io": ("u", QUAY_PASSWORD)}


@pytest.mark.parametrize(("entry", "expected"), [
    pytest.param({"username": "u1", "password": "p1", "auth": b64("u2:p2")}, ("u2", "p2"),
                 id="auth-wins"),
    pytest.param({"username": "u1", "password": "p1", "auth": ""}, ("u1", "p1"),
                 id="empty-auth-leaves-username-password"),
    pytest.param({"username": "u1", "password": "p1"}, ("u1", "p1"), id="no-auth"),
    pytest.param({"auth": b64("u:pa:ss")}, ("u", "pa:ss"), id="split-at-first-colon"),
    pytest.param({"auth": b64("u:p"), "email": "u@example.com"}, ("u", "p"), id="email-ignored"),
])
def test_auth_field_overrides_username_and_password(
        tmp_path: Path, entry: dict[str, str], expected: tuple[str, str]):
    config = read_docker_config(str(write(tmp_path / "config.json", auths(**{"r.io": entry}))))

    assert config is not None
    assert config.auths == {"r.io": expected}


@pytest.mark.parametrize(("key", "normalized"), [
    ("quay.io", "quay.io"),
    ("https://quay.io", "quay.io"),
    ("http://quay.io/", "quay.io"),
    ("https://index.docker.io/v1/", "index.docker.io"),
    ("registry.io/v2/", "registry.io"),
    ("https://registry.io/v2/team", "registry.io/team"),
    ("registry.io/v1/team/app", "registry.io/team/app"),
    ("registry.io/v1", "registry.io/v1"),
    ("registry.io:5000/team", "registry.io:5000/team"),
])
def test_keys_are_normalized_as_the_kubelet_keyring_adds_them(
        tmp_path: Path, key: str, normalized: str):
    content = auths(**{key: login("u", QUAY_PASSWORD)})
    config = read_docker_config(str(write(tmp_path / "config.json", content)))

    assert config is not None
    assert list(config.auths) == [normalized]


@pytest.mark.parametrize("entry", [
    pytest.param({}, id="empty"),
    pytest.param(None, id="null"),
    pytest.param({"email": "u@example.com"}, id="email-only"),
    pytest.param({"auth": ""}, id="empty-auth"),
    pytest.param({"username": "", "password": ""}, id="empty-username-password"),
])
def test_entries_without_credentials_are_ignored(node: Node, entry: object):
    # docker writes such entries for registries whose secret lives in a credsStore; they must
    # not shadow a less specific key that has credentials.
    write(node.root / "config.json",
          auths(**{"quay.io/team": entry, "quay.io": login("host", QUAY_PASSWORD)}))  # type: ignore[arg-type]

    config, _ = node.source().explain("quay.io/team/app")

    assert config is not None and list(config.auths) == ["quay.io"]
    assert node.username("quay.io/team/app") == "host"


def test_cred_helpers_and_creds_store_are_read(tmp_path: Path):
    content = {"credHelpers": {"https://123.dkr.ecr.us-east-1.amazonaws.com": "ecr-login"},
               "credsStore": "desktop"}
    config = read_docker_config(str(write(tmp_path / "config.json", content)))

    assert config == DockerConfig(
        path=str(tmp_path / "config.json"), auths={},
        cred_helpers={"123.dkr.ecr.us-east-1.amazonaws.com": "ecr-login"}, creds_store="desktop")


# -- matching auths keys against the image ------------------------------------------------------

@pytest.mark.parametrize("key", [
    "https://index.docker.io/v1/", "index.docker.io", "https://index.docker.io/v2/", "docker.io",
])
def test_docker_hub_keys_answer_docker_io_images(node: Node, key: str):
    write(node.root / "config.json", auths(**{key: login("hub", "hub-password")}))

    found = node.lookup("docker.io/library/busybox")

    assert found is not None
    assert found.auth_key == "docker.io"
    assert found.fetch().username == "hub"


def test_index_docker_io_key_does_not_answer_other_registries(node: Node):
    write(node.root / "config.json",
          auths(**{"https://index.docker.io/v1/": login("hub", "hub-password")}))

    assert node.lookup("quay.io/library/busybox") is None


@pytest.mark.parametrize(("image", "expected"), [
    ("quay.io/coreos/etcd", "etcd"),
    ("quay.io/coreos/flannel", "coreos"),
    ("quay.io/coreosx", "coreos"),  # a key's path is a plain string prefix, as in the kubelet
    ("quay.io/other/app", "host"),
])
def test_more_specific_keys_win_by_reverse_lexicographic_order(
        node: Node, image: str, expected: str):
    write(node.root / "config.json", auths(**{
        "quay.io": login("host", "host-password"),
        "https://quay.io/v2/coreos": login("coreos", "coreos-password"),
        "quay.io/coreos/etcd": login("etcd", "etcd-password"),
    }))

    assert node.username(image) == expected


@pytest.mark.parametrize(("image", "matched"), [
    ("a.example.com/app", True),
    ("a.b.example.com/app", False),
    ("example.com/app", False),
    ("a.example.org/app", False),
])
def test_glob_keys_match_one_host_part_per_star(node: Node, image: str, matched: bool):
    write(node.root / "config.json", auths(**{"*.example.com": login("glob", "glob-password")}))

    found = node.lookup(image)

    assert (found is not None) is matched
    if found is not None:
        assert found.auth_key == image.split("/", maxsplit=1)[0]


@pytest.mark.parametrize(("key", "image", "matched"), [
    ("registry.io:5000", "registry.io:5000/app", True),
    ("registry.io:5000", "registry.io/app", False),
    ("registry.io", "registry.io:5000/app", False),
    ("registry.io:5000", "registry.io:5001/app", False),
])
def test_port_must_match(node: Node, key: str, image: str, matched: bool):
    write(node.root / "config.json", auths(**{key: login("u", "port-password")}))

    assert (node.lookup(image) is not None) is matched


@pytest.mark.parametrize(("keys", "image", "per_image"), [
    pytest.param(["quay.io"], "quay.io/app", False, id="host-key-only"),
    pytest.param(["quay.io/coreos", "quay.io"], "quay.io/coreos/etcd", True,
                 id="matched-key-has-path"),
    pytest.param(["quay.io/coreos", "quay.io"], "quay.io/other", True,
                 id="sibling-path-key-for-same-host"),
    pytest.param(["ghcr.io/team", "quay.io"], "quay.io/app", False,
                 id="path-key-for-another-host"),
    pytest.param(["quay.io:5000/team", "quay.io"], "quay.io/app", False,
                 id="path-key-for-another-port"),
    pytest.param(["*.example.com/team", "*.example.com"], "a.example.com/app", True,
                 id="glob-path-key-for-matching-host"),
    pytest.param(["https://index.docker.io/v1/", "docker.io/myorg"],
                 "docker.io/library/busybox", True, id="docker-hub-path-key"),
])
def test_per_image_is_set_when_a_key_with_a_path_exists_for_the_host(
        node: Node, keys: list[str], image: str, per_image: bool):
    write(node.root / "config.json",
          auths(**{key: login("u", f"password-{n}") for n, key in enumerate(keys)}))

    found = node.lookup(image)

    assert found is not None
    assert found.per_image is per_image


def test_lookup_answers_for_the_registry_from_the_file_and_never_caches_it(node: Node):
    write(node.root / "config.json", auths(**{"https://quay.io/v2/coreos":
                                                 login("coreos", QUAY_PASSWORD)}))

    found = node.lookup("quay.io/coreos/etcd")

    assert found is not None
    assert found.auth_key == "quay.io"
    assert found.cache_key is None
    assert found.cache_duration == DEFAULT_UNCACHED_DURATION
    assert found.describe == f"docker config {node.root}/config.json (key quay.io/coreos)"


def test_fetch_gives_a_token_living_the_cache_duration_from_when_it_is_fetched(node: Node):
    write(node.root / "config.json", auths(**{"quay.io": login("u", QUAY_PASSWORD)}))
    found = node.lookup("quay.io/app", cache_duration=120)
    assert found is not None
    node.clock.advance(10)

    token = found.fetch()

    assert found.cache_duration == 120
    assert token == Token("u", QUAY_PASSWORD, expires_at=T0 + 130, fetched_at=T0 + 10)


def test_password_is_registered_with_the_logger_as_a_secret(node: Node):
    write(node.root / "config.json", auths(**{"quay.io": login("u", QUAY_PASSWORD)}))

    node.lookup("quay.io/app")

    assert node.log.secrets == [QUAY_PASSWORD]


# -- credHelpers, credsStore, auths ------------------------------------------------------------

@pytest.mark.parametrize(("content", "asked"), [
    pytest.param({"credHelpers": {"quay.io": "quay-helper"}, "credsStore": "desktop",
                  "auths": {"quay.io": login("file", QUAY_PASSWORD)}}, "quay-helper",
                 id="cred-helper-for-the-host-first"),
    pytest.param({"credHelpers": {"ghcr.io": "ghcr-helper"}, "credsStore": "desktop",
                  "auths": {"quay.io": login("file", QUAY_PASSWORD)}}, "desktop",
                 id="creds-store-before-auths"),
    pytest.param({"credHelpers": {"ghcr.io": "ghcr-helper"},
                  "auths": {"quay.io": login("file", QUAY_PASSWORD)}}, None,
                 id="auths-when-no-helper-applies"),
])
def test_cred_helpers_then_creds_store_then_auths(node: Node, content: object, asked: str | None):
    write(node.root / "config.json", content)

    found = node.lookup("quay.io/app")

    assert found is not None
    assert list(node.helpers.made) == ([asked] if asked else [])
    assert found.fetch().username == ("helper-user" if asked else "file")


def test_helper_answer_is_passed_through_with_the_file_named_and_the_pod_given(node: Node):
    path = write(node.root / "config.json", {"credHelpers": {"quay.io": "quay-helper"}})
    pod = Pod(token="sa-token-value", annotations={})

    found = node.source().lookup("quay.io/app", pod)

    assert found is not None
    assert node.helpers.made["quay-helper"].asked == [("quay.io/app", pod)]
    assert found.describe == (
        f"credential helper quay-helper (via credHelpers of docker config {path})")
    assert found.fetch().password == "quay-helper-password"


def test_a_helper_with_nothing_gives_nothing_without_falling_back_to_auths(node: Node):
    # As the docker CLI: once a helper is chosen for a registry, the auths entry is not used.
    node.helpers = Helpers(nothing_from=("desktop",))
    write(node.root / "config.json",
          {"credsStore": "desktop", "auths": {"quay.io": login("file", QUAY_PASSWORD)}})

    assert node.lookup("quay.io/app") is None
    assert "desktop" in node.helpers.made


@pytest.mark.parametrize("key", ["https://index.docker.io/v1/", "docker.io", "index.docker.io"])
def test_cred_helper_keyed_for_docker_hub_answers_docker_io_images(node: Node, key: str):
    write(node.root / "config.json", {"credHelpers": {key: "hub-helper"}})

    assert node.lookup("docker.io/library/busybox") is not None
    assert list(node.helpers.made) == ["hub-helper"]


# -- helper names ------------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "field", "problem"), [
    pytest.param({"credsStore": "../../bin/sh"}, '"credsStore"', "it contains '/'",
                 id="store-path"),
    pytest.param({"credsStore": "/usr/bin/evil"}, '"credsStore"', "it contains '/'",
                 id="store-absolute"),
    pytest.param({"credsStore": "desk\u0000top"}, '"credsStore"', "it contains '\\x00'",
                 id="store-nul"),
    pytest.param({"credsStore": "-rf"}, '"credsStore"', "it starts with '-'", id="store-dash"),
    pytest.param({"credsStore": ".."}, '"credsStore"', "it starts with '.'", id="store-dots"),
    pytest.param({"credsStore": "x" * 65}, '"credsStore"', "it is longer than 64 characters",
                 id="store-too-long"),
    pytest.param({"credHelpers": {"https://quay.io": "a/b"}},
                 '"credHelpers" entry for "https://quay.io"', "it contains '/'",
                 id="helpers-path"),
    pytest.param({"credHelpers": {"quay.io\u001b[2J": ".x"}},
                 '"credHelpers" entry for "quay.io\\x1b[2J"', "it starts with '.'",
                 id="helpers-key-escaped"),
])
def test_a_helper_name_that_is_not_a_plain_name_makes_the_file_unusable(
        tmp_path: Path, content: object, field: str, problem: str):
    path = write(tmp_path / "config.json", content)

    with pytest.raises(DockerConfigError) as caught:
        read_docker_config(str(path))

    assert caught.value.code == "DOCKER_CONFIG"
    assert caught.value.message == (
        f"docker config file {path} has a {field} that is not a usable helper name ({problem}"
        + ("; use only letters, digits, '.', '_' and '-')" if "contains" in problem else ")"))
    assert "\n" not in caught.value.one_line() and "\x1b" not in caught.value.one_line()


def test_a_file_with_a_bad_helper_name_is_skipped_and_the_search_goes_on(node: Node):
    bad = write(node.root / "config.json", {"credsStore": "../../tmp/evil"})
    write(node.home / ".docker/config.json", auths(**{"quay.io": login("u", QUAY_PASSWORD)}))

    assert node.username("quay.io/app") == "u"

    assert node.helpers.made == {}  # no helper source was made for the name
    [warning] = node.log.at("warning")
    assert warning.startswith(f'docker config file {bad} has a "credsStore" that is not a usable '
                              "helper name (it contains '/'")
    assert "skipping it and searching on" in warning


@pytest.mark.parametrize("content", [
    pytest.param({"credsStore": ""}, id="empty-store"),
    pytest.param({"credHelpers": {"quay.io": ""}}, id="empty-helper"),
])
def test_an_empty_helper_name_is_no_helper_as_in_docker(node: Node, content: dict[str, object]):
    write(node.root / "config.json", {**content, **auths(**{"quay.io": login("u", QUAY_PASSWORD)})})

    assert node.username("quay.io/app") == "u"
    assert node.helpers.made == {}
    assert node.log.at("warning") == []


# -- warnings, debug lines and secrets ---------------------------------------------------------

@pytest.mark.parametrize(("mode", "warned"), [
    (0o600, False), (0o400, False), (0o640, True), (0o644, True), (0o604, True), (0o620, True),
])
def test_group_or_other_accessible_file_is_warned_naming_the_file(
        node: Node, mode: int, warned: bool):
    path = write(node.root / "config.json", auths(**{"quay.io": login("u", QUAY_PASSWORD)}), mode)

    node.lookup("quay.io/app")

    warnings = [line for line in node.log.at("warning") if "group or others" in line]
    assert bool(warnings) is warned
    if warned:
        assert str(path) in warnings[0]
        assert f"{mode:04o}" in warnings[0] and "chmod 600" in warnings[0]


def test_a_file_without_passwords_is_not_warned_for_its_mode(node: Node):
    write(node.root / "config.json", {"credHelpers": {"quay.io": "quay-helper"}}, 0o644)

    node.lookup("quay.io/app")

    assert node.log.at("warning") == []


def test_debug_line_lists_every_place_tried_with_its_outcome(node: Node):
    write(node.home / ".docker/config.json", auths(**{"quay.io": login("u", QUAY_PASSWORD)}))

    node.lookup("quay.io/app")
    node.lookup("ghcr.io/app")

    root, cwd, home = node.root, node.cwd, node.home
    places = (f"{root}/config.json (missing), {cwd}/config.json (missing), "
              f"{home}/.docker/config.json")
    assert node.log.at("debug") == [
        f"docker config for quay.io/app: {places} (used); answering with key quay.io",
        f"docker config for ghcr.io/app: {places} (no entry for ghcr.io); nothing found",
    ]


def test_debug_line_shows_the_home_trap_when_no_file_is_found(node: Node):
    node.lookup("quay.io/app", home=None)

    [line] = node.log.at("debug")
    assert f"$HOME/.docker/config.json ({HOME_UNSET})" in line
    assert line.endswith("/.dockercfg (missing); no docker config file found")


def test_no_password_appears_in_logs_tried_describe_repr_or_errors(node: Node):
    secrets = [QUAY_PASSWORD, "legacy-Pw-77", "bad-Auth-Secret"]
    encoded = [b64(f"u:{s}") for s in secrets] + [b64(secrets[2])]
    write(node.root / "config.json",  # invalid: an auth without a colon hides a secret
          auths(**{"quay.io": {"auth": b64(secrets[2])}, "ghcr.io": login("u", secrets[0])}))
    write(node.cwd / "config.json",
          auths(**{"quay.io": {"username": "u", "password": secrets[0]},
                   "https://quay.io/v1/team": login("u", secrets[1])}), 0o644)
    source = node.source()
    texts: list[str] = []

    for image in ("quay.io/team/app", "quay.io/app", "ghcr.io/app"):
        config, tried = source.explain(image)
        texts += [repr(config), repr(tried), *(t.outcome for t in tried)]
        found = source.lookup(image, None)
        if found is not None:
            texts += [found.describe, repr(found.fetch())]
    with pytest.raises(DockerConfigError) as caught:
        read_docker_config(str(node.root / "config.json"))
    texts += [caught.value.one_line(), str(caught.value)]
    texts += [message for _, message in node.log.lines]

    assert len(node.log.at("warning")) >= 2  # the invalid file and the readable one
    for text in texts:
        for secret in secrets + encoded:
            assert secret not in text, f"{secret!r} leaked into {text!r}"
