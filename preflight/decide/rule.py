"""The decision rule: ship off-the-shelf, fine-tune, replace, or collect more data first.

Each (candidate, stage, slice, metric) row of the long metrics tables is held against the bar
through its 95% interval: ``pass`` if ``ci_low >= bar``, ``fail`` if ``ci_high < bar``, otherwise
(or when the slice is thin) ``not enough evidence``. A failing slice is ``data-solvable`` (routed
to data collection, sized by its learning curve) or ``architecture-bound`` (routed to a model
change), by the strongest evidence first: a size slice whose objects are all below the pixel
threshold at model input; its learning curve (reaches the bar within the labelling budget, or
levels off); a significant fine-tuning gain (data-solvable); then a size slice partly below the
threshold, a look-alike class, heavy occlusion (architecture-bound); otherwise data-solvable (the
article's default for lighting, noise, occlusion patterns, class imbalance). The overall call picks
the lightest candidate that ships (ties: daily cost, then p99 latency, then name).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from preflight.decide.learning_curve import LearningCurveFit, curves_table
from preflight.taxonomy import LOOKALIKE_PAIRS

OVERALL = "__all__"
OFF_THE_SHELF, FINE_TUNED = "off-the-shelf", "fine-tuned"
SHIP, FINE_TUNE, REPLACE, COLLECT = ("ship off-the-shelf", "fine-tune", "replace",
                                     "collect more data first")
PASS, FAIL, NOT_ENOUGH = "pass", "fail", "not enough evidence"
DATA_SOLVABLE, ARCHITECTURE_BOUND = "data-solvable", "architecture-bound"
ROUTE_DATA, ROUTE_MODEL, ROUTE_FINETUNE = "data collection", "model change", "fine-tune"
KEY = ["slice_column", "slice_value", "metric"]
REQUIRED_COLUMNS = ("slice_column", "slice_value", "metric", "value", "ci_low", "ci_high", "thin")
#: object side range (px, sqrt of area) of each COCO size bin
SIZE_BIN_SIDE = {"small": (0.0, 32.0), "medium": (32.0, 96.0), "large": (96.0, math.inf)}
SLICE_COLUMNS = ["candidate", "stage", *KEY, "value", "ci_low", "ci_high", "n_images", "n_boxes",
                 "thin", "bar", "status", "fixed_by_finetune", "improved_by_finetune",
                 "failure_kind", "basis", "route", "remedy", "images_needed",
                 "images_needed_low", "images_needed_high"]


class DecisionInputError(ValueError):
    """The decision inputs are inconsistent (missing columns, duplicate rows, bad numbers)."""


@dataclass(frozen=True)
class Bar:
    """The operational bar (``config.BarSettings``) plus the architecture thresholds."""

    min_recall: Mapping[str, float] = field(default_factory=lambda: {"default": 0.6})
    min_precision: Mapping[str, float] = field(default_factory=lambda: {"default": 0.5})
    min_slice_recall: float = 0.5
    latency_budget_p99_ms: float = 250.0
    daily_cost_ceiling: float | None = None
    labelling_budget_images: int = 2000
    #: objects whose side (sqrt of area) at model input is below this many pixels count as
    #: architecture-bound (``decision.small_object_px``)
    small_object_px: float = 16.0
    #: fine-tuning "improved" a row when its value rose by at least this much and the fine-tuned
    #: interval excludes the off-the-shelf value (``decision.min_improvement``)
    min_improvement: float = 0.05
    lookalike_pairs: tuple[tuple[str, str], ...] = LOOKALIKE_PAIRS

    def __post_init__(self) -> None:
        for name in ("min_recall", "min_precision"):
            if "default" not in getattr(self, name):
                raise DecisionInputError(f"bar.{name} needs a 'default' entry")

    @classmethod
    def from_settings(cls, settings: Any, decision: Any = None, *,
                      lookalike_pairs: tuple[tuple[str, str], ...] = LOOKALIKE_PAIRS) -> Bar:
        """From ``config.BarSettings`` plus ``small_object_px``/``min_improvement`` from
        ``config.DecisionSettings`` (defaults when ``decision`` is None)."""
        extra = {k: float(getattr(decision, k)) for k in ("small_object_px", "min_improvement")
                 if decision is not None and hasattr(decision, k)}
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
                "lookalike_pairs": [list(p) for p in self.lookalike_pairs]}


@dataclass(frozen=True)
class TilingResult:
    """Small-object recall when the frame is tiled, and the p99 latency tiling adds."""

    recall: float
    ci_low: float
    ci_high: float
    extra_latency_p99_ms: float
    tiles: str = "2x2"


@dataclass(frozen=True)
class CandidateEvidence:
    """Everything the rule knows about one candidate model.

    ``offtheshelf``/``finetuned`` are long metrics tables; ``learning_curves`` is keyed by
    ``(slice_column, slice_value, metric)`` (see ``fit_slice_curves``); ``image_size`` is the long
    side of production frames (to translate ``size_bin`` to pixels at model input; ``None``: the
    frames are fed at ``input_size``); ``size_rank`` orders models by weight (0 = lightest).
    """

    name: str
    offtheshelf: pd.DataFrame
    latency_p99_ms: float
    finetuned: pd.DataFrame | None = None
    latency_p99_ms_finetuned: float | None = None
    daily_cost: float | None = None
    daily_cost_finetuned: float | None = None
    no_analog_classes: tuple[str, ...] = ()
    input_size: int = 640
    image_size: int | None = None
    family: str = ""
    size_rank: int = 0
    learning_curves: Mapping[tuple[str, str, str], LearningCurveFit] = field(default_factory=dict)
    tiling: TilingResult | None = None
    finetune_pool_images: int | None = None

    def latency(self, stage: str) -> float:
        if stage == FINE_TUNED and self.latency_p99_ms_finetuned is not None:
            return float(self.latency_p99_ms_finetuned)
        return float(self.latency_p99_ms)

    def cost(self, stage: str) -> float:
        value = self.daily_cost_finetuned if stage == FINE_TUNED else self.daily_cost
        return float("nan") if value is None else float(value)


@dataclass(frozen=True)
class CandidateVerdict:
    """One candidate's outcome at its decisive stage, with the reasons in plain words."""

    name: str
    verdict: str
    stage: str
    reasons: tuple[str, ...]
    family: str
    size_rank: int
    latency_p99_ms: float
    daily_cost: float
    data_to_use: tuple[str, ...] = ()
    replacement: tuple[str, ...] = ()
    images_needed: float = float("nan")
    n_pass: int = 0
    n_fail: int = 0
    n_not_enough: int = 0

    @property
    def ships(self) -> bool:
        return self.verdict in (SHIP, FINE_TUNE)

    def sort_key(self) -> tuple[int, float, float, str]:
        """Lightest first; ties by daily cost (unknown last), p99 latency, name."""
        cost = self.daily_cost if np.isfinite(self.daily_cost) else math.inf
        return (self.size_rank, cost, self.latency_p99_ms, self.name)


