"""Drift monitoring: is a production batch still the data (and the model) that was validated?

Each check returns rows of one table (``DRIFT_COLUMNS``: ``kind, feature, statistic, p_value,
psi, reference_n, current_n, level, detail``) with ``level`` in ``ok | warn | fail``:

* :func:`input_drift` -- pixel properties (KS + PSI) and slice mix (chi-square + PSI);
* :func:`embedding_drift` -- model (or colour-histogram) embeddings: PCA, component KS and a
  domain-classifier AUC;
* :func:`prediction_drift` -- confidence distribution and predicted class mix;
* :func:`performance_drift` -- per-slice metric drops, called only when intervals are disjoint.

:func:`summarise` gives the verdict; :func:`history_rows` / :func:`append_history` keep a
per-batch Parquet history and :func:`drift_timeseries_chart` draws it.
"""

from preflight.drift.embedding import (
    colour_histogram_embedding,
    domain_classifier_auc,
    embed_images,
    embedding_drift,
)
from preflight.drift.input import (
    DEFAULT_CATEGORICAL,
    DRIFT_COLUMNS,
    LEVELS,
    DriftInputError,
    DriftThresholds,
    categorical_drift,
    category_psi,
    input_drift,
    numeric_drift,
    psi,
    psi_from_shares,
    psi_level,
)
from preflight.drift.performance import DEFAULT_WATCHED, PERFORMANCE_COLUMNS, performance_drift
from preflight.drift.prediction import prediction_drift
from preflight.drift.report import (
    HISTORY_COLUMNS,
    append_history,
    drift_timeseries_chart,
    history_rows,
    summarise,
    worst_level,
)

__all__ = [
    "DEFAULT_CATEGORICAL", "DEFAULT_WATCHED", "DRIFT_COLUMNS", "HISTORY_COLUMNS", "LEVELS",
    "PERFORMANCE_COLUMNS", "DriftInputError", "DriftThresholds", "append_history",
    "categorical_drift", "category_psi", "colour_histogram_embedding", "domain_classifier_auc",
    "drift_timeseries_chart", "embed_images", "embedding_drift", "history_rows", "input_drift",
    "numeric_drift", "performance_drift", "prediction_drift", "psi", "psi_from_shares",
    "psi_level", "summarise", "worst_level",
]
