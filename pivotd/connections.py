"""HTTP connections that cannot linger: a deadline for each request's headers, including the first.

uvicorn arms its keep-alive timer only after a response and cancels it on the first byte that arrives, so a
client that connects and sends nothing, or trickles a header a byte at a time, holds its socket (and a file
descriptor) for as long as it likes; a few thousand such clients exhaust the daemon's descriptors. Here the
clock starts when the connection opens and again after every response, and the headers must be complete
before it runs out, however the bytes arrive. WebSockets leave this protocol after their upgrade headers and
are kept alive (or dropped) by their pings.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class BoundedHttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        idle = not self.pipeline  # a pipelined request already has its headers
        super().on_response_complete()
        if idle and not self.transport.is_closing():
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self._header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _expire(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def raise_descriptor_limit() -> tuple[int, int]:
    """Lift the soft open-files limit to the hard one (often 1,024 against 524,288): each connection, WebSocket
    and SQLite file is a descriptor. Returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft, soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, hard
