"""The decision rule: ship off-the-shelf, fine-tune, replace, or collect more data first.

Each (candidate, stage, slice, metric) row of the long metrics tables is held against the bar
through its 95% interval: ``pass`` if ``ci_low >= bar``, ``fail`` if ``ci_high < bar``, otherwise
(or when the slice is thin) ``not enough evidence``. A failing row is ``data-solvable`` (routed
to data collection, sized by its learning curve), ``architecture-bound`` (routed to a model
change) or ``unresolved`` (routed to the measurement that would settle it), by evidence only (see
:func:`~preflight.decide.classify_failure.classify`): nothing is data-solvable by default.

A candidate ships only with enough evidence on every operational class (the per-class rows) and
every critical slice (``decision.critical_slices``); otherwise, with nothing failing, the verdict
is "collect evaluation data first" with the frames each row needs. Off-the-shelf never ships with
a class that has no analog in pre-training, nor with recall below the bar under a stress family at
the severity production is expected to reach. The overall call picks the cheapest candidate to
run that ships: lowest p99 latency under production conditions, then daily cost, then parameter
count (``size_rank``), then name.
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
    KEY,
    NOT_ENOUGH,
    PASS,
    REQUIRED_COLUMNS,
    Bar,
    DecisionInputError,
    bar_table,
    evidence_gap_rows,
    interval_status,
)
from preflight.decide.candidate_tables import (
    SLICE_COLUMNS,
    classified_rows,
    curves_of,
    final_status,
    long_rows,
)
from preflight.decide.classify_failure import (
    ARCHITECTURE_BOUND,
    DATA_SOLVABLE,
    ROUTE_DATA,
    ROUTE_FINETUNE,
    ROUTE_MEASURE,
    ROUTE_MODEL,
    ROUTE_RERUN,
    SIZE_BIN_SIDE,
    UNCERTAIN,
    UNRESOLVED,
    failure_summary,
    grouped_changes,
    object_side_at_input,
    slice_label,
    slice_where,
)
from preflight.decide.evidence import CandidateEvidence, TilingResult
from preflight.decide.lookalikes import LOOKALIKE_COLUMNS
from preflight.decide.model_change import lighter_model, model_change
from preflight.metrics.slices import OVERALL
from preflight.stages import FINE_TUNED, OFF_THE_SHELF

SHIP, FINE_TUNE, REPLACE, COLLECT = ("ship off-the-shelf", "fine-tune", "replace",
                                     "collect more data first")
#: nothing fails, but an operational class or critical slice lacks evidence
EVALUATE = "collect evaluation data first"
#: failing rows without evidence for a route and none architecture-bound: measure before deciding
MEASURE = "measure first"

#: the names this module has always offered, wherever they now live
__all__ = [
    "ARCHITECTURE_BOUND", "COLLECT", "DATA_SOLVABLE", "EVALUATE", "FAIL", "FINE_TUNE",
    "FINE_TUNED", "KEY", "MEASURE", "NOT_ENOUGH", "OFF_THE_SHELF", "OVERALL", "PASS", "REPLACE",
    "REQUIRED_COLUMNS", "ROUTE_DATA", "ROUTE_FINETUNE", "ROUTE_MEASURE", "ROUTE_MODEL",
    "ROUTE_RERUN", "SHIP", "SIZE_BIN_SIDE", "SLICE_COLUMNS", "UNCERTAIN", "UNRESOLVED",
    "Bar", "CandidateEvidence", "CandidateVerdict", "Decision", "DecisionInputError",
    "OverallDecision", "TilingResult", "bar_table", "decide", "failure_summary",
    "grouped_changes", "interval_status", "object_side_at_input", "slice_label", "slice_where",
]


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
    #: failing rows by kind at the decisive stage
    n_data_solvable: int = 0
    n_architecture_bound: int = 0
    n_unresolved: int = 0
    #: failing rows within the training noise of the bar: routed to a re-run, not counted as
    #: data-solvable or architecture-bound
    n_uncertain: int = 0
    #: operational-class / critical-slice rows without enough evidence, with frames needed
    label_plan: tuple[str, ...] = ()
    #: stress conditions with recall below the bar: blocking (at an expected severity) / risks
    stress_blocking: tuple[str, ...] = ()
    stress_risks: tuple[str, ...] = ()

    @property
    def ships(self) -> bool:
        return self.verdict in (SHIP, FINE_TUNE)

    def sort_key(self) -> tuple[float, float, int, str]:
        """Cheapest to run first: p99 latency under production conditions, then daily cost
        (unknown last), then parameter count (``size_rank``), then name."""
        cost = self.daily_cost if np.isfinite(self.daily_cost) else math.inf
        return (self.latency_p99_ms, cost, self.size_rank, self.name)


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
    #: every candidate's look-alike pairs (``candidate`` + ``LOOKALIKE_COLUMNS``)
    lookalikes: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: a candidate an operator puts into production although the verdict ships none
    #: (``decision.ship_anyway``); see :meth:`with_override`
    override: str | None = None

    def with_override(self, candidate: str | None) -> Decision:
        """This decision with an operator's override recorded (no-op when it ships or when
        ``candidate`` is None); the verdict stays what the evidence says."""
        if not candidate or self.ships:
            return self
        self.candidate(candidate)  # KeyError naming the candidates
        why = (f"operator override (decision.ship_anyway): {candidate} goes into production "
               f"although the verdict is '{self.overall.verdict}'")
        return replace(self, override=candidate,
                       overall=replace(self.overall, reasons=(why, *self.overall.reasons)))

    @property
    def ships(self) -> bool:
        """Whether the verdict puts a model into production (only then may ``champion`` move)."""
        return self.overall.verdict in (SHIP, FINE_TUNE) and self.overall.candidate is not None

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
            "lookalikes": self.lookalikes.astype(object).to_dict(orient="records"),
            "override": self.override,
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
             peers: Sequence[CandidateEvidence],
             statuses: Mapping[str, Mapping[tuple, str]] | None = None) -> CandidateVerdict:
    """Ship off-the-shelf if it clears the bar with enough evidence (no class without an analog,
    no stress failure at an expected severity); else fine-tune if the fine-tuned model does; else
    collect evaluation data (nothing fails, evidence missing), replace, collect training data or
    measure, from the last stage's failing rows."""
    has_ft = cand.finetuned is not None
    checks = {s: _stage_check(cand, wide, bar, s) for s in
              ([OFF_THE_SHELF, FINE_TUNED] if has_ft else [OFF_THE_SHELF])}
    ots = checks[OFF_THE_SHELF]
    blocking, risks = stress_conditions(cand, bar)
    stress = {"stress_blocking": tuple(blocking), "stress_risks": tuple(risks)}
    if ots["ships"] and not cand.no_analog_classes and not blocking:
        return _make(cand, SHIP, OFF_THE_SHELF, ots, [
            f"off-the-shelf meets the bar on every row with evidence ({ots['n_pass']} pass, "
            f"{ots['n_not_enough']} without enough evidence, none of them an operational class "
            "or critical slice)", *ots["budget"]], **stress)
    ots_why = _ots_shortfall(cand, ots, blocking)
    if has_ft and checks[FINE_TUNED]["ships"]:
        ft = checks[FINE_TUNED]
        data = _data_to_use(cand, wide)
        return _make(cand, FINE_TUNE, FINE_TUNED, ft, [
            ots_why, f"fine-tuned meets the bar on every row with evidence ({ft['n_pass']} pass, "
            f"{ft['n_not_enough']} without enough evidence, none of them an operational class "
            "or critical slice)",
            f"fine-tune {cand.name} with: {', '.join(data) or 'the whole pool'}", *ft["budget"]],
            data_to_use=tuple(data), **stress)
    stage = FINE_TUNED if has_ft else OFF_THE_SHELF
    check = checks[stage]
    if not check["n_fail"] and check["gaps"] and check["latency_ok"] and check["cost_ok"]:
        why = [ots_why] if stage == FINE_TUNED or cand.no_analog_classes or blocking else []
        return _make(cand, EVALUATE, stage, check, [
            *why, f"no row fails at the {stage} stage, but {len(check['gaps'])} operational-class "
            "or critical-slice row(s) lack enough evidence: label the evaluation frames in the "
            "label plan", *check["budget"]], label_plan=tuple(check["gaps"]), **stress)
    verdict = _not_shipping(cand, wide, bar, peers, stage, check, ots_why, blocking,
                            statuses or {})
    return replace(verdict, **stress)


