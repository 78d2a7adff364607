"""Stress suite: edge-case corruptions as deterministic albumentations pipelines, and rPC.

See :mod:`preflight.stress.suite` for the families / corruptions / severities and
:mod:`preflight.stress.evaluate` for running a detector over them. Importing this package
imports albumentations (the custom transforms subclass its own), through
:func:`preflight.environment.import_albumentations`; the rest of the library imports the package
only where it runs the suite.
"""

from preflight.stress.evaluate import (
    GT_COLUMNS,
    RESULT_COLUMNS,
    prediction_array,
    predictions_frame,
    stress_evaluate,
    summarize_rpc,
)
from preflight.stress.suite import (
    FAMILIES,
    GEOMETRIC,
    MAX_SEVERITY,
    SEVERITY_PARAMS,
    Corruption,
    StressedSample,
    apply,
    build_pipeline,
    default_suite,
    derive_seed,
    iter_stressed,
    occluded_fractions,
    sanitize_boxes,
)
from preflight.stress.transforms import BoxOcclusion, DirtyLens, FlickerBanding

__all__ = [
    "FAMILIES",
    "GEOMETRIC",
    "GT_COLUMNS",
    "MAX_SEVERITY",
    "RESULT_COLUMNS",
    "SEVERITY_PARAMS",
    "BoxOcclusion",
    "Corruption",
    "DirtyLens",
    "FlickerBanding",
    "StressedSample",
    "apply",
    "build_pipeline",
    "default_suite",
    "derive_seed",
    "iter_stressed",
    "occluded_fractions",
    "prediction_array",
    "predictions_frame",
    "sanitize_boxes",
    "stress_evaluate",
    "summarize_rpc",
]
