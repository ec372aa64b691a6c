"""The sandbox image on a real stack, ecrcred against the EKS way; rerun with ``bench/run sandbox``.

All on 127.0.0.1: real containerd instances (temporary roots), a TLS registry that demands
credentials behind an ECR host name (hosts.toml mirror), and moto's server as ECR.

- boot path, side by side: N pairs of fresh containerd instances without the image; on one of
  each pair ``ecrcred pull-sandbox`` runs, on the other ``bench/eks-sandbox-image.sh`` (EKS AL2's
  sandbox-image.service script: ``aws ecr get-login-password`` from awscli, then ``ctr images
  pull --user AWS:<password>``). Timed from starting the command, with containerd up, to its
  exit with the image present (checked with CRI ImageStatus afterwards; ecrcred also pins it).
  Which path goes first alternates from pair to pair, so background load hits both alike; each
  path makes one GetAuthorizationToken call, counted by the stand-in;
- restore under ``--watch`` (ecrcred's instances): delete the image through the CRI and time
  until ImageStatus shows it again, polled every 2 ms over gRPC. The EKS unit has no such path:
  the image comes back at the next boot.

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
EKS_SCRIPT = ROOT / "bench" / "eks-sandbox-image.sh"


def percentile(ordered: list[float], q: float) -> float:
    return ordered[int(q * (len(ordered) - 1))]


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    return (f"| {name} | {len(ordered)} | {statistics.median(ordered):.0f} | "
            f"{percentile(ordered, 0.9):.0f} | {ordered[0]:.0f} | {ordered[-1]:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="pairs of fresh containerds")
    parser.add_argument("--restores", type=int, default=3, help="restores per ecrcred instance")
    parser.add_argument("--ecrcred", default=str(Path(sys.executable).with_name("ecrcred")))
    parser.add_argument("--aws", default=str(Path(sys.executable).with_name("aws")),
                        help="the aws CLI the EKS script runs (awscli, the 'bench' extra)")
    args = parser.parse_args()
    if not Path(args.aws).is_file():
        raise SystemExit(f"{args.aws} not found: pip install -e '.[bench]' (bench/run does)")

    work = Path(tempfile.mkdtemp(prefix="ebs-", dir="/tmp"))
    aws = AwsStandIn(work)
    registry = Registry(work / "reg", username="AWS", password="123456789012-auth-token")
    registry.push_test_image("eks/pause", "3.9")
    path_dirs = f"{Path(args.aws).parent}:/usr/sbin:/usr/bin:/sbin:/bin"
    env = {"PATH": path_dirs, **aws.env()}
    boot: dict[str, list[float]] = {"ecrcred": [], "eks": []}
    calls: dict[str, list[int]] = {"ecrcred": [], "eks": []}
    starts: list[float] = []
    restore: list[float] = []

    def ecrcred_path(cd: Containerd, i: int) -> None:
        run_env = dict(env, ECRCRED_CACHE_DIR=str(work / f"cache-{i}"))
        started = time.perf_counter()
        result = subprocess.run(
            [args.ecrcred, "pull-sandbox", "--containerd-config", cd.config_path,
             "--runtime-endpoint", cd.endpoint], env=run_env, capture_output=True, check=False)
        boot["ecrcred"].append((time.perf_counter() - started) * 1000)
        if result.returncode != 0:
            raise SystemExit(result.stderr.decode())
        log = work / f"watch-{i}.log"
        watcher = Process([args.ecrcred, "pull-sandbox", "--watch", "--containerd-config",
                           cd.config_path, "--runtime-endpoint", cd.endpoint],
                          str(log), env=run_env)
        runtime = GrpcRuntime(cd.endpoint)
        try:
            watcher.wait_for(lambda lg=log: "(subscribed" in lg.read_text(), 30, "watch")
            for _ in range(args.restores):
                runtime.remove_image(SANDBOX)
                deleted = time.perf_counter()
                while runtime.image_status(SANDBOX) is None:
                    if time.perf_counter() - deleted > 30:
                        raise SystemExit("not restored within 30 s:\n" + watcher.log_tail())
                    time.sleep(0.002)
                restore.append((time.perf_counter() - deleted) * 1000)
                time.sleep(0.2)  # let the watcher settle (pin) before the next round
        finally:
            runtime.close()
            watcher.stop()

    def eks_path(cd: Containerd, _i: int) -> None:
        run_env = dict(env, CONTAINERD_CONFIG=cd.config_path, CONTAINERD_ADDRESS=cd.socket,
                       CTR_HOSTS_DIR=cd.certs_dir, CONTAINERD_SNAPSHOTTER="native")
        started = time.perf_counter()
        result = subprocess.run([str(EKS_SCRIPT)], env=run_env, capture_output=True,
                                check=False)
        boot["eks"].append((time.perf_counter() - started) * 1000)
        if result.returncode != 0 or b"skipping pull" in result.stdout:
            raise SystemExit(f"EKS script: exit {result.returncode}\n"
                             f"{result.stdout.decode()}{result.stderr.decode()}")

    paths = {"ecrcred": ecrcred_path, "eks": eks_path}
    try:
        for i in range(args.runs):
            order = ["ecrcred", "eks"] if i % 2 == 0 else ["eks", "ecrcred"]
            for name in order:
                cd = Containerd(work / f"c{i}-{name}", SANDBOX)
                try:
                    starts.append(cd.timings["start"] * 1000)
                    cd.add_mirror(ECR_HOST, registry)
                    aws.reset()
                    paths[name](cd, i)
                    calls[name].append(aws.calls("GetAuthorizationToken"))
                    runtime = GrpcRuntime(cd.endpoint)
                    try:
                        if name == "eks" and runtime.image_status(SANDBOX) is None:
                            raise SystemExit("EKS script exited 0 but the CRI has no image")
                    finally:
                        runtime.close()
                finally:
                    cd.stop()
        print(f"{args.runs} pairs of fresh containerd 1.6 instances (containerd itself took a "
              f"median {statistics.median(starts):.0f} ms to start, not counted); the two "
              f"paths alternate which goes first; {args.restores} restores on each ecrcred "
              "instance.\n")
        print("| path | samples | median ms | p90 ms | min ms | max ms |")
        print("|---|---|---|---|---|---|")
        print(row("boot, `ecrcred pull-sandbox`: start to image present and pinned",
                  boot["ecrcred"]))
        print(row("boot, EKS way (`eks-sandbox-image.sh`: awscli + `ctr pull`): start to "
                  "image present", boot["eks"]))
        print(row("`--watch`: deletion (CRI RemoveImage) to image present again", restore))
        ratio = statistics.median(boot["eks"]) / statistics.median(boot["ecrcred"])
        print(f"\nBoot, EKS way / ecrcred (medians): **{ratio:.2f}x**. GetAuthorizationToken "
              f"calls per boot: ecrcred {sorted(set(calls['ecrcred']))}, EKS way "
              f"{sorted(set(calls['eks']))}. After a deletion the EKS way has no restore: the "
              "image is back only when the unit runs again, at the next boot.")
        return 0
    finally:
        registry.stop()
        aws.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
