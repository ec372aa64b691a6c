"""Image archives (``pull-sandbox --archive``): both formats, hostile tarballs, the reference
lookup; the containerd importer's pure parts and its error on a runtime that is not containerd;
the keeper importing instead of pulling."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from concurrent import futures
from pathlib import Path

import pytest

from ecrcred.cri import archive as archive_mod
from ecrcred.cri.archive import OCI_LAYER, OCI_MANIFEST, Archive, node_arch
from ecrcred.cri.client import Auth
from ecrcred.cri.containerd_api import ContainerdImporter, chain_ids, snapshotter_from_status
from ecrcred.errors import ArchiveError, PullError, RuntimeServiceError
from ecrcred.sandbox import Action, PullCredentials, RetryPolicy, SandboxKeeper
from tests.unit.fakes import FakeClock, FakeImageService, RecordingLogger

LOCAL = "localhost/kubernetes/pause:latest"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(content: bytes = b"#!/bin/sh\nexit 0\n") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("pause")
        info.size, info.mode = len(content), 0o755
        tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def config_for(*diff_ids: str) -> bytes:
    return json.dumps({"architecture": node_arch(), "os": "linux",
                       "rootfs": {"type": "layers", "diff_ids": list(diff_ids)}}).encode()


Member = tuple[str, bytes] | tarfile.TarInfo


def write_tar(path: Path, members: list[Member], mode: int = 0o644) -> Path:
    with tarfile.open(path, "w") as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
                continue
            name, data = m
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.chmod(mode)
    return path


def oci_members(ref_names: dict[str, str] | None = None, *, compressed: bool = True,
                platform_index: bool = False) -> list[Member]:
    tar_bytes = layer_tar()
    layer = gzip.compress(tar_bytes, mtime=0) if compressed else tar_bytes
    config = config_for(digest(tar_bytes))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER + ("+gzip" if compressed else ""),
                    "digest": digest(layer), "size": len(layer)}],
    }).encode()
    blobs = [config, layer, manifest]
    top = {"mediaType": OCI_MANIFEST, "digest": digest(manifest), "size": len(manifest)}
    if platform_index:
        index = json.dumps({"schemaVersion": 2, "manifests": [
            {**top, "digest": "sha256:" + "0" * 64,
             "platform": {"os": "linux", "architecture": "mips"}},
            {**top, "platform": {"os": "linux", "architecture": node_arch()}},
        ]}).encode()
        blobs.append(index)
        top = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest(index),
               "size": len(index)}
    names = ref_names if ref_names is not None else {"io.containerd.image.name": LOCAL,
                                                    "org.opencontainers.image.ref.name": "latest"}
    return [
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ("index.json", json.dumps({"schemaVersion": 2, "manifests": [
            {**top, "annotations": names}]}).encode()),
        *[(f"blobs/sha256/{digest(b)[7:]}", b) for b in blobs],
    ]


def docker_members(tags: list[str] | None = None, *, bad_diff_id: bool = False,
                   compressed: bool = False) -> list[Member]:
    tar_bytes = layer_tar()
    layer = gzip.compress(tar_bytes, mtime=0) if compressed else tar_bytes
    config = config_for(digest(b"other" if bad_diff_id else tar_bytes))
    config_name = digest(config)[7:] + ".json"
    link = tarfile.TarInfo("legacyid/layer.tar")
    link.type, link.linkname = tarfile.SYMTYPE, "../layer0.tar"
    return [
        ("manifest.json", json.dumps([{"Config": config_name,
                                       "RepoTags": tags if tags is not None else [LOCAL],
                                       "Layers": ["layer0.tar"]}]).encode()),
        (config_name, config),
        ("layer0.tar", layer),
        link,  # the legacy layout's symlink, never read
    ]


def test_an_oci_layout_resolves_by_full_name_and_its_blobs_verify(tmp_path):
    path = write_tar(tmp_path / "a.tar", oci_members())
    with Archive(str(path)) as a:
        assert a.kind == "oci"
        assert a.references() == [LOCAL]
        image = a.find(LOCAL)
        assert image.name == LOCAL
        assert len(image.layers) == 1 and image.layers[0].media_type.endswith("+gzip")
        assert image.diff_ids == (digest(layer_tar()),)
        for blob in (image.manifest, image.config, *image.layers):
            assert digest(b"".join(a.chunks(blob))) == blob.digest


def test_an_oci_layout_entry_named_by_a_bare_tag_matches_that_tag(tmp_path):
    path = write_tar(tmp_path / "a.tar", oci_members({"org.opencontainers.image.ref.name":
                                                      "latest"}))
    with Archive(str(path)) as a:
        assert a.find(LOCAL).name == LOCAL
        with pytest.raises(ArchiveError, match="does not hold"):
            a.find("localhost/kubernetes/pause:3.10")


def test_an_oci_index_resolves_to_the_nodes_platform(tmp_path):
    path = write_tar(tmp_path / "a.tar", oci_members(platform_index=True))
    with Archive(str(path)) as a:
        assert a.find(LOCAL).manifest.media_type == OCI_MANIFEST


@pytest.mark.parametrize("compressed", [False, True])
def test_a_docker_archive_gets_a_manifest_written_for_it(tmp_path, compressed):
    path = write_tar(tmp_path / "d.tar", docker_members(compressed=compressed))
    with Archive(str(path)) as a:
        assert a.kind == "docker"
        assert a.references() == [LOCAL]
        image = a.find(LOCAL)
        manifest = json.loads(b"".join(a.chunks(image.manifest)))
        assert manifest["mediaType"] == OCI_MANIFEST
        assert manifest["layers"][0]["digest"] == image.layers[0].digest
        assert image.layers[0].media_type == OCI_LAYER + ("+gzip" if compressed else "")
        assert b"".join(a.chunks(image.layers[0])).startswith(
            b"\x1f\x8b" if compressed else b"pause")


def test_a_docker_archive_whose_layer_is_not_its_diff_id_is_refused(tmp_path):
    path = write_tar(tmp_path / "d.tar", docker_members(bad_diff_id=True))
    with Archive(str(path)) as a, pytest.raises(ArchiveError, match="not the config's diff ID"):
        a.find(LOCAL)


@pytest.mark.parametrize("members", [oci_members, docker_members])
def test_a_missing_reference_lists_the_references_held(tmp_path, members):
    path = write_tar(tmp_path / "x.tar", members())
    with Archive(str(path)) as a, pytest.raises(ArchiveError) as caught:
        a.find("registry.k8s.io/pause:3.9")
    line = caught.value.one_line()
    assert "does not hold registry.k8s.io/pause:3.9" in line and LOCAL in line
    assert caught.value.code == "ARCHIVE_NO_IMAGE" and caught.value.exit_code == 4


def _link(name: str, target: str, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = (tarfile.LNKTYPE if hard else tarfile.SYMTYPE), target
    return info


def _device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    return info


@pytest.mark.parametrize(("extra", "words"), [
    ([("/etc/passwd", b"x")], "outside the archive"),
    ([("../escape", b"x")], "outside the archive"),
    ([("blobs/../../x", b"x")], "outside the archive"),
    ([_device("dev/null")], "special file"),
    ([("index.json", b"{}")], "two members named"),
])
def test_hostile_members_refuse_the_whole_archive(tmp_path, extra, words):
    path = write_tar(tmp_path / "h.tar", oci_members() + extra)
    with pytest.raises(ArchiveError, match=words):
        Archive(str(path))


def test_a_link_named_by_the_image_is_never_followed(tmp_path):
    members = [m for m in docker_members() if not (isinstance(m, tuple) and m[0] == "layer0.tar")]
    members.append(_link("layer0.tar", "/etc/shadow"))
    path = write_tar(tmp_path / "l.tar", members)
    with Archive(str(path)) as a, pytest.raises(ArchiveError, match="links are never followed"):
        a.find(LOCAL)


def test_a_blob_whose_content_is_not_its_digest_fails_before_its_last_chunk(tmp_path):
    members = oci_members(compressed=False)
    members = [(n, b.replace(b"exit 0", b"exit 1")) if isinstance(n, str) and
               n.startswith("blobs/") and b.startswith(b"pause") else (n, b)
               for n, b in members]  # type: ignore[misc]
    path = write_tar(tmp_path / "c.tar", members)
    with Archive(str(path)) as a:
        image = a.find(LOCAL)
        chunks = a.chunks(image.layers[0])
        with pytest.raises(ArchiveError, match="does not match its digest"):
            next(chunks)


def test_bounds_on_members_and_json(tmp_path, monkeypatch):
    path = write_tar(tmp_path / "b.tar", oci_members())
    monkeypatch.setattr(archive_mod, "MAX_MEMBERS", 3)
    with pytest.raises(ArchiveError, match="more than 3 members"):
        Archive(str(path))
    monkeypatch.setattr(archive_mod, "MAX_MEMBERS", 100)
    monkeypatch.setattr(archive_mod, "MAX_JSON", 10)
    with Archive(str(path)) as a, pytest.raises(ArchiveError, match="more than 10"):
        a.find(LOCAL)


def test_a_file_others_can_write_a_symlink_or_not_a_tar_is_refused(tmp_path):
    writable = write_tar(tmp_path / "w.tar", oci_members(), mode=0o666)
    with pytest.raises(ArchiveError, match="writable by group and others"):
        Archive(str(writable))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    inside = write_tar(shared / "a.tar", oci_members())
    with pytest.raises(ArchiveError, match="another user could plant"):
        Archive(str(inside))
    good = write_tar(tmp_path / "g.tar", oci_members())
    (tmp_path / "s.tar").symlink_to(good)
    with pytest.raises(ArchiveError, match=r"cannot be opened \(a symlink\)"):
        Archive(str(tmp_path / "s.tar"))
    junk = tmp_path / "j.tar"
    junk.write_bytes(b"not a tarball" * 100)
    junk.chmod(0o644)
    with pytest.raises(ArchiveError, match=r"not a tar archive|neither"):
        Archive(str(junk))
    with pytest.raises(ArchiveError, match="cannot be opened"):
        Archive(str(tmp_path / "missing.tar"))


def test_members_adding_up_past_the_bound_refuse_the_archive(tmp_path, monkeypatch):
    path = write_tar(tmp_path / "b.tar", oci_members())
    monkeypatch.setattr(archive_mod, "MAX_CONTENT", 100)
    with pytest.raises(ArchiveError, match="all members may hold"):
        Archive(str(path))


@pytest.mark.parametrize(("text", "expected"), [
    ('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\nsnapshotter = "native"\n',
     "native"),
    ('version = 3\n[plugins."io.containerd.cri.v1.images"]\nsnapshotter = "native"\n', "native"),
    ("version = 2\n", None),
])
def test_containerd_config_names_the_cris_snapshotter(tmp_path, text, expected):
    from ecrcred import containerd_config

    path = tmp_path / "config.toml"
    path.write_text(text)
    found = containerd_config.load(str(path)).snapshotter
    assert (found.value if found else None) == expected


# -- containerd_api's pure parts --------------------------------------------------------------

def test_chain_ids_follow_the_oci_image_spec():
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    second = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert chain_ids((a, b)) == [a, second]
    assert chain_ids(()) == []


@pytest.mark.parametrize(("config", "expected"), [
    ({"containerd": {"snapshotter": "native"}}, "native"),  # 1.6, 1.7
    ({"containerd": {"defaultRuntimeName": "runc",
                     "runtimes": {"runc": {"snapshotter": "stargz"}}}}, "stargz"),
    ({"snapshotter": "overlayfs"}, "overlayfs"),
    ({}, None),
    ("not json", None),
])
def test_the_cris_snapshotter_comes_from_its_status_config(config, expected):
    info = {"config": config if isinstance(config, str) else json.dumps(config)}
    assert snapshotter_from_status(info) == expected


def test_a_runtime_without_containerds_api_says_the_archive_cannot_be_imported(tmp_path):
    import grpc

    socket = tmp_path / "cri.sock"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))  # serves nothing
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    try:
        path = write_tar(tmp_path / "a.tar", oci_members())
        importer = ContainerdImporter(str(path), f"unix://{socket}")
        try:
            with pytest.raises(RuntimeServiceError) as caught:
                importer.import_image(LOCAL)
        finally:
            importer.close()
    finally:
        server.stop(0)
    line = caught.value.one_line()
    assert "cannot be imported through the CRI" in line and "\n" not in line
    assert caught.value.code == "ARCHIVE_UNSUPPORTED" and caught.value.exit_code == 6


# -- the keeper -------------------------------------------------------------------------------

class FakeImporter:
    def __init__(self, runtime: FakeImageService, error: Exception | None = None) -> None:
        self.runtime = runtime
        self.imports: list[str] = []
        self.error = error

    def describe(self) -> str:
        return "archive /etc/eks/pause.tar"

    def import_image(self, image: str) -> str:
        self.imports.append(image)
        if self.error is not None:
            raise self.error
        self.runtime.images.add(image)
        return "sha256:cfg"


def _creds(name, fresh, wait_until=None, sleep=None):
    return PullCredentials(Auth("AWS", "pw"), "ECR registry x", from_cache=False)


def _keeper(image, runtime, importer):
    actions: list[Action] = []
    k = SandboxKeeper(image, runtime, runtime, _creds, FakeClock(), RecordingLogger(),
                      actions.append, RetryPolicy(deadline=30.0), rng=random.Random(7),
                      archive=importer)
    return k, actions


def test_a_localhost_image_is_imported_without_a_pull_and_pinned():
    runtime = FakeImageService(LOCAL)
    importer = FakeImporter(runtime)
    k, _ = _keeper(LOCAL, runtime, importer)
    done = k.ensure("requested")
    assert [a.action for a in done] == ["imported", "pinned"]
    assert done[0].detail == "sha256:cfg from archive /etc/eks/pause.tar"
    assert runtime.pulls == [] and importer.imports == [LOCAL]


def test_another_registry_is_pulled_once_then_imported_when_that_fails():
    image = "registry.example/eks/pause:3.9"
    runtime = FakeImageService(image, outcomes=[PullError("connection refused",
                                                          detail="dial tcp: connection refused",
                                                          status="UNAVAILABLE")])
    importer = FakeImporter(runtime)
    k, _ = _keeper(image, runtime, importer)
    assert [a.action for a in k.ensure("requested")] == ["imported", "pinned"]
    assert len(runtime.pulls) == 1 and importer.imports == [image]


def test_a_pull_that_works_needs_no_archive():
    image = "registry.example/eks/pause:3.9"
    runtime = FakeImageService(image)
    importer = FakeImporter(runtime)
    k, _ = _keeper(image, runtime, importer)
    assert [a.action for a in k.ensure("requested")] == ["pulled", "pinned"]
    assert importer.imports == []


def test_an_import_error_is_raised_as_it_is():
    runtime = FakeImageService(LOCAL)
    error = ArchiveError("archive x does not hold y", code="ARCHIVE_NO_IMAGE")
    k, _ = _keeper(LOCAL, runtime, FakeImporter(runtime, error))
    with pytest.raises(ArchiveError) as caught:
        k.ensure("requested")
    assert caught.value is error


# -- the config file's sandbox.archive -------------------------------------------------------

def test_the_config_files_sandbox_archive_is_an_absolute_path():
    from ecrcred.config.rules import from_compiled
    from ecrcred.config.schema import compile_text
    from ecrcred.errors import ConfigError

    head = "apiVersion: ecrcred.io/v1alpha1\nkind: EcrcredConfig\n"
    compiled = compile_text(head + "sandbox: {archive: /etc/eks/pause.tar}\n", "/c.yaml")
    assert from_compiled(compiled, "/c.yaml", "flag").sandbox_archive == "/etc/eks/pause.tar"
    assert from_compiled(compile_text(head, "/c.yaml"), "/c.yaml", "flag").sandbox_archive is None
    with pytest.raises(ConfigError, match=r"sandbox\.archive"):
        compile_text(head + "sandbox: {archive: pause.tar}\n", "/c.yaml")


def test_a_localhost_image_without_an_archive_says_to_pass_one():
    from ecrcred.errors import DeadlineExceeded

    runtime = FakeImageService(LOCAL, outcomes=[PullError(
        "could not pull", detail="dial tcp 127.0.0.1:443: connect: connection refused")] * 50)
    k, _ = _keeper(LOCAL, runtime, None)
    with pytest.raises(DeadlineExceeded) as caught:
        k.ensure("requested")
    assert "--archive" in caught.value.hint and "/etc/eks/pause.tar" in caught.value.hint
