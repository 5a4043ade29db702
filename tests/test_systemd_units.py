"""The systemd units pass `systemd-analyze verify` with no warnings at all."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pivotd.cli import EXIT_CONFIG, EXIT_REFUSED
from pivotd.settings import ENV_PREFIX, Settings

UNITS = Path(__file__).parent.parent / "systemd"
analyze = shutil.which("systemd-analyze")


@pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed (.ci/run installs it)")
@pytest.mark.parametrize(("unit", "scope"), [("pivotd.service", "--system"), ("pivotd-user.service", "--user")])
def test_unit_verifies_without_warnings(tmp_path: Path, unit: str, scope: str) -> None:
    assert analyze is not None
    pivotd = Path(sys.executable).parent / "pivotd"
    text = (UNITS / unit).read_text()
    # verify fails when ExecStart's binary is missing: point it at this environment's pivotd.
    lines = [f"ExecStart={pivotd}" if line.startswith("ExecStart=") else line for line in text.splitlines()]
    (tmp_path / "pivotd.service").write_text("\n".join(lines) + "\n")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    result = subprocess.run(
        [analyze, scope, "verify", str(tmp_path / "pivotd.service")],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )
    # verify exits 0 on unknown keys and bad values, only warning: any output is a failure.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_units_are_notify_with_watchdog_and_restart() -> None:
    for unit in ("pivotd.service", "pivotd-user.service"):
        text = (UNITS / unit).read_text()
        for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "StateDirectory=pivot", "KillMode=mixed",
                     "UMask=0077", f"RestartPreventExitStatus={EXIT_CONFIG} {EXIT_REFUSED}"):  # fmt: skip
            assert line in text, (unit, line)
    system = "\n".join(line for line in (UNITS / "pivotd.service").read_text().splitlines() if not line.startswith("#"))
    assert "PrivateDevices" not in system and "DevicePolicy" not in system  # training must see /dev/nvidia*


def test_env_example_lists_every_setting() -> None:
    example = (UNITS / "pivotd.env.example").read_text()
    for name in Settings.model_fields:
        assert f"{ENV_PREFIX}{name.upper()}=" in example, name
