"""The decision stage: from the stored evidence of every candidate to one verdict per candidate
and one overall call (ship / fine-tune / replace / collect / collect evaluation data / measure).

It owns the operational bar and each metrics row held against it (``bar``), a candidate's evidence
(the type every other module reads, and how it is assembled from the stored tables:
``evidence``), learning curves and the images a slice needs (``learning_curve``), look-alike class
pairs from the confusion matrix (``lookalikes``), which model change to propose
(``model_change``), why a failing row fails and where it is routed (``classify_failure``), the
per-candidate before/after tables (``candidate_tables``), the rule itself (``rule``), exported
artefacts held against the same bar (``exports``, ``export_evidence``) and what the decision
hands on: the candidates table, the champion to register and the failing rows with their route
(``outcome``). It reads tables; it trains and evaluates nothing.
"""

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
