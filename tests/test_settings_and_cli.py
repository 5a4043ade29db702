"""Settings precedence and errors, the pivotd command line, and systemd notification."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pivotd.settings import Settings, SettingsError, load_settings
from shared import __version__
from tests.daemon import start_daemon_process


def test_precedence_defaults_file_environment_flags(tmp_path: Path) -> None:
    config = tmp_path / "pivotd.toml"
    config.write_text('[pivotd]\nport = 9001\nmax_runs = 7\nlog_level = "debug"\n')
    settings = load_settings(config, {"port": 9003}, environ={"PIVOT_PORT": "9002", "PIVOT_MAX_RUNS": "8"})
    assert settings.port == 9003  # flag beats environment beats file
    assert settings.max_runs == 8  # environment beats file
    assert settings.log_level == "debug"  # file beats default
    assert settings.max_steps_per_run == Settings().max_steps_per_run


def test_state_directory_under_systemd_and_xdg(tmp_path: Path) -> None:
    assert load_settings(environ={"STATE_DIRECTORY": str(tmp_path / "s")}).data_dir  # read at load time
    os.environ["STATE_DIRECTORY"] = f"{tmp_path}/sd:{tmp_path}/other"
    try:
        assert Settings().data_dir == tmp_path / "sd"
    finally:
        del os.environ["STATE_DIRECTORY"]


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"PIVOT_PORT": "eighty"}, "PIVOT_PORT (from environment)"),
        ({"PIVOT_MAX_RUNS": "0"}, "PIVOT_MAX_RUNS"),
        ({"PIVOT_LOG_LEVEL": "chatty"}, "PIVOT_LOG_LEVEL"),
        ({"PIVOT_TRUST_LOOPBACK": "perhaps"}, "PIVOT_TRUST_LOOPBACK"),
    ],
)
def test_bad_environment_names_the_variable(environ: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_settings(environ=environ)


def test_bad_config_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("port = = 1")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(broken, environ={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match=f"prot \\(from {unknown}\\)"):
        load_settings(unknown, environ={})
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "missing.toml", environ={})


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pivotd.cli", *args], capture_output=True, text=True, timeout=60)


def test_version_and_help() -> None:
    assert run_cli("--version").stdout.strip() == f"pivotd {__version__}"
    usage = run_cli("--help").stdout
    for flag in ("--host", "--port", "--data-dir", "--config", "--log-level", "--version"):
        assert flag in usage


def test_invalid_settings_exit_2_with_the_reason(tmp_path: Path) -> None:
    result = run_cli("--port", "70000", "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "port" in result.stderr


def test_refuses_non_loopback_without_a_token(tmp_path: Path) -> None:
    (tmp_path / "token").mkdir()  # a token that cannot be read or created, even by root
    result = run_cli("--host", "0.0.0.0", "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "refusing to listen" in result.stderr


def test_port_in_use_fails_cleanly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("--port", str(taken.getsockname()[1]), "--data-dir", str(tmp_path))
    assert result.returncode == 1 and "address already in use" in result.stderr.lower()


def test_under_systemd_notify_ready_watchdog_stopping_and_journald_format(tmp_path: Path) -> None:
    """What a systemd unit sees, from one daemon: READY=1, WATCHDOG=1 and STOPPING=1 on $NOTIFY_SOCKET, and log
    lines with journald's priority prefixes since $JOURNAL_STREAM says stderr is the journal."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        address = str(tmp_path / "notify.sock")
        listener.bind(address)
        listener.settimeout(30)
        daemon = start_daemon_process(
            tmp_path / "state",
            env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000", "JOURNAL_STREAM": "8:1234"},
        )
        try:
            ready = listener.recv(4096).decode()
            assert ready.startswith("READY=1") and daemon.url in ready
            assert listener.recv(4096) == b"WATCHDOG=1"
            daemon.signal(signal.SIGTERM)
            messages = []
            while b"STOPPING=1" not in messages:
                messages.append(listener.recv(4096))
        finally:
            assert daemon.wait() == 0
    listening = next(line for line in daemon.lines if "listening on" in line)
    assert listening.startswith("<6>pivotd.server: ")
