"""The demo behind ``scripts/demo``: a kubelet's-eye view of ecrcred against a local stack.

Starts moto's server as ECR on 127.0.0.1, then execs ``ecrcred get-credentials`` the way the
kubelet does (argv from provider-config.yaml, one request on stdin, no HOME) and prints what the
kubelet would receive, with the password redacted. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.support.aws import AwsStandIn
from tests.support.kubelet import check_response, exec_provider, request

IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/eks/pause"


def redacted(stdout: bytes) -> str:
    doc = json.loads(stdout)
    for entry in doc.get("auth", {}).values():
        entry["password"] = f"<redacted, {len(entry['password'])} chars>"
    return json.dumps(doc, indent=2)


def main() -> int:
    binary = str(Path(sys.executable).with_name("ecrcred"))
    work = Path(tempfile.mkdtemp(prefix="ecrcred-demo-"))
    aws = AwsStandIn(work)
    try:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **aws.env(),
               "ECRCRED_CACHE_DIR": str(work / "cache")}
        req = request(IMAGE)
        print(f"moto's server as ECR: {aws.url}")
        print(f"kubelet -> {binary} get-credentials  (stdin):\n  {json.dumps(req)}\n")
        for attempt in ("first execution (cache miss)", "second execution (cache hit)"):
            started = time.perf_counter()
            result = exec_provider(binary, req, env)
            elapsed = (time.perf_counter() - started) * 1000
            if result.returncode != 0:
                print(result.stderr.decode(), file=sys.stderr)
                return result.returncode
            check_response(result.stdout, req)  # the kubelet's own rules
            print(f"{attempt}: exit 0 in {elapsed:.0f} ms; stdout:")
            print(redacted(result.stdout))
            for line in result.stderr.decode().splitlines():
                print(f"  stderr: {line}")
            print()
        print(f"GetAuthorizationToken calls seen by the stand-in: "
              f"{aws.calls('GetAuthorizationToken')} (the second execution was a cache hit)")
        return 0
    finally:
        aws.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
