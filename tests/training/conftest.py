from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.daemon import RunningDaemon, daemon_client
from tests.training.helpers import DAEMON_SETTINGS


@pytest.fixture(scope="module")
def daemon_settings() -> dict[str, Any]:
    """Daemons whose workers use one thread each (two cores are shared by everything here)."""
    return DAEMON_SETTINGS


@pytest.fixture
async def http(daemon: RunningDaemon) -> AsyncIterator[httpx.AsyncClient]:
    async with daemon_client(daemon.url, timeout=30) as client:
        yield client