@dataclass(frozen=True)
class OverallDecision:
    verdict: str
    candidate: str | None
    stage: str | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    """The call, per-candidate outcomes, the per-slice evidence and the learning curves."""

    overall: OverallDecision
    candidates: tuple[CandidateVerdict, ...]
    slices: pd.DataFrame
    curves: pd.DataFrame
    bar: Bar

    def candidate(self, name: str) -> CandidateVerdict:
        for c in self.candidates:
            if c.name == name:
                return c
        raise KeyError(f"no candidate {name!r}; have {[c.name for c in self.candidates]}")

    @property
    def fixed(self) -> pd.DataFrame:
        """Slices that failed off-the-shelf and pass after fine-tuning (fine-tuned rows)."""
        s = self.slices
        return s[(s["stage"] == FINE_TUNED) & (s["fixed_by_finetune"] == True)]  # noqa: E712

    @property
    def not_fixed(self) -> pd.DataFrame:
        """Slices that failed off-the-shelf and do not pass after fine-tuning (fine-tuned rows)."""
        s = self.slices
        return s[(s["stage"] == FINE_TUNED) & (s["fixed_by_finetune"] == False)]  # noqa: E712

    @property
    def not_enough_evidence(self) -> pd.DataFrame:
        return self.slices[self.slices["status"] == NOT_ENOUGH]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: NaN -> None, inf -> "inf"."""
        return _json_safe({
            "overall": vars(self.overall),
            "candidates": [vars(c) for c in self.candidates],
            "bar": self.bar.to_dict(),
            "slices": self.slices.astype(object).to_dict(orient="records"),
            "curves": self.curves.astype(object).to_dict(orient="records"),
        })


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if obj is None or obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return "inf" if f == math.inf else "-inf" if f == -math.inf else None if f != f else f
    return str(obj) if not isinstance(obj, str) else obj


# ---------------------------------------------------------------- evaluation against the bar


def bar_table(long: pd.DataFrame, bar: Bar, *, what: str = "metrics table") -> pd.DataFrame:
    """The rows of a long metrics table that have a bar, with ``bar`` and ``status`` columns.

    Overall rows: ``recall``/``precision`` (default bars) and ``recall.<class>``/
    ``precision.<class>`` (per-class bars); slice rows: ``recall`` (``min_slice_recall``).
    """
    _check_long(long, what)
    base = long["metric"].str.split(".", n=1).str[0]
    cls = long["metric"].str.split(".", n=1).str[1].fillna("default")
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


# ---------------------------------------------------------------- failure classification


@dataclass(frozen=True)
class _Failure:
    kind: str
    basis: str
    route: str
    remedy: str
    need: tuple[float, float, float] = (math.nan, math.nan, math.nan)


def slice_label(slice_column: str, slice_value: str, metric: str) -> str:
    """Human name of a row: ``class sku_a (recall)``, ``lighting=dim (recall)``."""
    cls = metric.split(".", 1)[1] if "." in metric else None
    where = "overall" if slice_column == OVERALL else f"{slice_column}={slice_value}"
    base = metric.split(".", 1)[0]
    return f"class {cls} ({base})" if cls and slice_column == OVERALL else \
        f"{where}{f' {cls}' if cls else ''} ({base})"


def slice_where(slice_column: str, slice_value: str, metric: str) -> str:
    """Where the images for a row come from: ``class sku_a``, ``lighting=dim``."""
    cls = metric.split(".", 1)[1] if "." in metric else None
    where = [] if slice_column == OVERALL else [f"{slice_column}={slice_value}"]
    return " ".join([*where, *([f"class {cls}"] if cls else [])]) or "all"


def object_side_at_input(slice_column: str, slice_value: str, input_size: int,
                         image_size: int | None) -> tuple[float, float]:
    """Object side range (px) at model input of a size slice; NaN for other slices.

    ``input_size_bin`` is already at model input; ``size_bin`` is scaled by
    ``input_size / image_size`` (letterbox resize of the long side).
    """
    low, high = SIZE_BIN_SIDE.get(str(slice_value), (math.nan, math.nan))
    if slice_column == "size_bin":
        scale = input_size / image_size if image_size else 1.0
        return low * scale, high * scale
    if slice_column == "input_size_bin":
        return low, high
    return math.nan, math.nan


def _classify(row: pd.Series, cand: CandidateEvidence, bar: Bar,
              peers: Sequence[CandidateEvidence]) -> _Failure:
    """Data-solvable or architecture-bound, by the strongest evidence available."""
    key = (row["slice_column"], row["slice_value"], row["metric"])
    where = slice_where(*key)
    target = float(row["bar"])
    cls = row["metric"].split(".", 1)[1] if "." in row["metric"] else None
    side = object_side_at_input(key[0], key[1], cand.input_size, cand.image_size)
    if side[1] <= bar.small_object_px:  # every object of the slice is below the threshold
        return _pixel_bound(cand, bar, side, target, peers)
    curve = cand.learning_curves.get(key)
    if curve is not None:
        return _from_curve(curve, cand, bar, target, where, peers)
    if bool(row["improved_by_finetune"]):
        return _Failure(DATA_SOLVABLE, "fine-tune gain", ROUTE_DATA,
                        f"collect more {where} images: fine-tuning raised it from "
                        f"{row['value_ots']:.2f} to {row['value_ft']:.2f}; fit a learning curve "
                        "to size the need")
    if side[0] < bar.small_object_px:  # partly below the threshold, and data did not help
        return _pixel_bound(cand, bar, side, target, peers)
    partner = bar.lookalike_of(cls) if cls else None
    if partner:
        tried = "fine-tuning did not separate them" if _has_ft(row) else "look-alike pair"
        return _Failure(ARCHITECTURE_BOUND, "look-alike", ROUTE_MODEL,
                        f"a specialised second-stage classifier for {cls} vs {partner} on the "
                        f"detector's crops, or a higher input size ({2 * cand.input_size}); "
                        f"{tried}")
    if key[0] == "occluded_bin" and key[1] == "heavy":
        return _Failure(ARCHITECTURE_BOUND, "occlusion", ROUTE_MODEL,
                        f"stronger context modelling: {_heavier_name(cand, peers)}, or "
                        "segmentation; heavy occlusion exceeds a lightweight receptive field")
    if cls in cand.no_analog_classes:
        return _Failure(DATA_SOLVABLE, "no analog", ROUTE_DATA,
                        f"label {cls} images and fine-tune: it has no analog in pre-training")
    return _Failure(DATA_SOLVABLE, "prior", ROUTE_DATA,
                    f"collect and label {where} images (a data-coverage gap by default); no "
                    "learning curve to size the need")


def _has_ft(row: pd.Series) -> bool:
    return isinstance(row.get("status_ft"), str)


def _from_curve(curve: LearningCurveFit, cand: CandidateEvidence, bar: Bar, target: float,
                where: str, peers: Sequence[CandidateEvidence]) -> _Failure:
    need = curve.images_needed(target)
    pool = float(cand.finetune_pool_images or curve.n_max)
    extra = max(need[0] - pool, 0.0)
    if np.isfinite(need[0]) and extra <= bar.labelling_budget_images:
        return _Failure(DATA_SOLVABLE, "learning curve", ROUTE_DATA,
                        f"label about {extra:.0f} more images rich in {where} (curve reaches "
                        f"{target:.2f} at {need[0]:.0f} [{need[1]:.0f}, {need[2]:.0f}] images; "
                        f"pool {pool:.0f})", need)
    if curve.saturated or not curve.reaches(target):
        return _Failure(ARCHITECTURE_BOUND, "learning curve", ROUTE_MODEL,
                        f"a heavier model ({_heavier_name(cand, peers)}): the learning curve for "
                        f"{where} levels off at {curve.a:.2f} (gain from doubling the data "
                        f"{curve.gain_from_doubling():.3f}) against a bar of {target:.2f}", need)
    return _Failure(DATA_SOLVABLE, "learning curve", ROUTE_DATA,
                    f"label about {extra:.0f} more images rich in {where} (curve reaches "
                    f"{target:.2f} at {need[0]:.0f} [{need[1]:.0f}, {need[2]:.0f}]), over the "
                    f"labelling budget of {bar.labelling_budget_images}", need)


def _pixel_bound(cand: CandidateEvidence, bar: Bar, side: tuple[float, float], target: float,
                 peers: Sequence[CandidateEvidence]) -> _Failure:
    """Objects too small at model input: tiling (if measured and good enough), a higher input
    size, or a heavier model with a small-object head."""
    why = f"objects of {side[0]:.0f}-{side[1]:.0f} px at input {cand.input_size} (threshold " \
          f"{bar.small_object_px:.0f} px)"
    t = cand.tiling
    if t is not None:
        p99 = cand.latency(FINE_TUNED) + t.extra_latency_p99_ms
        tried = f"tiling {t.tiles}: recall {t.recall:.2f} [{t.ci_low:.2f}, {t.ci_high:.2f}] " \
                f"at p99 {p99:.0f} ms"
        if t.ci_low >= target and p99 <= bar.latency_budget_p99_ms:
            return _Failure(ARCHITECTURE_BOUND, "pixel threshold", ROUTE_MODEL,
                            f"tiling ({tried}, within the {bar.latency_budget_p99_ms:.0f} ms "
                            f"budget); {why}")
        why = f"{why}; {tried} does not clear the bar within budget"
    options = "" if t is not None else " or tiling"
    return _Failure(ARCHITECTURE_BOUND, "pixel threshold", ROUTE_MODEL,
                    f"a higher input size ({2 * cand.input_size}){options}, or "
                    f"{_heavier_name(cand, peers)} with a small-object head; {why}")


def _heavier_name(cand: CandidateEvidence, peers: Sequence[CandidateEvidence]) -> str:
    """The heavier candidate to move to: one that already recalls more off-the-shelf (the
    lightest such), else the next size up."""
    def recall(p: CandidateEvidence) -> float:
        t = p.offtheshelf
        row = t[(t["slice_column"] == OVERALL) & (t["metric"] == "recall")]
        return float(row["value"].iloc[0]) if len(row) else math.nan

    heavier = sorted((p for p in peers if p.size_rank > cand.size_rank),
                     key=lambda p: (p.family != cand.family, p.size_rank, p.name))
    better = [p for p in heavier if recall(p) > recall(cand)]
    if better:
        return better[0].name
    return heavier[0].name if heavier else f"the next size up in the {cand.family or 'same'} family"


def _lighter_name(cand: CandidateEvidence, bar: Bar, peers: Sequence[CandidateEvidence]) -> str:
    lighter = sorted((p for p in peers if p.name != cand.name
                      and p.latency(OFF_THE_SHELF) <= bar.latency_budget_p99_ms
                      and p.size_rank <= cand.size_rank),
                     key=lambda p: (p.size_rank, p.latency(OFF_THE_SHELF), p.name))
    return f"a lighter model ({lighter[0].name})" if lighter else \
        "a lighter model or a lower input size"


# ---------------------------------------------------------------- per-candidate tables


def _stage_tables(cand: CandidateEvidence, bar: Bar) -> pd.DataFrame:
    """Key-wide table: off-the-shelf and fine-tuned columns side by side (suffix _ots/_ft)."""
    ots = bar_table(cand.offtheshelf, bar, what=f"{cand.name} off-the-shelf metrics")
    keep = [*KEY, "bar", "value", "ci_low", "ci_high", "status"]
    if cand.finetuned is None:
        wide = ots[keep].rename(columns={c: f"{c}_ots" for c in keep[4:]})
        wide["status_ft"] = None
        for c in ("value_ft", "ci_low_ft", "ci_high_ft"):
            wide[c] = np.nan
    else:
        ft = bar_table(cand.finetuned, bar, what=f"{cand.name} fine-tuned metrics")
        wide = ots[keep].merge(ft[keep], on=[*KEY, "bar"], how="outer", suffixes=("_ots", "_ft"))
    improved = (wide["ci_low_ft"] > wide["value_ots"]) & (
        wide["value_ft"] - wide["value_ots"] >= bar.min_improvement)
    ots_fail = wide["status_ots"] == FAIL
    has_ft = cand.finetuned is not None
    fixed = pd.Series(pd.NA, index=wide.index, dtype="boolean")
    if has_ft:
        fixed[ots_fail] = (wide.loc[ots_fail, "status_ft"] == PASS).to_numpy()
    return wide.assign(improved_by_finetune=improved.fillna(False).astype(bool),
                       fixed_by_finetune=fixed)


def _classified(cand: CandidateEvidence, bar: Bar,
                peers: Sequence[CandidateEvidence]) -> pd.DataFrame:
    """The wide table with failure_kind, basis, route, remedy and images needed per key."""
    wide = _stage_tables(cand, bar)
    final = "status_ft" if cand.finetuned is not None else "status_ots"
    cols = ["failure_kind", "basis", "route", "remedy"]
    needs = ["images_needed", "images_needed_low", "images_needed_high"]
    wide = wide.assign(**dict.fromkeys(cols, None), **dict.fromkeys(needs, np.nan))
    for i, row in wide.iterrows():
        if _is_true(row["fixed_by_finetune"]):
            where = slice_where(row["slice_column"], row["slice_value"], row["metric"])
            wide.loc[i, cols] = [DATA_SOLVABLE, "fixed by fine-tuning", ROUTE_FINETUNE,
                                 f"fine-tune with the {where} images of the pool"]
        elif FAIL in (row["status_ots"], row[final]):
            f = _classify(row, cand, bar, peers)
            wide.loc[i, cols] = [f.kind, f.basis, f.route, f.remedy]
            wide.loc[i, needs] = f.need
    return wide


def _is_true(value: Any) -> bool:
    return value is not pd.NA and value is not None and bool(value)


def _long_rows(cand: CandidateEvidence, wide: pd.DataFrame) -> pd.DataFrame:
    """The wide table back to one row per (stage, key), with the stage's own numbers."""
    shared = ["bar", "fixed_by_finetune", "improved_by_finetune", "failure_kind", "basis",
              "route", "remedy", "images_needed", "images_needed_low", "images_needed_high"]
    stages = [(OFF_THE_SHELF, cand.offtheshelf, "_ots")]
    if cand.finetuned is not None:
        stages.append((FINE_TUNED, cand.finetuned, "_ft"))
    parts = []
    for stage, long, sfx in stages:
        counts = long[[c for c in [*KEY, "n_images", "n_boxes", "thin"] if c in long.columns]]
        own = {f"{c}{sfx}": c for c in ("value", "ci_low", "ci_high", "status")}
        part = wide[[*KEY, *shared, *own]].rename(columns=own)
        part = part[part["status"].notna()].merge(counts, on=KEY, how="left")
        parts.append(part.assign(candidate=cand.name, stage=stage))
    out = pd.concat(parts, ignore_index=True)
    for col in ("n_images", "n_boxes"):
        if col not in out.columns:
            out[col] = pd.NA
    return out[SLICE_COLUMNS]


