"""Fixtures for the SDK tests: an environment that never reaches a developer's own daemon, small models."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests.sdk.capture import capture_layerwise_bodies


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """URL and token only from the test's arguments: no PIVOT_* variables, no local daemon.json/token."""
    for name in ("PIVOT_URL", "PIVOT_TOKEN", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


@pytest.fixture
def free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Layer-wise bodies as the sender thread builds them (the transport still delivers them)."""
    return capture_layerwise_bodies(monkeypatch)
