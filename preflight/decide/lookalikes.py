"""Look-alike classes found from the confusion matrix at the operating point.

A pair (A, B) is a look-alike when the share of A's ground truth detected as B reaches
``threshold`` off-the-shelf or after fine-tuning (pairs stated in the settings are always
listed). Its status decides the route of A's failing rows:

* ``persists``: after fine-tuning the share's 95% interval lies above the threshold -- fine-tuning
  did not separate them: architecture-bound (a second-stage classifier on the detector's crops,
  or a higher input size);
* ``removed by fine-tuning``: after fine-tuning the interval lies below the threshold:
  data-solvable;
* ``open``: no fine-tuned model, or an interval that straddles the threshold: measure again;
* ``not confused``: a pair stated in the settings whose share stays below the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from preflight.metrics.slices import OVERALL

PERSISTS, REMOVED, OPEN, NOT_CONFUSED = ("persists", "removed by fine-tuning", "open",
                                         "not confused")
LOOKALIKE_COLUMNS = ["true_class", "pred_class", "source", "count_ots", "share_ots",
                     "ci_low_ots", "ci_high_ots", "count_ft", "share_ft", "ci_low_ft",
                     "ci_high_ft", "status"]
#: the confusion matrix's name for "no class" (rows: false positives, columns: misses)
BACKGROUND = "background"


def _overall_cells(confusion: pd.DataFrame | None) -> pd.DataFrame:
    """Class-to-other-class cells of the overall confusion table, indexed (true, pred)."""
    cols = ["true_class", "pred_class", "count", "share", "ci_low", "ci_high"]
    if confusion is None or confusion.empty:
        return pd.DataFrame(columns=cols).set_index(["true_class", "pred_class"])
    missing = [c for c in cols if c not in confusion.columns]
    if missing:
        raise ValueError(f"confusion table lacks columns {missing}: re-run the evaluation "
                         "(shares with intervals are part of the confusion table)")
    c = confusion[(confusion["slice_column"] == OVERALL) & (confusion["true_class"] != BACKGROUND)
                  & (confusion["pred_class"] != BACKGROUND)
                  & (confusion["true_class"] != confusion["pred_class"])]
    return c[cols].set_index(["true_class", "pred_class"])


def find_lookalikes(confusion_ots: pd.DataFrame | None, confusion_ft: pd.DataFrame | None = None,
                    *, threshold: float = 0.1,
                    pairs: Iterable[tuple[str, str]] = ()) -> pd.DataFrame:
    """The look-alike pairs (``LOOKALIKE_COLUMNS``, one row per direction A -> B), strongest
    first: found where a share reaches ``threshold``, plus the ``pairs`` stated by hand (both
    directions, when the confusion table knows the classes)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"look-alike threshold must be in (0, 1), got {threshold}")
    ots, ft = _overall_cells(confusion_ots), _overall_cells(confusion_ft)
    found = set(ots.index[ots["share"].astype(float) >= threshold])
    found |= set(ft.index[ft["share"].astype(float) >= threshold])
    stated = {(a, b) for p in pairs for a, b in (tuple(p), tuple(p)[::-1])}
    known = set(ots.index) | set(ft.index)
    rows = []
    for key in sorted(found | (stated & known)):
        o = ots.loc[key] if key in ots.index else None
        f = ft.loc[key] if key in ft.index else None
        rows.append({
            "true_class": key[0], "pred_class": key[1],
            "source": "confusion matrix" if key in found else "settings",
            **_side(o, "ots"), **_side(f, "ft"),
            "status": (_status(f, threshold, confusion_ft is not None) if key in found
                       else NOT_CONFUSED)})
    out = pd.DataFrame(rows, columns=LOOKALIKE_COLUMNS)
    if len(out):
        strongest = out[["share_ft", "share_ots"]].max(axis=1)
        out = out.assign(_s=strongest).sort_values(["_s", "true_class", "pred_class"],
                                                   ascending=[False, True, True])
        out = out.drop(columns="_s").reset_index(drop=True)
    return out


def _side(cell: pd.Series | None, sfx: str) -> dict:
    if cell is None:
        return {f"count_{sfx}": np.nan, f"share_{sfx}": np.nan, f"ci_low_{sfx}": np.nan,
                f"ci_high_{sfx}": np.nan}
    return {f"count_{sfx}": float(cell["count"]), f"share_{sfx}": float(cell["share"]),
            f"ci_low_{sfx}": float(cell["ci_low"]), f"ci_high_{sfx}": float(cell["ci_high"])}


def _status(ft: pd.Series | None, threshold: float, has_ft: bool) -> str:
    if not has_ft or ft is None or not np.isfinite(float(ft["ci_low"])):
        return OPEN
    if float(ft["ci_low"]) > threshold:
        return PERSISTS
    if float(ft["ci_high"]) < threshold:
        return REMOVED
    return OPEN


def lookalike_for(lookalikes: pd.DataFrame | None, class_name: str) -> pd.Series | None:
    """The strongest look-alike pair in which ``class_name``'s boxes are taken for another."""
    if lookalikes is None or lookalikes.empty:
        return None
    hit = lookalikes[lookalikes["true_class"] == class_name]
    return hit.iloc[0] if len(hit) else None
