"""Benchmark of ``ecrcred get-credentials`` as the kubelet runs it; rerun with ``bench/run``.

What it measures, all on 127.0.0.1 against moto's server as ECR (tests/support/aws_server.py):

- floor: ``bench/floor.py``, a Python program that reads the request and writes a JSON answer,
  run by the same interpreter: the least any Python plugin can cost per exec;
- cache hit: ``ecrcred get-credentials`` with a warm token cache, without a config file and
  with a five-rule config file (read in its compiled form), and right after that file was
  edited (validated again with pydantic);
- cache miss: the same with an empty cache directory each time (botocore import, AWS credential
  resolution, one GetAuthorizationToken, the cache write), against the plain stand-in and
  against the one that adds ``--latency-ms`` to every AWS call (as a real region's round trip
  would), for this executable and the ``--compare`` one;
- burst: N concurrent executions over R registries, as at node boot (the kubelet execs once per
  image), against a stand-in that adds ``--latency-ms`` to every AWS call; reported with the
  number of API calls the server counted. ``--no-cache`` models the incumbent kubelet plugin
  (cloud-provider-aws' ``ecr-credential-provider``), which has no cache of its own and calls the
  API on every execution: a model, since no build of it is at hand;
- the Go peer, measured: ``docker-credential-ecr-login`` (amazon-ecr-credential-helper, the Go
  ECR token client, with a file cache of its own) from Debian unstable, run from a root of that
  release (``scripts/runtime-root sid``) through the root's own dynamic loader, against the same
  stand-in: one execution (hit, and miss with its cache emptied) interleaved with ecrcred's, and
  the same burst.

The stand-in answers GetAuthorizationToken with tokens that expire in 12 hours (moto's own say
2015, which a cache that trusts ``expiresAt`` never keeps).

Floor and hit runs are interleaved so that background load hits both alike. Prints a Markdown
report on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.aws import AwsStandIn  # noqa: E402

API = "credentialprovider.kubelet.k8s.io/v1"
CONFIG = """\
apiVersion: ecrcred.io/v1alpha1
kind: EcrcredConfig
registries:
  - match: ["harbor.corp.example"]
    static: {username: robot, passwordFile: /etc/ecrcred/secrets/harbor}
  - match: ["docker.io", "mirror.corp.example:5000"]
    mirrorOf: 123456789012.dkr.ecr.us-west-2.amazonaws.com/docker-hub
  - match: ["registry.corp.example"]
    ecr: {account: "123456789012", region: us-west-2}
  - match: ["quay.io"]
    dockerConfig: {}
  - match: ["*.pkg.dev"]
    credentialHelper: {name: gcloud}