# ---------------------------------------------------------------- verdicts


def _verdict(cand: CandidateEvidence, wide: pd.DataFrame, bar: Bar,
             peers: Sequence[CandidateEvidence]) -> CandidateVerdict:
    """Ship off-the-shelf if it clears the bar (and no class lacks an analog); else fine-tune
    if the fine-tuned model does; else replace or collect, from the last stage's failing rows."""
    has_ft = cand.finetuned is not None
    checks = {s: _stage_check(cand, wide, bar, s) for s in
              ([OFF_THE_SHELF, FINE_TUNED] if has_ft else [OFF_THE_SHELF])}
    ots = checks[OFF_THE_SHELF]
    if ots["ships"] and not cand.no_analog_classes:
        return _make(cand, SHIP, OFF_THE_SHELF, ots, [
            f"off-the-shelf meets the bar on every row with evidence ({ots['n_pass']} pass, "
            f"{ots['n_not_enough']} without enough evidence)", *ots["budget"]])
    ots_why = _ots_shortfall(cand, ots)
    if has_ft and checks[FINE_TUNED]["ships"]:
        ft = checks[FINE_TUNED]
        data = _data_to_use(cand, wide)
        return _make(cand, FINE_TUNE, FINE_TUNED, ft, [
            ots_why, f"fine-tuned meets the bar on every row with evidence ({ft['n_pass']} pass, "
            f"{ft['n_not_enough']} without enough evidence)",
            f"fine-tune {cand.name} with: {', '.join(data) or 'the whole pool'}", *ft["budget"]],
            data_to_use=tuple(data))
    stage = FINE_TUNED if has_ft else OFF_THE_SHELF
    return _not_shipping(cand, wide, bar, peers, stage, checks[stage], ots_why)


