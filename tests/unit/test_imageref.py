"""Image references and the kubelet's glob matching (matchImages, auth keys)."""

from __future__ import annotations

import pytest

from ecrcred.imageref import (
    ImageRef,
    glob_match,
    normalize_auth_key,
    parse_reference,
    registry_host,
)

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
DIGEST = "sha256:" + "0123456789abcdef" * 4


# -- glob_match: the kubelet's URLsMatchStr -----------------------------------------------------

@pytest.mark.parametrize(("pattern", "image", "expected"), [
    # host parts, one by one
    pytest.param("registry.io", "registry.io", True, id="exact-host"),
    pytest.param("registry.io", "registry.io/app", True, id="host-matches-any-path"),
    pytest.param("registry.io", "other.io", False, id="other-host"),
    pytest.param("*.registry.io", "a.registry.io", True, id="star-one-part"),
    pytest.param("*.registry.io", "a.b.registry.io", False, id="star-never-crosses-a-dot"),
    pytest.param("*.registry.io", "registry.io", False, id="star-part-is-not-optional"),
    pytest.param("*.*.registry.io", "a.b.registry.io", True, id="two-stars-two-parts"),
    pytest.param("*registry.io", "registry.io", True, id="star-matches-empty-within-part"),
    pytest.param("reg*.io", "registry.io", True, id="star-suffix-within-part"),
    pytest.param("reg*.io", "areg.io", False, id="star-anchored-within-part"),
    pytest.param("*.dkr.ecr.*.amazonaws.com", ECR, True, id="ecr-pattern"),
    pytest.param("*.dkr.ecr.*.amazonaws.com", f"{ECR}/team/app", True, id="ecr-pattern-path"),
    pytest.param("*.dkr.ecr.*.amazonaws.com", "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                 False, id="ecr-pattern-other-suffix"),
    pytest.param("*.dkr.ecr.*.amazonaws.com", f"{ECR}.evil.example", False,
                 id="ecr-pattern-lookalike"),
    # ports are compared as strings
    pytest.param("registry.io", "registry.io:5000", False, id="no-port-never-matches-a-port"),
    pytest.param("registry.io", "registry.io:5000/app", False,
                 id="no-port-never-matches-port-path"),
    pytest.param("*.registry.io", "a.registry.io:443", False, id="star-no-port-vs-port"),
    pytest.param("registry.io:5000", "registry.io:5000/app", True, id="same-port"),
    pytest.param("registry.io:5000", "registry.io:5001", False, id="other-port"),
    pytest.param("registry.io:5000", "registry.io", False, id="port-vs-none"),
    pytest.param("registry.io:05000", "registry.io:5000", False, id="port-equal-strings-only"),
    pytest.param("registry.io:abc", "registry.io:abc", False, id="invalid-port-never-parses"),
    pytest.param("localhost:5000", "localhost:5000/x", True, id="localhost-port"),
    # the path is a plain string prefix
    pytest.param("registry.io/foo", "registry.io/foo", True, id="path-equal"),
    pytest.param("registry.io/foo", "registry.io/foo/bar", True, id="path-prefix"),
    pytest.param("registry.io/foo", "registry.io/foobar", True, id="path-prefix-not-segment"),
    pytest.param("registry.io/foo", "registry.io/fo", False, id="path-shorter"),
    pytest.param("registry.io/foo", "registry.io", False, id="path-vs-no-path"),
    pytest.param("registry.io/foo", "registry.io/bar/foo", False, id="path-not-substring"),
    pytest.param("registry.io/*", "registry.io/foo", False, id="star-in-path-is-literal"),
    pytest.param("registry.io/f*", "registry.io/f*x", True, id="star-in-path-matches-itself"),
    # case-sensitive
    pytest.param("Registry.io", "registry.io", False, id="case-pattern-upper"),
    pytest.param("registry.io", "REGISTRY.IO", False, id="case-image-upper"),
    pytest.param("registry.io/Foo", "registry.io/foo", False, id="case-path"),
    # '?' starts the URL query in Go's url.Parse, before any globbing, so it is never a wildcard
    pytest.param("registr?.io", "registry.io", False, id="question-mark-cuts-host"),
    pytest.param("registry.io/foo?x", "registry.io/foo", True, id="question-mark-cuts-path"),
    # character classes
    pytest.param("registry[a-c].io", "registryb.io", True, id="class-range-in"),
    pytest.param("registry[a-c].io", "registryd.io", False, id="class-range-out"),
    pytest.param("registry[ab].io", "registrya.io", True, id="class-set-in"),
    pytest.param("x[^a].registry.io", "xa.registry.io", False, id="negated-class-excludes"),
    pytest.param("[a-c].registry.io", "a.registry.io", False,
                 id="leading-bracket-is-an-ipv6-literal"),
    # patterns Go's filepath.Match calls bad match nothing
    pytest.param("[", "[", False, id="bad-open-bracket"),
    pytest.param("registry[.io", "registry[.io", False, id="bad-unclosed-class"),
    pytest.param("registry[].io", "registry].io", False, id="bad-empty-class"),
    pytest.param("registr[a-].io", "registrya.io", False, id="bad-open-range"),
    pytest.param("registry\\", "registry\\", False, id="bad-trailing-escape"),
])
def test_glob_match_follows_the_kubelet(pattern: str, image: str, expected: bool):
    assert glob_match(pattern, image) is expected


def test_glob_match_with_a_bad_pattern_does_not_stop_other_patterns_matching():
    patterns = ["registry[.io", "*.registry.io"]
    assert [glob_match(p, "a.registry.io") for p in patterns] == [False, True]


# -- auth keys --------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "normalized"), [
    ("registry.io", "registry.io"),
    ("https://registry.io", "registry.io"),
    ("http://registry.io", "registry.io"),
    ("https://registry.io/", "registry.io"),
    ("https://registry.io/v2/", "registry.io"),
    ("https://registry.io/v1/", "registry.io"),
    ("registry.io/v2/team/app", "registry.io/team/app"),
    ("https://registry.io:5000/v1/team", "registry.io:5000/team"),
    ("registry.io/v3/team", "registry.io/v3/team"),
    ("registry.io/team/v2/app", "registry.io/team/v2/app"),
    ("registry.io/v2team", "registry.io/v2team"),
    ("ftp://registry.io", "ftp://registry.io"),
])
def test_normalize_auth_key_strips_scheme_and_api_version_prefix(key: str, normalized: str):
    assert normalize_auth_key(key) == normalized


