"""Authentication, authorisation and rate limits for every route family (api-map section 4), in one
pure ASGI middleware (BaseHTTPMiddleware would cost ingest throughput).

Who is asking: the daemon token (the `token` file in the state dir) is the owner, with every scope and
no rate limit. A loopback peer without credentials is the owner too, unless `trust_loopback = false`,
provided the request names a local host (`Host`, and `Origin` if sent: localhost, 127.0.0.1 or [::1]), so
that a web page in a local browser does not get the owner's access (cross-site requests, DNS rebinding).
A named API key (`pivotd.apikeys`) has its scopes and its own rate limits. Credentials that are presented
are always checked, from loopback too: a wrong one is 401, so a read key tried locally is really only
read. Anyone else is anonymous: 401, counted against their address's rate limit. What a request needs
comes from `pivotd.policy`. `/health` is always open. Tokens travel as `Authorization: Bearer <token>`
(WebSocket clients that cannot set headers may pass `?token=`, or phoenix.js's `authToken` subprotocol),
are compared in constant time and are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import ipaddress
import logging
import os
import secrets
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pivotd.apikeys import SCOPES, KeyRing, granted
from pivotd.errors import Forbidden, PivotError, RateLimited, Unauthorized, family_for_path, render_error
from pivotd.policy import Category, requirement
from pivotd.ratelimit import Decision, RateLimiter
from shared.locations import TOKEN_FILE

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/health"})
CLOSE_KEY_REVOKED, KEY_REVOKED = 1008, "API key revoked"  # policy violation (RFC 6455)
REVOKED_DISCONNECT: Message = {"type": "websocket.disconnect", "code": CLOSE_KEY_REVOKED, "reason": KEY_REVOKED}


def ensure_token(data_dir: Path) -> str:
    """Read the daemon's token, creating it with mode 0600 on first start."""
    path = data_dir / TOKEN_FILE
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # O_EXCL + 0600 from the start: the token is never readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    log.info("created a new API token in %s", path)
    return token


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


NOT_BEARER = ""
"""What an Authorization header in another scheme (Basic, Token) presents: credentials, never valid ones."""


LOCAL_HOSTNAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _hostname(url: bytes) -> str | None:
    """`//127.0.0.1:8000` -> `127.0.0.1`, `http://[::1]:8000` -> `::1`, lowercased; None when there is none."""
    try:
        return urlsplit(url.decode("latin-1")).hostname
    except ValueError:
        return None


def _named_locally(scope: Scope) -> bool:
    """Whether a request could only have come from a local program, not a web page in a local browser.
    A page can send requests to 127.0.0.1 from the user's browser: cross-site, its `Origin` names the
    page's site; through DNS rebinding (its own name resolving to 127.0.0.1), `Host` names that site."""
    named_host = False
    for name, value in scope.get("headers", ()):
        if name == b"host":
            if _hostname(b"//" + value) not in LOCAL_HOSTNAMES:
                return False
            named_host = True
        elif name == b"origin" and _hostname(value) not in LOCAL_HOSTNAMES:
            return False
    return named_host


PHOENIX_TOKEN_PROTOCOL = "base64url.bearer.phx."
"""phoenix.js's `authToken` option offers the subprotocols `phoenix` and this prefix + the encoded token."""
_URLSAFE = str.maketrans("-_", "+/")