"""


def request(image: str) -> bytes:
    return json.dumps({"kind": "CredentialProviderRequest", "apiVersion": API,
                       "image": image}).encode() + b"\n"


def run(argv: list[str], stdin: bytes, env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, input=stdin, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{argv} failed: {result.stderr.decode()}")
    return elapsed * 1000


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "p90": ordered[int(0.9 * (len(ordered) - 1))],
        "p99": ordered[int(0.99 * (len(ordered) - 1))],
        "min": ordered[0],
    }


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}")


def go_peer(choice: str) -> list[str] | None:
    """The Go peer's command, run by its root's own dynamic loader (its glibc, this machine's
    paths), or None when left out."""
    if choice == "none":
        return None
    root = choice
    if choice == "auto":
        made = subprocess.run([str(ROOT / "scripts/runtime-root"), "sid"], capture_output=True,
                              text=True, check=False)
        if made.returncode != 0:
            raise SystemExit(f"scripts/runtime-root sid failed (--go-peer none to leave the Go "
                             f"peer out): {made.stderr.strip()[-300:]}")
        root = made.stdout.strip().splitlines()[-1]
    libs = f"{root}/lib/x86_64-linux-gnu:{root}/usr/lib/x86_64-linux-gnu"
    return [f"{root}/lib64/ld-linux-x86-64.so.2", "--library-path", libs,
            f"{root}/usr/bin/docker-credential-ecr-login"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--burst", type=int, default=50, help="0: no burst")
    parser.add_argument("--registries", type=int, default=5)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--ecrcred", default=str(Path(sys.executable).with_name("ecrcred")),
                        help="the executable to measure (e.g. the PyInstaller build)")
    parser.add_argument("--compare", default=None,
                        help="another ecrcred executable (e.g. bench/at-rev REV's, an earlier "
                        "commit) whose cache hits are run interleaved with this one's, for a "
                        "before/after ratio measured in the same run")
    parser.add_argument("--go-peer", default="auto",
                        help="the Go peer's root (default: scripts/runtime-root sid; 'none' to "
                        "leave it out)")
    parser.add_argument("--floor", nargs="+",
                        default=[sys.executable, str(ROOT / "bench/floor.py")],
                        help="the floor program's argv")
    args = parser.parse_args()

    go = go_peer(args.go_peer)
    work = Path(tempfile.mkdtemp(prefix="ecrcred-bench-"))
    aws = AwsStandIn(work)
    (work / "slow").mkdir()
    slow = AwsStandIn(work / "slow", args.latency_ms)
    try:
        aws.tokens_per_caller()
        slow.tokens_per_caller()
        base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **aws.env()}
        image = "123456789012.dkr.ecr.us-west-2.amazonaws.com/eks/pause"
        host = image.split("/", 1)[0].encode()
        req = request(image)
        go_warm = dict(base, HOME=str(work), AWS_REGION="us-west-2",
                       AWS_ECR_CACHE_DIR=str(work / "go-warm"))
        if go:
            run([*go, "get"], host, go_warm)  # fill its cache
        warm = dict(base, ECRCRED_CACHE_DIR=str(work / "warm"))
        run([args.ecrcred, "get-credentials"], req, warm)  # fill the cache
        config = work / "config.yaml"
        config.write_text(CONFIG)
        configured = dict(warm, ECRCRED_CONFIG=str(config))
        run([args.ecrcred, "get-credentials"], req, configured)  # compile it
        other_warm = dict(base, ECRCRED_CACHE_DIR=str(work / "other-warm"))
        other_config = work / "other-config.yaml"
        other_config.write_text(CONFIG)
        other_configured = dict(other_warm, ECRCRED_CONFIG=str(other_config))
        if args.compare:
            run([args.compare, "get-credentials"], req, other_warm)
            run([args.compare, "get-credentials"], req, other_configured)
        other_hit: list[float] = []
        other_hit_config: list[float] = []
        slow_env = dict(base, **slow.env())
        slow_miss: list[float] = []
        other_slow_miss: list[float] = []

        floor, hit, hit_config, edited, miss = [], [], [], [], []
        go_hit: list[float] = []
        go_miss: list[float] = []
        for i in range(args.runs):
            if go:
                go_hit.append(run([*go, "get"], host, go_warm))
                go_miss.append(run([*go, "get"], host, dict(
                    go_warm, AWS_ECR_CACHE_DIR=str(work / f"go-cold-{i}"))))
            floor.append(run(args.floor, req, base))
            hit.append(run([args.ecrcred, "get-credentials"], req, warm))
            hit_config.append(run([args.ecrcred, "get-credentials"], req, configured))
            if args.compare:
                other_hit.append(run([args.compare, "get-credentials"], req, other_warm))
                other_hit_config.append(run([args.compare, "get-credentials"], req,
                                            other_configured))
            config.write_text(CONFIG + f"# edit {i}\n")
            edited.append(run([args.ecrcred, "get-credentials"], req, configured))
            cold = dict(base, ECRCRED_CACHE_DIR=str(work / f"cold-{i}"))
            miss.append(run([args.ecrcred, "get-credentials"], req, cold))
            slow_miss.append(run([args.ecrcred, "get-credentials"], req,
                                 dict(slow_env, ECRCRED_CACHE_DIR=str(work / f"slow-{i}"))))
            if args.compare:
                other_slow_miss.append(run(
                    [args.compare, "get-credentials"], req,
                    dict(slow_env, ECRCRED_CACHE_DIR=str(work / f"other-slow-{i}"))))

        rows = [("floor (bench/floor.py)", summary(floor)), ("cache hit", summary(hit)),
                ("cache hit, 5-rule config file (compiled copy)", summary(hit_config)),
                ("cache hit, config file just edited (validated again)", summary(edited)),
                ("cache miss", summary(miss)),
                (f"cache miss against the stand-in with --latency-ms {args.latency_ms}",
                 summary(slow_miss))]
        if args.compare:
            rows.append((f"cache miss against the stand-in with --latency-ms {args.latency_ms}, "
                         f"{args.compare}", summary(other_slow_miss)))
        if go:
            rows += [("Go peer (docker-credential-ecr-login), its cache hit", summary(go_hit)),
                     ("Go peer, its cache emptied (one GetAuthorizationToken)",
                      summary(go_miss))]
        ratio = statistics.median(hit) / statistics.median(floor)
        if args.compare:
            rows[1:1] = [(f"cache hit, {args.compare}", summary(other_hit)),
                         (f"cache hit, 5-rule config file, {args.compare}",
                          summary(other_hit_config))]

        bursts = []
        images = [f"{100000000000 + r % args.registries}.dkr.ecr.us-west-2.amazonaws.com/"
                  f"app-{r}" for r in range(args.burst)]
        contenders: list[tuple[str, list[str], bool]] = [
            ("ecrcred (shared cache)", [args.ecrcred, "get-credentials"], False),
            ("ecrcred, the node agent's cache (every execution a hit)",
             [args.ecrcred, "get-credentials"], False),
            ("no cache: one API call per exec (incumbent model)",
             [args.ecrcred, "get-credentials", "--no-cache"], False)]
        if go:
            contenders.append(("Go peer, docker-credential-ecr-login (its file cache; measured)",
                               [*go, "get"], True))
        for label, argv, by_host in contenders if args.burst else []:  # --burst 0: none
            slow.reset()
            slow.tokens_per_caller()
            env = dict(base, **slow.env(), ECRCRED_CACHE_DIR=str(work / f"burst-{len(bursts)}"),
                       HOME=str(work), AWS_REGION="us-west-2",
                       AWS_ECR_CACHE_DIR=str(work / f"go-burst-{len(bursts)}"))
            if "agent" in label:
                # what `pull-sandbox --watch` leaves behind: a fresh token for each registry
                for registry in sorted({img.split("/", 1)[0] for img in images}):
                    run(argv, request(f"{registry}/warm"), env)
                slow.reset()
                slow.tokens_per_caller()
            started = time.perf_counter()
            with ThreadPoolExecutor(args.burst) as pool:
                times = list(pool.map(
                    lambda img, a=argv, e=env, h=by_host: run(
                        a, img.split("/", 1)[0].encode() if h else request(img), e), images))
            total = (time.perf_counter() - started) * 1000
            bursts.append((label, total, summary(times), slow.calls("GetAuthorizationToken")))

        print(f"Machine: {machine()}; ecrcred: {args.ecrcred}; {args.runs} runs each, "
              "floor/hit/miss interleaved.\n")
        print("| execution | runs | median ms | p90 ms | min ms |")
        print("|---|---|---|---|---|")
        for name, s in rows:
            print(f"| {name} | {s['n']} | {s['median']:.1f} | {s['p90']:.1f} | {s['min']:.1f} |")
        print(f"\nCache hit / floor (medians): **{ratio:.2f}x** (target: within 1.5x).\n")
        if args.compare:
            plain = statistics.median(hit) / statistics.median(other_hit)
            with_config = statistics.median(hit_config) / statistics.median(other_hit_config)
            print(f"Cache hit / the compared build's (medians): **{plain:.2f}x** without a "
                  f"config, **{with_config:.2f}x** with the 5-rule config.\n")
            print(f"Cache miss with {args.latency_ms} ms per AWS call, medians: "
                  f"**{statistics.median(slow_miss):.0f} ms** against "
                  f"{statistics.median(other_slow_miss):.0f} ms for the compared build.\n")
        if args.burst:
            print(f"Burst: {args.burst} concurrent executions over {args.registries} registries, "
                  f"stand-in latency {args.latency_ms} ms per AWS call.\n")
            print("| plugin | total ms | p50 ms | p99 ms | GetAuthorizationToken calls |")
            print("|---|---|---|---|---|")
            for label, total, s, calls in bursts:
                print(f"| {label} | {total:.0f} | {s['median']:.0f} | {s['p99']:.0f} | {calls} |")
        return 0
    finally:
        aws.stop()
        slow.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
