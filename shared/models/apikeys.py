"""Named API keys (the `{"data", "meta"}` envelope) as `/api/v1/api-keys*` answers them. The key itself appears only in
`ApiKeyCreated`, the answer that creates it."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

ApiKeyScope = Literal["read", "write", "admin", "jobs"]


class ApiKeyStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class ApiKeyPublic(BaseModel):
    id: str
    name: str
    scopes: list[ApiKeyScope] = Field(
        description="write implies read; admin implies read and write; jobs (run commands) implies read only"
    )
    prefix: str = Field(description="The key's first characters, to recognise it by")
    status: ApiKeyStatus
    created_at: str = Field(description="ISO 8601 UTC")
    last_used_at: str | None
    revoked_at: str | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The key: shown in this answer only; only its digest is stored")


class ApiKeyCount(BaseModel):
    total: int = Field(ge=0)


class ApiKeyList(BaseModel):
    data: list[ApiKeyPublic]
    meta: ApiKeyCount
