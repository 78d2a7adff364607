"""The evaluation engine: predictions and ground truth in, the long metrics table out.

It owns COCO-exact detection metrics (``coco``, ``detection``, ``index``, ``accumulate``,
``kernels``) and classification metrics (``classification``) per slice (``slices``: the long
table, its key columns and the overall sentinel), their uncertainty (``intervals``,
``bootstrap``, ``bootstrap_process``, ``paired``), error decomposition (``errors``), confusion
(``confusion``) and operational cost (``cost``); COCO files in and out (``io``, ``cli``) and random
detection cases for tests and benchmarks (``synthetic``). Framework-free; see docs/CONTRACTS.md.

Names are imported lazily (PEP 562) so that ``preflight.metrics.cli`` stays cheap to import for
``preflight --help``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "classification_confusion": "classification",
    "evaluate_classification": "classification",
    "expected_calibration_error": "classification",
    "STAT_NAMES": "coco",
    "CocoParams": "coco",
    "confusion_matrix": "confusion",
    "confusion_pivot": "confusion",
    "CostModel": "cost",
    "expected_cost": "cost",
    "evaluate_detections": "detection",
    "evaluate_index": "detection",
    "summary_metrics": "detection",
    "ERROR_TYPES": "errors",
    "ErrorAnalysis": "errors",
    "classify_detections": "errors",
    "error_decomposition": "errors",
    "EvaluationIndex": "index",
    "percentile_interval": "intervals",
    "wilson_interval": "intervals",
    "cluster_wilson_interval": "intervals",
    "CocoGroundTruth": "io",
    "MetricsInputError": "io",
    "load_coco_gt": "io",
    "load_coco_results": "io",
    "LONG_COLUMNS": "slices",
    "OVERALL": "slices",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'preflight.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"preflight.metrics.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
