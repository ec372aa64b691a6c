"""The config file: its schema and error messages, loading through the compiled copy in the state
directory, and the precedence that picks the rule for an image."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecrcred import __version__
from ecrcred.config import API_VERSION, DEFAULT_ROLE_ANNOTATIONS, KIND, schema
from ecrcred.config import load as config_load
from ecrcred.config.load import COMPILED_FORMAT, MAX_CONFIG_BYTES, config_setting, load_config
from ecrcred.config.rules import (
    DEFAULT_POD_IDENTITY,
    Config,
    DockerConfigOptions,
    EcrOptions,
    HelperOptions,
    MirrorOptions,
    PodIdentityPolicy,
    Rule,
    StaticOptions,
    candidates,
    defaults,
    from_compiled,
    path_scoped,
)
from ecrcred.config.schema import compile_text
from ecrcred.errors import ConfigError
from ecrcred.files import StateDir, sha256_hex
from ecrcred.settings import Setting
from tests.unit.fakes import RecordingLogger

PATH = "/etc/ecrcred/config.yaml"
HEADER = f"apiVersion: {API_VERSION}\nkind: {KIND}\n"
ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
DEFAULT_POD = {
    "role_annotations": list(DEFAULT_ROLE_ANNOTATIONS),
    "role_arn": None,
    "fallback": "node",
    "session_name": "ecrcred",
}


def config_error(text: str, path: str = PATH) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        compile_text(text, path)
    return caught.value


# -- schema.compile_text: a valid file ----------------------------------------------------------

FULL = HEADER + f"""\
registries:
  - match: ["harbor.example.com", "harbor.example.com:8443"]
    static: {{username: "robot$ci", passwordFile: /etc/ecrcred/harbor-password}}
    cacheDuration: 10m
  - match: ["ghcr.io/acme"]
    static: {{username: acme-bot, passwordEnv: GHCR_TOKEN}}
  - match: ["*.internal.example"]
    dockerConfig:
      paths: [/etc/docker/config.json, /root/.docker/config.json]
      kubeletRootDir: /data/kubelet
  - match: ["quay.io"]
    dockerConfig: {{}}
  - match: ["gcr.io", "*.gcr.io"]
    credentialHelper: {{name: gcloud, timeout: 30s}}
    cacheDuration: 1h30m
  - match: ["quay.example.com"]
    credentialHelper: {{name: ecr-login}}
  - match: ["ecr.example.com"]
    ecr:
      account: "012345678901"
      region: eu-west-1
      roleArn: arn:aws:iam::012345678901:role/image-puller
      externalId: tenant-7
      sessionName: node-puller
      fips: false
      dualstack: true
  - match: ["*.dkr.ecr.*.amazonaws.com"]
    ecr: {{}}
  - match: ["docker.io"]
    mirrorOf: {ECR}/docker-hub
    cacheDuration: 0s
"""

FULL_COMPILED: dict[str, Any] = {
    "registries": [
        {"index": 0, "match": ["harbor.example.com", "harbor.example.com:8443"],
         "source": "static",
         "options": {"username": "robot$ci", "password_file": "/etc/ecrcred/harbor-password",
                     "password_env": None},
         "cacheDuration": 600},
        {"index": 1, "match": ["ghcr.io/acme"], "source": "static",
         "options": {"username": "acme-bot", "password_file": None, "password_env": "GHCR_TOKEN"},
         "cacheDuration": None},
        {"index": 2, "match": ["*.internal.example"], "source": "dockerConfig",
         "options": {"paths": ["/etc/docker/config.json", "/root/.docker/config.json"],
                     "kubelet_root_dir": "/data/kubelet"},
         "cacheDuration": None},
        {"index": 3, "match": ["quay.io"], "source": "dockerConfig",
         "options": {"paths": None, "kubelet_root_dir": "/var/lib/kubelet"},
         "cacheDuration": None},
        {"index": 4, "match": ["gcr.io", "*.gcr.io"], "source": "credentialHelper",
         "options": {"name": "gcloud", "timeout": 30},
         "cacheDuration": 5400},
        {"index": 5, "match": ["quay.example.com"], "source": "credentialHelper",
         "options": {"name": "ecr-login", "timeout": 5},
         "cacheDuration": None},
        {"index": 6, "match": ["ecr.example.com"], "source": "ecr",
         "options": {"region": "eu-west-1", "account": "012345678901",
                     "role_arn": "arn:aws:iam::012345678901:role/image-puller",
                     "external_id": "tenant-7", "session_name": "node-puller",
                     "fips": False, "dualstack": True},
         "cacheDuration": None},
        {"index": 7, "match": ["*.dkr.ecr.*.amazonaws.com"], "source": "ecr",
         "options": {"region": None, "account": None, "role_arn": None, "external_id": None,
                     "session_name": "ecrcred", "fips": None, "dualstack": None},
         "cacheDuration": None},
        {"index": 8, "match": ["docker.io"], "source": "mirrorOf",
         "options": {"target": f"{ECR}/docker-hub"},
         "cacheDuration": 0},
    ],
    "podIdentity": DEFAULT_POD,
    "sandbox": {"archive": None},
    "refresh": {"enabled": True, "prefetch": []},
}


def test_a_full_config_compiles_every_source_with_durations_in_seconds_and_default_pod_identity():
    assert compile_text(FULL, PATH) == FULL_COMPILED


def test_the_compiled_form_is_plain_json():
    compiled = compile_text(FULL, PATH)
    assert json.loads(json.dumps(compiled)) == compiled


def test_the_same_config_written_as_json_compiles_the_same():
    as_json = json.dumps(yaml.safe_load(FULL))
    assert as_json.startswith("{")
    assert compile_text(as_json, PATH) == FULL_COMPILED


def test_pod_identity_settings_are_compiled():
    text = HEADER + """\
podIdentity:
  roleAnnotations: [example.com/ecr-role]
  roleArn: arn:aws-cn:iam::123456789012:role/default-puller
  fallback: deny
  sessionName: node-1