# -- references -------------------------------------------------------------------------------

@pytest.mark.parametrize(("reference", "expected"), [
    ("pause:3.9", ImageRef("docker.io", "library/pause", "3.9", None)),
    ("busybox", ImageRef("docker.io", "library/busybox", "latest", None)),
    ("docker.io/busybox", ImageRef("docker.io", "library/busybox", "latest", None)),
    ("bitnami/redis:7", ImageRef("docker.io", "bitnami/redis", "7", None)),
    ("localhost:5000/x", ImageRef("localhost:5000", "x", "latest", None)),
    ("localhost/x:1", ImageRef("localhost", "x", "1", None)),
    ("registry.io:5000/team/app:v1.2_3-rc", ImageRef("registry.io:5000", "team/app",
                                                     "v1.2_3-rc", None)),
    (f"{ECR}/app:latest", ImageRef(ECR, "app", "latest", None)),
    (f"{ECR}/docker-hub/library/alpine", ImageRef(ECR, "docker-hub/library/alpine", "latest",
                                                  None)),
    (f"busybox@{DIGEST}", ImageRef("docker.io", "library/busybox", None, DIGEST)),
    (f"registry.io/app:1.0@{DIGEST}", ImageRef("registry.io", "app", "1.0", DIGEST)),
    (f"localhost:5000/x@{DIGEST}", ImageRef("localhost:5000", "x", None, DIGEST)),
    ("  pause:3.9 ", ImageRef("docker.io", "library/pause", "3.9", None)),
    ("registry.io:5000", ImageRef("docker.io", "library/registry.io", "5000", None)),
])
def test_parse_reference_normalizes_like_containerd(reference: str, expected: ImageRef):
    assert parse_reference(reference) == expected


