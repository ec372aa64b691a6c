"""The kubelet's exec credential provider wire protocol: request parsing and response building.

Pure functions over bytes and dicts, no I/O, and only the standard library: this module sits on
the cache-hit path, which the kubelet runs once per image at node boot, so it must import nothing
heavy (see README, "Speed").

The kubelet decodes the response strictly (an unknown or duplicated field rejects it), requires
the response's apiVersion to equal the request's, and reads ``cacheDuration`` as a Go duration
string. Facts: docs/kubelet.md.
"""

from __future__ import annotations

import sys

from ecrcred import jsonwire
from ecrcred._record import Record
from ecrcred.errors import RequestError
from ecrcred.log import quote_untrusted

API_GROUP = "credentialprovider.kubelet.k8s.io"
API_VERSIONS = (f"{API_GROUP}/v1", f"{API_GROUP}/v1beta1", f"{API_GROUP}/v1alpha1")
REQUEST_KIND = "CredentialProviderRequest"
RESPONSE_KIND = "CredentialProviderResponse"
CACHE_KEY_TYPES = ("Image", "Registry", "Global")

# The kubelet sends one small object; anything near this size is not from the kubelet.
MAX_REQUEST_BYTES = 1 << 20

REQUEST_HINT = "the kubelet sends one CredentialProviderRequest as JSON on stdin"


class Request(Record):
    """One CredentialProviderRequest. The service-account token is never logged or echoed."""

    api_version: str
    image: str
    service_account_token: str | None = None
    service_account_annotations: dict[str, str] | None = None

    def __repr__(self) -> str:  # keep the token out of any debug output
        token = "<redacted>" if self.service_account_token else None
        return (
            f"Request(api_version={self.api_version!r}, image={self.image!r}, "
            f"service_account_token={token!r}, "
            f"service_account_annotations={self.service_account_annotations!r})"
        )


class AuthEntry(Record):
    username: str
    password: str

    def __repr__(self) -> str:  # never let a password reach a log through repr()
        return f"AuthEntry(username={self.username!r}, password=<redacted>)"


class Response(Record):
    api_version: str
    cache_key_type: str
    cache_duration_seconds: int | None
    auth: dict[str, AuthEntry]


def parse_request(raw: bytes) -> Request:
    """Parse and check one request; raise RequestError naming what is wrong."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise RequestError(
            f"request on stdin is larger than {MAX_REQUEST_BYTES} bytes", hint=REQUEST_HINT
        )
    if not raw.strip():
        raise RequestError("no request on stdin (it was empty)", hint=REQUEST_HINT)
    try:
        doc = jsonwire.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError is one too
        limit = digits_limit(exc)
        if limit is not None:
            raise RequestError(f"request on stdin holds a number of more than {limit} digits",
                               hint=REQUEST_HINT) from None
        raise RequestError(f"request on stdin is not valid JSON ({_json_reason(exc)})",
                           hint=REQUEST_HINT) from None
    except RecursionError:  # json's decoder recurses once per nesting level: "[[[[…" in 1 MiB
        raise RequestError("request on stdin is nested too deeply to be a "
                           "CredentialProviderRequest", hint=REQUEST_HINT) from None
    if not isinstance(doc, dict):
        raise RequestError(
            f"request on stdin is a JSON {type(doc).__name__}, not an object", hint=REQUEST_HINT
        )
    kind = doc.get("kind")
    if kind != REQUEST_KIND:
        raise RequestError(f"request kind is {_shown(kind)}, expected {REQUEST_KIND!r}",
                           hint=REQUEST_HINT)
    api_version = doc.get("apiVersion")
    if api_version not in API_VERSIONS:
        raise RequestError(
            f"request apiVersion {_shown(api_version)} is not supported",
            hint="set the provider's apiVersion in the kubelet config to one of "
            + ", ".join(API_VERSIONS),
        )
    image = doc.get("image")
    if not isinstance(image, str) or not image.strip():
        raise RequestError("request has no image", hint=REQUEST_HINT)
    token = doc.get("serviceAccountToken")
    if token is not None and not isinstance(token, str):
        raise RequestError("request serviceAccountToken is not a string", hint=REQUEST_HINT)
    annotations = doc.get("serviceAccountAnnotations")
    if annotations is not None and not (
        isinstance(annotations, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
    ):
        raise RequestError("request serviceAccountAnnotations is not a map of strings",
                           hint=REQUEST_HINT)
    return Request(api_version, image.strip(), token or None, annotations or None)


def _json_reason(exc: Exception) -> str:
    # json's message quotes no input text, only positions, so it is safe to show.
    return str(exc).split("\n", 1)[0]


def _shown(value: object) -> str:
    """A field of the request as an error message may show it: a string quoted, bounded and
    escaped (the request may hold a megabyte, or terminal escapes, in any field), anything else
    by its JSON type alone."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str):
        return f"'{quote_untrusted(value)}'"
    return f"a JSON {type(value).__name__}"


