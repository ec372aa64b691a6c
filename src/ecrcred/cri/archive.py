"""Reading an image archive (``pull-sandbox --archive``) without trusting it.

The sandbox image of a registry nothing can pull from (EKS AL2023's
``localhost/kubernetes/pause:latest``, copied at ``/etc/eks/pause.tar``) comes back from a
tarball on the node. Two formats, told apart by what the tarball holds:

- an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``): what
  ``ctr images export``, ``skopeo copy ... oci-archive:`` and Docker 25+ write. References are
  the index entries' ``io.containerd.image.name`` (a full name) or
  ``org.opencontainers.image.ref.name`` (a full name, or a tag alone);
- a docker-archive (``manifest.json`` with ``Config``, ``RepoTags``, ``Layers``): what
  ``docker save`` and ``skopeo copy ... docker-archive:`` write. It has no registry manifest, so
  one is written here (OCI media types), as containerd's own importer does.

ecrcred runs as root and the tarball is only a file: nothing in it is believed. Members are
read in place (never extracted); a member name that is absolute or climbs out (``..``), a
device or FIFO, a duplicate name, too many members or sizes past the bounds below refuse the
whole archive. Links are never followed: docker-archives carry symlinks for the legacy
``<id>/layer.tar`` layout that nothing here reads, so a link is only refused when the image
names it (as its config, a layer or a blob). The file itself must be root's (or ours) and
writable by no one else. Every blob is hashed as it is read (``Archive.chunks``) and the read
fails before its last chunk is handed on when the digest or size differs; a docker-archive's
layers are hashed up front, since their digests go into the manifest written here.
``ArchiveError`` (a ``ConfigError``: the setting names an unusable file) says what was wrong.

Importing what was read into containerd is ``cri.containerd_api``'s job.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import re
import stat
import tarfile
from collections.abc import Iterator
from typing import IO, Any, NamedTuple

from ecrcred.errors import ArchiveError
from ecrcred.files import Untrusted, open_trusted_dir, strangers_may_write
from ecrcred.imageref import parse_reference
from ecrcred.log import quote_untrusted

MAX_ARCHIVE = 2 << 30  # the whole tarball: a sandbox image is a few hundred KiB
MAX_CONTENT = 4 << 30  # the members' sizes added up: a compressed tarball may claim much more
MAX_MEMBERS = 4096
MAX_JSON = 4 << 20  # index.json, manifest.json, a manifest, an index, a config
MAX_LAYERS = 128
CHUNK = 1 << 20

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})
_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
           "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


class Blob(NamedTuple):
    digest: str  # sha256:<hex>
    size: int
    media_type: str


class ArchiveImage(NamedTuple):
    """One image of an archive, resolved to the node's platform: what containerd needs."""

    name: str  # the reference asked for, as containerd stores it (``ImageRef.stored``)
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    diff_ids: tuple[str, ...]  # the config's rootfs.diff_ids, one per layer


def node_arch() -> str:
    machine = platform.machine().lower()
    return _GOARCH.get(machine, machine)


def _member_name(raw: str) -> str | None:
    """The member's path inside the archive, or None when it could point outside it."""
    name = raw
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    if not name or name.startswith("/") or "\\" in name or not name.isprintable():
        return None
    if any(part in ("", ".", "..") for part in name.split("/")):
        return None
    return name


