"""Instructions of one cache hit, counted by callgrind: a figure that load on the machine does
not move.

Wall-clock and CPU times of a 20 ms process shift by several percent with whatever else the
machine runs; the number of instructions executed does not (callgrind gives the same count to
within 0.1% run after run, with the other core busy or not). So a before/after question about
the hit path ("did this change make a hit dearer?") is answered here, and ``bench/plugin.py``
gives the times.

Counted, each ``--repeat`` times (the median is reported), against moto's server as ECR with the
token already cached:
- ``python -I -c pass``: the interpreter's own start (the floor no Python plugin goes under);
- ``bench/floor.py``: the least a Python plugin does (read the request, write JSON with ``json``);
- ``ecrcred get-credentials``, cache hit, for this checkout and each ``--compare`` executable
  (``bench/at-rev REV`` makes one of an older revision, run by the same interpreter);
- with ``--interpreter PYTHON``: that interpreter's bare start, ``PYTHON -I -S -c pass`` (the
  release root's CPython, whose ``lib/`` is put on ``LD_LIBRARY_PATH``), the floor of the
  artifact, which imports no ``site`` either; with ``--miss``: one cache miss of each executable.

A PyInstaller executable starts twice in one process (its bootloader sets ``LD_LIBRARY_PATH``
and execs itself): both images are counted (``--trace-children``, a dump at ``execve``).

    bench/run count [--compare "$(bench/at-rev REV)"] [--repeat 3]
    bench/run count --ecrcred dist/ecrcred/ecrcred --compare OLD/ecrcred \
        --interpreter build/work/portable/rootfs-bullseye/opt/ecrcred-python/bin/python3.11
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
from pathlib import Path

from tests.support.aws import AwsStandIn

IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/eks/pause"
REQUEST = json.dumps({"kind": "CredentialProviderRequest",
                      "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                      "image": IMAGE}).encode()


def count(argv: list[str], env: dict[str, str], work: Path) -> int:
    """Instructions of one run of ``argv``, over every image the process execs."""
    for old in work.glob("cg.out*"):
        old.unlink()
    subprocess.run(["valgrind", "--tool=callgrind", "--trace-children=yes",
                    "--dump-before=execve", f"--callgrind-out-file={work}/cg.out", *argv],
                   input=REQUEST, env=env, capture_output=True, check=True)
    totals = [re.search(rb"^totals: (\d+)", dump.read_bytes(), re.M)
              for dump in work.glob("cg.out*")]
    if not totals or None in totals:
        raise SystemExit(f"valgrind wrote no count for {argv}")
    return sum(int(found.group(1)) for found in totals if found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ecrcred", default=str(Path(sys.executable).with_name("ecrcred")),
                        help="the executable under test (default: this checkout's .venv)")
    parser.add_argument("--compare", action="append", default=[],
                        help="another ecrcred executable to count beside it (repeatable)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--interpreter", help="a CPython to count the bare start of "
                        "(-I -S -c pass), e.g. the release root's, which the artifact is built "
                        "from; ratios are then to it")
    parser.add_argument("--miss", action="store_true",
                        help="also count one cache miss (an empty cache) of each executable")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: apt-get install valgrind")
    work = Path(tempfile.mkdtemp(prefix="ecrcred-count-"))
    aws = AwsStandIn(work)
    try:
        base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONHASHSEED": "0", **aws.env()}
        rows = [("interpreter start (`python -I -c pass`)", [sys.executable, "-I", "-c", "pass"],
                 base),
                ("floor (`bench/floor.py`)", [sys.executable, "-I", "bench/floor.py"], base)]
        if args.interpreter:
            python = Path(args.interpreter)
            rows.insert(0, (f"bare start (`{python} -I -S -c pass`)",
                            [str(python), "-I", "-S", "-c", "pass"],
                            dict(base, LD_LIBRARY_PATH=str(python.parents[1] / "lib"))))
        for i, exe in enumerate([args.ecrcred, *args.compare]):
            env = dict(base, ECRCRED_CACHE_DIR=str(work / f"cache{i}"))
            subprocess.run([exe, "get-credentials"], input=REQUEST, env=env, capture_output=True,
                           check=True)  # the miss that fills the cache
            rows.append((f"cache hit: `{exe}`", [exe, "get-credentials"], env))
            if args.miss:  # its cache directory is removed before each count
                rows.append((f"cache miss: `{exe}`", [exe, "get-credentials"],
                             dict(base, ECRCRED_CACHE_DIR=str(work / f"cold{i}"))))
        print(f"Instructions (callgrind), median of {args.repeat}; ratio to the first row\n")
        print("| execution | instructions | / first row |")
        print("|---|---|---|")
        floor = None
        for name, argv, env in rows:
            cold = env.get("ECRCRED_CACHE_DIR", "") if name.startswith("cache miss") else ""
            counts = []
            for _ in range(args.repeat):
                if cold:
                    shutil.rmtree(cold, ignore_errors=True)
                counts.append(count(argv, env, work))
            n = statistics.median(counts)
            floor = floor or n
            print(f"| {name} | {n / 1e6:.2f} M | {n / floor:.2f}x |")
    finally:
        aws.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
