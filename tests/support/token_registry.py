"""A registry that uses Bearer token auth, as Docker Hub and most hosted registries do.

``TokenRegistry`` is the same docker-registry (distribution 2.8) as ``Registry``, configured with
``auth: token`` instead of htpasswd, plus ``TokenServer``: a small token service on 127.0.0.1
that checks Basic credentials and issues the ES256 JWTs distribution verifies (signed with the
registry's own self-signed certificate key, which is the ``rootcertbundle``; the certificate
travels in the ``x5c`` header). A client then does what containerd does: ``/v2/`` answers 401
with ``WWW-Authenticate: Bearer realm=...,service=...``, the client fetches a token for
``repository:<name>:pull`` from the realm and retries with it.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.support.registry import Registry

SERVICE = "ecrcred-test-registry"
ISSUER = "ecrcred-test-token-server"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """``GET /token?service=&scope=repository:<name>:<actions>`` with Basic auth -> a JWT."""

    def __init__(self, key_path: str, cert_path: str, username: str, password: str) -> None:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("the registry key is not an EC key")
        self._key = key
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self._credentials = (username, password)
        self.requests: list[dict[str, str]] = []  # what was asked (never the password)
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        auth = request.authorization
        given = (auth.username, auth.password) if auth is not None else None
        self.requests.append({"scope": request.args.get("scope", ""),
                              "user": given[0] if given else ""})
        if given != self._credentials:
            response = Response(json.dumps({"errors": [{"code": "UNAUTHORIZED",
                                                        "message": "bad credentials"}]}),
                                status=401, content_type="application/json")
            return response(environ, start_response)
        access = []
        for scope in request.args.getlist("scope"):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        token = self.issue(str(given[0]), access)
        response = Response(json.dumps({"token": token, "expires_in": 300}),
                            content_type="application/json")
        return response(environ, start_response)

    def issue(self, subject: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self._x5c]}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = (_b64(json.dumps(header).encode()) + "." +
                         _b64(json.dumps(claims).encode()))
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(),
                                                   ec.ECDSA(hashes.SHA256())))
        return signing_input + "." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class TokenRegistry(Registry):
    """``Registry`` with ``auth: token`` and its own ``TokenServer``."""

    token_server: TokenServer | None = None

    def _auth_config(self) -> str:
        if self.token_server is None:
            self.token_server = TokenServer(self.key_path, self.cert_path, self.username,
                                            self.password)
        return f"""\
auth:
  token:
    realm: {self.token_server.url}
    service: {SERVICE}
    issuer: {ISSUER}
    rootcertbundle: {self.cert_path}
"""

    def _write_config(self, port: int) -> str:
        path = super()._write_config(port)
        text = Path(path).read_text()
        start = text.index("auth:\n")
        Path(path).write_text(text[:start] + self._auth_config())
        return path

    def request(self, path: str, *, auth: bool = True, method: str = "GET",
                headers: dict[str, str] | None = None, data: bytes | None = None,
                credentials: tuple[str, str] | None = None,
                timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        """As ``Registry.request``, with a Bearer token for the repository in ``path``."""
        if not auth:
            return super().request(path, auth=False, method=method, headers=headers, data=data,
                                   timeout=timeout)
        user, password = credentials or (self.username, self.password)
        parts = path.split("/")
        scope = ""
        for marker in ("manifests", "blobs", "tags"):
            if marker in parts:
                scope = f"repository:{'/'.join(parts[2:parts.index(marker)])}:pull,push"
        assert self.token_server is not None
        query = urllib.parse.urlencode({"service": SERVICE, **({"scope": scope} if scope
                                                               else {})})
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        token_request = urllib.request.Request(f"{self.token_server.url}?{query}",
                                               headers={"Authorization": f"Basic {basic}"})
        with urllib.request.urlopen(token_request, timeout=timeout) as resp:
            token = json.loads(resp.read())["token"]
        return super().request(path, auth=False, method=method,
                               headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                               data=data, timeout=timeout)

    def stop(self) -> None:
        super().stop()
        if self.token_server is not None:
            self.token_server.stop()
