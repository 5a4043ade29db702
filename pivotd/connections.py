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

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


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
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:  # None or the old cycle: an upgrade, or a 400
            cycle.transport = OneWriteResponses(self.transport, cycle)  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        idle = not self.pipeline  # a pipelined request already has its headers
        super().on_response_complete()
        if idle:
            self.waiting_since = self.loop.time()


class OneWriteResponses:
    """The transport as one request's cycle sees it: a response head is held back until its body's first bytes,
    and both leave in one write.

    uvicorn writes the head of a response as soon as the app starts it, then the body: two `send` calls for
    every response. On loopback each `send` runs the receiver's side of TCP too, while holding the GIL (uvloop
    does not release it): the head's write alone was a fifth of the daemon's samples under single-step ingest.
    Only a head with a non-zero `Content-Length` is held, so a body is sure to follow: chunked streams (SSE,
    exports) and empty or HEAD responses are written as before.
    """

    __slots__ = ("_cycle", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self._transport = transport
        self._cycle = cycle
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
            return
        cycle = self._cycle
        if (
            cycle.response_started
            and not cycle.response_complete
            and cycle.chunked_encoding is False
            and cycle.expected_content_length > 0
            and cycle.scope["method"] != "HEAD"
        ):
            self._held = data  # the head: `send` writes it as the last thing it does for `http.response.start`
            return
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._held = None  # a response cut short before its body: the client sees the connection close
        self._transport.close()


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
