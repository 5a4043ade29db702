"""One error mechanism for the whole daemon.

Services raise `PivotError` subclasses; `render_error` turns any of them into the envelope of the
route family the request belongs to (api-map section 2), so no route builds error JSON by hand:

- L (seed 000, layer-wise monitor): `{"detail": {"error": code, "message": msg}}`
- F/M (seeds 001, 003, prefix `/api/` without `v1`): `{"error": msg}`
- P/C (seeds 002, 004, the rest of `/api/v1`): `{"error": {"code", "message", "details"}}`
"""

from __future__ import annotations

import difflib
import re
import types
from enum import StrEnum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError


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


def validation_failed(exc: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> PivotError:
    """Map pydantic errors to 400 (not JSON) or 422 (invalid), naming every offending field. Given the `model`
    validated, an unknown field's message lists the names it could have meant."""
    errors = exc.errors(include_url=False, include_input=False)
    if any(error["type"] == "json_invalid" for error in errors):
        reason = next(e["msg"] for e in errors if e["type"] == "json_invalid")
        return BadRequest(f"body is not valid JSON: {reason}")
    return fields_failed([_field_error(e, prefix, model) for e in errors])


def fields_failed(fields: list[dict[str, str]]) -> ValidationFailed:
    """The 422 for several fields (`{"field", "message"}` each), the first five summarised in the message."""
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    if len(fields) > 5:
        summary += f"; and {len(fields) - 5} more"
    return ValidationFailed(summary, details=fields)


# Model validators cannot set a location, so ours say "<field>: <message>" and are split here.
_LOCATED = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.+)$", re.DOTALL)


def _field_error(error: Any, prefix: str, model: type[BaseModel] | None) -> dict[str, str]:
    sent = tuple(error["loc"])
    loc = sent if model is None else _walk(model, sent)[0]
    field = field_path(loc, prefix)
    message = str(error["msg"]).removeprefix("Value error, ")
    located = _LOCATED.match(message) if error["type"] == "value_error" else None
    if located:
        inner, message = located.groups()
        # A field validator's error already sits at its field: `layers` saying `layers[0]: ...` is `layers[0]`,
        # not `layers.layers[0]`. A model validator's sits at the model and names the field itself.
        if loc and isinstance(loc[-1], str) and re.match(rf"{re.escape(loc[-1])}(\[|\.|$)", inner):
            field = field_path(loc[:-1], prefix)
        field = inner if field == "body" else f"{field}.{inner}"
    elif error["type"] == "extra_forbidden" and model is not None and loc and isinstance(loc[-1], str):
        _, parents = _walk(model, sent[:-1])  # with the union tags, which pick the member
        if len(parents) == 1:
            known = [f.alias or name for name, f in parents[0].model_fields.items()]
            close = difflib.get_close_matches(loc[-1], known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            message = f"unknown field {loc[-1]!r}{hint}; one of {', '.join(known)}"
    return {"field": field, "message": message}


def _members(annotations: list[Any]) -> list[Any]:
    """The annotations with `Annotated`, `Optional` and unions opened up into their members."""
    found: list[Any] = []
    for annotation in annotations:
        origin = get_origin(annotation)
        if origin is Annotated:
            found += _members([get_args(annotation)[0]])
        elif origin in (Union, types.UnionType):
            found += _members(list(get_args(annotation)))
        else:
            found.append(annotation)
    return found


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _tagged(model: type[BaseModel], tag: str) -> bool:
    """Whether pydantic's union tag `tag` (a discriminator value or the class name) picks `model`."""
    literals = [get_args(f.annotation) for f in model.model_fields.values() if get_origin(f.annotation) is Literal]
    return tag == model.__name__ or any(tag in values for values in literals)


def _walk(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[tuple[int | str, ...], list[type[BaseModel]]]:
    """Follow an error location from `model` through fields (by alias where set), list items, dict values and
    unions: the location without the tags pydantic adds for a union of models (`layers[0].linear.out` is the
    client's `layers[0].out`), and the models it ends in (none once it leaves them)."""
    candidates: list[Any] = [model]
    kept: list[int | str] = []
    for index, part in enumerate(loc):
        if isinstance(part, str) and _UNION_TAG.match(part):  # a union of other types: `field_path` drops it
            kept.append(part)
            continue
        found: list[Any] = []
        picked: list[Any] = []
        for kind in _members(candidates):
            args = get_args(kind)
            if _is_model(kind) and isinstance(part, str):
                fields = {f.alias or name: f for name, f in kind.model_fields.items()}
                if part in fields:
                    found.append(fields[part].annotation)
                elif _tagged(kind, part):
                    picked.append(kind)
            elif isinstance(part, int) and get_origin(kind) in (list, tuple, set, frozenset) and args:
                found.append(args[0])
            elif isinstance(part, str) and get_origin(kind) is dict and len(args) == 2:
                found.append(args[1])
        if found:
            kept.append(part)
            candidates = found
        elif picked:  # the tag naming the union member: not part of what the client sent
            candidates = picked
        else:
            return (*kept, *loc[index:]), []
    return tuple(kept), [kind for kind in _members(candidates) if _is_model(kind)]


def render_error(error: PivotError, family: Family) -> dict[str, Any]:
    if family is Family.LAYERWISE:
        detail: dict[str, Any] = {"error": error.code, "message": error.message}
        if error.details is not None:
            detail["fields"] = error.details
        return {"detail": detail}
    if family is Family.SIMPLE:
        return {"error": error.message}
    return {"error": {"code": error.code, "message": error.message, "details": error.details}}
