"""Slices (image subsets and box subsets) and the long metrics table.

Long format (docs/CONTRACTS.md): ``slice_column, slice_value, metric, value, ci_low, ci_high,
n_images, n_boxes, thin``; the overall rows use ``__all__`` for both slice columns. Slice values
are strings (a Parquet column needs one type); missing values are not a slice. Numeric or
datetime columns with more than ``max_levels`` distinct values are cut into ``n_bins`` quantile
bins (labelled by their interval).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from preflight.metrics.intervals import thin_flag

LONG_COLUMNS = ["slice_column", "slice_value", "metric", "value", "ci_low", "ci_high",
                "n_images", "n_boxes", "thin"]
#: ``slice_column`` and ``slice_value`` of the overall rows (every image, every box)
OVERALL = "__all__"
#: A per-class row's metric is ``<metric>.<class name>`` (``recall.crate``): the first ``.``
#: ends the metric (no metric of the long metrics table has one; a class name may).
CLASS_METRIC_SEP = "."


def class_metric(metric: str, class_name: object) -> str:
    """The name of ``metric``'s row for one class: ``("recall", "crate")`` -> ``recall.crate``."""
    return f"{metric}{CLASS_METRIC_SEP}{class_name}"


def metric_parts(metric: str) -> tuple[str, str | None]:
    """``recall.crate`` -> ``("recall", "crate")``; ``recall`` -> ``("recall", None)``."""
    base, sep, class_name = metric.partition(CLASS_METRIC_SEP)
    return base, (class_name if sep else None)


def metric_parts_column(metric: pd.Series) -> tuple[pd.Series, pd.Series]:
    """:func:`metric_parts` over a ``metric`` column: the metrics and the class names (NaN on a
    row that is not per class)."""
    parts = metric.astype(str).str.split(CLASS_METRIC_SEP, n=1)
    return parts.str[0], parts.str[1]


def is_class_metric(metric: pd.Series) -> pd.Series:
    """Whether each row of a ``metric`` column is a per-class row."""
    return metric.astype(str).str.contains(CLASS_METRIC_SEP, regex=False)
#: COCO size bins (object area in pixels²)
SMALL, MEDIUM = 32.0**2, 96.0**2
#: the box slice of object side (sqrt of area) at model input in bins fine enough around a
#: pixel threshold: ``<8``, ``8-16``, ``16-32``, ``32-96``, ``>=96`` px
INPUT_PX_COLUMN = "input_px_bin"
INPUT_PX_EDGES: tuple[float, ...] = (8.0, 16.0, 32.0, 96.0)


