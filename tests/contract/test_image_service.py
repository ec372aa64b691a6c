"""The ``ImageService`` and ``ContainerdImages`` contract, run against every implementation.

The sandbox keeper (``ecrcred.sandbox``) relies on exactly these properties: an absent image has
no status and no labels; a pull makes the image present under its name, with the id the pull
returned; a label set on it reads back; a removal makes it absent again; a pull the registry
refuses raises ``PullError`` (a ``RuntimeServiceError``) and leaves the image absent.

The implementations: ``GrpcRuntime`` against a real containerd (marked ``e2e``: it starts
containerd and a registry, and pulls through the hosts.toml mirror the ``containerd`` fixture
writes, with the registry's own credentials), and ``FakeImageService``, the keeper's unit tests'
fake. What the fake does beyond this (scripted outcomes, labels that outlive a removal) is the
unit tests' business, not the contract's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

import pytest

from ecrcred.cri.client import PINNED_LABEL, PINNED_VALUE, Auth, GrpcRuntime
from ecrcred.errors import PullError, RuntimeServiceError
from ecrcred.seams import ContainerdImages, ImageService
from tests.support.stack import REGISTRY_PASSWORD, REGISTRY_USER, SANDBOX_IMAGE
from tests.unit.fakes import FakeImageService

PULL_TIMEOUT = 120.0


class Both(ImageService, ContainerdImages, Protocol):
    """What the keeper is given when it pins: one object serving both seams."""


class Subject(NamedTuple):
    runtime: Both
    image: str  # an image the registry serves with ``auth``
    auth: Auth
    refused: Auth  # credentials the registry refuses
    refuse_next_pull: Callable[[], None]  # arranges that a pull with ``refused`` is refused


def _fake() -> Subject:
    fake = FakeImageService(SANDBOX_IMAGE)

    def refuse() -> None:
        fake.outcomes.append(PullError("401 Unauthorized", detail="401 Unauthorized",
                                       code="PULL_UNKNOWN", status="UNKNOWN"))

    return Subject(fake, SANDBOX_IMAGE, Auth(REGISTRY_USER, REGISTRY_PASSWORD),
                   Auth(REGISTRY_USER, "not-the-password"), refuse)


def _containerd(request: pytest.FixtureRequest) -> Iterator[Subject]:
    containerd = request.getfixturevalue("containerd")
    runtime = GrpcRuntime(containerd.endpoint)
    try:
        yield Subject(runtime, SANDBOX_IMAGE, Auth(REGISTRY_USER, REGISTRY_PASSWORD),
                      Auth(REGISTRY_USER, "not-the-password"), lambda: None)
    finally:
        runtime.close()


@pytest.fixture(params=["fake", pytest.param("containerd", marks=pytest.mark.e2e)])
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    if request.param == "fake":
        yield _fake()
    else:
        yield from _containerd(request)


def test_an_absent_image_has_no_status_and_no_labels(subject: Subject):
    assert subject.runtime.image_status(subject.image) is None
    assert subject.runtime.labels(subject.image) is None


def test_a_pulled_image_is_present_labelled_and_removed(subject: Subject):
    runtime, image = subject.runtime, subject.image
    ref = runtime.pull_image(image, subject.auth, PULL_TIMEOUT)
    assert ref.startswith("sha256:")
    info = runtime.image_status(image)
    assert info is not None
    assert info.id == ref
    assert image in info.repo_tags

    labels = runtime.labels(image)
    assert labels is not None and PINNED_LABEL not in labels
    runtime.set_label(image, PINNED_LABEL, PINNED_VALUE)
    labels = runtime.labels(image)
    assert labels is not None and labels[PINNED_LABEL] == PINNED_VALUE

    runtime.remove_image(image)
    assert runtime.image_status(image) is None
    assert runtime.labels(image) is None


def test_a_refused_pull_raises_pull_error_and_leaves_the_image_absent(subject: Subject):
    subject.refuse_next_pull()
    with pytest.raises(PullError) as raised:
        subject.runtime.pull_image(subject.image, subject.refused, PULL_TIMEOUT)
    assert isinstance(raised.value, RuntimeServiceError)
    assert subject.refused.password not in str(raised.value)
    assert subject.runtime.image_status(subject.image) is None
