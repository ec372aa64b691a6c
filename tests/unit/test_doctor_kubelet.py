"""Would the kubelet exec ecrcred for the image: its provider flags, the provider config by the
kubelet's own rules, the executable in the bin dir, and matchImages (with the sandbox image,
which the kubelet never asks providers for)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from ecrcred.doctor.kubelet import (
    BIN_DIR_FLAG,
    CONFIG_FLAG,
    DEFAULT_PROVIDER_CONFIG,
    check_kubelet,
    kubelet_flags,
)
from ecrcred.doctor.report import FAIL, OK, SKIP, WARN, Check
from ecrcred.imageref import glob_match
from ecrcred.settings import Setting

ECR_IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/team/app"
PROVIDER = {
    "name": "ecrcred",
    "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
    "matchImages": ["*.dkr.ecr.*.amazonaws.com", "registry.example.com"],
    "defaultCacheDuration": "12h",
    "args": ["get-credentials"],
}
GOOD: dict[str, Any] = {"apiVersion": "kubelet.config.k8s.io/v1",
                        "kind": "CredentialProviderConfig", "providers": [PROVIDER]}


# -- the kubelet's command line -------------------------------------------------------------------

@pytest.mark.parametrize(("cmdline", "expected"), [
    pytest.param(["/usr/bin/kubelet", f"{CONFIG_FLAG}=/etc/k/p.yaml",
                  f"{BIN_DIR_FLAG}=/opt/bin"],
                 {CONFIG_FLAG: "/etc/k/p.yaml", BIN_DIR_FLAG: "/opt/bin"}, id="equals"),
    pytest.param(["/usr/bin/kubelet", CONFIG_FLAG, "/etc/k/p.yaml", BIN_DIR_FLAG, "/opt/bin"],
                 {CONFIG_FLAG: "/etc/k/p.yaml", BIN_DIR_FLAG: "/opt/bin"}, id="separate"),
    pytest.param(["kubelet", f"{CONFIG_FLAG}=/a=b.yaml"], {CONFIG_FLAG: "/a=b.yaml"},
                 id="equals-in-value"),
    pytest.param(["kubelet", "--v=2", f"{CONFIG_FLAG}=/first", f"{CONFIG_FLAG}=/last"],
                 {CONFIG_FLAG: "/last"}, id="last-wins"),
    pytest.param(["kubelet", CONFIG_FLAG], {}, id="flag-without-value"),
    pytest.param(["kubelet", f"{CONFIG_FLAG}-other=/x", "--image-credential-provider-configx",
                  "/y"], {}, id="longer-flag-names"),
    pytest.param([], {}, id="empty"),
])
def test_kubelet_flags_reads_both_provider_flags_in_either_form(
        cmdline: list[str], expected: dict[str, str]):
    assert kubelet_flags(cmdline) == expected


# -- a node laid out in a temporary directory -----------------------------------------------------

class Node:
    """A provider config file and a bin dir, as the kubelet's flags would name them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "provider-config.yaml"
        self.bin = root / "bin"
        self.bin.mkdir()

    def write_config(self, doc: dict[str, Any] | str) -> None:
        self.config.write_text(doc if isinstance(doc, str) else json.dumps(doc))

    def executable(self, name: str = "ecrcred", mode: int = 0o755) -> Path:
        path = self.bin / name
        path.write_text("#!/bin/sh\n")
        path.chmod(mode)
        return path

    def check(self, image: str = ECR_IMAGE, self_path: str | None = None,
              is_sandbox: bool = False) -> dict[str, Check]:
        checks = check_kubelet(image, Setting(str(self.config), "flag --provider-config"),
                               Setting(str(self.bin), "flag --provider-bin-dir"), self_path,
                               is_sandbox)
        assert [c.id for c in checks] == ["kubelet.config", "kubelet.provider", "kubelet.match"]
        return {c.id: c for c in checks}


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def statuses(checks: dict[str, Check]) -> list[str]:
    return [c.status for c in checks.values()]


def provider(**changes: Any) -> dict[str, Any]:
    changed = {**copy.deepcopy(PROVIDER), **changes}
    return {k: v for k, v in changed.items() if v is not None}