"""
    assert compile_text(text, PATH)["podIdentity"] == {
        "role_annotations": ["example.com/ecr-role"],
        "role_arn": "arn:aws-cn:iam::123456789012:role/default-puller",
        "fallback": "deny",
        "session_name": "node-1",
    }


@pytest.mark.parametrize("text", [
    pytest.param("", id="empty"),
    pytest.param("\n\n   \n", id="blank-lines"),
    pytest.param("# nothing configured yet\n", id="comment-only"),
    pytest.param(HEADER, id="header-only"),
    pytest.param(HEADER + "registries: []\n", id="no-registries"),
])
def test_an_empty_config_is_the_defaults(text: str):
    compiled = compile_text(text, PATH)
    assert compiled == {"registries": [], "podIdentity": DEFAULT_POD,
                        "sandbox": {"archive": None},
                        "refresh": {"enabled": True, "prefetch": []}}
    assert from_compiled(compiled, PATH, "default") == defaults(PATH)


def test_a_utf8_byte_order_mark_is_accepted():
    assert compile_text("\ufeff" + HEADER, PATH)["registries"] == []


# -- schema.compile_text: mistakes, each named by file, field path and what is expected --------

def rules(*items: str) -> str:
    """A config whose ``registries`` are the given YAML flow mappings, in order."""
    return HEADER + "registries:\n" + "".join(f"  - {item}\n" for item in items)


GOOD_RULE = "{match: [ok.example.com], mirrorOf: " + ECR + "}"
STATIC = "username: bot"


@pytest.mark.parametrize(("text", "field", "expected"), [
    pytest.param("apiVersion: ecrcred.io/v1\nkind: EcrcredConfig\n", "apiVersion",
                 "expected 'ecrcred.io/v1alpha1'", id="wrong-api-version"),
    pytest.param(f"apiVersion: {API_VERSION}\nkind: CredentialProviderConfig\n", "kind",
                 "expected 'EcrcredConfig'", id="wrong-kind"),
    pytest.param(f"apiVersion: {API_VERSION}\n", "kind", "required field is missing",
                 id="missing-kind"),
    pytest.param(f"kind: {KIND}\n", "apiVersion", "required field is missing",
                 id="missing-api-version"),
    pytest.param(HEADER + "registry: []\n", "registry", "unknown field", id="unknown-top-field"),
    pytest.param(rules(GOOD_RULE, f"{{match: [a.io], static: {{{STATIC}, passwordFle: /p}}}}"),
                 "registries[1].static.passwordFle", "unknown field", id="unknown-nested-field"),
    pytest.param(rules("{match: [a.io], mirror_of: b.io}"), "registries[0].mirror_of",
                 "unknown field", id="snake-case-is-not-the-field-name"),
    pytest.param(HEADER + "registries: {}\n", "registries", "valid list",
                 id="registries-not-a-list"),
    pytest.param(rules(GOOD_RULE, "{match: [a.io], credentialHelper: {name: x}, mirrorOf: b.io}"),
                 "registries[1]", "expected exactly one source (ecr, static, dockerConfig, "
                 "credentialHelper, mirrorOf), got credentialHelper, mirrorOf",
                 id="two-sources"),
    pytest.param(rules("{match: [a.io]}"), "registries[0]",
                 "expected exactly one source (ecr, static, dockerConfig, credentialHelper, "
                 "mirrorOf), got none", id="no-source"),
    pytest.param(rules("{mirrorOf: b.io}"), "registries[0].match", "required field is missing",
                 id="no-match"),
    pytest.param(rules("{match: [], mirrorOf: b.io}"), "registries[0].match", "at least 1 item",
                 id="empty-match"),
    pytest.param(rules("{match: a.io, mirrorOf: b.io}"), "registries[0].match", "valid list",
                 id="match-not-a-list"),
    pytest.param(rules(GOOD_RULE, f"{{match: [a.io], static: {{{STATIC}, passwordFile: /p, "
                       "passwordEnv: P}}"), "registries[1].static",
                 "expected exactly one of passwordFile or passwordEnv", id="both-password-sources"),
    pytest.param(rules(f"{{match: [a.io], static: {{{STATIC}}}}}"), "registries[0].static",
                 "expected exactly one of passwordFile or passwordEnv",
                 id="neither-password-source"),
    pytest.param(rules("{match: [a.io], static: {passwordEnv: P}}"),
                 "registries[0].static.username", "required field is missing", id="no-username"),
    pytest.param(rules(GOOD_RULE, f"{{match: [a.io], static: {{{STATIC}, "
                       "passwordFile: secrets/harbor}}"),
                 "registries[1].static.passwordFile", "expected an absolute path",
                 id="relative-password-file"),
    pytest.param(rules(f"{{match: [a.io], static: {{{STATIC}, passwordEnv: MY-TOKEN}}}}"),
                 "registries[0].static.passwordEnv", "expected an environment variable name",
                 id="password-env-not-a-name"),
    pytest.param(rules(GOOD_RULE, "{match: [a.io], ecr: {account: 123456789012, "
                       "region: us-west-2}}"),
                 "registries[1].ecr.account", 'an account id is 12 digits in quotes, e.g. '
                 '"012345678901"', id="unquoted-numeric-account"),
    pytest.param(rules("{match: [a.io], ecr: {account: '12345', region: us-west-2}}"),
                 "registries[0].ecr.account", "expected a 12-digit AWS account id",
                 id="short-account"),
    pytest.param(rules("{match: [a.io], ecr: {account: '123456789012', region: Oregon}}"),
                 "registries[0].ecr.region", "expected an AWS region such as us-west-2",
                 id="bad-region"),
    pytest.param(rules("{match: [a.io], ecr: {roleArn: 'arn:aws:iam::123456789012:user/bob'}}"),
                 "registries[0].ecr.roleArn", "expected an IAM role ARN", id="user-arn"),
    pytest.param(rules("{match: [a.io], ecr: {roleArn: 'arn:aws:iam::1234:role/x'}}"),
                 "registries[0].ecr.roleArn", "expected an IAM role ARN", id="short-account-arn"),
    pytest.param(rules("{match: [a.io], ecr: {fips: 'yes'}}"), "registries[0].ecr.fips",
                 "valid boolean", id="fips-not-a-boolean"),
    pytest.param(rules("{match: [a.io], ecr: {sessionName: x}}"), "registries[0].ecr.sessionName",
                 "expected 2-64 characters", id="short-session-name"),
    pytest.param(HEADER + "podIdentity: {roleArn: puller}\n", "podIdentity.roleArn",
                 "expected an IAM role ARN", id="pod-identity-bad-role-arn"),
    pytest.param(HEADER + "podIdentity: {fallback: anonymous}\n", "podIdentity.fallback",
                 "expected 'node' or 'deny'", id="bad-fallback"),
    pytest.param(rules("{match: [a.io], mirrorOf: b.io, cacheDuration: 5 minutes}"),
                 "registries[0].cacheDuration", "invalid duration '5 minutes'", id="bad-duration"),
    pytest.param(rules("{match: [a.io], mirrorOf: b.io, cacheDuration: 300}"),
                 "registries[0].cacheDuration",
                 'a duration is a string such as "5m", "90s" or "12h"', id="numeric-duration"),
    pytest.param(rules("{match: [a.io], mirrorOf: b.io, cacheDuration: -5m}"),
                 "registries[0].cacheDuration", "a duration must not be negative",
                 id="negative-duration"),
    pytest.param(rules("{match: [a.io], credentialHelper: {name: gcloud, timeout: 10}}"),
                 "registries[0].credentialHelper.timeout", "a duration is a string",
                 id="numeric-helper-timeout"),
    pytest.param(rules("{match: [a.io], credentialHelper: {name: 'gcloud; rm -rf /'}}"),
                 "registries[0].credentialHelper.name",
                 "expected the part after docker-credential-, e.g. gcloud", id="bad-helper-name"),
    pytest.param(rules("{match: [a.io], credentialHelper: {name: ../../tmp/x}}"),
                 "registries[0].credentialHelper.name", "expected the part after",
                 id="helper-name-with-a-path"),
    pytest.param(rules("{match: [a.io], dockerConfig: {paths: []}}"),
                 "registries[0].dockerConfig.paths", "at least 1 item",
                 id="docker-config-empty-paths"),
    pytest.param(rules("{match: ['registry.io:abc'], mirrorOf: b.io}"), "registries[0]",
                 "match pattern 'registry.io:abc' is not a host[:port][/path] glob",
                 id="match-bad-port"),
    pytest.param(rules("{match: [ok.io, 'bad host.io'], mirrorOf: b.io}"), "registries[0]",
                 "match pattern 'bad host.io' is not a host[:port][/path] glob",
                 id="match-space-in-host"),
    pytest.param(rules("{match: [''], mirrorOf: b.io}"), "registries[0]",
                 "match pattern '' is not a host[:port][/path] glob", id="match-empty"),
    pytest.param(rules("{match: ['https://registry.io'], mirrorOf: b.io}"), "registries[0]",
                 "match pattern 'https://registry.io' is not a host[:port][/path] glob",
                 id="match-with-scheme"),
    pytest.param(rules("{match: [a.io], mirrorOf: '*.mirror.io'}"), "registries[0]",
                 "mirrorOf '*.mirror.io' must be a registry host[:port][/path] without "
                 "wildcards or scheme", id="mirror-of-wildcard"),
    pytest.param(rules("{match: [a.io], mirrorOf: 'mirror?.io'}"), "registries[0]",
                 "without wildcards or scheme", id="mirror-of-question-mark"),
    pytest.param(rules("{match: [a.io], mirrorOf: 'https://mirror.io'}"), "registries[0]",
                 "mirrorOf 'https://mirror.io' must be a registry host[:port][/path] without "
                 "wildcards or scheme", id="mirror-of-scheme"),
    pytest.param(rules("{match: [a.io], mirrorOf: 'mirror.io:abc'}"), "registries[0]",
                 "without wildcards or scheme", id="mirror-of-bad-port"),
    pytest.param(rules("{match: [a.io], mirrorOf: ''}"), "registries[0].mirrorOf",
                 "at least 1 character", id="mirror-of-empty"),
])
def test_a_mistake_is_reported_with_the_file_the_field_and_what_is_expected(
        text: str, field: str, expected: str):
    error = config_error(text)
    line = error.one_line()
    assert error.code == "BAD_CONFIG"
    assert error.message.startswith(f"config {PATH}: {field}: ")
    assert expected in error.message
    assert "\n" not in line
    assert "apiVersion ecrcred.io/v1alpha1, kind EcrcredConfig" in error.hint


def test_a_document_that_is_not_a_mapping_is_reported():
    error = config_error("- registries\n")
    assert error.message.startswith(f"config {PATH}: ")
    assert "dictionary" in error.message


def test_at_most_three_mistakes_are_listed_then_a_count_of_the_rest():
    error = config_error(rules(*["{match: [a.io]}"] * 5))
    assert error.message.count("expected exactly one source") == 3
    assert "registries[2]" in error.message
    assert "registries[3]" not in error.message
    assert error.message.endswith("(and 2 more)")


def test_the_validation_error_is_not_chained_so_a_traceback_cannot_show_the_input():
    error = config_error(rules("{match: [a.io], static: {username: u, password: s3cret-value}}"))
    assert error.__cause__ is None
    assert error.__suppress_context__


@pytest.mark.parametrize(("text", "where", "problem"), [
    pytest.param(HEADER + "registries: []\nregistries: []\n", "line 4, column 1",
                 "duplicated field 'registries'", id="duplicated-top-level-key"),
    pytest.param(HEADER + "registries:\n  - match: [a.io]\n    mirrorOf: b.io\n"
                 "    mirrorOf: c.io\n", "line 6, column 5", "duplicated field 'mirrorOf'",
                 id="duplicated-nested-key"),
    pytest.param(HEADER + "registries: [\n", "line 4, column 1", "expected the node content",
                 id="unclosed-flow-sequence"),
    pytest.param(HEADER + "\tregistries: []\n", "line 3, column 1",
                 "found character '\\t' that cannot start any token", id="tab-indent"),
    pytest.param('{"apiVersion": "ecrcred.io/v1alpha1", "kind": "EcrcredConfig",}\n'
                 '{"x": 1}\n', "line 2, column 1", "expected '<document start>'",
                 id="two-json-documents"),
])
def test_a_yaml_mistake_is_reported_with_its_line_and_column(text: str, where: str, problem: str):
    error = config_error(text)
    assert error.message.startswith(f"config {PATH}: {where}: ")
    assert problem in error.message
    assert error.hint == "fix the YAML syntax"
    assert "\n" not in error.one_line()


@pytest.mark.parametrize("text", [
    pytest.param("registries: " + "[" * 500 + "]" * 500 + "\n", id="yaml-lists"),
    pytest.param("registries:\n  " + "- " * 500 + "x\n",
                 id="yaml-block-lists"),
    pytest.param("registries: " + "{a: " * 500 + "}" * 500 + "\n", id="yaml-mappings"),
    pytest.param('{"registries": ' + "[" * 500 + "]" * 500 + "}\n", id="json-lists"),
    pytest.param('{"registries": ' + '{"a": ' * 500 + "}" * 500 + "}\n", id="json-objects"),
])
def test_a_config_nested_too_deeply_is_a_config_error_naming_the_file(text: str):
    # Regression: 1 KiB nested 500 deep was a RecursionError in PyYAML, exit 70.
    assert len(text) < 10_000
    error = config_error(text)
    assert error.message == f"config {PATH} is nested too deeply to be an ecrcred config"
    assert error.exit_code == 4


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(HEADER + "registries: " + "7" * 5000 + "\n",
                 "holds a number of more than 4300 digits", id="yaml-big-number"),
    pytest.param('{"apiVersion": "x", "registries": ' + "7" * 5000 + "}\n",
                 "holds a number of more than 4300 digits", id="json-big-number"),
    pytest.param(HEADER + "registries: 2024-02-30\n",
                 "holds a value or key that cannot be read (day is out of range for month)",
                 id="date-that-does-not-exist"),
    pytest.param(HEADER + "registries: !!float x\n", "holds a value or key that cannot be read",
                 id="float-tag-on-a-word"),
    pytest.param(HEADER + "? [a, b]\n: c\n", "holds a value or key that cannot be read",
                 id="list-as-key"),
    pytest.param(HEADER + "? {a: b}\n: c\n", "holds a value or key that cannot be read",
                 id="mapping-as-key"),
    pytest.param(HEADER + "registries: !!int ''\n", "holds a value or key that cannot be read",
                 id="int-tag-on-nothing"),
    pytest.param(HEADER + "registries: !!timestamp y\n",
                 "holds a value or key that cannot be read", id="timestamp-tag-on-a-word"),
    pytest.param(HEADER + "registries: !!bool x\n", "holds a value or key that cannot be read",
                 id="bool-tag-on-a-word"),
])
def test_a_value_yaml_cannot_convert_is_a_config_error_not_a_crash(text: str, expected: str):
    # PyYAML converts scalars with int(), float(), datetime() and table look-ups, and hashes
    # keys: their ValueError, TypeError, IndexError, AttributeError, KeyError were exit 70.
    error = config_error(text)
    assert error.message.startswith(f"config {PATH} {expected}")
    assert "set_int_max_str_digits" not in error.one_line()
    assert error.hint == ("quote a value meant as text, and leave out '!!' tags: an ecrcred "
                          "config needs none")


SECRET = "hunter2-s3cret-VALUE"


@pytest.mark.parametrize(("text", "field", "expected"), [
    pytest.param(rules(f"{{match: [a.io], static: {{username: u, password: {SECRET}}}}}"),
                 "registries[0].static", "an inline password is not accepted",
                 id="inline-password"),
    pytest.param(rules(f"{{match: [a.io], static: {{username: u, passwordFile: /p, "
                       f"password: {SECRET}}}}}"),
                 "registries[0].static", "an inline password is not accepted",
                 id="inline-password-beside-a-file"),
    pytest.param(rules(f"{{match: [a.io], static: {{username: u, password: {{v: {SECRET}}}}}}}"),
                 "registries[0].static", "an inline password is not accepted",
                 id="inline-password-mapping"),
    pytest.param(rules(f"{{match: [a.io], static: {{username: u, passwordEnv: '{SECRET}!'}}}}"),
                 "registries[0].static.passwordEnv", "expected an environment variable name",
                 id="password-pasted-into-password-env"),
    pytest.param(rules(f"{{match: [a.io], static: {{username: u, passwordFile: {SECRET}}}}}"),
                 "registries[0].static.passwordFile", "expected an absolute path",
                 id="password-pasted-into-password-file"),
    pytest.param(rules(f"{{match: [a.io], ecr: {{externalId: {SECRET}}}}}"),
                 "registries[0].ecr", "externalId is only used with roleArn",
                 id="external-id-without-role"),
    pytest.param(rules("{match: [a.io], ecr: {roleArn: 'arn:aws:iam::123456789012:role/r', "
                       f"externalId: '{SECRET} with spaces'}}}}"),
                 "registries[0].ecr.externalId", "expected 2-1224 characters",
                 id="malformed-external-id"),
    pytest.param(rules(f"{{match: [a.io], static: {{username: u, passwrd: {SECRET}}}}}"),
                 "registries[0].static.passwrd", "unknown field", id="misspelled-password"),
])
def test_a_secret_in_the_wrong_place_is_refused_without_echoing_it(
        text: str, field: str, expected: str):
    error = config_error(text)
    assert error.message.startswith(f"config {PATH}: {field}: ")
    assert expected in error.message
    for shown in (error.one_line(), str(error), error.hint):
        assert SECRET not in shown


def test_an_inline_password_message_says_where_the_password_should_go():
    error = config_error(rules("{match: [a.io], static: {username: u, password: x}}"))
    assert "use passwordFile or passwordEnv" in error.message


# -- load.load_config --------------------------------------------------------------------------

GOOD = HEADER + """\
registries:
  - match: [harbor.example.com]
    static: {username: robot, passwordFile: /etc/ecrcred/harbor-password}
