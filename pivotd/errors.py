"""One error mechanism for the whole daemon.

Services raise `PivotError` subclasses; `render_error` turns any of them into the envelope of the
route family the request belongs to (api-map section 2), so no route builds error JSON by hand:

- layer-wise (`LAYERWISE`): `{"detail": {"error": code, "message": msg}}`, except that a validation
  failure is FastAPI's `422 {"detail": [{"loc", "msg", "type"}, ...]}`, as the layer-wise reference server answers it
- simple (`SIMPLE`, prefix `/api/` without `v1`: models, training, inference): `{"error": msg}`
- structured (`STRUCTURED`, the rest of `/api/v1`): `{"error": {"code", "message", "details"}}`
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails


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


Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a request: `field` as pivotd names it in messages (`layer_statistics[0].gradient_flow`,
    `filter[status]`), and `loc` as FastAPI locates it, source first (`("body", "layer_statistics", 0,
    "gradient_flow")`, `("query", "filter[status]")`), which only the layer-wise envelope shows."""

    field: str
    msg: str
    loc: Loc
    type: str = "value_error"
    ctx: dict[str, Any] | None = None


class PivotError(Exception):
    """Base of every error a route may answer with."""

    status = 500
    code = "internal_error"
    problems: tuple[Problem, ...] = ()
    """Set on validation failures of the request: the layer-wise routes answer those as FastAPI does, whatever the
    status."""

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


class MalformedBody(BadRequest):
    """A body that is missing or is not JSON: a 400, except on the layer-wise routes, where FastAPI's validation
    makes it a 422."""

    def __init__(self, message: str, problem: Problem) -> None:
        super().__init__(message)
        self.problems = (problem,)


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

    def __init__(self, message: str, details: Any = None, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message, details)
        # Without a located problem, what failed is the request's body as a whole.
        self.problems = tuple(problems) or (Problem("body", message, ("body",)),)


def invalid_field(field: str, message: str, *, loc: Loc | None = None, kind: str = "value_error") -> ValidationFailed:
    """The 422 for one field: `field: message`, with the field named in `details` for programs. `loc` (FastAPI's,
    for the layer-wise routes) defaults to the field's place in the body."""
    return problems_failed([Problem(field, message, body_loc(field) if loc is None else loc, kind)])


def invalid_param(name: str, message: str) -> ValidationFailed:
    """The 422 for one query parameter."""
    return invalid_field(name, message, loc=("query", name))


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


def _sent(loc: Loc) -> Loc:
    """The parts of a pydantic location that name what the client sent: union tags dropped."""
    last = len(loc) - 1
    return tuple(
        part
        for index, part in enumerate(loc)
        if isinstance(part, int) or not (_UNION_TAG.match(part) or (index == last and part in _PLAIN_TAGS))
    )


