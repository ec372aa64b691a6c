"""The kubelet wire protocol: Go durations, request parsing and response rendering."""

from __future__ import annotations

import json

import pytest

from ecrcred.errors import RequestError
from ecrcred.kubelet import (
    API_VERSIONS,
    MAX_REQUEST_BYTES,
    AuthEntry,
    Request,
    Response,
    go_duration,
    parse_go_duration,
    parse_request,
    render_response,
)

V1, V1BETA1, V1ALPHA1 = API_VERSIONS
SA_TOKEN = "eyJhbGciOiJSUzI1NiJ9.sa-token-payload.signature"


def request_bytes(**fields: object) -> bytes:
    doc: dict[str, object] = {
        "kind": "CredentialProviderRequest",
        "apiVersion": V1,
        "image": "123456789012.dkr.ecr.us-west-2.amazonaws.com/app",
    }
    for name, value in fields.items():
        if value is DROP:
            doc.pop(name, None)
        else:
            doc[name] = value
    return json.dumps(doc).encode() + b"\n"


DROP = object()


# -- Go durations -------------------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"),
    (1, "1s"),
    (59, "59s"),
    (60, "1m0s"),
    (61, "1m1s"),
    (3599, "59m59s"),
    (3600, "1h0m0s"),
    (3661, "1h1m1s"),
    (21600, "6h0m0s"),
    (39600, "11h0m0s"),
    (90000, "25h0m0s"),
])
def test_go_duration_formats_whole_seconds_like_go_duration_string(seconds: int, text: str):
    assert go_duration(seconds) == text


@pytest.mark.parametrize("seconds", [-1, -3600])
def test_go_duration_clamps_negative_input_to_zero(seconds: int):
    assert go_duration(seconds) == "0s"


@pytest.mark.parametrize("seconds", [0, 1, 59, 60, 61, 3599, 3600, 3661, 21600, 90000])
def test_parse_go_duration_reads_back_what_go_duration_writes(seconds: int):
    assert parse_go_duration(go_duration(seconds)) == seconds


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0),
    ("-0", 0.0),
    ("0s", 0.0),
    ("90s", 90.0),
    ("1m", 60.0),
    ("12h", 43200.0),
    ("21600s", 21600.0),
    ("6h0m0s", 21600.0),
    ("1h30m", 5400.0),
    ("1.5h", 5400.0),
    (".5s", 0.5),
    ("500ms", 0.5),
    ("250us", 0.00025),
    ("250µs", 0.00025),
    ("100ns", 1e-7),
    ("+2s", 2.0),
    ("-1m", -60.0),
    (" 12h ", 43200.0),
])
def test_parse_go_duration_accepts_go_syntax(text: str, seconds: float):
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [
    "1",        # a number needs a unit, as in Go
    "h",
    "1x",
    "1d",
    "1h 30m",
    "abc",
    "+",
    "-",
    "1..5s",
    ".s",
    "1H",
])
def test_parse_go_duration_rejects_what_go_rejects(text: str):
    with pytest.raises(ValueError, match=r"invalid duration|could not convert"):
        parse_go_duration(text)


# -- requests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_parse_request_accepts_every_plugin_api_version(api_version: str):
    request = parse_request(request_bytes(apiVersion=api_version))
    assert request.api_version == api_version
    assert request.image == "123456789012.dkr.ecr.us-west-2.amazonaws.com/app"
    assert request.service_account_token is None
    assert request.service_account_annotations is None


def test_parse_request_reads_service_account_token_and_annotations():
    annotations = {"eks.amazonaws.com/ecr-role-arn": "arn:aws:iam::123456789012:role/pull"}
    request = parse_request(request_bytes(serviceAccountToken=SA_TOKEN,
                                          serviceAccountAnnotations=annotations))
    assert request.service_account_token == SA_TOKEN
    assert request.service_account_annotations == annotations


def test_parse_request_treats_empty_token_and_annotations_as_absent():
    request = parse_request(request_bytes(serviceAccountToken="", serviceAccountAnnotations={}))
    assert request.service_account_token is None
    assert request.service_account_annotations is None


def test_parse_request_strips_whitespace_around_the_image():
    assert parse_request(request_bytes(image="  registry.io/app \n")).image == "registry.io/app"


def test_parse_request_accepts_a_request_without_trailing_newline():
    assert parse_request(request_bytes().rstrip()).api_version == V1


_OVERSIZE = b'{"kind":"CredentialProviderRequest","pad":"' + b"x" * MAX_REQUEST_BYTES + b'"}'


