"""``build/entry.py``, the artifact's entry point, against the console script: it ends a
``get-credentials`` with ``os._exit`` after flushing, and must answer, fail and exit exactly as
``ecrcred.cli:main`` does, closed stdout included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.kubelet import request

ROOT = Path(__file__).resolve().parents[2]
ENTRY = ROOT / "build" / "entry.py"
# The console script of this interpreter's install (not $ECRCRED_BIN, which may be the frozen
# build: its version line says so), the same code that entry.py runs.
CONSOLE_SCRIPT = Path(sys.executable).with_name("ecrcred")
ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"


def run(argv: Sequence[str], stdin: bytes, env: Mapping[str, str], *,
        close_stdout: bool = False) -> subprocess.CompletedProcess[bytes]:
    def closed() -> None:
        os.close(1)

    return subprocess.run(list(argv), input=stdin, env=dict(env), capture_output=not close_stdout,
                          stderr=subprocess.PIPE if close_stdout else None,
                          preexec_fn=closed if close_stdout else None,
                          timeout=60, cwd="/", check=False)


Run = subprocess.CompletedProcess[bytes]


def both(args: Sequence[str], stdin: bytes, env: Mapping[str, str], **kw: Any) -> tuple[Run, Run]:
    """The console script's run, then entry.py's (by this interpreter, as the build freezes it),
    each with a token cache of its own (under ``ECRCRED_CACHE_DIR``)."""
    assert CONSOLE_SCRIPT.is_file(), f"{CONSOLE_SCRIPT} is missing: run ./scripts/setup"
    cache = env.get("ECRCRED_CACHE_DIR", "/nonexistent")
    script = run([str(CONSOLE_SCRIPT), *args], stdin,
                 {**env, "ECRCRED_CACHE_DIR": f"{cache}-script"}, **kw)
    entry = run([sys.executable, "-I", str(ENTRY), *args], stdin,
                {**env, "ECRCRED_CACHE_DIR": f"{cache}-entry"}, **kw)
    return script, entry


def answer(stdout: bytes) -> dict[str, Any]:
    doc = json.loads(stdout)
    doc.pop("cacheDuration", None)  # counts down between the two runs
    return dict(doc)


@pytest.mark.parametrize("args", [("get-credentials",), ()])  # () is get-credentials too
def test_a_cache_miss_then_a_hit_answer_as_the_console_script_does(kubelet_env, args):
    req = json.dumps(request(f"{ECR}/team/app")).encode()
    for _ in ("miss", "hit"):
        script, entry = both(args, req, dict(kubelet_env))
        assert entry.returncode == script.returncode == 0, entry.stderr.decode()
        assert entry.stdout.endswith(b"\n")
        assert answer(entry.stdout) == answer(script.stdout)
        assert entry.stderr == script.stderr


def test_a_bad_request_fails_with_the_same_exit_code_and_line(kubelet_env):
    script, entry = both(("get-credentials",), b'{"kind": 1', dict(kubelet_env))
    assert script.returncode not in (0, 70)
    assert (entry.returncode, entry.stdout, entry.stderr) == (
        script.returncode, script.stdout, script.stderr)


def test_a_closed_stdout_ends_as_it_does_for_the_console_script(kubelet_env):
    req = json.dumps(request(f"{ECR}/team/app")).encode()
    script, entry = both(("get-credentials",), req, dict(kubelet_env),
                         close_stdout=True)
    assert script.returncode != 0
    assert (entry.returncode, entry.stderr) == (script.returncode, script.stderr)


def test_version_and_help_print_what_the_console_script_prints(kubelet_env):
    for args in (("version",), ("--help",), ("doctor", "--help")):
        script, entry = both(args, b"", dict(kubelet_env))
        assert (entry.returncode, entry.stdout, entry.stderr) == (
            script.returncode, script.stdout, script.stderr), args
