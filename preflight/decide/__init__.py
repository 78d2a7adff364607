"""The decision stage: learning curves, look-alikes from the confusion matrix, and the ship /
fine-tune / replace / collect / collect-evaluation-data / measure rule."""

from preflight.decide.learning_curve import (
    LearningCurveError,
    LearningCurveFit,
    curves_table,
    fit_learning_curve,
    fit_slice_curves,
)
from preflight.decide.lookalikes import find_lookalikes
from preflight.decide.rule import (
    COLLECT,
    EVALUATE,
    FINE_TUNE,
    MEASURE,
    REPLACE,
    SHIP,
    Bar,
    CandidateEvidence,
    CandidateVerdict,
    Decision,
    DecisionInputError,
    OverallDecision,
    TilingResult,
    bar_table,
    decide,
    interval_status,
)
from preflight.stages import FINE_TUNED, OFF_THE_SHELF

__all__ = [
    "COLLECT", "EVALUATE", "FINE_TUNE", "FINE_TUNED", "MEASURE", "OFF_THE_SHELF", "REPLACE",
    "SHIP", "Bar", "find_lookalikes",
    "CandidateEvidence", "CandidateVerdict", "Decision", "DecisionInputError",
    "LearningCurveError", "LearningCurveFit", "OverallDecision", "TilingResult", "bar_table",
    "curves_table", "decide", "fit_learning_curve", "fit_slice_curves", "interval_status",
]
