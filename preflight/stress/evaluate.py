"""Run a detector over the stress suite and report performance under corruption (rPC).

Following Michaelis et al. (2019), "Benchmarking Robustness in Object Detection": for each
corruption c and severity s the metric P_{c,s} is computed on the corrupted copies of the
evaluation set; ``rpc = P_{c,s} / P_clean``. :func:`summarize_rpc` averages over corruptions and
severities per family (mPC) and reports rPC = mPC / P_clean, plus an overall ``__all__`` row that
weights every (corruption, severity) condition equally, as the paper does.

Images are streamed in batches: only one batch of clean frames plus one batch of corrupted frames
is held at a time; ground-truth and prediction rows (small) are accumulated per condition and the
injected ``evaluate_fn`` runs once per condition at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

import numpy as np
import pandas as pd

from preflight.metrics.slices import OVERALL
from preflight.progress import Progress, Report
from preflight.stress.suite import Corruption, apply, default_suite, derive_seed, sanitize_boxes

PRED_COLUMNS = ["class_id", "score", "x", "y", "w", "h"]
GT_COLUMNS = ["image_id", "box_id", "class_id", "x", "y", "w", "h", "area", "iscrowd",
              "occluded", "size_bin"]
RESULT_COLUMNS = ["family", "corruption", "severity", "metric", "value", "clean_value", "rpc",
                  "n_images", "n_boxes"]
CLEAN = ("clean", "none", 0)

PredictFn = Callable[[list[np.ndarray]], Sequence[Any]]
EvaluateFn = Callable[[pd.DataFrame, pd.DataFrame, pd.DataFrame], dict[str, float]]


def prediction_array(pred: Any) -> np.ndarray:
    """One image's predictions as a float ``(N, 6)`` array ``class_id, score, x, y, w, h``.

    Accepts a DataFrame with (at least) those columns or anything array-like of shape ``(N, 6)``.
    """
    if isinstance(pred, pd.DataFrame):
        missing = [c for c in PRED_COLUMNS if c not in pred.columns]
        if missing:
            raise ValueError(f"prediction frame lacks columns {missing}")
        return pred[PRED_COLUMNS].to_numpy(dtype=np.float64).reshape(-1, 6)
    arr = np.asarray(pred, dtype=np.float64)
    if arr.size == 0:
        arr = arr.reshape(0, 6)
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise ValueError(f"predictions must be (N, 6) class_id, score, x, y, w, h; got {arr.shape}")
    return arr


def predictions_frame(pred: Any, image_id: object) -> pd.DataFrame:
    """One image's predictions as a DataFrame ``image_id, class_id, score, x, y, w, h``."""
    arr = prediction_array(pred)
    df = pd.DataFrame(arr, columns=PRED_COLUMNS)
    df["class_id"] = df["class_id"].astype(np.int64)
    df.insert(0, "image_id", [image_id] * len(df))
    return df


def _size_bin(area: np.ndarray) -> np.ndarray:
    return np.where(area < 32**2, "small", np.where(area < 96**2, "medium", "large"))


