"""Authentication, authorisation and rate limits for every route family (api-map section 4), in one
pure ASGI middleware (BaseHTTPMiddleware would cost ingest throughput).

Who is asking: the daemon token (the `token` file in the state dir) is the owner, with every scope and
no rate limit. A loopback peer without credentials is the owner too, unless `trust_loopback = false`,
provided the request names a local host (`Host`, and `Origin` if sent: localhost, 127.0.0.1 or [::1]), so
that a web page in a local browser does not get the owner's access (cross-site requests, DNS rebinding).
A named API key (`pivotd.apikeys`) has its scopes and its own rate limits. A browser session
(`pivotd.authsessions`, the `_crucible_ui_key` cookie) is its opener's scopes and limits; bearer
credentials, when a request sends both, win over the cookie. Credentials that are presented are always
checked, from loopback too: a wrong one (or an ended session) is 401, so a read key tried locally is really
only read. Anyone else is anonymous: 401, counted against their address's rate limit. What a request needs
comes from `pivotd.policy`. `/health` is always open. Tokens travel as `Authorization: Bearer <token>`
(WebSocket clients that cannot set headers may pass `?token=`, or phoenix.js's `authToken` subprotocol),
are compared in constant time and are never logged.

Browsers send cookies on their own, also on requests a page of another site makes them send: a request
judged by its cookie that could change something (any method but GET, HEAD and OPTIONS, and every WebSocket
handshake) is refused with 403 when its `Origin` is not this host (SameSite=Strict is the first defence;
this one does not depend on the browser honouring it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pivotd.apikeys import KEY_REVOKED, SCOPES, KeyRing, granted
from pivotd.authsessions import CLEARED_COOKIE, COOKIE_NAME, Session, SessionRing
from pivotd.errors import Forbidden, PivotError, RateLimited, Unauthorized, family_for_path, render_error
from pivotd.policy import SAFE_METHODS, Category, requirement
from pivotd.ratelimit import Decision, RateLimiter
from pivotd.refusals import Refusals
from pivotd.runtokens import RUN_TOKEN_PREFIX, RunTokens
from shared.locations import TOKEN_FILE

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/health"})
CLOSE_ENDED = 1008  # policy violation (RFC 6455): the credentials that opened the socket ended
ENDED_DISCONNECT: Message = {"type": "websocket.disconnect", "code": CLOSE_ENDED}
PRINCIPAL = "pivot.principal"
"""The scope key under which the middleware leaves the request's `Principal` for routes (`principal_of`)."""
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


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


@lru_cache(maxsize=1024)  # the peer's address, on every request of the owner's hot path: 2.4 us uncached
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


@lru_cache(maxsize=1024)  # the Host header, on every request of the owner's hot path: urlsplit is 1.5 us
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


def _session_cookie(scope: Scope) -> str | None:
    """The value of the request's first `_crucible_ui_key` cookie; None when it sends none."""
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            for pair in value.decode("latin-1").split(";"):
                cookie, equals, token = pair.strip().partition("=")
                if equals and cookie == COOKIE_NAME:
                    return token.strip().strip('"')
    return None


def _cross_site(scope: Scope) -> bool:
    """Whether a page of another site made the browser send this request: it has an `Origin` whose host and port
    are not those of `Host` (a port left out is the Origin scheme's default). Browsers send `Origin` on every
    request but GET and HEAD, and on every WebSocket handshake; programs that send none are not pages."""
    origins = [value for name, value in scope.get("headers", ()) if name == b"origin"]
    if not origins:
        return False
    host = next((value for name, value in scope.get("headers", ()) if name == b"host"), b"")
    try:
        here = urlsplit("//" + host.decode("latin-1"))
        for origin in origins:
            there = urlsplit(origin.decode("latin-1"))
            port = DEFAULT_PORTS.get(there.scheme)
            if there.hostname is None or (there.hostname, there.port or port) != (here.hostname, here.port or port):
                return True  # `Origin: null` (a sandboxed or privacy-stripped page) included
    except ValueError:  # a port that is not a number
        return True
    return False


@dataclass(frozen=True, slots=True)
class Principal:
    grants: frozenset[str]
    key_id: str | None  # the API key it authenticated with, whose rate limits apply; None: the owner, not limited
    session: Session | None = None  # the browser session it authenticated with
    run_id: str | None = None  # a run token's run: it may write to that run and do nothing else