def _phoenix_token(encoded: str) -> str:
    """The token in phoenix.js's subprotocol: base64 without padding (URL-safe in name; phoenix.js 1.8 uses
    `btoa`, so standard alphabet in fact: both are read). Undecodable text is presented as is (then a 401)."""
    try:
        return base64.b64decode(encoded.translate(_URLSAFE) + "=" * (-len(encoded) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return encoded


def _presented_token(scope: Scope) -> str | None:
    """The token the request presents; None when it presents none. Any Authorization header counts as
    presented, so `Basic ...` from loopback is a 401, not the owner."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
            return NOT_BEARER
    if scope["type"] == "websocket":
        for protocol in scope.get("subprotocols", ()):
            if protocol.startswith(PHOENIX_TOKEN_PROTOCOL):
                return _phoenix_token(protocol.removeprefix(PHOENIX_TOKEN_PROTOCOL))
        tokens = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        if tokens:
            return tokens[0]
    return None


@dataclass(frozen=True, slots=True)
class Principal:
    grants: frozenset[str]
    key_id: str | None  # the API key it authenticated with, whose rate limits apply; None: the owner, not limited


OWNER = Principal(frozenset(SCOPES), None)


class AccessMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        token: str,
        trust_loopback: bool,
        keys: KeyRing,
        limiter: RateLimiter,
        telemetry_max_body_bytes: int,
    ) -> None:
        self.app = app
        self._token = token.encode()
        self._trust_loopback = trust_loopback
        self._keys = keys
        self._limiter = limiter
        self._telemetry_max_body_bytes = telemetry_max_body_bytes

    def _principal(self, scope: Scope, presented: str | None) -> Principal | None:
        if presented is None:
            client = scope.get("client")
            trusted = self._trust_loopback and client is not None and is_loopback(client[0]) and _named_locally(scope)
            return OWNER if trusted else None
        if presented == NOT_BEARER:
            return None
        if hmac.compare_digest(presented.encode(), self._token):
            return OWNER
        key = self._keys.authenticate(presented)
        return Principal(granted(key.scopes), key.key_id) if key is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        presented = _presented_token(scope)
        principal = self._principal(scope, presented)
        if principal is OWNER:  # the hot path of local training scripts and benchmarks: nothing more to do
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["type"] == "http" else "GET"
        need = requirement(method, scope["path"])
        error: PivotError | None = None
        if principal is None:
            if presented is None:
                error = Unauthorized("a valid bearer token or API key is required (Authorization: Bearer <token>)")
            elif presented == NOT_BEARER:
                error = Unauthorized("bearer token required: send Authorization: Bearer <token>")
            else:
                error = Unauthorized("the bearer token or API key is not valid")
        elif need.scope not in principal.grants:
            error = Forbidden(
                f"this API key lacks the {need.scope!r} scope that {method} {scope['path']} needs",
                details={"required_scope": need.scope, "granted_scopes": sorted(principal.grants)},
            )
        key_id = principal.key_id if principal else None
        counted = need.category is Category.TELEMETRY and self._limiter.limit(need.category) > 0
        cost = 1
        if error is None and counted and key_id is not None and scope["type"] == "http":
            cost, receive = await _count_events(receive, self._telemetry_max_body_bytes)
        if key_id is not None:
            decision = self._limiter.take_for_key(key_id, need.category, cost)
        else:  # anonymous: every refusal counts against the address, which bounds guessing
            client = scope.get("client")
            decision = self._limiter.take_for_address(client[0] if client else None, need.category, cost)
        if decision is not None and not decision.allowed:
            error = RateLimited(
                f"rate limit of {decision.limit} {_unit(need.category)} per minute exceeded for "
                f"{need.category} requests; retry in {decision.retry_after} s",
                details={"category": str(need.category), "limit": decision.limit, "retry_after": decision.retry_after},
            )
        if error is not None:
            await _refuse(scope, send, error, decision)
        elif scope["type"] == "websocket" and key_id is not None:
            await self._while_key_lives(key_id, scope, receive, send)
        else:
            if decision is not None and scope["type"] == "http":
                send = _with_headers(send, decision)
            if key_id is not None and method == "GET":  # only GETs stream (SSE, exports)
                await self._stream_while_key_lives(key_id, scope, receive, send)
            else:
                await self.app(scope, receive, send)

    async def _while_key_lives(self, key_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a WebSocket opened with an API key until the key is revoked, then close it with 1008 at once:
        the route, waiting for a client frame, is told the client left (so it stops, whatever it was
        doing), what it still sends is dropped, and the close goes out with the reason."""
        revoked = asyncio.Event()
        cancel = self._keys.on_revoke(key_id, revoked.set)
        accepted = closed = False

        async def until_revoked() -> Message:
            if not accepted:  # the handshake's own messages: before the route accepted, nothing to close yet
                return await receive()
            return await _receive_unless(receive, revoked, REVOKED_DISCONNECT)

        async def unless_revoked(message: Message) -> None:
            nonlocal accepted, closed
            if revoked.is_set() and accepted:
                return
            accepted = accepted or message["type"] == "websocket.accept"
            closed = closed or message["type"] == "websocket.close"
            await send(message)

        try:
            await self.app(scope, until_revoked, unless_revoked)
        finally:
            cancel()
        if revoked.is_set() and accepted and not closed:
            with contextlib.suppress(OSError, RuntimeError):  # the peer may have gone meanwhile
                await send({"type": "websocket.close", "code": CLOSE_KEY_REVOKED, "reason": KEY_REVOKED})

    async def _stream_while_key_lives(self, key_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a GET made with an API key. If the key is revoked while the response is an event stream (an
        SSE feed that would run until its run ends), the route is told the client left and the stream ends
        at once with a comment saying why. Other responses complete: cutting a download short would end it
        as cleanly as a whole one, and the client could not tell."""
        cut = asyncio.Event()  # revoked, and the response is an event stream
        revoked = finished = event_stream = False

        def on_revoke() -> None:
            nonlocal revoked
            revoked = True
            if event_stream:
                cut.set()

        cancel = self._keys.on_revoke(key_id, on_revoke)

        async def until_cut() -> Message:
            return await _receive_unless(receive, cut, {"type": "http.disconnect"})

        async def watching(message: Message) -> None:
            nonlocal finished, event_stream
            if message["type"] == "http.response.start":
                event_stream = any(
                    name.lower() == b"content-type" and value.startswith(b"text/event-stream")
                    for name, value in message.get("headers", ())
                )
                if event_stream and revoked:  # revoked while the route was still reading history
                    cut.set()
            elif message["type"] == "http.response.body":
                finished = not message.get("more_body", False)
            await send(message)

        try:
            await self.app(scope, until_cut, watching)
        finally:
            cancel()
        if cut.is_set() and not finished:  # end the stream the route abandoned, with an SSE comment
            with contextlib.suppress(OSError, RuntimeError):  # the peer may have gone meanwhile
                await send({"type": "http.response.body", "body": b": " + KEY_REVOKED.encode() + b"\n\n"})


async def _receive_unless(receive: Receive, event: asyncio.Event, instead: Message) -> Message:
    """The client's next message, or `instead` as soon as `event` is set: the route is told the client left."""
    receiving = asyncio.ensure_future(receive())
    setting = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({receiving, setting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        setting.cancel()
        receiving.cancel()  # no-op when it is done
    return instead if event.is_set() else receiving.result()


def _unit(category: Category) -> str:
    return "events" if category is Category.TELEMETRY else "requests"


def _with_headers(send: Send, decision: Decision) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *decision.headers()]}
        await send(message)

    return send_with_headers


async def _count_events(receive: Receive, max_bytes: int) -> tuple[int, Receive]:
    """Events in a telemetry batch (`{"events": [...]}`), read ahead and replayed to the route. Only
    rate-limited clients pay for this parse, and they send at most their limit of events a minute."""
    messages: list[Message] = []
    size = 0
    complete = False
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if size > max_bytes:
            break  # the route answers 413; charged as a whole allowance, below
        if not message.get("more_body", False):
            complete = True
            break
    # Unknown size (past the route's own cap): charge the most a batch can cost, so no body escapes the limit.
    count = sys.maxsize
    if complete:
        try:
            document = orjson.loads(b"".join(m.get("body", b"") for m in messages))
        except orjson.JSONDecodeError:
            document = None  # the route answers 400
        events = document.get("events") if isinstance(document, dict) else None
        count = len(events) if isinstance(events, list) else 1
    pending = deque(messages)

    async def replay() -> Message:
        return pending.popleft() if pending else await receive()

    return count, replay


async def _refuse(scope: Scope, send: Send, error: PivotError, decision: Decision | None) -> None:
    status, document = render_error(error, family_for_path(scope["path"]))
    body = orjson.dumps(document)
    headers = [(b"content-type", b"application/json"), *(decision.headers() if decision else ())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="pivotd"'))
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    # WebSocket: refuse the handshake with a real status where the server supports it.
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})
