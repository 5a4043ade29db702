from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.daemon import RunningDaemon, running_daemon
from tests.training.helpers import DAEMON_SETTINGS


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    """A daemon whose workers use one thread each (two cores are shared by everything here)."""
    async with running_daemon(tmp_path / "state", **DAEMON_SETTINGS) as running:
        yield running


@pytest.fixture
async def http(daemon: RunningDaemon) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as client:
        yield client
