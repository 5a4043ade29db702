"""Response helpers: JSON encoded once with orjson, and the error responses documented per family."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response
from pydantic import BaseModel, TypeAdapter

from shared.models.errors import (
    LayerwiseErrorEnvelope,
    LayerwiseValidationError,
    SimpleErrorEnvelope,
    StructuredErrorEnvelope,
)


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json", headers=headers)


def model_response(
    model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None, *, exclude_unset: bool = False
) -> Response:
    """A response model, built by the route so that what it sends is what the OpenAPI document declares.
    `exclude_unset`: for a model validated from a view whose optional keys are absent rather than null, so that
    they stay absent on the wire."""
    return json_response(
        model.model_dump(mode="json", by_alias=True, exclude_unset=exclude_unset), status_code, headers
    )


def raw_json_response(body: bytes, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A body already serialised (for example stored step documents spliced together)."""
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


ERROR_DESCRIPTIONS = {
    400: "Body is not valid JSON",
    401: "Missing or invalid bearer token or API key",
    403: "The API key lacks the scope this route needs",
    404: "Not found",
    409: "Conflict with the resource's state",
    413: "Body larger than max_body_bytes",
    415: "Content-Type is not application/json",
    422: "Validation failed; the message names each offending field",
    429: "Rate limit exceeded; see Retry-After and X-RateLimit-*",
    503: "The store is shutting down",
    507: "The disk holding the database is full; nothing was stored",
}


ERROR_ENVELOPES: tuple[type[BaseModel], ...] = (
    LayerwiseErrorEnvelope,
    LayerwiseValidationError,
    SimpleErrorEnvelope,
    StructuredErrorEnvelope,
)
"""The error bodies routes declare by reference (`error_response`); `pivotd.api.body.install_openapi` puts their
schemas in the document's components."""


def error_response(envelope: type[BaseModel], description: str) -> dict[str, Any]:
    """An error response's OpenAPI entry: `envelope` by reference, in JSON, as FastAPI writes a response's `model`.
    Not as a `model`: FastAPI builds a pydantic serializer for each route's each one, about 500 of them, which
    cost every daemon a tenth of a second at start-up for the document alone."""
    assert envelope in ERROR_ENVELOPES, envelope
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{envelope.__name__}"}}},
    }


def error_responses(envelope: type[BaseModel], *codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: error_response(envelope, ERROR_DESCRIPTIONS[code]) for code in codes}


def layerwise_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The layer-wise routes' error responses: their envelope, except the 422 in FastAPI's shape."""
    responses = error_responses(LayerwiseErrorEnvelope, *codes)
    if 422 in responses:
        responses[422] = error_response(
            LayerwiseValidationError,
            "Validation failed (a body that is missing or not JSON too): one item per problem, its `loc` naming the "
            "field",
        )
    return responses


STRUCTURED_ERRORS = StructuredErrorEnvelope
WRITES = (503, 507)
"""What a route that writes to the store can also answer: the store is shutting down, or the disk is full."""


def api_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `{"error": {...}}` envelope's errors of an authenticated route: `codes`, and the auth middleware's 401,
    403 (a key or session without the route's scope) and 429 (a key's rate limit), which any such route can
    answer."""
    return error_responses(STRUCTURED_ERRORS, *sorted({401, 403, 429, *codes}))


_TEXT = TypeAdapter(str).json_schema()
_BYTES = TypeAdapter(bytes).json_schema()


def download(
    description: str, filename: str, *, text: tuple[str, ...] = (), binary: str | None = None
) -> dict[str, Any]:
    """The OpenAPI entry of a file answer (`Content-Disposition: attachment`): text in each of the `text` media
    types, or bytes in the `binary` one. A route whose answer may also be a JSON model adds `application/json`
    through its `response_model`."""
    content = {media: {"schema": _TEXT} for media in text} | ({binary: {"schema": _BYTES}} if binary else {})
    disposition = {"description": f'attachment; filename="{filename}"', "schema": _TEXT}
    return {"description": description, "content": content, "headers": {"Content-Disposition": disposition}}