def _stage_check(cand: CandidateEvidence, wide: pd.DataFrame, bar: Bar, stage: str) -> dict:
    sfx = "_ft" if stage == FINE_TUNED else "_ots"
    status = wide[f"status{sfx}"]
    counts = {k: int((status == v).sum()) for k, v in
              (("n_pass", PASS), ("n_fail", FAIL), ("n_not_enough", NOT_ENOUGH))}
    failing = wide[status == FAIL]
    kinds = {f"n_{k}": int((failing["failure_kind"] == v).sum()) for k, v in
             (("data_solvable", DATA_SOLVABLE), ("architecture_bound", ARCHITECTURE_BOUND),
              ("unresolved", UNRESOLVED), ("uncertain", UNCERTAIN))}
    p99, cost = cand.latency(stage), cand.cost(stage)
    latency_ok = p99 <= bar.latency_budget_p99_ms
    ceiling = bar.daily_cost_ceiling
    cost_ok = ceiling is None or cost <= ceiling
    budget = [f"p99 latency {p99:.0f} ms {'within' if latency_ok else 'over'} the "
              f"{bar.latency_budget_p99_ms:.0f} ms budget"]
    if ceiling is not None:
        budget.append(f"daily cost {cost:.0f} {'within' if cost_ok else 'over'} the ceiling "
                      f"{ceiling:.0f}")
    gaps = _evidence_gaps(wide, bar, sfx)
    ships = (counts["n_fail"] == 0 and counts["n_pass"] > 0 and not gaps and latency_ok
             and cost_ok)
    return {**counts, **kinds, "latency_ok": latency_ok, "cost_ok": cost_ok, "budget": budget,
            "ships": ships, "p99": p99, "cost": cost, "gaps": gaps}


