"""COCO accumulation over any subset of images, vectorised over categories and IoU thresholds.

``accumulate`` is ``pycocotools.cocoeval.COCOeval.accumulate`` for one (area range, max dets)
cell: the detections arrive already in pycocotools' order (category, then the stable mergesort on
``-score`` of the per-image lists concatenated in image order), so a slice is simply a
subsequence of the global order and nothing is sorted again. Optional integer weights per
detection / ground truth give image-level bootstrap resamples without copying images (a
detection drawn ``k`` times gives the same interpolated precision as ``k`` copies).
"""

from __future__ import annotations

import numpy as np

EPS = np.spacing(1)


def accumulate(tp: np.ndarray, fp: np.ndarray, cat: np.ndarray, npig: np.ndarray,
               rec_thresholds: np.ndarray, weights: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated precision ``(T, R, K)`` and recall ``(T, K)``; NaN where ``npig == 0``.

    ``tp``/``fp``: ``(T, n)`` booleans (ignored detections are neither), ordered by ``cat``
    (non-decreasing) and, inside a category, by pycocotools' score order. ``npig``: ``(K,)``
    number of non-ignored ground truth per category, or ``(T, K)`` when the rows are different
    cells (e.g. IoU thresholds of several area ranges stacked, each with its own positives).

    Only true-positive positions are kept after the running sums: recall changes only there, so
    the first position reaching a recall threshold is one of them, and the precision made
    monotone there (max over the rest of the curve) is attained at one of them too.
    """
    T, n = tp.shape
    npig = np.broadcast_to(np.asarray(npig, dtype=np.float64), (T, np.shape(npig)[-1]))
    K = npig.shape[1]
    valid = npig > 0                                                       # (T, K)
    safe = np.where(valid, npig, 1.0)
    cat = np.asarray(cat, dtype=np.int64)
    starts, ends, seg_start, seg_end = _category_segments(cat, K, T, n)
    # running sums evaluated only where needed: at true-positive positions and segment bounds
    pos, ctp0 = _running_weights(tp, n, weights)      # ctp0[i]: weight of the first i TPs
    fpos, cfp0 = _running_weights(fp, n, weights)
    base_tp, base_fp = _before(pos, ctp0, seg_start), _before(fpos, cfp0, seg_start)
    # recall: rc[-1] of the segment, 0 when the segment has no detection
    total_tp = (_before(pos, ctp0, seg_end) - base_tp).reshape(T, K)
    nonempty = (ends > starts)[None, :]
    recall = np.where(nonempty, total_tp / safe, 0.0)
    # compress to true-positive positions
    seg = (pos // n) * K + cat[pos % n] if n else pos
    tpc = ctp0[1:] - base_tp[seg]
    fpc = _before(fpos, cfp0, pos) - base_fp[seg]
    rc = tpc / safe.ravel()[seg]
    pr = tpc / (fpc + tpc + EPS)
    precision = _precision_at_thresholds(pr, rc, seg, rec_thresholds, T, K)
    precision = np.where(valid[:, None, :], precision, np.nan)
    recall[~valid] = np.nan
    return precision, recall


def _category_segments(cat: np.ndarray, K: int, T: int, n: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each category's detections ``[starts[k], ends[k])`` (``cat`` non-decreasing) and the
    flattened (threshold, category) segments ``[seg_start, seg_end)`` of the ``(T, n)`` rows:
    ``t * n + starts[k]`` .. ``t * n + ends[k]``, ``(T*K,)``."""
    ks = np.arange(K)
    starts = np.searchsorted(cat, ks, side="left")
    ends = np.searchsorted(cat, ks, side="right")
    seg_start = (np.arange(T)[:, None] * n + starts[None, :]).ravel()       # (T*K,)
    seg_end = (np.arange(T)[:, None] * n + ends[None, :]).ravel()
    return starts, ends, seg_start, seg_end


def _running_weights(flags: np.ndarray, n: int, weights: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The flattened positions of the set ``flags (T, n)`` and the running weight before each:
    ``c0[i]`` = weight of the first ``i`` of them (1 each, or the detection's weight)."""
    pos = np.flatnonzero(flags.ravel())
    if weights is None:
        return pos, np.arange(len(pos) + 1, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    return pos, np.concatenate([[0.0], np.cumsum(w[pos % n])])


def _before(pos: np.ndarray, c0: np.ndarray, i: np.ndarray) -> np.ndarray:
    """The running weight of the positions ``pos`` before each flattened position ``i``."""
    return c0[np.searchsorted(pos, i, side="left")]


def _precision_at_thresholds(pr: np.ndarray, rc: np.ndarray, seg: np.ndarray,
                             rec_thresholds: np.ndarray, T: int, K: int) -> np.ndarray:
    """Interpolated precision ``(T, R, K)`` from the precision ``pr`` and recall ``rc`` at the
    true-positive positions (segment ``seg``, non-decreasing): at each recall threshold the
    monotone precision of the first position reaching it, 0 where none does."""
    R = len(rec_thresholds)
    # precision made monotone (reverse running max) inside each segment; the offset keeps
    # segments apart (costs a few ulps, far below the 1e-4 tolerance)
    off = 2.0 * (T * K - 1 - seg)
    mono = np.maximum.accumulate((pr + off)[::-1])[::-1] - off
    # searchsorted(rc_segment, rec_thresholds, 'left') for every segment in one call, with exact
    # comparisons: kidx = number of thresholds <= rc; the first position with rc >= thr_j is the
    # first with kidx > j; the (segment, kidx) key is non-decreasing along the compressed array
    kidx = thresholds_reached(np.asarray(rec_thresholds, dtype=np.float64), rc)
    key = seg * (R + 1) + kidx
    query = (np.arange(T * K)[:, None] * (R + 1) + np.arange(R)[None, :]).ravel()
    hit = np.searchsorted(key, query, side="right")
    q_seg = np.repeat(np.arange(T * K), R)
    inside = hit < len(seg)
    inside[inside] = seg[hit[inside]] == q_seg[inside]
    precision = np.zeros(T * K * R)
    precision[inside] = mono[hit[inside]]
    return precision.reshape(T, K, R).transpose(0, 2, 1).copy()


def nanmean(x: np.ndarray, axis=None):
    """Mean over the finite entries (pycocotools' ``mean(s[s > -1])``); NaN when there are none."""
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    total = np.where(ok, x, 0.0).sum(axis=axis)
    count = ok.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def coco_stats(precision: np.ndarray, recall: np.ndarray, t50: int, t75: int,
               area_index: dict[str, int], maxdet_index: dict[int, int]) -> np.ndarray:
    """The twelve summary stats from ``precision (T, R, K, A, M)`` and ``recall (T, K, A, M)``.

    Uses the same cells as ``COCOeval.summarize`` (maxDets 100 for all but AR1/AR10); NaN where
    pycocotools reports -1.
    """
    a_all, a_s, a_m, a_l = (area_index[k] for k in ("all", "small", "medium", "large"))
    m1, m10, m100 = (maxdet_index[k] for k in (1, 10, 100))
    p, r = precision, recall
    return np.array([
        nanmean(p[:, :, :, a_all, m100]),
        nanmean(p[t50, :, :, a_all, m100]),
        nanmean(p[t75, :, :, a_all, m100]),
        nanmean(p[:, :, :, a_s, m100]),
        nanmean(p[:, :, :, a_m, m100]),
        nanmean(p[:, :, :, a_l, m100]),
        nanmean(r[:, :, a_all, m1]),
        nanmean(r[:, :, a_all, m10]),
        nanmean(r[:, :, a_all, m100]),
        nanmean(r[:, :, a_s, m100]),
        nanmean(r[:, :, a_m, m100]),
        nanmean(r[:, :, a_l, m100]),
    ], dtype=np.float64)

def thresholds_reached(rec: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``np.searchsorted(rec, values, side="right")``: how many thresholds are <= each value.

    For COCO's evenly spaced thresholds (0, 0.01, ..., 1) and values in [0, 1] this is done by
    arithmetic: ``floor(value * 100)`` is at most one off the true position, and two exact
    comparisons with the stored thresholds settle it (a binary search per value was the
    bootstrap's most expensive step)."""
    R = len(rec)
    steps = R - 1
    if R < 2 or np.abs(rec * steps - np.arange(R)).max() > 1e-9 or values.size == 0 \
            or values.min() < 0 or values.max() > 1:
        return np.searchsorted(rec, values.ravel(), side="right").reshape(values.shape)
    c = (values * steps).astype(np.int64)               # in [0, steps]
    ext = np.append(rec, np.inf)
    return c + (ext[c] <= values) + (ext[c + 1] <= values)
