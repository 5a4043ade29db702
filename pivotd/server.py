"""uvicorn embedded programmatically, with systemd readiness, watchdog and a graceful stop.

Start-up order: the data directory is claimed (one daemon per directory), the port is bound, and only then
does the lifespan open the store and recover what a previous daemon left: a daemon that cannot have the
directory or the port touches nothing. READY=1 is sent once the socket accepts. On SIGTERM or SIGINT the
daemon stops its workers while it still listens (their last reports arrive), then stops accepting, closes
WebSockets with 1001, lets open requests finish (their writes commit), flushes the writer and exits 0 within
`shutdown_timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Generator
from types import FrameType

import uvicorn
from fastapi import FastAPI

from pivotd.connections import BoundedHttpProtocol, close_stalled
from pivotd.datadir import DataDir
from pivotd.services import Services
from pivotd.settings import Settings
from pivotd.systemd_notify import notify, watchdog_interval
from pivotd.tasks import TaskSet
from pivotd.ws_protocol import PivotWebSocketProtocol

log = logging.getLogger(__name__)
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def uvicorn_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="auto",  # uvloop where installed
        http=BoundedHttpProtocol,  # httptools, with a deadline on request headers (pivotd/connections.py)
        timeout_keep_alive=settings.http_idle_timeout_s,  # type: ignore[arg-type]  # used as a float
        ws=PivotWebSocketProtocol,  # uvicorn's sans-I/O protocol, which the hub can write frames to itself
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
        data_dir: DataDir | None = None,
        on_ready: Callable[[str], Awaitable[None]] | None = None,
        handle_signals: bool = True,
    ) -> None:
        """`data_dir`: the claimed data directory; without one, `serve` claims it and releases it at the end."""
        super().__init__(uvicorn_config(app, settings))
        self.data_dir = data_dir
        self._handle_signals = handle_signals
        self.app = app
        self.settings = settings
        self.url: str | None = None
        self._on_ready = on_ready
        self._background = TaskSet()

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        claimed = self.data_dir is None
        if self.data_dir is None:
            self.data_dir = DataDir.claim(self.settings.data_dir)
        try:
            await super().serve(sockets)
        finally:
            if claimed:
                self.data_dir.release()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start-up in the order this daemon needs: bind, then the lifespan, then accept."""
        assert self.data_dir is not None and self.data_dir.held
        config = self.config
        loop = asyncio.get_running_loop()

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state, _loop=_loop
            )

        try:
            server = await loop.create_server(
                create_protocol, host=config.host, port=config.port, backlog=config.backlog, start_serving=False
            )
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", config.host, config.port, exc.strerror or exc)
            sys.exit(1)
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            server.close()
            sys.exit(1)
        self.servers = [server]
        await server.start_serving()
        self.started = True
        host, port = server.sockets[0].getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        self.url = f"http://{host}:{port}"
        self.data_dir.announce(self.url)
        self._background.spawn(close_stalled(self.server_state.connections, self.settings.http_header_timeout_s))
        log.info("pivotd listening on %s (data in %s)", self.url, self.settings.data_dir)
        self.services.supervisor.attach(self.url)  # workers report to this URL; queued runs start now
        notify(f"READY=1\nSTATUS=listening on {self.url}")
        interval = watchdog_interval()
        if interval:
            self._background.spawn(self._watchdog(interval))
        if self._on_ready is not None:
            self._background.spawn(self._on_ready(self.url))

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        notify("STOPPING=1")
        # Runs end first, while the port is open: a worker sends its last measures and its end as it stops.
        await self.services.supervisor.stop()
        for server in self.servers:  # stop accepting before saying goodbye to WebSocket clients
            server.close()
        self._background.cancel()
        await self.services.hub.close_all(1001)
        await super().shutdown(sockets)

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

    async def _watchdog(self, interval: float) -> None:
        # Pinged from the event loop, and only while the writer lives: a wedged loop or a dead
        # store stops the pings and systemd restarts the daemon.
        while True:
            if self.services.store.writer.alive:
                notify("WATCHDOG=1")
            await asyncio.sleep(interval)
