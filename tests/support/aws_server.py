"""moto's server as AWS, on 127.0.0.1, with a request counter and injectable faults.

Run as a script: ``python tests/support/aws_server.py [--port 0] [--latency-ms N]``. It prints
``PORT <n>`` on stdout when it listens. Everything AWS is moto's own backend (ECR, STS, ...);
this wrapper only adds what tests and benchmarks need around it:

- ``GET /_stand_in/stats``: how many calls each API action received (counted at the server, so a
  test can prove "exactly one GetAuthorizationToken");
- ``POST /_stand_in/reset``: zero the counters and clear faults;
- ``POST /_stand_in/faults`` with JSON ``{"action": "GetAuthorizationToken", "status": 400,
  "code": "ThrottlingException", "times": 2, "delay_ms": 0}``: answer the next ``times`` calls of
  that action with that error (or only delay them when status is 0; or answer with ``body``, a
  JSON document; or with ``raw``, any text, sent as ``content_type`` with ``status``, as a proxy
  or a broken endpoint would). Errors take the shape of the caller's protocol: JSON for the JSON
  APIs (ECR), the ``<ErrorResponse>`` XML of the query protocol for STS, so botocore reads their
  code as it reads AWS's own;
- ``GET /_stand_in/times``: when each call of each action arrived (epoch seconds), so a test can
  see the gaps botocore leaves between retries;
- ``--latency-ms``: a fixed delay on every AWS call, a realistic stand-in for a remote API;
- ECR Public's ``GetAuthorizationToken``, which moto does not implement, answered in the shape
  the real service uses (a token of ``AWS:<opaque>`` expiring in 12 hours);
- ``POST /_stand_in/config`` with ``{"token_per_caller": true}``: ECR tokens then carry the
  caller's access key id (``AWS:token-for-<key id>``, 12 hours), so a test can tell which
  identity a token was issued to (moto gives every caller the same token). Reset turns it off.
  ``{"token_seconds": N}``: ECR tokens then live N seconds (``expiresAt`` N seconds after the
  call; the caller's key id and a serial number in each, so every fetch gives a new token), for
  refresh cycles in seconds rather than 12 hours. Reset turns it off.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class StandIn:
    def __init__(self, latency_ms: int) -> None:
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.latency = latency_ms / 1000
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.times: dict[str, list[float]] = {}
        self.faults: list[dict[str, Any]] = []
        self.token_per_caller = False
        self.token_seconds: float | None = None
        self.serial = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        # Read the body once and hand moto a fresh copy: parsing the STS query form below would
        # otherwise consume wsgi.input, and moto would wait for a body that never comes.
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        request = Request(environ)
        if request.path.startswith("/_stand_in/"):
            return self.control(request)(environ, start_response)
        target = request.headers.get("X-Amz-Target", "")
        action = target.rsplit(".", 1)[-1] if target else request.args.get("Action", "")
        if not action and request.method == "POST":
            action = parse_qs(body.decode("latin-1")).get("Action", [""])[0]  # STS query protocol
            environ["wsgi.input"] = io.BytesIO(body)
        service = target.split(".", 1)[0] if target else ""
        key = f"{service}.{action}" if service else action
        with self.lock:
            self.calls[key] += 1
            self.times.setdefault(key, []).append(time.time())
            fault = None
            for f in self.faults:
                if f["action"] in (action, key) and f["times"] > 0:
                    f["times"] -= 1
                    fault = dict(f)
                    break
        if self.latency:
            time.sleep(self.latency)
        if fault is not None:
            time.sleep(fault.get("delay_ms", 0) / 1000)
            if "raw" in fault:
                return Response(fault["raw"], status=fault.get("status") or 200,
                                content_type=fault.get("content_type", "text/html"))(
                                    environ, start_response)
            if "body" in fault:
                return Response(json.dumps(fault["body"]), status=fault.get("status") or 200,
                                content_type="application/x-amz-json-1.1")(environ,
                                                                           start_response)
            if fault.get("status"):
                return self.error(fault, query=not target)(environ, start_response)
        if service == "SpencerFrontendService" and action == "GetAuthorizationToken":
            return self.ecr_public_token()(environ, start_response)
        if ((self.token_per_caller or self.token_seconds) and action == "GetAuthorizationToken"
                and service.startswith("AmazonEC2ContainerRegistry")):
            return self.caller_token(request)(environ, start_response)
        return self.moto(environ, start_response)

    @staticmethod
    def error(fault: dict[str, Any], query: bool) -> Response:
        """An AWS error in the caller's protocol: JSON (ECR) or the query protocol's XML (STS)."""
        message = fault.get("message", "injected")
        if not query:
            body = json.dumps({"__type": fault["code"], "message": message})
            return Response(body, status=fault["status"],
                            content_type="application/x-amz-json-1.1")
        kind = "Receiver" if fault["status"] >= 500 else "Sender"
        body = ("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
                f"<Error><Type>{kind}</Type><Code>{escape(fault['code'])}</Code>"
                f"<Message>{escape(message)}</Message></Error>"
                "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>")
        return Response(body, status=fault["status"], content_type="text/xml")

    def ecr_public_token(self) -> Response:
        password = base64.urlsafe_b64encode(f"ecr-public-{time.time_ns()}".encode()).decode()
        token = base64.b64encode(f"AWS:{password}".encode()).decode()
        body = {"authorizationData": {"authorizationToken": token,
                                      "expiresAt": time.time() + 12 * 3600}}
        return Response(json.dumps(body), content_type="application/x-amz-json-1.1")

    def caller_token(self, request: Request) -> Response:
        auth = request.headers.get("Authorization", "")
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/") if (
            "Credential=" in auth) else ["-", "", "us-east-1"]
        key_id, region = scope[0], scope[2] if len(scope) > 2 else "us-east-1"
        try:
            registry = (json.loads(request.get_data() or b"{}").get("registryIds")
                        or ["123456789012"])[0]
        except (ValueError, AttributeError):
            registry = "123456789012"
        with self.lock:
            lifetime = self.token_seconds or 12 * 3600
            self.serial += 1
            serial = f"-{self.serial}" if self.token_seconds else ""
        token = base64.b64encode(f"AWS:token-for-{key_id}{serial}".encode()).decode()
        # the proxy endpoint of the registry asked for, as ECR gives it (a client such as the
        # Go credential helper checks it against the registry it asked about)
        body = {"authorizationData": [{
            "authorizationToken": token, "expiresAt": time.time() + lifetime,
            "proxyEndpoint": f"https://{registry}.dkr.ecr.{region}.amazonaws.com"}]}
        return Response(json.dumps(body), content_type="application/x-amz-json-1.1")

    def control(self, request: Request) -> Response:
        if request.path == "/_stand_in/stats":
            with self.lock:
                return Response(json.dumps(dict(self.calls)), content_type="application/json")
        if request.path == "/_stand_in/times":
            with self.lock:
                return Response(json.dumps(self.times), content_type="application/json")
        if request.path == "/_stand_in/reset" and request.method == "POST":
            with self.lock:
                self.calls.clear()
                self.times.clear()
                self.faults.clear()
                self.token_per_caller = False
                self.token_seconds = None
            return Response("{}", content_type="application/json")
        if request.path == "/_stand_in/faults" and request.method == "POST":
            fault = json.loads(request.get_data() or b"{}")
            fault.setdefault("times", 1)
            if "body" in fault or "raw" in fault:
                fault.setdefault("status", 200)
            fault.setdefault("status", 400)
            fault.setdefault("code", "ThrottlingException")
            with self.lock:
                self.faults.append(fault)
            return Response("{}", content_type="application/json")
        if request.path == "/_stand_in/config" and request.method == "POST":
            settings = json.loads(request.get_data() or b"{}")
            with self.lock:
                self.token_per_caller = bool(settings.get("token_per_caller", False))
                seconds = settings.get("token_seconds")
                self.token_seconds = float(seconds) if seconds else None
            return Response("{}", content_type="application/json")
        return Response("not found", status=404)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args()
    server = make_server("127.0.0.1", args.port, StandIn(args.latency_ms), threaded=True)
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
