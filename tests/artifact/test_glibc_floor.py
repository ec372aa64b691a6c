"""The artifact's C library floor: which glibc a node needs to run it.

glibc is the one library the artifact never bundles, so the newest ``GLIBC_`` symbol version
that any of its ELF files asks for is the oldest glibc it runs on. build/build-portable builds
it on Debian 11 (glibc 2.31) for that floor (Amazon Linux 2023 and RHEL 9 have 2.34, Ubuntu 22.04
2.35); these tests read the version needs from the ELF files themselves, and run the artifact
in a root that holds nothing but the artifact and Debian 11's C libraries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecrcred import __version__
from tests.artifact.roots import ECR, elf_files, in_root, linked_libraries, make_root
from tests.support.kubelet import check_response, request

ROOT = Path(__file__).resolve().parents[2]
BUILD_PORTABLE = ROOT / "build" / "build-portable"
SHT_GNU_VERNEED = 0x6FFFFFFE


def documented_floor() -> tuple[int, ...]:
    """GLIBC_FLOOR in build/build-portable, which the build itself enforces."""
    match = re.search(r"^GLIBC_FLOOR=(\d+\.\d+)\b", BUILD_PORTABLE.read_text(), re.M)
    assert match, "build/build-portable no longer sets GLIBC_FLOOR"
    return version_tuple(match[1])


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def glibc_versions_needed(data: bytes) -> set[tuple[int, ...]]:
    """The GLIBC_x.y versions an ELF file's version-needs section (.gnu.version_r) names:
    what the dynamic linker checks against the C library before it runs anything."""
    assert data[4] == 2 and data[5] == 1, "only 64-bit little-endian ELF files are built"
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    found: set[tuple[int, ...]] = set()
    for _name, kind, _flags, _addr, offset, _size, link, count, _align, _entsize in sections:
        if kind != SHT_GNU_VERNEED:
            continue
        strings = sections[link][4]
        entry = offset
        for _ in range(count):
            _version, aux_count, _file, aux, following = struct.unpack_from("<HHIII", data, entry)
            at = entry + aux
            for _ in range(aux_count):
                _hash, _flags, _other, name, aux_next = struct.unpack_from("<IHHII", data, at)
                text = data[strings + name:data.index(b"\0", strings + name)].decode()
                if match := re.fullmatch(r"GLIBC_(\d+(?:\.\d+)+)", text):
                    found.add(version_tuple(match[1]))
                at += aux_next
            entry += following
    return found


def test_the_build_enforces_the_floor_the_readme_documents():
    floor = dotted(documented_floor())
    readme = (ROOT / "build" / "README.md").read_text()
    assert f"glibc {floor}" in readme, f"build/README.md does not name the floor glibc {floor}"


def test_no_file_of_the_artifact_needs_a_glibc_newer_than_the_floor(artifact_dir: Path):
    floor = documented_floor()
    needs = {path.relative_to(artifact_dir).as_posix(): glibc_versions_needed(path.read_bytes())
             for path in elf_files(artifact_dir)}
    # the reader sees what is there: the bootloader and libpython call into libc
    assert needs["ecrcred"], "no GLIBC_ version found in the executable"
    assert needs["_internal/libpython3.11.so.1.0"], "no GLIBC_ version found in libpython"
    assert len(needs) > 20, sorted(needs)
    too_new = {name: dotted(max(versions)) for name, versions in needs.items()
               if versions and max(versions) > floor}
    assert not too_new, f"these need a glibc newer than {dotted(floor)}: {too_new}"
    info = json.loads((artifact_dir / "_internal" / "ecrcred" / "_build_info.json").read_text())
    assert info["glibc_floor"] == dotted(floor), info


# ---- running on the floor: Debian 11's C libraries, nothing else ----------------------------

def floor_root_source() -> Path:
    """The Debian 11 root build/build-portable builds in (its cache, kept between builds)."""
    cache = Path(os.environ.get("ECRCRED_PORTABLE_CACHE", ROOT / "build" / "work" / "portable"))
    rootfs = cache / "rootfs-bullseye"
    if not (rootfs / "usr" / "bin" / "readlink").exists():
        pytest.fail(f"{rootfs} is missing: build/build-portable makes it", pytrace=False)
    return rootfs


@pytest.fixture(scope="session")
def floor_root(artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A root with the artifact at /opt/ecrcred and, where this machine's ldd finds the C
    libraries it links, Debian 11's (glibc 2.31): no Python, no OpenSSL, no shell."""
    source = floor_root_source()

    def debian_11(library: str) -> Path:
        resolved = in_root(source, ["/usr/bin/readlink", "-e", library])
        assert resolved.returncode == 0, f"Debian 11 has no {library}"
        return source / resolved.stdout.decode().strip().lstrip("/")

    root = make_root(tmp_path_factory.mktemp("glibc-floor-root"), artifact_dir,
                     linked_libraries(artifact_dir, skip_bundled=True), debian_11)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_the_floor_root_has_glibc_at_the_floor_and_no_python(floor_root: Path):
    # glibc's libc.so.6 run as a program says which it is (its ld.so has no --version before 2.33)
    (libc,) = [p for p in floor_root.rglob("libc.so.6") if "opt/ecrcred" not in str(p)]
    result = in_root(floor_root, ["/" + libc.relative_to(floor_root).as_posix()])
    first = result.stdout.decode().splitlines()[0] if result.stdout else result.stderr.decode()
    assert first.endswith(f"release version {dotted(documented_floor())}."), first
    outside = [p for p in floor_root.rglob("*") if "opt/ecrcred" not in str(p)]
    assert not [p for p in outside if re.match(r"(lib)?(python|ssl|crypto)", p.name)]
    assert not (floor_root / "bin").exists() and not (floor_root / "usr" / "bin").exists()


