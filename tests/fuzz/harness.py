"""The fuzz target: ``ecrcred get-credentials`` run in-process on any bytes, and its contract.

``Stand`` is what a node would give the plugin, without AWS: a config file with one rule of
every source kind (static, a path-scoped static rule, a mirror, a custom ECR domain, a docker
config file, a credential helper that is not installed), a token cache holding a token for one
ECR registry (so ECR images of that registry are cache hits), and an AWS endpoint on 127.0.0.1
that refuses connections (a socket bound but never listening), so every other ECR or STS call
fails at once with ``AWS_UNREACHABLE`` instead of leaving the machine. ``AWS_MAX_ATTEMPTS=1``:
no retry sleeps.

The AWS part of that environment is also put in ``os.environ`` while the stand is up (and put
back by ``close()``): ecrcred hands botocore the process environment, so this is what keeps an
in-process run from ever looking for real AWS credentials or endpoints.

``Stand.run(raw)`` calls ``ecrcred.cli.main(["get-credentials"], env, stdin=..., stdout=...,
stderr=...)`` (the console script's entry, with the kubelet's fast path) with ``raw`` as its
stdin, never touching ``sys``'s streams, and returns the exit code, stdout and stderr;
``check(raw, outcome)`` asserts the contract of README "Errors and exit codes":

- the exit code is a documented one for get-credentials (0, 1, 3, 4, 5): never 70 (a bug), 2;
- no traceback, and every stderr line is ``ecrcred: <level>: ...``;
- exit 0: stdout is one JSON line the kubelet accepts for this request
  (``tests.support.kubelet.check_response``: strict fields, apiVersion echoed, a Go duration,
  auth keys that match the image); otherwise stdout is empty and the last stderr line is
  ``ecrcred: error: ... [CODE]``. One exception, found by atheris: when the image's host holds a
  glob character (``*?[]\\``; ``![x.static.example`` matches the rule ``*.static.example``), no
  auth key can match it, because the kubelet reads keys as globs and url.Parse refuses the
  ``\\`` that would escape one in a host. The kubelet never sends such a host (image references
  allow none of these characters), so the answer is checked without that one rule;
- exit 3 exactly when ``parse_request`` refuses the bytes;
- no secret the stand knows (the static password, the cached ECR password, ...) on stderr,
  unless the input itself carried it.

Used by ``fuzz_stdin.py`` (atheris) and ``test_fuzz_stdin.py`` (hypothesis, and a short atheris
run).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from ecrcred import cli
from ecrcred.cache import FileCache
from ecrcred.clock import SystemClock
from ecrcred.errors import RequestError
from ecrcred.kubelet import parse_request
from ecrcred.log import StderrLogger
from ecrcred.records import CacheKey
from ecrcred.sources.ecr import identity_digest
from ecrcred.tokens import Token
from tests.support.kubelet import check_response

ECR_HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
# Fake secrets: the checks look for them on stderr.
STATIC_PASSWORD = "static-password-9f3c1e7a"
ECR_PASSWORD = "cached-ecr-password-51b0d2"
DOCKER_PASSWORD = "docker-config-password-77ae"
EXIT_CODES = frozenset({0, 1, 3, 4, 5})
GLOB_CHARS = frozenset("*?[]\\")
_LINE = re.compile(r"ecrcred: (debug|info|warning|error): \S.*")
_ERROR = re.compile(r"ecrcred: error: .+ \[[A-Z0-9_]+\]")

CONFIG = """\
apiVersion: ecrcred.io/v1alpha1
kind: EcrcredConfig
registries:
  - match: ["static.example", "*.static.example"]
    static: {{username: robot, passwordEnv: FUZZ_STATIC_PASSWORD}}
  - match: ["scoped.example/team-a"]
    static: {{username: team-a, passwordEnv: FUZZ_STATIC_PASSWORD}}
    cacheDuration: 90s
  - match: ["mirror.example:5000", "docker.io"]
    mirrorOf: {ecr}/docker-hub
  - match: ["corp.example"]
    ecr: {{account: "123456789012", region: us-west-2}}
  - match: ["dockercfg.example"]
    dockerConfig: {{paths: ["{docker}"]}}
  - match: ["helper.example"]
    credentialHelper: {{name: ecrcred-fuzz-not-installed}}
podIdentity:
  fallback: node
