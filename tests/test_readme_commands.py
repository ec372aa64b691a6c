"""The README's quick start: its first command runs the demo end to end, and its second is what
CI runs. (The second is this very test run, so only its wiring is checked here.)"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
MOTO_PASSWORD = "123456789012-auth-token"  # what moto's stand-in hands out as the token


def quick_start_commands() -> list[str]:
    text = README.read_text()
    block = text[text.index("## Quick start"):].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_the_quick_start_is_the_demo_then_the_test_command_and_ci_runs_the_latter():
    assert quick_start_commands() == ["./scripts/demo", "./scripts/test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\./scripts/test\s*$", ci, re.M), ci


def test_the_demo_runs_the_plugin_as_the_kubelet_does_and_hits_its_cache():
    result = subprocess.run(["./scripts/demo"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600, check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "first execution (cache miss): exit 0" in out
    assert "second execution (cache hit): exit 0" in out
    assert '"kind": "CredentialProviderResponse"' in out
    assert "GetAuthorizationToken calls seen by the stand-in: 1" in out
    assert MOTO_PASSWORD not in out, "the demo prints the password redacted"
    assert "Traceback" not in out
