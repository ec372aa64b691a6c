"""Properties of the kubelet wire protocol (``ecrcred.kubelet``), checked with hypothesis.

The table-driven cases are in test_kubelet.py; these say what holds for *every* input: any
bytes on stdin become a Request or a RequestError (nothing else escapes), a request the kubelet
could send reads back field for field, the size limit is exact, a rendered response is one
strict JSON line the kubelet accepts, and Go durations round-trip and parse as Go parses them.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from ecrcred.errors import RequestError
from ecrcred.kubelet import (
    API_VERSIONS,
    CACHE_KEY_TYPES,
    MAX_REQUEST_BYTES,
    AuthEntry,
    Request,
    Response,
    go_duration,
    parse_go_duration,
    parse_request,
    render_response,
)

KIND = "CredentialProviderRequest"
FIELDS = ("kind", "apiVersion", "image", "serviceAccountToken", "serviceAccountAnnotations")

# JSON values of every shape, nested a few levels.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
# Objects that look like requests: the known fields with values of any type, plus strays.
request_like = st.fixed_dictionaries({}, optional={
    "kind": st.just(KIND) | json_values,
    "apiVersion": st.sampled_from(API_VERSIONS) | json_values,
    "image": st.text() | json_values,
    "serviceAccountToken": st.text() | json_values,
    "serviceAccountAnnotations": st.dictionaries(st.text(), st.text()) | json_values,
    "extra": json_values,
})


def parse_or_error(raw: bytes) -> Request | RequestError:
    try:
        return parse_request(raw)
    except RequestError as exc:
        return exc


def check_error(error: RequestError) -> None:
    assert error.exit_code == 3
    assert error.hint
    line = error.one_line()
    assert "\n" not in line
    assert len(line) < 1000, "an error never echoes a large input"


@settings(max_examples=300)
@given(st.binary(max_size=512))
@example(b"[" * 100_000)  # json's decoder recursed out: RecursionError, exit 70 (fixed)
@example(b'{"image":' * 50_000)
@example(b"\xef\xbb\xbf{}")  # a UTF-8 byte-order mark
@example(b"\xff\xfe{\x00}\x00")  # UTF-16, which json.loads detects
@example(b'{"kind":"CredentialProviderRequest","image":"\\ud800"}')
def test_any_bytes_give_a_request_or_a_request_error(raw: bytes):
    outcome = parse_or_error(raw)
    if isinstance(outcome, RequestError):
        check_error(outcome)
    else:
        assert isinstance(outcome, Request)


@given(request_like)
def test_any_json_object_gives_a_request_or_a_request_error(doc: dict[str, object]):
    raw = json.dumps(doc).encode()
    outcome = parse_or_error(raw)
    if isinstance(outcome, RequestError):
        check_error(outcome)
        return
    # Accepted only when every field the kubelet defines has the type the kubelet sends.
    assert doc["kind"] == KIND
    assert doc["apiVersion"] in API_VERSIONS
    assert isinstance(doc["image"], str)
    assert outcome.image == doc["image"].strip() != ""


@pytest.mark.parametrize("raw", [
    pytest.param(b"[" * 10_000 + b"]" * 10_000, id="lists-10k"),
    pytest.param(b"[" * 500_000 + b"]" * 500_000, id="lists-500k"),
    pytest.param(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, id="objects-100k"),
    pytest.param(b'{"image":[' * 100_000, id="unterminated-100k"),
])
def test_deeply_nested_json_is_a_request_error_not_a_crash(raw: bytes):
    # Regression: json.loads raised RecursionError (not a ValueError) and the CLI answered
    # "internal error" with exit 70 instead of a bad-request exit 3.
    assert len(raw) <= MAX_REQUEST_BYTES
    with pytest.raises(RequestError, match="nested too deeply") as caught:
        parse_request(raw)
    check_error(caught.value)


images = st.text(min_size=1).filter(lambda s: s.strip() != "")
tokens = st.none() | st.text()
annotations = st.none() | st.dictionaries(st.text(), st.text())


@given(st.sampled_from(API_VERSIONS), images, tokens, annotations, st.booleans())
def test_a_request_the_kubelet_could_send_reads_back_field_for_field(
        api_version: str, image: str, token: str | None, notes: dict[str, str] | None,
        ascii_only: bool):
    doc: dict[str, object] = {"kind": KIND, "apiVersion": api_version, "image": image}
    if token is not None:
        doc["serviceAccountToken"] = token
    if notes is not None:
        doc["serviceAccountAnnotations"] = notes
    text = json.dumps(doc, ensure_ascii=ascii_only)
    # Raw UTF-8 cannot carry a lone surrogate; escaped (ensure_ascii) it can, and must read back.
    assume(ascii_only or not re.search("[\ud800-\udfff]", text))
    request = parse_request(text.encode() + b"\n")
    assert request == Request(api_version, image.strip(), token or None, notes or None)
    without_token = repr(request._replace(service_account_token=None))
    # A token that is part of the mark itself ("<", "red") cannot be told from it.
    if token and token not in without_token and token not in "<redacted>":
        assert token not in repr(request), "the service-account token shows in repr()"


@settings(max_examples=20)
@given(st.integers(min_value=0, max_value=64))
def test_the_size_limit_is_exactly_max_request_bytes(slack: int):
    body = json.dumps({"kind": KIND, "apiVersion": API_VERSIONS[0],
                       "image": "registry.io/app"}).encode()
    at_limit = body + b" " * (MAX_REQUEST_BYTES - len(body) - slack)
    assert parse_request(at_limit).image == "registry.io/app"
    over = body + b" " * (MAX_REQUEST_BYTES - len(body) + 1 + slack)
    with pytest.raises(RequestError, match=f"larger than {MAX_REQUEST_BYTES} bytes") as caught:
        parse_request(over)
    check_error(caught.value)


# -- responses --------------------------------------------------------------------------------

auth_maps = st.dictionaries(st.text(), st.builds(AuthEntry, st.text(), st.text()), max_size=4)
durations = st.none() | st.integers(min_value=-10**6, max_value=10**9)  # ~31 years


def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys))
    return dict(pairs)


@given(st.sampled_from(API_VERSIONS), st.sampled_from(CACHE_KEY_TYPES), durations, auth_maps)
def test_a_rendered_response_is_one_strict_json_line_that_reads_back(
        api_version: str, key_type: str, seconds: int | None, auth: dict[str, AuthEntry]):
    raw = render_response(Response(api_version, key_type, seconds, auth))
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    assert raw.isascii(), "every non-ASCII character is escaped, so no encoding can break it"
    doc = json.loads(raw, object_pairs_hook=no_duplicates)
    expected = {"kind", "apiVersion", "cacheKeyType", "auth"} | (
        set() if seconds is None else {"cacheDuration"})
    assert set(doc) == expected
    assert (doc["kind"], doc["apiVersion"], doc["cacheKeyType"]) == (
        "CredentialProviderResponse", api_version, key_type)
    assert doc["auth"] == {k: {"username": e.username, "password": e.password}
                           for k, e in auth.items()}
    if seconds is not None:
        assert isinstance(doc["cacheDuration"], str)
        assert parse_go_duration(doc["cacheDuration"]) == max(seconds, 0)


@given(st.text(), durations)
def test_render_response_refuses_any_cache_key_type_the_kubelet_would_reject(
        key_type: str, seconds: int | None):
    assume(key_type not in CACHE_KEY_TYPES)
    with pytest.raises(ValueError, match="cacheKeyType"):
        render_response(Response(API_VERSIONS[0], key_type, seconds, {}))


# -- Go durations -----------------------------------------------------------------------------

_GO_UNIT_NS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6,
               "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_GO_DURATION = re.compile(
    r"[-+]?(?:0|(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+)")


def go_parse_ns(text: str) -> Fraction | None:
    """Go's time.ParseDuration, as an oracle: exact nanoseconds, or None where Go errs.
    (ecrcred strips surrounding whitespace first, which Go does not: the YAML and JSON readers
    in front of it already have.)"""
    s = text.strip()
    if not _GO_DURATION.fullmatch(s):
        return None
    sign = -1 if s.startswith("-") else 1
    total = Fraction(0)
    for number, unit in re.findall(r"([0-9.]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)", s):
        total += Fraction(number) * _GO_UNIT_NS[unit]
    if total > 2**63 - 1:
        return None
    return sign * total


go_like = st.text(alphabet="0123456789.+-nsuµμmh \u0661\u00b2x", max_size=12)


@settings(max_examples=400)
@given(go_like | st.text(max_size=12))
@example("\u0661h")  # an Arabic-Indic digit: accepted as "1h" before, Go refuses it (fixed)
@example("1\u03bcs")  # the Greek mu: refused before, Go accepts it (fixed)
@example("3000000h")  # past int64 nanoseconds: accepted before, Go refuses it (fixed)
@example("2562047h")
@example("\u00b2s")
def test_parse_go_duration_accepts_exactly_what_go_accepts(text: str):
    expected = go_parse_ns(text)
    try:
        seconds = parse_go_duration(text)
    except ValueError:
        assert expected is None, f"Go accepts {text!r}"
        return
    assert expected is not None, f"Go refuses {text!r}"
    assert seconds == pytest.approx(float(expected) / 1e9, rel=1e-9, abs=1e-9)


_GO_STRING = re.compile(
    r"0s|[1-9][0-9]*h[0-9]{1,2}m[0-9]{1,2}s|[1-9][0-9]?m[0-9]{1,2}s|[1-9][0-9]?s")


@given(st.integers(min_value=0, max_value=(2**63 - 1) // 10**9))
def test_go_duration_writes_go_syntax_that_reads_back(seconds: int):
    text = go_duration(seconds)
    assert _GO_STRING.fullmatch(text), text
    assert parse_go_duration(text) == seconds
