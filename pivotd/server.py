"""uvicorn embedded programmatically, with systemd readiness, watchdog and a graceful stop.

READY=1 is sent only after the lifespan opened the store and the socket listens. On SIGTERM or
SIGINT the daemon stops accepting, closes WebSockets with 1001, lets open requests finish (their
writes commit), flushes the writer and exits 0 within `shutdown_timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Generator
from types import FrameType

import uvicorn
from fastapi import FastAPI

from pivotd.services import Services
from pivotd.settings import Settings
from pivotd.systemd_notify import notify, watchdog_interval
from shared.locations import DAEMON_FILE

log = logging.getLogger(__name__)
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def uvicorn_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="auto",  # uvloop where installed
        http="auto",  # httptools where installed
        ws="auto",
        lifespan="on",
        log_config=None,
        access_log=settings.access_log,
        server_header=False,
        # uvicorn would otherwise take the client address from X-Forwarded-For when the peer is 127.0.0.1 (or
        # $FORWARDED_ALLOW_IPS): a remote client could claim to be loopback, the owner, or dodge its rate limit.
        proxy_headers=False,
        timeout_graceful_shutdown=int(max(1, settings.shutdown_timeout_s)),
        ws_max_size=settings.max_body_bytes,
    )


class PivotServer(uvicorn.Server):
    def __init__(
        self,
        app: FastAPI,
        settings: Settings,
        on_ready: Callable[[str], Awaitable[None]] | None = None,
        handle_signals: bool = True,
    ) -> None:
        super().__init__(uvicorn_config(app, settings))
        self._handle_signals = handle_signals
        self.app = app
        self.settings = settings
        self.url: str | None = None
        self._on_ready = on_ready
        self._background: set[asyncio.Task[None]] = set()

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        self.url = f"http://{host}:{port}"
        self._announce()
        log.info("pivotd listening on %s (data in %s)", self.url, self.settings.data_dir)
        self.services.supervisor.attach(self.url)  # workers report to this URL; queued runs start now
        notify(f"READY=1\nSTATUS=listening on {self.url}")
        interval = watchdog_interval()
        if interval:
            self._spawn(self._watchdog(interval))
        if self._on_ready is not None:
            self._spawn(self._on_ready(self.url))

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        notify("STOPPING=1")
        for server in self.servers:  # stop accepting before saying goodbye to WebSocket clients
            server.close()
        for task in self._background:
            task.cancel()
        await self.services.hub.close_all(1001)
        await super().shutdown(sockets)
        with contextlib.suppress(FileNotFoundError):
            (self.settings.data_dir / DAEMON_FILE).unlink()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn re-raises the signal after shutting down, which would end the process with
        # 128+signal; a clean, finished shutdown should exit 0, so handlers are restored only.
        # An embedded server (tests) leaves the host program's handlers alone.
        if not self._handle_signals:
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            log.info("received %s, shutting down", signal.Signals(sig).name)
        super().handle_exit(sig, frame)

    def _announce(self) -> None:
        """Write `daemon.json` so local clients (SDK, TUI) find this daemon without configuration."""
        path = self.settings.data_dir / DAEMON_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"url": self.url, "pid": os.getpid()}))
        temporary.replace(path)

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watchdog(self, interval: float) -> None:
        # Pinged from the event loop, and only while the writer lives: a wedged loop or a dead
        # store stops the pings and systemd restarts the daemon.
        while True:
            if self.services.store.writer.alive:
                notify("WATCHDOG=1")
            await asyncio.sleep(interval)
