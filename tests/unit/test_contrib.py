"""contrib/civicbot.service and the Docker instructions: files operators copy, kept correct."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from civicbot.app.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "contrib" / "civicbot.service"
INSTALLED = "/opt/civicbot/.venv/bin/civicbot"

# The directives the unit uses, by section, from systemd.unit(5), systemd.service(5),
# systemd.exec(5) and systemd.kill(5): a misspelt one is an error even where systemd-analyze
# (which only warns about it) is not installed.
KNOWN = {
    "Unit": {"Description", "Documentation", "After", "Wants", "Requires"},
    "Service": {
        "Type", "User", "Group", "EnvironmentFile", "Environment", "StateDirectory",
        "StateDirectoryMode", "WorkingDirectory", "ExecStartPre", "ExecStart", "KillSignal",
        "TimeoutStopSec", "Restart", "RestartSec", "RestartPreventExitStatus", "UMask",
        "NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
        "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
        "ProtectControlGroups", "ProtectClock", "ProtectHostname", "RestrictAddressFamilies",
        "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
        "SystemCallArchitectures",
    },
    "Install": {"WantedBy"},
}  # fmt: skip


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_uses_only_known_directives():
    unit = _unit()
    assert set(unit.sections()) == set(KNOWN)
    for section in unit.sections():
        unknown = set(unit[section]) - KNOWN[section]
        assert not unknown, f"[{section}] {unknown}"


def test_the_unit_runs_real_civicbot_commands():
    """systemd-analyze checks that the binary exists, not that its arguments make sense."""
    service = _unit()["Service"]
    for key in ("ExecStartPre", "ExecStart"):
        argv = shlex.split(service[key])
        assert argv[0] == INSTALLED
        args = build_parser().parse_args(argv[1:])
        assert args.config == "/etc/civicbot/config.toml"
    assert "CIVICBOT_BOT__DATA_DIR=/var/lib/civicbot" in service["Environment"]
    assert service["StateDirectory"] == "civicbot"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_analyze_verifies_the_unit(tmp_path):
    # verify also checks that ExecStart's binary exists: point it at this venv's civicbot.
    here = Path(sys.executable).parent / "civicbot"
    assert here.exists()
    unit = tmp_path / "civicbot.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(here)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # It exits 0 on mere warnings (an unknown key, a bad value): any word about the unit fails.
    about_unit = [
        line for line in (result.stdout + result.stderr).splitlines() if "civicbot" in line
    ]
    assert result.returncode == 0 and not about_unit, result.stdout + result.stderr


def _mounts(text: str) -> list[str]:
    return sorted(re.findall(r"-v\s+\"?([^\s\"]+)\"?", text))


def test_the_dockerfile_and_the_readme_agree_on_the_mounts():
    readme = (REPO / "README.md").read_text()
    docker_run = re.search(r"`(docker run [^`]+)`", readme).group(1)
    comment = re.search(
        r"^# civicbot: .*?(docker run .*)$", (REPO / "Dockerfile").read_text(), re.M
    )
    assert comment, "the Dockerfile's first line says how to run it"
    assert _mounts(comment.group(1)) == _mounts(docker_run)
    assert any(mount.endswith(":/data") for mount in _mounts(docker_run))
