"""packaging/systemd/ecrcred-auth-file.service: valid for systemd, running the watch, with the
defaults the command documents, and shipped by the install script and the tarball."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from ecrcred import authfile, cli

ROOT = Path(__file__).parents[1]
NAME = "ecrcred-auth-file.service"
UNIT = ROOT / "packaging" / "systemd" / NAME


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser["Service"]


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path, ecrcred_bin: str):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze not found; ./scripts/test installs it (Debian systemd)")
    (tmp_path / NAME).write_text(UNIT.read_text().replace("/usr/bin/ecrcred", ecrcred_bin))
    result = subprocess.run([analyze, "verify", str(tmp_path / NAME)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert NAME not in result.stderr, result.stderr


def test_the_unit_watches_with_arguments_the_command_accepts_and_no_home():
    s = service()
    assert s["Restart"] == "always"
    assert s["ExecStart"] == "/usr/bin/ecrcred write-auth-file --watch $ECRCRED_AUTH_FILE_ARGS"
    assert s["ExecStartPre"].startswith("-/usr/bin/ecrcred write-auth-file --timeout ")
    env = dict(shlex.split(line.removeprefix("Environment="))[0].split("=", 1)
               for line in UNIT.read_text().splitlines() if line.startswith("Environment="))
    args = shlex.split(env["ECRCRED_AUTH_FILE_ARGS"])
    parsed = cli.build_parser().parse_args(["write-auth-file", "--watch", *args])
    assert (parsed.format, parsed.file) == (
        authfile.CONTAINERS_AUTH, authfile.DEFAULT_FILES[authfile.CONTAINERS_AUTH])
    assert env["ECRCRED_CACHE_DIR"] == "/var/lib/ecrcred/cache"
    assert "HOME" not in env


def test_the_install_script_and_the_tarball_carry_the_unit():
    assert NAME in (ROOT / "packaging" / "install.sh").read_text()
    assert f"packaging/systemd/{NAME}" in (ROOT / "build" / "pack").read_text()