def digits_limit(exc: ValueError) -> int | None:
    """Python's limit on the digits of an integer it reads, when ``exc`` is its refusal of a
    longer one (a guard against slow conversions), else None. Its message tells a programmer
    to raise the limit, which means nothing to whoever wrote the number: callers say what is
    wrong with the value instead."""
    if "integer string conversion" not in str(exc):
        return None
    return sys.get_int_max_str_digits()


def render_response(response: Response) -> bytes:
    """The bytes to write on stdout: one JSON object, only fields the kubelet knows."""
    if response.cache_key_type not in CACHE_KEY_TYPES:
        raise ValueError(f"cacheKeyType {response.cache_key_type!r}")
    doc: dict[str, object] = {
        "kind": RESPONSE_KIND,
        "apiVersion": response.api_version,
        "cacheKeyType": response.cache_key_type,
    }
    if response.cache_duration_seconds is not None:
        doc["cacheDuration"] = go_duration(response.cache_duration_seconds)
    doc["auth"] = {
        key: {"username": entry.username, "password": entry.password}
        for key, entry in response.auth.items()
    }
    return jsonwire.dumps(doc).encode() + b"\n"


def go_duration(seconds: int) -> str:
    """Format whole seconds as Go's time.Duration.String() does: ``6h0m0s``, ``5m0s``, ``0s``.

    Negative input is clamped to zero: a negative cacheDuration would be a decode-time surprise
    for the kubelet and never means anything useful.
    """
    seconds = max(0, int(seconds))
    if seconds == 0:
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


# Go accepts the micro sign (U+00B5) and the Greek mu (U+03BC) alike.
_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0,
          "m": 60.0, "h": 3600.0}
_DIGITS = "0123456789."  # ASCII only, as in Go: str.isdigit() takes U+0661 and "²" too
_MAX_SECONDS = (2**63 - 1) / 1e9  # a time.Duration is int64 nanoseconds; Go rejects beyond it


def parse_go_duration(text: str) -> float:
    """Parse a Go duration string (``1h30m``, ``90s``, ``0``) to seconds; ValueError if invalid."""
    s = text.strip()
    if s in ("0", "+0", "-0"):
        return 0.0
    sign = 1.0
    if s and s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and s[j] in _DIGITS:
            j += 1
        if j == i:
            raise ValueError(f"invalid duration {text!r}")
        number = float(s[i:j])
        k = j
        while k < len(s) and s[k] not in _DIGITS:
            k += 1
        unit = s[j:k]
        if unit not in _UNITS:
            raise ValueError(f"invalid duration {text!r}: unknown unit {unit!r}")
        total += number * _UNITS[unit]
        i = k
    if total > _MAX_SECONDS:
        raise ValueError(f"invalid duration {text!r}: larger than Go's time.Duration holds")
    return sign * total
