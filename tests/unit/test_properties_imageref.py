"""Properties of the kubelet's glob matching (``ecrcred.imageref``), checked with hypothesis.

test_imageref.py has the table of the kubelet's cases. Here:

- ``glob_match`` on one host label is Go's ``filepath.Match``: checked against a line-for-line
  port of Go's own algorithm (``go_filepath_match`` below, from path/filepath/match.go), which
  shares no code with ecrcred's translation to a regex;
- the rules docs/kubelet.md states, for every host: a literal pattern
  matches itself, with any path; ``*.`` stands for exactly one label; the number of labels must
  be equal; ports are equal strings; the path is a plain prefix; matching is case-sensitive;
- ``glob_specificity``: a pattern without wildcards outranks any pattern with one, and a longer
  path outranks a shorter one on the same host; ``glob_host_match`` is ``glob_match`` of the
  hosts; ``normalize_auth_key`` is idempotent and only strips what the kubelet strips.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from ecrcred.imageref import (
    glob_host_match,
    glob_match,
    glob_specificity,
    normalize_auth_key,
)


class BadPattern(Exception):
    pass


def _get_esc(chunk: str) -> tuple[str, str]:
    if not chunk or chunk[0] in "-]":
        raise BadPattern
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            raise BadPattern
    r, rest = chunk[0], chunk[1:]
    if not rest:
        raise BadPattern
    return r, rest


def _match_chunk(chunk: str, s: str) -> tuple[str, bool]:
    failed = False
    while chunk:
        if not failed and not s:
            failed = True
        c = chunk[0]
        if c == "[":
            r = ""
            if not failed:
                r, s = s[0], s[1:]
            chunk = chunk[1:]
            negated = bool(chunk) and chunk[0] == "^"
            if negated:
                chunk = chunk[1:]
            matched, nrange = False, 0
            while True:
                if chunk and chunk[0] == "]" and nrange > 0:
                    chunk = chunk[1:]
                    break
                lo, chunk = _get_esc(chunk)
                hi = lo
                if chunk[0] == "-":
                    hi, chunk = _get_esc(chunk[1:])
                if not failed and lo <= r <= hi:
                    matched = True
                nrange += 1
            if matched == negated:
                failed = True
        elif c == "?":
            if not failed:
                if s[0] == "/":
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
        else:
            if c == "\\":
                chunk = chunk[1:]
                if not chunk:
                    raise BadPattern
            if not failed:
                if chunk[0] != s[0]:
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
    return ("", False) if failed else (s, True)


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    star = False
    while pattern and pattern[0] == "*":
        pattern, star = pattern[1:], True
    in_range, i = False, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif c == "[":
            in_range = True
        elif c == "]":
            in_range = False
        elif c == "*" and not in_range:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def go_filepath_match(pattern: str, name: str) -> bool:
    """Go's path/filepath.Match (Unix): True/False, or BadPattern (the kubelet: no match)."""
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and not chunk:  # a trailing * matches the rest unless it has a '/'
            return "/" not in name
        t, ok = _match_chunk(chunk, name)
        if ok and (not t or pattern):
            name = t
            continue
        skipped_to = None
        if star:  # try the chunk after skipping 1, 2, ... characters (never a '/')
            for i in range(len(name)):
                if name[i] == "/":
                    break
                t, ok = _match_chunk(chunk, name[i + 1:])
                if ok:
                    if not pattern and t:
                        continue
                    skipped_to = t
                    break
        if skipped_to is not None:
            name = skipped_to
            continue
        while pattern:  # Go checks that the rest of the pattern is well formed
            _, chunk, pattern = _scan_chunk(pattern)
            _match_chunk(chunk, "")
        return False
    return not name


def go_says(pattern: str, name: str) -> bool:
    try:
        return go_filepath_match(pattern, name)
    except BadPattern:
        return False


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("*", "abc", True), ("a*c", "abbbc", True), ("a*c", "abcd", False), ("?b", "ab", True),
    ("[a-c]x", "bx", True), ("[^a-c]x", "bx", False), ("[c-a]", "b", False),
    ("[c-ax]", "x", True), ("[^c-a]", "b", True), ("a\\*", "a*", True), ("[", "[", False),
    ("a[", "b", False), ("*x", "abx", True), ("a*b*c", "axxbyyc", True), ("[]a]", "a", False),
    ("\\", "", False), ("[a-]", "a", False), ("*[a-", "x", False),
])
def test_the_go_oracle_agrees_with_go_on_known_cases(pattern: str, name: str, expected: bool):
    # Cases from Go's match_test.go and the kubelet's table, to trust the oracle itself.
    assert go_says(pattern, name) is expected