def _stage_check(cand: CandidateEvidence, wide: pd.DataFrame, bar: Bar, stage: str) -> dict:
    status = wide["status_ft" if stage == FINE_TUNED else "status_ots"]
    counts = {k: int((status == v).sum()) for k, v in
              (("n_pass", PASS), ("n_fail", FAIL), ("n_not_enough", NOT_ENOUGH))}
    p99, cost = cand.latency(stage), cand.cost(stage)
    latency_ok = p99 <= bar.latency_budget_p99_ms
    ceiling = bar.daily_cost_ceiling
    cost_ok = ceiling is None or cost <= ceiling
    budget = [f"p99 latency {p99:.0f} ms {'within' if latency_ok else 'over'} the "
              f"{bar.latency_budget_p99_ms:.0f} ms budget"]
    if ceiling is not None:
        budget.append(f"daily cost {cost:.0f} {'within' if cost_ok else 'over'} the ceiling "
                      f"{ceiling:.0f}")
    ships = counts["n_fail"] == 0 and counts["n_pass"] > 0 and latency_ok and cost_ok
    return {**counts, "latency_ok": latency_ok, "cost_ok": cost_ok, "budget": budget,
            "ships": ships, "p99": p99, "cost": cost}


def _ots_shortfall(cand: CandidateEvidence, ots: dict) -> str:
    parts = []
    if ots["n_fail"]:
        parts.append(f"{ots['n_fail']} row(s) fail")
    if cand.no_analog_classes:
        parts.append(f"no analog in pre-training for {', '.join(cand.no_analog_classes)}")
    if not ots["latency_ok"]:
        parts.append("latency over budget")
    if not ots["cost_ok"]:
        parts.append("daily cost over the ceiling")
    if not ots["n_pass"]:
        parts.append("no row has enough evidence")
    return f"off-the-shelf does not ship: {'; '.join(parts)}"


