"""Why a failing row fails: data-solvable (route to data collection), architecture-bound
(route to a model change, :mod:`preflight.decide.model_change`) or unresolved (route to the
measurement that settles it), with the remedy in plain words and, from its learning curve, how
many images it needs; plus the human names of rows and the summaries of failing rows by kind.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from preflight.decide.bar import FAIL, KEY, PASS, Bar
from preflight.decide.evidence import CandidateEvidence
from preflight.decide.learning_curve import LearningCurveFit
from preflight.decide.lookalikes import PERSISTS, REMOVED, lookalike_for
from preflight.decide.model_change import heavier_that_fits, model_change
from preflight.metrics.slices import INPUT_PX_COLUMN, OVERALL, metric_parts, px_bin_side
from preflight.stages import FINE_TUNED

DATA_SOLVABLE, ARCHITECTURE_BOUND, UNRESOLVED = "data-solvable", "architecture-bound", "unresolved"
#: a row whose pass/fail could flip with training noise: routed to neither data nor model
UNCERTAIN = "uncertain"
ROUTE_DATA, ROUTE_MODEL, ROUTE_FINETUNE = "data collection", "model change", "fine-tune"
ROUTE_MEASURE = "measure first"
#: the route of an uncertain row: fine-tune again (another seed) before routing it
ROUTE_RERUN = "re-run first"
#: object side range (px, sqrt of area) of each COCO size bin
SIZE_BIN_SIDE = {"small": (0.0, 32.0), "medium": (32.0, 96.0), "large": (96.0, math.inf)}


# ---------------------------------------------------------------- failure classification


@dataclass(frozen=True)
class Failure:
    kind: str
    basis: str
    route: str
    remedy: str
    need: tuple[float, float, float] = (math.nan, math.nan, math.nan)


def slice_label(slice_column: str, slice_value: str, metric: str) -> str:
    """Human name of a row: ``class crate (recall)``, ``brightness_bin=low (recall)``."""
    base, cls = metric_parts(metric)
    where = "overall" if slice_column == OVERALL else f"{slice_column}={slice_value}"
    return f"class {cls} ({base})" if cls and slice_column == OVERALL else \
        f"{where}{f' {cls}' if cls else ''} ({base})"


def slice_where(slice_column: str, slice_value: str, metric: str) -> str:
    """Where the images for a row come from: ``class crate``, ``brightness_bin=low``."""
    cls = metric_parts(metric)[1]
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


def share_below_gt(sizes: pd.DataFrame | None, slice_column: str, slice_value: str,
                   metric: str, threshold_px: float) -> tuple[float, int]:
    """Share of a row's ground-truth objects whose side at model input is below
    ``threshold_px``, from the per-box ``side_px`` table (:func:`~preflight.decide.evidence.
    object_sizes_at_input`): every box of the slice (``recall``) or of one class
    (``recall.<class>``); NaN when the table has no such boxes or not the slice's column."""
    if sizes is None or sizes.empty or "side_px" not in sizes.columns:
        return math.nan, 0
    rows = sizes
    if slice_column != OVERALL:
        if slice_column not in rows.columns:
            return math.nan, 0
        rows = rows[rows[slice_column].astype(str) == str(slice_value)]
    cls = metric_parts(metric)[1]
    if cls is not None and "class_name" in rows.columns:
        rows = rows[rows["class_name"].astype(str) == cls]
    side = rows["side_px"].to_numpy(dtype=float)
    side = side[np.isfinite(side)]
    if not len(side):
        return math.nan, 0
    return float((side < threshold_px).mean()), int(len(side))


def close_to_bar(value_low: float, value_high: float, target: float, noise: float) -> bool:
    """Whether an interval widened by the training noise reaches across the bar: a re-run of the
    training could put the row on the other side."""
    lo, hi = float(value_low) - noise, float(value_high) + noise
    return bool(np.isfinite(lo) and np.isfinite(hi) and lo < target <= hi)


