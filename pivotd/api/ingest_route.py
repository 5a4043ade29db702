"""`POST /api/v1/metrics/layerwise` answered as plain ASGI, in front of FastAPI's routing.

The single-step route is the daemon's hottest path: a training script posts every step. FastAPI's per-request
machinery (routing through the included routers, a `Request`, dependency resolution, a `Response` object and the
exception middleware's send wrappers) cost about as much as validating a 3-layer step. This middleware answers
the common request itself: a POST with `Content-Type: application/json` and a `Content-Length` within the limit.
It sits inside the access middleware (keys, scopes, rate limits are checked first) and shares its
validation, ingest and error rendering with the FastAPI route (`pivotd.api.layerwise.accept_step`), which stays
in the OpenAPI document and answers every other request to the path (chunked or over-long bodies, other media
types: the 400/413/415 of `pivotd.api.body`).
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pivotd.api.layerwise import LAYERWISE_PATH, accept_step
from pivotd.errors import Family, PivotError, render_error
from pivotd.policy import requirement

_CATEGORY = requirement("POST", LAYERWISE_PATH).category
_JSON = (b"content-type", b"application/json")


class LayerwiseIngestRoute:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != LAYERWISE_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        app = scope["app"]
        services = app.state.services
        length = _plain_json_length(scope["headers"])
        if length is None or length > services.settings.max_body_bytes:
            await self.app(scope, receive, send)  # the route's body checks answer these
            return
        body = await _read(receive)
        if body is None:  # the client went away
            return
        status = 202
        try:
            content = await accept_step(services, body)
        except PivotError as error:
            status, document = render_error(error, Family.LAYERWISE)
            app.state.refusals.record(_CATEGORY, status)
            content = orjson.dumps(document)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(content)).encode()), _JSON],
            }
        )
        await send({"type": "http.response.body", "body": content})


def _plain_json_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The declared body length of a request whose media type is exactly JSON and whose length is plain; None
    for anything the FastAPI route should judge (it names what is wrong)."""
    length: int | None = None
    media = False
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit() or length is not None:
                return None
            length = int(value)
        elif name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower() == b"application/json"
        elif name == b"transfer-encoding":
            return None
    return length if media and length else None


async def _read(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
