"""Coverage-guided fuzzing (atheris, libFuzzer) of what ``ecrcred get-credentials`` reads on stdin.

Each input is handed, as the whole of stdin, to ``ecrcred.cli.main(["get-credentials"])`` in
this process (``harness.Stand``: a config with every source kind, a warm token cache, AWS on a
refusing loopback port), and ``harness.check`` asserts the exit-code and output contract; a
broken rule is an uncaught AssertionError, which libFuzzer reports as a crash and saves as
``crash-<sha1>`` under ``-artifact_prefix``. ecrcred's own modules are instrumented for
coverage; the libraries it imports lazily (boto3, pydantic) are not.

CI runs it for 20 seconds (tests/fuzz/test_fuzz_stdin.py). A longer run, from the repository
root, with new inputs kept in a scratch corpus beside the checked-in seeds:

    mkdir -p /tmp/ecrcred-corpus
    PYTHONPATH=. .venv/bin/python tests/fuzz/fuzz_stdin.py /tmp/ecrcred-corpus tests/fuzz/corpus \\
        -dict=tests/fuzz/stdin.dict -timeout=0 -max_len=4096 -max_total_time=1800 \\
        -artifact_prefix=/tmp/ecrcred-corpus/ -print_final_stats=1

``-timeout=0`` is needed: libFuzzer's per-input timeout uses SIGALRM, which ecrcred's own
deadline (``ecrcred.deadline``) uses too. Replay one input with ``... fuzz_stdin.py FILE``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["ecrcred"]):
    import ecrcred.cache
    import ecrcred.cli
    import ecrcred.config.load
    import ecrcred.config.rules
    import ecrcred.deadline
    import ecrcred.ecrhost
    import ecrcred.fetch
    import ecrcred.imageref
    import ecrcred.kubelet
    import ecrcred.provider
    import ecrcred.records
    import ecrcred.router
    import ecrcred.sources.dockerconfig
    import ecrcred.sources.ecr
    import ecrcred.sources.helper
    import ecrcred.sources.static
    import ecrcred.tokens  # noqa: F401

from tests.fuzz.harness import Stand, check

STAND: Stand | None = None
WORKDIR_ENV = "ECRCRED_FUZZ_WORKDIR"


def test_one_input(data: bytes) -> None:
    assert STAND is not None
    check(data, STAND.run(data), STAND.secrets)


def main() -> int:
    """libFuzzer ends the process with exit() when it is done, so nothing after Fuzz() runs:
    the fuzzing happens in a child, and this parent removes the stand's directory after it."""
    global STAND  # noqa: PLW0603 - libFuzzer calls a plain function
    workdir = os.environ.get(WORKDIR_ENV)
    if workdir:
        STAND = Stand(workdir)
        atheris.Setup(sys.argv, test_one_input)
        atheris.Fuzz()
        return 0  # not reached
    workdir = tempfile.mkdtemp(prefix="ecrcred-fuzz-")
    try:
        return subprocess.run([sys.executable, *sys.argv], env=dict(os.environ, **{
            WORKDIR_ENV: workdir}), check=False).returncode
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