def uncertain_failure(row: pd.Series, bar: Bar, second_seed: int | None = None) -> Failure:
    """A row near the bar after fine-tuning: neither data-solvable nor architecture-bound until
    a second training run agrees (or, when one was measured, because it disagrees)."""
    where = slice_where(row["slice_column"], row["slice_value"], row["metric"])
    status = "passes" if row.get("status_ft") == PASS else "fails"
    second = row.get("status_ft2")
    if second in (PASS, FAIL):
        second_text = "passes" if second == PASS else "fails"
        return Failure(UNCERTAIN, "seeds disagree", ROUTE_RERUN,
                        f"the two fine-tuning runs disagree on {where}: it {status} at "
                        f"{float(row['value_ft']):.2f} [{float(row['ci_low_ft']):.2f}, "
                        f"{float(row['ci_high_ft']):.2f}] and {second_text} with seed {second_seed} "
                        f"at {float(row['value_ft2']):.2f} [{float(row['ci_low_ft2']):.2f}, "
                        f"{float(row['ci_high_ft2']):.2f}] against a bar of "
                        f"{float(row['bar']):.2f}: label more evaluation frames of it or "
                        "fine-tune with more data before routing it")
    return Failure(UNCERTAIN, "close to the bar", ROUTE_RERUN,
                    f"fine-tune again with another seed (decision.second_seed) and route "
                    f"{where} only if both runs agree: fine-tuned it {status} at {float(row['value_ft']):.2f} "
                    f"[{float(row['ci_low_ft']):.2f}, {float(row['ci_high_ft']):.2f}], within "
                    f"the training noise ({bar.training_noise:.2f}, decision.training_noise) of "
                    f"the bar {float(row['bar']):.2f}, so a re-run could flip it")


def classify(row: pd.Series, cand: CandidateEvidence, bar: Bar,
              peers: Sequence[CandidateEvidence],
              peer_status: Mapping[str, Mapping[tuple, str]] | None = None) -> Failure:
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
    cls = metric_parts(row["metric"])[1]
    side = object_side_at_input(key[0], key[1], cand.input_size, cand.image_size)
    if side[1] <= bar.small_object_px:  # every object of the slice is below the threshold
        return _pixel_bound(cand, bar, side, target, peers, key=key, peer_status=peer_status)
    decisive = cand.finetuned if cand.finetuned is not None else cand.offtheshelf
    statuses = peer_status or {}
    share, n_small, source = math.nan, 0, "measured"
    if key[0] == OVERALL:
        share, n_small = share_below(decisive, key[2], bar.small_object_px)
    if not np.isfinite(share) and not np.isfinite(side[0]):  # not a size slice: ground truth
        share, n_small = share_below_gt(cand.object_sizes, *key, bar.small_object_px)
        source = "ground-truth"
    if np.isfinite(share) and share > 0.5:
        return _pixel_bound(cand, bar, side, target, peers,
                            f"{share:.0%} of its {n_small} objects below "
                            f"{bar.small_object_px:.0f} px at input {cand.input_size} "
                            f"({source} sizes at input)", key=key, peer_status=statuses)
    curve = cand.learning_curves.get(key)
    if curve is not None:
        return _from_curve(curve, cand, bar, target, where, peers, key, statuses)
    pair = lookalike_for(cand.lookalikes, cls) if cls else None
    if pair is not None and pair["status"] == PERSISTS:
        return Failure(ARCHITECTURE_BOUND, "look-alike", ROUTE_MODEL,
                        f"a second-stage classifier for {cls} vs {pair['pred_class']} on the "
                        f"detector's crops, or a higher input size ({2 * cand.input_size}); "
                        f"{_pair_text(pair)}: fine-tuning did not separate them")
    gain = _gain(row)
    if np.isfinite(gain) and gain > 0 and bool(row["improved_by_finetune"]) \
            and target - float(row["value_ft"]) <= gain:
        return Failure(DATA_SOLVABLE, "fine-tune gain", ROUTE_DATA,
                        f"collect more {where} images: fine-tuning raised it from "
                        f"{row['value_ots']:.2f} to {row['value_ft']:.2f}, and the "
                        f"{target - float(row['value_ft']):.2f} still missing is no more than "
                        "that gain; a learning curve would size the need")
    if pair is not None and pair["status"] == REMOVED:
        return Failure(DATA_SOLVABLE, "look-alike removed", ROUTE_DATA,
                        f"collect more {where} images: {_pair_text(pair)}, so fine-tuning "
                        "separates the pair; a learning curve would size the need")
    if np.isfinite(side[0]) and side[0] < bar.small_object_px and _has_ft(row) \
            and not bool(row["improved_by_finetune"]):  # partly below, and data did not help
        return _pixel_bound(cand, bar, side, target, peers, key=key, peer_status=statuses)
    capacity = _capacity_evidence(key, cand, bar, peers, statuses)
    if capacity:
        return Failure(ARCHITECTURE_BOUND, "capacity", ROUTE_MODEL, capacity)
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


