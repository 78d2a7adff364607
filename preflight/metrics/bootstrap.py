"""COCO accumulation for many image-level bootstrap resamples at once.

:func:`accumulate_resamples` gives, for ``B`` integer image-weight vectors, what
:func:`preflight.metrics.accumulate.accumulate` gives for each of them in turn (the same values:
the counts are sums of integers, hence exact, and every later step applies the same float
operations), but with one pass of array operations over all resamples instead of ``B`` passes:

* the order of the detections, the true-positive positions and the (IoU threshold, category)
  segments do not depend on the weights, so they are computed once;
* a resample only changes the weight of each detection (how often its image was drawn; 0 = not
  drawn). A zero-weight true positive repeats the recall of the position before it with no better
  precision, so keeping it changes no interpolated precision, and nothing is re-selected;
* false positives only matter through how many lie before each true positive: they are summed
  per (image, gap between true positives) once -- a sparse matrix -- and every resample's counts
  are one sparse-dense product;
* only the mean over the recall thresholds is needed (AP); the interpolated precision at a
  threshold is the monotone precision at the first position whose recall reaches it, so the mean
  is a sum over true-positive positions of that precision times the number of thresholds first
  reached there -- arrays the size of the true positives, no ``(B, T, R, K)`` array.

Resamples are processed in chunks so that no intermediate array exceeds ``max_elements``: the
default (64 Ki float64 values, 512 KiB) keeps the ~20 passes over each chunk inside a core's L2
cache, which measured 1.7x faster than whole-slice arrays on the 2-core CI machine.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from preflight.metrics.accumulate import EPS, thresholds_reached


def accumulate_resamples(tp: np.ndarray, fp: np.ndarray, cat: np.ndarray, img: np.ndarray,
                         weights: np.ndarray, npig: np.ndarray, rec_thresholds: np.ndarray, *,
                         max_elements: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated precision averaged over the recall thresholds ``(B, T, K)`` and recall
    ``(B, T, K)`` for ``B`` resamples (AP of a class at one IoU threshold, and its recall).

    ``tp``/``fp``: ``(T, n)`` booleans in accumulation order (see ``accumulate``), ``cat``:
    ``(n,)`` non-decreasing category positions, ``img``: ``(n,)`` the image (column of
    ``weights``) of each detection, ``weights``: ``(B, n_images)`` integer image weights,
    ``npig``: ``(B, K)`` weighted non-ignored ground truth per category. NaN where ``npig == 0``.
    """
    tp = np.asarray(tp, dtype=bool)
    fp = np.asarray(fp, dtype=bool)
    T, n = tp.shape
    weights = np.asarray(weights, dtype=np.float64)
    npig = np.asarray(npig, dtype=np.float64)
    B, K = npig.shape
    cat = np.asarray(cat, dtype=np.int64)
    img = np.asarray(img, dtype=np.int64)
    TK = T * K

    ks = np.arange(K)
    starts = np.searchsorted(cat, ks, side="left")
    ends = np.searchsorted(cat, ks, side="right")
    seg_start = (np.arange(T)[:, None] * n + starts[None, :]).ravel()       # (T*K,)
    seg_end = (np.arange(T)[:, None] * n + ends[None, :]).ravel()
    nonempty = (ends > starts)[None, None, :]
    pos = np.flatnonzero(tp.ravel())                                        # (P,)
    P = len(pos)
    seg = (pos // n) * K + cat[pos % n] if n else pos.astype(np.int64)
    tp_img = img[pos % n] if n else pos

    # false positives before each true-positive position / segment start: per (image, gap)
    # counts; a gap is the stretch before a breakpoint (a true positive or a segment start)
    breaks = np.union1d(pos, seg_start)
    fpos = np.flatnonzero(fp.ravel())
    gap = np.searchsorted(breaks, fpos, side="right")        # fp < breaks[i]  <=>  i >= gap
    keep = gap < len(breaks)                                  # after the last break: never read
    # rows (gaps) are already in order: build the CSR arrays directly (duplicate (gap, image)
    # entries are summed by the product; no sorting needed)
    gap, fp_img = gap[keep], (img[fpos[keep] % n] if n else gap[keep])
    indptr = np.searchsorted(gap, np.arange(len(breaks) + 1), side="left")
    fp_counts = sparse.csr_matrix((np.ones(len(gap)), fp_img, indptr),
                                  shape=(len(breaks), weights.shape[1]))
    at_pos = np.searchsorted(breaks, pos)
    at_start = np.searchsorted(breaks, seg_start)
    tp_start = np.searchsorted(pos, seg_start, side="left")
    tp_end = np.searchsorted(pos, seg_end, side="left")
    rec = np.asarray(rec_thresholds, dtype=np.float64)

    precision = np.empty((B, T, K))
    recall = np.empty((B, T, K))
    per_resample = max(P, len(breaks), TK, 1)
    step = max(1, int(max_elements // per_resample))
    for lo in range(0, B, step):
        hi = min(B, lo + step)
        precision[lo:hi], recall[lo:hi] = _chunk(
            weights[lo:hi], npig[lo:hi], tp_img, seg, fp_counts, at_pos, at_start, tp_start,
            tp_end, nonempty, rec, T, K)
    return precision, recall


def _chunk(w, npig, tp_img, seg, fp_counts, at_pos, at_start, tp_start, tp_end, nonempty, rec,
           T, K):
    b, P = len(w), len(seg)
    R = len(rec)
    TK = T * K
    valid = npig > 0                                                        # (b, K)
    safe = np.where(valid, npig, 1.0)
    ctp0 = np.zeros((b, P + 1))
    np.cumsum(w[:, tp_img], axis=1, out=ctp0[:, 1:])                        # TP weight before
    base_tp = ctp0[:, tp_start]                                             # (b, TK)
    total_tp = (ctp0[:, tp_end] - base_tp).reshape(b, T, K)
    recall = np.where(nonempty, total_tp / safe[:, None, :], 0.0)
    recall = np.where(valid[:, None, :], recall, np.nan)

    summed = np.zeros((b, TK))
    if P:
        cfp = np.cumsum(fp_counts @ w.T, axis=0)               # (breaks, b): FP weight before
        tpc = ctp0[:, 1:] - base_tp[:, seg]
        fpc = np.ascontiguousarray((cfp[at_pos] - cfp[at_start][seg]).T)
        rc = tpc / safe[:, seg % K]
        pr = tpc / (fpc + tpc + EPS)
        # precision made monotone (max to the right) inside each segment; the offset keeps
        # segments apart, as in ``accumulate``
        off = 2.0 * (TK - 1 - seg)
        mono = np.maximum.accumulate((pr + off)[:, ::-1], axis=1)[:, ::-1] - off
        # recall thresholds first reached at each position: kidx (thresholds <= rc) minus the
        # previous position's; the interpolated precision there is ``mono``
        kidx = thresholds_reached(rec, rc)
        first = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
        hits = kidx.copy()
        hits[:, 1:] -= kidx[:, :-1]
        hits[:, first] = kidx[:, first]
        summed[:, seg[first]] = np.add.reduceat(mono * hits, first, axis=1)
    precision = np.where(valid[:, None, :], (summed / R).reshape(b, T, K), np.nan)
    return precision, recall

