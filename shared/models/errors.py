"""Error envelopes. Each route family keeps its own (api-map section 2); these models document them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class FieldError(BaseModel):
    field: str
    message: str


class LayerwiseErrorDetail(BaseModel):
    error: str
    message: str
    fields: list[FieldError] | None = None


class LayerwiseErrorEnvelope(BaseModel):
    """Family L (seed 000): `{"detail": {"error": code, "message": msg}}`."""

    detail: LayerwiseErrorDetail


class SimpleErrorEnvelope(BaseModel):
    """Families F and M (seeds 001, 003): `{"error": msg}`."""

    error: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class StructuredErrorEnvelope(BaseModel):
    """Families P and C (seeds 002, 004): `{"error": {"code", "message", "details"}}`."""

    error: ErrorBody