def _capacity_evidence(key: tuple, cand: CandidateEvidence, bar: Bar,
                       peers: Sequence[CandidateEvidence],
                       peer_status: Mapping[str, Mapping[tuple, str]]) -> str | None:
    """The same row fails in every lighter candidate (and this one) while a heavier one passes:
    the remedy names the lightest heavier candidate that passes it within the budget, or says
    that none does."""
    lighter = [p for p in peers if p.size_rank < cand.size_rank]
    heavier = sorted((p for p in peers if p.size_rank > cand.size_rank),
                     key=lambda p: (p.size_rank, p.name))
    passing = [p for p in heavier if peer_status.get(p.name, {}).get(key) == PASS]
    if not passing or any(peer_status.get(p.name, {}).get(key) != FAIL for p in lighter):
        return None
    fails = f"it fails in {cand.name}" + (f" and every lighter candidate "
                                          f"({', '.join(p.name for p in lighter)})"
                                          if lighter else "")
    return (f"{model_change(cand, bar, peers, [key], peer_status)}: {fails} while "
            f"{passing[0].name} passes it")


def _unresolved(row: pd.Series, cand: CandidateEvidence, cls: str | None, where: str,
                gain: float, pair: pd.Series | None) -> Failure:
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
    return Failure(UNRESOLVED, "no evidence", ROUTE_MEASURE, measure)


def _from_curve(curve: LearningCurveFit, cand: CandidateEvidence, bar: Bar, target: float,
                where: str, peers: Sequence[CandidateEvidence], key: tuple = (),
                peer_status: Mapping[str, Mapping[tuple, str]] | None = None) -> Failure:
    """Route a failing row by its learning curve. Data-solvable only when the curve reaches the
    bar within the pool plus the labelling budget (point estimate); architecture-bound when it
    levels off below the bar, or when even the optimistic end of the need interval is beyond
    pool + budget; unresolved when the interval straddles the budget (optimistic end within,
    estimate beyond): then the remedy names the measurement that settles it."""
    need = curve.images_needed(target)
    pool = float(cand.finetune_pool_images or curve.n_max)
    budget = bar.labelling_budget_images
    extra = max(need[0] - pool, 0.0)
    at = f"{need[0]:.0f} [{need[1]:.0f}, {need[2]:.0f}] images"
    if np.isfinite(need[0]) and extra <= budget:
        return Failure(DATA_SOLVABLE, "learning curve", ROUTE_DATA,
                        f"label about {extra:.0f} more images rich in {where} (curve reaches "
                        f"{target:.2f} at {at}; pool {pool:.0f})", need)
    change = model_change(cand, bar, peers, [key] if key else [], peer_status or {})
    if curve.saturated or not curve.reaches(target):
        return Failure(ARCHITECTURE_BOUND, "learning curve", ROUTE_MODEL,
                        f"{change}: the learning curve for {where} levels off at "
                        f"{curve.a:.2f} (gain from doubling the data "
                        f"{curve.gain_from_doubling():.3f}) against a bar of {target:.2f}", need)
    optimistic = max(float(need[1]) - pool, 0.0)
    if np.isfinite(need[1]) and optimistic <= budget:
        first = (f"label about {optimistic:.0f} more images rich in {where} (pool "
                 f"{pool:.0f} -> {pool + optimistic:.0f}), fine-tune on them and re-evaluate "
                 "this row, adding that size as a learning-curve point" if optimistic > 0 else
                 f"fit the curve for {where} with more nested-subset fractions up to the whole "
                 f"pool of {pool:.0f} images")
        return Failure(UNRESOLVED, "learning curve straddles the budget", ROUTE_MEASURE,
                        f"{first} (finetune.learning_curve_fractions): the curve reaches "
                        f"{target:.2f} at {at}, within the labelling budget of {budget} at "
                        f"its optimistic end but beyond it at the estimate ({extra:.0f} more)",
                        need)
    return Failure(ARCHITECTURE_BOUND, "learning curve over budget", ROUTE_MODEL,
                    f"{change}: the learning curve for {where} reaches {target:.2f} only at "
                    f"{at}, beyond the pool ({pool:.0f}) plus the labelling budget of {budget} "
                    "images even at its optimistic end, so the labelling need exceeds the "
                    "budget: this model needs more data than the budget allows", need)


