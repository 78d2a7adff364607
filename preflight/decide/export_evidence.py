"""An exported artefact as evidence: its per-slice comparison with its FP32 source, as recorded
(MLflow metric names, the changed and below-the-bar rows) and as the decision weighs it.

An export stage hands the decision one plain record per artefact (its file, sha256, latency, its
tables' paths: ``metrics``, ``deltas``, ``stress``). Here those records become
:class:`~preflight.decide.exports.ExportEvidence` -- an off-the-shelf export blocked by what blocks
its source in the FP32 rule -- and the report's two export tables. The rule that weighs them is
:mod:`preflight.decide.exports`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from preflight.decide.bar import KEY, Bar
from preflight.decide.classify_failure import slice_label
from preflight.decide.exports import ExportEvidence, ExportVerdict, assess_exports, exports_table
from preflight.metrics.slices import OVERALL
from preflight.stages import FINE_TUNED

#: report sections of the exported artefacts
EXPORTS_TITLE = "Exports (latency against the FP32 source, the bar)"
DELTAS_TITLE = "Export per-slice recall against the FP32 source (paired over frames)"
#: the exports table's column of the recall rows that changed beyond the paired interval
CHANGED_COLUMN = "recall changed beyond the interval"
#: the deltas table's columns in the report
_DELTA_COLUMNS = ["export", "slice_column", "slice_value", "metric", "source", "export_value",
                  "delta", "delta_ci_low", "delta_ci_high", "changed", "export_status"]


def _read(path: str | None) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path else None


def _labels(frame: pd.DataFrame) -> list[str]:
    """Each row's human name (``brightness_bin=low (recall)``, ``class crate (recall)``)."""
    return [slice_label(*k) for k in frame[KEY].itertuples(index=False)]


# ------------------------------------------------------------- one export against its source
def delta_metrics(deltas: pd.DataFrame) -> dict[str, float]:
    """The MLflow metrics of an export's paired deltas: ``delta.<metric>[.<column>.<value>]``
    and its interval bounds (``delta_ci_low.``, ``delta_ci_high.``)."""
    metrics: dict[str, float] = {}
    for r in deltas.itertuples():
        where = "" if r.slice_column == OVERALL else f".{r.slice_column}.{r.slice_value}"
        metrics[f"delta.{r.metric}{where}"] = r.delta
        metrics[f"delta_ci_low.{r.metric}{where}"] = r.delta_ci_low
        metrics[f"delta_ci_high.{r.metric}{where}"] = r.delta_ci_high
    return metrics


def deltas_shown(deltas: pd.DataFrame) -> pd.DataFrame:
    """The deltas as shown beside the export (worst first, rows by their human names)."""
    shown = deltas.sort_values("delta")
    return shown.assign(slice=_labels(shown))[
        ["slice", "source", "export", "delta", "delta_ci_low", "delta_ci_high", "changed",
         "export_status"]]


def changed_rows(deltas: pd.DataFrame) -> list[str]:
    """``column=value metric: +0.123`` for each row whose paired interval excludes 0."""
    return [f"{r.slice_column}={r.slice_value} {r.metric}: {r.delta:+.3f}"
            for r in deltas[deltas["changed"]].itertuples()]


def below_bar_rows(deltas: pd.DataFrame) -> list[str]:
    """``column=value metric`` for each row where the export fails the bar."""
    return [f"{r.slice_column}={r.slice_value} {r.metric}"
            for r in deltas[deltas["below_bar"]].itertuples()]


def changed_recall(deltas: pd.DataFrame) -> str:
    """The recall rows (overall, per class, per slice) whose paired interval of the
    export-minus-source difference excludes 0, as ``slice delta [low, high]``; "none" if none."""
    rows = deltas[deltas["metric"].str.startswith("recall") & deltas["changed"]]
    return "; ".join(
        f"{slice_label(r.slice_column, r.slice_value, r.metric)} {r.delta:+.3f} "
        f"[{r.delta_ci_low:+.3f}, {r.delta_ci_high:+.3f}]"
        for r in rows.sort_values("delta").itertuples()) or "none"


# ------------------------------------------------------------- the exports in the decision
def export_blocking(value: Mapping[str, Any], no_analog: Sequence[str], bar: Bar
                    ) -> tuple[str, ...]:
    """What blocks an off-the-shelf export whatever its metrics, as it blocks its source in the
    FP32 rule: operational classes with no analog in pre-training (``no_analog``), and recall
    below the bar under stress at a family's expected severity -- the export's own stress
    results (quantisation can change robustness). A fine-tuned export is blocked by neither."""
    from preflight.decide.evidence import CandidateEvidence
    from preflight.decide.rule import stress_conditions

    if value["source_stage"] == FINE_TUNED:
        return ()
    stressed, _ = stress_conditions(CandidateEvidence(
        value["candidate"], pd.DataFrame(), latency_p99_ms=0.0,
        stress=_read(value["tables"].get("stress"))), bar)
    missing = list(no_analog or [])
    return ((f"no analog in pre-training: {', '.join(missing)}",) if missing else ()) + (
        (f"recall below the bar under stress at the expected severity: "
         f"{'; '.join(stressed[:3])}{' ...' if len(stressed) > 3 else ''}",)
        if stressed else ())


def export_evidence(value: Mapping[str, Any], blocking: tuple[str, ...] = ()) -> ExportEvidence:
    """The decision's evidence of one export from its record (its metrics table read)."""
    return ExportEvidence(
        candidate=value["candidate"], label=value["label"], description=value["description"],
        source_stage=value["source_stage"], metrics=pd.read_parquet(value["tables"]["metrics"]),
        latency_p99_ms=value["production_p99_ms"],
        source_latency_p99_ms=value["source_production_p99_ms"], weights=value["weights"],
        sha256=value["sha256"], daily_cost=value.get("daily_cost"), blocking=blocking)


def deltas_table(values: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The report's per-slice deltas of every export: every slice's recall, and per-class rows
    where they changed or fail the bar; rows by their human names (no sentinels)."""
    deltas = []
    for v in values:
        d = pd.read_parquet(v["tables"]["deltas"]).rename(columns={"export": "export_value"})
        d = d[(d["metric"] == "recall") | d["changed"] | d["below_bar"]]
        deltas.append(d.assign(export=v["description"])[_DELTA_COLUMNS])
    table = pd.concat(deltas, ignore_index=True)
    table.insert(1, "slice", _labels(table))
    table = table.drop(columns=KEY)
    for col in ("source", "export_value", "delta", "delta_ci_low", "delta_ci_high"):
        table[col] = table[col].round(3)
    return table


def assess_export_values(values: Sequence[Mapping[str, Any]], bar: Bar,
                         no_analog: Mapping[str, Sequence[str]]
                         ) -> tuple[list[ExportVerdict], dict[str, pd.DataFrame]]:
    """The exports' verdicts against the bar, and their report tables (:data:`EXPORTS_TITLE`:
    latency against the FP32 source; :data:`DELTAS_TITLE`: the per-slice recall deltas, paired
    over the same frames). ``no_analog``: candidate -> its operational classes without an analog
    in pre-training (see :func:`export_blocking`)."""
    if not values:
        return [], {}
    evidence = [export_evidence(v, export_blocking(v, no_analog.get(v["candidate"], ()), bar))
                for v in values]
    verdicts = assess_exports(evidence, bar)
    summary = exports_table(verdicts)
    summary[CHANGED_COLUMN] = [changed_recall(pd.read_parquet(v["tables"]["deltas"]))
                               for v in values]
    return verdicts, {EXPORTS_TITLE: summary, DELTAS_TITLE: deltas_table(values)}
