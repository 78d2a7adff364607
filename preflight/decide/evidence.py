"""A candidate's evidence: what the decision rule knows about one candidate model
(:class:`CandidateEvidence`, :class:`TilingResult`), and how it is assembled from the pipeline's
stored tables (:func:`build_evidence`). Every other module of :mod:`preflight.decide` reads these
types; this module imports none of them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from preflight.decide.bar import Bar
from preflight.decide.learning_curve import N_IMAGES_TRAIN, LearningCurveFit, fit_slice_curves
from preflight.decide.lookalikes import find_lookalikes
from preflight.metrics.slices import OVERALL, metric_parts_column
from preflight.stages import FINE_TUNED, OFF_THE_SHELF


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
    frames are fed at ``input_size``); ``size_rank`` orders models by parameter count (0 =
    fewest), the last tie-break; ``lookalikes`` is :func:`~preflight.decide.lookalikes.
    find_lookalikes`'s table; ``stress`` the off-the-shelf stress table (``family``,
    ``corruption``, ``severity``, ``metric``, ``value``); ``object_sizes`` one row per
    ground-truth object of the evaluation split with its slice columns, ``class_name`` and
    ``side_px`` at model input (:func:`object_sizes_at_input`): the
    size evidence of slices without a size breakdown of their own; ``finetuned_second_seed``
    the long table of the same fine-tune run again with seed ``second_seed``
    (``decision.second_seed``): a row close to the bar is routed only when both runs agree.
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
    lookalikes: pd.DataFrame | None = None
    stress: pd.DataFrame | None = None
    object_sizes: pd.DataFrame | None = None
    finetuned_second_seed: pd.DataFrame | None = None
    second_seed: int | None = None

    @property
    def decisive_stage(self) -> str:
        """The stage the verdict rests on: fine-tuned when it was measured, else off-the-shelf."""
        return FINE_TUNED if self.finetuned is not None else OFF_THE_SHELF

    def latency(self, stage: str) -> float:
        if stage == FINE_TUNED and self.latency_p99_ms_finetuned is not None:
            return float(self.latency_p99_ms_finetuned)
        return float(self.latency_p99_ms)

    def cost(self, stage: str) -> float:
        value = self.daily_cost_finetuned if stage == FINE_TUNED else self.daily_cost
        return float("nan") if value is None else float(value)


def overall_value(table: pd.DataFrame | None, metric: str) -> float | None:
    """The overall value of ``metric`` in a long table (None when absent)."""
    if table is None:
        return None
    row = table[(table["slice_column"] == OVERALL) & (table["metric"] == metric)]
    return float(row["value"].iloc[0]) if len(row) else None


def curve_points(points: pd.DataFrame | None) -> pd.DataFrame | None:
    """Learning-curve points (fine-tuned long tables stacked with ``n_images_train``) restricted
    to the recall rows the bar judges: overall ``recall``/``recall.<class>`` and slice ``recall``."""
    if points is None or points.empty:
        return None
    overall = points["slice_column"] == OVERALL
    base, cls = metric_parts_column(points["metric"])
    keep = (base == "recall") & (cls.isna() | overall)
    return points[keep & points["value"].notna()]


def object_sizes_at_input(images: pd.DataFrame, boxes: pd.DataFrame, input_size: int
                          ) -> pd.DataFrame:
    """One row per ground-truth object: its image's columns (the image slices), its own box
    columns (``class_name``, box slices) and ``side_px``, the object's side (square root of its
    area) at the model's input after the long side of the frame is resized to ``input_size``
    -- the same scaling as the metrics' ``input_px_bin``. The decision holds it against the
    pixel threshold for slices that have no size breakdown of their own."""
    if images is None or boxes is None or images.empty or boxes.empty or \
            not {"image_id", "width", "height"} <= set(images.columns) or \
            not {"image_id", "w", "h"} <= set(boxes.columns):
        return pd.DataFrame(columns=["image_id", "class_name", "side_px"])
    if "iscrowd" in boxes.columns:  # crowd regions are not objects the metrics count
        boxes = boxes[boxes["iscrowd"].fillna(0).astype(int) == 0]
    own = [c for c in boxes.columns if c not in images.columns or c == "image_id"]
    merged = boxes[own].merge(images, on="image_id", how="inner")
    longest = merged[["width", "height"]].max(axis=1).to_numpy(dtype=float)
    area = (merged["w"] * merged["h"]).to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        side = np.sqrt(np.clip(area, 0, None)) * float(input_size) / longest
    return merged.assign(side_px=np.where(np.isfinite(side), side, np.nan))


@dataclass(frozen=True)
class StageResults:
    """One stage's stored results for a candidate (off-the-shelf or fine-tuned): the long metrics
    table, the p99 latency under production conditions, and the cost and confusion tables
    (``StageResults()``: a stage that was not run)."""

    metrics: pd.DataFrame | None = None
    latency_p99_ms: float | None = None
    cost: pd.DataFrame | None = None
    confusion: pd.DataFrame | None = None


@dataclass(frozen=True)
class EvidenceTables:
    """What the pipeline stored about one candidate, as :func:`build_evidence` reads it (every part
    but the off-the-shelf metrics and latency may be missing).

    ``finetuned_second_seed``: the metrics of the same fine-tune run with seed ``second_seed``;
    ``no_analog``: operational classes no model class maps to; ``input_size``/``image_size``:
    the model's input and the production frames' long side; ``size_rank``: see
    :func:`size_ranks`; ``points``: the learning-curve points; ``tiling``: the tiling asset's
    result; ``pool_images``: the fine-tuning pool's size; ``stress``: the off-the-shelf stress
    table; ``object_sizes``: :func:`object_sizes_at_input`.
    """

    name: str
    offtheshelf: StageResults
    finetuned: StageResults = StageResults()
    finetuned_second_seed: pd.DataFrame | None = None
    second_seed: int | None = None
    no_analog: Sequence[str] = ()
    input_size: int = 640
    image_size: int | None = None
    family: str = ""
    size_rank: int = 0
    points: pd.DataFrame | None = None
    tiling: dict | None = None
    pool_images: int | None = None
    stress: pd.DataFrame | None = None
    object_sizes: pd.DataFrame | None = None


def build_evidence(tables: EvidenceTables, bar: Bar | None = None, *,
                   saturation_tol: float = 0.01, seed: int = 0) -> CandidateEvidence:
    """One :class:`CandidateEvidence` from the pipeline's tables; look-alike pairs are found from
    the confusion tables at ``bar.lookalike_share`` (plus the pairs ``bar`` states), learning
    curves fitted with ``saturation_tol`` and ``seed``."""
    bar = bar or Bar()
    ots, ft = tables.offtheshelf, tables.finetuned
    lookalikes = (find_lookalikes(ots.confusion, ft.confusion,
                                  threshold=bar.lookalike_share, pairs=bar.lookalike_pairs)
                  if ots.confusion is not None or ft.confusion is not None else None)
    pts = curve_points(tables.points)
    curves = (fit_slice_curves(pts, saturation_tol=saturation_tol, seed=seed)
              if pts is not None and pts[N_IMAGES_TRAIN].nunique() >= 2 else {})
    return CandidateEvidence(
        name=tables.name, offtheshelf=ots.metrics, latency_p99_ms=float(ots.latency_p99_ms),
        finetuned=ft.metrics, latency_p99_ms_finetuned=ft.latency_p99_ms,
        daily_cost=overall_value(ots.cost, "cost.daily"),
        daily_cost_finetuned=overall_value(ft.cost, "cost.daily"),
        no_analog_classes=tuple(tables.no_analog), input_size=int(tables.input_size),
        image_size=tables.image_size, family=tables.family, size_rank=int(tables.size_rank),
        learning_curves=curves, tiling=tiling_result(tables.tiling),
        finetune_pool_images=tables.pool_images, lookalikes=lookalikes, stress=tables.stress,
        object_sizes=tables.object_sizes, finetuned_second_seed=tables.finetuned_second_seed,
        second_seed=tables.second_seed)


def tiling_result(tiling: dict | None) -> TilingResult | None:
    """The tiling asset's result as the rule reads it (None when tiling was not evaluated)."""
    if not tiling or not tiling.get("evaluated"):
        return None
    ci = tiling.get("ci_tiled") or (math.nan, math.nan)
    tiles = f"{tiling.get('passes_per_frame', 0)} passes/frame ({tiling.get('tile')} px tiles)"
    return TilingResult(recall=float(tiling["recall_tiled"]), ci_low=float(ci[0]),
                        ci_high=float(ci[1]),
                        extra_latency_p99_ms=float(tiling["p99_ms_tiled"])
                        - float(tiling["p99_ms_full"]), tiles=tiles)


def size_ranks(parameters: dict[str, int]) -> dict[str, int]:
    """Candidates ranked by parameter count (0 = fewest; the last tie-break of "lightest", after
    p99 latency and daily cost); ties share the order of names."""
    order = sorted(parameters, key=lambda n: (parameters[n], n))
    return {name: rank for rank, name in enumerate(order)}
