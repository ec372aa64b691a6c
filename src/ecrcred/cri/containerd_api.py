"""Importing an image archive into containerd through its own gRPC API, for the CRI to see.

An image whose registry nothing can pull from (``localhost/kubernetes/pause``) can only come
back from a copy on the node. The CRI has no import call, and ``ctr`` is not ours to shell out
to, so this does what containerd's Go client does for ``ctr images import`` followed by
``image.Unpack``, over the same socket, namespace ``k8s.io`` (docs/containerd.md):

1. a lease (``leases.v1``, expiring by itself in an hour) so that nothing written is garbage
   collected before the image record references it; it is deleted at the end;
2. each blob is put under the lease (``AddResource``: one already there may be a removed
   image's, which GC would otherwise collect between our look and our image record), and
   written unless present (``content.v1`` Info), with the Write stream, with
   its expected digest and size: containerd checks both on commit, and ``archive.Archive``
   checks them before handing on the last chunk. The manifest carries the
   ``containerd.io/gc.ref.content.*`` labels that keep its config and layers alive;
3. the layers are unpacked for the CRI's snapshotter (``snapshots.v1`` Stat, Prepare, Commit
   under the layer's chain ID; ``diff.v1`` Apply, whose answer must be the config's diff ID),
   and the config blob gets ``containerd.io/gc.ref.snapshot.<snapshotter>`` = the top chain
   ID, which keeps the snapshots alive;
4. the image record is created (or updated) with ``io.cri-containerd.image=managed``, the label
   CRI pulls set; containerd publishes ``/images/create`` and the CRI adds the image to its
   store from that event, so ``ImageStatus`` shows it moments later.

The snapshotter is the CRI's own: its ``Status`` (verbose) info holds its config as JSON, which
names it on 1.6 and 1.7; 2.x's holds only the runtimes' (empty by default), so then the
containerd config file's (``containerd_config``), else containerd's default, ``overlayfs``.
A runtime that is not containerd answers Unimplemented: the error says that an archive cannot
be imported through its CRI.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from hashlib import sha256
from typing import Any

from ecrcred.cri.archive import Archive, ArchiveImage, Blob
from ecrcred.cri.client import NAMESPACE, _quote_runtime, check_endpoint
from ecrcred.errors import ArchiveError, RuntimeServiceError

MANAGED_LABEL = "io.cri-containerd.image"
MANAGED_VALUE = "managed"
SNAPSHOT_REF = "containerd.io/gc.ref.snapshot."
CONTENT_REF = "containerd.io/gc.ref.content."
DEFAULT_SNAPSHOTTER = "overlayfs"  # containerd's CRI default on Linux
LEASE_EXPIRY = 3600.0


def chain_ids(diff_ids: tuple[str, ...]) -> list[str]:
    """The layers' chain IDs (OCI image spec): the first diff ID, then
    ``sha256(parent chain ID + " " + diff ID)``; a snapshot is committed under its chain ID."""
    chain: list[str] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            chain.append("sha256:" + sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest())
    return chain


def snapshotter_from_status(info: dict[str, str]) -> str | None:
    """The snapshotter the CRI unpacks for, from its verbose Status info's ``config`` JSON:
    ``containerd.snapshotter`` (1.6, 1.7) or the default runtime's ``snapshotter`` /
    top-level ``snapshotter`` (2.x)."""
    try:
        config = json.loads(info.get("config", "") or "{}")
    except ValueError:
        return None
    if not isinstance(config, dict):
        return None
    cd = config.get("containerd")
    cd = cd if isinstance(cd, dict) else {}
    runtimes = cd.get("runtimes")
    default = cd.get("defaultRuntimeName")
    runtime = runtimes.get(default) if isinstance(runtimes, dict) and default else None
    for value in (runtime.get("snapshotter") if isinstance(runtime, dict) else None,
                  cd.get("snapshotter"), config.get("snapshotter")):
        if isinstance(value, str) and value:
            return value
    return None


class ContainerdImporter:
    """``archive`` imported into containerd at ``endpoint`` (the seam ``ImageImporter``)."""

    def __init__(self, archive: str, endpoint: str, call_timeout: float = 30.0,
                 configured_snapshotter: Callable[[], str | None] | None = None) -> None:
        """``configured_snapshotter``: the one containerd's config file names, asked only when
        the CRI's status does not say."""
        self.archive = archive
        self._configured = configured_snapshotter
        self.endpoint = check_endpoint(endpoint)

        import grpc

        from ecrcred.cri._gen import (
            containerd_content_pb2_grpc,
            containerd_diff_pb2_grpc,
            containerd_images_pb2_grpc,
            containerd_leases_pb2_grpc,
            containerd_snapshots_pb2_grpc,
            cri_api_pb2_grpc,
        )

        self._grpc = grpc
        self._timeout = call_timeout
        self._channel = grpc.insecure_channel(endpoint)
        # generated stubs are untyped; this class is their typed face
        self._content = containerd_content_pb2_grpc.ContentStub(self._channel)  # type: ignore[no-untyped-call]
        self._leases = containerd_leases_pb2_grpc.LeasesStub(self._channel)  # type: ignore[no-untyped-call]
        self._snapshots = containerd_snapshots_pb2_grpc.SnapshotsStub(self._channel)  # type: ignore[no-untyped-call]
        self._diff = containerd_diff_pb2_grpc.DiffStub(self._channel)  # type: ignore[no-untyped-call]
        self._images = containerd_images_pb2_grpc.ImagesStub(self._channel)  # type: ignore[no-untyped-call]
        self._cri = cri_api_pb2_grpc.RuntimeServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._snapshotter: str | None = None

    def close(self) -> None:
        self._channel.close()

    def describe(self) -> str:
        return f"archive {self.archive}"

    # -- errors ------------------------------------------------------------------------------

    def _error(self, exc: Any, doing: str) -> RuntimeServiceError:
        code = exc.code()
        grpc = self._grpc
        detail = _quote_runtime(" ".join(str(exc.details() or "").split()))
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return RuntimeServiceError(
                f"the archive {self.archive} cannot be imported through the CRI of the runtime "
                f"at {self.endpoint}: it does not offer containerd's content, images and "
                "snapshots API",
                hint="import the image with the runtime's own tool (podman load, docker load), "
                "or drop --archive", code="ARCHIVE_UNSUPPORTED")
        if code == grpc.StatusCode.UNAVAILABLE:
            return RuntimeServiceError(
                f"cannot reach containerd at {self.endpoint} to {doing} ({detail})",
                hint="is containerd running? set --runtime-endpoint or "
                "CONTAINER_RUNTIME_ENDPOINT", code="RUNTIME_UNREACHABLE")
        return RuntimeServiceError(
            f"containerd at {self.endpoint} failed to {doing} while importing {self.archive}: "
            f"{code.name}: {detail}", hint="check containerd's logs (journalctl -u containerd)",
            code="IMPORT_FAILED")

    def _meta(self, lease: str | None = None) -> tuple[tuple[str, str], ...]:
        meta = (("containerd-namespace", NAMESPACE),)
        return meta if lease is None else (*meta, ("containerd-lease", lease))

    # -- the import --------------------------------------------------------------------------

    def import_image(self, image: str) -> str:
        """``image`` from the archive, in containerd and unpacked for the CRI; its id (the
        config digest, as a CRI pull answers)."""
        with Archive(self.archive) as archive:
            found = archive.find(image)
            snapshotter = self.snapshotter()
            lease = self._create_lease()
            try:
                for blob in (*found.layers, found.config):
                    self._put(archive, blob, lease, {})
                refs = {f"{CONTENT_REF}config": found.config.digest}
                refs.update({f"{CONTENT_REF}l.{i}": b.digest for i, b in enumerate(found.layers)})
                self._put(archive, found.manifest, lease, refs)
                top = self._unpack(found, snapshotter, lease)
                if top is not None:
                    self._label_content(found.config, f"{SNAPSHOT_REF}{snapshotter}", top, lease)
                self._create_image(found, lease)
            finally:
                self._delete_lease(lease)
        return found.config.digest

    def snapshotter(self) -> str:
        if self._snapshotter is None:
            from ecrcred.cri._gen import cri_api_pb2 as cri

            try:
                reply = self._cri.Status(cri.StatusRequest(verbose=True), timeout=self._timeout)
                found = snapshotter_from_status(dict(reply.info))
            except self._grpc.RpcError as exc:
                raise self._error(exc, "ask the CRI's status") from None
            if found is None and self._configured is not None:
                found = self._configured()
            self._snapshotter = found or DEFAULT_SNAPSHOTTER
        return self._snapshotter

    def _create_lease(self) -> str:
        from ecrcred.cri._gen import containerd_leases_pb2 as leases

        expire = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + LEASE_EXPIRY))
        lease_id = f"ecrcred-import-{secrets.token_hex(8)}"
        request = leases.CreateRequest(id=lease_id, labels={
            "containerd.io/gc.expire": expire})
        try:
            self._leases.Create(request, timeout=self._timeout, metadata=self._meta())
        except self._grpc.RpcError as exc:
            raise self._error(exc, "create a lease") from None
        return lease_id

    def _delete_lease(self, lease: str) -> None:
        from ecrcred.cri._gen import containerd_leases_pb2 as leases

        with contextlib.suppress(self._grpc.RpcError):  # else it expires (gc.expire)
            self._leases.Delete(leases.DeleteRequest(id=lease), timeout=self._timeout,
                                metadata=self._meta())

    def _lease_resource(self, lease: str, kind: str, name: str) -> None:
        """``name`` (a blob's digest, a snapshot's name) kept by ``lease`` whether or not it
        exists yet: what is found present stays so until the image references it."""
        from ecrcred.cri._gen import containerd_leases_pb2 as leases

        request = leases.AddResourceRequest(id=lease, resource=leases.Resource(id=name,
                                                                               type=kind))
        try:
            self._leases.AddResource(request, timeout=self._timeout, metadata=self._meta())
        except self._grpc.RpcError as exc:
            raise self._error(exc, f"lease {kind} {name}") from None

    def _put(self, archive: Archive, blob: Blob, lease: str, labels: dict[str, str]) -> None:
        from ecrcred.cri._gen import containerd_content_pb2 as content

        grpc = self._grpc
        self._lease_resource(lease, "content", blob.digest)
        try:
            info = self._content.Info(content.InfoRequest(digest=blob.digest),
                                      timeout=self._timeout, metadata=self._meta(lease)).info
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise self._error(exc, f"look up blob {blob.digest}") from None
        else:
            if labels and any(info.labels.get(k) != v for k, v in labels.items()):
                self._label_content_many(blob, labels, lease)
            return
        ref = f"ecrcred-import-{blob.digest}-{secrets.token_hex(4)}"
        failed: list[ArchiveError] = []
        stream = self._write_requests(archive, blob, ref, labels, failed)
        try:
            for _reply in self._content.Write(stream, timeout=self._timeout,
                                              metadata=self._meta(lease)):
                pass
        except grpc.RpcError as exc:
            if failed:
                raise failed[0] from None
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                return  # written meanwhile by someone else, with the same digest
            raise self._error(exc, f"write blob {blob.digest}") from None
        if failed:
            raise failed[0]

    @staticmethod
    def _write_requests(archive: Archive, blob: Blob, ref: str, labels: dict[str, str],
                        failed: list[ArchiveError]) -> Iterator[Any]:
        """The Write stream: the data, then the commit with the expected digest and size, which
        containerd checks again. ``archive.chunks`` raises before its last chunk when the
        digest differs: the stream then ends with no commit (containerd drops the write) and
        the error goes to ``failed`` (gRPC would swallow one raised here)."""
        from ecrcred.cri._gen import containerd_content_pb2 as content

        offset = 0
        try:
            for data in archive.chunks(blob):
                yield content.WriteContentRequest(action=content.WRITE, ref=ref,
                                                  total=blob.size, expected=blob.digest,
                                                  offset=offset, data=data)
                offset += len(data)
        except ArchiveError as exc:
            failed.append(exc)
            return
        yield content.WriteContentRequest(action=content.COMMIT, ref=ref, total=blob.size,
                                          expected=blob.digest, offset=offset, labels=labels)

    def _label_content(self, blob: Blob, key: str, value: str, lease: str) -> None:
        self._label_content_many(blob, {key: value}, lease)

    def _label_content_many(self, blob: Blob, labels: dict[str, str], lease: str) -> None:
        from google.protobuf import field_mask_pb2

        from ecrcred.cri._gen import containerd_content_pb2 as content

        request = content.UpdateRequest(
            info=content.Info(digest=blob.digest, labels=labels),
            update_mask=field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in labels]))
        try:
            self._content.Update(request, timeout=self._timeout, metadata=self._meta(lease))
        except self._grpc.RpcError as exc:
            raise self._error(exc, f"label blob {blob.digest}") from None

    def _unpack(self, found: ArchiveImage, snapshotter: str, lease: str) -> str | None:
        """Each layer applied on its parent and committed under its chain ID, unless that chain
        is there already; the top chain ID (None: no layers)."""
        from ecrcred.cri._gen import containerd_diff_pb2 as diff
        from ecrcred.cri._gen import containerd_snapshots_pb2 as snapshots

        grpc = self._grpc
        meta = self._meta(lease)
        parent = ""
        chains = chain_ids(found.diff_ids)
        for layer, diff_id, chain in zip(found.layers, found.diff_ids, chains, strict=True):
            self._lease_resource(lease, f"snapshots/{snapshotter}", chain)
            try:
                self._snapshots.Stat(snapshots.StatSnapshotRequest(
                    snapshotter=snapshotter, key=chain), timeout=self._timeout, metadata=meta)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise self._error(exc, f"look up snapshot {chain}") from None
            else:
                parent = chain
                continue
            key = f"extract-{time.time_ns()}-{secrets.token_hex(4)} {chain}"
            try:
                mounts = self._snapshots.Prepare(snapshots.PrepareSnapshotRequest(
                    snapshotter=snapshotter, key=key, parent=parent), timeout=self._timeout,
                    metadata=meta).mounts
            except grpc.RpcError as exc:
                raise self._error(exc, f"prepare a {snapshotter} snapshot for layer "
                                  f"{layer.digest}") from None
            try:
                applied = self._diff.Apply(diff.ApplyRequest(
                    diff=diff.Descriptor(media_type=layer.media_type, digest=layer.digest,
                                         size=layer.size),
                    mounts=[diff.Mount.FromString(m.SerializeToString()) for m in mounts]),
                    timeout=self._timeout, metadata=meta).applied
                if applied.digest != diff_id:
                    raise RuntimeServiceError(
                        f"layer {layer.digest} of {self.archive} unpacks to {applied.digest}, "
                        f"not the diff ID {diff_id} its image config names",
                        hint="the archive is corrupt: replace it", code="IMPORT_FAILED")
                self._snapshots.Commit(snapshots.CommitSnapshotRequest(
                    snapshotter=snapshotter, name=chain, key=key), timeout=self._timeout,
                    metadata=meta)
            except grpc.RpcError as exc:
                self._remove_snapshot(snapshotter, key, meta)
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise self._error(exc, f"unpack layer {layer.digest}") from None
            except BaseException:
                self._remove_snapshot(snapshotter, key, meta)
                raise
            parent = chain
        return parent or None

    def _remove_snapshot(self, snapshotter: str, key: str, meta: Any) -> None:
        from ecrcred.cri._gen import containerd_snapshots_pb2 as snapshots

        with contextlib.suppress(self._grpc.RpcError):  # else the lease's end lets GC take it
            self._snapshots.Remove(snapshots.RemoveSnapshotRequest(
                snapshotter=snapshotter, key=key), timeout=self._timeout, metadata=meta)

    def _create_image(self, found: ArchiveImage, lease: str) -> None:
        from google.protobuf import field_mask_pb2

        from ecrcred.cri._gen import containerd_images_pb2 as images

        grpc = self._grpc
        m = found.manifest
        record = images.Image(
            name=found.name, labels={MANAGED_LABEL: MANAGED_VALUE},
            target=images.Descriptor(media_type=m.media_type, digest=m.digest, size=m.size))
        try:
            self._images.Create(images.CreateImageRequest(image=record), timeout=self._timeout,
                                metadata=self._meta(lease))
            return
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise self._error(exc, f"create the image record {found.name}") from None
        mask = field_mask_pb2.FieldMask(paths=["target", f"labels.{MANAGED_LABEL}"])
        try:
            self._images.Update(images.UpdateImageRequest(image=record, update_mask=mask),
                                timeout=self._timeout, metadata=self._meta(lease))
        except grpc.RpcError as exc:
            raise self._error(exc, f"update the image record {found.name}") from None
