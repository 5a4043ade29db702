"""The error codes every operation can answer, declared in the OpenAPI document from the rules that produce them.

Routes declare what they raise themselves (409, 413, ...). What the access middleware answers before a route runs
(401, 403, 429; `pivotd.auth`, `pivotd.policy`), what request validation answers (422) and the 404 of a path naming
an id that nothing has follow rules that hold for every route, so they are added here, in the envelope of the
operation's family (`pivotd.errors.family_for_path`), and no route needs to repeat them. FastAPI's own 422
(`HTTPValidationError`) is replaced the same way: pivotd never sends it outside the layer-wise routes, and they send
it with pivotd's `field` (`LayerwiseValidationError`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from pivotd.api.responses import ERROR_DESCRIPTIONS
from pivotd.auth import OPEN_PATHS
from pivotd.errors import Family, family_for_path
from pivotd.policy import SAFE_METHODS, requirement
from shared.models.errors import (
    LayerwiseErrorEnvelope,
    LayerwiseValidationError,
    SimpleErrorEnvelope,
    StructuredErrorEnvelope,
)

ENVELOPES: dict[Family, type[BaseModel]] = {
    Family.LAYERWISE: LayerwiseErrorEnvelope,
    Family.SIMPLE: SimpleErrorEnvelope,
    Family.STRUCTURED: StructuredErrorEnvelope,
}
VALIDATION_ENVELOPES: dict[Family, type[BaseModel]] = ENVELOPES | {Family.LAYERWISE: LayerwiseValidationError}
"""A 422's body per family: the layer-wise routes' is FastAPI's list of problems."""
FASTAPI_422 = ("HTTPValidationError", "ValidationError")
FORBIDDEN = (
    "The API key or session lacks the scope this operation needs, or a session cookie came with a request from "
    "another site's page"
)
RATE_LIMITED_HEADERS = {
    "Retry-After": {"description": "Seconds until a retry can succeed", "schema": {"type": "integer"}},
}
CREATES_WHAT_THE_PATH_NAMES = frozenset(
    {("post", "/api/v1/runs/{run_id}/scalars"), ("post", "/api/v1/runs/{run_id}/finish")}
)
"""Operations with a path parameter that never answer 404: they create the run the path names."""
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "options", "head", "trace"})


def can_be_forbidden(method: str, path: str) -> bool:
    """Whether the middleware may answer 403: the operation needs more than `read` (every key has read), or is one
    a session cookie from another site's page is refused on (any method but GET, HEAD and OPTIONS)."""
    return method not in SAFE_METHODS or requirement(method, path).scope != "read"


def declare_errors(document: dict[str, Any]) -> None:
    """Add the middleware's and validation's error codes to every operation of `document`, in place."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (*ENVELOPES.values(), LayerwiseValidationError):
        if model.__name__ not in schemas:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in schema.pop("$defs", {}).items():
                schemas.setdefault(name, definition)
            schemas[model.__name__] = schema
    for path, item in document.get("paths", {}).items():
        family = family_for_path(path)
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            if path not in OPEN_PATHS:
                _add(responses, 401, ENVELOPES[family])
                if can_be_forbidden(method.upper(), path):
                    _add(responses, 403, ENVELOPES[family], FORBIDDEN)
                _add(responses, 429, ENVELOPES[family], headers=RATE_LIMITED_HEADERS)
            if "{" in path and (method, path) not in CREATES_WHAT_THE_PATH_NAMES:
                _add(responses, 404, ENVELOPES[family], "Nothing has the id the path names")
            validated = operation.get("parameters") or operation.get("requestBody")
            if "422" in responses and _schema_name(responses["422"]) in FASTAPI_422:
                del responses["422"]
            if validated:
                _add(responses, 422, VALIDATION_ENVELOPES[family])
    _drop_unreferenced(document, FASTAPI_422)


def _add(
    responses: dict[str, Any],
    code: int,
    model: type[BaseModel],
    description: str | None = None,
    headers: dict[str, Any] | None = None,
) -> None:
    if str(code) in responses:
        return
    response: dict[str, Any] = {
        "description": description or ERROR_DESCRIPTIONS[code],
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
    }
    if headers:
        response["headers"] = headers
    responses[str(code)] = response
    # Keep the codes in order, as FastAPI lists them.
    ordered = sorted(responses.items(), key=lambda entry: entry[0])
    responses.clear()
    responses.update(ordered)


def _schema_name(response: dict[str, Any]) -> str | None:
    ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
    return ref.rsplit("/", 1)[-1] or None


def _drop_unreferenced(document: dict[str, Any], names: tuple[str, ...]) -> None:
    """Remove the schemas `names` (in order) where nothing refers to them any more."""
    schemas = document["components"]["schemas"]
    for name in names:
        others = {key: value for key, value in schemas.items() if key != name}
        if name in schemas and f'"#/components/schemas/{name}"' not in json.dumps([document["paths"], others]):
            del schemas[name]
