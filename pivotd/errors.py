"""One error mechanism for the whole daemon.

Services raise `PivotError` subclasses; `render_error` turns any of them into the envelope of the
route family the request belongs to (api-map section 2), so no route builds error JSON by hand:

- L (seed 000, layer-wise monitor): `{"detail": {"error": code, "message": msg}}`
- F/M (seeds 001, 003, prefix `/api/` without `v1`): `{"error": msg}`
- P/C (seeds 002, 004, the rest of `/api/v1`): `{"error": {"code", "message", "details"}}`
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import ValidationError


class Family(StrEnum):
    LAYERWISE = "L"
    SIMPLE = "F/M"
    STRUCTURED = "P/C"


# First match wins. C's run sub-resources live under L's `/api/v1/runs` prefix but speak C's envelope.
_FAMILY_RULES: list[tuple[re.Pattern[str], Family]] = [
    (re.compile(r"^/api/v1/runs/[^/]+/(logs|checkpoints)(/|$)"), Family.STRUCTURED),
    (re.compile(r"^/api/v1/(metrics/layerwise|runs)(/|$)"), Family.LAYERWISE),
    (re.compile(r"^/(health|ws)/?$"), Family.LAYERWISE),
    (re.compile(r"^/api/v1(/|$)"), Family.STRUCTURED),
    (re.compile(r"^/api(/|$)"), Family.SIMPLE),
]


def family_for_path(path: str) -> Family:
    for pattern, family in _FAMILY_RULES:
        if pattern.match(path):
            return family
    return Family.STRUCTURED


class PivotError(Exception):
    """Base of every error a route may answer with."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InternalError(PivotError):
    """Something unexpected; details go to the log, never to the client."""


class HttpError(PivotError):
    """A framework-level HTTP error with no more specific class."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = "http_error"


class BadRequest(PivotError):
    status = 400
    code = "bad_request"


class Unauthorized(PivotError):
    status = 401
    code = "unauthorized"


class Forbidden(PivotError):
    status = 403
    code = "forbidden"


class NotFound(PivotError):
    status = 404
    code = "not_found"


class MethodNotAllowed(PivotError):
    status = 405
    code = "method_not_allowed"


class Conflict(PivotError):
    status = 409
    code = "conflict"


class PayloadTooLarge(PivotError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(PivotError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(PivotError):
    status = 422
    code = "validation_error"


def invalid_field(field: str, message: str) -> ValidationFailed:
    """The 422 for one field: `field: message`, with the field named in `details` for programs."""
    return fields_failed([{"field": field, "message": message}])


class RateLimited(PivotError):
    status = 429
    code = "rate_limited"


class ServiceUnavailable(PivotError):
    status = 503
    code = "service_unavailable"


class InsufficientStorage(PivotError):
    """The disk holding the database is full: the write was not stored; reads still work."""

    status = 507
    code = "insufficient_storage"


# pydantic names the member of a union a value failed in: `list[constrained-str]`, `function-after[...]`,
# `constrained-int`, or (for a union of plain types, always last) `str`. Those are not fields a client sent.
_UNION_TAG = re.compile(r"^([a-z][a-z-]*\[.*\]|constrained-[a-z]+)$", re.DOTALL)
_PLAIN_TAGS = frozenset({"str", "int", "float", "bool", "bytes", "decimal", "none"})


def field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """`("layer_statistics", 0, "gradient_flow")` -> `layer_statistics[0].gradient_flow`; union tags dropped."""
    path = prefix
    last = len(loc) - 1
    for index, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif not (_UNION_TAG.match(part) or (index == last and part in _PLAIN_TAGS)):
            path += f".{part}" if path else str(part)
    return path or "body"


def validation_failed(exc: ValidationError, prefix: str = "") -> PivotError:
    """Map pydantic errors to 400 (not JSON) or 422 (invalid), naming every offending field."""
    errors = exc.errors(include_url=False, include_input=False)
    if any(error["type"] == "json_invalid" for error in errors):
        reason = next(e["msg"] for e in errors if e["type"] == "json_invalid")
        return BadRequest(f"body is not valid JSON: {reason}")
    return fields_failed([_field_error(e, prefix) for e in errors])


def fields_failed(fields: list[dict[str, str]]) -> ValidationFailed:
    """The 422 for several fields (`{"field", "message"}` each), the first five summarised in the message."""
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    if len(fields) > 5:
        summary += f"; and {len(fields) - 5} more"
    return ValidationFailed(summary, details=fields)


# Model validators cannot set a location, so ours say "<field>: <message>" and are split here.
_LOCATED = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.+)$", re.DOTALL)


def _field_error(error: Any, prefix: str) -> dict[str, str]:
    field = field_path(tuple(error["loc"]), prefix)
    message = str(error["msg"]).removeprefix("Value error, ")
    located = _LOCATED.match(message) if error["type"] == "value_error" else None
    if located:
        inner, message = located.groups()
        field = inner if field == "body" else f"{field}.{inner}"
    return {"field": field, "message": message}


def render_error(error: PivotError, family: Family) -> dict[str, Any]:
    if family is Family.LAYERWISE:
        detail: dict[str, Any] = {"error": error.code, "message": error.message}
        if error.details is not None:
            detail["fields"] = error.details
        return {"detail": detail}
    if family is Family.SIMPLE:
        return {"error": error.message}
    return {"error": {"code": error.code, "message": error.message, "details": error.details}}