"""
OTHER = HEADER + """\
registries:
  - match: [quay.example.com]
    credentialHelper: {name: quay}
"""


class CompileSpy:
    """Stands in for ``schema.compile_text``: counts validations, optionally refusing them."""

    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[str] = []
        self.refuse = refuse
        self._real = compile_text

    def __call__(self, text: str, path: str) -> dict[str, Any]:
        self.calls.append(path)
        if self.refuse:
            raise AssertionError("the config was validated again")
        return self._real(text, path)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> CompileSpy:
    compile_spy = CompileSpy()
    monkeypatch.setattr(schema, "compile_text", compile_spy)
    return compile_spy


def write(path: Path, text: str | bytes, mtime_ns: int | None = None) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def flag(path: Path | str) -> Setting:
    return Setting(str(path), "flag --config")


def compiled_file(state: Path) -> Path:
    (found,) = state.glob("config-*.json")
    return found


def compiled_doc(state: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(compiled_file(state).read_bytes())
    return doc


def load(setting: Setting, state: Path | None, log: RecordingLogger | None = None) -> Config:
    """Load as the CLI does: through the state directory, opened and checked first (None when
    it cannot be used: the token cache warns about that, once)."""
    opened = None
    if state is not None:
        try:
            opened = StateDir.open(str(state), os.geteuid(), create=True)
        except OSError:
            opened = None
    try:
        return load_config(setting, opened, log or RecordingLogger())
    finally:
        if opened is not None:
            opened.close()


def test_config_setting_prefers_the_flag_then_the_environment_then_the_default():
    env = {"ECRCRED_CONFIG": "/env/config.yaml"}
    assert config_setting("/flag.yaml", env) == Setting("/flag.yaml", "flag --config")
    assert config_setting(None, env) == Setting("/env/config.yaml", "env ECRCRED_CONFIG")
    assert config_setting(None, {"ECRCRED_CONFIG": ""}) == Setting(
        "/etc/ecrcred/config.yaml", "default")


def test_no_file_at_the_default_path_gives_the_ecr_only_defaults(tmp_path: Path):
    log = RecordingLogger()
    config = load(Setting(str(tmp_path / "config.yaml"), "default"), tmp_path / "state", log)
    assert config == defaults()
    assert config.rules == ()
    assert config.pod_identity == DEFAULT_POD_IDENTITY
    assert config.describe() == "no config file (ECR-only defaults)"
    assert log.at("debug") == [f"no config file at {tmp_path / 'config.yaml'}: ECR-only defaults"]


@pytest.mark.parametrize("origin", ["flag --config", "env ECRCRED_CONFIG"])
def test_a_named_file_that_does_not_exist_is_an_error_naming_it_and_where_it_was_named(
        tmp_path: Path, origin: str):
    missing = tmp_path / "typo.yaml"
    with pytest.raises(ConfigError) as caught:
        load(Setting(str(missing), origin), tmp_path / "state")
    assert caught.value.message == f"config file {missing} (from {origin}) does not exist"
    assert "--config / ECRCRED_CONFIG" in caught.value.hint


@pytest.mark.parametrize("origin", ["default", "flag --config"])
def test_a_directory_is_not_a_config_file(tmp_path: Path, origin: str):
    with pytest.raises(ConfigError) as caught:
        load(Setting(str(tmp_path), origin), None)
    assert caught.value.message == f"config {tmp_path} is not a regular file"


def test_a_relative_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write(tmp_path / "config.yaml", GOOD)
    monkeypatch.chdir(tmp_path)
    config = load(flag("config.yaml"), None)
    assert config.path == str(tmp_path / "config.yaml")
    assert config.origin == "flag --config"
    assert config.describe() == f"config {tmp_path / 'config.yaml'} (from flag --config, 1 rules)"


def test_loading_validates_the_file_and_gives_its_rules(tmp_path: Path):
    path = write(tmp_path / "config.yaml", GOOD)
    log = RecordingLogger()
    config = load(flag(path), tmp_path / "state", log)
    assert config == from_compiled(compile_text(GOOD, str(path)), str(path), "flag --config")
    assert config.rules[0].source == "static"
    assert log.at("debug") == [f"validated config {path}"]


def test_the_first_load_keeps_the_compiled_config_bound_to_the_files_bytes(tmp_path: Path):
    # Changed: the copy was stamped with stat facts (device, inode, size, times), which anyone
    # can read and so forge; it is now bound to the SHA-256 of the bytes it was made from.
    path = write(tmp_path / "config.yaml", GOOD)
    state = tmp_path / "state"
    load(flag(path), state)
    assert compiled_doc(state) == {
        "format": COMPILED_FORMAT,
        "version": __version__,
        "path": str(path),
        "sha256": sha256_hex(GOOD.encode()),
        "config": compile_text(GOOD, str(path)),
    }


def test_the_compiled_copy_is_private_to_its_owner(tmp_path: Path):
    path = write(tmp_path / "config.yaml", GOOD)
    state = tmp_path / "state" / "nested"
    load(flag(path), state)
    assert stat.S_IMODE(compiled_file(state).stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert [p.name for p in state.iterdir()] == [compiled_file(state).name], "no temp file left"


def test_an_unchanged_file_is_read_from_the_compiled_copy_without_validating(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = write(tmp_path / "config.yaml", GOOD)
    state = tmp_path / "state"
    first = load(flag(path), state)
    monkeypatch.setattr(schema, "compile_text", CompileSpy(refuse=True))
    log = RecordingLogger()
    assert load(flag(path), state, log) == first
    assert log.lines == []


def test_the_compiled_copy_is_what_an_unchanged_file_loads(tmp_path: Path):
    path = write(tmp_path / "config.yaml", GOOD)
    state = tmp_path / "state"
    load(flag(path), state)
    doc = compiled_doc(state)
    doc["config"]["podIdentity"]["fallback"] = "deny"
    compiled_file(state).write_text(json.dumps(doc))
    assert load(flag(path), state).pod_identity.fallback == "deny"


@pytest.mark.parametrize("digest", [sha256_hex(OTHER.encode()), sha256_hex(b""), "0" * 64])
def test_a_compiled_copy_made_from_other_bytes_is_not_used(
        tmp_path: Path, spy: CompileSpy, digest: str):
    path = write(tmp_path / "config.yaml", GOOD)
    state = tmp_path / "state"
    load(flag(path), state)
    doc = compiled_doc(state)
    doc["config"]["podIdentity"]["fallback"] = "deny"
    doc["sha256"] = digest
    compiled_file(state).write_text(json.dumps(doc))
    assert load(flag(path), state).pod_identity.fallback == "node"
    assert len(spy.calls) == 2
    assert compiled_doc(state)["config"]["podIdentity"]["fallback"] == "node", "rewritten"


def test_an_edit_is_validated_and_loaded(tmp_path: Path, spy: CompileSpy):
    path = write(tmp_path / "config.yaml", GOOD)
    state = tmp_path / "state"
    load(flag(path), state)
    write(path, OTHER, mtime_ns=path.stat().st_mtime_ns + 1_000_000_000)
    config = load(flag(path), state)
    assert config.rules[0].match == ("quay.example.com",)
    assert len(spy.calls) == 2
    assert load(flag(path), state) == config
    assert len(spy.calls) == 2, "the edit's own compiled copy is used from then on"


def test_an_edit_that_keeps_size_and_mtime_is_still_noticed(tmp_path: Path, spy: CompileSpy):
    # cp -p, rsync -t and tar restore mtimes: the ctime (and inode) in the stamp still change.
    same_size = GOOD.replace("robot", "robo2")
    assert len(same_size) == len(GOOD)
    path = write(tmp_path / "config.yaml", GOOD)
    state = tmp_path / "state"
    load(flag(path), state)
    mtime = path.stat().st_mtime_ns
    time.sleep(0.05)  # past the kernel's coarse timestamp tick
    write(path, same_size, mtime_ns=mtime)
    assert path.stat().st_mtime_ns == mtime
    assert load(flag(path), state).rules[0].options.username == "robo2"
    assert len(spy.calls) == 2


def test_a_swapped_configmap_symlink_is_noticed(tmp_path: Path):
    # A ConfigMap volume: config.yaml -> ..data/config.yaml, and ..data is swapped atomically.
    for name, text in (("v1", GOOD), ("v2", OTHER)):
        (tmp_path / name).mkdir()
        write(tmp_path / name / "config.yaml", text)
    (tmp_path / "..data").symlink_to("v1")
    (tmp_path / "config.yaml").symlink_to("..data/config.yaml")
    state = tmp_path / "state"
    assert load(flag(tmp_path / "config.yaml"), state).rules[0].source == "static"
    (tmp_path / "..data_tmp").symlink_to("v2")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert load(flag(tmp_path / "config.yaml"), state).rules[0].source == "credentialHelper"


def test_a_broken_edit_is_reported_at_once_not_hidden_by_the_old_compiled_copy(tmp_path: Path):
    path = write(tmp_path / "config.yaml", GOOD)
    state = tmp_path / "state"
    load(flag(path), state)
    mtime = path.stat().st_mtime_ns
    write(path, GOOD.replace("passwordFile", "passwordFle"), mtime_ns=mtime + 1_000_000_000)
    for _ in range(2):  # and on every execution until it is fixed
        with pytest.raises(ConfigError) as caught:
            load(flag(path), state)
        assert caught.value.message == (
            f"config {path}: registries[0].static.passwordFle: unknown field")
    write(path, GOOD, mtime_ns=mtime + 2_000_000_000)
    assert load(flag(path), state).rules[0].options.password_file == (
        "/etc/ecrcred/harbor-password")


def _truncated(body: bytes) -> bytes:
    return body[: len(body) // 2]


def _edit(change: Callable[[dict[str, Any]], object]) -> Callable[[bytes], bytes]:
    def apply(body: bytes) -> bytes:
        doc = json.loads(body)
        change(doc)
        return json.dumps(doc).encode()

    return apply


@pytest.mark.parametrize("damage", [
    pytest.param(_truncated, id="truncated"),
    pytest.param(lambda body: b"", id="empty"),
    pytest.param(lambda body: b"\xff\xfe garbage", id="not-json"),
    pytest.param(lambda body: b"[1, 2, 3]", id="not-an-object"),
    pytest.param(_edit(lambda d: d.update(version="0.0.0-other")), id="other-version"),
    pytest.param(_edit(lambda d: d.update(format=COMPILED_FORMAT + 1)), id="other-format"),
    pytest.param(_edit(lambda d: d.update(path="/somewhere/else.yaml")), id="other-path"),
    pytest.param(_edit(lambda d: d.pop("sha256")), id="no-digest"),
    pytest.param(_edit(lambda d: d.update(config=["not", "a", "mapping"])), id="config-not-dict"),
])
def test_a_damaged_or_foreign_compiled_copy_is_ignored_and_rewritten(
        tmp_path: Path, spy: CompileSpy, damage: Callable[[bytes], bytes]):
    path = write(tmp_path / "config.yaml", GOOD)
    state = tmp_path / "state"
    expected = load(flag(path), state)
    good_copy = compiled_file(state).read_bytes()
    compiled_file(state).write_bytes(damage(good_copy))
    assert load(flag(path), state) == expected
    assert len(spy.calls) == 2
    assert compiled_file(state).read_bytes() == good_copy


def test_without_a_state_directory_every_load_validates(tmp_path: Path, spy: CompileSpy):
    path = write(tmp_path / "config.yaml", GOOD)
    first = load(flag(path), None)
    assert load(flag(path), None) == first
    assert spy.calls == [str(path), str(path)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_an_unusable_state_directory_still_loads_the_config(tmp_path: Path, spy: CompileSpy):
    # Changed: the debug line "cannot keep the compiled config in ..." is gone with the case it
    # reported: an unusable directory is never handed to the loader (the cache warns, once).
    path = write(tmp_path / "config.yaml", GOOD)
    blocker = write(tmp_path / "not-a-directory", "")
    log = RecordingLogger()
    state = blocker / "state"  # a path through a regular file: unusable even for root
    config = load(flag(path), state, log)
    assert config.rules[0].match == ("harbor.example.com",)
    assert load(flag(path), state, log) == config
    assert len(spy.calls) == 2
    assert log.at("warning") == [] and log.at("error") == []


def test_a_file_that_is_not_utf8_is_rejected(tmp_path: Path):
    path = write(tmp_path / "config.yaml", HEADER.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load(flag(path), tmp_path / "state")
    assert caught.value.message == f"config {path} is not UTF-8 text"
    assert caught.value.hint == "save it as UTF-8"


def test_an_oversized_file_is_rejected_before_it_is_parsed(tmp_path: Path, spy: CompileSpy):
    path = write(tmp_path / "config.yaml", b"#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError) as caught:
        load(flag(path), tmp_path / "state")
    assert caught.value.message == f"config {path} is larger than {MAX_CONFIG_BYTES} bytes"
    assert "not an ecrcred config file" in caught.value.hint
    assert spy.calls == []


@pytest.mark.parametrize(("limit_delta", "accepted"), [(0, True), (-1, False)])
def test_the_size_limit_is_inclusive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     limit_delta: int, accepted: bool):
    path = write(tmp_path / "config.yaml", GOOD)
    monkeypatch.setattr(config_load, "MAX_CONFIG_BYTES", len(GOOD.encode()) + limit_delta)
    if accepted:
        assert len(load(flag(path), None).rules) == 1
    else:
        with pytest.raises(ConfigError, match="is larger than"):
            load(flag(path), None)


def test_a_mistake_in_the_file_names_the_loaded_path(tmp_path: Path):
    path = write(tmp_path / "config.yaml", HEADER + "registries: [\n")
    with pytest.raises(ConfigError) as caught:
        load(flag(path), tmp_path / "state")
    assert caught.value.message.startswith(f"config {path}: line 4, column 1: ")
    assert not list((tmp_path / "state").glob("config-*")), "nothing is kept for a broken file"


# -- rules: records, candidates and scope -------------------------------------------------------

def config_of(*matches: tuple[str, ...] | str) -> Config:
    """A config whose rule N matches the patterns given N-th (the source does not matter)."""
    return Config(PATH, "flag --config", tuple(
        Rule(position, (m,) if isinstance(m, str) else m, "mirrorOf", MirrorOptions("x.io"), None)
        for position, m in enumerate(matches)), DEFAULT_POD_IDENTITY)


def ranked(config: Config, image: str) -> list[int]:
    return [rule.position for rule in candidates(config, image)]


@pytest.mark.parametrize(("matches", "image", "expected"), [
    # an exact host beats a wildcard host, whatever the paths
    pytest.param(["*.example.com", "registry.example.com"], "registry.example.com/app", [1, 0],
                 id="exact-host-beats-wildcard"),
    pytest.param(["*.example.com/team/app", "registry.example.com"],
                 "registry.example.com/team/app", [1, 0],
                 id="exact-host-beats-wildcard-with-longer-path"),
    pytest.param(["registr[xyz].io", "registry.io"], "registry.io/app", [1, 0],
                 id="exact-host-beats-a-class-with-more-characters"),
    pytest.param(["registry.example.com", "registry.exampl?.com"], "registry.example.com/app",
                 [0], id="question-mark-is-no-wildcard-in-a-host"),
    # then more literal characters in the host
    pytest.param(["*.*.com", "*.example.com"], "registry.example.com/app", [1, 0],
                 id="more-literal-host-characters-win"),
    pytest.param(["*.example.com", "reg*.example.com"], "registry.example.com/app", [1, 0],
                 id="partial-wildcard-beats-whole-part-wildcard"),
    pytest.param(["*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.us-west-2.amazonaws.com"],
                 f"{ECR}/app", [1, 0], id="region-literal-beats-region-wildcard"),
    # then a longer path prefix for the same host
    pytest.param(["registry.io/team", "registry.io/team/app", "registry.io"],
                 "registry.io/team/app/web", [1, 0, 2], id="longer-path-prefix-wins"),
    pytest.param(["registry.io", "registry.io/"], "registry.io/app", [0, 1],
                 id="a-bare-slash-is-no-path"),
    # a rule ranks by its most specific matching pattern only
    pytest.param([("*.example.com", "registry.example.com/team"), "registry.example.com"],
                 "registry.example.com/team/app", [0, 1], id="best-matching-pattern-counts"),
    pytest.param([("registry.example.com/other", "*.example.com"), "registry.example.com"],
                 "registry.example.com/team/app", [1, 0],
                 id="a-non-matching-pattern-does-not-count"),
    # ties go to the rule written first
    pytest.param(["registry.io", "registry.io"], "registry.io/app", [0, 1], id="tie-first-rule"),
    pytest.param(["a*.io", "*b.io"], "ab.io/app", [0, 1], id="tie-same-specificity"),
    pytest.param(["*b.io", "a*.io"], "ab.io/app", [0, 1], id="tie-is-by-order-not-content"),
    # non-matching rules are left out
    pytest.param(["other.io", "registry.io", "registry.io/other"], "registry.io/app", [1],
                 id="non-matching-rules-excluded"),
    pytest.param(["other.io"], "registry.io/app", [], id="nothing-matches"),
    # the kubelet's glob rules
    pytest.param(["registry.io", "registry.io:5000"], "registry.io:5000/app", [1],
                 id="port-must-be-given-to-match-a-port"),
    pytest.param(["registry.io", "registry.io:5000"], "registry.io/app", [0],
                 id="a-port-pattern-never-matches-no-port"),
    pytest.param(["registry.io:05000"], "registry.io:5000/app", [], id="ports-are-equal-strings"),
    pytest.param(["*.io", "*.registry.io"], "a.registry.io/app", [1],
                 id="star-does-not-cross-dots"),
    pytest.param(["*.registry.io"], "registry.io/app", [], id="star-part-is-not-optional"),
    pytest.param(["registry.io/foo"], "registry.io/foobar", [0], id="path-is-a-plain-prefix"),
    pytest.param(["registry.io/*"], "registry.io/app", [], id="star-in-path-is-literal"),
    pytest.param(["Registry.io"], "registry.io/app", [], id="host-is-case-sensitive"),
    pytest.param(["registry.io/Team"], "registry.io/team", [], id="path-is-case-sensitive"),
])
def test_candidates_are_the_matching_rules_most_specific_first(
        matches: list[tuple[str, ...] | str], image: str, expected: list[int]):
    assert ranked(config_of(*matches), image) == expected


def test_candidates_of_the_defaults_are_none():
    assert candidates(defaults(), f"{ECR}/app") == []


@pytest.mark.parametrize(("matches", "image", "expected"), [
    pytest.param(["registry.io/team"], "registry.io/other", True,
                 id="path-rule-for-host-even-if-it-does-not-match-this-image"),
    pytest.param(["registry.io/team"], "registry.io/team/app", True, id="path-rule-matching"),
    pytest.param(["*.example.com/team"], "a.example.com/x", True, id="wildcard-host-path-rule"),
    pytest.param(["registry.io"], "registry.io/app", False, id="host-rule-only"),
    pytest.param(["registry.io/"], "registry.io/app", False, id="bare-slash-is-no-path"),
    pytest.param(["other.io/team"], "registry.io/app", False, id="path-rule-for-another-host"),
    pytest.param(["registry.io:5000/team"], "registry.io/app", False, id="other-port"),
    pytest.param(["registry.io/team"], "registry.io:5000/app", False, id="image-with-port"),
    pytest.param(["*.registry.io/team"], "registry.io/app", False, id="star-part-not-optional"),
    pytest.param([], "registry.io/app", False, id="no-rules"),
])
def test_path_scoped_says_whether_a_path_rule_could_match_the_host(
        matches: list[str], image: str, expected: bool):
    assert path_scoped(config_of(*matches), image) is expected


@pytest.mark.parametrize(("match", "has_path"), [
    (("registry.io",), False),
    (("registry.io/",), False),
    (("registry.io//",), False),
    (("registry.io/team",), True),
    (("registry.io", "other.io/team"), True),
])
def test_a_rule_has_a_path_when_a_pattern_names_more_than_the_host(
        match: tuple[str, ...], has_path: bool):
    assert Rule(0, match, "mirrorOf", MirrorOptions("x.io"), None).has_path is has_path


def test_a_rule_is_named_by_its_position_source_and_patterns():
    rule = from_compiled(compile_text(FULL, PATH), PATH, "default").rules[4]
    assert rule.name == "registries[4] (credentialHelper for gcr.io, *.gcr.io)"


def test_from_compiled_gives_records_for_every_rule_and_the_pod_identity_policy():
    config = from_compiled(compile_text(FULL, PATH), PATH, "env ECRCRED_CONFIG")
    assert config.path == PATH
    assert config.origin == "env ECRCRED_CONFIG"
    assert [r.position for r in config.rules] == list(range(9))
    assert config.rules[0] == Rule(
        0, ("harbor.example.com", "harbor.example.com:8443"), "static",
        StaticOptions("robot$ci", "/etc/ecrcred/harbor-password", None), 600)
    assert config.rules[8].cache_duration == 0
    assert config.pod_identity == PodIdentityPolicy(DEFAULT_ROLE_ANNOTATIONS, None, "node",
                                                    "ecrcred")
    assert config.describe() == f"config {PATH} (from env ECRCRED_CONFIG, 9 rules)"


def test_from_compiled_gives_each_source_its_typed_options_record():
    options = [r.options for r in from_compiled(compile_text(FULL, PATH), PATH, "x").rules]
    assert options == [
        StaticOptions("robot$ci", "/etc/ecrcred/harbor-password", None),
        StaticOptions("acme-bot", None, "GHCR_TOKEN"),
        DockerConfigOptions(("/etc/docker/config.json", "/root/.docker/config.json"),
                            "/data/kubelet"),
        DockerConfigOptions(None, "/var/lib/kubelet"),
        HelperOptions("gcloud", 30),
        HelperOptions("ecr-login", 5),
        EcrOptions("eu-west-1", "012345678901", "arn:aws:iam::012345678901:role/image-puller",
                   "tenant-7", "node-puller", fips=False, dualstack=True),
        EcrOptions(),
        MirrorOptions(f"{ECR}/docker-hub"),
    ]
    assert [type(o) for o in options] == [StaticOptions, StaticOptions, DockerConfigOptions,
                                          DockerConfigOptions, HelperOptions, HelperOptions,
                                          EcrOptions, EcrOptions, MirrorOptions]


@pytest.mark.parametrize("change", [
    pytest.param({"source": "vault"}, id="unknown-source"),
    pytest.param({"options": {"username": "u", "password_file": None, "password_env": "X",
                              "password_hash": "?"}}, id="unknown-option"),
])
def test_from_compiled_refuses_a_layout_it_does_not_know(change: dict[str, Any]):
    # load takes these errors as a compiled copy of another build and validates the file again.
    compiled = compile_text(FULL, PATH)
    compiled["registries"][0].update(change)
    with pytest.raises((KeyError, TypeError)):
        from_compiled(compiled, PATH, "x")


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 1), ("1.5s", 2), ("90s", 90), ("0s", 0), ("1h30m", 5400)])
def test_durations_are_whole_seconds_rounded_up_so_a_short_one_never_becomes_zero(
        text: str, seconds: int):
    compiled = compile_text(
        rules(f"{{match: [a.example.com], credentialHelper: {{name: x}}, cacheDuration: {text}}}"),
        PATH)
    assert compiled["registries"][0]["cacheDuration"] == seconds


def test_a_compiled_copy_with_another_layout_is_validated_again(tmp_path: Path, spy: CompileSpy):
    config = write(tmp_path / "config.yaml", GOOD)
    state = tmp_path / "state"
    load(flag(config), state)
    doc = compiled_doc(state)
    doc["config"] = {"rules-in-some-future-layout": []}
    compiled_file(state).write_text(json.dumps(doc))
    assert load(flag(config), state).rules[0].source == "static"
    assert len(spy.calls) == 2