def _evidence_gaps(wide: pd.DataFrame, bar: Bar, sfx: str) -> list[str]:
    """The label plan: each required row without enough evidence, with the frames (and boxes)
    that would decide it at the observed rate."""
    from preflight.metrics.intervals import frames_to_decide

    rows = evidence_gap_rows(wide, bar, sfx)
    out = []
    for _, r in rows.iterrows():
        label = slice_label(r["slice_column"], r["slice_value"], r["metric"])
        n_img, n_box = r.get(f"n_images{sfx}", np.nan), r.get(f"n_boxes{sfx}", np.nan)
        frames, boxes = (float(x) for x in frames_to_decide(
            r[f"value{sfx}"], r[f"ci_low{sfx}"], r[f"ci_high{sfx}"], r["bar"], n_img, n_box))
        out.append(f"{label}: {_plan_text(frames, boxes, n_img, n_box)}")
    return out


def _plan_text(frames: float, boxes: float, n_img: float, n_box: float) -> str:
    have = (f"{int(n_img)} frames" if np.isfinite(n_img) else "no frames") + \
        (f" / {int(n_box)} boxes" if np.isfinite(n_box) else "")
    if np.isfinite(n_box) and n_box == 0:
        return (f"no boxes of it among the {have.split(' /')[0]} evaluated: label frames that "
                "contain it (at least evaluation.min_images frames / min_boxes boxes)")
    if not np.isfinite(frames):
        why = "its value sits on the bar" if np.isinf(frames) else "no measurement"
        return f"{have} now; {why}: label frames until the interval clears the bar"
    more = max(frames - (n_img if np.isfinite(n_img) else 0), 0)
    box_text = f" ({boxes:.0f} boxes)" if np.isfinite(boxes) else ""
    if more <= 0:
        return (f"{have} now; thin: label frames up to the evaluation minimum "
                "(evaluation.min_images / min_boxes)")
    return f"about {frames:.0f} frames{box_text} in all at the observed rate ({more:.0f} more; " \
           f"{have} now)"