def test_version_runs_on_the_floor(floor_root: Path):
    result = in_root(floor_root, ["/opt/ecrcred/ecrcred", "version"], {"PATH": "/nonexistent"})
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().startswith(f"ecrcred {__version__} (pyinstaller onedir, ")


def test_get_credentials_runs_on_the_floor(floor_root: Path, aws):
    req = request(f"{ECR}/app")
    env = {**aws.env(), "ECRCRED_CACHE_DIR": "/tmp/cache", "PATH": "/nonexistent"}
    result = in_root(floor_root, ["/opt/ecrcred/ecrcred", "get-credentials"], env,
                    json.dumps(req).encode() + b"\n")
    assert result.returncode == 0, result.stderr.decode()
    doc = check_response(result.stdout, req)
    assert doc["auth"][ECR]["username"] == "AWS"
    assert aws.calls("GetAuthorizationToken") == 1


def test_tls_and_grpc_load_on_the_floor(floor_root: Path):
    # an https endpoint where nothing listens: the bundled OpenSSL is loaded, the request fails
    # as a network failure (not an import or linker error)
    env = {"PATH": "/nonexistent", "AWS_ACCESS_KEY_ID": "AKIDNOTHING",
           "AWS_SECRET_ACCESS_KEY": "nothing", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_ENDPOINT_URL_ECR": "https://127.0.0.1:9"}
    req = request(f"{ECR}/app")
    result = in_root(floor_root, ["/opt/ecrcred/ecrcred", "get-credentials", "--no-cache",
                                 "--timeout", "10"], env, json.dumps(req).encode() + b"\n")
    assert result.returncode == 1, result.stderr.decode()
    assert "[AWS_UNREACHABLE]" in result.stderr.decode()
    # grpc (the CRI client) loads: a missing socket is the one-line runtime error
    result = in_root(floor_root, ["/opt/ecrcred/ecrcred", "pull-sandbox", "--image",
                                 f"{ECR}/eks/pause:3.9", "--runtime-endpoint",
                                 "unix:///tmp/no.sock", "--timeout", "2"],
                    {"PATH": "/nonexistent", "ECRCRED_CACHE_DIR": "/tmp/cache"})
    assert result.returncode == 6, result.stderr.decode()
    assert "/tmp/no.sock" in result.stderr.decode()