class _Condition:
    """Accumulates the rows of one condition (clean or one corruption) as compact arrays."""

    def __init__(self) -> None:
        self.images: list[tuple[object, int, int]] = []
        self.n_gt: list[int] = []
        self.gt: list[np.ndarray] = []  # (N, 6): class_id, x, y, w, h, occluded
        self.n_dt: list[int] = []
        self.dt: list[np.ndarray] = []  # (N, 6): class_id, score, x, y, w, h

    def add(self, image_id: object, height: int, width: int, boxes: np.ndarray,
            class_ids: np.ndarray, occluded: np.ndarray, pred: Any) -> None:
        gt = np.column_stack([class_ids, boxes, occluded]).astype(np.float64).reshape(-1, 6)
        dt = prediction_array(pred)
        self.images.append((image_id, int(width), int(height)))
        self.gt.append(gt)
        self.n_gt.append(len(gt))
        self.dt.append(dt)
        self.n_dt.append(len(dt))

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        images = pd.DataFrame(self.images, columns=["image_id", "width", "height"])
        ids = np.empty(len(self.images), dtype=object)
        ids[:] = [i[0] for i in self.images]
        g = np.concatenate(self.gt) if self.gt else np.zeros((0, 6))
        area = g[:, 3] * g[:, 4]
        gt = pd.DataFrame({
            "image_id": np.repeat(ids, self.n_gt),
            "box_id": np.arange(len(g), dtype=np.int64),
            "class_id": g[:, 0].astype(np.int64),
            "x": g[:, 1], "y": g[:, 2], "w": g[:, 3], "h": g[:, 4],
            "area": area, "iscrowd": np.zeros(len(g), dtype=np.int64),
            "occluded": g[:, 5], "size_bin": _size_bin(area),
        }, columns=GT_COLUMNS)
        d = np.concatenate(self.dt) if self.dt else np.zeros((0, 6))
        dt = pd.DataFrame(d, columns=PRED_COLUMNS)
        dt["class_id"] = dt["class_id"].astype(np.int64)
        dt.insert(0, "image_id", np.repeat(ids, self.n_dt))
        return gt, dt, images


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def _predict(predict_fn: PredictFn, frames: list[np.ndarray]) -> list[Any]:
    preds = list(predict_fn(frames))
    if len(preds) != len(frames):
        raise ValueError(f"predict_fn returned {len(preds)} results for {len(frames)} images")
    return preds


