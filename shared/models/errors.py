"""Error envelopes. Each route family keeps its own (api-map section 2); these models document them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class LayerwiseErrorDetail(BaseModel):
    error: str
    message: str
    fields: dict[str, Any] | None = Field(
        default=None, description="A 403's required and granted scopes; a 429's category, limit and retry_after"
    )


class LayerwiseErrorEnvelope(BaseModel):
    """The layer-wise routes': `{"detail": {"error": code, "message": msg}}`."""

    detail: LayerwiseErrorDetail


class ValidationErrorItem(BaseModel):
    """One failed check as FastAPI reports it (its `ValidationError`), plus pivotd's `field`."""

    loc: list[str | int] = Field(description='Where, source first: `["body", "metadata", "run_id"]`, `["query", "x"]`')
    msg: str
    type: str = Field(description="pydantic's error type: `missing`, `greater_than_equal`, `json_invalid`, ...")
    ctx: dict[str, Any] = Field(
        default_factory=dict, description='Only for `json_invalid`: `{"error": what the JSON parser said}`'
    )
    field: str = Field(description="The same place as messages name it: `layer_statistics[0].gradient_flow`")


class LayerwiseValidationError(BaseModel):
    """The layer-wise routes' 422: FastAPI's `HTTPValidationError`, as their reference server sends it."""

    detail: list[ValidationErrorItem]


class SimpleErrorEnvelope(BaseModel):
    """The simple envelope (`/api/...` outside `/api/v1`): `{"error": msg}`."""

    error: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class StructuredErrorEnvelope(BaseModel):
    """The structured envelope (the rest of `/api/v1`): `{"error": {"code", "message", "details"}}`."""

    error: ErrorBody


def describe_error(body: Any) -> tuple[str | None, str | None]:
    """(code, message) of an error body in any of the three envelopes; None for what it does not say. The layer-wise
    validation list reads as one message, `metadata.run_id: Field required; ...`, like the other families'."""
    if not isinstance(body, dict):
        return None, None
    inner = body.get("detail", body.get("error"))
    if isinstance(inner, list):
        items = [item for item in inner if isinstance(item, dict)]
        return "validation_error", "; ".join(f"{item.get('field', 'body')}: {item.get('msg')}" for item in items)
    if isinstance(inner, dict):  # L {"detail": {...}} or P/C {"error": {...}}
        code, message = inner.get("error", inner.get("code")), inner.get("message")
        return None if code is None else str(code), None if message is None else str(message)
    if isinstance(inner, str):  # F/M {"error": msg}
        return None, inner
    return None, None
