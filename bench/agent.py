"""Refresh ahead under the node agent; rerun with ``bench/run agent``.

All on 127.0.0.1: a real containerd (the machine's) with the sandbox image already present, a TLS
registry behind an ECR host name, and moto's server as ECR answering tokens that live
``--token-seconds`` (30 by default: many refresh cycles in a few minutes). ``ecrcred
pull-sandbox --watch`` runs as the agent; beside it, kubelet-like executions of ``ecrcred
get-credentials`` (same AWS environment, same cache, no HOME) every ``--every`` seconds for
``--cycles`` token lifetimes. Measured:

- the executions' wall times (every one must be a hit, from its debug line), against hits of
  the same binary on a cache the agent does not refresh (a 12-hour token), interleaved;
- ``GetAuthorizationToken`` calls per token lifetime while the agent runs (counted by the
  stand-in), the refresh intervals, and what the same schedule (``Token.refresh_window``) means
  per day for 12-hour ECR tokens;
- an ECR outage (every call answered 503) from just before a refresh window opens until just
  before the token stops being fresh: no execution may see it;
- the agent's resident memory (VmRSS, VmHWM from /proc) at the end.

Prints a Markdown report on stdout.
"""

from __future__ import annotations

import argparse
import json
import re
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

from ecrcred.tokens import Token  # noqa: E402

ECR_HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
SANDBOX = f"{ECR_HOST}/eks/pause:3.9"
IMAGE = f"{ECR_HOST}/team/app:1"
API = "credentialprovider.kubelet.k8s.io/v1"
DAY = 24 * 3600.0


def percentile(ordered: list[float], q: float) -> float:
    return ordered[int(q * (len(ordered) - 1))]


def row(name: str, samples: list[float]) -> str:
    s = sorted(samples)
    return (f"| {name} | {len(s)} | {statistics.median(s):.1f} | {percentile(s, 0.9):.1f} | "
            f"{percentile(s, 0.99):.1f} | {s[-1]:.1f} |")