def _data_to_use(cand: CandidateEvidence, wide: pd.DataFrame) -> list[str]:
    fixed = wide[wide["fixed_by_finetune"] == True]  # noqa: E712
    labels = [slice_where(*k) for k in fixed[KEY].itertuples(index=False)]
    return list(dict.fromkeys(labels)) + [f"class {c} (no analog)" for c in cand.no_analog_classes]


def _not_shipping(cand: CandidateEvidence, wide: pd.DataFrame, bar: Bar,
                  peers: Sequence[CandidateEvidence], stage: str, check: dict,
                  ots_why: str) -> CandidateVerdict:
    status = wide["status_ft" if stage == FINE_TUNED else "status_ots"]
    failing = wide[status == FAIL]
    reasons = [ots_why] if stage == FINE_TUNED else []
    reasons += failure_summary(stage, failing)
    arch = failing[failing["failure_kind"] == ARCHITECTURE_BOUND]
    over = failing[(failing["failure_kind"] == DATA_SOLVABLE)
                   & (_extra_need(cand, failing) > bar.labelling_budget_images)]
    known = failing.loc[failing["failure_kind"] == DATA_SOLVABLE, "images_needed"].dropna()
    need = float(known.max()) if len(known) else math.nan
    changes = grouped_changes(arch)
    if not check["latency_ok"]:
        changes.insert(0, f"{_lighter_name(cand, bar, peers)}: p99 {check['p99']:.0f} ms is "
                          f"over the {bar.latency_budget_p99_ms:.0f} ms budget")
    if len(over):
        changes.append(f"a model that needs less data ({_heavier_name(cand, peers)}): the "
                       "labelling need exceeds the budget of "
                       f"{bar.labelling_budget_images} images")
    if not check["cost_ok"] and not len(failing):
        changes.append(f"a more accurate model ({_heavier_name(cand, peers)}): daily cost "
                       f"{check['cost']:.0f} over the ceiling {bar.daily_cost_ceiling:.0f}")
    if changes:
        return _make(cand, REPLACE, stage, check, [*reasons, *check["budget"]],
                     replacement=tuple(changes), images_needed=need)
    if not len(failing) and not check["n_pass"]:
        reasons.append(f"no row has enough evidence at the {stage} stage: label more "
                       "evaluation images")
    elif not len(failing):
        reasons.append("no fine-tuned model evaluated: label the missing classes and fine-tune")
    else:
        reasons.append("every failing row is data-solvable within the labelling budget of "
                       f"{bar.labelling_budget_images} images")
    return _make(cand, COLLECT, stage, check, [*reasons, *check["budget"]], images_needed=need)


