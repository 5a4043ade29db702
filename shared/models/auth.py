"""Browser sessions (the `_crucible_ui_key` cookie) as `POST /api/v1/auth/session` answers them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class AuthSession(BaseModel):
    """A session, never its token: that is only in the Set-Cookie header of the response that opens it."""

    id: str = Field(description="`ses_<hex>`")
    scopes: list[Literal["read", "write", "admin"]] = Field(
        description="The opener's scopes, each implied one included: what requests with the cookie may do"
    )
    api_key_id: str | None = Field(
        description="The API key that opened it: its rate limits apply and revoking it ends the session; "
        "null when the owner opened it"
    )
    created_at: str = Field(description="ISO 8601 UTC")
    expires_at: str = Field(description="ISO 8601 UTC; `session_lifetime_s` after `created_at`, not extended by use")


class AuthSessionCreated(BaseModel):
    data: AuthSession
