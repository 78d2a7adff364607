"""Drift reporting: a verdict over all checks, a per-batch history, and its chart.

Per batch, :func:`history_rows` turns the drift tables into one row per monitored feature
(``HISTORY_COLUMNS``: the batch, ``kind``, ``feature``, the monitored ``value`` and its
``threshold``, ``level``, and ``ci_low``/``ci_high`` where the value has an interval) and
:func:`append_history` adds them to a Parquet history that :func:`drift_timeseries_chart` draws.
The monitored value of a row is:

* input / prediction features: the PSI, against ``psi_fail``;
* embedding rows (a feature named ``embedding...``): the domain-classifier AUC, against
  ``auc_fail``;
* performance rows: the current metric value (with its interval), against the baseline's interval
  low (or ``baseline - min_drop`` where the baseline has no interval).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from preflight.drift.input import LEVELS, DriftInputError, DriftThresholds  # noqa: E402
from preflight.runs import atomic_write, write_parquet  # noqa: E402

HISTORY_COLUMNS: list[str] = ["kind", "feature", "value", "threshold", "level", "ci_low",
                              "ci_high"]
_RANK = {level: i for i, level in enumerate(LEVELS)}
_COLOURS = {"ok": "tab:green", "warn": "tab:orange", "fail": "tab:red"}


def _frames(drift_frames: pd.DataFrame | Sequence[pd.DataFrame]) -> pd.DataFrame:
    if isinstance(drift_frames, pd.DataFrame):
        drift_frames = [drift_frames]
    frames = [f[["kind", "feature", "level", "detail"]] for f in drift_frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["kind", "feature", "level", "detail"])
    df = pd.concat(frames, ignore_index=True)
    unknown = sorted(set(df["level"]) - set(LEVELS))
    if unknown:
        raise DriftInputError(f"unknown drift level(s) {unknown}; expected one of {LEVELS}")
    return df


def worst_level(levels) -> str:
    """The most severe of ``levels`` (``ok`` for none)."""
    ranks = [_RANK[level] for level in levels]
    return LEVELS[max(ranks)] if ranks else "ok"


def summarise(drift_frames: pd.DataFrame | Sequence[pd.DataFrame]) -> dict:
    """Verdict over drift tables: ``level`` (worst overall), ``by_kind`` (worst per kind),
    ``counts`` and ``counts_by_kind`` (rows per level), ``n_features`` and ``flagged`` (the
    non-ok rows as ``{kind, feature, level, detail}``, failures first)."""
    df = _frames(drift_frames)
    counts = {level: int((df["level"] == level).sum()) for level in LEVELS}
    by_kind, counts_by_kind = {}, {}
    for kind, group in df.groupby("kind", sort=True):
        by_kind[str(kind)] = worst_level(group["level"])
        counts_by_kind[str(kind)] = {level: int((group["level"] == level).sum())
                                     for level in LEVELS}
    flagged = df[df["level"] != "ok"].copy()
    flagged["rank"] = flagged["level"].map(_RANK)
    flagged = flagged.sort_values(["rank", "kind", "feature"], ascending=[False, True, True],
                                  kind="stable")
    return {
        "level": worst_level(df["level"]),
        "by_kind": by_kind,
        "counts": counts,
        "counts_by_kind": counts_by_kind,
        "n_features": len(df),
        "flagged": flagged[["kind", "feature", "level", "detail"]].to_dict("records"),
    }


def history_rows(drift: pd.DataFrame | Sequence[pd.DataFrame], batch, *,
                 batch_column: str = "batch",
                 thresholds: DriftThresholds | None = None) -> pd.DataFrame:
    """One history row per drift row of this batch (see the module doc for what is tracked)."""
    t = thresholds or DriftThresholds()
    frames = [drift] if isinstance(drift, pd.DataFrame) else list(drift)
    rows = []
    for frame in frames:
        for r in frame.to_dict("records"):
            lo = hi = np.nan
            if r["kind"] == "performance":
                value = r.get("current_value", np.nan)
                lo, hi = r.get("current_ci_low", np.nan), r.get("current_ci_high", np.nan)
                base_lo = r.get("baseline_ci_low", np.nan)
                threshold = (base_lo if np.isfinite(base_lo)
                             else r.get("baseline_value", np.nan) - t.min_drop)
            elif str(r["feature"]).startswith("embedding"):
                value, threshold = r["statistic"], t.auc_fail
            else:
                value, threshold = r["psi"], t.psi_fail
            rows.append({batch_column: batch, "kind": r["kind"], "feature": r["feature"],
                         "value": value, "threshold": threshold, "level": r["level"],
                         "ci_low": lo, "ci_high": hi})
    out = pd.DataFrame(rows, columns=[batch_column, *HISTORY_COLUMNS])
    return out.astype({"kind": str, "feature": str, "value": np.float64,
                       "threshold": np.float64, "level": str, "ci_low": np.float64,
                       "ci_high": np.float64})


def append_history(path: str | Path, rows: pd.DataFrame, *,
                   batch_column: str = "batch") -> pd.DataFrame:
    """Append a batch's history rows to the Parquet file at ``path`` (created if missing) and
    return the whole history. Re-running a batch replaces its earlier rows."""
    path = Path(path)
    history = rows
    if path.exists():
        history = pd.concat([pd.read_parquet(path), rows], ignore_index=True)
    history = history.drop_duplicates([batch_column, "kind", "feature"], keep="last")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(path, history.reset_index(drop=True))
    return history.reset_index(drop=True)


def _order(values: pd.Series) -> list:
    uniq = pd.unique(values.dropna())
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return sorted(uniq)
    return sorted(uniq, key=str)


def drift_timeseries_chart(history: pd.DataFrame, out_png: str | Path, *, x: str | None = None,
                           features: Sequence[str] | None = None, title: str = "",
                           columns: int = 3) -> Path:
    """Small multiples: each monitored feature's value over weeks (or batches) with its
    threshold (dashed red) and, where present, the value's interval; points coloured by level."""
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    x = x or ("week" if "week" in history.columns else "batch")
    missing = [c for c in (x, "feature", "value", "threshold") if c not in history.columns]
    if missing:
        raise DriftInputError(f"history has no column(s) {missing} (got {list(history.columns)})")
    h = history if features is None else history[history["feature"].isin(list(features))]
    multi_kind = "kind" in h.columns and h["kind"].nunique() > 1
    h = h.assign(_label=(h["kind"].astype(str) + ": " + h["feature"].astype(str)) if multi_kind
                 else h["feature"].astype(str))
    labels = list(dict.fromkeys(h["_label"]))
    order = _order(h[x])
    pos = {v: i for i, v in enumerate(order)}
    n = max(len(labels), 1)
    ncols = max(1, min(columns, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.6 * nrows), squeeze=False)
    for ax in axes.ravel()[len(labels):]:
        ax.axis("off")
    if not labels:
        axes[0, 0].text(0.5, 0.5, "no drift history yet", ha="center", va="center")
    for ax, label in zip(axes.ravel(), labels, strict=False):
        g = h[h["_label"] == label].copy()
        g["_x"] = g[x].map(pos)
        g = g.sort_values("_x")
        ax.plot(g["_x"], g["value"], color="tab:blue", lw=1.2)
        if {"ci_low", "ci_high"} <= set(g.columns) and g["ci_low"].notna().any():
            ax.fill_between(g["_x"], g["ci_low"], g["ci_high"], color="tab:blue", alpha=0.15)
        colours = [_COLOURS.get(lv, "tab:blue") for lv in g.get("level", ["ok"] * len(g))]
        ax.scatter(g["_x"], g["value"], c=colours, s=18, zorder=3)
        ax.plot(g["_x"], g["threshold"], color="tab:red", ls="--", lw=1, drawstyle="steps-mid")
        ax.set_title(label, fontsize=8)
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([str(v) for v in order], fontsize=7,
                           rotation=45 if len(order) > 6 else 0)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title or f"drift over {x} (dashed red: threshold; dots: ok/warn/fail)",
                 fontsize=9)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out


__all__ = ["summarise", "worst_level", "history_rows", "append_history",
           "drift_timeseries_chart", "HISTORY_COLUMNS"]