def grouped_changes(arch: pd.DataFrame, shown: int = 4) -> list[str]:
    """One proposed model change per kind of evidence (pixel threshold, look-alike, learning
    curve, ...), naming the rows it is for; a single row keeps its full remedy."""
    out = []
    for _, group in arch.groupby("basis", sort=False, dropna=False):
        first = str(group["remedy"].iloc[0])
        if len(group) == 1:
            out.append(first)
            continue
        labels = [slice_label(*k) for k in group[KEY].itertuples(index=False)]
        more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
        change = re.split(r": |; ", first, maxsplit=1)[0]
        out.append(f"{change} (for {len(labels)} rows: {', '.join(labels[:shown])}{more})")
    return list(dict.fromkeys(out))


def failure_summary(stage: str, failing: pd.DataFrame, shown: int = 4) -> list[str]:
    """One reason per (failure kind, route) group of failing rows, naming a few of them (the
    report lists every row with its remedy)."""
    out = []
    for (kind, route), group in failing.groupby(["failure_kind", "route"], sort=False,
                                                dropna=False):
        labels = [slice_label(*k) for k in group[KEY].itertuples(index=False)]
        more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
        out.append(f"{stage}: {len(labels)} failing row(s) {kind} -> {route}: "
                   f"{', '.join(labels[:shown])}{more}")
    return out


