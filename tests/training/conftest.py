from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.daemon import RunningDaemon
from tests.training.helpers import DAEMON_SETTINGS


@pytest.fixture(autouse=True)
def ready_fork_server(fork_server: None) -> None:
    """The runs of these tests are forked from a server that is ready, as on a daemon that has trained before."""


@pytest.fixture(scope="module")
def daemon_settings() -> dict[str, Any]:
    """Daemons whose workers use one thread each (two cores are shared by everything here)."""
    return DAEMON_SETTINGS


@pytest.fixture
async def http(daemon: RunningDaemon) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as client:
        yield client
