"""Sandbox image references in every form an operator may write, for test_references.py.

The form decides the name containerd stores the image under (its ``ParseDockerRef``), and that
name is the one the CRI answers ``ImageStatus`` for, the one GC counts and the one the pin label
lives on. Each ``Form`` says what is configured, what containerd stores, which repository and tag
of the test registry serve it, and whether ECR (moto) or a static rule gives the credentials.

Every host a form names is routed to the one test registry with a hosts.toml under the
containerd's ``config_path``: the ECR host, ``docker.io`` (so Docker Hub shorthand is pulled from
the registry's ``library/`` paths, with no network), ``localhost`` and the registry's own
``127.0.0.1:PORT`` (its CA). Each image is pushed with content of its own, so a digest form
cannot be satisfied by the stack's ``eks/pause:3.9``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ecrcred.cri.client import PINNED_LABEL, PINNED_VALUE, GrpcRuntime
from tests.support.containerd import Containerd, Runtime
from tests.support.registry import Registry
from tests.support.sandbox import static_rule
from tests.support.stack import ECR_HOST


@dataclass(frozen=True)
class Form:
    """One way to write the sandbox image. ``configured`` and ``stored`` are templates with
    ``{ecr}``, ``{registry}`` (127.0.0.1:PORT) and ``{digest}`` (of ``repo:tag`` as pushed)."""

    id: str
    configured: str
    stored: str
    repo: str
    tag: str
    ecr: bool  # credentials from moto's ECR; else the static rule of ``static_rule_for``

    def names(self, registry: Registry, digests: Mapping[tuple[str, str], str]
              ) -> tuple[str, str]:
        """(configured, stored) for this registry and what was pushed to it."""
        values = {"ecr": ECR_HOST, "registry": registry.host,
                  "digest": digests[(self.repo, self.tag)]}
        return self.configured.format(**values), self.stored.format(**values)


FORMS = (
    Form("tagless-ecr", "{ecr}/eks/pause", "{ecr}/eks/pause:latest", "eks/pause", "latest",
         ecr=True),
    Form("tagless-localhost", "localhost/kubernetes/pause", "localhost/kubernetes/pause:latest",
         "kubernetes/pause", "latest", ecr=False),
    Form("tagless-host-port", "{registry}/eks/pause", "{registry}/eks/pause:latest",
         "eks/pause", "latest", ecr=False),
    Form("docker-hub-shorthand", "pause:3.10", "docker.io/library/pause:3.10",
         "library/pause", "3.10", ecr=False),
    Form("digest", "{ecr}/eks/pause@{digest}", "{ecr}/eks/pause@{digest}", "eks/pause", "3.10",
         ecr=True),
    # containerd's ParseDockerRef drops a tag beside a digest
    Form("tag-and-digest", "{ecr}/eks/pause:3.10@{digest}", "{ecr}/eks/pause@{digest}",
         "eks/pause", "3.10", ecr=True),
)


def push_form_images(registry: Registry) -> dict[tuple[str, str], str]:
    """Push every ``repo:tag`` the forms need, each with its own content; their digests."""
    digests = {}
    for repo, tag in sorted({(f.repo, f.tag) for f in FORMS}):
        content = f"#!/bin/sh\n# ecrcred reference test {repo}:{tag}\nexit 0\n".encode()
        digests[(repo, tag)] = registry.push_test_image(repo, tag, content=content)
    return digests


@contextlib.contextmanager
def sandbox_containerd(sandbox_image: str, runtime: Runtime, registry: Registry
                       ) -> Iterator[Containerd]:
    """A fresh containerd of ``runtime`` whose config names ``sandbox_image`` (``sandbox_image``
    in 1.x, ``pinned_images.sandbox`` in 2.x), every form's host routed to ``registry``.
    Stopped by pid and its directory removed afterwards; shims left behind fail the test."""
    workdir = Path(tempfile.mkdtemp(prefix="ecd-", dir="/tmp"))
    try:
        containerd = Containerd(workdir, sandbox_image, runtime=runtime)
        try:
            for host in (ECR_HOST, "docker.io", "localhost", registry.host):
                containerd.add_mirror(host, registry)
            yield containerd
        finally:
            leftover = containerd.stop()
        assert not leftover, f"containerd left shims behind (killed): {leftover}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def static_rule_for(directory: Path, registry: Registry) -> dict[str, str]:
    """The environment for an ecrcred config giving the registry's user and password to every
    non-ECR host a form names (they all lead to that registry)."""
    return static_rule(directory, ["docker.io", "localhost", registry.host])


@dataclass(frozen=True)
class Seen:
    """What the runtime says of one name: the CRI's view and containerd's own record."""

    present: bool  # the CRI's ImageStatus finds it
    cri_pinned: bool  # the CRI's ``pinned``
    labelled: bool  # containerd's record of that name carries io.cri-containerd.pinned=pinned
    names: tuple[str, ...]  # the CRI's repo_tags and repo_digests


def seen(containerd: Containerd, name: str) -> Seen:
    runtime = GrpcRuntime(containerd.endpoint)
    try:
        info = runtime.image_status(name)
        labels = runtime.labels(name) or {}
    finally:
        runtime.close()
    return Seen(info is not None, info is not None and info.pinned,
                labels.get(PINNED_LABEL) == PINNED_VALUE,
                () if info is None else (*info.repo_tags, *info.repo_digests))


def report_lines(text: str) -> list[dict[str, str]]:
    """The JSON report lines of ``pull-sandbox --output json`` among log lines; a last line
    still being written (no newline yet) is left for the next read."""
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.startswith("{")]


def doctor(binary: str, containerd: Containerd, env: Mapping[str, str]
           ) -> dict[str, dict[str, str]]:
    """``ecrcred doctor --output json`` on ``containerd``'s config and socket, the runtime area
    only (what it says about the sandbox image); its checks by id."""
    done = subprocess.run(
        [binary, "doctor", "--output", "json", "--containerd-config", containerd.config_path,
         "--runtime-endpoint", containerd.endpoint, "--timeout", "5", "--skip", "kubelet",
         "--skip", "registry", "--skip", "credentials", "--skip", "environment"],
        env=dict(env), capture_output=True, timeout=60, check=False)
    err = done.stderr.decode()
    assert done.returncode in (0, 1) and "Traceback" not in err, (done.returncode, err)
    return {c["id"]: c for c in json.loads(done.stdout)["checks"]}
