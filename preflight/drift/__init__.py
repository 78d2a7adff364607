"""Drift monitoring: is a production batch still the data (and the model) that was validated?

Each check returns rows of one table (``DRIFT_COLUMNS``: ``kind, feature, statistic, p_value,
psi, reference_n, current_n, level, detail``) with ``level`` in ``ok | warn | fail``:

* :func:`input_drift` -- pixel properties (KS + PSI) and slice mix (chi-square + PSI);
* :func:`embedding_drift` -- model (or colour-histogram) embeddings: PCA, component KS and a
  domain-classifier AUC;
* :func:`prediction_drift` -- confidence distribution and predicted class mix;
* :func:`performance_drift` -- per-slice metric drops, called only when intervals are disjoint.

:func:`summarise` gives the verdict; :func:`history_rows` / :func:`append_history` keep a
per-batch Parquet history and :func:`drift_timeseries_chart` draws it. The rows fall into four
checks (:data:`DRIFT_CHECKS`, :func:`check_of`, :mod:`preflight.drift.checks`).

Import-light: the names load from their module on first use (scikit-learn, scipy and matplotlib
only when a check or the chart needs them), so declaring the checks costs nothing.
"""

from importlib import import_module

#: public name -> the module of this package that defines it
_WHERE: dict[str, str] = {
    "colour_histogram_embedding": "embedding",
    "domain_classifier_auc": "embedding",
    "embed_images": "embedding",
    "embedding_drift": "embedding",
    "DEFAULT_CATEGORICAL": "input",
    "DRIFT_COLUMNS": "input",
    "LEVELS": "input",
    "DriftInputError": "input",
    "DriftThresholds": "input",
    "categorical_drift": "input",
    "category_psi": "input",
    "input_drift": "input",
    "numeric_drift": "input",
    "psi": "input",
    "psi_from_shares": "input",
    "psi_level": "input",
    "DEFAULT_WATCHED": "performance",
    "PERFORMANCE_COLUMNS": "performance",
    "performance_drift": "performance",
    "prediction_drift": "prediction",
    "HISTORY_COLUMNS": "report",
    "append_history": "report",
    "drift_timeseries_chart": "report",
    "history_rows": "report",
    "summarise": "report",
    "worst_level": "report",
    "DRIFT_CHECKS": "checks",
    "check_of": "checks",
    "drift_metrics": "checks",
    "rows_by_check": "checks",
}


def __getattr__(name: str):
    """Load a public name from its module on first use (then it is an ordinary attribute)."""
    if name not in _WHERE:
        raise AttributeError(f"module 'preflight.drift' has no attribute {name!r}")
    value = getattr(import_module(f"preflight.drift.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_CATEGORICAL", "DEFAULT_WATCHED", "DRIFT_CHECKS", "DRIFT_COLUMNS",
    "DriftInputError", "DriftThresholds", "HISTORY_COLUMNS", "LEVELS", "PERFORMANCE_COLUMNS",
    "append_history", "categorical_drift", "category_psi", "check_of",
    "colour_histogram_embedding", "domain_classifier_auc", "drift_metrics",
    "drift_timeseries_chart", "embed_images", "embedding_drift", "history_rows", "input_drift",
    "numeric_drift", "performance_drift", "prediction_drift", "psi", "psi_from_shares",
    "psi_level", "rows_by_check", "summarise", "worst_level",
]