def config_with(*providers: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {**copy.deepcopy(GOOD), "providers": list(providers), **top}


def test_a_valid_config_with_ecrcred_covering_the_image_is_ok(node: Node):
    node.write_config(GOOD)
    path = node.executable()
    checks = node.check()
    assert statuses(checks) == [OK, OK, OK]
    assert checks["kubelet.config"].message == (
        f"{node.config} (from flag --provider-config) is valid by the kubelet's rules")
    assert checks["kubelet.provider"].message == f"provider ecrcred runs {path} get-credentials"
    assert checks["kubelet.match"].message == (
        f"matchImages '*.dkr.ecr.*.amazonaws.com' of provider ecrcred covers {ECR_IMAGE}")


def test_yaml_is_read_as_the_kubelet_reads_it(node: Node):
    node.write_config("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\n"
                      "providers:\n- name: ecrcred\n  apiVersion: "
                      "credentialprovider.kubelet.k8s.io/v1\n  matchImages: "
                      "['*.dkr.ecr.*.amazonaws.com']\n  defaultCacheDuration: 12h\n")
    node.executable()
    assert statuses(node.check()) == [OK, OK, OK]


@pytest.mark.parametrize(("doc", "needle"), [
    pytest.param({**GOOD, "extra": 1}, "unknown field 'extra'", id="unknown-top-field"),
    pytest.param(config_with(provider(cacheKeyType="Registry")),
                 "providers[0].unknown field 'cacheKeyType'", id="unknown-provider-field"),
    pytest.param({**GOOD, "kind": "KubeletConfiguration"}, "kind is 'KubeletConfiguration'",
                 id="wrong-kind"),
    pytest.param({**GOOD, "apiVersion": "kubelet.config.k8s.io/v2"},
                 "apiVersion 'kubelet.config.k8s.io/v2' is not one of", id="wrong-apiVersion"),
    pytest.param(config_with(provider(apiVersion="credentialprovider.kubelet.k8s.io/v2")),
                 "providers[0].apiVersion 'credentialprovider.kubelet.k8s.io/v2'",
                 id="wrong-provider-apiVersion"),
    pytest.param(config_with(provider(matchImages=None)),
                 "matchImages: at least one entry is required", id="missing-matchImages"),
    pytest.param(config_with(provider(defaultCacheDuration="12 hours")),
                 "defaultCacheDuration '12 hours': not a Go duration", id="bad-duration"),
    pytest.param(config_with(provider(
        apiVersion="credentialprovider.kubelet.k8s.io/v1beta1",
        tokenAttributes={"serviceAccountTokenAudience": "sts.amazonaws.com",
                         "cacheType": "ServiceAccount", "requireServiceAccount": False})),
        "tokenAttributes: only allowed with apiVersion credentialprovider.kubelet.k8s.io/v1",
        id="tokenAttributes-on-v1beta1"),
    pytest.param("kind: CredentialProviderConfig\nkind: CredentialProviderConfig\n",
                 "duplicated field 'kind'", id="duplicated-key"),
    pytest.param("providers: [\n", "not valid YAML/JSON", id="not-yaml"),
    pytest.param("- a list\n", "the document is not a mapping", id="not-a-mapping"),
])
def test_each_provider_config_mistake_fails_the_config_and_skips_the_rest(
        node: Node, doc: dict[str, Any] | str, needle: str):
    node.write_config(doc)
    node.executable()
    checks = node.check()
    assert statuses(checks) == [FAIL, SKIP, SKIP]
    check = checks["kubelet.config"]
    assert check.message.startswith(f"{node.config} would stop the kubelet from starting: ")
    assert needle in check.message
    assert any(needle in detail for detail in check.details)
    assert "strictly" in check.fix


def test_more_than_three_mistakes_are_counted_in_the_message_and_all_listed_in_details(
        node: Node):
    node.write_config({"kind": "X", "apiVersion": "v9", "a": 1, "b": 2, "providers": []})
    check = node.check()["kubelet.config"]
    assert len(check.details) == 5
    assert check.message.endswith(" (and 2 more)")
    assert all(detail not in check.message for detail in check.details[3:])


def test_a_missing_provider_config_fails_and_says_how_to_name_it(node: Node):
    checks = node.check()
    assert statuses(checks) == [FAIL, SKIP, SKIP]
    assert checks["kubelet.config"].message == (
        f"{node.config} (from flag --provider-config) does not exist")
    assert f"{CONFIG_FLAG}=<file>" in checks["kubelet.config"].fix
    assert DEFAULT_PROVIDER_CONFIG in checks["kubelet.config"].fix
    assert "--provider-config" in checks["kubelet.config"].fix


def test_an_unreadable_provider_config_fails_naming_why(node: Node):
    node.config.mkdir()
    checks = node.check()
    assert statuses(checks) == [FAIL, SKIP, SKIP]
    assert checks["kubelet.config"].message.startswith(f"cannot read {node.config}: ")


def test_a_missing_bin_dir_fails_the_provider_check(node: Node):
    node.write_config(GOOD)
    node.bin.rmdir()
    checks = node.check()
    assert statuses(checks) == [OK, FAIL, SKIP]
    assert checks["kubelet.provider"].message == (
        f"the bin dir {node.bin} (from flag --provider-bin-dir) does not exist")
    assert BIN_DIR_FLAG in checks["kubelet.provider"].fix


def test_a_provider_whose_executable_is_missing_fails_naming_where_it_looked(node: Node):
    node.write_config(GOOD)
    checks = node.check()
    assert statuses(checks) == [OK, FAIL, SKIP]
    check = checks["kubelet.provider"]
    assert check.message == (f"no provider of the config (ecrcred) is an ecrcred executable in "
                             f"{node.bin}")
    assert check.details == (f"ecrcred: {node.bin / 'ecrcred'} does not exist",)
    assert check.fix.startswith(f"link {node.bin}/ecrcred to the ecrcred executable")


def test_an_ecrcred_that_is_not_executable_fails_with_the_chmod(node: Node):
    node.write_config(GOOD)
    path = node.executable(mode=0o644)
    checks = node.check()
    assert statuses(checks) == [OK, FAIL, SKIP]
    assert checks["kubelet.provider"].message == f"{path} is not executable"
    assert checks["kubelet.provider"].fix == f"chmod 0755 {path}"


def test_a_symlink_to_this_ecrcred_is_recognised_through_self_path(node: Node, tmp_path: Path):
    installed = tmp_path / "opt" / "ecrcred-1.4.0"
    installed.parent.mkdir()
    installed.write_text("#!/bin/sh\n")
    installed.chmod(0o755)
    link = node.bin / "ecr-credential-provider"
    link.symlink_to(installed)
    node.write_config(config_with(provider(name="ecr-credential-provider")))
    checks = node.check(self_path=str(installed))
    assert statuses(checks) == [OK, OK, OK]
    assert checks["kubelet.provider"].details == (f"ecr-credential-provider: {link} -> "
                                                  f"{installed} (ecrcred)",)
    unrecognised = node.check(self_path=None)
    assert unrecognised["kubelet.provider"].status == FAIL, "another program by that name"


def test_a_symlink_to_any_file_named_ecrcred_is_recognised(node: Node, tmp_path: Path):
    real = tmp_path / "usr" / "bin" / "ecrcred"
    real.parent.mkdir(parents=True)
    real.write_text("#!/bin/sh\n")
    real.chmod(0o755)
    (node.bin / "ecr").symlink_to(real)
    node.write_config(config_with(provider(name="ecr")))
    assert statuses(node.check()) == [OK, OK, OK]


def test_the_ecrcred_provider_is_found_among_others(node: Node):
    other = provider(name="gcp-credential-provider", matchImages=["*.gcr.io"])
    node.write_config(config_with(other, provider()))
    node.executable("gcp-credential-provider")
    node.executable()
    checks = node.check()
    assert statuses(checks) == [OK, OK, OK]
    assert checks["kubelet.provider"].message.startswith("provider ecrcred runs ")


@pytest.mark.parametrize(("args", "status", "shown"), [
    pytest.param(None, OK, "", id="no-args"),
    pytest.param(["get-credentials"], OK, " get-credentials", id="get-credentials"),
    pytest.param(["get-credentials", "--timeout", "20"], OK, " get-credentials --timeout 20",
                 id="get-credentials-with-flags"),
    pytest.param(["pull-sandbox"], WARN, "", id="another-command"),
    pytest.param(["--config", "/etc/ecrcred.yaml"], WARN, "", id="flags-before-the-command"),
])
def test_provider_args_other_than_get_credentials_warn(
        node: Node, args: list[str] | None, status: str, shown: str):
    node.write_config(config_with(provider(args=args)))
    path = node.executable()
    check = node.check()["kubelet.provider"]
    assert check.status == status
    if status == OK:
        assert check.message == f"provider ecrcred runs {path}{shown}"
    else:
        assert check.message == f"provider ecrcred runs {path} with args [{' '.join(args or [])}]"
        assert "args: [get-credentials]" in check.fix


# -- matchImages ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("image", "suggested"), [
    pytest.param(ECR_IMAGE, "*.dkr.ecr.*.amazonaws.com", id="ecr"),
    pytest.param("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app",
                 "*.dkr.ecr.*.amazonaws.com.cn", id="ecr-china"),
    pytest.param("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/app",
                 "*.dkr.ecr-fips.*.amazonaws.com", id="ecr-fips"),
    pytest.param("123456789012.dkr-ecr.us-east-1.on.aws/app", "*.dkr-ecr.*.on.aws",
                 id="ecr-dual-stack"),
    pytest.param("123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov/app",
                 "*.dkr.ecr.*.c2s.ic.gov", id="ecr-iso"),
    pytest.param("public.ecr.aws/docker/library/alpine", "public.ecr.aws", id="ecr-public"),
    pytest.param("quay.example.com:8443/team/app", "quay.example.com:8443", id="other-host"),
])
def test_matchimages_not_covering_the_image_fails_with_a_pattern_that_would(
        node: Node, image: str, suggested: str):
    node.write_config(config_with(provider(matchImages=["registry.example.com"])))
    node.executable()
    check = node.check(image)["kubelet.match"]
    assert check.status == FAIL
    assert check.message == (f"no matchImages of provider ecrcred (registry.example.com) covers "
                             f"{image}")
    assert check.fix == f"add {suggested!r} to matchImages"
    assert glob_match(suggested, image), "the suggestion must cover the image"


