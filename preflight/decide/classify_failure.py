"""Why a failing row fails: data-solvable (route to data collection) or architecture-bound
(route to a model change), with the remedy in plain words and, from its learning curve, how many
images it needs; plus the human names of rows and the summaries of failing rows by kind.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from preflight.decide.bar import FINE_TUNED, KEY, OFF_THE_SHELF, OVERALL, Bar
from preflight.decide.learning_curve import LearningCurveFit

if TYPE_CHECKING:
    from preflight.decide.rule import CandidateEvidence

DATA_SOLVABLE, ARCHITECTURE_BOUND = "data-solvable", "architecture-bound"
ROUTE_DATA, ROUTE_MODEL, ROUTE_FINETUNE = "data collection", "model change", "fine-tune"
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

