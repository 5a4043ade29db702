"""uvicorn's sans-I/O WebSocket protocol, plus a way for the hub to write frames to a connection itself.

Through ASGI every message costs a `websocket.send` through the middleware's send wrappers, Starlette's
`WebSocket`, and uvicorn's framing (and permessage-deflate, per connection, when the client offered it: browsers
and the websockets client do), then its own socket write: about 30 us per message and connection on the
development VM, so 200 `/ws` subscribers cost a 3-layer step about six times what ingesting it does
(docs/performance.md, "Fan-out"). This protocol puts a `FrameSink` in each upgraded connection's ASGI scope
(`scope["extensions"][FRAMES_EXTENSION]`): the hub writes pre-encoded frames, shared by every connection,
straight to the transport, everything a connection has queued in one write per flush (`pivotd.hub.Hub.attach`).
The app's own sends (replies, histories, the close) still go through ASGI; both write whole frames
synchronously to the same transport, so frames never interleave. Under another server (a test
client) the extension is absent and the app reads its mailbox with a task, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from pivotd.hub import FRAMES_EXTENSION


class _Sink:
    """The `pivotd.hub.FrameSink` of one connection."""

    __slots__ = ("protocol",)

    def __init__(self, protocol: PivotWebSocketProtocol) -> None:
        self.protocol = protocol

    def writable(self) -> bool:
        protocol = self.protocol
        return (
            protocol.handshake_complete
            and protocol.initial_response is None
            and not protocol.close_sent
            and not protocol.disconnected
            and protocol.writable.is_set()
            and not protocol.transport.is_closing()
        )

    def write(self, frames: list[bytes]) -> None:
        self.protocol.transport.writelines(frames)  # one writev under uvloop: no copy into one buffer first

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        self.protocol.writable_callback = callback


class PivotWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writable_callback: Callable[[], None] | None = None

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # only an accepted upgrade has one (and an ASGI task started with it)
        if scope is not None:
            scope["extensions"][FRAMES_EXTENSION] = _Sink(self)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.writable_callback is not None:
            self.writable_callback()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.writable_callback = None
