"""Fixtures for the fault matrix (issue 7): the AWS stand-in and ``ecrcred_bin`` come from
``tests/conftest.py``, and so do the registry, the pushed pause image and a fresh containerd per
test: the end-to-end stack's own fixtures, so the two suites share one registry per session.

Helpers every fault test uses to judge an outcome: ``clean_failure`` (the error contract: no
stdout, one ``ecrcred: error: ... [CODE]`` line, no traceback, nothing secret) and
``cache_files`` (what is on disk, each file whole).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack import ECR_HOST, REGISTRY_PASSWORD, SANDBOX_IMAGE

ECR = ECR_HOST
MOTO_PASSWORD = REGISTRY_PASSWORD  # moto's token for that registry id, which the registry takes
SANDBOX = SANDBOX_IMAGE
# What the AWS stand-in's env carries that must never be printed.
AWS_SECRET = "stand-in-secret-key-not-real"


def clean_failure(result: subprocess.CompletedProcess[bytes], code: int, *needles: str,
                  secrets: tuple[str, ...] = ()) -> str:
    """The contract for every failure: exit ``code``, nothing on stdout, exactly one error line
    (``ecrcred: error: ... [CODE]``) which is the last line, no traceback, no secret anywhere."""
    err = result.stderr.decode()
    assert result.returncode == code, err
    assert result.stdout == b"", result.stdout
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("ecrcred: error: ")]
    assert len(errors) == 1, f"expected one error line, got:\n{err}"
    line = errors[0]
    assert err.strip().splitlines()[-1] == line, f"the error line must come last:\n{err}"
    assert line.rstrip().endswith("]"), line
    assert "[INTERNAL]" not in line, line
    for needle in needles:
        assert needle in line, line
    for secret in (AWS_SECRET, *secrets):
        assert secret not in err, f"secret {secret[:4]}... printed:\n{err}"
    return line


def warnings(result: subprocess.CompletedProcess[bytes], about: str) -> list[str]:
    return [line for line in result.stderr.decode().splitlines()
            if line.startswith("ecrcred: warning: ") and about in line]


def cache_files(cache_dir: Path) -> dict[str, dict[str, Any]]:
    """Every token file in the cache, parsed: a file that is not whole JSON fails the test."""
    files = {}
    for path in sorted(cache_dir.glob("*.json")):
        if path.name.startswith("config-"):
            continue
        raw = path.read_bytes()
        try:
            doc = json.loads(raw)
        except ValueError:
            pytest.fail(f"cache file {path.name} is not whole JSON: {raw[:200]!r}")
        assert doc.get("version") == 1 and isinstance(doc.get("password"), str), doc
        files[path.name] = doc
    return files


def temp_files(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.glob(".*.tmp"))
