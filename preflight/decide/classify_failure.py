"""Why a failing row fails: data-solvable (route to data collection) or architecture-bound
(route to a model change), with the remedy in plain words and, from its learning curve, how many
images it needs; plus the human names of rows and the summaries of failing rows by kind.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from preflight.decide.bar import FAIL, FINE_TUNED, KEY, OFF_THE_SHELF, OVERALL, PASS, Bar
from preflight.decide.learning_curve import LearningCurveFit
from preflight.decide.lookalikes import PERSISTS, REMOVED, lookalike_for
from preflight.metrics.slices import INPUT_PX_COLUMN, px_bin_side

if TYPE_CHECKING:
    from preflight.decide.rule import CandidateEvidence

DATA_SOLVABLE, ARCHITECTURE_BOUND, UNRESOLVED = "data-solvable", "architecture-bound", "unresolved"
ROUTE_DATA, ROUTE_MODEL, ROUTE_FINETUNE = "data collection", "model change", "fine-tune"
ROUTE_MEASURE = "measure first"
#: object side range (px, sqrt of area) of each COCO size bin
SIZE_BIN_SIDE = {"small": (0.0, 32.0), "medium": (32.0, 96.0), "large": (96.0, math.inf)}


# ---------------------------------------------------------------- failure classification


@dataclass(frozen=True)
class _Failure:
    kind: str
    basis: str
    route: str
    remedy: str
    need: tuple[float, float, float] = (math.nan, math.nan, math.nan)


def slice_label(slice_column: str, slice_value: str, metric: str) -> str:
    """Human name of a row: ``class crate (recall)``, ``brightness_bin=low (recall)``."""
    cls = metric.split(".", 1)[1] if "." in metric else None
    where = "overall" if slice_column == OVERALL else f"{slice_column}={slice_value}"
    base = metric.split(".", 1)[0]
    return f"class {cls} ({base})" if cls and slice_column == OVERALL else \
        f"{where}{f' {cls}' if cls else ''} ({base})"


def slice_where(slice_column: str, slice_value: str, metric: str) -> str:
    """Where the images for a row come from: ``class crate``, ``brightness_bin=low``."""
    cls = metric.split(".", 1)[1] if "." in metric else None
    where = [] if slice_column == OVERALL else [f"{slice_column}={slice_value}"]
    return " ".join([*where, *([f"class {cls}"] if cls else [])]) or "all"


def object_side_at_input(slice_column: str, slice_value: str, input_size: int,
                         image_size: int | None) -> tuple[float, float]:
    """Object side range (px) at model input of a size slice; NaN for other slices.

    ``input_px_bin`` (``<8``, ``8-16``, ...) and ``input_size_bin`` are already at model input;
    ``size_bin`` is scaled by ``input_size / image_size`` (letterbox resize of the long side).
    """
    if slice_column == INPUT_PX_COLUMN:
        return px_bin_side(str(slice_value))
    low, high = SIZE_BIN_SIDE.get(str(slice_value), (math.nan, math.nan))
    if slice_column == "size_bin":
        scale = input_size / image_size if image_size else 1.0
        return low * scale, high * scale
    if slice_column == "input_size_bin":
        return low, high
    return math.nan, math.nan


def share_below(table: pd.DataFrame | None, metric: str, threshold_px: float
                ) -> tuple[float, int]:
    """Share of a row's boxes whose side at model input is below ``threshold_px`` (from the
    ``input_px_bin`` rows of the long table: ``recall`` for all boxes, ``recall.<class>`` for a
    class), and the number of boxes it is measured on; NaN when the table has no such rows."""
    if table is None or "n_boxes" not in table.columns:
        return math.nan, 0
    rows = table[(table["slice_column"] == INPUT_PX_COLUMN) & (table["metric"] == metric)]
    if rows.empty:
        return math.nan, 0
    n = rows["n_boxes"].to_numpy(dtype=float)
    upper = np.array([px_bin_side(str(v))[1] for v in rows["slice_value"]])
    total = float(n.sum())
    if total <= 0:
        return math.nan, 0
    return float(n[upper <= threshold_px].sum() / total), int(total)


def _classify(row: pd.Series, cand: CandidateEvidence, bar: Bar,
              peers: Sequence[CandidateEvidence],
              peer_status: Mapping[str, Mapping[tuple, str]] | None = None) -> _Failure:
    """Data-solvable, architecture-bound or unresolved, by the strongest evidence available.

    Architecture-bound: the row's objects (all, or most, by the measured size distribution at
    model input) are below the pixel threshold; its learning curve levels off below the bar; a
    look-alike confusion persists after fine-tuning; every lighter candidate fails it while a
    heavier one passes. Data-solvable: fine-tuning fixed it (decided by the caller), its learning
    curve reaches the bar, fine-tuning removed its look-alike confusion, or the fine-tuning gain
    is at least the gap still left. Anything else is unresolved, naming the measurement that
    would settle it: never data-solvable by default.
    """
    key = (row["slice_column"], row["slice_value"], row["metric"])
    where = slice_where(*key)
    target = float(row["bar"])
    cls = row["metric"].split(".", 1)[1] if "." in row["metric"] else None
    side = object_side_at_input(key[0], key[1], cand.input_size, cand.image_size)
    if side[1] <= bar.small_object_px:  # every object of the slice is below the threshold
        return _pixel_bound(cand, bar, side, target, peers)
    decisive = cand.finetuned if cand.finetuned is not None else cand.offtheshelf
    if key[0] == OVERALL:
        share, n_small = share_below(decisive, key[2], bar.small_object_px)
        if np.isfinite(share) and share > 0.5:
            return _pixel_bound(cand, bar, side, target, peers,
                                f"{share:.0%} of its {n_small} objects below "
                                f"{bar.small_object_px:.0f} px at input {cand.input_size}")
    curve = cand.learning_curves.get(key)
    if curve is not None:
        return _from_curve(curve, cand, bar, target, where, peers)
    pair = lookalike_for(cand.lookalikes, cls) if cls else None
    if pair is not None and pair["status"] == PERSISTS:
        return _Failure(ARCHITECTURE_BOUND, "look-alike", ROUTE_MODEL,
                        f"a second-stage classifier for {cls} vs {pair['pred_class']} on the "
                        f"detector's crops, or a higher input size ({2 * cand.input_size}); "
                        f"{_pair_text(pair)}: fine-tuning did not separate them")
    gain = _gain(row)
    if np.isfinite(gain) and gain > 0 and bool(row["improved_by_finetune"]) \
            and target - float(row["value_ft"]) <= gain:
        return _Failure(DATA_SOLVABLE, "fine-tune gain", ROUTE_DATA,
                        f"collect more {where} images: fine-tuning raised it from "
                        f"{row['value_ots']:.2f} to {row['value_ft']:.2f}, and the "
                        f"{target - float(row['value_ft']):.2f} still missing is no more than "
                        "that gain; a learning curve would size the need")
    if pair is not None and pair["status"] == REMOVED:
        return _Failure(DATA_SOLVABLE, "look-alike removed", ROUTE_DATA,
                        f"collect more {where} images: {_pair_text(pair)}, so fine-tuning "
                        "separates the pair; a learning curve would size the need")
    if np.isfinite(side[0]) and side[0] < bar.small_object_px and _has_ft(row) \
            and not bool(row["improved_by_finetune"]):  # partly below, and data did not help
        return _pixel_bound(cand, bar, side, target, peers)
    capacity = _capacity_evidence(key, cand, peers, peer_status or {})
    if capacity:
        return _Failure(ARCHITECTURE_BOUND, "capacity", ROUTE_MODEL, capacity)
    return _unresolved(row, cand, cls, where, gain, pair)


def _has_ft(row: pd.Series) -> bool:
    return isinstance(row.get("status_ft"), str)


def _gain(row: pd.Series) -> float:
    try:
        return float(row["value_ft"]) - float(row["value_ots"])
    except (TypeError, ValueError, KeyError):
        return math.nan


def _pair_text(pair: pd.Series) -> str:
    def side(sfx: str) -> str:
        v = float(pair[f"share_{sfx}"])
        if not np.isfinite(v):
            return "not measured"
        return f"{v:.0%} [{float(pair[f'ci_low_{sfx}']):.0%}, {float(pair[f'ci_high_{sfx}']):.0%}]"

    return (f"{side('ots')} of {pair['true_class']} detected as {pair['pred_class']} "
            f"off-the-shelf, {side('ft')} after fine-tuning")


def _capacity_evidence(key: tuple, cand: CandidateEvidence, peers: Sequence[CandidateEvidence],
                       peer_status: Mapping[str, Mapping[tuple, str]]) -> str | None:
    """The same row fails in every lighter candidate (and this one) while a heavier one passes:
    the remedy names the lightest heavier candidate that passes."""
    lighter = [p for p in peers if p.size_rank < cand.size_rank]
    heavier = sorted((p for p in peers if p.size_rank > cand.size_rank),
                     key=lambda p: (p.size_rank, p.name))
    passing = [p for p in heavier if peer_status.get(p.name, {}).get(key) == PASS]
    if not passing or any(peer_status.get(p.name, {}).get(key) != FAIL for p in lighter):
        return None
    fails = f"it fails in {cand.name}" + (f" and every lighter candidate "
                                          f"({', '.join(p.name for p in lighter)})"
                                          if lighter else "")
    return f"a heavier model ({passing[0].name}, which passes this row): {fails}"


def _unresolved(row: pd.Series, cand: CandidateEvidence, cls: str | None, where: str,
                gain: float, pair: pd.Series | None) -> _Failure:
    """No evidence either way: say so, and name the measurement that would settle it."""
    if not _has_ft(row):
        measure = (f"fine-tune {cand.name} on the pool (with {where} images) and re-evaluate: "
                   "whether fine-tuning fixes it decides the route")
    else:
        seen = (f"fine-tuning moved it {row['value_ots']:.2f} -> {row['value_ft']:.2f}, which "
                "alone does not say whether more data reaches the bar"
                if np.isfinite(gain) else "no off-the-shelf value to compare")
        measure = (f"fit a learning curve for {where} (nested-subset fine-tunes, "
                   f"finetune.learning_curve_fractions): {seen}")
    if cls and cls in cand.no_analog_classes:
        measure += f"; {cls} has no analog in pre-training, so only this evidence can say " \
                   "whether fine-tuning is enough"
    if pair is not None:
        measure += f"; look-alike {_pair_text(pair)}: re-measure after fine-tuning"
    return _Failure(UNRESOLVED, "no evidence", ROUTE_MEASURE, measure)


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
                 peers: Sequence[CandidateEvidence], measured: str | None = None) -> _Failure:
    """Objects too small at model input: tiling (if measured and good enough), a higher input
    size, or a heavier model with a small-object head."""
    why = measured or (f"objects of {side[0]:.0f}-{side[1]:.0f} px at input {cand.input_size} "
                       f"(threshold {bar.small_object_px:.0f} px)")
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


# ---------------------------------------------------------------- summaries of failing rows


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