# Characters Go's url.Parse lets through in a host, except the ones url.Parse gives a meaning
# (':' port, '@' userinfo, '/', '?', '#', '.' between labels) and '%', which it unescapes
# (ecrcred compares the escaped text; see tests/fuzz/README.md). '^' and '\\' are refused in a
# host by url.Parse, but are part of filepath.Match's syntax: the matcher-level test has them.
HOST_CHARS = "abc-_~!$&'()+,;=<>\"*[]"
host_labels = st.text(alphabet=HOST_CHARS, max_size=8)
labels = st.text(alphabet=HOST_CHARS + "^\\", max_size=8)
names = st.text(alphabet=HOST_CHARS, max_size=8)


@given(host_labels, names)
@example("[c-ax]", "x")  # a reversed range next to a good one: Go matches, ecrcred did not
@example("a[b-a]", "ab")
def test_a_single_label_matches_exactly_when_go_filepath_match_says_so(pattern: str, name: str):
    # A leading '[' would be an IPv6 literal to url.Parse: prefix a letter.
    assert glob_match("x" + pattern, "x" + name) is go_says("x" + pattern, "x" + name)


@given(labels, names)
@example("[^c-a]", "b")  # only a reversed range, negated: Go matches anything
def test_the_oracle_and_ecrcred_agree_on_the_label_matcher_itself(pattern: str, name: str):
    # The same comparison on the label matcher alone, where '^' and '\\' are allowed.
    from ecrcred.imageref import _go_match_regex

    regex = _go_match_regex(pattern)
    ours = regex is not None and regex.fullmatch(name) is not None
    assert ours is go_says(pattern, name)


dns_labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10)
hosts = st.lists(dns_labels, min_size=1, max_size=5).map(".".join)
paths = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._*", min_size=1,
                         max_size=8), max_size=3).map("/".join)
ports = st.integers(min_value=1, max_value=65535).map(str)


@given(hosts, paths)
def test_a_literal_pattern_matches_itself_and_anything_below_it(host: str, path: str):
    pattern = f"{host}/{path}" if path else host
    assert glob_match(pattern, pattern)
    if path:
        assert glob_match(pattern, pattern + "x")  # a plain prefix, not a path segment
    else:
        assert not glob_match(pattern, pattern + "x"), "a host is matched label by label"
    assert glob_match(pattern, f"{pattern}/more/app")
    assert glob_match(host, pattern), "a host matches every path"


@given(hosts, dns_labels, dns_labels)
def test_a_star_label_stands_for_exactly_one_label(rest: str, one: str, another: str):
    pattern = f"*.{rest}"
    assert glob_match(pattern, f"{one}.{rest}/app")
    assert not glob_match(pattern, f"{another}.{one}.{rest}/app"), "* never crosses a dot"
    assert not glob_match(pattern, f"{rest}/app"), "*. is not optional"


@given(hosts, hosts)
def test_hosts_with_different_numbers_of_labels_never_match(pattern: str, host: str):
    assume(pattern.count(".") != host.count("."))
    stars = ".".join("*" for _ in pattern.split("."))
    assert not glob_match(stars, host)
    assert not glob_match(pattern, host)


@given(hosts, ports, ports, paths)
def test_ports_are_compared_as_strings(host: str, port: str, other: str, path: str):
    assert glob_match(f"{host}:{port}", f"{host}:{port}/{path}")
    assert not glob_match(host, f"{host}:{port}/{path}"), "no port never matches a port"
    assert not glob_match(f"{host}:{port}", f"{host}/{path}")
    assert glob_match(f"{host}:{port}", f"{host}:{other}") is (port == other)
    assert not glob_match(f"{host}:0{port}", f"{host}:{port}")