def execute(binary: str, env: dict[str, str]) -> tuple[float, str]:
    """One kubelet-like execution: its wall time (ms) and how the token was had."""
    stdin = json.dumps({"kind": "CredentialProviderRequest", "apiVersion": API,
                        "image": IMAGE}).encode() + b"\n"
    started = time.perf_counter()
    result = subprocess.run([binary, "get-credentials"], input=stdin, env=env,
                            capture_output=True, check=False, cwd="/")
    elapsed = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        raise SystemExit(f"an execution failed: {result.stderr.decode()}")
    found = re.search(r"debug: (hit|miss|last-resort): token for", result.stderr.decode())
    return elapsed, found[1] if found else "?"


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ecrcred", default=str(Path(sys.executable).with_name("ecrcred")))
    parser.add_argument("--token-seconds", type=float, default=30.0)
    parser.add_argument("--cycles", type=int, default=8, help="token lifetimes to run for")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between executions")
    args = parser.parse_args()
    lifetime = args.token_seconds

    work = Path(tempfile.mkdtemp(prefix="eba-", dir="/tmp"))
    aws = AwsStandIn(work)
    registry = Registry(work / "reg", username="AWS", password="123456789012-auth-token")
    cd: Containerd | None = None
    agent: Process | None = None
    try:
        registry.push_test_image("eks/pause", "3.9")
        cd = Containerd(work / "cd", SANDBOX)
        cd.add_mirror(ECR_HOST, registry)
        base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **aws.env(), "AWS_MAX_ATTEMPTS": "1",
                "ECRCRED_LOG_LEVEL": "debug"}
        node = ["--containerd-config", cd.config_path, "--runtime-endpoint", cd.endpoint]
        # The image in place, with moto's usual token (the test registry takes it).
        first = subprocess.run([args.ecrcred, "pull-sandbox", *node], capture_output=True,
                               check=False, env=dict(base, ECRCRED_CACHE_DIR=str(work / "c0")))
        if first.returncode != 0:
            raise SystemExit(first.stderr.decode())

        # Baseline: hits the agent has nothing to do with (a 12-hour token in a cache of its
        # own), interleaved with the measured executions so that load falls on both alike.
        alone = dict(base, ECRCRED_CACHE_DIR=str(work / "alone"))
        execute(args.ecrcred, alone)
        baseline: list[float] = []

        aws.reset()
        aws.token_lifetime(lifetime)
        shared = dict(base, ECRCRED_CACHE_DIR=str(work / "shared"))
        log = work / "agent.log"
        agent = Process([args.ecrcred, "pull-sandbox", "--watch", *node], str(log), env=shared)
        agent.wait_for(lambda: "prefetch " in log.read_text(), 60, "the agent's prefetch")
        booted = time.time()
        samples: list[tuple[float, float, str]] = []  # (when, ms, how)
        outage: tuple[float, float] | None = None
        down = 0  # 1: the outage is on, 2: it is over
        calls_before_reset: list[float] = []
        end = booted + args.cycles * lifetime
        while time.time() < end:
            ms, how = execute(args.ecrcred, shared)
            samples.append((time.time(), ms, how))
            baseline.append(execute(args.ecrcred, alone)[0])
            # The outage: after the 3rd refresh, from 5 s before the next window opens until
            # 3 s before the token stops being fresh (fresh life L/2, window [L/3, 5L/12]).
            if outage is None and log.read_text().count("refreshed ahead the token") >= 3:
                fetched = time.time()
                outage = (fetched + lifetime / 3 - 5, fetched + lifetime / 2 - 3)
            if outage is not None and down == 0 and time.time() >= outage[0]:
                aws.fault(status=503, code="ServiceUnavailableException", times=1_000_000)
                down = 1
            if outage is not None and down == 1 and time.time() >= outage[1]:
                calls_before_reset = aws.call_times("GetAuthorizationToken")
                aws.reset()  # the outage ends (and the short tokens: set them again)
                aws.token_lifetime(lifetime)
                down = 2
            time.sleep(args.every)
        mem = memory(agent.pid)
        text = log.read_text()
        calls = calls_before_reset + aws.call_times("GetAuthorizationToken")
        calls = [t for t in calls if t >= booted]
    finally:
        if agent is not None:
            agent.stop()
        if cd is not None:
            cd.stop()
        registry.stop()
        aws.stop()
        shutil.rmtree(work, ignore_errors=True)

    elapsed = samples[-1][0] - booted
    hits = [ms for _, ms, how in samples if how == "hit"]
    not_hits = [(round(t - booted, 1), how) for t, _, how in samples if how != "hit"]
    during = [how for t, _, how in samples if outage and outage[0] <= t <= outage[1]]
    refreshed = [float(m) for m in re.findall(r"next refresh in (\d+)s", text)]
    failures = text.count("refreshing ahead the token")
    per_lifetime = len(calls) / (elapsed / lifetime)
    start12, end12 = Token("AWS", "x", 12 * 3600.0, 0.0).refresh_window()
    print("## Refresh ahead under the node agent (`bench/agent.py`)\n")
    print(f"Tokens of {lifetime:g} s (fresh for {lifetime / 2:g} s, refreshed ahead between "
          f"{lifetime / 3:g} and {5 * lifetime / 12:g} s), {args.cycles} lifetimes, an "
          f"execution every {args.every:g} s; `{args.ecrcred}`.\n")
    print("| executions | n | median ms | p90 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    print(row("hits on a cache the agent leaves alone (baseline)", baseline))
    print(row("executions on the agent's cache (all of them)", [ms for _, ms, _ in samples]))
    print()
    print(f"- executions that were not hits: {len(not_hits)} {not_hits[:10]}")
    print(f"- GetAuthorizationToken calls after boot: {len(calls)} in {elapsed:.0f} s = "
          f"{per_lifetime:.2f} per token lifetime (the outage's failed attempts included: "
          f"{failures} failures logged)")
    print(f"- for 12-hour tokens the same schedule refreshes between {start12 / 3600:g} h and "
          f"{end12 / 3600:g} h after each fetch: {DAY / end12:.2f} to {DAY / start12:.2f} "
          "calls per registry per node per day, only while executions use the registry")
    if outage is not None:
        print(f"- outage of {outage[1] - outage[0]:.1f} s (every call 503) from "
              f"{outage[0] - booted:.1f} s: {len(during)} executions during it, "
              f"{sum(h == 'hit' for h in during)} hits")
    print(f"- the agent's memory at the end: VmRSS {mem.get('VmRSS', 0):.1f} MB, VmHWM "
          f"{mem.get('VmHWM', 0):.1f} MB")
    print(f"- refreshes logged: {len(refreshed)}")
    return 0 if not not_hits and hits else 1


if __name__ == "__main__":
    sys.exit(main())
