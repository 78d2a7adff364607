"""Compiled (numba) kernels of the COCO evaluation: greedy matching, and accumulation of every
slice of several slice columns in one pass.

Both follow ``pycocotools.cocoeval`` operation by operation (the same float expressions, in the
same order), so their numbers equal pycocotools' (see ``coco.py`` for the semantics). Compiled
once per machine and cached on disk (``cache=True``); ``nogil`` so bootstrap threads run beside.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

EPS = np.spacing(1)


@njit(cache=True, nogil=True)
def _bb_iou(d, g, crowd):
    """pycocotools' ``bbIou`` for one pair (``x, y, w, h``; crowd: over the detection's area)."""
    w = min(d[2] + d[0], g[2] + g[0]) - max(d[0], g[0])
    if w <= 0:
        return 0.0
    h = min(d[3] + d[1], g[3] + g[1]) - max(d[1], g[1])
    if h <= 0:
        return 0.0
    inter = w * h
    da = d[2] * d[3]
    if crowd:
        return inter / da
    return inter / (da + g[2] * g[3] - inter)


@njit(cache=True, nogil=True)
def match_groups(g_lo, g_hi, d_start, dt_box, dt_area, gt_start, gt_end, g_order,
                 gt_box, gt_crowd, gt_ignore, area_ranges, thresholds, area_all, dt_gt, tp, fp):
    """Greedy COCO matching of the (image, category) groups ``g_lo .. g_hi - 1``.

    Detections come in group order (``dt_box``, ``dt_area``: by group, then rank); group ``q``'s
    are ``d_start[q]:d_start[q + 1]`` and its ground
    truth ``g_order[gt_start[q]:gt_end[q]]`` (input order); ``gt_ignore (A, n_gt)``. Writes
    ``tp`` and ``fp`` ``(A, T, n_dt)`` and, at area range ``area_all``, the matched ground truth
    ``dt_gt (T, n_dt)`` (-1: unmatched), all in group order (sequential writes;
    :func:`scatter_rows` puts them in detection order); other groups' entries are left alone,
    so disjoint group ranges may run on several threads at once.
    """
    A, T = gt_ignore.shape[0], thresholds.shape[0]
    ious = np.zeros(64)
    visit = np.zeros(16, dtype=np.int64)
    ign = np.zeros((A, 16), dtype=np.bool_)
    crowd = np.zeros(16, dtype=np.bool_)
    taken = np.zeros(16, dtype=np.bool_)
    for q in range(g_lo, g_hi):
        i0, nd = d_start[q], d_start[q + 1] - d_start[q]
        gi0, ng = gt_start[q], gt_end[q] - gt_start[q]
        if ng == 0:
            for di in range(nd):
                d = i0 + di
                for a in range(A):
                    inside = area_ranges[a, 0] <= dt_area[d] <= area_ranges[a, 1]
                    for t in range(T):
                        fp[a, t, d] = inside
            continue
        if nd * ng > ious.shape[0]:
            ious = np.zeros(2 * nd * ng)
        if ng > visit.shape[0]:
            visit = np.zeros(2 * ng, dtype=np.int64)
            ign = np.zeros((A, 2 * ng), dtype=np.bool_)
            crowd = np.zeros(2 * ng, dtype=np.bool_)
            taken = np.zeros(2 * ng, dtype=np.bool_)
        for gj in range(ng):
            g = g_order[gi0 + gj]
            crowd[gj] = gt_crowd[g]
            for a in range(A):
                ign[a, gj] = gt_ignore[a, g]
        for di in range(nd):
            d = i0 + di
            for gj in range(ng):
                ious[di * ng + gj] = _bb_iou(dt_box[d], gt_box[g_order[gi0 + gj]], crowd[gj])
        for a in range(A):
            # pycocotools visits non-ignored ground truth first (stable sort on the ignore flag)
            nv = 0
            for gj in range(ng):
                if not ign[a, gj]:
                    visit[nv] = gj
                    nv += 1
            for gj in range(ng):
                if ign[a, gj]:
                    visit[nv] = gj
                    nv += 1
            lo, hi = area_ranges[a, 0], area_ranges[a, 1]
            for t in range(T):
                for gj in range(ng):
                    taken[gj] = False
                for di in range(nd):
                    d = i0 + di
                    iou = min(thresholds[t], 1 - 1e-10)
                    m = -1
                    for v in range(ng):
                        gj = visit[v]
                        if taken[gj] and not crowd[gj]:
                            continue
                        if m > -1 and not ign[a, m] and ign[a, gj]:
                            break
                        if ious[di * ng + gj] < iou:
                            continue
                        iou = ious[di * ng + gj]
                        m = gj
                    if m > -1:
                        taken[m] = True
                        if a == area_all:
                            dt_gt[t, d] = g_order[gi0 + m]
                        tp[a, t, d] = not ign[a, m]
                    else:
                        fp[a, t, d] = lo <= dt_area[d] <= hi


@njit(cache=True, nogil=True)
def scatter_rows(r_lo, r_hi, src, order, dst):
    """``dst[r, order] = src[r]`` for rows ``r_lo .. r_hi - 1`` of 2-d arrays (one row fits a
    core's cache, so the scattered writes stay there)."""
    for r in range(r_lo, r_hi):
        for j in range(order.shape[0]):
            dst[r, order[j]] = src[r, j]


@njit(cache=True, nogil=True)
def rank_in_groups(img, cat, n_images, n_classes, max_det):
    """For detections in accumulation order (category, descending score, image, input): each
    one's rank inside its (image, category) group (earlier = higher score, ties in input order),
    whether it is kept (rank < ``max_det``), and the kept ones' positions (among the kept) sorted
    by (group, rank). Returns ``(rank, keep, d_order, d_start)``; ``d_start (G + 1,)`` bounds
    the groups (ascending ``image * K + category``) in ``d_order``."""
    n = img.shape[0]
    count = np.zeros(n_images * n_classes + 1, dtype=np.int64)
    rank = np.empty(n, dtype=np.int64)
    keep = np.empty(n, dtype=np.bool_)
    n_keep = 0
    for i in range(n):
        grp = img[i] * n_classes + cat[i]
        rank[i] = count[grp]
        count[grp] += 1
        keep[i] = rank[i] < max_det
        if keep[i]:
            n_keep += 1
    offset = np.zeros(n_images * n_classes + 1, dtype=np.int64)
    n_groups = 0
    for grp in range(n_images * n_classes):
        c = min(count[grp], max_det)
        offset[grp + 1] = offset[grp] + c
        if c > 0:
            n_groups += 1
    d_start = np.empty(n_groups + 1, dtype=np.int64)
    q = 0
    for grp in range(n_images * n_classes):
        if offset[grp + 1] > offset[grp]:
            d_start[q] = offset[grp]
            q += 1
    d_start[n_groups] = n_keep
    d_order = np.empty(n_keep, dtype=np.int64)
    j = 0
    for i in range(n):
        if keep[i]:
            d_order[offset[img[i] * n_classes + cat[i]] + rank[i]] = j
            j += 1
    return rank, keep, d_order, d_start


@njit(cache=True, nogil=True)
def slice_npig(labels, n_slices, gt_img, gt_cat, gt_ignore, n_classes):
    """Non-ignored ground truth ``(S, A, K)`` of every slice (``labels (n_images, C)``: the
    slice of each image in each column, -1: none)."""
    A = gt_ignore.shape[0]
    C = labels.shape[1]
    out = np.zeros((n_slices, A, n_classes))
    for g in range(gt_img.shape[0]):
        for c in range(C):
            s = labels[gt_img[g], c]
            if s < 0:
                continue
            for a in range(A):
                if not gt_ignore[a, g]:
                    out[s, a, gt_cat[g]] += 1.0
    return out


@njit(cache=True, nogil=True)
def accumulate_areas(a_lo, a_hi, tp, fp, dt_img, dt_cat, dt_rank, labels, npig, rec, max_det,
                     recall_dets, recall_area, precision, recall, recall_m):
    """COCO accumulation of every slice at once for the area ranges ``a_lo .. a_hi - 1``: one
    pass over the detections per area range, every IoU threshold and slice counted along.

    ``tp``/``fp``: ``(A, T, n)`` in pycocotools' accumulation order (category, score order);
    ``labels (n_images, C)``: each image's slice in each column (-1: none; a column is a
    partition of some images, e.g. the overall set or the values of one slice column);
    ``npig (S, A, K)``. Counts detections of rank < ``max_det``. Writes interpolated precision
    ``precision (S, A, T, K, R)``, recall ``(S, A, T, K)`` and, at area ``recall_area``, the
    recall for the smaller ``recall_dets`` ``recall_m (S, M, T, K)``; NaN where a slice has no
    positives. Disjoint area ranges may run on several threads at once.
    """
    A, T, n = tp.shape
    S, _, K = npig.shape
    C = labels.shape[1]
    R = rec.shape[0]
    M = recall_dets.shape[0]
    tpc = np.zeros((T, S, K))
    fpc = np.zeros((T, S, K))
    hits = np.zeros((T, S, M, K))
    # best[t, s, k, j]: highest precision at a position where exactly j thresholds are reached
    best = np.zeros((T, S, K, R + 1))
    # need[s, k, j]: true positives from which the recall tp / npig reaches threshold j (the
    # same float division, so exact); reached[t, s, k]: thresholds reached so far
    need = np.zeros((S, K, R))
    reached = np.zeros((T, S, K), dtype=np.int64)
    sl = np.empty(C, dtype=np.int64)
    for a in range(a_lo, a_hi):
        tpc[:] = 0.0
        fpc[:] = 0.0
        hits[:] = 0.0
        best[:] = 0.0
        reached[:] = 0
        for s in range(S):
            for k in range(K):
                p = npig[s, a, k]
                if p > 0:
                    for j in range(R):
                        c = np.ceil(rec[j] * p)
                        while c > 0 and (c - 1.0) / p >= rec[j]:
                            c -= 1.0
                        while c / p < rec[j]:
                            c += 1.0
                        need[s, k, j] = c
        for i in range(n):
            r = dt_rank[i]
            if r >= max_det:
                continue
            k = dt_cat[i]
            img = dt_img[i]
            ns = 0
            for c in range(C):
                s = labels[img, c]
                if s >= 0:
                    sl[ns] = s
                    ns += 1
            for t in range(T):
                if fp[a, t, i]:
                    for c in range(ns):
                        fpc[t, sl[c], k] += 1.0
                    continue
                if not tp[a, t, i]:
                    continue
                for c in range(ns):
                    s = sl[c]
                    tpc[t, s, k] += 1.0
                    if a == recall_area:
                        for mi in range(M):
                            if r < recall_dets[mi]:
                                hits[t, s, mi, k] += 1.0
                    p = npig[s, a, k]
                    if p > 0:
                        pr = tpc[t, s, k] / (fpc[t, s, k] + tpc[t, s, k] + EPS)
                        j = reached[t, s, k]
                        while j < R and tpc[t, s, k] >= need[s, k, j]:
                            j += 1
                        reached[t, s, k] = j
                        if pr > best[t, s, k, j]:
                            best[t, s, k, j] = pr
        for t in range(T):
            for s in range(S):
                for k in range(K):
                    p = npig[s, a, k]
                    if p <= 0:
                        recall[s, a, t, k] = np.nan
                        for j in range(R):
                            precision[s, a, t, k, j] = np.nan
                        if a == recall_area:
                            for mi in range(M):
                                recall_m[s, mi, t, k] = np.nan
                        continue
                    recall[s, a, t, k] = tpc[t, s, k] / p
                    if a == recall_area:
                        for mi in range(M):
                            recall_m[s, mi, t, k] = hits[t, s, mi, k] / p
                    # interpolated precision at threshold j: the best over positions reaching
                    # more than j thresholds (pycocotools' right-to-left running max)
                    run = 0.0
                    for j in range(R, 0, -1):
                        if best[t, s, k, j] > run:
                            run = best[t, s, k, j]
                        precision[s, a, t, k, j - 1] = run


def n_threads() -> int:
    """Threads the kernels split their work over (the CPUs this process may run on)."""
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:  # not on Linux
        return max(1, min(8, os.cpu_count() or 1))


def run_split(kernel, n_items: int, args: tuple, weights: np.ndarray | None = None) -> None:
    """``kernel(lo, hi, *args)`` over ``[0, n_items)`` cut into one range per thread (by
    cumulative ``weights`` when given, so each thread gets a similar share of the work)."""
    k = min(n_threads(), max(1, n_items))
    if weights is None:
        bounds = np.linspace(0, n_items, k + 1).astype(np.int64)
    else:
        cum = np.cumsum(weights, dtype=np.float64)
        bounds = np.r_[0, np.searchsorted(cum, cum[-1] * np.arange(1, k) / k), n_items] \
            if n_items else np.zeros(k + 1, np.int64)
    ranges = [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
              if hi > lo]
    if len(ranges) <= 1:
        for lo, hi in ranges:
            kernel(lo, hi, *args)
        return
    with ThreadPoolExecutor(len(ranges)) as pool:
        for f in [pool.submit(kernel, lo, hi, *args) for lo, hi in ranges]:
            f.result()