@pytest.mark.parametrize(("raw", "needle"), [
    pytest.param(b"", "empty", id="empty"),
    pytest.param(b"  \n", "empty", id="blank"),
    pytest.param(_OVERSIZE, f"larger than {MAX_REQUEST_BYTES} bytes", id="oversize"),
    pytest.param(b"{", "not valid JSON", id="truncated-json"),
    pytest.param(b"kind: CredentialProviderRequest", "not valid JSON", id="yaml"),
    pytest.param(b"\xff\xfe\x00", "not valid JSON", id="not-utf8"),
    pytest.param(b"[]", "JSON list, not an object", id="array"),
    pytest.param(b'"text"', "JSON str, not an object", id="string"),
    pytest.param(b"42", "JSON int, not an object", id="number"),
    pytest.param(request_bytes(kind=DROP), "kind is None", id="no-kind"),
    pytest.param(request_bytes(kind="CredentialProviderResponse"),
                 "kind is 'CredentialProviderResponse'", id="wrong-kind"),
    pytest.param(request_bytes(apiVersion=DROP), "apiVersion None is not supported",
                 id="no-api-version"),
    pytest.param(request_bytes(apiVersion="credentialprovider.kubelet.k8s.io/v2"),
                 "apiVersion 'credentialprovider.kubelet.k8s.io/v2' is not supported",
                 id="unknown-api-version"),
    pytest.param(request_bytes(apiVersion="kubelet.config.k8s.io/v1"), "is not supported",
                 id="config-api-version"),
    pytest.param(request_bytes(image=DROP), "no image", id="no-image"),
    pytest.param(request_bytes(image=""), "no image", id="empty-image"),
    pytest.param(request_bytes(image="   "), "no image", id="blank-image"),
    pytest.param(request_bytes(image=["a"]), "no image", id="image-not-string"),
    pytest.param(request_bytes(serviceAccountToken=42), "serviceAccountToken is not a string",
                 id="token-not-string"),
    pytest.param(request_bytes(serviceAccountAnnotations=["a"]),
                 "serviceAccountAnnotations is not a map of strings", id="annotations-list"),
    pytest.param(request_bytes(serviceAccountAnnotations={"a": 1}),
                 "serviceAccountAnnotations is not a map of strings", id="annotation-int"),
    pytest.param(request_bytes(serviceAccountAnnotations={"a": None}),
                 "serviceAccountAnnotations is not a map of strings", id="annotation-null"),
])
def test_parse_request_rejects_unusable_input_with_a_message_naming_the_problem(
        raw: bytes, needle: str):
    with pytest.raises(RequestError) as caught:
        parse_request(raw)
    error = caught.value
    assert needle in error.message
    assert error.hint, "every request error says what the kubelet should send"
    assert error.exit_code == 3
    assert "\n" not in error.one_line()
    assert len(error.one_line()) < 500, "no echo of a large input"


def test_unsupported_api_version_hint_lists_the_supported_versions():
    with pytest.raises(RequestError) as caught:
        parse_request(request_bytes(apiVersion="v9"))
    for version in API_VERSIONS:
        assert version in caught.value.hint


@pytest.mark.parametrize("defect", [
    {"kind": "Wrong"},
    {"apiVersion": "v9"},
    {"image": ""},
    {"serviceAccountAnnotations": {"k": 1}},
])
def test_request_errors_never_contain_the_service_account_token(defect: dict[str, object]):
    raw = request_bytes(serviceAccountToken=SA_TOKEN, **defect)
    with pytest.raises(RequestError) as caught:
        parse_request(raw)
    assert SA_TOKEN not in caught.value.one_line()
    assert SA_TOKEN not in repr(caught.value)


@pytest.mark.parametrize("render", [repr, str])
def test_request_repr_hides_the_service_account_token(render):
    request = parse_request(request_bytes(serviceAccountToken=SA_TOKEN,
                                          serviceAccountAnnotations={"a": "b"}))
    text = render(request)
    assert SA_TOKEN not in text
    assert "sa-token-payload" not in text
    assert "service_account_token='<redacted>'" in text
    assert "image='123456789012.dkr.ecr.us-west-2.amazonaws.com/app'" in text


def test_request_repr_shows_none_when_there_is_no_token():
    assert "service_account_token=None" in repr(Request(V1, "registry.io/app"))


# -- responses ----------------------------------------------------------------------------------

ECR_HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"


def rendered(response: Response) -> dict[str, object]:
    raw = render_response(response)
    assert raw.endswith(b"\n")
    assert raw.count(b"\n") == 1, "stdout carries one JSON object on one line"

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"duplicated field in {keys}"
        return dict(pairs)

    return json.loads(raw, object_pairs_hook=no_duplicates)


