"""HTTP connections that cannot linger: a deadline for each request's headers, including the first.

uvicorn arms its keep-alive timer only after a response and cancels it on the first byte that arrives, so a
client that connects and sends nothing, or trickles a header a byte at a time, holds its socket (and a file
descriptor) for as long as it likes; a few thousand such clients exhaust the daemon's descriptors. Here the
clock starts when the connection opens and again after every response, and the headers must be complete
before it runs out, however the bytes arrive. WebSockets leave this protocol after their upgrade headers and
are kept alive (or dropped) by their pings.

Each connection only notes when it started waiting (two attribute writes per request); one sweep closes the
late ones. A timer per request (call_later + cancel: 1.7 µs on uvloop) cost single-step ingest about 2%; this
costs nothing measurable (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Collection
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class BoundedHttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting_since: float | None = None
        """Loop time since which the connection owes a request's headers; None while a request is served."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting_since = self.loop.time()

    def on_headers_complete(self) -> None:
        self.waiting_since = None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        idle = not self.pipeline  # a pipelined request already has its headers
        super().on_response_complete()
        if idle:
            self.waiting_since = self.loop.time()


async def close_stalled(connections: Collection[asyncio.Protocol], header_timeout_s: float) -> None:
    """Close, until cancelled, every HTTP connection that has waited longer than `header_timeout_s` for its
    request's headers; checked every quarter of the timeout (at most every second), so a stalled connection
    lives between 1 and 1.25 times the timeout."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(min(header_timeout_s / 4, 1.0))
        late = loop.time() - header_timeout_s
        for connection in list(connections):
            if (
                isinstance(connection, BoundedHttpProtocol)
                and connection.waiting_since is not None
                and connection.waiting_since < late
                and not connection.transport.is_closing()
            ):
                connection.transport.close()


def raise_descriptor_limit() -> tuple[int, int]:
    """Lift the soft open-files limit to the hard one (often 1,024 against 524,288): each connection, WebSocket
    and SQLite file is a descriptor. Returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft, soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, hard
