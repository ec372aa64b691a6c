"""Sandbox image references in every form, against real containerd 1.6, 1.7 and 2.1.

The sandbox image may be configured without a tag, as Docker Hub shorthand, by digest, or with a
tag and a digest. containerd stores each under one normalized name (``ImageRef.stored``), and
only that name answers ``ImageStatus``, carries the pin label and is what GC counts: a keeper
that asked for the name as written would pull on every check, or pin nothing. These tests run
the real ``ecrcred pull-sandbox`` on each form (the image absent, then removed under
``--watch``) and record, per generation, when containerd pins the sandbox image itself, which is
what ``doctor``'s ``runtime.sandbox-pin`` warning claims.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from pathlib import Path

import pytest

from ecrcred.cri.client import Auth, GrpcRuntime
from tests.support.aws import AwsStandIn, wait_until
from tests.support.containerd import Runtime
from tests.support.processes import Process
from tests.support.references import (
    FORMS,
    Form,
    doctor,
    push_form_images,
    report_lines,
    sandbox_containerd,
    seen,
    static_rule_for,
)
from tests.support.registry import Registry
from tests.support.sandbox import images, pull_sandbox
from tests.support.stack import REGISTRY_PASSWORD, REGISTRY_USER

# every test with a containerd runs against each generation (tests/conftest.py)
CONTAINERD_GENERATIONS = ("1.6", "1.7", "2.1")


def containerd_pins(runtime: Runtime, configured: str, stored: str) -> bool:
    """Whether containerd itself labels the sandbox image pinned when its CRI pulls it, as
    measured by ``test_containerd_pins_the_sandbox_image_itself_only_as_measured``:

    - 1.6.20 (Debian 12) never: label pins came with 1.6.22;
    - 1.7.24 always: it normalizes ``sandbox_image`` before comparing it with the stored name;
    - 2.1.9 only when ``pinned_images.sandbox`` is written exactly as the stored name.
    """
    if runtime.major_minor >= (2, 0):
        return configured == stored
    return runtime.major_minor >= (1, 7)


@pytest.fixture(scope="module")
def digests(registry: Registry) -> dict[tuple[str, str], str]:
    return push_form_images(registry)


def credentials_env(form: Form, node_env: Mapping[str, str], directory: Path,
                    registry: Registry) -> dict[str, str]:
    """ECR forms get their token from moto; the others a static rule for the registry."""
    return dict(node_env) if form.ecr else {**node_env, **static_rule_for(directory, registry)}


@pytest.mark.parametrize("form", FORMS, ids=[f.id for f in FORMS])
def test_each_form_is_pulled_pinned_and_restored_under_the_name_containerd_stores(
        form: Form, ecrcred_bin: str, containerd_runtime: Runtime, registry: Registry,
        digests: dict[tuple[str, str], str], node_env: dict[str, str], aws: AwsStandIn,
        tmp_path: Path) -> None:
    configured, stored = form.names(registry, digests)
    env = credentials_env(form, node_env, tmp_path, registry)
    with sandbox_containerd(configured, containerd_runtime, registry) as containerd:
        assert not seen(containerd, stored).present
        result = pull_sandbox(ecrcred_bin, containerd, env, "--output", "json")
        assert result.returncode == 0, result.stderr.decode()
        # the pin follows the stored name: containerd's own label when it set one at the pull
        pin = ("already-pinned" if containerd_pins(containerd_runtime, configured, stored)
               else "pinned")
        actions = [(a["action"], a["image"]) for a in report_lines(result.stdout.decode())]
        assert actions == [("pulled", stored), (pin, stored)], result.stderr.decode()
        now = seen(containerd, stored)
        assert now.present and stored in now.names, now
        assert now.labelled, now
        # 1.6.20 does not read the label (it came with 1.6.22): its CRI says pinned: false
        assert now.cri_pinned == (containerd_runtime.major_minor >= (1, 7)), now
        names = images(containerd)
        assert stored in names
        assert configured == stored or configured not in names, names
        assert aws.calls("GetAuthorizationToken") == (1 if form.ecr else 0)

        log = tmp_path / "watch.log"
        watcher = Process([ecrcred_bin, "pull-sandbox", "--watch", "--interval", "30",
                           "--output", "json", "--containerd-config", containerd.config_path,
                           "--runtime-endpoint", containerd.endpoint], str(log), env=env)
        try:
            watcher.wait_for(lambda: ("already-pinned", stored) in [
                (a["action"], a["image"]) for a in report_lines(log.read_text())], 30,
                "pull-sandbox --watch")
            containerd.ctr("images", "rm", stored, check=True)
            assert wait_until(lambda: any(a["action"] == "pulled" for a in
                                          report_lines(log.read_text())), 15), \
                watcher.log_tail()
            pulled = [a for a in report_lines(log.read_text()) if a["action"] == "pulled"]
            assert [(a["image"], a["reason"]) for a in pulled] == [(stored, "image deleted")]
            # the pin follows the pull by a few milliseconds: wait for it, do not race it
            assert wait_until(lambda: seen(containerd, stored).labelled, 5), watcher.log_tail()
            again = seen(containerd, stored)
            assert again.present and stored in again.names, again
            os.kill(watcher.pid, signal.SIGTERM)
            assert watcher.popen.wait(10) == 0
        finally:
            watcher.stop()
        assert not any(a["action"] == "failed" for a in report_lines(log.read_text())), \
            log.read_text()


# Each form as written and, where it differs, as containerd stores it: the value written in
# the config (``sandbox_image`` in 1.x, ``pinned_images.sandbox`` in 2.x).
SPELLINGS = [(form, "written") for form in FORMS] + [
    (form, "stored") for form in FORMS if form.configured != form.stored]


def spelled(form: Form, spelling: str, registry: Registry,
            digests: dict[tuple[str, str], str]) -> tuple[str, str]:
    """(the value configured, the name containerd stores the image under)."""
    configured, stored = form.names(registry, digests)
    return (configured if spelling == "written" else stored), stored


@pytest.mark.parametrize(("form", "spelling"), SPELLINGS,
                         ids=[f"{f.id}-{s}" for f, s in SPELLINGS])
def test_containerd_pins_the_sandbox_image_itself_only_as_measured(
        form: Form, spelling: str, containerd_runtime: Runtime, registry: Registry,
        digests: dict[tuple[str, str], str]) -> None:
    value, stored = spelled(form, spelling, registry, digests)
    with sandbox_containerd(value, containerd_runtime, registry) as containerd:
        # the CRI pull containerd makes itself for a pod sandbox: the configured value, no pin
        # of ecrcred's
        runtime = GrpcRuntime(containerd.endpoint)
        try:
            runtime.pull_image(value, Auth(REGISTRY_USER, REGISTRY_PASSWORD), timeout=60)
        finally:
            runtime.close()
        now = seen(containerd, stored)
        expected = containerd_pins(containerd_runtime, value, stored)
        print(f"containerd {containerd_runtime.version}: sandbox {value!r} stored as {stored}: "
              f"CRI pinned {now.cri_pinned}, label {now.labelled}")
        assert now.present and stored in now.names, now
        assert (now.cri_pinned, now.labelled) == (expected, expected), now


@pytest.mark.parametrize(("form", "spelling"), SPELLINGS,
                         ids=[f"{f.id}-{s}" for f, s in SPELLINGS])
def test_doctor_warns_of_the_sandbox_pin_exactly_when_containerd_2_will_not_pin_it(
        form: Form, spelling: str, ecrcred_bin: str, containerd_runtime: Runtime,
        registry: Registry, digests: dict[tuple[str, str], str], node_env: dict[str, str]
        ) -> None:
    value, stored = spelled(form, spelling, registry, digests)
    with sandbox_containerd(value, containerd_runtime, registry) as containerd:
        checks = doctor(ecrcred_bin, containerd, node_env)
    # 2.x pins only the exact stored name, and doctor warns of every other value; 1.7
    # normalizes the value (it pins), 1.6.20 pins nothing whatever the value (doctor says so
    # in runtime.sandbox-image, not here)
    unpinned = (containerd_runtime.major_minor >= (2, 0)
                and not containerd_pins(containerd_runtime, value, stored))
    pin = checks.get("runtime.sandbox-pin")
    if unpinned:
        assert pin is not None and pin["status"] == "warn", checks
        assert f"stores that image as {stored}" in pin["message"], pin
        assert pin["fix"] == f'write pinned_images.sandbox = "{stored}"', pin
    else:
        assert pin is None, checks
