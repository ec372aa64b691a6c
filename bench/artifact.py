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
  kubelet starts a fresh process for every image, so this is what decided the shipped mode;
- the bare start of the CPython the release artifact is built from (the release root's
  ``python3 -I -S -c pass``, ``LD_LIBRARY_PATH`` on its ``lib/`` as the bootloader sets it on
  ``_internal/``): the target is a cache hit within 2x of it;
- ``--compare PATH``: another onedir build (an older revision's, say) timed in the same
  rounds, hit and miss.

``--ecrcred PATH`` times that onedir build instead of building; ``--no-onefile`` leaves the
onefile pair out (what decided the mode, not what ships).

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


def release_python() -> Path:
    """The release root's CPython (``build/build-portable``'s cache), the artifact's own."""
    cache = Path(os.environ.get("ECRCRED_PORTABLE_CACHE") or ROOT / "build/work/portable")
    return cache / "rootfs-bullseye/opt/ecrcred-python/bin/python3.11"


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
    parser.add_argument("--ecrcred", type=Path,
                        help="a built onedir executable to time (no build; the floor is "
                        "build/build-portable --floor's)")
    parser.add_argument("--compare", type=Path, help="another onedir build, timed beside it")
    parser.add_argument("--no-onefile", action="store_true", help="leave the onefile pair out")
    args = parser.parse_args()

    if args.local:
        onedir_pair = (build_ecrcred("onedir"), build_floor("onedir"))
        built = "build/build, this machine's Python"
    elif args.ecrcred:
        floor = ROOT / "build" / "dist" / "floor-portable" / "floor" / "floor"
        if not floor.exists():
            build_release()
        onedir_pair = (args.ecrcred.resolve(), floor)
        built = f"{args.ecrcred} (given), floor from build/build-portable --floor"
    else:
        onedir_pair = build_release()
        built = "build/build-portable: the release artifact, Debian 11 root, its own CPython"
    programs = {"ecrcred onedir": onedir_pair[0]}
    if args.compare:
        programs["ecrcred onedir, compared"] = args.compare.resolve()
    if not args.no_onefile:
        programs["ecrcred onefile"] = build_ecrcred("onefile")
    programs["floor onedir"] = onedir_pair[1]
    if not args.no_onefile:
        programs["floor onefile"] = build_floor("onefile")
    python = release_python()
    bare_env = {"LD_LIBRARY_PATH": str(python.parents[1] / "lib")}
    if not args.local:
        programs["bare interpreter start (release root's python3 -I -S -c pass)"] = python
    work = Path(tempfile.mkdtemp(prefix="ecrcred-bench-artifact-"))
    aws = AwsStandIn(work)
    try:
        base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **aws.env()}
        req = request("123456789012.dkr.ecr.us-west-2.amazonaws.com/eks/pause")
        warm = dict(base, ECRCRED_CACHE_DIR=str(work / "warm"))
        def argv_env(name: str, path: Path) -> tuple[list[str], dict[str, str]]:
            if name.startswith("ecrcred"):
                return [str(path), "get-credentials"], warm
            if name.startswith("bare"):
                return [str(path), "-I", "-S", "-c", "pass"], dict(base, **bare_env)
            return [str(path)], warm

        for name, path in programs.items():
            argv, env = argv_env(name, path)
            run(argv, req, env)  # fill the cache, warm the page cache
        samples: dict[str, list[float]] = {name: [] for name in programs}
        misses = {"ecrcred onedir, cache miss": programs["ecrcred onedir"]}
        if args.compare:
            misses["ecrcred onedir, compared, cache miss"] = programs["ecrcred onedir, compared"]
        for name in misses:
            samples[name] = []
        for i in range(args.runs):
            for name, path in programs.items():
                argv, env = argv_env(name, path)
                samples[name].append(run(argv, req, env, name))
            for j, (name, path) in enumerate(misses.items()):
                cold = dict(base, ECRCRED_CACHE_DIR=str(work / f"cold-{i}-{j}"))
                samples[name].append(run([str(path), "get-credentials"], req, cold, name))

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
        onedir = med["ecrcred onedir"]
        cpu = {name: statistics.median(values) for name, values in CPU.items()}
        print(f"\nCache hit / floor, onedir (shipped): **{onedir / med['floor onedir']:.2f}x** "
              f"wall, **{cpu['ecrcred onedir'] / cpu['floor onedir']:.2f}x** CPU "
              "(target: within 1.3x).  ")
        bare = next((name for name in med if name.startswith("bare")), None)
        if bare:
            print(f"Cache hit / bare interpreter start: **{onedir / med[bare]:.2f}x** wall, "
                  f"**{cpu['ecrcred onedir'] / cpu[bare]:.2f}x** CPU (target: within 2x).  ")
        if args.compare:
            name = "ecrcred onedir, compared"
            print(f"Cache hit / the compared build's: {onedir / med[name]:.2f}x wall"
                  + (f"; the compared build's hit / bare start: {med[name] / med[bare]:.2f}x"
                     if bare else "") + ".  ")
        if not args.no_onefile:
            onefile = med["ecrcred onefile"]
            print(f"Cache hit / floor, onefile: {onefile / med['floor onefile']:.2f}x.  ")
            print(f"onefile / onedir cache hit: {onefile / onedir:.2f}x "
                  f"({onefile - onedir:.0f} ms more per kubelet exec).")
        print()
        tarballs = sorted((ROOT / "dist").glob("ecrcred-*-linux-*.tar.gz"))
        print("| artifact | size |")
        print("|---|---|")
        unpacked = size_mb(ROOT / "dist" / "ecrcred")
        print(f"| onedir, unpacked (`dist/ecrcred/`) | {unpacked:.1f} MB |")
        for tarball in tarballs:
            print(f"| onedir, packed (`{tarball.relative_to(ROOT)}`) | {size_mb(tarball):.1f} MB |")
        if not args.no_onefile:
            onefile_size = size_mb(programs["ecrcred onefile"])
            print(f"| onefile (`dist/onefile/ecrcred`) | {onefile_size:.1f} MB |")
        return 0
    finally:
        aws.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
