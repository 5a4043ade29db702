"""Bearer-token authentication for every route family (api-map section 4).

Loopback peers are trusted unless `trust_loopback = false`; any other peer needs
`Authorization: Bearer <token>` (WebSocket clients that cannot set headers may pass `?token=`).
`/health` is always open. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from pivotd.errors import Unauthorized, family_for_path, render_error
from shared.locations import TOKEN_FILE

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/health"})


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


def _presented_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    if scope["type"] == "websocket":
        tokens = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        if tokens:
            return tokens[0]
    return None


class TokenAuthMiddleware:
    def __init__(self, app: ASGIApp, token: str, trust_loopback: bool) -> None:
        self.app = app
        self._token = token.encode()
        self._trust_loopback = trust_loopback

    def _allowed(self, scope: Scope) -> bool:
        if scope["path"] in OPEN_PATHS:
            return True
        client = scope.get("client")
        if self._trust_loopback and client and is_loopback(client[0]):
            return True
        presented = _presented_token(scope)
        return presented is not None and hmac.compare_digest(presented.encode(), self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        error = Unauthorized("a valid bearer token is required (Authorization: Bearer <token>)")
        body = orjson.dumps(render_error(error, family_for_path(scope["path"])))
        headers = [(b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="pivotd"')]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        # WebSocket: refuse the handshake with a real 401 where the server supports it.
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})
