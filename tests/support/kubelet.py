"""How the kubelet runs a credential provider and judges its answer, for tests.

``exec_provider`` execs the plugin as the kubelet does: argv from the provider config, exactly
one JSON request line on stdin, the kubelet's environment (here: no HOME) plus the config's env,
a 60-second kill. ``check_response`` applies the kubelet's rules to what came back (strict
decoding, apiVersion equality, cacheKeyType, Go duration, auth keys matching the image) and
returns the decoded object; any breach is an AssertionError naming the rule.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from ecrcred.imageref import glob_match, normalize_auth_key

API = "credentialprovider.kubelet.k8s.io"
_DURATION = re.compile(r"^([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$")


def request(image: str, api_version: str = f"{API}/v1", **extra: Any) -> dict[str, Any]:
    return {"kind": "CredentialProviderRequest", "apiVersion": api_version, "image": image,
            **extra}


def exec_provider(binary: str, req: Mapping[str, Any] | bytes, env: Mapping[str, str],
                  args: Sequence[str] = ("get-credentials",),
                  timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    stdin = req if isinstance(req, bytes) else json.dumps(req).encode() + b"\n"
    return subprocess.run([binary, *args], input=stdin, env=dict(env), capture_output=True,
                          timeout=timeout, cwd="/", check=False)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicated field in response: {keys}"
    return dict(pairs)


def check_response(stdout: bytes, req: Mapping[str, Any], *,
                   match_auth_keys: bool = True) -> dict[str, Any]:
    """``match_auth_keys=False`` skips only the rule that each auth key matches the image (for a
    host no key can match, see tests/fuzz/harness.py)."""
    text = stdout.decode()
    doc = json.loads(text, object_pairs_hook=_no_duplicates)  # exactly one object, nothing else
    assert isinstance(doc, dict)
    allowed = {"kind", "apiVersion", "cacheKeyType", "cacheDuration", "auth"}
    assert set(doc) <= allowed, f"unknown fields {set(doc) - allowed}"
    assert doc["kind"] == "CredentialProviderResponse"
    assert doc["apiVersion"] == req["apiVersion"], "apiVersion must equal the request's"
    assert doc["cacheKeyType"] in ("Image", "Registry", "Global")
    if "cacheDuration" in doc:
        assert isinstance(doc["cacheDuration"], str), "cacheDuration must be a duration string"
        assert doc["cacheDuration"] == "0" or _DURATION.match(doc["cacheDuration"]), \
            f"not a Go duration: {doc['cacheDuration']!r}"
    auth = doc.get("auth") or {}
    assert isinstance(auth, dict)
    for key, entry in auth.items():
        assert set(entry) <= {"username", "password"}, f"unknown auth fields {set(entry)}"
        assert not match_auth_keys or glob_match(normalize_auth_key(key), req["image"]), \
            f"auth key {key!r} does not match image {req['image']!r}: the kubelet ignores it"
    if req.get("serviceAccountToken"):
        for entry in auth.values():
            assert entry.get("password") != req["serviceAccountToken"]
    return doc
