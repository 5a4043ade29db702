"""Named API keys (family C's envelope): create, list, show, revoke. Admin only (see `pivotd.policy`).

The key itself appears in exactly one response, the one that creates it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from pivotd.api.body import openapi_body, read_model
from pivotd.api.responses import STRUCTURED_ERRORS, error_responses, json_response
from pivotd.apikeys import SCOPES, ApiKey, KeyRing
from pivotd.timefmt import iso

router = APIRouter(prefix="/api/v1/api-keys", tags=["API keys"])
IdPath = Annotated[str, Path(max_length=64)]
Scope = Literal["read", "write", "admin"]


async def _keys(request: Request) -> KeyRing:
    keys: KeyRing = request.app.state.keys
    return keys


KeysDep = Annotated[KeyRing, Depends(_keys)]


class ApiKeyFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=3)] = Field(default_factory=lambda: ["read"])
    """write implies read; admin implies everything."""


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: ApiKeyFields


def _view(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.key_id,
        "name": key.name,
        "scopes": list(key.scopes),
        "prefix": key.prefix,
        "status": "revoked" if key.revoked_at is not None else "active",
        "created_at": iso(key.created_at),
        "last_used_at": None if key.last_used_at is None else iso(key.last_used_at),
        "revoked_at": None if key.revoked_at is None else iso(key.revoked_at),
    }


@router.post(
    "",
    status_code=201,
    summary="Create an API key",
    description="`data.key` in this response is the only time the key is shown; only its digest is stored.",
    openapi_extra=openapi_body("ApiKeyCreate", ApiKeyCreate, '{"api_key": {"name", "scopes"}}'),
    responses=error_responses(STRUCTURED_ERRORS, 400, 401, 403, 413, 415, 422, 429),
)
async def create_key(request: Request, keys: KeysDep) -> Response:
    spec = (await read_model(request, ApiKeyCreate, request.app.state.settings.max_body_bytes)).api_key
    key, secret = await keys.create(spec.name, tuple(sorted(set(spec.scopes), key=SCOPES.index)))
    return json_response({"data": _view(key) | {"key": secret}}, 201)


@router.get(
    "",
    summary="List API keys (without the keys), revoked ones included",
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 429),
)
async def list_keys(keys: KeysDep) -> Response:
    views = [_view(key) for key in keys.list()]
    return json_response({"data": views, "meta": {"total": len(views)}})


@router.get(
    "/{key_id}",
    summary="One API key (without the key)",
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 404, 429),
)
async def get_key(key_id: IdPath, keys: KeysDep) -> Response:
    return json_response({"data": _view(keys.get(key_id))})


@router.delete(
    "/{key_id}",
    status_code=204,
    summary="Revoke an API key: it fails from its next request on (revoking twice is harmless)",
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 404, 429),
)
async def revoke_key(key_id: IdPath, keys: KeysDep) -> Response:
    await keys.revoke(key_id)
    return Response(status_code=204)
