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

``--containerd 1.6|1.7|2.1|all``: the machine's containerd 1.6 (the default), trixie's 1.7 or
sid's 2.1 from a Debian root of its own (scripts/runtime-root, as the tests run them), or each in
turn, one report per generation. On 2.x (a version 3 config) the EKS script finds no
``sandbox_image`` and is left out.

With ``--archive`` (``bench/run sandbox --archive``), the EKS AL2023 case instead: containerd's
sandbox image is ``localhost/kubernetes/pause:latest``, which no registry serves, and ecrcred
has an OCI archive of it (written by skopeo from the test registry, as ``/etc/eks/pause.tar``
would be). Timed: ``pull-sandbox --archive`` on a fresh containerd (start to imported and
pinned), and under ``--watch`` deletion to ImageStatus showing the image again. Network traffic
is counted as the registry's access-log lines and the stand-in's GetAuthorizationToken calls
during the archive runs (both must stay 0).

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
from tests.support.containerd import GENERATIONS, Containerd, Runtime, runtime  # noqa: E402
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
    parser.add_argument("--archive", action="store_true",
                        help="the archive case (localhost/kubernetes/pause:latest from a tarball)")
    parser.add_argument("--aws", default=str(Path(sys.executable).with_name("aws")),
                        help="the aws CLI the EKS script runs (awscli, the 'bench' extra)")
    parser.add_argument("--containerd", choices=[*GENERATIONS, "all"], default="1.6",
                        help="the containerd generation (1.6: the machine's; 1.7, 2.1: a Debian "
                        "root from scripts/runtime-root), or all three one after the other")
    args = parser.parse_args()
    if args.archive:
        return archive_case(args)
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
        # a cache of its own per instance: every boot fetches its token, as on a new node
        run_env = dict(env, ECRCRED_CACHE_DIR=str(work / f"cache-{cd.runtime.name}-{i}"))
        started = time.perf_counter()
        result = subprocess.run(
            [args.ecrcred, "pull-sandbox", "--containerd-config", cd.config_path,
             "--runtime-endpoint", cd.endpoint], env=run_env, capture_output=True, check=False)
        boot["ecrcred"].append((time.perf_counter() - started) * 1000)
        if result.returncode != 0:
            raise SystemExit(result.stderr.decode())
        log = work / f"watch-{cd.runtime.name}-{i}.log"
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
        # the script runs `ctr` from PATH: the generation's own, through its root's loader
        ctr_dir = work / f"bin-{cd.runtime.name}"
        if not (ctr_dir / "ctr").exists():
            ctr_dir.mkdir(exist_ok=True)
            (ctr_dir / "ctr").write_text(
                "#!/bin/sh\nexec " + " ".join(f"'{a}'" for a in cd.runtime.ctr) + ' "$@"\n')
            (ctr_dir / "ctr").chmod(0o755)
        run_env = dict(env, CONTAINERD_CONFIG=cd.config_path, CONTAINERD_ADDRESS=cd.socket,
                       CTR_HOSTS_DIR=cd.certs_dir, CONTAINERD_SNAPSHOTTER="native",
                       PATH=f"{ctr_dir}:{env['PATH']}")
        started = time.perf_counter()
        result = subprocess.run([str(EKS_SCRIPT)], env=run_env, capture_output=True,
                                check=False)
        boot["eks"].append((time.perf_counter() - started) * 1000)
        if result.returncode != 0 or b"skipping pull" in result.stdout:
            raise SystemExit(f"EKS script: exit {result.returncode}\n"
                             f"{result.stdout.decode()}{result.stderr.decode()}")

    paths = {"ecrcred": ecrcred_path, "eks": eks_path}

    def generation(rt: Runtime) -> None:
        for series in (*boot.values(), *calls.values(), starts, restore):
            series.clear()
        # AL2's script greps the config for sandbox_image, which a version 3 config (2.x)
        # calls pinned_images.sandbox: there it finds no image and fails, so only ecrcred runs
        names = ["ecrcred", "eks"] if rt.config_version < 3 else ["ecrcred"]
        for i in range(args.runs):
            order = names if i % 2 == 0 else names[::-1]
            for name in order:
                cd = Containerd(work / f"c{rt.name}-{i}-{name}", SANDBOX, runtime=rt)
                try:
                    starts.append(cd.timings["start"] * 1000)
                    cd.add_mirror(ECR_HOST, registry)
                    aws.reset()
                    paths[name](cd, i)
                    calls[name].append(aws.calls("GetAuthorizationToken"))
                    grpc_runtime = GrpcRuntime(cd.endpoint)
                    try:
                        if name == "eks" and grpc_runtime.image_status(SANDBOX) is None:
                            raise SystemExit("EKS script exited 0 but the CRI has no image")
                    finally:
                        grpc_runtime.close()
                finally:
                    cd.stop()
        print(f"### containerd {rt.version} ({rt.id})\n")
        print(f"{args.runs} {'pairs of ' if len(names) > 1 else ''}fresh containerd {rt.name} "
              f"instances (containerd itself took a median {statistics.median(starts):.0f} ms "
              f"to start, not counted); {args.restores} restores on each ecrcred instance"
              + ("; the two paths alternate which goes first.\n" if len(names) > 1 else
                 ". No EKS row: its script reads `sandbox_image`, which a version 3 config "
                 "does not have.\n"))
        print("| path | samples | median ms | p90 ms | min ms | max ms |")
        print("|---|---|---|---|---|---|")
        print(row("boot, `ecrcred pull-sandbox`: start to image present and pinned",
                  boot["ecrcred"]))
        if boot["eks"]:
            print(row("boot, EKS way (`eks-sandbox-image.sh`: awscli + `ctr pull`): start to "
                      "image present", boot["eks"]))
        print(row("`--watch`: deletion (CRI RemoveImage) to image present again", restore))
        if boot["eks"]:
            ratio = statistics.median(boot["eks"]) / statistics.median(boot["ecrcred"])
            print(f"\nBoot, EKS way / ecrcred (medians): **{ratio:.2f}x**. "
                  "GetAuthorizationToken calls per boot: ecrcred "
                  f"{sorted(set(calls['ecrcred']))}, EKS way {sorted(set(calls['eks']))}. "
                  "After a deletion the EKS way has no restore: the image is back only when "
                  "the unit runs again, at the next boot.")
        else:
            print(f"\nGetAuthorizationToken calls per boot: ecrcred "
                  f"{sorted(set(calls['ecrcred']))}.")
        print()

    try:
        chosen = list(GENERATIONS) if args.containerd == "all" else [args.containerd]
        for name in chosen:
            generation(runtime(name))
        return 0
    finally:
        registry.stop()
        aws.stop()
        shutil.rmtree(work, ignore_errors=True)