def stress_evaluate(
    predict_fn: PredictFn,
    images: Iterable[tuple[object, np.ndarray, np.ndarray, np.ndarray]],
    evaluate_fn: EvaluateFn,
    suite: Sequence[Corruption] | None = None,
    *,
    seed: int = 0,
    batch_size: int = 8,
    metrics: Sequence[str] | None = None,
    n_images: int | None = None,
    report: Report | None = None,
    desc: str = "stress",
) -> pd.DataFrame:
    """Evaluate ``predict_fn`` on clean and corrupted copies of ``images``.

    ``images`` yields ``(image_id, image RGB uint8, boxes xywh (N, 4), class_ids (N,))`` and is
    consumed once. ``predict_fn(list of frames)`` returns one prediction per frame (see
    :func:`predictions_frame`), in the coordinates of the frame it was given. ``evaluate_fn(gt,
    dt, images)`` gets ground truth (columns ``GT_COLUMNS``, in the corrupted frame's coordinates),
    predictions (``image_id`` + ``PRED_COLUMNS``) and ``image_id, width, height``, and returns
    ``{metric: value}``. ``metrics`` restricts the metrics reported (default: all returned).
    ``n_images`` (how many ``images`` yields) lets ``report`` get progress lines with the time
    left (batches done, each one clean + every corruption).

    Returns the long table ``RESULT_COLUMNS``: one row per (condition, metric), the clean rows
    first (``family="clean", corruption="none", severity=0``, ``rpc=1``). ``rpc`` is NaN where the
    clean value is 0 or not finite.
    """
    suite = list(default_suite() if suite is None else suite)
    if len(set(suite)) != len(suite):
        raise ValueError("the stress suite lists a corruption twice")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    conditions: dict[tuple, _Condition] = {CLEAN: _Condition()}
    for c in suite:
        conditions[(c.family, c.name, c.severity)] = _Condition()
    seen: set = set()
    total = -(-int(n_images) // batch_size) if n_images else 0
    bar = Progress(total, desc, unit="batches", report=report)
    for batch in _batches(images, batch_size):
        _check_new_ids(seen, [item[0] for item in batch])
        _stress_batch(predict_fn, batch, suite, conditions, seed)
        bar.update(1)
    bar.close()
    if not seen:
        raise ValueError("no images to stress-evaluate")
    return _result_table(conditions, evaluate_fn, metrics)


def _check_new_ids(seen: set, ids: list) -> None:
    """Add a batch's image ids to ``seen``; a ValueError when one repeats (in the batch or an
    earlier one)."""
    dup = seen.intersection(ids) | {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"duplicate image ids in the stress input: {sorted(map(str, dup))[:5]}")
    seen.update(ids)


def _stress_batch(predict_fn: PredictFn, batch: list, suite: Sequence[Corruption],
                  conditions: dict[tuple, _Condition], seed: int) -> None:
    """Predict one batch clean and under every corruption of ``suite``; each condition gets the
    frames' ground truth and predictions."""
    ids = [item[0] for item in batch]
    clean = conditions[CLEAN]
    frames = [np.ascontiguousarray(item[1]) for item in batch]
    for (image_id, image, boxes, cls), pred in zip(batch, _predict(predict_fn, frames), strict=True):
        # the clean condition goes through the same box sanitising as the corrupted ones
        h, w = image.shape[:2]
        cb, ccls, _ = sanitize_boxes(boxes, cls, h, w)
        clean.add(image_id, h, w, cb, ccls, np.zeros(len(cb)), pred)
    del frames
    for c in suite:
        stressed = [apply(c, image, boxes, cls, seed=derive_seed(seed, image_id, c))
                    for image_id, image, boxes, cls in batch]
        preds = _predict(predict_fn, [s.image for s in stressed])
        cond = conditions[(c.family, c.name, c.severity)]
        for image_id, s, pred in zip(ids, stressed, preds, strict=True):
            h, w = s.image.shape[:2]
            cond.add(image_id, h, w, s.boxes_xywh, s.class_ids, s.occluded, pred)
        del stressed, preds


def _result_table(conditions: dict[tuple, _Condition], evaluate_fn: EvaluateFn,
                  metrics: Sequence[str] | None) -> pd.DataFrame:
    """``evaluate_fn`` on every condition (clean first): the long table ``RESULT_COLUMNS``, each
    value beside the clean one and their ratio (``rpc``; NaN where the clean value is 0 or not
    finite)."""
    rows: list[dict[str, Any]] = []
    clean_values: dict[str, float] = {}
    for key, cond in conditions.items():
        gt, dt, imgs = cond.frames()
        result = {k: float(v) for k, v in evaluate_fn(gt, dt, imgs).items()
                  if metrics is None or k in metrics}
        if key == CLEAN:
            clean_values = result
        for metric, value in result.items():
            clean_value = clean_values.get(metric, float("nan"))
            ok = np.isfinite(clean_value) and clean_value != 0
            rows.append({
                "family": key[0], "corruption": key[1], "severity": key[2], "metric": metric,
                "value": value, "clean_value": clean_value,
                "rpc": value / clean_value if ok else float("nan"),
                "n_images": len(imgs), "n_boxes": len(gt),
            })
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def summarize_rpc(table: pd.DataFrame) -> pd.DataFrame:
    """mPC / rPC per family and overall from a :func:`stress_evaluate` table.

    Columns: ``family, metric, clean_value, mpc, rpc, worst_rpc, worst_condition, n_conditions``.
    ``mpc`` is the mean metric over the family's (corruption, severity) conditions, ``rpc`` =
    ``mpc / clean_value``; ``worst_condition`` is ``family/corruption/severity`` with the lowest rPC.
    The ``__all__`` family averages over every condition of every family.
    """
    stressed = table[table["family"] != CLEAN[0]]
    out: list[dict[str, Any]] = []
    groups = [(fam, g) for fam, g in stressed.groupby("family", sort=False)]
    groups.append((OVERALL, stressed))
    for family, g in groups:
        for metric, m in g.groupby("metric", sort=False):
            clean_value = float(m["clean_value"].iloc[0])
            mpc = float(m["value"].mean())
            ok = np.isfinite(clean_value) and clean_value != 0
            has_rpc = m["rpc"].notna().any()
            worst = m.loc[m["rpc"].idxmin()] if has_rpc else None
            out.append({
                "family": family, "metric": metric, "clean_value": clean_value, "mpc": mpc,
                "rpc": mpc / clean_value if ok else float("nan"),
                "worst_rpc": float(worst["rpc"]) if worst is not None else float("nan"),
                "worst_condition": (f"{worst['family']}/{worst['corruption']}/{int(worst['severity'])}"
                                    if worst is not None else ""),
                "n_conditions": int(len(m)),
            })
    return pd.DataFrame(out, columns=["family", "metric", "clean_value", "mpc", "rpc", "worst_rpc",
                                      "worst_condition", "n_conditions"])