def _extra_need(cand: CandidateEvidence, rows: pd.DataFrame) -> pd.Series:
    """Images beyond the pool each row's curve asks for (NaN without a curve)."""
    pools = [float(cand.finetune_pool_images or cand.learning_curves[k].n_max)
             if k in cand.learning_curves else math.nan
             for k in rows[KEY].itertuples(index=False, name=None)]
    return rows["images_needed"] - np.asarray(pools, dtype=float)


def _make(cand: CandidateEvidence, verdict: str, stage: str, check: dict, reasons: list[str],
          **extra: Any) -> CandidateVerdict:
    return CandidateVerdict(name=cand.name, verdict=verdict, stage=stage,
                            reasons=tuple(r for r in reasons if r), family=cand.family,
                            size_rank=cand.size_rank, latency_p99_ms=check["p99"],
                            daily_cost=check["cost"], n_pass=check["n_pass"],
                            n_fail=check["n_fail"], n_not_enough=check["n_not_enough"], **extra)


# ---------------------------------------------------------------- the call


def decide(candidates: Sequence[CandidateEvidence], bar: Bar) -> Decision:
    """Evaluate every candidate against the bar and make the overall call."""
    _check_candidates(candidates, bar)
    verdicts, slices, curves = [], [], []
    for cand in candidates:
        wide = _classified(cand, bar, candidates)
        verdicts.append(_verdict(cand, wide, bar, candidates))
        slices.append(_long_rows(cand, wide))
        curves.append(_curves(cand, wide))
    overall, verdicts = _overall(verdicts)
    return Decision(overall=overall, candidates=tuple(verdicts),
                    slices=pd.concat(slices, ignore_index=True),
                    curves=pd.concat(curves, ignore_index=True), bar=bar)


