"""Pydantic wire models: the single source of truth for every payload pivotd accepts or returns."""

from shared.models.errors import ErrorBody, LayerwiseErrorEnvelope, LayerwiseValidationError, ValidationErrorItem
from shared.models.layerwise import (
    BiasStatistics,
    CrossLayerAnalysis,
    GradientFlow,
    IntermediateFeatures,
    LayerStatistic,
    LayerwisePayload,
    Metadata,
    ParameterStatistics,
    Step,
    WeightStatistics,
)
from shared.models.runs import Accepted, BatchAccepted, FinishedRun, RunDetail, RunEnd, RunEvent, RunState, RunSummary
from shared.models.scalars import ScalarBatch, ScalarPoint, ScalarsAccepted, ScalarSeries, ScalarsResponse

__all__ = [
    "Accepted",
    "BatchAccepted",
    "BiasStatistics",
    "CrossLayerAnalysis",
    "ErrorBody",
    "FinishedRun",
    "GradientFlow",
    "IntermediateFeatures",
    "LayerStatistic",
    "LayerwiseErrorEnvelope",
    "LayerwiseValidationError",
    "LayerwisePayload",
    "Metadata",
    "ParameterStatistics",
    "RunDetail",
    "RunEnd",
    "RunEvent",
    "RunState",
    "RunSummary",
    "ScalarBatch",
    "ScalarPoint",
    "ScalarSeries",
    "ScalarsAccepted",
    "ScalarsResponse",
    "Step",
    "ValidationErrorItem",
    "WeightStatistics",
]