@pytest.mark.parametrize(("reference", "name", "text"), [
    ("pause:3.9", "docker.io/library/pause", "docker.io/library/pause:3.9"),
    ("localhost:5000/x", "localhost:5000/x", "localhost:5000/x:latest"),
    (f"registry.io/app:1@{DIGEST}", "registry.io/app", f"registry.io/app:1@{DIGEST}"),
    (f"app@{DIGEST}", "docker.io/library/app", f"docker.io/library/app@{DIGEST}"),
])
def test_image_ref_name_is_what_the_kubelet_sends_and_str_is_the_full_reference(
        reference: str, name: str, text: str):
    ref = parse_reference(reference)
    assert ref.name == name
    assert str(ref) == text


@pytest.mark.parametrize("reference", [
    "",
    "   ",
    "/app",
    "app/",
    "reg istry.io/app",
    "Busybox",
    "registry.io/Team/app",
    "app:",
    "app:-bad",
    "app:" + "t" * 129,
    "app@sha256:abc",
    "app@sha256",
    "app@" + "0" * 64,
    "registry.io//app",
    "registry.io/app..x",
    "registry.io/-app",
])
def test_parse_reference_rejects_invalid_references(reference: str):
    with pytest.raises(ValueError, match="invalid"):
        parse_reference(reference)


@pytest.mark.parametrize(("image", "host"), [
    ("registry.io/app", "registry.io"),
    ("registry.io:5000/team/app", "registry.io:5000"),
    (f"{ECR}/public.ecr.aws/app", ECR),
    ("registry.io", "registry.io"),
])
def test_registry_host_is_the_part_before_the_first_slash(image: str, host: str):
    assert registry_host(image) == host


# -- found by review against the kubelet's and containerd's own code ------------------------


@pytest.mark.parametrize(("pattern", "image", "expected"), [
    ("registry[c-a].io", "registryb.io/x", False),  # reversed range: valid in Go, never matches
    ("x[^a].registry.io", "xb.registry.io/x", False),  # '^' is not allowed in a Go URL host
    ("reg\\istry.io", "registry.io/x", False),  # nor is '\\'
    ("[::1]:5000", "[::1]:5000/x", True),  # brackets dropped when there is a port
    ("[::1]", "[::1]/x", False),  # ... and kept (a character class) when there is none
])
def test_glob_match_agrees_with_go_on_edge_patterns(pattern, image, expected):
    assert glob_match(pattern, image) is expected


@pytest.mark.parametrize(("key", "expected"), [
    ("registry.io/v2", "registry.io/v2"),
    ("registry.io/v1", "registry.io/v1"),
    ("registry.io/v2/", "registry.io"),
    ("https://registry.io/v2/team", "registry.io/team"),
])
def test_normalize_auth_key_strips_versions_only_with_the_slash(key, expected):
    assert normalize_auth_key(key) == expected


@pytest.mark.parametrize(("reference", "host", "repository"), [
    ("index.docker.io/busybox", "docker.io", "library/busybox"),
    ("index.docker.io/team/app", "docker.io", "team/app"),
    ("Registry/app", "Registry", "app"),  # an upper-case first component is a host
])
def test_parse_reference_normalizes_legacy_and_uppercase_hosts(reference, host, repository):
    ref = parse_reference(reference)
    assert (ref.host, ref.repository) == (host, repository)


@pytest.mark.parametrize(("reference", "stored"), [
    ("localhost/kubernetes/pause", "localhost/kubernetes/pause:latest"),
    ("pause", "docker.io/library/pause:latest"),
    ("pause:3.10", "docker.io/library/pause:3.10"),
    ("index.docker.io/team/app", "docker.io/team/app:latest"),
    ("registry.k8s.io/pause@sha256:" + "a" * 64, "registry.k8s.io/pause@sha256:" + "a" * 64),
    # containerd's ParseDockerRef drops a tag beside a digest: the digest names the image
    ("registry.k8s.io/pause:3.10@sha256:" + "b" * 64,
     "registry.k8s.io/pause@sha256:" + "b" * 64),
    ("127.0.0.1:5000/eks/pause:3.10", "127.0.0.1:5000/eks/pause:3.10"),
    # a host with a port and no tag: the port's colon is not a tag's
    ("127.0.0.1:5000/eks/pause", "127.0.0.1:5000/eks/pause:latest"),
    ("docker.io/pause", "docker.io/library/pause:latest"),
])
def test_the_stored_name_is_the_one_containerd_keeps_the_image_under(reference: str,
                                                                     stored: str):
    assert parse_reference(reference).stored == stored