def test_a_sandbox_image_not_covered_is_ok_because_the_kubelet_never_asks_for_it(node: Node):
    node.write_config(config_with(provider(matchImages=["registry.example.com"])))
    node.executable()
    check = node.check(is_sandbox=True)["kubelet.match"]
    assert check.status == OK
    assert check.message.startswith("no matchImages of provider ecrcred")
    assert check.message.endswith("; but the kubelet never asks providers for the sandbox "
                                  "image: the runtime pulls it alone (runtime.sandbox-image)")
    assert check.fix == ""


def test_a_covered_sandbox_image_still_gets_the_note(node: Node):
    node.write_config(GOOD)
    node.executable()
    check = node.check(is_sandbox=True)["kubelet.match"]
    assert check.status == OK
    assert "covers" in check.message and "never asks providers for the sandbox" in check.message


def test_another_provider_matching_the_image_is_mentioned(node: Node):
    other = provider(name="aws-ecr", matchImages=["*.dkr.ecr.us-west-2.amazonaws.com"])
    node.write_config(config_with(provider(), other))
    node.executable()
    check = node.check()["kubelet.match"]
    assert check.status == OK
    assert check.message.endswith("; also matched by aws-ecr: the kubelet runs each matching "
                                  "provider")


def test_another_provider_matching_an_uncovered_image_is_mentioned_in_the_failure(node: Node):
    other = provider(name="aws-ecr", matchImages=["*.dkr.ecr.*.amazonaws.com"])
    node.write_config(config_with(provider(matchImages=["registry.example.com"]), other))
    node.executable()
    check = node.check()["kubelet.match"]
    assert check.status == FAIL
    assert "also matched by aws-ecr" in check.message


def test_a_kubelet_glob_does_not_cover_a_port_the_pattern_lacks(node: Node):
    node.write_config(GOOD)
    node.executable()
    assert node.check("registry.example.com:5000/app")["kubelet.match"].status == FAIL


def test_the_executable_bit_is_what_counts_for_root_too(node: Node):
    # root may read anything, but X_OK still needs an execute bit
    node.write_config(GOOD)
    path = node.executable(mode=0o600)
    assert not os.access(path, os.X_OK)
    assert node.check()["kubelet.provider"].status == FAIL


def test_a_fifo_as_the_provider_config_is_reported_unreadable_not_waited_on(node: Node) -> None:
    import threading

    os.mkfifo(node.config)
    found: list[dict[str, Check]] = []
    thread = threading.Thread(target=lambda: found.append(node.check()), daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "doctor blocked on a FIFO"
    config = found[0]["kubelet.config"]
    assert (config.status, config.message) == (FAIL, f"cannot read {node.config}: not a regular "
                                                     "file")