def stress_conditions(cand: CandidateEvidence, bar: Bar) -> tuple[list[str], list[str]]:
    """Stress conditions where off-the-shelf recall falls below the bar: those at or under a
    family's expected production severity (block shipping off-the-shelf), and the others
    (risks)."""
    t = cand.stress
    if t is None or t.empty or not {"family", "severity", "metric", "value"} <= set(t.columns):
        return [], []
    target = float(bar.min_recall["default"])
    rows = t[(t["metric"] == "recall") & (t["family"] != "clean")
             & (t["value"].astype(float) < target)]
    blocking, risks = [], []
    for _, r in rows.sort_values(["family", "severity"]).iterrows():
        name = f"{r['family']}/{r.get('corruption', '')} severity {int(r['severity'])}"
        text = f"{name}: recall {float(r['value']):.2f} < {target:.2f}"
        expected = bar.expected_severity.get(str(r["family"]))
        (blocking if expected is not None and int(r["severity"]) <= int(expected)
         else risks).append(text)
    return blocking, risks


def _ots_shortfall(cand: CandidateEvidence, ots: dict, blocking: Sequence[str] = ()) -> str:
    parts = []
    if ots["n_fail"]:
        parts.append(f"{ots['n_fail']} row(s) fail")
    if cand.no_analog_classes:
        parts.append(f"no analog in pre-training for {', '.join(cand.no_analog_classes)}")
    if blocking:
        parts.append(f"recall below the bar under stress at the expected severity "
                     f"({'; '.join(blocking[:3])}{' ...' if len(blocking) > 3 else ''})")
    if not ots["latency_ok"]:
        parts.append("latency over budget")
    if not ots["cost_ok"]:
        parts.append("daily cost over the ceiling")
    if ots["gaps"]:
        parts.append(f"{len(ots['gaps'])} operational-class or critical-slice row(s) without "
                     "enough evidence")
    if not ots["n_pass"] and not ots["n_fail"]:
        parts.append("no row has enough evidence")
    return f"off-the-shelf does not ship: {'; '.join(parts) or 'no row passes'}"


def _data_to_use(cand: CandidateEvidence, wide: pd.DataFrame) -> list[str]:
    fixed = wide[wide["fixed_by_finetune"] == True]  # noqa: E712
    labels = [slice_where(*k) for k in fixed[KEY].itertuples(index=False)]
    return list(dict.fromkeys(labels)) + [f"class {c} (no analog)" for c in cand.no_analog_classes]


