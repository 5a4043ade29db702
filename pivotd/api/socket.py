"""WebSocket `/socket/websocket`: the Phoenix Channels socket (pivotd/channels has the protocol).

`new Socket("ws://host:port/socket", {params: {token}})` from the npm `phoenix` client connects here
unchanged: it appends `/websocket?token=...&vsn=2.0.0`. The token is checked by the auth middleware like
any other `?token=`. Text frames only: the v2 binary serializer is refused by closing with 1003. A client
that sends nothing for `socket_idle_timeout_s` (it heartbeats every 30 s) is closed with 1000.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from pivotd.api.responses import json_response
from pivotd.channels.protocol import (
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CLOSE_UNSUPPORTED_DATA,
    FrameError,
    negotiate,
)
from pivotd.channels.session import ChannelSession
from pivotd.errors import ValidationFailed, family_for_path, render_error
from pivotd.services import Services

router = APIRouter()
log = logging.getLogger(__name__)


async def _refuse(websocket: WebSocket, message: str) -> None:
    """Refuse the handshake: a 422 naming the problem where the server can send one, else close 1008."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        status, body = render_error(ValidationFailed(message), family_for_path(websocket.url.path))
        await websocket.send_denial_response(json_response(body, status_code=status))
    else:
        await websocket.close(CLOSE_POLICY_VIOLATION, message[:123])


@router.websocket("/socket/websocket")
async def phoenix_socket(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    vsn = websocket.query_params.get("vsn")
    serializer = negotiate(vsn)
    if serializer is None:
        await _refuse(websocket, f"vsn: unsupported serializer version {vsn!r} (1.0.x or 2.0.x)")
        return
    # Phoenix's `authToken` option offers the `phoenix` subprotocol; a browser drops a socket that does not
    # get it back.
    await websocket.accept(subprotocol="phoenix" if "phoenix" in websocket.scope.get("subprotocols", ()) else None)
    session = ChannelSession(websocket, services, serializer)
    pump = asyncio.create_task(session.pump(), name="phoenix-socket-pump")
    closing: tuple[int, str] | None = None
    try:
        while closing is None:
            try:
                message = await asyncio.wait_for(websocket.receive(), services.settings.socket_idle_timeout_s)
            except TimeoutError:
                closing = (CLOSE_NORMAL, "heartbeat timeout")
                break
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                closing = (CLOSE_UNSUPPORTED_DATA, "binary frames are not supported: use the JSON serializer")
                break
            try:
                frame = serializer.decode(text)
            except FrameError as exc:
                log.debug("closing a /socket/websocket connection after a bad frame: %s", exc)
                closing = (exc.code, f"bad frame: {exc}")
                break
            await session.handle(frame)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the peer went away mid-send; nothing to tell it
    finally:
        services.hub.disconnect(session.subscriber)
        # The pump goes first: it may be blocked sending to the client this close is about.
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError):
            await pump
        if closing is not None:
            await session.close(*closing)
