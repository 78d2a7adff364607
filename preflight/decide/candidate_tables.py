"""Per-candidate tables: off-the-shelf and fine-tuned rows side by side, each failing row
classified, then back to one row per (stage, key) for the report; and the learning-curve table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from preflight.decide.bar import FAIL, KEY, NOT_ENOUGH, PASS, Bar, bar_table
from preflight.decide.classify_failure import (
    DATA_SOLVABLE,
    ROUTE_FINETUNE,
    classify,
    close_to_bar,
    slice_where,
    uncertain_failure,
)
from preflight.decide.evidence import CandidateEvidence
from preflight.decide.learning_curve import curves_table
from preflight.metrics.intervals import frames_to_decide
from preflight.stages import FINE_TUNED, OFF_THE_SHELF

SLICE_COLUMNS = ["candidate", "stage", *KEY, "value", "ci_low", "ci_high", "n_images", "n_boxes",
                 "thin", "bar", "status", "fixed_by_finetune", "improved_by_finetune",
                 "failure_kind", "basis", "route", "remedy", "images_needed",
                 "images_needed_low", "images_needed_high", "frames_needed", "boxes_needed",
                 "close"]


def _stage_tables(cand: CandidateEvidence, bar: Bar) -> pd.DataFrame:
    """Key-wide table: off-the-shelf and fine-tuned columns side by side (suffix _ots/_ft)."""
    ots = bar_table(cand.offtheshelf, bar, what=f"{cand.name} off-the-shelf metrics")
    keep = [*KEY, "bar", "value", "ci_low", "ci_high", "status", "n_images", "n_boxes"]
    if cand.finetuned is None:
        wide = ots[keep].rename(columns={c: f"{c}_ots" for c in keep[4:]})
        wide["status_ft"] = None
        for c in ("value_ft", "ci_low_ft", "ci_high_ft", "n_images_ft", "n_boxes_ft"):
            wide[c] = np.nan
    else:
        ft = bar_table(cand.finetuned, bar, what=f"{cand.name} fine-tuned metrics")
        wide = ots[keep].merge(ft[keep], on=[*KEY, "bar"], how="outer", suffixes=("_ots", "_ft"))
    second = cand.finetuned_second_seed
    if second is not None and cand.finetuned is not None:
        t2 = bar_table(second, bar, what=f"{cand.name} fine-tuned (second seed) metrics")
        own = ["value", "ci_low", "ci_high", "status"]
        wide = wide.merge(t2[[*KEY, *own]].rename(columns={c: f"{c}_ft2" for c in own}),
                          on=KEY, how="left")
    else:
        for c in ("value_ft2", "ci_low_ft2", "ci_high_ft2", "status_ft2"):
            wide[c] = np.nan if c != "status_ft2" else None
    improved = (wide["ci_low_ft"] > wide["value_ots"]) & (
        wide["value_ft"] - wide["value_ots"] >= bar.min_improvement)
    ots_fail = wide["status_ots"] == FAIL
    has_ft = cand.finetuned is not None
    fixed = pd.Series(pd.NA, index=wide.index, dtype="boolean")
    if has_ft:
        fixed[ots_fail] = (wide.loc[ots_fail, "status_ft"] == PASS).to_numpy()
    return wide.assign(improved_by_finetune=improved.fillna(False).astype(bool),
                       fixed_by_finetune=fixed)


def final_status(cand: CandidateEvidence, bar: Bar) -> dict[tuple, str]:
    """Each key's status at the candidate's last stage (fine-tuned when it has one)."""
    table = cand.finetuned if cand.finetuned is not None else cand.offtheshelf
    t = bar_table(table, bar, what=f"{cand.name} metrics")
    return dict(zip(t[KEY].itertuples(index=False, name=None), t["status"], strict=True))


def classified_rows(cand: CandidateEvidence, bar: Bar, peers: Sequence[CandidateEvidence],
                peer_status: Mapping[str, Mapping[tuple, str]] | None = None) -> pd.DataFrame:
    """The wide table with failure_kind, basis, route, remedy and images needed per key.

    A key that failed (off-the-shelf or fine-tuned) and whose fine-tuned interval, widened by
    the training noise, reaches across the bar is ``uncertain``: a re-run could flip it, so it
    is routed to neither data collection nor a model change (nor counted as either) -- unless a
    second fine-tuning run with another seed (``finetuned_second_seed``) was measured and agrees
    on its pass/fail: then it is routed like any other row."""
    wide = _stage_tables(cand, bar)
    final = "status_ft" if cand.finetuned is not None else "status_ots"
    cols = ["failure_kind", "basis", "route", "remedy"]
    needs = ["images_needed", "images_needed_low", "images_needed_high"]
    wide = wide.assign(**dict.fromkeys(cols, None), **dict.fromkeys(needs, np.nan))
    for i, row in wide.iterrows():
        decided_ft = row["status_ft"] in (PASS, FAIL)
        close = decided_ft and FAIL in (row["status_ots"], row["status_ft"]) and close_to_bar(
            row["ci_low_ft"], row["ci_high_ft"], row["bar"], bar.training_noise)
        agreed = close and row["status_ft2"] == row["status_ft"]
        if close and not agreed:
            f = uncertain_failure(row, bar, cand.second_seed)
            wide.loc[i, cols] = [f.kind, f.basis, f.route, f.remedy]
        elif _is_true(row["fixed_by_finetune"]):
            where = slice_where(row["slice_column"], row["slice_value"], row["metric"])
            wide.loc[i, cols] = [DATA_SOLVABLE, "fixed by fine-tuning", ROUTE_FINETUNE,
                                 f"fine-tune with the {where} images of the pool"]
        elif FAIL in (row["status_ots"], row[final]):
            f = classify(row, cand, bar, peers, peer_status)
            wide.loc[i, cols] = [f.kind, f.basis, f.route, f.remedy]
            wide.loc[i, needs] = f.need
        if agreed:
            wide.loc[i, "remedy"] = (
                f"{wide.loc[i, 'remedy']}; close to the bar, but a second fine-tuning run "
                f"(seed {cand.second_seed}) agrees: {_status_text(row, '_ft2')}")
    return wide


def _status_text(row: pd.Series, sfx: str) -> str:
    return (f"{row[f'status{sfx}']} at {float(row[f'value{sfx}']):.2f} "
            f"[{float(row[f'ci_low{sfx}']):.2f}, {float(row[f'ci_high{sfx}']):.2f}]")


def close_rows(metrics: pd.DataFrame, bar: Bar) -> pd.DataFrame:
    """Rows of a fine-tuned long table that pass or fail the bar with an interval that, widened
    by the training noise, reaches across it: those a second fine-tuning run should settle."""
    t = bar_table(metrics, bar, what="fine-tuned metrics")
    keep = [bool(s in (PASS, FAIL) and close_to_bar(lo, hi, b, bar.training_noise))
            for s, lo, hi, b in t[["status", "ci_low", "ci_high", "bar"]].itertuples(index=False)]
    return t[keep]


def _is_true(value: Any) -> bool:
    return value is not pd.NA and value is not None and bool(value)


def long_rows(cand: CandidateEvidence, wide: pd.DataFrame, bar: Bar) -> pd.DataFrame:
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
    return _with_evidence_needs(out, bar)[SLICE_COLUMNS]


def _with_evidence_needs(rows: pd.DataFrame, bar: Bar) -> pd.DataFrame:
    """``frames_needed``/``boxes_needed`` (labelled evaluation frames and boxes in all) for rows
    without enough evidence, at the observed rate; ``close`` for fine-tuned rows whose interval,
    widened by the training noise, reaches across the bar (a re-run could flip them)."""
    frames, boxes = frames_to_decide(rows["value"], rows["ci_low"], rows["ci_high"], rows["bar"],
                                     pd.to_numeric(rows["n_images"], errors="coerce"),
                                     pd.to_numeric(rows["n_boxes"], errors="coerce"))
    undecided = (rows["status"] == NOT_ENOUGH).to_numpy()
    lo = rows["ci_low"].to_numpy(float) - bar.training_noise
    hi = rows["ci_high"].to_numpy(float) + bar.training_noise
    b = rows["bar"].to_numpy(float)
    close = ((rows["stage"] == FINE_TUNED).to_numpy() & ~undecided & (lo < b) & (hi >= b))
    return rows.assign(frames_needed=np.where(undecided, frames, np.nan),
                       boxes_needed=np.where(undecided, boxes, np.nan), close=close)


def curves_of(cand: CandidateEvidence, wide: pd.DataFrame) -> pd.DataFrame:
    targets = dict(zip(wide[KEY].itertuples(index=False, name=None), wide["bar"], strict=True))
    table = curves_table(dict(cand.learning_curves), targets)
    table.insert(0, "candidate", cand.name)
    return table
