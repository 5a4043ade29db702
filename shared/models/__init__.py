"""Pydantic wire models: the single source of truth for every payload pivotd accepts or returns."""

from shared.models.checkpoints import CheckpointPublic, RunCheckpoint
from shared.models.datasets import DigitSamples
from shared.models.errors import ErrorBody, LayerwiseErrorEnvelope, LayerwiseValidationError, ValidationErrorItem
from shared.models.experiments import (
    ComparisonReport,
    ExperimentDetail,
    ExperimentExport,
    ExperimentPublic,
    ExperimentRun,
    ExperimentRunStatus,
    ExperimentStatus,
    StatisticalResult,
)
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
from shared.models.logs import LogLevel, RunLogLine
from shared.models.runs import Accepted, BatchAccepted, FinishedRun, RunDetail, RunEnd, RunEvent, RunState, RunSummary
from shared.models.scalars import ScalarBatch, ScalarPoint, ScalarsAccepted, ScalarSeries, ScalarsResponse

__all__ = [
    "Accepted",
    "BatchAccepted",
    "BiasStatistics",
    "CheckpointPublic",
    "ComparisonReport",
    "CrossLayerAnalysis",
    "DigitSamples",
    "ErrorBody",
    "ExperimentDetail",
    "ExperimentExport",
    "ExperimentPublic",
    "ExperimentRun",
    "ExperimentRunStatus",
    "ExperimentStatus",
    "FinishedRun",
    "GradientFlow",
    "IntermediateFeatures",
    "LayerStatistic",
    "LayerwiseErrorEnvelope",
    "LayerwiseValidationError",
    "LayerwisePayload",
    "LogLevel",
    "Metadata",
    "ParameterStatistics",
    "RunCheckpoint",
    "RunDetail",
    "RunEnd",
    "RunEvent",
    "RunLogLine",
    "RunState",
    "RunSummary",
    "ScalarBatch",
    "ScalarPoint",
    "ScalarSeries",
    "ScalarsAccepted",
    "ScalarsResponse",
    "StatisticalResult",
    "Step",
    "ValidationErrorItem",
    "WeightStatistics",
]