@given(hosts, paths, paths)
def test_the_path_is_a_plain_prefix_and_a_star_in_it_is_literal(host: str, a: str, b: str):
    assume(a)
    assert glob_match(f"{host}/{a}", f"{host}/{b}") is (b.startswith(a))


@given(hosts, paths, st.data())
def test_matching_is_case_sensitive(host: str, path: str, data: st.DataObject):
    image = f"{host}/{path}" if path else host
    letters = [i for i, c in enumerate(image) if c.isalpha()]
    assume(letters)
    i = data.draw(st.sampled_from(letters))
    assert not glob_match(image, image[:i] + image[i].upper() + image[i + 1:])


@given(st.text(max_size=40), st.text(max_size=40))
@example("a.io?x/y", "a.io/z")  # the query starts before the '/': no path (fixed)
@example("a.io#x/y", "a.io/z")
def test_glob_match_and_glob_host_match_never_raise(pattern: str, image: str):
    matched = glob_match(pattern, image)
    host_matched = glob_host_match(pattern, image)
    assert isinstance(matched, bool) and isinstance(host_matched, bool)
    if matched and "?" not in pattern and "#" not in pattern:
        assert host_matched, "a full match is a host match"


@pytest.mark.parametrize(("pattern", "image", "expected"), [
    ("a.io?x/y", "a.io/z", True),  # url.Parse: host a.io, query "x/y", no path
    ("a.io#x/y", "a.io/z", True),  # ... or a fragment
    ("a.io/p?x/y", "a.io/pz", True),
    ("a.io/p?x/y", "a.io/q", False),
    ("registry[c-ax].io", "registryx.io/app", True),  # a reversed range next to a good one
    ("registry[c-a].io", "registryb.io/app", False),  # only a reversed range: nothing matches
])
def test_glob_match_regressions_found_by_the_properties(pattern: str, image: str,
                                                        expected: bool):
    # Before: the query and fragment were cut from the authority and the path separately (so
    # "a.io?x/y" had the path "/y"), and a class with a reversed range failed to compile as a
    # whole regex (so "[c-ax]" matched nothing, where Go matches "x").
    assert glob_match(pattern, image) is expected


@given(hosts, paths, hosts, paths)
def test_a_pattern_without_wildcards_outranks_any_with_one(
        host: str, path: str, other: str, other_path: str):
    literal = f"{host}/{path}" if path else host
    labels = other.split(".")
    wild = ".".join(["*", *labels[1:]]) + (f"/{other_path}" if other_path else "")
    assert glob_specificity(literal) > glob_specificity(wild)


@given(hosts, paths, dns_labels)
def test_a_longer_path_on_the_same_host_ranks_higher(host: str, path: str, more: str):
    shorter = f"{host}/{path}" if path else host
    assert glob_specificity(f"{shorter}/{more}") > glob_specificity(shorter)
    assert glob_specificity(f"{shorter}/") == glob_specificity(shorter)


@given(st.text(max_size=30), st.text(max_size=30))
def test_glob_host_match_is_glob_match_of_the_hosts(pattern: str, image: str):
    assert glob_host_match(pattern, image) is glob_match(pattern.split("/", 1)[0],
                                                         image.split("/", 1)[0])


@given(st.sampled_from(["https://", "http://"]), hosts, paths)
def test_normalize_auth_key_strips_the_scheme_and_nothing_else_of_a_plain_key(
        scheme: str, host: str, path: str):
    assume(not path.startswith(("v1/", "v2/")))
    key = f"{host}/{path}" if path else host
    assert normalize_auth_key(key) == key
    assert normalize_auth_key(scheme + key) == key
    assert normalize_auth_key(f"{scheme}{host}/") == host


@given(st.sampled_from(["", "https://"]), hosts, st.sampled_from(["v1/", "v2/"]), paths)
def test_normalize_auth_key_strips_one_leading_api_version(
        scheme: str, host: str, version: str, path: str):
    normalized = normalize_auth_key(f"{scheme}{host}/{version}{path}")
    assert normalized == (f"{host}/{path}" if path else host)
    assert glob_match(normalized, f"{host}/{path}/app"), "the kubelet can use the key"
    assert normalize_auth_key(f"{host}/{version}{version}{path}") == (
        f"{host}/{version}{path}"), "only once, as keyring.go does"