def _pixel_bound(cand: CandidateEvidence, bar: Bar, side: tuple[float, float], target: float,
                 peers: Sequence[CandidateEvidence], measured: str | None = None, *,
                 key: tuple = (),
                 peer_status: Mapping[str, Mapping[tuple, str]] | None = None) -> Failure:
    """Objects too small at model input: tiling (if measured and good enough), a higher input
    size, or a heavier candidate measured to pass the row within the budget."""
    why = measured or (f"objects of {side[0]:.0f}-{side[1]:.0f} px at input {cand.input_size} "
                       f"(threshold {bar.small_object_px:.0f} px)")
    t = cand.tiling
    if t is not None:
        p99 = cand.latency(FINE_TUNED) + t.extra_latency_p99_ms
        tried = f"tiling {t.tiles}: recall {t.recall:.2f} [{t.ci_low:.2f}, {t.ci_high:.2f}] " \
                f"at p99 {p99:.0f} ms"
        if t.ci_low >= target and p99 <= bar.latency_budget_p99_ms:
            return Failure(ARCHITECTURE_BOUND, "pixel threshold", ROUTE_MODEL,
                            f"tiling ({tried}, within the {bar.latency_budget_p99_ms:.0f} ms "
                            f"budget); {why}")
        why = f"{why}; {tried} does not clear the bar within budget"
    options = "" if t is not None else " or tiling"
    fit, _ = heavier_that_fits(cand, bar, peers, [key] if key else [], peer_status or {})
    other = (f"{fit.name} (measured to pass this row within the "
             f"{bar.latency_budget_p99_ms:.0f} ms budget)" if fit is not None else
             "a heavier family with a small-object head within the "
             f"{bar.latency_budget_p99_ms:.0f} ms budget (no measured candidate passes this "
             "row within it)")
    return Failure(ARCHITECTURE_BOUND, "pixel threshold", ROUTE_MODEL,
                    f"a higher input size ({2 * cand.input_size}){options}, or {other}; {why}")


# ---------------------------------------------------------------- summaries of failing rows


def grouped_changes(arch: pd.DataFrame, shown: int = 4) -> list[str]:
    """One proposed model change per kind of evidence and change (pixel threshold, look-alike,
    learning curve, ...), naming the rows it is for; a single row keeps its full remedy. Rows
    are grouped by the change itself too, so a heavier candidate measured to pass some rows is
    never proposed for the others."""
    out = []
    if arch.empty:
        return out
    change = arch["remedy"].astype(str).map(lambda r: re.split(r": |; ", r, maxsplit=1)[0])
    for (_, text), group in arch.assign(_change=change).groupby(["basis", "_change"],
                                                                sort=False, dropna=False):
        if len(group) == 1:
            out.append(str(group["remedy"].iloc[0]))
            continue
        labels = [slice_label(*k) for k in group[KEY].itertuples(index=False)]
        more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
        out.append(f"{text} (for {len(labels)} rows: {', '.join(labels[:shown])}{more})")
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

