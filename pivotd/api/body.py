"""Request bodies read as raw bytes and validated by the `shared` models in one pass.

Parsing the raw body with `model_validate_json` is the fast path (no intermediate dicts) and lets
every failure map to one clear error naming the field. `openapi_body` keeps the OpenAPI document
complete for routes that read their body this way.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, TypeAdapter, ValidationError

from pivotd.api.contract import declare_errors
from pivotd.api.responses import ERROR_ENVELOPES
from pivotd.errors import (
    BadRequest,
    MalformedBody,
    PayloadTooLarge,
    PivotError,
    Problem,
    UnsupportedMediaType,
    ValidationFailed,
    body_loc,
    field_path,
    invalid_field,
    validation_failed,
)
from shared.models.storable import MAX_DEPTH, storable

M = TypeVar("M", bound=BaseModel)

_SCHEMAS: dict[str, TypeAdapter[Any]] = {}
_RAW_SCHEMAS: dict[str, dict[str, Any]] = {}
"""Schemas no Python type has (refs into the document's components), by name."""
JsonObject = Annotated[dict[str, Any], AfterValidator(storable)]
"""A free-form JSON object (an experiment's or a model's config) that stores and reads back intact."""


async def read_json_body(request: Request, limit: int) -> bytes:
    body = await _read_body(request, limit)
    if not body:
        missing = Problem("body", "Field required", ("body",), "missing")
        raise MalformedBody("body is empty; send a JSON document", missing)
    return body


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, checked for media type and size as it arrives; may be empty."""
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
    return b"".join(chunks)


def parse_lenient(body: bytes) -> Any:
    """JSON for routes that validate values themselves: orjson first; the stdlib parser as the fallback, so
    NaN/Infinity literals and huge integers reach validation and get a 422 naming their field, not a 400."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            return json.loads(body)
        except RecursionError:  # nested past the interpreter's recursion limit, as orjson's 1024 levels are
            raise too_deep(body) or malformed_json(body, "nested too deeply") from None
        except json.JSONDecodeError as exc:
            raise malformed_json(body, str(exc)[:200], exc) from None
        except ValueError as exc:  # not UTF-8
            raise malformed_json(body, str(exc)[:200]) from None


def invalid_body(
    exc: ValidationError, body: bytes, prefix: str = "", model: type[BaseModel] | None = None
) -> PivotError:
    """`validation_failed` for a body validated from its bytes, except that one that is not JSON is
    `malformed_json`, and one its parser gave up on for its nesting is a 422 naming where, like a free-form value
    nested past MAX_DEPTH."""
    errors = exc.errors(include_url=False, include_input=False)
    reason = next((error["msg"] for error in errors if error["type"] == "json_invalid"), None)
    if reason is None:
        return validation_failed(exc, prefix, model)
    deep = too_deep(body, prefix) if "recursion limit" in reason else None
    return deep or malformed_json(body, reason)


def malformed_json(body: bytes, reason: str, error: json.JSONDecodeError | None = None) -> MalformedBody:
    """The error for a body that is not JSON, `reason` being what the parser said. Located as FastAPI locates
    it, for the layer-wise routes: `["body", <offset>]` with the stdlib parser's complaint, from its `error`, else
    from a second parse of the refused body (an error path, worth that)."""
    if error is None:
        try:
            json.loads(body)
        except json.JSONDecodeError as exc:
            error = exc
        except (ValueError, RecursionError):  # not UTF-8, or nested too deeply for the stdlib parser to say where
            pass
    problem = (
        Problem("body", "JSON decode error", ("body",), "json_invalid", {"error": reason})
        if error is None
        else Problem("body", "JSON decode error", ("body", error.pos), "json_invalid", {"error": error.msg})
    )
    return MalformedBody(f"body is not valid JSON: {reason}", problem)


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
# A JSON string (escapes included) or one structural character: all a nesting scan needs to see.
_TOKENS = re.compile(_STRING.pattern + rb"|[\[\]{},]")
_LOCATE_BYTES = 256 * 1024


def too_deep(body: bytes, prefix: str = "") -> ValidationFailed | None:
    """The 422 naming the first object or array of `body` nested deeper than MAX_DEPTH, unless the body's brackets
    do not balance (then it is not JSON, however deep).

    For a body a parser gave up on because of its nesting (pydantic's at about 250 levels, orjson's at 1024, the
    stdlib's and msgspec's at the recursion limit), which they report without saying in which field. The token
    scan stops at the first container too deep, before where the parser gave up; only the bracket count reads
    the rest, at the speed of `bytes.count`."""
    members: list[str | int | None] = []  # per open container: its current key (None between keys) or index
    # The walk is Python per token, on the event loop: it looks for the place in the first _LOCATE_BYTES only,
    # and beyond them names the body as a whole (a 32 MiB telemetry batch would otherwise hold the loop seconds).
    for match in _TOKENS.finditer(body, 0, _LOCATE_BYTES):
        token = match.group()
        if token in (b"{", b"["):
            if len(members) == MAX_DEPTH:
                if not _balanced(body):
                    return None
                where = tuple(member for member in members if member is not None)
                loc = (*body_loc(prefix), *where)
                return invalid_field(field_path(where, prefix), f"nested deeper than {MAX_DEPTH} levels", loc=loc)
            members.append(None if token == b"{" else 0)
        elif token in (b"}", b"]"):
            if members:
                members.pop()
        elif token == b",":
            if members:
                members[-1] = members[-1] + 1 if isinstance(members[-1], int) else None
        elif members and members[-1] is None:  # a string where a key is due
            members[-1] = _key(token)
    if len(body) > _LOCATE_BYTES and _balanced(body):
        return invalid_field(prefix or "body", f"nested deeper than {MAX_DEPTH} levels")
    return None


def _balanced(body: bytes) -> bool:
    structure = _STRING.sub(b"", body)  # brackets inside strings are text
    return structure.count(b"[") == structure.count(b"]") and structure.count(b"{") == structure.count(b"}")


def _key(token: bytes) -> str:
    try:
        return str(json.loads(token))
    except ValueError:
        return token[1:-1].decode(errors="replace")


async def read_model(request: Request, model: type[M], limit: int, *, optional: bool = False) -> M:
    """The body validated as `model` in one pass; failures are the 400/422 that name each field.
    `optional`: an empty body means `{}` (actions whose fields all have defaults, posted bare)."""
    body = await (_read_body if optional else read_json_body)(request, limit)
    try:
        return model.model_validate_json(body) if body else model.model_validate({})
    except ValidationError as exc:
        raise invalid_body(exc, body, model=model) from None


def never_null(schema: dict[str, Any]) -> None:
    """`json_schema_extra` of an optional field that may be left out but not sent as null (a 422 naming it): the
    document offers its non-null form only, without the `default: null` that stands for its absence."""
    options = [option for option in schema.pop("anyOf", []) if option != {"type": "null"}]
    if len(options) == 1:
        schema.update(options[0])
    elif options:
        schema["anyOf"] = options
    schema.pop("default", None)


def openapi_body(name: str, annotation: Any, description: str = "", *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` for a route that validates its body itself; registers the schema: `annotation`'s, or
    `annotation` itself where it is a JSON schema (a dict)."""
    if isinstance(annotation, dict):
        _RAW_SCHEMAS[name] = annotation
    else:
        _SCHEMAS[name] = TypeAdapter(annotation)
    return {
        "requestBody": {
            "required": required,
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    }


def register_schema(name: str, annotation: Any) -> str:
    """Put `annotation`'s schema in the document's components as `name` (one no route body or response names,
    such as an event stream's messages); returns its `$ref`."""
    _SCHEMAS[name] = TypeAdapter(annotation)
    return f"#/components/schemas/{name}"


def _envelope_schemas() -> dict[str, Any]:
    """The error envelopes' components as FastAPI writes responses' models: those of a document whose one route
    declares each envelope as a response's model."""

    async def envelopes() -> None:
        return None

    responses: dict[int | str, dict[str, Any]] = {400 + i: {"model": m} for i, m in enumerate(ERROR_ENVELOPES)}
    document = get_openapi(title="envelopes", version="0", routes=[APIRoute("/", envelopes, responses=responses)])
    schemas: dict[str, Any] = document["components"]["schemas"]
    return schemas


def install_openapi(app: FastAPI) -> None:
    """Generate the document once, adding the schemas of self-validated bodies to its components and the error
    codes every operation can answer (`pivotd.api.contract`)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = document.setdefault("components", {}).setdefault("schemas", {})
            # The error envelopes that routes name by reference (`pivotd.api.responses.error_response`).
            components.update(_envelope_schemas())
            for name, adapter in _SCHEMAS.items():
                schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
                components.update(schema.pop("$defs", {}))
                components[name] = schema
            components.update(_RAW_SCHEMAS)
            # By name: the order the bodies' modules were imported in would otherwise show in the document (and in
            # the TypeScript types generated from it) whenever an import moves.
            document["components"]["schemas"] = dict(sorted(components.items()))
            declare_errors(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