def field_path(loc: Loc, prefix: str = "") -> str:
    """`("layer_statistics", 0, "gradient_flow")` -> `layer_statistics[0].gradient_flow`; union tags dropped."""
    path = prefix
    for part in _sent(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "body"


_INDEXES = re.compile(r"(?:\[\d+\])+$")


def body_loc(field: str) -> Loc:
    """`layer_statistics[0].gradient_flow` -> `("body", "layer_statistics", 0, "gradient_flow")`: a field path
    back to FastAPI's location (a bracket holding anything but digits, as in `filter[status]`, stays in the name)."""
    if not field or field == "body":
        return ("body",)
    parts: list[str | int] = ["body"]
    for segment in field.split("."):
        indexes = _INDEXES.search(segment)
        name = segment[: indexes.start()] if indexes else segment
        if name:
            parts.append(name)
        if indexes:
            parts.extend(int(index) for index in re.findall(r"\d+", indexes.group()))
    return tuple(parts)


def validation_failed(exc: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> ValidationFailed:
    """The 422 naming every field pydantic refused in a validated body (or the part of it under `prefix`). Given
    the `model` validated, an unknown field's message lists the names it could have meant."""
    errors = exc.errors(include_url=False, include_input=False)
    return problems_failed([_problem(e, prefix, model) for e in errors])


def request_failed(errors: Sequence[Any]) -> ValidationFailed:
    """The 422 for FastAPI's own validation of a route's parameters, whose locations start with their source."""
    problems = []
    for error in errors:
        source, *where = error["loc"]
        # A parameter's name comes first and is never a union tag, though `filter[status]` looks like one.
        name = (where.pop(0),) if source != "body" and where else ()
        rest = _sent(tuple(where))
        field = field_path(rest, str(name[0])) if name else field_path(rest)
        problems.append(Problem(field, str(error["msg"]), (source, *name, *rest), error["type"]))
    return problems_failed(problems)


def problems_failed(problems: Sequence[Problem]) -> ValidationFailed:
    """The 422 for several problems, the first five summarised in the message, all listed in `details`."""
    summary = "; ".join(f"{p.field}: {p.msg}" for p in problems[:5])
    if len(problems) > 5:
        summary += f"; and {len(problems) - 5} more"
    details = [{"field": p.field, "message": p.msg} for p in problems]
    return ValidationFailed(summary, details=details, problems=problems)


def fields_failed(fields: list[dict[str, str]]) -> ValidationFailed:
    """The 422 for several body fields (`{"field", "message"}` each)."""
    return problems_failed([Problem(f["field"], f["message"], body_loc(f["field"])) for f in fields])


# Model validators cannot set a location, so ours say "<field>: <message>" and are split here.
_LOCATED = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.+)$", re.DOTALL)


def _problem(error: ErrorDetails, prefix: str, model: type[BaseModel] | None) -> Problem:
    sent = tuple(error["loc"])
    where = _sent(sent if model is None else _walk(model, sent)[0])
    field = field_path(where, prefix)
    loc = (*body_loc(prefix), *where)
    message = str(error["msg"]).removeprefix("Value error, ")
    located = _LOCATED.match(message) if error["type"] == "value_error" else None
    if located:
        inner, message = located.groups()
        # A field validator's error already sits at its field: `layers` saying `layers[0]: ...` is `layers[0]`,
        # not `layers.layers[0]`. A model validator's sits at the model and names the field itself.
        if where and isinstance(where[-1], str) and re.match(rf"{re.escape(where[-1])}(\[|\.|$)", inner):
            field = field_path(where[:-1], prefix)
            loc = loc[:-1]
        field = inner if field == "body" else f"{field}.{inner}"
        loc = (*loc, *body_loc(inner)[1:])
    elif error["type"] == "extra_forbidden" and model is not None and where and isinstance(where[-1], str):
        _, parents = _walk(model, sent[:-1])  # with the union tags, which pick the member
        if len(parents) == 1:
            known = [f.alias or name for name, f in parents[0].model_fields.items()]
            close = difflib.get_close_matches(where[-1], known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            message = f"unknown field {where[-1]!r}{hint}; one of {', '.join(known)}"
    return Problem(field, message, loc, error["type"])


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


def render_error(error: PivotError, family: Family) -> tuple[int, dict[str, Any]]:
    """The status and body answering `error` in `family`'s envelope."""
    if family is Family.LAYERWISE:
        if error.problems:  # FastAPI's RequestValidationError, as the layer-wise reference server sends it
            return 422, {"detail": [_fastapi_item(problem) for problem in error.problems]}
        detail: dict[str, Any] = {"error": error.code, "message": error.message}
        if error.details is not None:
            detail["fields"] = error.details
        return error.status, {"detail": detail}
    if family is Family.SIMPLE:
        return error.status, {"error": error.message}
    return error.status, {"error": {"code": error.code, "message": error.message, "details": error.details}}


def _fastapi_item(problem: Problem) -> dict[str, Any]:
    item: dict[str, Any] = {"loc": problem.loc, "msg": problem.msg, "type": problem.type}
    if problem.ctx is not None:
        item["ctx"] = problem.ctx
    item["field"] = problem.field  # pivotd's extension: the path as messages name it
    return item
