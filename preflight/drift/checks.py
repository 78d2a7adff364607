"""The four drift checks of a batch, which check each drift row belongs to, and the drift rows as
metric time series.

A batch's drift rows (``DRIFT_COLUMNS``) are judged by four checks (:data:`DRIFT_CHECKS`):
input, embedding, prediction and performance drift. A row belongs to ``<kind>_drift``, except the
embedding rows (kind ``input``, a feature named ``embedding...``), which are the embedding check's
(:func:`check_of`). :func:`drift_metrics` names each row as a metric (``drift.<kind>.<feature>``,
plus ``perf.<feature>`` for the current value of a performance row), one time series per
monitored feature. Light on purpose (numpy and pandas): the monitor declares its checks from here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: check -> what it asserts (the monitor's asset checks, in this order)
DRIFT_CHECKS: dict[str, str] = {
    "input_drift": "image properties and slice mix of the batch match the reference set",
    "embedding_drift": "the model's embedding of the batch matches the reference set",
    "prediction_drift": "confidence distribution and predicted class mix are stable",
    "performance_drift": "per-slice metrics of the champion did not drop (intervals disjoint)",
}


def check_of(kind: str, feature: str) -> str:
    """The :data:`DRIFT_CHECKS` check a drift row belongs to (embedding rows are kind
    ``input``)."""
    return "embedding_drift" if str(feature).startswith("embedding") else f"{kind}_drift"


def rows_by_check(drift: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The drift rows split by :data:`DRIFT_CHECKS` check, every check present (an empty frame
    where no row belongs to it)."""
    checks = ([check_of(k, f) for k, f in zip(drift["kind"], drift["feature"], strict=True)]
              if len(drift) else [])
    return {check: drift[[c == check for c in checks]] if len(drift) else drift
            for check in DRIFT_CHECKS}


def drift_metrics(rows: pd.DataFrame) -> dict[str, float]:
    """One batch's drift as metrics ``drift.<kind>.<feature>`` (the PSI, or the statistic: AUC
    for embeddings, the change for performance rows) plus ``perf.<feature>``, the current value
    of a performance row."""
    out = {}
    for r in rows.to_dict("records"):
        value = r["psi"] if np.isfinite(r.get("psi", np.nan)) else r["statistic"]
        out[f"drift.{r['kind']}.{r['feature']}"] = float(value)
        if r["kind"] == "performance" and np.isfinite(r.get("current_value", np.nan)):
            out[f"perf.{r['feature']}"] = float(r["current_value"])
    return out
