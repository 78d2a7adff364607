"""Operational cost of a candidate at its operating point, in money per day.

``daily = FP/frame × frames/day × operator minutes per FP × cost per minute
        + Σ_class FN_class/frame × frames/day × cost per missed object of that class``

FP are the non-ignored false positives scoring at least the operating threshold (IoU 0.5, area
all, maxDets 100), FN the non-crowd boxes not detected at that point; "frame" is an evaluated
image. Computed overall and per slice value; with ``bootstrap > 0`` image-level percentile
intervals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from preflight.metrics.detection import DEFAULT_MIN_BOXES, DEFAULT_MIN_IMAGES
from preflight.metrics.index import EvaluationIndex
from preflight.metrics.intervals import percentile_interval, resample_weights, slice_rng
from preflight.metrics.slices import LongTable, class_metric


@dataclass(frozen=True)
class CostModel:
    """Cost parameters (the ``cost:`` section of the settings; same field names).

    ``cost_per_missed_object`` maps class name to the cost of one missed object; its
    ``"default"`` entry covers the classes not listed.
    """

    operator_minutes_per_false_positive: float = 0.5
    cost_per_operator_minute: float = 1.0
    cost_per_missed_object: Mapping[str, float] = field(
        default_factory=lambda: {"default": 5.0})
    frames_per_day: float = 50_000

    def __post_init__(self) -> None:
        for name in ("operator_minutes_per_false_positive", "cost_per_operator_minute",
                     "frames_per_day"):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"cost model: {name} must be a finite number >= 0, got {v!r}")
        costs = {str(k): float(v) for k, v in dict(self.cost_per_missed_object).items()}
        bad = {k: v for k, v in costs.items() if not np.isfinite(v) or v < 0}
        if bad:
            raise ValueError(f"cost model: costs per missed object must be >= 0, got {bad}")
        object.__setattr__(self, "cost_per_missed_object", MappingProxyType(costs))

    @classmethod
    def from_settings(cls, settings: Any) -> CostModel:
        """From a settings object (``preflight.config.CostSettings``) or a mapping."""
        names = [f for f in cls.__dataclass_fields__]
        if isinstance(settings, Mapping):
            unknown = set(settings) - set(names)
            if unknown:
                raise ValueError(f"cost model: unknown keys {sorted(unknown)}")
            return cls(**dict(settings))
        return cls(**{n: getattr(settings, n) for n in names if hasattr(settings, n)})

    def miss_cost(self, class_name: str) -> float:
        costs = self.cost_per_missed_object
        if class_name in costs:
            return costs[class_name]
        if "default" in costs:
            return costs["default"]
        raise ValueError(f"cost model: no cost per missed object for class {class_name!r} "
                         "and no 'default' entry")

    @property
    def cost_per_false_positive(self) -> float:
        return self.operator_minutes_per_false_positive * self.cost_per_operator_minute


def _cost_metrics(model: CostModel, miss: np.ndarray, fp, fn, n_frames):
    """Metric arrays from FP counts ``(...,)`` and FN counts ``(..., K)`` over ``n_frames``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        fp_pf = np.asarray(fp, dtype=np.float64) / n_frames
        fn_pf_k = np.asarray(fn, dtype=np.float64) / np.asarray(n_frames)[..., None]
    fp_daily = fp_pf * model.frames_per_day * model.cost_per_false_positive
    fn_daily_k = fn_pf_k * model.frames_per_day * miss
    fn_daily = fn_daily_k.sum(-1)
    return {"fp_per_frame": fp_pf, "fn_per_frame": fn_pf_k.sum(-1), "cost.fp_daily": fp_daily,
            "cost.fn_daily": fn_daily, "cost.daily": fp_daily + fn_daily,
            "_fn_pf_k": fn_pf_k, "_fn_daily_k": fn_daily_k}


def expected_cost(index: EvaluationIndex, cost: CostModel, *,
                  slice_columns: list[str] | None = None, operating_threshold: float = 0.25,
                  bootstrap: int = 0, seed: int = 0, min_images: int = DEFAULT_MIN_IMAGES,
                  min_boxes: int = DEFAULT_MIN_BOXES) -> pd.DataFrame:
    """Long table per slice: ``fp_per_frame``, ``fn_per_frame``, ``fn_per_frame.<class>``,
    ``cost.fp_daily``, ``cost.fn_daily``, ``cost.fn_daily.<class>``, ``cost.daily``."""
    miss = np.array([cost.miss_cost(c) for c in index.class_names])
    tpc, fpc, pos = index.op_counts(operating_threshold)
    fp_img = fpc.sum(1)
    fn_img = pos - tpc                                          # (N, K)
    table = LongTable()
    for s in index.image_slices(slice_columns):
        n = int(s.mask.sum())
        n_box = int(pos[s.mask].sum())
        point = _cost_metrics(cost, miss, fp_img[s.mask].sum(), fn_img[s.mask].sum(0), n)
        ci: dict[str, tuple] = {}
        if bootstrap and n:
            W = resample_weights(slice_rng(seed, "cost", s.column, s.value), n, bootstrap)
            boot = _cost_metrics(cost, miss, W @ fp_img[s.mask], W @ fn_img[s.mask], n)
            for k, v in boot.items():
                ci[k] = percentile_interval(v, np.atleast_1d(point[k]).reshape(-1))
        for name in ("fp_per_frame", "fn_per_frame", "cost.fp_daily", "cost.fn_daily",
                     "cost.daily"):
            lo, hi = ci.get(name, ([np.nan], [np.nan]))
            table.add(s.column, s.value, name, point[name], lo[0], hi[0], n, n_box)
        for k, cname in enumerate(index.class_names):
            nb = int(pos[s.mask, k].sum())
            for name, key in (("fn_per_frame", "_fn_pf_k"), ("cost.fn_daily", "_fn_daily_k")):
                lo, hi = ci.get(key, (np.full(len(miss), np.nan),) * 2)
                table.add(s.column, s.value, class_metric(name, cname), point[key][k], lo[k], hi[k],
                          n, nb)
    return table.frame(min_images, min_boxes)
