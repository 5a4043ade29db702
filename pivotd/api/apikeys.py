"""Named API keys (the structured error envelope): create, list, show, revoke. Admin only (see `pivotd.policy`).

The key itself appears in exactly one response, the one that creates it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from pivotd.api.body import openapi_body, read_model
from pivotd.api.responses import STRUCTURED_ERRORS, error_responses, model_response
from pivotd.apikeys import SCOPES, ApiKey, KeyRing
from pivotd.timefmt import iso
from shared.models.apikeys import ApiKeyCount, ApiKeyCreated, ApiKeyList, ApiKeyPublic, ApiKeyScope, ApiKeyStatus
from shared.models.envelopes import Data

router = APIRouter(prefix="/api/v1/api-keys", tags=["API keys"])
IdPath = Annotated[str, Path(max_length=64)]


async def _keys(request: Request) -> KeyRing:
    keys: KeyRing = request.app.state.keys
    return keys


KeysDep = Annotated[KeyRing, Depends(_keys)]


class ApiKeyFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    scopes: Annotated[list[ApiKeyScope], Field(min_length=1, max_length=4)] = Field(default_factory=lambda: ["read"])
    """write implies read; admin implies read and write; `jobs` (running commands) is granted only by name."""


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: ApiKeyFields


def _fields(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.key_id,
        "name": key.name,
        "scopes": list(key.scopes),
        "prefix": key.prefix,
        "status": ApiKeyStatus.REVOKED if key.revoked_at is not None else ApiKeyStatus.ACTIVE,
        "created_at": iso(key.created_at),
        "last_used_at": None if key.last_used_at is None else iso(key.last_used_at),
        "revoked_at": None if key.revoked_at is None else iso(key.revoked_at),
    }


def _view(key: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(_fields(key))


@router.post(
    "",
    status_code=201,
    response_model=Data[ApiKeyCreated],
    summary="Create an API key",
    description="`data.key` in this response is the only time the key is shown; only its digest is stored.",
    openapi_extra=openapi_body("ApiKeyCreate", ApiKeyCreate, '{"api_key": {"name", "scopes"}}'),
    responses=error_responses(STRUCTURED_ERRORS, 400, 401, 403, 413, 415, 422, 429),
)
async def create_key(request: Request, keys: KeysDep) -> Response:
    spec = (await read_model(request, ApiKeyCreate, request.app.state.settings.max_body_bytes)).api_key
    key, secret = await keys.create(spec.name, tuple(sorted(set(spec.scopes), key=SCOPES.index)))
    created = ApiKeyCreated.model_validate(_fields(key) | {"key": secret})
    return model_response(Data(data=created), 201, exclude_unset=True)  # `{"data"}` alone: no `meta`


@router.get(
    "",
    response_model=ApiKeyList,
    summary="List API keys (without the keys), revoked ones included",
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 429),
)
async def list_keys(keys: KeysDep) -> Response:
    views = [_view(key) for key in keys.list()]
    return model_response(ApiKeyList(data=views, meta=ApiKeyCount(total=len(views))))


@router.get(
    "/{key_id}",
    response_model=Data[ApiKeyPublic],
    summary="One API key (without the key)",
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 404, 429),
)
async def get_key(key_id: IdPath, keys: KeysDep) -> Response:
    return model_response(Data(data=_view(keys.get(key_id))), exclude_unset=True)  # `{"data"}` alone: no `meta`


@router.delete(
    "/{key_id}",
    status_code=204,
    summary="Revoke an API key: it fails from its next request on (revoking twice is harmless)",
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 404, 429),
)
async def revoke_key(key_id: IdPath, keys: KeysDep) -> Response:
    await keys.revoke(key_id)
    return Response(status_code=204)