"""


class Outcome(NamedTuple):
    code: int
    stdout: bytes
    stderr: str


class Stand:
    """The plugin's surroundings for fuzzing; ``close()`` removes them."""

    def __init__(self, parent: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ecrcred-fuzz-", dir=parent))
        self._refuser = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._refuser.bind(("127.0.0.1", 0))  # bound, never listening: connections refused
        endpoint = f"http://127.0.0.1:{self._refuser.getsockname()[1]}"
        docker = self.dir / "docker.json"
        docker.write_text(json.dumps({"auths": {"dockercfg.example": {
            "username": "dc", "password": DOCKER_PASSWORD}}}))
        docker.chmod(0o600)
        config = self.dir / "config.yaml"
        config.write_text(CONFIG.format(ecr=ECR_HOST, docker=docker))
        self.env = {
            "PATH": "/usr/bin:/bin",
            "ECRCRED_CONFIG": str(config),
            "ECRCRED_CACHE_DIR": str(self.dir / "cache"),
            "FUZZ_STATIC_PASSWORD": STATIC_PASSWORD,
            "AWS_ACCESS_KEY_ID": "AKIDFUZZ000000000000",
            "AWS_SECRET_ACCESS_KEY": "fuzz-secret-key-not-real",
            "AWS_DEFAULT_REGION": "us-west-2",
            "AWS_ENDPOINT_URL_ECR": endpoint,
            "AWS_ENDPOINT_URL_ECR_PUBLIC": endpoint,
            "AWS_ENDPOINT_URL_STS": endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
        self._saved_environ = {k: os.environ.get(k) for k in self.env if k.startswith("AWS_")}
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("AWS_")})
        # A token for ECR_HOST in the cache, under the key the ECR source computes.
        now = time.time()
        cache = FileCache(self.env["ECRCRED_CACHE_DIR"], SystemClock(), StderrLogger())
        cache.store(CacheKey(f"ecr:{ECR_HOST}", identity_digest(self.env)),
                    Token("AWS", ECR_PASSWORD, now + 12 * 3600, now))
        self.secrets = (STATIC_PASSWORD, ECR_PASSWORD, DOCKER_PASSWORD,
                        self.env["AWS_SECRET_ACCESS_KEY"])
        warm = self.run(request_bytes(f"{ECR_HOST}/app"))  # compiles the config once
        if warm.code != 0:
            raise RuntimeError(f"fuzz stand does not answer a cached ECR image: {warm}")

    def run(self, raw: bytes) -> Outcome:
        """``ecrcred get-credentials`` in this process, ``raw`` on stdin."""
        out, err = io.BytesIO(), io.BytesIO()
        # Python's own stderr escapes what it cannot encode; so must this one.
        stderr = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace")
        try:
            code = cli.main(["get-credentials"], self.env, stdin=io.BytesIO(raw), stdout=out,
                            stderr=stderr)
        finally:
            stderr.flush()
            stderr.detach()  # keep the BytesIO open when the wrapper goes
        return Outcome(code, out.getvalue(), err.getvalue().decode("utf-8", "replace"))

    def close(self) -> None:
        for name, value in self._saved_environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._refuser.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def request_bytes(image: str, api_version: str = "credentialprovider.kubelet.k8s.io/v1",
                  **extra: object) -> bytes:
    return json.dumps({"kind": "CredentialProviderRequest", "apiVersion": api_version,
                       "image": image, **extra}).encode() + b"\n"


def _input_text(raw: bytes) -> str:
    """The input as text, and its JSON strings unescaped, for "was it in the input?"."""
    text = raw.decode("utf-8", "replace")
    try:
        return text + json.dumps(json.loads(raw), ensure_ascii=False)
    except (ValueError, RecursionError):
        return text


def check(raw: bytes, outcome: Outcome, secrets: tuple[str, ...] = ()) -> None:
    """Assert the contract (module docstring); AssertionError names the broken rule."""
    code, stdout, stderr = outcome
    assert code in EXIT_CODES, f"exit {code} (70 is an internal error):\n{stderr}"
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    for line in lines:
        assert _LINE.fullmatch(line), f"stderr line not in the ecrcred format: {line!r}"
    for secret in secrets:
        # Unless the input itself carried it (atheris learns the secret from ecrcred's string
        # comparisons and writes it into the request, whose bad kind is then quoted back).
        if secret not in _input_text(raw):
            assert secret not in stderr, "a secret reached stderr"
    try:
        request = parse_request(raw)
    except RequestError:
        assert code == 3, f"parse_request refuses the input but the exit is {code}"
        request = None
    else:
        assert code != 3, f"parse_request accepts the input but the exit is 3: {stderr}"
    if code == 0:
        assert request is not None
        assert stdout.count(b"\n") == 1 and stdout.endswith(b"\n"), stdout
        fields = {"apiVersion": request.api_version, "image": request.image}
        if request.service_account_token:
            fields["serviceAccountToken"] = request.service_account_token
        host = request.image.split("/", 1)[0]
        doc = check_response(stdout, fields, match_auth_keys=not GLOB_CHARS & set(host))
        assert set(doc) == {"kind", "apiVersion", "cacheKeyType", "cacheDuration", "auth"}
        assert len(doc["auth"]) == 1
    else:
        assert stdout == b"", f"exit {code} with output on stdout: {stdout!r}"
        assert lines and _ERROR.fullmatch(lines[-1]), f"no error line: {stderr!r}"