OWNER = Principal(frozenset(SCOPES), None)
Watch = Callable[[Callable[[str], None]], Callable[[], None]]
"""Calls a callback with the reason once the credentials a request authenticated with end; returns the cancel."""


def principal_of(scope: Scope) -> Principal:
    """Who is asking, as the access middleware decided (routes other than /health are only reached through it)."""
    principal: Principal = scope[PRINCIPAL]
    return principal


def _trusted_local(scope: Scope, trust_loopback: bool) -> bool:
    """A request without credentials that is the owner's: from loopback, by a local program, if that is trusted."""
    client = scope.get("client")
    return trust_loopback and client is not None and is_loopback(client[0]) and _named_locally(scope)


def is_owner(scope: Scope, token: bytes, trust_loopback: bool) -> bool:
    """Whether `AccessMiddleware` takes this HTTP request for the owner's, which it lets through unchecked and
    unlimited: the daemon's token, or no credentials at all from a trusted local program. A session cookie makes
    it no owner's here (the middleware decides what the session may do)."""
    presented = _presented_token(scope)
    if presented is None:
        return _session_cookie(scope) is None and _trusted_local(scope, trust_loopback)
    return presented != NOT_BEARER and hmac.compare_digest(presented.encode(), token)


class AccessMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        token: str,
        trust_loopback: bool,
        keys: KeyRing,
        sessions: SessionRing,
        limiter: RateLimiter,
        refusals: Refusals,
        telemetry_max_body_bytes: int,
        run_tokens: RunTokens,
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self._run_tokens = run_tokens
        self._max_body_bytes = max_body_bytes
        self._token = token.encode()
        self._trust_loopback = trust_loopback
        self._keys = keys
        self._sessions = sessions
        self._limiter = limiter
        self._refusals = refusals
        self._telemetry_max_body_bytes = telemetry_max_body_bytes

    def _principal(self, scope: Scope, presented: str | None, cookie: str | None) -> Principal | None:
        if presented is None and cookie is not None:
            session = self._sessions.authenticate(cookie)
            return Principal(frozenset(session.scopes), session.key_id, session) if session is not None else None
        if presented is None:
            return OWNER if _trusted_local(scope, self._trust_loopback) else None
        if presented == NOT_BEARER:
            return None
        if hmac.compare_digest(presented.encode(), self._token):
            return OWNER
        if presented.startswith(RUN_TOKEN_PREFIX):
            run_id = self._run_tokens.run_of(presented)
            return Principal(frozenset(), None, run_id=run_id) if run_id is not None else None
        key = self._keys.authenticate(presented)
        return Principal(granted(key.scopes), key.key_id) if key is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        presented = _presented_token(scope)
        cookie = _session_cookie(scope) if presented is None else None  # bearer credentials win over the cookie
        principal = self._principal(scope, presented, cookie)
        scope[PRINCIPAL] = principal
        if principal is OWNER:  # the hot path of local training scripts and benchmarks: nothing more to do
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["type"] == "http" else "GET"
        need = requirement(method, scope["path"])
        error: PivotError | None = None
        if principal is None:
            if cookie is not None:
                error = Unauthorized(
                    "the session cookie is not valid: the session ended or expired; open a new one with "
                    "POST /api/v1/auth/session"
                )
            elif presented is None:
                error = Unauthorized("a valid bearer token or API key is required (Authorization: Bearer <token>)")
            elif presented == NOT_BEARER:
                error = Unauthorized("bearer token required: send Authorization: Bearer <token>")
            else:
                error = Unauthorized("the bearer token or API key is not valid")
        elif principal.run_id is not None:
            error, receive = await _run_token_refusal(scope, receive, principal.run_id, self._max_body_bytes)
        elif (
            principal.session is not None
            and (scope["type"] == "websocket" or method not in SAFE_METHODS)
            and _cross_site(scope)
        ):
            error = Forbidden(
                "a session cookie is not accepted on a request from another site's page: its Origin is not this "
                "host (send Authorization: Bearer instead)"
            )
        elif need.scope not in principal.grants:
            error = Forbidden(
                f"this {'session' if principal.session else 'API key'} lacks the {need.scope!r} scope that "
                f"{method} {scope['path']} needs",
                details={"required_scope": need.scope, "granted_scopes": sorted(principal.grants)},
            )
        key_id = principal.key_id if principal else None
        counted = need.category is Category.TELEMETRY and self._limiter.limit(need.category) > 0
        cost = 1
        if error is None and counted and key_id is not None and scope["type"] == "http":
            cost, receive = await _count_events(receive, self._telemetry_max_body_bytes)
        decision: Decision | None = None  # the owner's sessions, like the owner, are never limited
        if key_id is not None:
            decision = self._limiter.take_for_key(key_id, need.category, cost)
        elif principal is None:  # anonymous: every refusal counts against the address, which bounds guessing
            client = scope.get("client")
            decision = self._limiter.take_for_address(client[0] if client else None, need.category, cost)
        if decision is not None and not decision.allowed:
            error = RateLimited(
                f"rate limit of {decision.limit} {_unit(need.category)} per minute exceeded for "
                f"{need.category} requests; retry in {decision.retry_after} s",
                details={"category": str(need.category), "limit": decision.limit, "retry_after": decision.retry_after},
            )
        watch = self._watch(principal) if principal is not None else None
        if error is not None:
            self._refusals.record(need.category, error.status)
            await _refuse(scope, send, error, decision, clear_cookie=cookie is not None and principal is None)
        elif scope["type"] == "websocket" and watch is not None:
            await _while_valid(watch, self.app, scope, receive, send)
        else:
            if decision is not None and scope["type"] == "http":
                send = _with_headers(send, decision)
            if watch is not None and method == "GET":  # only GETs stream (SSE, exports)
                await _stream_while_valid(watch, self.app, scope, receive, send)
            else:
                await self.app(scope, receive, send)

    def _watch(self, principal: Principal) -> Watch | None:
        """How to learn that the credentials of a request by `principal` ended; None for the daemon token's."""
        if principal.session is not None:  # ended by logout, expiry, or its key's revocation
            return partial(self._sessions.on_end, principal.session)
        key_id = principal.key_id
        if key_id is None:
            return None
        return lambda ended: self._keys.on_revoke(key_id, partial(ended, KEY_REVOKED))


