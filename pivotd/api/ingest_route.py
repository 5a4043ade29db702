"""`POST /api/v1/metrics/layerwise` answered as plain ASGI, in front of FastAPI's routing.

The single-step route is the daemon's hottest path: a training script posts every step. FastAPI's per-request
machinery (routing through the included routers, a `Request`, dependency resolution, a `Response` object and the
exception middleware's send wrappers) cost about as much as validating a 3-layer step. This route answers the
common request itself: a POST with `Content-Type: application/json` and a `Content-Length` within the limit.
It shares its validation, ingest and error rendering with the FastAPI route (`pivotd.api.layerwise.accept_step`),
which stays in the OpenAPI document and answers every other request to the path (chunked or over-long bodies,
other media types: the 400/413/415 of `pivotd.api.body`).

It stands in two places. `OwnerIngestFront` is the application's entry (`PivotApp.__call__`) for this path and
takes the owner's requests (the daemon token, or a trusted local script without credentials:
`pivotd.auth.is_owner`), for whom the access middleware checks and limits nothing; the layers it skips (FastAPI's
and Starlette's entries, Starlette's error middleware and its send wrapper, FastAPI's telemetry and body-limit
middleware, the access middleware) each cost a coroutine per request.
`LayerwiseIngestRoute` sits inside the access middleware and takes everyone else's (API keys, run tokens, sessions:
scopes and rate limits checked first). Either logs and answers an unexpected error itself, as the application's
own handlers would (a 500 in the layer-wise envelope).
"""

from __future__ import annotations

import logging

import orjson
from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pivotd.api.layerwise import LAYERWISE_PATH, accept_step
from pivotd.auth import is_owner
from pivotd.errors import Family, InternalError, PivotError, render_error
from pivotd.policy import requirement

log = logging.getLogger(__name__)
_CATEGORY = requirement("POST", LAYERWISE_PATH).category
_JSON = (b"content-type", b"application/json")


def _ours(scope: Scope) -> bool:
    return scope["type"] == "http" and scope["path"] == LAYERWISE_PATH and scope["method"] == "POST"


class LayerwiseIngestRoute:
    """The route inside the access middleware: any request it let through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _ours(scope):
            await _answer(self.app, scope["app"].state, scope, receive, send)
        else:
            await self.app(scope, receive, send)


class OwnerIngestFront:
    """The route in front of the whole application (`app`: all of it, FastAPI's own entry included): the owner's
    requests. `state`: the application's."""

    def __init__(self, app: ASGIApp, state: State, token: str, trust_loopback: bool) -> None:
        self.app = app
        self._state = state
        self._token = token.encode()
        self._trust_loopback = trust_loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _ours(scope) and is_owner(scope, self._token, self._trust_loopback):
            await _answer(self.app, self._state, scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def _answer(app: ASGIApp, state: State, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a single-step POST, or hand it to `app` (the FastAPI route's body checks) if it is not plain JSON."""
    services = state.services
    length = _plain_json_length(scope["headers"])
    if length is None or length > services.settings.max_body_bytes:
        await app(scope, receive, send)  # the route's body checks answer these
        return
    body = await _read(receive)
    if body is None:  # the client went away
        return
    status = 202
    try:
        content = await accept_step(services, body)
    except PivotError as error:
        status, content = _refusal(state, error)
    except Exception:  # as the application's handlers would: logged once, a 500 that names nothing inside
        log.exception("unhandled error on %s %s", scope["method"], scope["path"])
        status, content = _refusal(state, InternalError("internal error; see the daemon log"))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(content)).encode()), _JSON],
        }
    )
    await send({"type": "http.response.body", "body": content})


def _refusal(state: State, error: PivotError) -> tuple[int, bytes]:
    status, document = render_error(error, Family.LAYERWISE)
    state.refusals.record(_CATEGORY, status)
    return status, orjson.dumps(document)


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