def _not_shipping(cand: CandidateEvidence, wide: pd.DataFrame, bar: Bar,
                  peers: Sequence[CandidateEvidence], stage: str, check: dict,
                  ots_why: str, blocking: Sequence[str] = (),
                  statuses: Mapping[str, Mapping[tuple, str]] | None = None) -> CandidateVerdict:
    status = wide["status_ft" if stage == FINE_TUNED else "status_ots"]
    failing = wide[status == FAIL]
    reasons = [ots_why] if stage == FINE_TUNED or not len(failing) else []
    reasons += failure_summary(stage, failing)
    arch = failing[failing["failure_kind"] == ARCHITECTURE_BOUND]
    unresolved = failing[failing["failure_kind"] == UNRESOLVED]
    uncertain = failing[failing["failure_kind"] == UNCERTAIN]
    statuses = statuses or {}
    known = failing.loc[failing["failure_kind"] == DATA_SOLVABLE, "images_needed"].dropna()
    need = float(known.max()) if len(known) else math.nan
    changes = grouped_changes(arch)
    if not check["latency_ok"]:
        changes.insert(0, f"{lighter_model(cand, bar, peers)}: p99 {check['p99']:.0f} ms is "
                          f"over the {bar.latency_budget_p99_ms:.0f} ms budget")
    if not check["cost_ok"] and not len(failing):
        passing = wide[wide["status_ft" if stage == FINE_TUNED else "status_ots"] == PASS]
        keys = list(passing[KEY].itertuples(index=False, name=None))
        changes.append(f"{model_change(cand, bar, peers, keys, statuses)}: daily cost "
                       f"{check['cost']:.0f} over the ceiling {bar.daily_cost_ceiling:.0f}")
    extra = dict(images_needed=need, label_plan=tuple(check["gaps"]))
    if changes:
        pending = len(unresolved) + len(uncertain)
        if pending:  # the change is for the other rows; these still need their measurement
            target = ("the architecture-bound rows" if len(arch) else
                      "the latency or cost")
            reasons.append(f"{pending} failing row(s) are not routed yet (unresolved or "
                           "uncertain): take the measurement named for each; the proposed "
                           f"change is for {target}, not for them")
        return _make(cand, REPLACE, stage, check, [*reasons, *check["budget"]],
                     replacement=tuple(changes), **extra)
    if len(unresolved) or len(uncertain):
        why = []
        if len(unresolved):
            why.append(f"{len(unresolved)} failing row(s) have no decisive evidence for a "
                       "route yet: "
                       "take the measurement named for each row before collecting data or "
                       "changing the model")
        if len(uncertain):
            labels = [slice_label(*k) for k in uncertain[KEY].itertuples(index=False)]
            why.append(f"{len(uncertain)} failing row(s) are within the training noise of the "
                       f"bar ({', '.join(labels[:4])}{' ...' if len(labels) > 4 else ''}): "
                       "routed neither to data collection nor to a model change; fine-tune "
                       "again with another seed and route only what both runs agree on")
        return _make(cand, MEASURE, stage, check, [*reasons, *why, *check["budget"]], **extra)
    if not len(failing) and not check["n_pass"]:
        reasons.append(f"no row has enough evidence at the {stage} stage: label more "
                       "evaluation images")
        return _make(cand, EVALUATE, stage, check, [*reasons, *check["budget"]], **extra)
    if not len(failing) and blocking and not cand.no_analog_classes:
        return _make(cand, MEASURE, stage, check, [
            *reasons, "fine-tune with the expected corruptions as augmentation and re-run the "
            "stress suite: whether that lifts the recall decides the route", *check["budget"]],
            **extra)
    if not len(failing):
        reasons.append("no fine-tuned model evaluated: label the classes without an analog and "
                       "fine-tune")
    else:
        sized = int(failing["images_needed"].notna().sum())
        within = (f"{sized} of them sized by a learning curve within the labelling budget of "
                  f"{bar.labelling_budget_images} images" if sized else
                  "none sized by a learning curve yet")
        reasons.append(f"all {len(failing)} failing row(s) are data-solvable ({within})")
    return _make(cand, COLLECT, stage, check, [*reasons, *check["budget"]], **extra)


def _make(cand: CandidateEvidence, verdict: str, stage: str, check: dict, reasons: list[str],
          **extra: Any) -> CandidateVerdict:
    return CandidateVerdict(name=cand.name, verdict=verdict, stage=stage,
                            reasons=tuple(r for r in reasons if r), family=cand.family,
                            size_rank=cand.size_rank, latency_p99_ms=check["p99"],
                            daily_cost=check["cost"], n_pass=check["n_pass"],
                            n_fail=check["n_fail"], n_not_enough=check["n_not_enough"],
                            n_data_solvable=check["n_data_solvable"],
                            n_architecture_bound=check["n_architecture_bound"],
                            n_unresolved=check["n_unresolved"],
                            n_uncertain=check["n_uncertain"], **extra)


# ---------------------------------------------------------------- the call


