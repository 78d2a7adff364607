"""The operational bar, and each row of a long metrics table held against it.

A row passes if its 95% interval clears the bar (``ci_low >= bar``), fails if it lies wholly
below it (``ci_high < bar``), and otherwise (or when the slice is thin) has not enough evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from preflight.config import BarSettings
from preflight.metrics.slices import OVERALL, is_class_metric, metric_parts_column

PASS, FAIL, NOT_ENOUGH = "pass", "fail", "not enough evidence"
KEY = ["slice_column", "slice_value", "metric"]
REQUIRED_COLUMNS = ("slice_column", "slice_value", "metric", "value", "ci_low", "ci_high", "thin")


_SETTINGS_DEFAULTS = BarSettings()


class DecisionInputError(ValueError):
    """The decision inputs are inconsistent (missing columns, duplicate rows, bad numbers)."""


@dataclass(frozen=True)
class Bar:
    """The operational bar (``config.BarSettings``) plus the architecture thresholds."""

    # the operational bar's defaults are ``config.BarSettings``'s (one place)
    min_recall: Mapping[str, float] = field(
        default_factory=lambda: dict(_SETTINGS_DEFAULTS.min_recall))
    min_precision: Mapping[str, float] = field(
        default_factory=lambda: dict(_SETTINGS_DEFAULTS.min_precision))
    min_slice_recall: float = _SETTINGS_DEFAULTS.min_slice_recall
    latency_budget_p99_ms: float = _SETTINGS_DEFAULTS.latency_budget_p99_ms
    daily_cost_ceiling: float | None = _SETTINGS_DEFAULTS.daily_cost_ceiling
    labelling_budget_images: int = _SETTINGS_DEFAULTS.labelling_budget_images
    #: objects whose side (sqrt of area) at model input is below this many pixels count as
    #: architecture-bound (``decision.small_object_px``)
    small_object_px: float = 16.0
    #: fine-tuning "improved" a row when its value rose by at least this much and the fine-tuned
    #: interval excludes the off-the-shelf value (``decision.min_improvement``)
    min_improvement: float = 0.05
    #: classes that differ only by a small detail (``decision.lookalike_pairs``; default none)
    lookalike_pairs: tuple[tuple[str, str], ...] = ()
    #: a class pair is a look-alike when this share of one's boxes is detected as the other
    #: (``decision.lookalike_share``)
    lookalike_share: float = 0.1
    #: slices (``column=value``) that need enough evidence before anything ships
    #: (``decision.critical_slices``)
    critical_slices: tuple[str, ...] = ()
    #: a trained model's value moves by about this much between re-runs; a fine-tuned row whose
    #: interval widened by it reaches across the bar is close (``decision.training_noise``)
    training_noise: float = 0.03
    #: stress family -> the severity production is expected to reach (``stress.expected_severity``)
    expected_severity: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("min_recall", "min_precision"):
            if "default" not in getattr(self, name):
                raise DecisionInputError(f"bar.{name} needs a 'default' entry")
        if not 0.0 < self.lookalike_share < 1.0:
            raise DecisionInputError("decision.lookalike_share must be in (0, 1), got "
                                     f"{self.lookalike_share}")
        if self.training_noise < 0:
            raise DecisionInputError("decision.training_noise must be >= 0, got "
                                     f"{self.training_noise}")
        bad = [s for s in self.critical_slices if "=" not in str(s)]
        if bad:
            raise DecisionInputError(f"decision.critical_slices entries are 'column=value', got "
                                     f"{bad}")

    @classmethod
    def from_settings(cls, settings: Any, decision: Any = None, *,
                      lookalike_pairs: tuple[tuple[str, str], ...] | None = None,
                      stress: Any = None) -> Bar:
        """From ``config.BarSettings`` plus ``small_object_px``/``min_improvement``/
        ``lookalike_share``/``training_noise``/``critical_slices`` from
        ``config.DecisionSettings`` and ``expected_severity`` from ``config.StressSettings``
        (defaults when None); ``lookalike_pairs`` from ``decision.lookalike_pairs`` unless given."""
        if lookalike_pairs is None:
            lookalike_pairs = tuple(tuple(p) for p in getattr(decision, "lookalike_pairs", ()))
        extra: dict[str, Any] = {
            k: float(getattr(decision, k)) for k in ("small_object_px", "min_improvement",
                                                     "lookalike_share", "training_noise")
            if decision is not None and hasattr(decision, k)}
        if decision is not None and hasattr(decision, "critical_slices"):
            extra["critical_slices"] = tuple(decision.critical_slices)
        if stress is not None and hasattr(stress, "expected_severity"):
            extra["expected_severity"] = dict(stress.expected_severity)
        return cls(min_recall=dict(settings.min_recall),
                   min_precision=dict(settings.min_precision),
                   min_slice_recall=float(settings.min_slice_recall),
                   latency_budget_p99_ms=float(settings.latency_budget_p99_ms),
                   daily_cost_ceiling=settings.daily_cost_ceiling,
                   labelling_budget_images=int(settings.labelling_budget_images),
                   lookalike_pairs=tuple(lookalike_pairs), **extra)

    def lookalike_of(self, class_name: str) -> str | None:
        for a, b in self.lookalike_pairs:
            if class_name in (a, b):
                return b if class_name == a else a
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"min_recall": dict(self.min_recall), "min_precision": dict(self.min_precision),
                "min_slice_recall": self.min_slice_recall,
                "latency_budget_p99_ms": self.latency_budget_p99_ms,
                "daily_cost_ceiling": self.daily_cost_ceiling,
                "labelling_budget_images": self.labelling_budget_images,
                "small_object_px": self.small_object_px,
                "min_improvement": self.min_improvement,
                "lookalike_pairs": [list(p) for p in self.lookalike_pairs],
                "lookalike_share": self.lookalike_share,
                "critical_slices": list(self.critical_slices),
                "training_noise": self.training_noise,
                "expected_severity": dict(self.expected_severity)}


# ---------------------------------------------------------------- evaluation against the bar


def bar_table(long: pd.DataFrame, bar: Bar, *, what: str = "metrics table") -> pd.DataFrame:
    """The rows of a long metrics table that have a bar, with ``bar`` and ``status`` columns.

    Overall rows: ``recall``/``precision`` (default bars) and ``recall.<class>``/
    ``precision.<class>`` (per-class bars); slice rows: ``recall`` (``min_slice_recall``).
    """
    _check_long(long, what)
    base, cls = metric_parts_column(long["metric"])
    cls = cls.fillna("default")
    overall = long["slice_column"] == OVERALL
    rec = cls.map(lambda c: bar.min_recall.get(c, bar.min_recall["default"]))
    prec = cls.map(lambda c: bar.min_precision.get(c, bar.min_precision["default"]))
    threshold = np.select(
        [overall & (base == "recall"), overall & (base == "precision"),
         ~overall & (long["metric"] == "recall")],
        [rec.to_numpy(dtype=float), prec.to_numpy(dtype=float), bar.min_slice_recall],
        default=np.nan)
    out = long.assign(bar=threshold)[np.isfinite(threshold)].copy()
    for col in ("n_images", "n_boxes"):
        if col not in out.columns:
            out[col] = pd.NA
    out["status"] = interval_status(out["ci_low"], out["ci_high"], out["bar"], out["thin"])
    return out.reset_index(drop=True)


def interval_status(ci_low: pd.Series, ci_high: pd.Series, bar: pd.Series,
                    thin: pd.Series) -> np.ndarray:
    """pass if ci_low >= bar, fail if ci_high < bar, else (or thin / no interval) not enough."""
    lo, hi, b = (np.asarray(x, dtype=float) for x in (ci_low, ci_high, bar))
    usable = ~np.asarray(thin, dtype=bool) & np.isfinite(lo) & np.isfinite(hi)
    return np.select([usable & (lo >= b), usable & (hi < b)], [PASS, FAIL], default=NOT_ENOUGH)


def _check_long(long: pd.DataFrame, what: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in long.columns]
    if missing:
        raise DecisionInputError(f"{what}: missing columns {missing} (the long metrics table "
                                 f"has {list(REQUIRED_COLUMNS)} plus n_images, n_boxes)")
    dup = long.duplicated(KEY)
    if dup.any():
        first = long.loc[dup, KEY].iloc[0].tolist()
        raise DecisionInputError(f"{what}: duplicate rows for (slice_column, slice_value, "
                                 f"metric) {first}")


def required_rows(table: pd.DataFrame, bar: Bar) -> pd.Series:
    """Rows that need enough evidence before anything ships: every operational class (its
    overall per-class rows) and every critical slice."""
    per_class = (table["slice_column"] == OVERALL) & is_class_metric(table["metric"])
    where = table["slice_column"].astype(str) + "=" + table["slice_value"].astype(str)
    return per_class | where.isin(set(bar.critical_slices))


def evidence_gap_rows(table: pd.DataFrame, bar: Bar, suffix: str = "") -> pd.DataFrame:
    """The required rows (:func:`required_rows`) without enough evidence, from a bar table
    (``suffix``: the stage suffix of its ``value`` / ``status`` columns in a wide table). A
    per-class precision without any detection of the class is undefined, not missing evidence:
    its recall row (0, or no boxes) already says what is missing."""
    base, cls = metric_parts_column(table["metric"])
    undefined = (base == "precision") & cls.notna() & table[f"value{suffix}"].isna()
    return table[required_rows(table, bar) & (table[f"status{suffix}"] == NOT_ENOUGH)
                 & ~undefined]
