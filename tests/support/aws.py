"""The AWS stand-in (moto's server plus counters and faults) as a test fixture object."""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.processes import Process

SERVER = Path(__file__).with_name("aws_server.py")
ROOT = SERVER.parents[2]


class AwsStandIn:
    def __init__(self, workdir: Path, latency_ms: int = 0) -> None:
        log = workdir / "aws-server.log"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = Process([sys.executable, str(SERVER), "--port", "0",
                                "--latency-ms", str(latency_ms)], str(log), env=env)
        self.port = 0

        def ready() -> bool:
            m = re.search(r"^PORT (\d+)$", log.read_text(), re.M)
            if m:
                self.port = int(m.group(1))
            return bool(m)

        self.process.wait_for(ready, 60, "moto stand-in")
        self.url = f"http://127.0.0.1:{self.port}"

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict[str, int]:
        return dict(self._call("/_stand_in/stats"))

    def calls(self, action: str) -> int:
        return sum(n for k, n in self.stats().items() if k.endswith(action))

    def reset(self) -> None:
        self._call("/_stand_in/reset", {})

    def fault(self, action: str = "GetAuthorizationToken", *, status: int = 400,
              code: str = "ThrottlingException", times: int = 1, delay_ms: int = 0,
              message: str = "injected", body: Any = None, raw: str | None = None,
              content_type: str = "text/html") -> None:
        """The next ``times`` calls of ``action`` fail with ``code`` (in the API's protocol), or
        answer 200 with the JSON ``body``, or answer ``raw`` text with ``status``."""
        fault = {"action": action, "status": status, "code": code, "times": times,
                 "delay_ms": delay_ms, "message": message}
        if body is not None:
            fault.update(body=body, status=200)
        if raw is not None:
            fault.update(raw=raw, content_type=content_type)
        self._call("/_stand_in/faults", fault)

    def call_times(self, action: str) -> list[float]:
        """When each call of ``action`` reached the stand-in (epoch seconds, in order)."""
        times: dict[str, list[float]] = self._call("/_stand_in/times")
        return sorted(t for k, ts in times.items() if k.endswith(action) for t in ts)

    def tokens_per_caller(self) -> None:
        """ECR tokens name the access key they were issued to (``AWS:token-for-<key id>``)."""
        self._call("/_stand_in/config", {"token_per_caller": True})

    def token_lifetime(self, seconds: float) -> None:
        """ECR tokens live ``seconds`` (each fetch a new one), for refresh cycles in seconds."""
        self._call("/_stand_in/config", {"token_seconds": seconds})

    def env(self) -> dict[str, str]:
        """What a node's kubelet environment would carry to reach this stand-in as AWS."""
        return {
            "AWS_ACCESS_KEY_ID": "AKIDSTANDIN0000000000",
            "AWS_SECRET_ACCESS_KEY": "stand-in-secret-key-not-real",
            "AWS_ENDPOINT_URL_ECR": self.url,
            "AWS_ENDPOINT_URL_ECR_PUBLIC": self.url,
            "AWS_ENDPOINT_URL_STS": self.url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def stop(self) -> None:
        self.process.stop()


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
