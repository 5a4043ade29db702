"""Request bodies read as raw bytes and validated by the `shared` models in one pass.

Parsing the raw body with `model_validate_json` is the fast path (no intermediate dicts) and lets
every failure map to one clear error naming the field. `openapi_body` keeps the OpenAPI document
complete for routes that read their body this way.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, TypeAdapter, ValidationError

from pivotd.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, validation_failed

M = TypeVar("M", bound=BaseModel)

_SCHEMAS: dict[str, TypeAdapter[Any]] = {}


async def read_json_body(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type")
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise UnsupportedMediaType(f"content-type must be application/json, got {media or 'nothing'!r}")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("content-length header is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    if not size:
        raise BadRequest("body is empty; send a JSON document")
    return b"".join(chunks)


async def read_model(request: Request, model: type[M], limit: int) -> M:
    """The body validated as `model` in one pass; failures are the 400/422 that name each field."""
    try:
        return model.model_validate_json(await read_json_body(request, limit))
    except ValidationError as exc:
        raise validation_failed(exc) from None


def openapi_body(name: str, annotation: Any, description: str = "") -> dict[str, Any]:
    """`openapi_extra` for a route that validates its body itself; registers the schema."""
    _SCHEMAS[name] = TypeAdapter(annotation)
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    }


def install_openapi(app: FastAPI) -> None:
    """Generate the document once, adding the schemas of self-validated bodies to its components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for name, adapter in _SCHEMAS.items():
                schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
                components.update(schema.pop("$defs", {}))
                components[name] = schema
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
