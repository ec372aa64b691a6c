"""Benchmark of the shipped artifact; rerun with ``bench/run artifact``.

Builds ecrcred and the floor program ``bench/floor.py`` with the same spec
(``build/ecrcred.spec``), then times them, interleaved, against moto's server as ECR on
127.0.0.1. The onedir pair is the release build: ``build/build-portable --floor`` builds both in
its Debian 11 root with its own CPython (``--local`` uses ``build/build`` and this machine's
Python instead, for a machine without root or debootstrap). The onefile pair is always
``build/build``'s: onefile is only measured, never shipped.

- a cache-hit ``get-credentials`` of each ecrcred build, and the floor of each mode: the target
  is a cache hit within 1.3x of the floor built the same way (onedir, what we ship);
- a cache miss of the onedir build;
- onefile against onedir: onefile unpacks itself into a temp dir on every start, and the
  kubelet starts a fresh process for every image, so this is what decided the shipped mode.

Prints a Markdown report, including artifact sizes.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.plugin import machine, request, summary  # noqa: E402
from tests.support.aws import AwsStandIn  # noqa: E402

PYINSTALLER = Path(sys.executable).with_name("pyinstaller")


def build_release() -> tuple[Path, Path]:
    """The release artifact and its floor, built the same way (``build/build-portable``)."""
    subprocess.run([str(ROOT / "build" / "build-portable"), "--floor"], check=True)
    return (ROOT / "dist" / "ecrcred" / "ecrcred",
            ROOT / "build" / "dist" / "floor-portable" / "floor" / "floor")


def build_ecrcred(mode: str) -> Path:
    argv = [str(ROOT / "build" / "build")] + (["--onefile"] if mode == "onefile" else [])
    subprocess.run(argv, check=True)
    return ROOT / "dist" / ("ecrcred/ecrcred" if mode == "onedir" else "onefile/ecrcred")


def build_floor(mode: str) -> Path:
    env = dict(os.environ, ECRCRED_BUILD_MODE=mode, ECRCRED_BUILD_NAME="floor",
               ECRCRED_BUILD_ENTRY=str(ROOT / "bench" / "floor.py"))
    dist = ROOT / "build" / "dist" / f"floor-{mode}"
    subprocess.run([str(PYINSTALLER), "--noconfirm", "--clean", "--log-level", "WARN",
                    "--workpath", str(ROOT / "build" / "work" / f"floor-{mode}"),
                    "--distpath", str(dist), str(ROOT / "build" / "ecrcred.spec")],
                   env=env, check=True)
    return dist / ("floor/floor" if mode == "onedir" else "floor")


CPU: dict[str, list[float]] = {}


def run(argv: list[str], stdin: bytes, env: dict[str, str], name: str = "") -> float:
    """Wall milliseconds of one execution; its CPU milliseconds (user + system, which other
    load on the machine disturbs less) are kept in CPU[name]."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, input=stdin, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{argv} failed: {result.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    CPU.setdefault(name, []).append(cpu)
    return elapsed * 1000


def size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--local", action="store_true",
                        help="build the onedir pair with build/build (this machine's Python), "
                        "not build/build-portable")
    args = parser.parse_args()

    if args.local:
        onedir_pair = (build_ecrcred("onedir"), build_floor("onedir"))
        built = "build/build, this machine's Python"
    else:
        onedir_pair = build_release()
        built = "build/build-portable: the release artifact, Debian 11 root, its own CPython"
    programs = {
        "ecrcred onedir": onedir_pair[0],
        "ecrcred onefile": build_ecrcred("onefile"),
        "floor onedir": onedir_pair[1],
        "floor onefile": build_floor("onefile"),
    }
    work = Path(tempfile.mkdtemp(prefix="ecrcred-bench-artifact-"))
    aws = AwsStandIn(work)
    try:
        base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **aws.env()}
        req = request("123456789012.dkr.ecr.us-west-2.amazonaws.com/eks/pause")
        warm = dict(base, ECRCRED_CACHE_DIR=str(work / "warm"))
        for name, path in programs.items():
            run([str(path), "get-credentials"] if name.startswith("ecrcred") else [str(path)],
                req, warm)  # fill the cache, warm the page cache
        samples: dict[str, list[float]] = {name: [] for name in programs}
        samples["ecrcred onedir, cache miss"] = []
        for i in range(args.runs):
            for name, path in programs.items():
                argv = [str(path), "get-credentials"] if name.startswith("ecrcred") else [
                    str(path)]
                samples[name].append(run(argv, req, warm, name))
            cold = dict(base, ECRCRED_CACHE_DIR=str(work / f"cold-{i}"))
            samples["ecrcred onedir, cache miss"].append(
                run([str(programs["ecrcred onedir"]), "get-credentials"], req, cold,
                    "ecrcred onedir, cache miss"))

        print(f"Machine: {machine()}; {args.runs} runs each, all programs interleaved; the "
              "ecrcred runs are cache hits unless marked. onedir pair: "
              f"{built}; onefile pair: build/build.\n")
        print("| program | runs | median ms | p90 ms | min ms | median CPU ms |")
        print("|---|---|---|---|---|---|")
        for name, values in samples.items():
            s = summary(values)
            print(f"| {name} | {s['n']} | {s['median']:.1f} | {s['p90']:.1f} | {s['min']:.1f} | "
                  f"{statistics.median(CPU[name]):.1f} |")
        med = {name: statistics.median(values) for name, values in samples.items()}
        onedir, onefile = med["ecrcred onedir"], med["ecrcred onefile"]
        cpu = {name: statistics.median(values) for name, values in CPU.items()}
        print(f"\nCache hit / floor, onedir (shipped): **{onedir / med['floor onedir']:.2f}x** "
              f"wall, **{cpu['ecrcred onedir'] / cpu['floor onedir']:.2f}x** CPU "
              "(target: within 1.3x).  ")
        print(f"Cache hit / floor, onefile: {onefile / med['floor onefile']:.2f}x.  ")
        print(f"onefile / onedir cache hit: {onefile / onedir:.2f}x "
              f"({onefile - onedir:.0f} ms more per kubelet exec).\n")
        tarballs = sorted((ROOT / "dist").glob("ecrcred-*-linux-*.tar.gz"))
        print("| artifact | size |")
        print("|---|---|")
        unpacked = size_mb(ROOT / "dist" / "ecrcred")
        print(f"| onedir, unpacked (`dist/ecrcred/`) | {unpacked:.1f} MB |")
        for tarball in tarballs:
            print(f"| onedir, packed (`{tarball.relative_to(ROOT)}`) | {size_mb(tarball):.1f} MB |")
        onefile_size = size_mb(programs["ecrcred onefile"])
        print(f"| onefile (`dist/onefile/ecrcred`) | {onefile_size:.1f} MB |")
        return 0
    finally:
        aws.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
