"""Plots people would rather look at than read: per-slice metrics with intervals, confusion, errors.

All functions take the core's DataFrames and write a PNG, returning its path. Matplotlib runs
headless (Agg); no fonts are fetched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import cv2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from preflight.metrics.slices import OVERALL  # noqa: E402
from preflight.runs import atomic_write  # noqa: E402


def slice_chart(metrics: pd.DataFrame, metric: str, out: str | Path, *, title: str = "",
                bar: float | None = None) -> Path:
    """Dot-and-whisker chart of `metric` for every slice value, grouped by slice column.

    Thin slices (too few images/boxes) are drawn hollow and grey so they do not read as facts;
    the overall value is a vertical line and the operational bar (if given) a dashed red one.
    """
    rows = metrics[metrics["metric"] == metric].copy()
    overall = rows[rows["slice_column"] == OVERALL]
    rows = rows[rows["slice_column"] != OVERALL]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    height = max(2.5, 0.28 * len(rows) + 1.2)
    fig, ax = plt.subplots(figsize=(7.5, height))
    ticks: list[float] = []
    labels: list[str] = []
    y = 0.0
    for column, group in rows.groupby("slice_column", sort=True):
        for _, row in group.sort_values("slice_value", key=lambda s: s.astype(str)).iterrows():
            value, lo, hi = row["value"], row.get("ci_low", np.nan), row.get("ci_high", np.nan)
            thin = bool(row.get("thin", False))
            colour = "0.6" if thin else "tab:blue"
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [y, y], color=colour, lw=2)
            if np.isfinite(value):
                ax.plot(value, y, "o", color=colour, mfc="white" if thin else colour, ms=6)
            ticks.append(y)
            labels.append(f"{column}={row['slice_value']} (n={row.get('n_images', '')})"
                          f"{' thin' if thin else ''}")
            y += 1
        y += 0.5  # a gap between slice columns
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=8)
    if len(overall) and np.isfinite(overall["value"].iloc[0]):
        ax.axvline(overall["value"].iloc[0], color="k", lw=1, label="overall")
    if bar is not None:
        ax.axvline(bar, color="tab:red", ls="--", lw=1, label="bar")
    ax.set_xlim(0, 1.0)
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    ax.set_title(title or f"{metric} by slice (95% intervals; hollow = thin slice)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out


def confusion_chart(confusion: pd.DataFrame, out: str | Path, *, title: str = "") -> Path:
    """Heatmap of a confusion matrix (rows: true class incl. background, columns: predicted)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    values = confusion.to_numpy(dtype=float)
    row_sums = values.sum(axis=1, keepdims=True)
    share = np.divide(values, row_sums, out=np.zeros_like(values), where=row_sums > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * values.shape[1], 1.0 + 0.6 * values.shape[0]))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if values[i, j]:
                ax.text(j, i, f"{int(values[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(values.shape[1]))
    ax.set_xticklabels([str(c) for c in confusion.columns], rotation=45, ha="right")
    ax.set_yticks(range(values.shape[0]))
    ax.set_yticklabels([str(i) for i in confusion.index])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion at the operating threshold (row-normalised colour)")
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out


def bar_chart(values: pd.Series, out: str | Path, *, title: str, xlabel: str) -> Path:
    """A horizontal bar chart (error-type counts, AP gained per fixed error type, rPC...)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.5, max(2.0, 0.35 * len(values) + 1)))
    ax.barh([str(i) for i in values.index], values.to_numpy(dtype=float), color="tab:orange")
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out


def line_chart(frame: pd.DataFrame, x: str, y: str, hue: str, out: str | Path, *, title: str,
               threshold: float | None = None, ylabel: str | None = None) -> Path:
    """One line per `hue` value (metric over weeks, metric over severity, learning curves)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, group in frame.groupby(hue, sort=True):
        group = group.sort_values(x)
        ax.plot(group[x], group[y], marker="o", label=str(key))
        if {"ci_low", "ci_high"} <= set(group.columns):
            ax.fill_between(group[x], group["ci_low"], group["ci_high"], alpha=0.15)
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label="threshold")
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out


def draw_frame(image: np.ndarray, gt: pd.DataFrame, predictions: pd.DataFrame,
               class_names: Sequence[str], *, threshold: float, caption: str = "") -> np.ndarray:
    """An RGB frame with ground truth (green) and predictions above threshold (red) drawn on it."""
    canvas = np.ascontiguousarray(image.copy())
    scale = max(1, int(round(480 / max(canvas.shape[:2]))))
    if scale > 1:
        canvas = cv2.resize(canvas, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)

    def box(row, colour, label):
        x, y, w, h = (float(row[k]) * scale for k in ("x", "y", "w", "h"))
        cv2.rectangle(canvas, (int(x), int(y)), (int(x + w), int(y + h)), colour, 1)
        cv2.putText(canvas, label, (int(x), max(10, int(y) - 2)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.35, colour, 1, cv2.LINE_AA)

    for _, row in gt.iterrows():
        box(row, (0, 200, 0), class_names[int(row["class_id"])])
    for _, row in predictions[predictions["score"] >= threshold].iterrows():
        box(row, (230, 30, 30), f"{class_names[int(row['class_id'])]} {row['score']:.2f}")
    if caption:
        cv2.putText(canvas, caption, (4, canvas.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 0), 1, cv2.LINE_AA)
    return canvas


def frame_grid(frames: Sequence[np.ndarray], out: str | Path, *, columns: int = 3) -> Path:
    """Tile frames (same size after padding) into one PNG."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not frames:
        frames = [np.zeros((64, 64, 3), np.uint8)]
    h = max(f.shape[0] for f in frames)
    w = max(f.shape[1] for f in frames)
    padded = [cv2.copyMakeBorder(f, 0, h - f.shape[0], 0, w - f.shape[1], cv2.BORDER_CONSTANT)
              for f in frames]
    while len(padded) % columns:
        padded.append(np.zeros((h, w, 3), np.uint8))
    rows = [np.hstack(padded[i:i + columns]) for i in range(0, len(padded), columns)]
    cv2.imwrite(str(out), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    return out
