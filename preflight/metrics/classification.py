"""Classification metrics in the same long format, so classifier candidates plug in.

Per slice: ``accuracy`` (top-1, Wilson interval), ``precision.<class>`` / ``recall.<class>``
(Wilson), ``F1.<class>``, ``macro_F1`` (mean over the classes in the slice's truth or predictions, as
scikit-learn) and,
with probabilities, ``ECE`` (expected calibration error, equal-width confidence bins). With
``bootstrap > 0``, F1s, macro-F1 and ECE get percentile intervals over resampled samples.
``n_images`` is the number of samples, ``n_boxes`` the class support for per-class rows (the
sample count otherwise).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from preflight.metrics.detection import DEFAULT_MIN_BOXES, DEFAULT_MIN_IMAGES
from preflight.metrics.intervals import (
    percentile_interval,
    resample_weights,
    slice_rng,
    wilson_interval,
)
from preflight.metrics.slices import LongTable, class_metric, make_slices


def expected_calibration_error(confidence, correct, n_bins: int = 15, weights=None) -> float:
    """ECE = Σ_bins (n_b / n) |accuracy_b - mean confidence_b|, bins ``(i/n_bins, (i+1)/n_bins]``
    (confidence 0 goes to the first bin)."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    w = np.ones_like(conf) if weights is None else np.asarray(weights, dtype=np.float64)
    total = w.sum()
    if total <= 0:
        return float("nan")
    b = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    acc_b = np.bincount(b, weights=w * ok, minlength=n_bins)
    conf_b = np.bincount(b, weights=w * conf, minlength=n_bins)
    return float(np.abs(acc_b - conf_b).sum() / total)


def _validate(y_true, y_pred, probs):
    y_true = np.asarray(y_true).astype(np.int64)
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2 or len(probs) != len(y_true):
            raise ValueError(f"probs must be (n_samples, n_classes), got {probs.shape}")
        if y_pred is None:
            y_pred = probs.argmax(axis=1)
    if y_pred is None:
        raise ValueError("give y_pred or probs")
    y_pred = np.asarray(y_pred).astype(np.int64)
    if y_pred.shape != y_true.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length "
                         f"({y_true.shape} vs {y_pred.shape})")
    return y_true, y_pred, probs


def _counts(y_true, y_pred, K, w):
    """Per class (TP, predicted, support), weighted by per-sample ``w`` ``(B, n)`` or ``(n,)``."""
    hit = (y_true == y_pred)
    onehot_t = np.eye(K)[y_true]
    onehot_p = np.eye(K)[y_pred]
    return (w * hit) @ onehot_t, w @ onehot_p, w @ onehot_t


def _f1(tp, npred, support):
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(npred + support > 0, 2 * tp / (npred + support), np.nan)
        present = (support + npred) > 0          # sklearn: labels in y_true or y_pred
        macro = np.where(present.any(-1),
                         np.where(present, np.nan_to_num(f1), 0).sum(-1)
                         / np.maximum(present.sum(-1), 1), np.nan)
    return f1, macro


