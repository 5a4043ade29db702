"""Real pivotd instances for tests: in-process on a loopback port, or as a subprocess for signal tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from pivotd.app import create_app
from pivotd.monitor.nvml import Nvml
from pivotd.server import PivotServer
from pivotd.services import Services
from pivotd.settings import Settings

PLAIN_HTTP = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
"""TLS for clients of the tests' plain-http daemons: none. httpx's default loads the CA bundle for each client (30-90
ms of CPU, a few hundred clients a run); this context trusts no certificate, so it would refuse any https server."""


def daemon_client(url: str, **kwargs: Any) -> httpx.AsyncClient:
    """An HTTP client of a test daemon at `url` (plain http, `PLAIN_HTTP`)."""
    return httpx.AsyncClient(base_url=url, verify=PLAIN_HTTP, **kwargs)


TEST_TOKEN = "test-token-0123456789"


@dataclass
class RunningDaemon:
    url: str
    settings: Settings
    app: FastAPI
    server: PivotServer

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/ws"

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services


class _PromptUvicorn(uvicorn.Server):
    """uvicorn's Server with its fixed waits cut short: its main loop looks at `should_exit` every 0.1 s, and its
    shutdown sleeps 0.1 s after asking connections to close, then polls them every 0.1 s. Together that cost each
    of the suite's few hundred daemons about 150 ms. PromptServer puts this class between PivotServer and uvicorn's
    Server, so PivotServer's own start-up and shutdown steps run unchanged around it."""

    _exit: asyncio.Event | None = None

    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return self._exit is not None and self._exit.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if self._exit is None:
            self._exit = asyncio.Event()
        if value:
            self._exit.set()
        else:
            self._exit.clear()

    async def main_loop(self) -> None:
        """uvicorn's main loop (a tick every 0.1 s: the Date header, max-requests), waking at once to exit."""
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            assert self._exit is not None  # uvicorn.Server.__init__ set the flag
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, in its order (stop accepting, ask connections to close, wait for them and their
        tasks up to the graceful timeout, then the lifespan's shutdown), looking every 5 ms instead of 0.1 s."""
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                while (state.connections or state.tasks) and not self.force_exit:
                    await asyncio.sleep(0.005)
        except TimeoutError:
            for task in state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()


class PromptServer(PivotServer, _PromptUvicorn):
    """PivotServer on `_PromptUvicorn`: PivotServer's `super()` calls reach the prompt versions."""


@asynccontextmanager
async def running_daemon(data_dir: Path, nvml: Nvml | None = None, **overrides: Any) -> AsyncIterator[RunningDaemon]:
    """A real pivotd (uvicorn, SQLite file, hub) serving on 127.0.0.1 with a free port. `nvml`: the NVML seam
    (a stand-in `pynvml` for a GPU this machine lacks, `Nvml(None)` for none); unset, the machine's own."""
    settings = Settings(data_dir=data_dir, config_dir=data_dir / "config", **{"port": 0, **overrides})
    app = create_app(settings, settings.token or TEST_TOKEN, nvml)
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_ready(url: str) -> None:
        ready.set_result(url)

    server = PromptServer(app, settings, on_ready=on_ready, handle_signals=False)
    task = asyncio.create_task(server.serve())
    done, _ = await asyncio.wait({ready, task}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        task.cancel()
        raise RuntimeError(f"pivotd did not become ready: {task.exception() if task.done() else 'timeout'}")
    try:
        yield RunningDaemon(ready.result(), settings, app, server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)


@dataclass
class DaemonProcess:
    """`pivotd` as its own process, for SIGKILL/SIGTERM tests."""

    proc: subprocess.Popen[str]
    url: str
    reader: threading.Thread
    lines: list[str] = field(default_factory=list)
    said: threading.Condition = field(default_factory=threading.Condition)
    """Notified by the log reader after each line it adds to `lines`."""

    def wait_for_line(self, text: str, timeout: float = 30) -> bool:
        """Whether a log line containing `text` was written, waiting for it up to `timeout`."""
        with self.said:
            return self.said.wait_for(lambda: any(text in line for line in self.lines), timeout)

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout)  # the log reader sees EOF once the process is gone
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
        self.wait(10)


def start_daemon_process(
    data_dir: Path, *extra: str, env: dict[str, str] | None = None, shell_setup: str | None = None
) -> DaemonProcess:
    """Start `python -m pivotd.cli` and wait for its 'listening on' line (no polling, no sleeps).
    `shell_setup` runs first in the same process, as a shell would (`umask 022; ulimit -Sn 256`)."""
    command = [sys.executable, "-m", "pivotd.cli", "--port", "0", "--data-dir", str(data_dir), *extra]
    if shell_setup is not None:
        command = ["sh", "-c", f'{shell_setup}; exec "$@"', "sh", *command]
    proc = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stderr is not None
    lines: list[str] = []
    url: list[str] = []
    found = threading.Event()
    said = threading.Condition()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with said:
                lines.append(line)
                said.notify_all()
            if not url and "pivotd listening on " in line:
                url.append(line.split("pivotd listening on ", 1)[1].split()[0])
                found.set()
        found.set()  # stream closed: the process ended

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not found.wait(30) or not url:
        proc.kill()
        raise RuntimeError("pivotd did not start:\n" + "".join(lines))
    return DaemonProcess(proc, url[0], reader, lines, said)


def iter_routes(app: FastAPI) -> list[Any]:
    """Every route of the app; FastAPI keeps included routers' routes behind a wrapper object."""
    found: list[Any] = []
    pending = list(app.routes)
    while pending:
        route = pending.pop(0)
        original = getattr(route, "original_router", None)
        if original is not None:
            pending.extend(original.routes)
        else:
            found.append(route)
    return found
