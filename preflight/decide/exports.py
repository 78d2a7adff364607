"""Exported artefacts in the decision: each export held against the bar like any candidate, and
the export chosen when it clears the bar and its FP32 source does not fit the latency budget.

The rule (:func:`choose_export`): when the FP32 decision ships a model, it stands (the exports are
reported beside it). When it does not, an export ships if it clears the bar on its own
evaluation (no failing row, at least one passing row, p99 within the budget, daily cost within the
ceiling, enough evidence on every operational class and critical slice, nothing that blocks its
source whatever the metrics -- an off-the-shelf model's classes without an analog in
pre-training) and its FP32 source's p99 is over the budget -- the export is the fix for latency, not a
second chance for a model whose slices fail. Among several, the lightest source first (the
decision's size rank), then the lowest p99, then the name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from preflight.decide.bar import FAIL, KEY, NOT_ENOUGH, PASS, Bar, bar_table, evidence_gap_rows
from preflight.decide.classify_failure import slice_label
from preflight.decide.rule import FINE_TUNE, SHIP, Decision, OverallDecision
from preflight.stages import FINE_TUNED


@dataclass(frozen=True)
class ExportEvidence:
    """One exported artefact of a candidate's model at ``source_stage`` (its evaluation on the
    same held-out set, its latency on its own runtime, and the exact file)."""

    candidate: str
    label: str                    # onnx_int8
    description: str              # INT8 ONNX export of yolov8n (fine-tuned)
    source_stage: str             # off-the-shelf | fine-tuned
    metrics: pd.DataFrame         # long metrics table of the export
    latency_p99_ms: float
    source_latency_p99_ms: float
    weights: str
    sha256: str
    daily_cost: float | None = None
    #: why it cannot ship whatever its metrics, as its FP32 source could not (e.g. an
    #: off-the-shelf model's operational classes with no analog in pre-training)
    blocking: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExportVerdict:
    candidate: str
    label: str
    description: str
    source_stage: str
    clears_bar: bool
    latency_ok: bool
    n_pass: int
    n_fail: int
    n_not_enough: int
    latency_p99_ms: float
    source_latency_p99_ms: float
    speedup: float
    weights: str
    sha256: str
    failing: tuple[str, ...] = ()
    blocking: tuple[str, ...] = ()
    #: rows that need enough evidence before anything ships (operational classes, critical
    #: slices) and lack it -- as for the FP32 models
    gaps: tuple[str, ...] = ()


def evidence_gaps(table: pd.DataFrame, bar: Bar) -> tuple[str, ...]:
    """The required rows of a bar table (every operational class's overall rows, every
    critical slice) without enough evidence; a per-class precision without any detection of
    the class is undefined, not missing evidence (its recall row says what is missing)."""
    rows = evidence_gap_rows(table, bar)
    return tuple(slice_label(*k) for k in rows[KEY].itertuples(index=False))


def assess_exports(exports: Sequence[ExportEvidence], bar: Bar) -> list[ExportVerdict]:
    """Each export against the bar (its own intervals, as for any candidate)."""
    out = []
    for e in exports:
        table = bar_table(e.metrics, bar, what=f"{e.description} metrics")
        counts = {s: int((table["status"] == s).sum()) for s in (PASS, FAIL, NOT_ENOUGH)}
        latency_ok = bool(e.latency_p99_ms <= bar.latency_budget_p99_ms)
        cost = math.nan if e.daily_cost is None else float(e.daily_cost)
        cost_ok = bar.daily_cost_ceiling is None or cost <= bar.daily_cost_ceiling
        fails = table[table["status"] == FAIL]
        failing = tuple(slice_label(*k) for k in fails[KEY].itertuples(index=False))
        gaps = evidence_gaps(table, bar)
        speedup = (e.source_latency_p99_ms / e.latency_p99_ms
                   if e.latency_p99_ms > 0 else math.nan)
        out.append(ExportVerdict(
            e.candidate, e.label, e.description, e.source_stage,
            clears_bar=(counts[FAIL] == 0 and counts[PASS] > 0 and latency_ok and cost_ok
                        and not e.blocking and not gaps),
            latency_ok=latency_ok, n_pass=counts[PASS], n_fail=counts[FAIL],
            n_not_enough=counts[NOT_ENOUGH], latency_p99_ms=float(e.latency_p99_ms),
            source_latency_p99_ms=float(e.source_latency_p99_ms), speedup=float(speedup),
            weights=e.weights, sha256=e.sha256, failing=failing,
            blocking=tuple(e.blocking), gaps=gaps))
    return out


def choose_export(decision: Decision, verdicts: Sequence[ExportVerdict], bar: Bar
                  ) -> tuple[Decision, ExportVerdict | None]:
    """The decision with the export that ships (see the module), or unchanged and None."""
    if decision.overall.verdict in (SHIP, FINE_TUNE) or not verdicts:
        return decision, None
    ranks = {c.name: c.size_rank for c in decision.candidates}
    eligible = [v for v in verdicts
                if v.clears_bar and v.source_latency_p99_ms > bar.latency_budget_p99_ms]
    if not eligible:
        return decision, None
    best = min(eligible, key=lambda v: (ranks.get(v.candidate, 0), v.latency_p99_ms,
                                        v.candidate, v.label))
    verdict = FINE_TUNE if best.source_stage == FINE_TUNED else SHIP
    fp32 = decision.overall
    source = next((c for c in decision.candidates if c.name == best.candidate), None)
    context = [f"the FP32 models alone ship none (their call: '{fp32.verdict}'"
               + (f", closest {fp32.candidate}" if fp32.candidate else "")
               + f"); the {best.label} export of {best.candidate} supersedes that call"]
    if source is not None:
        # the source's own FP32 reasons, as facts about the FP32 model (without "replace with")
        context += [f"FP32 {source.name} ({source.stage}): {r}" for r in source.reasons
                    if not r.startswith("replace with ")]
    # facts about every FP32 model that hold whatever ships (rows close to the bar)
    context += [r for r in fp32.reasons if "could flip on a re-run" in r]
    reasons = (
        f"ship the {best.description}",
        f"the FP32 {best.candidate} ({best.source_stage}) does not fit the latency budget: p99 "
        f"{best.source_latency_p99_ms:.0f} ms over {bar.latency_budget_p99_ms:.0f} ms; its "
        f"{best.label} export does: p99 {best.latency_p99_ms:.0f} ms ({best.speedup:.1f}x "
        f"faster), and it meets the bar on every row with evidence ({best.n_pass} pass, "
        f"{best.n_not_enough} without enough evidence)",
        f"champion: the validated file {best.weights} (sha256 {best.sha256[:12]})",
        *context)
    overall = OverallDecision(verdict, best.candidate, best.source_stage, reasons)
    return replace(decision, overall=overall), best


def exports_table(verdicts: Sequence[ExportVerdict]) -> pd.DataFrame:
    """One row per export for the report: latency against the FP32 source and the bar."""
    return pd.DataFrame([{
        "export": v.description, "p99 ms": round(v.latency_p99_ms, 1),
        "FP32 p99 ms": round(v.source_latency_p99_ms, 1),
        "speed-up": round(v.speedup, 2) if np.isfinite(v.speedup) else None,
        "pass": v.n_pass, "fail": v.n_fail, "not enough evidence": v.n_not_enough,
        "clears the bar": v.clears_bar, "sha256": v.sha256[:12],
        "failing rows": ", ".join(v.failing[:5]) + (" ..." if len(v.failing) > 5 else ""),
        "blocked by": "; ".join(v.blocking),
        "without enough evidence": ", ".join(v.gaps[:5]) + (" ..." if len(v.gaps) > 5 else ""),
    } for v in verdicts])


def flag_deltas(deltas: pd.DataFrame, export_metrics: pd.DataFrame, bar: Bar) -> pd.DataFrame:
    """The per-slice deltas with the bar and the export's status against it (from the export's
    own evaluation intervals, as the decision reads them); ``below_bar`` flags ``fail``."""
    table = bar_table(export_metrics, bar, what="export metrics")[[*KEY, "bar", "status"]]
    out = deltas.drop(columns=["export_status"], errors="ignore").merge(
        table.rename(columns={"status": "export_status"}), on=KEY, how="left")
    out["below_bar"] = out["export_status"] == FAIL
    return out