def decide(candidates: Sequence[CandidateEvidence], bar: Bar) -> Decision:
    """Evaluate every candidate against the bar and make the overall call."""
    _check_candidates(candidates, bar)
    statuses = {c.name: final_status(c, bar) for c in candidates}
    verdicts, slices, curves = [], [], []
    for cand in candidates:
        wide = classified_rows(cand, bar, candidates, statuses)
        verdicts.append(_verdict(cand, wide, bar, candidates, statuses))
        slices.append(long_rows(cand, wide, bar))
        curves.append(curves_of(cand, wide))
    overall, verdicts = _overall(verdicts)
    table = pd.concat(slices, ignore_index=True)
    close = table[table["close"].astype(bool)]
    if len(close):
        labels = [f"{c}: {slice_label(*k)}" for c, *k in
                  close[["candidate", *KEY]].itertuples(index=False)]
        kinds = close["failure_kind"]
        n_uncertain = int((kinds == UNCERTAIN).sum())
        n_routed = int((kinds.notna() & (kinds != UNCERTAIN)).sum())
        routes = [f"{n_uncertain} routed uncertain (re-run first), not data-solvable or "
                  "architecture-bound"] if n_uncertain else []
        if n_routed:
            routes.append(f"{n_routed} routed by their evidence, as a second fine-tuning run "
                          "agrees on their pass/fail")
        n_left = len(close) - n_uncertain - n_routed
        if n_left:
            routes.append(f"{n_left} pass after fine-tuning and never failed (no route needed)")
        overall = replace(overall, reasons=(
            *overall.reasons, f"{len(labels)} fine-tuned row(s) are close to the bar and could "
            f"flip on a re-run (training noise {bar.training_noise:.2f}): {', '.join(labels[:6])}"
            f"{' ...' if len(labels) > 6 else ''}; of them {', '.join(routes)}"))
    pairs = [c.lookalikes.assign(candidate=c.name) for c in candidates
             if c.lookalikes is not None and len(c.lookalikes)]
    lookalikes = (pd.concat(pairs, ignore_index=True) if pairs else
                  pd.DataFrame(columns=["candidate", *LOOKALIKE_COLUMNS]))
    lookalikes = lookalikes[["candidate", *LOOKALIKE_COLUMNS]]
    return Decision(overall=overall, candidates=tuple(verdicts), slices=table,
                    curves=pd.concat(curves, ignore_index=True), bar=bar, lookalikes=lookalikes)


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


def failing_counts(v: CandidateVerdict) -> str:
    """``3 failing row(s): 1 data-solvable, 2 architecture-bound`` (only the kinds present)."""
    kinds = [(v.n_data_solvable, DATA_SOLVABLE), (v.n_architecture_bound, ARCHITECTURE_BOUND),
             (v.n_unresolved, UNRESOLVED), (v.n_uncertain, UNCERTAIN)]
    parts = [f"{n} {k}" for n, k in kinds if n]
    return f"{v.n_fail} failing row(s)" + (f": {', '.join(parts)}" if parts else "")


def _overall(verdicts: list[CandidateVerdict]) -> tuple[OverallDecision, list[CandidateVerdict]]:
    """Pick the cheapest shipping candidate to run; name it as the replacement for the others.
    Without one: collect evaluation data, collect training data, measure, replace -- in that
    order, each naming the cheapest candidate with that verdict."""
    shipping = sorted((v for v in verdicts if v.ships), key=CandidateVerdict.sort_key)
    if shipping:
        best = shipping[0]
        verdicts = [replace(v, replacement=(best.name, *v.replacement),
                            reasons=(*v.reasons, f"replace with {best.name} ({best.verdict})"))
                    if v.verdict == REPLACE else v for v in verdicts]
        why = [f"{best.name}: {best.verdict} ({best.stage})", *best.reasons]
        others = [v.name for v in shipping[1:]]
        if others:
            why.append(f"also ships: {', '.join(others)}; {best.name} is the cheapest to run "
                       "(lowest p99 latency; ties broken by daily cost, then parameter count, "
                       "then name)")
        return OverallDecision(best.verdict, best.name, best.stage, tuple(why)), verdicts
    for verdict, lead in ((EVALUATE, "has no failing row but not enough evidence"),
                          (COLLECT, None), (MEASURE, None)):
        pick = sorted((v for v in verdicts if v.verdict == verdict),
                      key=CandidateVerdict.sort_key)
        if not pick:
            continue
        best = pick[0]
        if lead is None:
            lead = (f"has {failing_counts(best)}" if best.n_fail else
                    "has no failing row")
        plan = [f"label: {g}" for g in best.label_plan]
        return OverallDecision(verdict, best.name, best.stage, (
            f"no candidate ships yet; {best.name} {lead}", *plan, *best.reasons)), verdicts
    best = min(verdicts, key=lambda v: (v.n_fail, *v.sort_key()))
    return OverallDecision(REPLACE, best.name, best.stage,
                           (f"no candidate ships; closest: {best.name} "
                            f"({failing_counts(best) if best.n_fail else 'no failing row'})",
                            *(f"change: {c}" for c in best.replacement[:3]),
                            *([f"... and {len(best.replacement) - 3} more changes in the report"]
                              if len(best.replacement) > 3 else []),
                            *best.reasons)), verdicts
