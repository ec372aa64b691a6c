"""The systemd units in packaging/: valid for systemd, and the boot policy they promise."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).parents[1] / "packaging" / "systemd"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


@pytest.mark.parametrize("name", ["ecrcred-sandbox.service", "ecrcred-sandbox-watch.service"])
def test_unit_passes_systemd_analyze_verify(name, tmp_path, ecrcred_bin):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze not found; ./scripts/test installs it (Debian systemd)")
    text = (UNITS / name).read_text().replace("/usr/bin/ecrcred", ecrcred_bin)
    (tmp_path / name).write_text(text)
    result = subprocess.run([analyze, "verify", str(tmp_path / name)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert name not in result.stderr, result.stderr


@pytest.mark.parametrize("name", ["ecrcred-sandbox.service", "ecrcred-sandbox-watch.service"])
def test_units_never_depend_on_home(name):
    text = (UNITS / name).read_text()
    service = unit(name)["Service"]
    assert "HOME" not in text.replace("# Never relies on HOME", "")
    assert service["Environment"] == "ECRCRED_CACHE_DIR=/var/lib/ecrcred/cache"


def test_boot_unit_runs_before_the_kubelet_but_cannot_keep_it_down_forever():
    u = unit("ecrcred-sandbox.service")
    assert u["Service"]["Type"] == "oneshot"
    assert "kubelet.service" in u["Unit"]["Before"]
    assert "containerd.service" in u["Unit"]["After"]
    # wanted, not required, by the kubelet: a failed pull does not stop the kubelet
    assert u["Install"]["WantedBy"] == "kubelet.service"
    assert "RequiredBy" not in u["Install"]
    pull_timeout = int(u["Service"]["ExecStart"].split("--timeout", 1)[1].split()[0])
    assert pull_timeout < int(u["Service"]["TimeoutStartSec"])


def test_watch_unit_restarts_on_failure_and_runs_the_watch():
    u = unit("ecrcred-sandbox-watch.service")
    assert u["Service"]["Restart"] == "always"
    assert "pull-sandbox --watch" in u["Service"]["ExecStart"]