def _check_candidates(candidates: Sequence[CandidateEvidence], bar: Bar) -> None:
    if not candidates:
        raise DecisionInputError("no candidates to decide between")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise DecisionInputError(f"candidate names must be unique, got {names}")
    for c in candidates:
        if not np.isfinite(c.latency_p99_ms) or c.latency_p99_ms < 0:
            raise DecisionInputError(f"candidate {c.name}: latency_p99_ms must be a finite "
                                     f"number >= 0, got {c.latency_p99_ms!r}")
        if bar.daily_cost_ceiling is not None and c.daily_cost is None:
            raise DecisionInputError(f"candidate {c.name}: daily_cost is required when "
                                     "bar.daily_cost_ceiling is set")


def _curves(cand: CandidateEvidence, wide: pd.DataFrame) -> pd.DataFrame:
    targets = dict(zip(wide[KEY].itertuples(index=False, name=None), wide["bar"], strict=True))
    table = curves_table(dict(cand.learning_curves), targets)
    table.insert(0, "candidate", cand.name)
    return table


def _overall(verdicts: list[CandidateVerdict]) -> tuple[OverallDecision, list[CandidateVerdict]]:
    """Pick the lightest shipping candidate; name it as the replacement for the others."""
    shipping = sorted((v for v in verdicts if v.ships), key=CandidateVerdict.sort_key)
    if shipping:
        best = shipping[0]
        verdicts = [replace(v, replacement=(best.name, *v.replacement),
                            reasons=(*v.reasons, f"replace with {best.name} ({best.verdict})"))
                    if v.verdict == REPLACE else v for v in verdicts]
        why = [f"{best.name}: {best.verdict} ({best.stage})", *best.reasons]
        others = [v.name for v in shipping[1:]]
        if others:
            why.append(f"also ships: {', '.join(others)}; {best.name} is the lightest "
                       "(ties broken by daily cost, then p99 latency, then name)")
        return OverallDecision(best.verdict, best.name, best.stage, tuple(why)), verdicts
    collect = sorted((v for v in verdicts if v.verdict == COLLECT), key=CandidateVerdict.sort_key)
    if collect:
        best = collect[0]
        return OverallDecision(COLLECT, best.name, best.stage,
                               (f"no candidate ships yet; {best.name} is the lightest whose "
                                "failures are data-solvable", *best.reasons)), verdicts
    best = min(verdicts, key=lambda v: (v.n_fail, *v.sort_key()))
    return OverallDecision(REPLACE, best.name, best.stage,
                           (f"no candidate ships and no failure is data-solvable within budget; "
                            f"closest: {best.name} ({best.n_fail} failing rows)",
                            *(f"change: {c}" for c in best.replacement[:3]),
                            *([f"... and {len(best.replacement) - 3} more changes in the report"]
                              if len(best.replacement) > 3 else []),
                            *best.reasons)), verdicts
