"""Prediction drift: has what the model says changed, before any label arrives?

Two rows (kind ``prediction``), levels as for input drift (``preflight.drift.input``):

* ``score`` -- the confidence distribution of all detections (KS + quantile-bin PSI). A model
  that grows unsure on new frames moves this first.
* ``class_mix`` -- the predicted class shares among detections at or above the operating
  threshold (chi-square + PSI over the union of classes seen on either side). A class the
  reference never predicted (a new SKU mistaken for a known one, or a new class) shows here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from preflight.drift.input import (
    DriftInputError,
    DriftThresholds,
    categorical_drift,
    drift_frame,
    numeric_drift,
)

PREDICTION_COLUMNS = ("image_id", "class_id", "score")


def _check(name: str, predictions: pd.DataFrame) -> None:
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise DriftInputError(f"{name} predictions have no column(s) {missing}; expected "
                              f"{list(PREDICTION_COLUMNS)} (got {list(predictions.columns)})")


def _class_labels(class_ids: pd.Series,
                  class_names: Mapping[int, str] | Sequence[str] | None) -> pd.Series:
    ids = pd.to_numeric(class_ids, errors="coerce").astype("Int64")
    if class_names is None:
        return ids.astype(str)
    names = dict(enumerate(class_names)) if not isinstance(class_names, Mapping) else class_names
    return ids.map(lambda k: names.get(int(k), str(k)) if pd.notna(k) else None)


def prediction_drift(reference: pd.DataFrame, current: pd.DataFrame, *,
                     operating_threshold: float = 0.25,
                     class_names: Mapping[int, str] | Sequence[str] | None = None,
                     group_column: str | None = "image_id", seed: int = 0,
                     thresholds: DriftThresholds | None = None) -> pd.DataFrame:
    """Drift of a model's predictions on the batch against its predictions on the reference set.

    Both frames hold one detection per row with at least ``image_id, class_id, score``.
    ``class_names`` (id -> name, or a sequence indexed by id) only makes the detail readable.
    Detections of one image are not independent: evidence is counted in ``group_column`` groups
    (default the image; a ``group_id`` column merged in makes it the burst) and p-values come
    from permuting whole groups (see ``preflight.drift.input``); ``None`` counts detections.
    """
    _check("reference", reference)
    _check("current", current)
    t = thresholds or DriftThresholds()
    if group_column is not None:
        for name, frame in (("reference", reference), ("current", current)):
            if group_column not in frame.columns:
                raise DriftInputError(f"{name} predictions have no group column "
                                      f"{group_column!r}; pass group_column=None to count "
                                      "detections as independent")

    def groups(frame: pd.DataFrame):
        return None if group_column is None else frame[group_column]

    score = numeric_drift(reference["score"], current["score"], "score", kind="prediction",
                          thresholds=t, reference_groups=groups(reference),
                          current_groups=groups(current), seed=seed)
    score["detail"] = f"all detections: {score['detail']}"
    ref_kept = reference[pd.to_numeric(reference["score"], errors="coerce")
                         >= operating_threshold]
    cur_kept = current[pd.to_numeric(current["score"], errors="coerce") >= operating_threshold]
    mix = categorical_drift(_class_labels(ref_kept["class_id"], class_names),
                            _class_labels(cur_kept["class_id"], class_names), "class_mix",
                            kind="prediction", thresholds=t, what="detections",
                            reference_groups=groups(ref_kept), current_groups=groups(cur_kept),
                            seed=seed)
    mix["detail"] = f"detections with score >= {operating_threshold:g}: {mix['detail']}"
    return drift_frame([score, mix])


__all__ = ["prediction_drift", "PREDICTION_COLUMNS"]