def evaluate_classification(
    y_true, y_pred=None, probs=None, images: pd.DataFrame | None = None, *,
    slice_columns: list[str] | None = None, class_names: dict[int, str] | None = None,
    n_bins: int = 15, bootstrap: int = 0, seed: int = 0,
    min_images: int = DEFAULT_MIN_IMAGES, min_boxes: int = DEFAULT_MIN_BOXES,
) -> pd.DataFrame:
    """Long metrics table for a classifier; ``images`` has one row per sample (slice columns)."""
    y_true, y_pred, probs = _validate(y_true, y_pred, probs)
    n = len(y_true)
    ids = sorted(set(y_true.tolist()) | set(y_pred.tolist()) | set((class_names or {}).keys()))
    if probs is not None:
        ids = sorted(set(ids) | set(range(probs.shape[1])))
    pos = {c: i for i, c in enumerate(ids)}
    t = np.array([pos[c] for c in y_true], dtype=np.int64)
    p = np.array([pos[c] for c in y_pred], dtype=np.int64)
    K = len(ids)
    names = [str((class_names or {}).get(c, c)) for c in ids]
    if images is None:
        images = pd.DataFrame(index=range(n))
    elif len(images) != n:
        raise ValueError(f"images has {len(images)} rows for {n} samples")
    conf = probs.max(axis=1) if probs is not None else None
    table = LongTable()
    for s in make_slices(images.reset_index(drop=True), slice_columns):
        m = s.mask
        ns = int(m.sum())
        tp, npred, sup = _counts(t[m], p[m], K, np.ones(ns))
        f1, macro = _f1(tp, npred, sup)
        correct = int((t[m] == p[m]).sum())
        ece = expected_calibration_error(conf[m], t[m] == p[m], n_bins) if conf is not None \
            else np.nan
        ci_f1 = np.full((K, 2), np.nan)
        ci_macro = ci_ece = (np.nan, np.nan)
        if bootstrap and ns:
            W = resample_weights(slice_rng(seed, "cls", s.column, s.value), ns, bootstrap)
            btp, bnp, bsup = _counts(t[m], p[m], K, W)
            bf1, bmacro = _f1(btp, bnp, bsup)
            ci_f1[:] = np.column_stack(percentile_interval(bf1, f1))
            ci_macro = np.ravel(percentile_interval(bmacro, np.atleast_1d(macro)))
            if conf is not None:
                bece = np.array([expected_calibration_error(conf[m], t[m] == p[m], n_bins, w)
                                 for w in W])
                ci_ece = np.ravel(percentile_interval(bece, np.atleast_1d(ece)))
        c, v = s.column, s.value
        table.add(c, v, "accuracy", correct / ns if ns else np.nan,
                  *wilson_interval(correct, ns), ns, ns)
        for k, cname in enumerate(names):
            table.add(c, v, class_metric("precision", cname), tp[k] / npred[k] if npred[k] else np.nan,
                      *wilson_interval(tp[k], npred[k]), ns, sup[k])
            table.add(c, v, class_metric("recall", cname), tp[k] / sup[k] if sup[k] else np.nan,
                      *wilson_interval(tp[k], sup[k]), ns, sup[k])
            table.add(c, v, class_metric("F1", cname), f1[k], *ci_f1[k], ns, sup[k])
        table.add(c, v, "macro_F1", macro, *ci_macro, ns, ns)
        if conf is not None:
            table.add(c, v, "ECE", ece, *ci_ece, ns, ns)
    return table.frame(min_images, min_boxes)


def classification_confusion(y_true, y_pred=None, probs=None, images: pd.DataFrame | None = None,
                             *, slice_columns: list[str] | None = None,
                             class_names: dict[int, str] | None = None) -> pd.DataFrame:
    """Long confusion table ``slice_column, slice_value, true_class, pred_class, count,
    n_images, share, ci_low, ci_high`` (``n_images``: samples in the slice; ``share``: the
    share of the true class's samples predicted as ``pred_class``, with a Wilson interval --
    each sample is one observation)."""
    y_true, y_pred, probs = _validate(y_true, y_pred, probs)
    ids = sorted(set(y_true.tolist()) | set(y_pred.tolist()) | set((class_names or {}).keys()))
    names = [str((class_names or {}).get(c, c)) for c in ids]
    K = len(ids)
    pos = {c: i for i, c in enumerate(ids)}
    cell = np.array([pos[a] * K + pos[b] for a, b in zip(y_true, y_pred, strict=True)],
                    dtype=np.int64)
    if images is None:
        images = pd.DataFrame(index=range(len(y_true)))
    frames = []
    for s in make_slices(images.reset_index(drop=True), slice_columns):
        counts = np.bincount(cell[s.mask], minlength=K * K)
        row_total = np.repeat(counts.reshape(K, K).sum(axis=1), K)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(row_total > 0, counts / np.maximum(row_total, 1), np.nan)
        low, high = wilson_interval(counts, row_total)
        frames.append(pd.DataFrame({
            "slice_column": s.column, "slice_value": s.value,
            "true_class": np.repeat(names, K), "pred_class": np.tile(names, K),
            "count": counts.astype(np.int64), "n_images": int(s.mask.sum()),
            "share": share, "ci_low": low, "ci_high": high}))
    return pd.concat(frames, ignore_index=True)
