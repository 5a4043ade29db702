"""One pivotd among several: its client, what the TUI knows of it, and, for a box reached over ssh, the tunnel.

No Textual here. `HostLink.run()` keeps one box connected until cancelled: for an ssh host it opens the tunnel
first (in a thread: ssh is a subprocess) and, whenever the socket goes offline, asks ssh whether the connection is
still up; a dropped connection is rebuilt on the same local port, with backoff, while the other boxes keep
updating. A daemon that is down behind a live tunnel is left to the socket's own reconnection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from pivot_tui.client import Connection, DaemonClient, Event
from pivot_tui.model import TuiModel
from shared.hosts import Host
from shared.tunnel import Remote, SshTunnel, TunnelError, free_port

HostEventSink = Callable[["HostLink", Event], None]
HostStateSink = Callable[["HostLink", Connection, str], None]


class HostLink:
    """A box by name: `client` talks to its daemon (rebuilt when a reopened tunnel changes its address or token),
    `model` holds its runs, resources and followed run, `active_alerts` its active alert count (None: unknown)."""

    def __init__(
        self, host: Host, *, client: DaemonClient | None = None, ssh: list[str] | None = None, max_backoff: float = 10.0
    ) -> None:
        self.host = host
        self.name = host.name
        self.model = TuiModel()
        self.active_alerts: int | None = None
        self.said = ""
        """The last reason given for this box being unreachable, so that a retry does not repeat it."""
        self.tunnel: SshTunnel | None = None
        self._max_backoff = max_backoff
        if host.ssh is not None:
            # The local port is chosen now, so the client has its address before ssh has connected.
            self.tunnel = SshTunnel(host.ssh, state_dir=host.state_dir, ssh=ssh, local_port=free_port())
            url = f"http://127.0.0.1:{self.tunnel.local_port}"
        else:
            assert host.url is not None
            url = host.url
        self.client = client or DaemonClient(url, host.token, max_backoff=max_backoff)
        self._check = asyncio.Event()
        self._opening = False
        self._closed = False

    @property
    def where(self) -> str:
        """What the user named: the ssh destination or the URL."""
        return f"ssh {self.host.ssh}" if self.host.ssh else self.client.url

    async def run(self, on_event: HostEventSink, on_state: HostStateSink) -> None:
        """Stay connected until cancelled."""

        def state(connection: Connection, detail: str) -> None:
            if connection is Connection.OFFLINE and self.tunnel is not None:
                self._check.set()  # the socket dropped: was it the ssh connection?
            on_state(self, connection, detail)

        while True:
            if self.tunnel is not None:
                await self._open_tunnel(state)
            socket = asyncio.create_task(self.client.run_forever(lambda event: on_event(self, event), state))
            try:
                await self._until_tunnel_drops()
            finally:
                socket.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await socket

    async def _until_tunnel_drops(self) -> None:
        if self.tunnel is None:
            await asyncio.Future()  # a plain URL: the socket reconnects on its own, forever
        assert self.tunnel is not None
        while True:
            self._check.clear()
            await self._check.wait()
            if not await asyncio.to_thread(self.tunnel.alive):
                return

    async def _open_tunnel(self, state: Callable[[Connection, str], None]) -> None:
        assert self.tunnel is not None
        backoff = 0.5
        while True:
            state(Connection.CONNECTING, f"ssh {self.host.ssh}")
            try:
                remote = await asyncio.to_thread(self._connect)
            except TunnelError as exc:
                state(Connection.OFFLINE, str(exc))
                await asyncio.sleep(backoff)
                backoff = min(self._max_backoff, backoff * 2)
                continue
            await self._use(remote)
            return

    def _connect(self) -> Remote:
        """In a thread: open (or, after a drop, reopen) the tunnel. The TUI may quit meanwhile; the thread then
        closes what it opened, since ssh's master would otherwise outlive the TUI."""
        assert self.tunnel is not None
        self._opening = True
        try:
            return self.tunnel.open() if self.tunnel.remote is None else self.tunnel.reopen()
        finally:
            self._opening = False
            if self._closed:
                self.tunnel.close()

    async def _use(self, remote: Remote) -> None:
        """Point the client at the tunnel's end with the token from the hosts file, else the box's own."""
        token = self.host.token or remote.token
        if remote.url != self.client.url or token != self.client.token:
            old, self.client = self.client, DaemonClient(remote.url, token, max_backoff=self._max_backoff)
            await old.aclose()

    async def aclose(self) -> None:
        """Close the client and, for an ssh box, the connection (ssh's master process exits)."""
        self._closed = True
        await self.client.aclose()
        if self.tunnel is not None and not self._opening:  # else the opening thread closes it when done
            await asyncio.to_thread(self.tunnel.close)