LOCAL = "localhost/kubernetes/pause:latest"


def archive_generation(args: argparse.Namespace, rt: Runtime, work: Path, archive: Path,
                       env: dict[str, str], aws: AwsStandIn, registry_log: Path) -> None:
    """The archive case on one containerd generation: boots, then restores under --watch."""
    requests_before = registry_log.read_text().count("HTTP/")
    aws.reset()
    boot: list[float] = []
    restore: list[float] = []
    for i in range(args.runs):
        cd = Containerd(work / f"c{rt.name}-{i}", LOCAL, runtime=rt)
        run_env = dict(env, ECRCRED_CACHE_DIR=str(work / f"cache-{rt.name}-{i}"))
        base = [args.ecrcred, "pull-sandbox", "--archive", str(archive),
                "--containerd-config", cd.config_path, "--runtime-endpoint", cd.endpoint]
        runtime = GrpcRuntime(cd.endpoint)
        try:
            started = time.perf_counter()
            result = subprocess.run(base, env=run_env, capture_output=True, check=False)
            boot.append((time.perf_counter() - started) * 1000)
            if result.returncode != 0 or not result.stdout.startswith(b"imported: "):
                raise SystemExit(result.stdout.decode() + result.stderr.decode())
            log = work / f"watch-{rt.name}-{i}.log"
            watcher = Process([*base, "--watch"], str(log), env=run_env)
            try:
                watcher.wait_for(lambda lg=log: "(subscribed" in lg.read_text(), 30,
                                 "watch")
                for _ in range(args.restores):
                    runtime.remove_image(LOCAL)
                    deleted = time.perf_counter()
                    while runtime.image_status(LOCAL) is None:
                        if time.perf_counter() - deleted > 30:
                            raise SystemExit("not restored within 30 s:\n"
                                             + watcher.log_tail())
                        time.sleep(0.002)
                    restore.append((time.perf_counter() - deleted) * 1000)
                    time.sleep(0.2)  # let the watcher pin before the next round
            finally:
                watcher.stop()
        finally:
            runtime.close()
            cd.stop()
    requests = registry_log.read_text().count("HTTP/") - requests_before
    print(f"{args.runs} fresh containerd {rt.version} instances with sandbox image {LOCAL} and no "
          f"registry behind it; `--archive` an OCI archive of it; {args.restores} restores "
          "on each.\n")
    print("| path | samples | median ms | p90 ms | min ms | max ms |")
    print("|---|---|---|---|---|---|")
    print(row("boot, `pull-sandbox --archive`: start to image imported and pinned", boot))
    print(row("`--watch --archive`: deletion (CRI RemoveImage) to image present again",
              restore))
    print(f"\nNetwork during the archive runs: {requests} registry requests, "
          f"{aws.calls('GetAuthorizationToken')} GetAuthorizationToken calls.")


def archive_case(args: argparse.Namespace) -> int:
    """``--archive``: restore ``LOCAL`` from an OCI archive, at boot and under ``--watch``."""
    work = Path(tempfile.mkdtemp(prefix="ebs-", dir="/tmp"))
    aws = AwsStandIn(work)
    registry = Registry(work / "reg", username="AWS", password="123456789012-auth-token")
    try:
        registry.push_test_image("eks/pause", "3.9")
        archive = work / "pause.tar"
        subprocess.run(
            ["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
             "--src-creds", "AWS:123456789012-auth-token",
             f"docker://{registry.host}/eks/pause:3.9", f"oci-archive:{archive}:{LOCAL}"],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(work)}, check=True,
            capture_output=True)
        archive.chmod(0o644)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **aws.env()}
        registry_log = work / "reg" / "registry.log"
        requests_before = registry_log.read_text().count("HTTP/")
        if requests_before == 0:  # the push and the copy were requests: the log must show them
            raise SystemExit(f"no requests in {registry_log}: cannot count network traffic")
        chosen = list(GENERATIONS) if args.containerd == "all" else [args.containerd]
        for name in chosen:
            archive_generation(args, runtime(name), work, archive, env, aws, registry_log)

        return 0
    finally:
        registry.stop()
        aws.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
