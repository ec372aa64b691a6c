"""A fault-injecting HTTPS reverse proxy in front of the test registry, on 127.0.0.1.

``FaultProxy(registry)`` listens on a free port with the registry's own certificate (its SAN is
IP 127.0.0.1, so the registry's ``cert_path`` is the proxy's CA too) and forwards every request
to the registry unchanged: method, path, headers (``Authorization`` included), body, and the
answer back, ``WWW-Authenticate`` and all. It has the two attributes containerd's
``add_mirror`` reads (``url``, ``cert_path``), so ``containerd.add_mirror(host, proxy)`` puts it
between containerd and the registry.

Faults are rules tried in order on each request whose path contains ``path`` (and whose method
is ``method``, when given), each for its next ``times`` requests (``None``: until cleared):

- ``status``: answer that HTTP status with a short body instead of forwarding (5xx, 429);
- ``delay``: hold the request that many seconds, then forward (a slow registry, or a window in
  which to restart containerd in the middle of a pull: ``wait_until_held`` says when);
- ``drop``: close the connection without answering.

``seen`` lists ``(method, path, status)`` of every request, for assertions and waiting. The
server runs in threads of the test process; ``stop()`` shuts it down and closes its socket.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.aws import wait_until
from tests.support.registry import Registry

# Hop-by-hop headers (RFC 9110 7.6.1) are the proxy's own business, never forwarded.
_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
        "upgrade"}


@dataclass
class Fault:
    path: str
    method: str | None = None
    status: int = 0
    delay: float = 0.0
    drop: bool = False
    times: int | None = 1
    hits: int = field(default=0)


class FaultProxy:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.cert_path = registry.cert_path
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.seen: list[tuple[str, str, int]] = []
        self._held: list[tuple[str, str]] = []
        self._upstream_ssl = ssl.create_default_context(cafile=registry.cert_path)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(registry.cert_path, registry.key_path)
        self._server = _Server(("127.0.0.1", 0), _Handler, self, context)
        self.port = int(self._server.server_address[1])
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"https://{self.host}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    # -- faults --------------------------------------------------------------------------------

    def fault(self, path: str, *, method: str | None = None, status: int = 0,
              delay: float = 0.0, drop: bool = False, times: int | None = 1) -> Fault:
        rule = Fault(path, method, status, delay, drop, times)
        with self._lock:
            self._faults.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for rule in self._faults:
                if rule.path in path and rule.method in (None, method) and (
                        rule.times is None or rule.hits < rule.times):
                    rule.hits += 1
                    return rule
        return None

    def record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.seen.append((method, path, status))

    def requests(self, path: str, method: str | None = None) -> list[tuple[str, str, int]]:
        with self._lock:
            return [s for s in self.seen if path in s[1] and method in (None, s[0])]

    def held(self) -> list[tuple[str, str]]:
        """``(method, path)`` of the requests a ``delay`` rule is holding right now."""
        with self._lock:
            return list(self._held)

    def wait_until_held(self, path: str, timeout: float) -> bool:
        """Wait until a request for ``path`` is being held by a ``delay`` rule."""
        return wait_until(lambda: any(path in held for _, held in self.held()), timeout, 0.02)

    def hold(self, method: str, path: str, seconds: float) -> None:
        entry = (method, path)
        with self._lock:
            self._held.append(entry)
        try:
            time.sleep(seconds)
        finally:
            with self._lock:
                self._held.remove(entry)

    # -- forwarding ----------------------------------------------------------------------------

    def forward(self, method: str, path: str, headers: list[tuple[str, str]],
                body: bytes | None) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPSConnection(self.registry.host.split(":")[0],
                                           self.registry.port, context=self._upstream_ssl,
                                           timeout=60)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in _HOP and name.lower() != "content-length":
                    conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, proxy: FaultProxy,
                 context: ssl.SSLContext) -> None:
        self.proxy = proxy
        self.context = context
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        # The handshake happens in the handler's thread (setup), not in the accept loop.
        return self.context.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False), addr


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.do_handshake()  # type: ignore[attr-defined]
        except (ssl.SSLError, OSError):
            self.close_connection = True
            self.rfile = self.wfile = None  # type: ignore[assignment]

    def handle(self) -> None:
        if self.rfile is None:
            return  # the client refused our certificate: nothing to serve
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True

    def finish(self) -> None:
        if self.rfile is None:
            return
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        rule = proxy.take(self.command, self.path)
        if rule is not None and rule.delay:
            proxy.hold(self.command, self.path, rule.delay)
        if rule is not None and rule.drop:
            proxy.record(self.command, self.path, 0)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if rule is not None and rule.status:
            payload = b'{"errors":[{"code":"UNAVAILABLE","message":"injected by the test"}]}'
            self.send_response(rule.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            proxy.record(self.command, self.path, rule.status)
            return
        status, reason, headers, data = proxy.forward(self.command, self.path,
                                                      list(self.headers.items()), body)
        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in _HOP and name.lower() != "content-length":
                self.send_header(name, value)
        declared = next((v for n, v in headers if n.lower() == "content-length"), None)
        # A HEAD answer declares the length of the body it does not carry.
        self.send_header("Content-Length", declared if self.command == "HEAD" and declared
                         else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        proxy.record(self.command, self.path, status)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _serve
