"""Benchmark of ``ecrcred pull-sandbox`` on a real stack; rerun with ``bench/run-sandbox``.

All on 127.0.0.1: a real containerd (temporary root), a TLS registry that demands credentials
behind an ECR host name (hosts.toml mirror), and moto's server as ECR.

- boot path: a fresh containerd without the image; time from starting ``ecrcred pull-sandbox``
  to its exit with the image present and pinned (process start, credentials from ECR, CRI pull,
  label);
- restore under ``--watch``: delete the image through the CRI and time until ImageStatus shows
  it again, polled every 2 ms over gRPC.

Prints a Markdown report on stdout.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.aws import AwsStandIn  # noqa: E402
from tests.support.containerd import Containerd  # noqa: E402
from tests.support.processes import Process  # noqa: E402
from tests.support.registry import Registry  # noqa: E402

from ecrcred.cri.client import GrpcRuntime  # noqa: E402

ECR_HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
SANDBOX = f"{ECR_HOST}/eks/pause:3.9"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--ecrcred", default=str(Path(sys.executable).with_name("ecrcred")))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ebs-", dir="/tmp"))
    aws = AwsStandIn(work)
    registry = Registry(work / "reg", username="AWS", password="123456789012-auth-token")
    registry.push_test_image("eks/pause", "3.9")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **aws.env()}
    boot, restore = [], []
    try:
        for i in range(args.runs):
            cd = Containerd(work / f"c{i}", SANDBOX)
            try:
                cd.add_mirror(ECR_HOST, registry)
                run_env = dict(env, ECRCRED_CACHE_DIR=str(work / f"cache-{i}"))
                started = time.perf_counter()
                result = subprocess.run(
                    [args.ecrcred, "pull-sandbox", "--containerd-config", cd.config_path,
                     "--runtime-endpoint", cd.endpoint], env=run_env, capture_output=True,
                    check=False)
                boot.append((time.perf_counter() - started) * 1000)
                if result.returncode != 0:
                    raise SystemExit(result.stderr.decode())

                log = work / f"watch-{i}.log"
                watcher = Process([args.ecrcred, "pull-sandbox", "--watch", "--containerd-config",
                                   cd.config_path, "--runtime-endpoint", cd.endpoint],
                                  str(log), env=run_env)
                runtime = GrpcRuntime(cd.endpoint)
                try:
                    watcher.wait_for(lambda lg=log: "(subscribed" in lg.read_text(), 30,
                                     "watch")
                    for _ in range(3):
                        runtime.remove_image(SANDBOX)
                        deleted = time.perf_counter()
                        while runtime.image_status(SANDBOX) is None:
                            if time.perf_counter() - deleted > 30:
                                raise SystemExit("not restored within 30 s:\n" +
                                                 watcher.log_tail())
                            time.sleep(0.002)
                        restore.append((time.perf_counter() - deleted) * 1000)
                        time.sleep(0.2)  # let the watcher settle (pin) before the next round
                finally:
                    runtime.close()
                    watcher.stop()
            finally:
                cd.stop()
        print(f"{args.runs} fresh containerd instances; restore measured 3 times on each.\n")
        print("| path | samples | median ms | p90 ms | max ms |")
        print("|---|---|---|---|---|")
        for name, samples in (("boot: start to image present and pinned", boot),
                              ("--watch: deletion to image present again", restore)):
            ordered = sorted(samples)
            print(f"| {name} | {len(ordered)} | {statistics.median(ordered):.0f} | "
                  f"{ordered[int(0.9 * (len(ordered) - 1))]:.0f} | {ordered[-1]:.0f} |")
        return 0
    finally:
        registry.stop()
        aws.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
