"""A short atheris run of one fuzz target, as CI makes it: shared by the stdin and config fuzz
tests, which differ only in their target, seeds, dictionary and limits."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def run_atheris(target: str, seeds: str, dictionary: str, scratch: Path, seconds: int, *,
                min_per_second: int, options: Sequence[str] = ()) -> int:
    """Run ``tests/fuzz/<target>`` for ``seconds`` over the checked-in ``seeds`` (new inputs in a
    scratch corpus under ``scratch``); fail on a breach, on a crash file, or when it executed
    fewer than ``min_per_second`` inputs a second (a broken harness). Returns the input count."""
    corpus = scratch / "corpus"
    corpus.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, str(HERE / target), str(corpus), str(HERE / seeds),
         f"-dict={HERE / dictionary}", *options, f"-max_total_time={seconds}",
         "-seed=1", f"-artifact_prefix={scratch}/", "-print_final_stats=1"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=seconds + 120, check=False)
    tail = result.stderr[-4000:]
    assert result.returncode == 0, f"atheris found a breach (input saved in {scratch}):\n{tail}"
    runs = re.search(r"stat::number_of_executed_units:\s+(\d+)", result.stderr)
    assert runs is not None, tail
    count = int(runs.group(1))
    assert count >= min_per_second * seconds, f"only {count} inputs:\n{tail}"
    assert not list(scratch.glob("crash-*"))
    return count
