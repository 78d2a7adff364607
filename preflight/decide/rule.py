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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from preflight.decide.bar import (
    FAIL,
    FINE_TUNED,
    KEY,
    NOT_ENOUGH,
    OFF_THE_SHELF,
    OVERALL,
    PASS,
    REQUIRED_COLUMNS,
    Bar,
    DecisionInputError,
    bar_table,
    interval_status,
)
from preflight.decide.candidate_tables import SLICE_COLUMNS, _classified, _curves, _long_rows
from preflight.decide.classify_failure import (
    ARCHITECTURE_BOUND,
    DATA_SOLVABLE,
    ROUTE_DATA,
    ROUTE_FINETUNE,
    ROUTE_MODEL,
    SIZE_BIN_SIDE,
    _heavier_name,
    _lighter_name,
    failure_summary,
    grouped_changes,
    object_side_at_input,
    slice_label,
    slice_where,
)
from preflight.decide.learning_curve import LearningCurveFit

SHIP, FINE_TUNE, REPLACE, COLLECT = ("ship off-the-shelf", "fine-tune", "replace",
                                     "collect more data first")

#: the names this module has always offered, wherever they now live
__all__ = [
    "ARCHITECTURE_BOUND", "COLLECT", "DATA_SOLVABLE", "FAIL", "FINE_TUNE", "FINE_TUNED", "KEY",
    "NOT_ENOUGH", "OFF_THE_SHELF", "OVERALL", "PASS", "REPLACE", "REQUIRED_COLUMNS",
    "ROUTE_DATA", "ROUTE_FINETUNE", "ROUTE_MODEL", "SHIP", "SIZE_BIN_SIDE", "SLICE_COLUMNS",
    "Bar", "CandidateEvidence", "CandidateVerdict", "Decision", "DecisionInputError",
    "OverallDecision", "TilingResult", "bar_table", "decide", "failure_summary",
    "grouped_changes", "interval_status", "object_side_at_input", "slice_label", "slice_where",
]


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
