"""Performance drift: did the champion get worse on the new labelled batch?

Compares two long metrics tables of the same model (``docs/CONTRACTS.md``): ``baseline`` on the
reference evaluation set and ``current`` on the new batch, row by row on ``(slice_column,
slice_value, metric)`` for the watched metrics. A drop is only called when the intervals say so:

* ``fail`` -- the intervals are disjoint with the current one lower (``current ci_high <
  baseline ci_low``) **and** the point estimate fell by more than ``min_drop``;
* ``warn`` -- the point estimate fell by more than ``min_drop`` but the intervals overlap (or
  one is missing, so the drop cannot be confirmed);
* ``ok`` -- otherwise; and a slice that is thin on either side (too few images or boxes) is
  ``ok`` with ``not enough evidence`` in the detail, whatever its numbers.

Rows are kind ``performance`` with ``feature`` = ``metric`` for the overall rows and
``metric[slice_column=slice_value]`` for slices; ``statistic`` is the change (current - baseline),
``p_value`` and ``psi`` are NaN, ``reference_n`` / ``current_n`` the images behind each estimate.
Slices present on one side only are left out (nothing to compare).
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

import numpy as np
import pandas as pd

from preflight.drift.input import DRIFT_COLUMNS, NOT_ENOUGH, DriftInputError, DriftThresholds
from preflight.metrics.slices import OVERALL

#: Metrics watched by default; shell-style patterns (``recall.*`` = recall of every class).
DEFAULT_WATCHED: tuple[str, ...] = ("recall", "precision", "AP50", "recall.*")
LONG_COLUMNS = ("slice_column", "slice_value", "metric", "value", "ci_low", "ci_high",
                "n_images", "n_boxes", "thin")
PERFORMANCE_COLUMNS: list[str] = DRIFT_COLUMNS + [
    "slice_column", "slice_value", "metric", "baseline_value", "baseline_ci_low",
    "baseline_ci_high", "current_value", "current_ci_low", "current_ci_high", "thin"]
_KEY = ["slice_column", "slice_value", "metric"]


def _check(name: str, table: pd.DataFrame) -> None:
    missing = [c for c in LONG_COLUMNS if c not in table.columns]
    if missing:
        raise DriftInputError(f"{name} metrics table has no column(s) {missing}; expected the "
                              f"long metrics table {list(LONG_COLUMNS)}")


def watched(metrics: Sequence[str], patterns: Sequence[str]) -> list[bool]:
    """Whether each metric name matches one of the watched patterns."""
    return [any(fnmatchcase(m, p) for p in patterns) for m in metrics]


def _level(base: float, cur: float, b_lo: float, c_hi: float, thin: bool,
           t: DriftThresholds) -> tuple[str, str]:
    if thin:
        return "ok", f"{NOT_ENOUGH}: thin slice (too few images or boxes on one side)"
    if not (np.isfinite(base) and np.isfinite(cur)):
        return "ok", f"{NOT_ENOUGH}: metric undefined on one side"
    drop = base - cur
    if drop <= t.min_drop:
        return "ok", ("improved" if drop < -t.min_drop else
                      f"within {t.min_drop:g} of baseline")
    if np.isfinite(b_lo) and np.isfinite(c_hi):
        if c_hi < b_lo:
            return "fail", f"dropped {drop:.3f}; intervals disjoint (current high < baseline low)"
        return "warn", f"dropped {drop:.3f} but the intervals overlap"
    return "warn", f"dropped {drop:.3f}; no intervals to confirm it"


def performance_drift(baseline: pd.DataFrame, current: pd.DataFrame, *,
                      metrics: Sequence[str] = DEFAULT_WATCHED,
                      thresholds: DriftThresholds | None = None) -> pd.DataFrame:
    """Per-slice metric drops between two long metrics tables (``PERFORMANCE_COLUMNS``)."""
    _check("baseline", baseline)
    _check("current", current)
    t = thresholds or DriftThresholds()
    cols = list(LONG_COLUMNS)
    b = baseline.loc[watched(baseline["metric"].astype(str).tolist(), metrics), cols].copy()
    c = current.loc[watched(current["metric"].astype(str).tolist(), metrics), cols].copy()
    for name, frame in (("baseline", b), ("current", c)):
        frame[_KEY] = frame[_KEY].astype(str)
        dup = frame.duplicated(_KEY)
        if dup.any():
            first = frame.loc[dup, _KEY].iloc[0].tolist()
            raise DriftInputError(f"{name} metrics table has {int(dup.sum())} duplicate "
                                  f"(slice_column, slice_value, metric) rows, e.g. {first}")
    m = b.merge(c, on=_KEY, how="inner", suffixes=("_b", "_c"))
    rows = []
    for r in m.itertuples(index=False):
        thin = bool(r.thin_b) or bool(r.thin_c)
        level, why = _level(r.value_b, r.value_c, r.ci_low_b, r.ci_high_c, thin, t)
        feature = (r.metric if r.slice_column == OVERALL
                   else f"{r.metric}[{r.slice_column}={r.slice_value}]")
        detail = (f"{why}: {r.value_b:.3f} [{r.ci_low_b:.3f}, {r.ci_high_b:.3f}] -> "
                  f"{r.value_c:.3f} [{r.ci_low_c:.3f}, {r.ci_high_c:.3f}] "
                  f"(images {r.n_images_b} -> {r.n_images_c}, boxes {r.n_boxes_b} -> "
                  f"{r.n_boxes_c})")
        rows.append({
            "kind": "performance", "feature": feature, "statistic": r.value_c - r.value_b,
            "p_value": np.nan, "psi": np.nan, "reference_n": r.n_images_b,
            "current_n": r.n_images_c, "level": level, "detail": detail,
            "slice_column": r.slice_column, "slice_value": r.slice_value, "metric": r.metric,
            "baseline_value": r.value_b, "baseline_ci_low": r.ci_low_b,
            "baseline_ci_high": r.ci_high_b, "current_value": r.value_c,
            "current_ci_low": r.ci_low_c, "current_ci_high": r.ci_high_c, "thin": thin})
    out = pd.DataFrame(rows, columns=PERFORMANCE_COLUMNS)
    floats = ["statistic", "p_value", "psi", "baseline_value", "baseline_ci_low",
              "baseline_ci_high", "current_value", "current_ci_low", "current_ci_high"]
    return out.astype({**dict.fromkeys(floats, np.float64), "reference_n": np.int64,
                       "current_n": np.int64, "thin": bool, "kind": str, "feature": str,
                       "level": str, "detail": str})


__all__ = ["performance_drift", "DEFAULT_WATCHED", "PERFORMANCE_COLUMNS", "watched"]