async def _while_valid(watch: Watch, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve a WebSocket opened with an API key or a session until that ends (the key revoked, the session ended
    or expired), then close it with 1008 and the reason at once: the route, waiting for a client frame, is told
    the client left (so it stops, whatever it was doing), and what it still sends is dropped."""
    ended = asyncio.Event()
    reasons: list[str] = []
    accepted = closed = False

    def end(reason: str) -> None:
        reasons.append(reason)
        ended.set()

    cancel = watch(end)

    async def until_ended() -> Message:
        if not accepted:  # the handshake's own messages: before the route accepted, nothing to close yet
            return await receive()
        return await _receive_unless(receive, ended, ENDED_DISCONNECT)

    async def unless_ended(message: Message) -> None:
        nonlocal accepted, closed
        if ended.is_set() and accepted:
            return
        accepted = accepted or message["type"] == "websocket.accept"
        closed = closed or message["type"] == "websocket.close"
        await send(message)

    try:
        await app(scope, until_ended, unless_ended)
    finally:
        cancel()
    if ended.is_set() and accepted and not closed:
        with contextlib.suppress(OSError, RuntimeError):  # the peer may have gone meanwhile
            await send({"type": "websocket.close", "code": CLOSE_ENDED, "reason": reasons[0]})


async def _stream_while_valid(watch: Watch, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve a GET made with an API key or a session. If that ends while the response is an event stream (an
    SSE feed that would run until its run ends), the route is told the client left and the stream ends at once
    with a comment saying why. Other responses complete: cutting a download short would end it as cleanly as a
    whole one, and the client could not tell."""
    cut = asyncio.Event()  # ended, and the response is an event stream
    reasons: list[str] = []
    finished = event_stream = False

    def end(reason: str) -> None:
        reasons.append(reason)
        if event_stream:
            cut.set()

    cancel = watch(end)

    async def until_cut() -> Message:
        return await _receive_unless(receive, cut, {"type": "http.disconnect"})

    async def watching(message: Message) -> None:
        nonlocal finished, event_stream
        if message["type"] == "http.response.start":
            event_stream = any(
                name.lower() == b"content-type" and value.startswith(b"text/event-stream")
                for name, value in message.get("headers", ())
            )
            if event_stream and reasons:  # ended while the route was still reading history
                cut.set()
        elif message["type"] == "http.response.body":
            finished = not message.get("more_body", False)
        await send(message)

    try:
        await app(scope, until_cut, watching)
    finally:
        cancel()
    if cut.is_set() and not finished:  # end the stream the route abandoned, with an SSE comment
        with contextlib.suppress(OSError, RuntimeError):  # the peer may have gone meanwhile
            await send({"type": "http.response.body", "body": b": " + reasons[0].encode() + b"\n\n"})


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


_RUN_WRITES = re.compile(r"^/api/v1/runs/([^/]+)/(scalars|finish)/?$")
_LAYERWISE = re.compile(r"^/api/v1/metrics/layerwise(/batch)?/?$")


async def _run_token_refusal(
    scope: Scope, receive: Receive, run_id: str, max_bytes: int
) -> tuple[PivotError | None, Receive]:
    """None when a run token's request writes only to its own run: scalars or the end of the run named in the path,
    or layer-wise payloads (read ahead and replayed) that all name it. Anything else is refused."""
    if scope["type"] == "http" and scope["method"] == "POST":
        match = _RUN_WRITES.match(scope["path"])
        if match is not None and _owns(run_id, match.group(1)):
            return None, receive
        if _LAYERWISE.match(scope["path"]):
            body, receive = await _read_ahead(receive, max_bytes)
            runs = None if body is None else _layerwise_runs(body)
            if runs and all(_owns(run_id, target) for target in runs):
                return None, receive
    refusal = Forbidden(
        f"a run token may only write to its own run {run_id!r} or its ranks' {run_id}-rank<N> (layer-wise metrics, "
        "scalars, their end)",
        details={"run_id": run_id},
    )
    return refusal, receive


def _owns(run_id: str, target: str) -> bool:
    """A run token writes to its run, and to the per-rank runs `<run>-rank<N>` that `Monitor(ranks="all")` posts
    as from a torchrun job's ranks."""
    if target == run_id:
        return True
    rank = target.removeprefix(f"{run_id}-rank")
    return rank != target and rank.isdigit() and rank.isascii() and len(rank) <= 5


def _layerwise_runs(body: bytes) -> set[str] | None:
    """The run ids a layer-wise payload or batch names; None when some item names none (the route would refuse it,
    recording the refusal on a run the body names, so it is refused here first)."""
    try:
        document = json.loads(body)  # NaN included: the route records non-finite payloads as events
    except (ValueError, RecursionError):
        return None
    runs: set[str] = set()
    for item in document if isinstance(document, list) else [document]:
        metadata = item.get("metadata") if isinstance(item, dict) else None
        run_id = metadata.get("run_id") if isinstance(metadata, dict) else None
        if not isinstance(run_id, str):
            return None
        runs.add(run_id)
    return runs


async def _read_ahead(receive: Receive, max_bytes: int) -> tuple[bytes | None, Receive]:
    """The whole body, read ahead and replayed to the route; None when it passed `max_bytes` or the client left."""
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
            break
        if not message.get("more_body", False):
            complete = True
            break
    pending = deque(messages)

    async def replay() -> Message:
        return pending.popleft() if pending else await receive()

    return (b"".join(m.get("body", b"") for m in messages) if complete else None), replay


async def _count_events(receive: Receive, max_bytes: int) -> tuple[int, Receive]:
    """Events in a telemetry batch (`{"events": [...]}`), read ahead and replayed to the route. Only
    rate-limited clients pay for this parse, and they send at most their limit of events a minute."""
    body, replay = await _read_ahead(receive, max_bytes)
    if body is None:  # past the route's own cap (it answers 413): charge the most a batch can cost
        return sys.maxsize, replay
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None  # the route answers 400
    events = document.get("events") if isinstance(document, dict) else None
    return (len(events) if isinstance(events, list) else 1), replay


async def _refuse(
    scope: Scope, send: Send, error: PivotError, decision: Decision | None, clear_cookie: bool = False
) -> None:
    status, document = render_error(error, family_for_path(scope["path"]))
    body = orjson.dumps(document)
    headers = [(b"content-type", b"application/json"), *(decision.headers() if decision else ())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="pivotd"'))
    if clear_cookie:  # the browser drops a cookie that will never work again
        headers.append((b"set-cookie", CLEARED_COOKIE.encode()))
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