class Archive:
    """An opened archive: its regular members by name, read on demand, hashed as they are."""

    def __init__(self, path: str) -> None:
        self.path = path
        fd = self._open()
        self._file: IO[bytes] = os.fdopen(fd, "rb")
        try:
            self._check_file(os.fstat(fd))
            self._tar = self._open_tar()
            self._members = self._index()
            self._synthesized: dict[str, bytes] = {}
            self._blob_members: dict[str, str] = {}
            self.kind = "oci" if "index.json" in self._members else "docker"
            if self.kind == "docker" and "manifest.json" not in self._members:
                raise self._bad("holds neither index.json (an OCI layout) nor manifest.json "
                                "(a docker-archive)")
        except BaseException:
            self._file.close()
            raise

    def close(self) -> None:
        self._tar.close()
        self._file.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- opening -----------------------------------------------------------------------------

    def _bad(self, what: str, hint: str = "") -> ArchiveError:
        return ArchiveError(f"archive {self.path} {what}",
                            hint=hint or "replace it with an image archive from a trusted "
                            "source (ctr images export, docker save, skopeo copy)")

    def _open(self) -> int:
        """The file, reached as root's config files are (``files.open_trusted_dir``): every
        directory from ``/`` down root's (or ours) and writable by no one else, the file itself
        not a symlink. Another user who could replace it could choose the sandbox image."""
        directory, name = os.path.split(os.path.abspath(self.path))
        try:
            dir_fd = open_trusted_dir(directory, holds_named_file=True)
        except Untrusted as exc:
            raise self._bad(f"is not used: {exc.path} is {exc.why}, so another user could "
                            "plant an image", "make every directory above it root's, with no "
                            "write for group or others (chown root:, chmod go-w)") from None
        except OSError as exc:
            raise self._unopened(exc) from None
        try:
            return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                           dir_fd=dir_fd)
        except OSError as exc:
            raise self._unopened(exc) from None
        finally:
            os.close(dir_fd)

    def _unopened(self, exc: OSError) -> ArchiveError:
        why = "a symlink" if exc.errno == errno.ELOOP else exc.strerror
        return ArchiveError(f"archive {self.path} cannot be opened ({why})",
                            hint="check --archive (or sandbox.archive in the config file): "
                            "the tarball itself, not a link to it")

    def _check_file(self, st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            raise self._bad("is not a regular file", "point --archive at the tarball itself")
        why = strangers_may_write(st.st_uid, st.st_mode, os.geteuid(), sticky_ok=False)
        if why:
            raise self._bad(f"is not used: it is {why}, so another user could plant an image",
                            "make it root's and writable by root only (chown root:, "
                            "chmod 0644)")
        if st.st_size > MAX_ARCHIVE:
            raise self._bad(f"is {st.st_size} bytes, more than the {MAX_ARCHIVE} a sandbox "
                            "image archive may be")

    def _open_tar(self) -> tarfile.TarFile:
        try:
            return tarfile.open(fileobj=self._file, mode="r:*")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise self._bad(f"is not a tar archive ({quote_untrusted(str(exc))})") from None

    def _index(self) -> dict[str, tarfile.TarInfo]:
        members: dict[str, tarfile.TarInfo] = {}
        count = total = 0
        self._links: set[str] = set()
        try:
            while (info := self._tar.next()) is not None:
                count += 1
                if count > MAX_MEMBERS:
                    raise self._bad(f"has more than {MAX_MEMBERS} members")
                name = _member_name(info.name)
                if name is None:
                    raise self._bad(f"has a member named {quote_untrusted(info.name)}, outside "
                                    "the archive (absolute, '..' or empty)")
                if info.isdir():
                    continue
                if name in members or name in self._links:
                    raise self._bad(f"has two members named {quote_untrusted(name)}")
                if info.issym() or info.islnk():
                    self._links.add(name)
                    continue
                if not info.isreg():
                    raise self._bad(f"has a special file {quote_untrusted(name)}: an image "
                                    "archive holds regular files only")
                total += info.size
                if info.size > MAX_ARCHIVE or total > MAX_CONTENT:
                    raise self._bad(f"has a member {quote_untrusted(name)} of {info.size} bytes, "
                                    f"past the {MAX_ARCHIVE} a member and the {MAX_CONTENT} all "
                                    "members may hold")
                members[name] = info
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise self._bad(f"is not a readable tar archive ({quote_untrusted(str(exc))})"
                            ) from None
        return members

    # -- reading -----------------------------------------------------------------------------

    def _member(self, name: str, what: str) -> tarfile.TarInfo:
        info = self._members.get(name)
        if info is None and name in self._links:
            raise self._bad(f"names a link {quote_untrusted(name)} as {what}: links are never "
                            "followed")
        if info is None:
            raise self._bad(f"lacks {quote_untrusted(name)} ({what})")
        return info

    def _read_member(self, name: str, what: str) -> bytes:
        limit = MAX_JSON
        info = self._member(name, what)
        if info.size > limit:
            raise self._bad(f"has {quote_untrusted(name)} ({what}) of {info.size} bytes, more "
                            f"than {limit}")
        return b"".join(self._member_chunks(info))

    def _member_chunks(self, info: tarfile.TarInfo) -> Iterator[bytes]:
        try:
            f = self._tar.extractfile(info)
            if f is None:
                raise self._bad(f"cannot read {quote_untrusted(info.name)}")
            left = info.size
            while left > 0:
                data = f.read(min(CHUNK, left))
                if not data:
                    raise self._bad(f"ends inside {quote_untrusted(info.name)}")
                left -= len(data)
                yield data
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise self._bad(f"cannot be read ({quote_untrusted(str(exc))})") from None

    def _json(self, data: bytes, what: str) -> Any:
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise self._bad(f"holds {what} that is not JSON") from None

    def chunks(self, blob: Blob) -> Iterator[bytes]:
        """``blob``'s bytes; raises ArchiveError instead of yielding the last chunk when they do
        not hash to its digest or add up to its size, so nothing unverified completes."""
        if blob.digest in self._synthesized:
            yield self._synthesized[blob.digest]
            return
        name = self._blob_members.get(blob.digest) or self._oci_blob(blob.digest)
        info = self._member(name, f"blob {blob.digest}")
        if info.size != blob.size:
            raise self._bad(f"has blob {blob.digest} of {info.size} bytes where {blob.size} "
                            "are expected")
        h = hashlib.sha256()
        held: bytes | None = None
        for data in self._member_chunks(info):
            h.update(data)
            if held is not None:
                yield held
            held = data
        if "sha256:" + h.hexdigest() != blob.digest:
            raise self._bad(f"has blob {quote_untrusted(name)} whose content does not match "
                            f"its digest {blob.digest}")
        if held is not None:
            yield held

    def _verified(self, blob: Blob, what: str) -> bytes:
        limit = MAX_JSON
        if blob.size > limit:
            raise self._bad(f"has {what} {blob.digest} of {blob.size} bytes, more than {limit}")
        return b"".join(self.chunks(blob))

    @staticmethod
    def _oci_blob(digest: str) -> str:
        return "blobs/sha256/" + digest.removeprefix("sha256:")

    # -- references --------------------------------------------------------------------------

    def references(self) -> list[str]:
        """The references the archive holds, as it writes them."""
        if self.kind == "oci":
            return [name for name, _ in self._oci_entries()]
        return [tag for entry in self._docker_entries() for tag in entry[1]]

    def find(self, image: str) -> ArchiveImage:
        """``image`` (a normalized reference) resolved for this node, or an ArchiveError that
        lists the references the archive holds."""
        want = parse_reference(image)
        image = want.stored  # containerd's name for it: the image record is created under it
        if self.kind == "oci":
            entries = self._oci_entries()
            # A full name first; a bare tag (ref.name "latest") names the image only when no
            # entry names one in full.
            full = [d for name, d in entries if _same(name, image)]
            bare = [d for name, d in entries if "/" not in name and ":" not in name
                    and want.tag == name and want.digest is None]
            found = full or bare
            if found:
                return self._oci_image(image, found[0])
        else:
            for config, tags, layers in self._docker_entries():
                if any(_same(tag, image) for tag in tags):
                    return self._docker_image(image, config, layers)
        held = ", ".join(quote_untrusted(r) for r in self.references()[:20]) or "none"
        raise ArchiveError(f"archive {self.path} does not hold {image} (it holds: {held})",
                           hint="point --archive at an archive of this image, or set the "
                           "image it holds as the sandbox image", code="ARCHIVE_NO_IMAGE")

    # -- OCI layout --------------------------------------------------------------------------

    def _descriptor(self, raw: Any, what: str) -> Blob:
        if not isinstance(raw, dict):
            raise self._bad(f"has {what} that is not a descriptor")
        digest, size, media = raw.get("digest"), raw.get("size"), raw.get("mediaType")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise self._bad(f"has {what} whose digest is not sha256:<64 hex>")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_ARCHIVE:
            raise self._bad(f"has {what} {digest} with an impossible size")
        return Blob(digest, size, media if isinstance(media, str) else "")

    def _oci_entries(self) -> list[tuple[str, Any]]:
        index = self._json(self._read_member("index.json", "the OCI index"), "index.json")
        manifests = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(manifests, list):
            raise self._bad("has an index.json without a manifests list")
        entries = []
        for raw in manifests:
            notes = raw.get("annotations") if isinstance(raw, dict) else None
            notes = notes if isinstance(notes, dict) else {}
            for key in (NAME_ANNOTATION, REF_ANNOTATION):
                name = notes.get(key)
                if isinstance(name, str) and name:
                    entries.append((name, raw))
                    break
        return entries

    def _oci_image(self, name: str, raw: Any) -> ArchiveImage:
        desc = self._descriptor(raw, "an index entry")
        for _depth in range(2):  # an index may point to a manifest (never deeper here)
            if desc.media_type not in _INDEXES:
                break
            desc = self._platform(desc)
        if desc.media_type not in _MANIFESTS:
            raise self._bad(f"names {name} with media type {quote_untrusted(desc.media_type)}, "
                            "not an image manifest")
        manifest = self._json(self._verified(desc, "a manifest"), "a manifest")
        if not isinstance(manifest, dict):
            raise self._bad("has a manifest that is not a JSON object")
        config = self._descriptor(manifest.get("config"), "the config of a manifest")
        raw_layers = manifest.get("layers")
        if not isinstance(raw_layers, list) or len(raw_layers) > MAX_LAYERS:
            raise self._bad(f"has a manifest without a layers list of at most {MAX_LAYERS}")
        layers = tuple(self._descriptor(r, "a layer") for r in raw_layers)
        diff_ids = self._diff_ids(config, len(layers))
        return ArchiveImage(name, desc, config, layers, diff_ids)

    def _platform(self, index_desc: Blob) -> Blob:
        index = self._json(self._verified(index_desc, "an index"), "an index")
        manifests = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(manifests, list):
            raise self._bad(f"has an index {index_desc.digest} without a manifests list")
        arch = node_arch()
        seen = []
        for raw in manifests:
            plat = raw.get("platform") if isinstance(raw, dict) else None
            plat = plat if isinstance(plat, dict) else {}
            seen.append(f"{plat.get('os')}/{plat.get('architecture')}")
            if plat.get("os") == "linux" and plat.get("architecture") == arch:
                desc = self._descriptor(raw, "an index entry")
                if self._oci_blob(desc.digest) in self._members:
                    return desc
        raise self._bad(f"has no image for linux/{arch} (its index lists "
                        f"{quote_untrusted(', '.join(seen[:10]))})",
                        "export the image for this node's platform")

    def _diff_ids(self, config: Blob, layers: int) -> tuple[str, ...]:
        doc = self._json(self._verified(config, "an image config"), "an image config")
        rootfs = doc.get("rootfs") if isinstance(doc, dict) else None
        ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if (not isinstance(ids, list) or len(ids) != layers
                or not all(isinstance(i, str) and _DIGEST.fullmatch(i) for i in ids)):
            raise self._bad(f"has an image config {config.digest} whose rootfs.diff_ids are "
                            f"not one sha256 digest per layer ({layers})")
        return tuple(ids)

    # -- docker-archive ----------------------------------------------------------------------

    def _docker_entries(self) -> list[tuple[str, list[str], list[str]]]:
        doc = self._json(self._read_member("manifest.json", "the docker-archive manifest"),
                         "manifest.json")
        if not isinstance(doc, list):
            raise self._bad("has a manifest.json that is not a list")
        entries = []
        for raw in doc:
            if not isinstance(raw, dict):
                raise self._bad("has a manifest.json entry that is not an object")
            config, tags, layers = raw.get("Config"), raw.get("RepoTags"), raw.get("Layers")
            if (not isinstance(config, str) or not isinstance(layers, list)
                    or not all(isinstance(x, str) for x in layers)):
                raise self._bad("has a manifest.json entry without Config and Layers")
            tags = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
            entries.append((config, tags, layers))
        return entries

    def _docker_image(self, name: str, config_path: str, layer_paths: list[str]) -> ArchiveImage:
        if len(layer_paths) > MAX_LAYERS:
            raise self._bad(f"has an image of more than {MAX_LAYERS} layers")
        config_name = self._path(config_path, "the image config")
        config_bytes = self._read_member(config_name, "the image config")
        config = Blob("sha256:" + hashlib.sha256(config_bytes).hexdigest(), len(config_bytes),
                      OCI_CONFIG)
        self._check_named(config_name, config.digest)
        self._synthesized[config.digest] = config_bytes
        layers = []
        for path in layer_paths:
            layers.append(self._hash_layer(self._path(path, "a layer")))
        diff_ids = self._diff_ids(config, len(layers))
        for layer, diff_id in zip(layers, diff_ids, strict=True):
            if layer.media_type == OCI_LAYER and layer.digest != diff_id:
                raise self._bad(f"has a layer {layer.digest} that is not the config's diff ID "
                                f"{diff_id}: its content does not match the image")
        manifest_bytes = json.dumps({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size}
                       for b in layers],
        }, separators=(",", ":")).encode()
        manifest = Blob("sha256:" + hashlib.sha256(manifest_bytes).hexdigest(),
                        len(manifest_bytes), OCI_MANIFEST)
        self._synthesized[manifest.digest] = manifest_bytes
        return ArchiveImage(name, manifest, config, tuple(layers), diff_ids)

    def _path(self, raw: str, what: str) -> str:
        name = _member_name(raw)
        if name is None:
            raise self._bad(f"names {what} {quote_untrusted(raw)} outside the archive")
        return name

    def _check_named(self, name: str, digest: str) -> None:
        """A member named by a digest (``<hex>.json``, ``blobs/sha256/<hex>``) must hash to it."""
        stem = name.rsplit("/", 1)[-1].removesuffix(".json")
        if re.fullmatch(r"[0-9a-f]{64}", stem) and "sha256:" + stem != digest:
            raise self._bad(f"has {quote_untrusted(name)} whose content does not match its "
                            f"name's digest")

    def _hash_layer(self, name: str) -> Blob:
        info = self._member(name, "a layer")
        h = hashlib.sha256()
        head = b""
        for data in self._member_chunks(info):
            if len(head) < 4:
                head += data[:4]
            h.update(data)
        digest = "sha256:" + h.hexdigest()
        self._check_named(name, digest)
        media = OCI_LAYER
        if head.startswith(b"\x1f\x8b"):
            media = OCI_LAYER + "+gzip"
        elif head.startswith(b"\x28\xb5\x2f\xfd"):
            media = OCI_LAYER + "+zstd"
        self._blob_members[digest] = name
        return Blob(digest, info.size, media)


def _same(name: str, image: str) -> bool:
    try:
        return parse_reference(name).stored == image
    except ValueError:
        return False
