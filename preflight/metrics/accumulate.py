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
    number of non-ignored ground truth per category.

    Only true-positive positions are kept after the running sums: recall changes only there, so
    the first position reaching a recall threshold is one of them, and the precision made
    monotone there (max over the rest of the curve) is attained at one of them too.
    """
    T, n = tp.shape
    K = len(npig)
    R = len(rec_thresholds)
    npig = np.asarray(npig, dtype=np.float64)
    valid = npig > 0
    cat = np.asarray(cat, dtype=np.int64)
    ks = np.arange(K)
    # flattened (t, category) segments: [t * n + starts[k], t * n + ends[k])
    starts = np.searchsorted(cat, ks, side="left")
    ends = np.searchsorted(cat, ks, side="right")
    seg_start = (np.arange(T)[:, None] * n + starts[None, :]).ravel()       # (T*K,)
    seg_end = (np.arange(T)[:, None] * n + ends[None, :]).ravel()
    # running sums evaluated only where needed: at true-positive positions and segment bounds
    pos = np.flatnonzero(tp.ravel())
    fpos = np.flatnonzero(fp.ravel())
    if weights is None:                                # ctp0[i]: weight of the first i TPs
        ctp0 = np.arange(len(pos) + 1, dtype=np.float64)
        cfp0 = np.arange(len(fpos) + 1, dtype=np.float64)
    else:
        w = np.asarray(weights, dtype=np.float64)
        ctp0 = np.concatenate([[0.0], np.cumsum(w[pos % n])])
        cfp0 = np.concatenate([[0.0], np.cumsum(w[fpos % n])])

    def tp_before(i):
        return ctp0[np.searchsorted(pos, i, side="left")]

    def fp_before(i):
        return cfp0[np.searchsorted(fpos, i, side="left")]

    base_tp, base_fp = tp_before(seg_start), fp_before(seg_start)
    # recall: rc[-1] of the segment, 0 when the segment has no detection
    total_tp = (tp_before(seg_end) - base_tp).reshape(T, K)
    nonempty = (ends > starts)[None, :]
    recall = np.where(nonempty, total_tp / np.where(valid, npig, 1.0)[None, :], 0.0)
    # compress to true-positive positions
    seg = (pos // n) * K + cat[pos % n] if n else pos
    tpc = ctp0[1:] - base_tp[seg]
    fpc = fp_before(pos) - base_fp[seg]
    rc = tpc / np.where(valid, npig, 1.0)[seg % K]
    pr = tpc / (fpc + tpc + EPS)
    # precision made monotone (reverse running max) inside each segment; the offset keeps
    # segments apart (costs a few ulps, far below the 1e-4 tolerance)
    off = 2.0 * (T * K - 1 - seg)
    mono = np.maximum.accumulate((pr + off)[::-1])[::-1] - off
    # searchsorted(rc_segment, rec_thresholds, 'left') for every segment in one call, with exact
    # comparisons: kidx = number of thresholds <= rc; the first position with rc >= thr_j is the
    # first with kidx > j; the (segment, kidx) key is non-decreasing along the compressed array
    kidx = np.searchsorted(rec_thresholds, rc, side="right")
    key = seg * (R + 1) + kidx
    query = (np.arange(T * K)[:, None] * (R + 1) + np.arange(R)[None, :]).ravel()
    hit = np.searchsorted(key, query, side="right")
    q_seg = np.repeat(np.arange(T * K), R)
    inside = hit < len(pos)
    inside[inside] = seg[hit[inside]] == q_seg[inside]
    precision = np.zeros(T * K * R)
    precision[inside] = mono[hit[inside]]
    precision = precision.reshape(T, K, R).transpose(0, 2, 1).copy()
    precision[:, :, ~valid] = np.nan
    recall[:, ~valid] = np.nan
    return precision, recall


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
