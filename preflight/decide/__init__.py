"""The decision stage: learning curves, the ship / fine-tune / replace / collect rule."""

from preflight.decide.learning_curve import (
    LearningCurveError,
    LearningCurveFit,
    curves_table,
    fit_learning_curve,
    fit_slice_curves,
)
from preflight.decide.rule import (
    COLLECT,
    FINE_TUNE,
    FINE_TUNED,
    OFF_THE_SHELF,
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

__all__ = [
    "COLLECT", "FINE_TUNE", "FINE_TUNED", "OFF_THE_SHELF", "REPLACE", "SHIP", "Bar",
    "CandidateEvidence", "CandidateVerdict", "Decision", "DecisionInputError",
    "LearningCurveError", "LearningCurveFit", "OverallDecision", "TilingResult", "bar_table",
    "curves_table", "decide", "fit_learning_curve", "fit_slice_curves", "interval_status",
]