@pytest.mark.parametrize(("seconds", "fields", "duration"), [
    (21600, {"kind", "apiVersion", "cacheKeyType", "cacheDuration", "auth"}, "6h0m0s"),
    (60, {"kind", "apiVersion", "cacheKeyType", "cacheDuration", "auth"}, "1m0s"),
    (0, {"kind", "apiVersion", "cacheKeyType", "cacheDuration", "auth"}, "0s"),
    (None, {"kind", "apiVersion", "cacheKeyType", "auth"}, None),
])
def test_render_response_writes_exactly_the_fields_the_kubelet_knows(
        seconds: int | None, fields: set[str], duration: str | None):
    doc = rendered(Response(V1, "Registry", seconds, {ECR_HOST: AuthEntry("AWS", "pw")}))
    assert set(doc) == fields
    assert doc["kind"] == "CredentialProviderResponse"
    assert doc.get("cacheDuration") == duration
    assert doc["auth"] == {ECR_HOST: {"username": "AWS", "password": "pw"}}


def test_render_response_writes_cache_duration_as_a_string_never_a_number():
    doc = rendered(Response(V1, "Registry", 3600, {}))
    assert isinstance(doc["cacheDuration"], str)


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_render_response_echoes_the_request_api_version(api_version: str):
    assert rendered(Response(api_version, "Image", 5, {}))["apiVersion"] == api_version


@pytest.mark.parametrize("cache_key_type", ["Image", "Registry", "Global"])
def test_render_response_accepts_the_three_cache_key_types(cache_key_type: str):
    assert rendered(Response(V1, cache_key_type, 5, {}))["cacheKeyType"] == cache_key_type


@pytest.mark.parametrize("cache_key_type", ["registry", "Host", ""])
def test_render_response_refuses_a_cache_key_type_the_kubelet_would_reject(cache_key_type: str):
    with pytest.raises(ValueError, match="cacheKeyType"):
        render_response(Response(V1, cache_key_type, 5, {}))


def test_render_response_gives_each_auth_entry_only_username_and_password():
    auth = {
        ECR_HOST: AuthEntry("AWS", "pass:with:colons"),
        "mirror.example.com:5000/docker-hub": AuthEntry("AWS", "other"),
    }
    doc = rendered(Response(V1, "Registry", 30, auth))
    assert doc["auth"] == {
        ECR_HOST: {"username": "AWS", "password": "pass:with:colons"},
        "mirror.example.com:5000/docker-hub": {"username": "AWS", "password": "other"},
    }



@pytest.mark.parametrize("text", ["", "   ", "+", "-"])
def test_parse_go_duration_rejects_empty_and_bare_signs_with_value_error(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_go_duration(text)


def test_auth_entry_repr_hides_the_password():
    from ecrcred.kubelet import AuthEntry

    assert "s3cret-value" not in repr(AuthEntry("AWS", "s3cret-value"))


# -- what a refused request may show of itself ----------------------------------------------------

def test_a_number_past_pythons_digit_limit_is_a_bad_request_that_says_so():
    # Written by hand: Python's json refuses to write such a number, as it refuses to read one.
    raw = request_bytes()[:-2] + b', "extra": ' + b"7" * 5000 + b"}\n"
    with pytest.raises(RequestError) as caught:
        parse_request(raw)
    line = caught.value.one_line()
    assert "a number of more than 4300 digits" in line
    assert "set_int_max_str_digits" not in line, "advice for a programmer, not for the kubelet"
    assert caught.value.exit_code == 3


@pytest.mark.parametrize("field", ["kind", "apiVersion"])
def test_a_wrong_kind_or_api_version_is_shown_bounded_and_escaped(field: str):
    hostile = "\x1b[2J\nfake: line" + "v" * 300_000
    with pytest.raises(RequestError) as caught:
        parse_request(request_bytes(**{field: hostile}))
    line = caught.value.one_line()
    assert len(line) < 1000
    assert "\\x1b[2J\\nfake: line" in line
    assert "\x1b" not in line
    assert "v" * 1000 not in line


@pytest.mark.parametrize(("value", "shown"), [
    pytest.param(["CredentialProviderRequest"] * 30_000, "kind is a JSON list", id="list"),
    pytest.param({"a": "b" * 100_000}, "kind is a JSON dict", id="object"),
    pytest.param(10**4000, "kind is a JSON int", id="number"),
])
def test_a_kind_that_is_no_string_is_shown_by_its_type_alone(value: object, shown: str):
    with pytest.raises(RequestError) as caught:
        parse_request(request_bytes(kind=value))
    assert shown in caught.value.message
    assert len(caught.value.one_line()) < 500
