"""Which charts the decision report carries: a before/after chart per fine-tuned candidate and a
learning-curve chart for each failing row that has a fitted curve (a few per candidate, overall
and per-class rows first, then the worst slices). The charts themselves are drawn by
:mod:`preflight.report.decision`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from preflight.metrics.slices import OVERALL

if TYPE_CHECKING:
    from preflight.decide.evidence import CandidateEvidence
    from preflight.decide.rule import Decision

#: learning-curve charts per candidate in the report (the table lists every curve)
MAX_CURVE_CHARTS = 6


def before_after_charts(result: Decision, finetuned: Iterable[str], folder: Path,
                        file_key: Callable[[str], str]) -> dict[str, Path]:
    """``before_after_<candidate>``: recall off-the-shelf vs fine-tuned, per fine-tuned
    candidate (``file_key``: a candidate name as a file-name part)."""
    from preflight.report.decision import before_after_chart

    return {f"before_after_{name}": before_after_chart(
        result.slices, folder / f"before_after_{file_key(name)}.png", candidate=name,
        title=f"{name}: recall off-the-shelf vs fine-tuned") for name in finetuned}


def learning_curve_charts(result: Decision, evidence: Sequence[CandidateEvidence],
                          points: Mapping[str, pd.DataFrame | None], folder: Path,
                          file_key: Callable[[str], str]) -> dict[str, Path]:
    """A learning-curve chart for each failing row that has a curve (the nested-subset
    fine-tunes evaluated on that row), named ``learning_curve_<candidate>_<row>``. ``points``:
    candidate -> its learning-curve points (``n_images_train`` per row)."""
    from preflight.decide.bar import KEY
    from preflight.decide.classify_failure import slice_label
    from preflight.decide.evidence import curve_points
    from preflight.report.decision import learning_curve_chart

    out = {}
    s = result.slices
    failing = s[(s["status"] == "fail")].drop_duplicates(["candidate", *KEY])
    # overall and per-class rows first, then the worst slices; a few charts per candidate
    failing = failing.assign(_order=(failing["slice_column"] != OVERALL).astype(int))
    failing = failing.sort_values(["candidate", "_order", "value"]).groupby("candidate").head(
        MAX_CURVE_CHARTS)
    by_name = {c.name: c for c in evidence}
    for _, r in failing.iterrows():
        cand = by_name[r["candidate"]]
        key = (r["slice_column"], r["slice_value"], r["metric"])
        fit = cand.learning_curves.get(key)
        pts = points.get(cand.name)
        if fit is None or pts is None:
            continue
        pts = curve_points(pts)
        if pts is None:
            continue
        pts = pts[(pts["slice_column"] == key[0]) & (pts["slice_value"] == key[1])
                  & (pts["metric"] == key[2])]
        label = slice_label(*key)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_",
                      f"learning_curve_{file_key(cand.name)}_{label}").strip("_")
        out[name] = learning_curve_chart(
            pts, fit, float(r["bar"]), folder / f"{name}.png",
            title=f"{cand.name}: {label} vs the number of fine-tuning images")
    return out