def _px_labels(edges: tuple[float, ...]) -> tuple[str, ...]:
    inner = [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return (f"<{edges[0]:g}", *inner, f">={edges[-1]:g}")


INPUT_PX_LABELS = _px_labels(INPUT_PX_EDGES)


def input_px_bin(side: np.ndarray) -> np.ndarray:
    """``INPUT_PX_LABELS`` of object sides (px at model input)."""
    idx = np.searchsorted(np.asarray(INPUT_PX_EDGES), np.asarray(side, dtype=np.float64),
                          side="right")
    return np.asarray(INPUT_PX_LABELS, dtype=object)[idx]


def px_bin_side(label: str) -> tuple[float, float]:
    """The side range (px) of an ``input_px_bin`` label (NaN for an unknown label)."""
    if label in INPUT_PX_LABELS:
        i = INPUT_PX_LABELS.index(label)
        edges = (0.0, *INPUT_PX_EDGES, float("inf"))
        return edges[i], edges[i + 1]
    return float("nan"), float("nan")


@dataclass(frozen=True)
class Slice:
    """A named subset: ``mask`` is over the index's images (image slice) or gt rows (box slice)."""

    column: str
    value: str
    mask: np.ndarray


def slice_codes(series: pd.Series, max_levels: int = 20, n_bins: int = 4
                ) -> tuple[np.ndarray, list[str]]:
    """A slice column as ``(codes, labels)``: each row's label position (-1 where missing) and
    the distinct string labels; high-cardinality numbers binned. Only the distinct values are
    turned to text (equal texts of different values, e.g. ``1`` and ``"1"``, share a label)."""
    s = series.reset_index(drop=True)
    present = s.notna().to_numpy()
    if not present.any():
        return np.full(len(s), -1, dtype=np.int64), []
    numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
    timelike = pd.api.types.is_datetime64_any_dtype(s)
    if (numeric or timelike) and s.nunique(dropna=True) > max_levels:
        s = pd.qcut(s, q=n_bins, duplicates="drop")
    elif numeric and pd.api.types.is_float_dtype(s) and (s[present] == s[present].round()).all():
        s = s.astype("Int64")
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    texts = np.asarray(pd.Index(uniques).astype(str), dtype=object)
    labels, first = np.unique(texts, return_inverse=True) if len(texts) else (texts, texts)
    if len(labels) == len(texts):          # no two values share a text: keep their order
        return np.asarray(codes, dtype=np.int64), [str(t) for t in texts]
    remap = np.append(np.asarray(first, dtype=np.int64), -1)
    return remap[codes], [str(t) for t in labels]


def slice_labels(series: pd.Series, max_levels: int = 20, n_bins: int = 4) -> pd.Series:
    """String labels for a slice column (None where missing); high-cardinality numbers binned."""
    codes, labels = slice_codes(series, max_levels, n_bins)
    out = np.append(np.asarray(labels, dtype=object), None)[codes]
    return pd.Series(out, dtype=object)


def _sort_key(label: str):
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def make_slices(frame: pd.DataFrame, columns: list[str] | None, *, include_overall: bool = True,
                max_levels: int = 20, n_bins: int = 4, what: str = "images") -> list[Slice]:
    """One :class:`Slice` per (column, value) over the rows of ``frame`` (overall first)."""
    n = len(frame)
    out = [Slice(OVERALL, OVERALL, np.ones(n, dtype=bool))] if include_overall else []
    for col in columns or []:
        if col not in frame.columns:
            raise ValueError(f"slice column {col!r} is not in the {what} table "
                             f"(columns: {sorted(map(str, frame.columns))})")
        codes, uniques = slice_codes(frame[col], max_levels=max_levels, n_bins=n_bins)
        for i in sorted(range(len(uniques)), key=lambda i: _sort_key(uniques[i])):
            out.append(Slice(str(col), uniques[i], codes == i))
    return out


def size_bin(area: np.ndarray) -> np.ndarray:
    """COCO size bin of an object area: small < 32², medium < 96², large."""
    return np.array(SIZE_LABELS, dtype=object)[_size_codes(area)]


SIZE_LABELS = ("small", "medium", "large")


def _size_codes(area) -> np.ndarray:
    return np.searchsorted(np.array([SMALL, MEDIUM]), np.asarray(area, dtype=np.float64),
                           side="right")


def _size_categorical(area) -> pd.Categorical:
    """:func:`size_bin` as a categorical (a box table's column: no string per box)."""
    return pd.Categorical.from_codes(_size_codes(area), SIZE_LABELS)


#: Occluded-fraction bins: (upper bound, label); the last bin is open-ended.
OCCLUDED_BINS: tuple[tuple[float, str], ...] = ((0.01, "none"), (0.5, "partial"),
                                                (np.inf, "over_half"))
#: The label of the most-occluded bin (objects more than half hidden).
MOST_OCCLUDED: str = OCCLUDED_BINS[-1][1]


def occluded_bin(occluded: np.ndarray) -> np.ndarray:
    """Occluded fraction bins (:data:`OCCLUDED_BINS`): ``none`` (< 0.01), ``partial`` (< 0.5),
    ``over_half``."""
    o = np.asarray(occluded, dtype=np.float64)
    (lo, none), (mid, partial), (_, most) = OCCLUDED_BINS
    out = np.where(o < lo, none, np.where(o < mid, partial, most)).astype(object)
    out[~np.isfinite(o)] = None
    return out


def box_table(gt: pd.DataFrame, columns: list[str], images: pd.DataFrame | None = None,
              model_input_size: int | None = None) -> pd.DataFrame:
    """The box slice columns for ``gt`` rows, deriving the standard ones when absent:
    ``size_bin`` (from ``area``), ``occluded_bin`` (from ``occluded``), ``input_size_bin``
    (object size at the model input: the area scaled by ``model_input_size / max(width,
    height)`` squared, letterbox resize, binned like ``size_bin``) and ``input_px_bin`` (the
    same object side at model input in the finer ``INPUT_PX_LABELS`` bins)."""
    out = pd.DataFrame(index=gt.index)
    for col in columns:
        if col in gt.columns:
            out[col] = gt[col]
        elif col == "size_bin":
            area = gt["area"] if "area" in gt.columns else gt["w"] * gt["h"]
            out[col] = _size_categorical(area.to_numpy())
        elif col == "occluded_bin" and "occluded" in gt.columns:
            out[col] = occluded_bin(gt["occluded"].to_numpy())
        elif col in ("input_size_bin", INPUT_PX_COLUMN) and model_input_size \
                and images is not None and {"width", "height"} <= set(images.columns):
            dims = images.set_index("image_id")[["width", "height"]].max(axis=1)
            longest = dims.reindex(gt["image_id"].to_numpy()).to_numpy(dtype=np.float64)
            scale = float(model_input_size) / longest
            area = (gt["w"] * gt["h"]).to_numpy(dtype=np.float64) * scale**2
            out[col] = (_size_categorical(area) if col == "input_size_bin"
                        else input_px_bin(np.sqrt(area)))
        else:
            raise ValueError(f"box slice column {col!r} is not in the ground-truth table and "
                             "cannot be derived (size_bin needs area; occluded_bin needs "
                             "occluded; input_size_bin and input_px_bin need model_input_size "
                             "and image sizes)")
    return out


class LongTable:
    """Collects rows of the long metrics table."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(self, column: str, value: str, metric: str, v, lo=np.nan, hi=np.nan,
            n_images: int = 0, n_boxes: int = 0) -> None:
        self.rows.append((column, value, metric, _f(v), _f(lo), _f(hi), int(n_images),
                          int(n_boxes)))

    def add_many(self, column: str, value: str, metrics: list[str], values, lo, hi,
                 n_images, n_boxes) -> None:
        """One row per metric of one slice: the numbers as arrays (or scalars) aligned with
        ``metrics`` (what :meth:`add` does row by row, without the per-row conversions)."""
        m = len(metrics)

        def floats(x) -> list[float]:
            return np.broadcast_to(np.asarray(x, dtype=np.float64), (m,)).tolist()

        def ints(x) -> list[int]:
            return np.broadcast_to(np.asarray(x, dtype=np.int64), (m,)).tolist()

        self.rows.extend(zip([column] * m, [value] * m, metrics, floats(values), floats(lo),
                             floats(hi), ints(n_images), ints(n_boxes), strict=True))

    def frame(self, min_images: int, min_boxes: int) -> pd.DataFrame:
        cols = list(zip(*self.rows, strict=True)) if self.rows else [()] * 8
        data: dict = {name: pd.array(list(c), dtype="str")
                      for name, c in zip(LONG_COLUMNS[:3], cols[:3], strict=True)}
        data.update({name: np.array(c, dtype=np.float64)
                     for name, c in zip(LONG_COLUMNS[3:6], cols[3:6], strict=True)})
        data.update({name: np.array(c, dtype=np.int64)
                     for name, c in zip(LONG_COLUMNS[6:8], cols[6:8], strict=True)})
        data["thin"] = thin_flag(data["n_images"], data["n_boxes"], min_images,
                                 min_boxes).astype(bool)
        return pd.DataFrame(data)


def _f(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")
