"""Browser sessions (`Cookie: _crucible_ui_key=<session_token>`): open one, end it (structured errors).

The token travels only in Set-Cookie, HttpOnly and SameSite=Strict: a browser keeps it out of scripts' reach
and sends it back by itself; a program holding bearer credentials has no use for a session.
"""

from __future__ import annotations

import math

from fastapi import APIRouter, Request, Response
from pydantic import TypeAdapter

from pivotd.api.responses import STRUCTURED_ERRORS, error_response, error_responses, model_response
from pivotd.apikeys import SCOPES
from pivotd.auth import principal_of
from pivotd.authsessions import CLEARED_COOKIE, SessionRing, session_cookie
from pivotd.errors import Forbidden, NotFound
from pivotd.settings import Settings
from pivotd.timefmt import iso
from shared.models.auth import AuthSession, AuthSessionCreated

router = APIRouter(prefix="/api/v1/auth", tags=["browser sessions"])
COOKIE_SCHEMA = TypeAdapter(str).json_schema()
CROSS_SITE_403 = "A request judged by its session cookie from another site's page (Origin is not this host)"


def _over_tls(request: Request, settings: Settings) -> bool:
    """pivotd serves plain HTTP; TLS ends at a reverse proxy, which says so with `X-Forwarded-Proto: https`. The
    header is believed for this alone: `Secure` only restricts where the browser sends the cookie."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return settings.session_cookie_secure or forwarded == "https"


@router.post(
    "/session",
    status_code=201,
    response_model=AuthSessionCreated,
    summary="Open a browser session with the caller's scopes; the token is set as the `_crucible_ui_key` cookie",
    description="For a caller authenticated by the daemon token, trusted loopback or an API key (any scope); a "
    "request authenticated by a session cookie cannot open another (403). The response sets `_crucible_ui_key` "
    "(`HttpOnly; SameSite=Strict; Path=/; Max-Age`, and `Secure` behind TLS); the body never carries the token.",
    responses={
        201: {
            "headers": {
                "Set-Cookie": {
                    "description": "`_crucible_ui_key=pvs_...; Path=/; Max-Age=<session_lifetime_s>; HttpOnly; "
                    "SameSite=Strict` (`; Secure` behind TLS): the session token, shown nowhere else",
                    "schema": COOKIE_SCHEMA,
                }
            }
        },
        **error_responses(STRUCTURED_ERRORS, 401, 429),
        403: error_response(STRUCTURED_ERRORS, f"{CROSS_SITE_403}, or one that a session authenticated"),
    },
)
async def open_session(request: Request) -> Response:
    principal = principal_of(request.scope)
    if principal.session is not None:
        raise Forbidden(
            "a session cannot open another session: authenticate with the daemon token or an API key "
            "(Authorization: Bearer), or end this one first (DELETE /api/v1/auth/session)"
        )
    sessions: SessionRing = request.app.state.sessions
    # Never `jobs`: a cookie rides along with whatever request a browser page makes, and the Origin check is then
    # the only thing between a page and running a command as the daemon's user. Jobs take bearer credentials.
    scopes = tuple(scope for scope in SCOPES if scope in principal.grants and scope != "jobs")
    session, token = await sessions.open(scopes, principal.key_id)
    body = AuthSessionCreated(
        data=AuthSession(
            id=session.session_id,
            scopes=list(session.scopes),
            api_key_id=session.key_id,
            created_at=iso(session.created_at),
            expires_at=iso(session.expires_at),
        )
    )
    cookie = session_cookie(
        token, math.ceil(session.expires_at - session.created_at), _over_tls(request, request.app.state.settings)
    )
    return model_response(body, 201, headers={"set-cookie": cookie})


@router.delete(
    "/session",
    status_code=204,
    summary="End the session whose cookie authenticated this request, and clear the cookie",
    description="WebSockets and event streams the session opened are closed at once (1008 `session ended`). 404 "
    "when the request was not authenticated by a session cookie (bearer credentials, sent too, win over it).",
    responses={
        204: {
            "headers": {
                "Set-Cookie": {
                    "description": "`_crucible_ui_key=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict`: the browser "
                    "drops the cookie",
                    "schema": COOKIE_SCHEMA,
                }
            }
        },
        **error_responses(STRUCTURED_ERRORS, 401, 404, 429),
        403: error_response(STRUCTURED_ERRORS, CROSS_SITE_403),
    },
)
async def close_session(request: Request) -> Response:
    session = principal_of(request.scope).session
    if session is None:
        raise NotFound("this request was not authenticated by a session cookie (_crucible_ui_key): nothing to end")
    sessions: SessionRing = request.app.state.sessions
    await sessions.close(session)
    return Response(status_code=204, headers={"set-cookie": CLEARED_COOKIE})
