"""``diagnose`` wires the areas in the order a pull meets them, with every collaborator a fake:
--skip, a broken ecrcred config, an unreachable runtime, the sandbox image, and what one area
hands the next (credentials to the registry, the runtime version to the media-type verdict)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ecrcred.config.rules import defaults
from ecrcred.containerd_config import ContainerdConfig, Found
from ecrcred.cri.client import ImageInfo, RuntimeVersion
from ecrcred.doctor import AREAS, Collaborators, Options, diagnose
from ecrcred.doctor.report import FAIL, OK, SKIP, WARN, Check, Report
from ecrcred.doctor.runtime import load_containerd_config
from ecrcred.doctor.transport import HttpReply
from ecrcred.errors import ConfigError, RuntimeServiceError, UsageError
from ecrcred.router import Router, SourceFactory
from ecrcred.settings import Setting
from tests.unit.fakes import DictCache, FakeClock, FakeHttp, FakeRuntime, RecordingLogger

HOST = "registry.example.com"
IMAGE = f"{HOST}/team/app:1.0"
CONTAINERD_14 = RuntimeVersion("containerd", "1.4.13", "v1alpha2")
CRI_O = RuntimeVersion("cri-o", "1.29.1", "v1")


def open_registry(config: str = "application/vnd.docker.container.image.v1+json") -> FakeHttp:
    """A registry without auth, at any address, serving one image whose config is ``config``."""

    def serve(url: str) -> HttpReply:
        if url.endswith("/v2/"):
            return HttpReply(200, {}, b"{}")
        media_type = "application/vnd.docker.distribution.manifest.v2+json"
        doc = {"schemaVersion": 2, "mediaType": media_type,
               "config": {"mediaType": config, "digest": "sha256:" + "c" * 64, "size": 1},
               "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                           "digest": "sha256:" + "d" * 64, "size": 1}]}
        return HttpReply(200, {"content-type": media_type}, json.dumps(doc).encode())

    return FakeHttp(otherwise=serve)


def never(what: str) -> Any:
    def called() -> Any:
        raise AssertionError(f"{what} must not be built")

    return called


def router() -> Router:
    log = RecordingLogger()
    return Router(SourceFactory(defaults(), {}, FakeClock(), log, cwd="/"), log)


def options(tmp_path: Path, image: str = IMAGE, skip: frozenset[str] = frozenset(),
            containerd_config: Path | None = None) -> Options:
    return Options(
        image=image, image_origin="--image",
        containerd_config=Setting(str(containerd_config or tmp_path / "no-containerd.toml"),
                                  "flag --containerd-config"),
        runtime_endpoint="unix:///run/containerd/containerd.sock",
        provider_config=Setting(str(tmp_path / "no-provider.yaml"), "default"),
        provider_bin_dir=Setting(str(tmp_path / "no-bin"), "default"),
        self_path=None, timeout=5.0, skip=skip, platform=("linux", "amd64"))


def collaborators(tmp_path: Path, **changes: Any) -> Collaborators:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return Collaborators(router=router, cache=DictCache(),
                         runtime=lambda: FakeRuntime(CONTAINERD_14), http=open_registry(),
                         running=[], env={"HOME": str(home)}, clock=FakeClock(),
                         log=RecordingLogger())._replace(**changes)


def run(opts: Options, c: Collaborators, sandbox: str | None = None) -> Report:
    """``diagnose`` with containerd's config read from ``opts`` as the CLI reads it; with
    ``sandbox``, a config that names that sandbox image instead."""
    containerd = load_containerd_config(opts.containerd_config.value)
    if sandbox is not None:
        file = "/etc/containerd/config.toml"
        containerd = ContainerdConfig((file,), Found(sandbox, file, 2), None, None)
    return diagnose(opts, containerd, c)


def by_id(checks: tuple[Check, ...]) -> dict[str, Check]:
    return {c.id: c for c in checks}


def test_every_area_skipped_gives_a_skip_per_check_and_builds_nothing(tmp_path: Path):
    http = open_registry()
    report = run(options(tmp_path, skip=frozenset(AREAS)),
                 collaborators(tmp_path, router=never("the router"),
                               runtime=never("the runtime"), http=http))
    assert [(c.id, c.status) for c in report.checks] == [
        ("credentials.rule", SKIP), ("credentials.token", SKIP),
        ("kubelet.config", SKIP), ("kubelet.provider", SKIP), ("kubelet.match", SKIP),
        ("runtime.containerd-config", SKIP), ("runtime.registry-config", SKIP),
        ("runtime.cri", SKIP), ("runtime.image", SKIP),
        ("registry.endpoint", SKIP),
        ("environment.home", SKIP), ("environment.docker-config", SKIP),
    ]
    assert {c.message for c in report.checks if c.id.startswith("kubelet.")} == {
        "skipped by --skip kubelet"}
    assert http.urls() == []
    assert not report.failed


@pytest.mark.parametrize("area", AREAS)
def test_skipping_one_area_leaves_the_others_checked(tmp_path: Path, area: str):
    report = run(options(tmp_path, skip=frozenset({area})), collaborators(tmp_path))
    skipped = {c.id.split(".")[0] for c in report.checks if c.message == f"skipped by --skip "
               f"{area}"}
    assert skipped == {area}
    areas_seen = [c.id.split(".")[0] for c in report.checks]
    assert sorted(set(areas_seen), key=areas_seen.index) == list(AREAS), "in the pull's order"


def test_an_invalid_ecrcred_config_fails_credentials_and_the_rest_still_runs(tmp_path: Path):
    def broken() -> Router:
        raise ConfigError("/etc/ecrcred/config.yaml: registries[0]: unknown field 'mach'",
                          hint="fix the config")

    report = run(options(tmp_path), collaborators(tmp_path, router=broken))
    checks = by_id(report.checks)
    assert checks["credentials.config"] == Check(
        "credentials.config", FAIL, "/etc/ecrcred/config.yaml: registries[0]: unknown field "
        "'mach'", "fix the config")
    assert checks["credentials.rule"] == Check("credentials.rule", SKIP,
                                               "the ecrcred config is invalid")
    assert checks["registry.auth"].status == OK, "the registry is still tried, anonymously"
    assert report.failed


def test_the_runtime_version_reaches_the_media_type_verdict(tmp_path: Path):
    octet = "application/octet-stream"
    on_14 = by_id(run(options(tmp_path), collaborators(
        tmp_path, http=open_registry(octet), runtime=lambda: FakeRuntime(CONTAINERD_14))).checks)
    on_crio = by_id(run(options(tmp_path), collaborators(
        tmp_path, http=open_registry(octet), runtime=lambda: FakeRuntime(CRI_O))).checks)
    assert on_14["registry.media-types"].status == FAIL
    assert on_crio["registry.media-types"].status == WARN
    assert "cri-o 1.29.1" in on_crio["registry.media-types"].message


def test_without_the_runtime_area_the_version_is_unknown_to_the_registry(tmp_path: Path):
    report = run(options(tmp_path, skip=frozenset({"runtime"})), collaborators(
        tmp_path, http=open_registry("application/octet-stream"), runtime=never("the runtime")))
    check = by_id(report.checks)["registry.media-types"]
    assert "the runtime (version unknown)" in check.message


def test_a_runtime_that_cannot_be_built_fails_the_cri_check(tmp_path: Path):
    def unreachable() -> FakeRuntime:
        raise RuntimeServiceError("cannot reach the container runtime", hint="is it running?")

    checks = by_id(run(options(tmp_path), collaborators(tmp_path, runtime=unreachable)).checks)
    assert checks["runtime.cri"] == Check("runtime.cri", FAIL,
                                          "cannot reach the container runtime", "is it running?")
    assert "registry.endpoint" in checks


def test_the_runtime_is_closed_after_its_checks(tmp_path: Path):
    runtime = FakeRuntime(CONTAINERD_14)
    run(options(tmp_path), collaborators(tmp_path, runtime=lambda: runtime))
    assert runtime.closed


def test_the_sandbox_image_is_recognised_however_it_is_spelled(tmp_path: Path):
    runtime = FakeRuntime(CONTAINERD_14, images={"docker.io/library/pause:3.9": ImageInfo(
        "sha256:" + "e" * 64, (), (), 1, pinned=True)})
    report = run(options(tmp_path, image="pause:3.9", skip=frozenset({"registry"})),
                 collaborators(tmp_path, runtime=lambda: runtime), "docker.io/library/pause:3.9")
    checks = by_id(report.checks)
    assert checks["runtime.sandbox-image"].status == OK
    assert "runtime.image" not in checks


def test_an_image_that_is_not_the_sandbox_gets_the_plain_image_check(tmp_path: Path):
    checks = by_id(run(options(tmp_path, skip=frozenset({"registry"})), collaborators(tmp_path),
                       "docker.io/library/pause:3.9").checks)
    assert checks["runtime.image"].status == OK
    assert "runtime.sandbox-image" not in checks


def test_the_containerd_registry_route_is_what_the_registry_probe_follows(tmp_path: Path):
    certs = tmp_path / "certs.d"
    (certs / HOST).mkdir(parents=True)
    (certs / HOST / "hosts.toml").write_text('[host."https://mirror.example.com"]\n')
    config = tmp_path / "config.toml"
    config.write_text('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
                      f'config_path = "{certs}"\n')
    http = open_registry()
    report = run(options(tmp_path, containerd_config=config, skip=frozenset({"runtime"})),
                 collaborators(tmp_path, http=http))
    assert http.urls()[0] == "https://mirror.example.com/v2/"
    assert http.urls()[1] == f"https://mirror.example.com/v2/team/app/manifests/1.0?ns={HOST}"
    assert by_id(report.checks)["registry.endpoint"].message.startswith(
        "https://mirror.example.com served")


def test_an_image_that_is_not_a_reference_is_a_usage_error(tmp_path: Path):
    with pytest.raises(UsageError) as caught:
        run(options(tmp_path, image="Not An/Image"), collaborators(tmp_path))
    assert "invalid image reference" in caught.value.message
    assert "--image" in caught.value.hint


def test_the_report_names_the_image_and_where_it_came_from(tmp_path: Path):
    report = run(options(tmp_path, skip=frozenset(AREAS)), collaborators(tmp_path))
    assert (report.image, report.image_origin) == (IMAGE, "--image")
