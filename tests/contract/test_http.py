"""The ``Http`` contract, run against every implementation.

doctor's registry check (``ecrcred.doctor.registry``) relies on exactly these properties: a
reply carries the server's status, its headers under lower-case names and its body, whatever
the status; the request headers reach the server; an address where nothing listens raises
``OSError``. The implementations: ``HttpClient`` (``ecrcred.doctor.transport``) against a small
HTTP server on 127.0.0.1, and ``FakeHttp``, the doctor unit tests' fake, given the same routes.
What ``HttpClient`` does beyond this (TLS, client certificates, redirects) is tested in
``tests/unit/test_doctor_registry.py``.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import NamedTuple

import pytest

from ecrcred.doctor.transport import HttpClient, HttpReply
from ecrcred.seams import Http
from tests.support.registry import free_port
from tests.unit.fakes import FakeHttp, Route

PING_HEADERS = {"Docker-Distribution-Api-Version": "registry/2.0",
                "Content-Type": "application/json"}
CHALLENGE = 'Basic realm="contract"'


class Subject(NamedTuple):
    http: Http
    base: str  # http://host:port of a server with the routes below
    refused: str  # a URL where nothing listens


class _Handler(http.server.BaseHTTPRequestHandler):
    """``/v2/`` answers 200 with a JSON body; ``/private`` 401 with a challenge; ``/echo``
    returns the request's Authorization header as its body; anything else 404."""

    def do_GET(self) -> None:
        if self.path == "/v2/":
            self._send(200, PING_HEADERS, b"{}")
        elif self.path == "/private":
            self._send(401, {"WWW-Authenticate": CHALLENGE}, b'{"errors": []}')
        elif self.path == "/echo":
            self._send(200, {}, (self.headers.get("Authorization") or "").encode())
        else:
            self._send(404, {}, b"not found")

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _server() -> Iterator[Subject]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield Subject(HttpClient(), f"http://{host!s}:{port}",
                      f"http://127.0.0.1:{free_port()}/v2/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _fake() -> Subject:
    base = "http://registry.invalid"
    routes: dict[str, Route] = {
        f"{base}/v2/": HttpReply(200, {k.lower(): v for k, v in PING_HEADERS.items()}, b"{}"),
        f"{base}/private": HttpReply(401, {"www-authenticate": CHALLENGE}, b'{"errors": []}'),
        f"{base}/echo": lambda headers: HttpReply(200, {}, headers.get("Authorization", "")
                                                  .encode()),
        f"{base}/elsewhere": HttpReply(404, {}, b"not found"),
    }
    return Subject(FakeHttp(routes), base, "http://refused.invalid/v2/")


@pytest.fixture(params=["HttpClient", "FakeHttp"])
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    if request.param == "HttpClient":
        yield from _server()
    else:
        yield _fake()


def get(subject: Subject, path: str, headers: dict[str, str] | None = None) -> HttpReply:
    return subject.http.get(subject.base + path, headers or {}, ca=(), skip_verify=False,
                            timeout=5.0)


def test_a_reply_has_the_status_the_headers_in_lower_case_and_the_body(subject: Subject):
    reply = get(subject, "/v2/")
    assert reply.status == 200
    assert reply.headers["docker-distribution-api-version"] == "registry/2.0"
    assert reply.headers["content-type"] == "application/json"
    assert reply.body == b"{}"


def test_an_error_status_is_a_reply_not_an_exception(subject: Subject):
    challenged = get(subject, "/private")
    assert (challenged.status, challenged.headers["www-authenticate"], challenged.body) == (
        401, CHALLENGE, b'{"errors": []}')
    missing = get(subject, "/elsewhere")
    assert (missing.status, missing.body) == (404, b"not found")


def test_the_request_headers_reach_the_server(subject: Subject):
    reply = get(subject, "/echo", {"Authorization": "Basic dXNlcjpwYXNz"})
    assert (reply.status, reply.body) == (200, b"Basic dXNlcjpwYXNz")


def test_an_address_where_nothing_listens_raises_os_error(subject: Subject):
    with pytest.raises(OSError):
        subject.http.get(subject.refused, {}, ca=(), skip_verify=False, timeout=5.0)
