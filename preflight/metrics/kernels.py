"""Compiled (numba) kernels of the COCO evaluation: greedy matching, and accumulation of every
slice of several slice columns in one pass.

Both follow ``pycocotools.cocoeval`` operation by operation (the same float expressions, in the
same order), so their numbers equal pycocotools' (see ``coco.py`` for the semantics). Compiled
once per machine and cached on disk (``cache=True``); ``nogil`` so bootstrap threads run beside.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

EPS = np.spacing(1)


@njit(cache=True, nogil=True, inline="always")
def _bb_iou(dx, dy, dw, dh, gx, gy, gw, gh, crowd):
    """pycocotools' ``bbIou`` for one pair (``x, y, w, h``; crowd: over the detection's area)."""
    w = min(dw + dx, gw + gx) - max(dx, gx)
    if w <= 0:
        return 0.0
    h = min(dh + dy, gh + gy) - max(dy, gy)
    if h <= 0:
        return 0.0
    inter = w * h
    da = dw * dh
    if crowd:
        return inter / da
    return inter / (da + gw * gh - inter)


@njit(cache=True, nogil=True, inline="always")
def _greedy(nd, ng, ious, dmax, visit, ign, a, crowd, taken, thr, out, t):
    """pycocotools' greedy matching of one group at one IoU threshold and the ignore flags
    ``ign[a]`` (``thr`` capped at 1 - 1e-10 as pycocotools does; ``dmax``: each detection's
    highest IoU): ``out[a, di, t]`` = matched ground truth (group position) or -1; ``visit``: the
    non-ignored ground truth first (stable), as pycocotools' sort on the ignore flag. (Rows
    are passed as indices: a view per call costs more than the matching of a small group.)"""
    for gj in range(ng):
        taken[gj] = False
    for di in range(nd):
        if dmax[di] < thr:             # no ground truth reaches the threshold: unmatched
            out[a, di, t] = -1
            continue
        iou = thr
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
        out[a, di, t] = m


@njit(cache=True, nogil=True)
def match_groups(g_lo, g_hi, d_start, d_order, dt_box, dt_area, gt_start, gt_end, g_order,
                 gt_box, gt_crowd, gt_ignore, area_ranges, thresholds, area_ref, dt_gt, tp, fp):
    """Greedy COCO matching of the (image, category) groups ``g_lo .. g_hi - 1``.

    Group ``q``'s detections are ``d_order[d_start[q]:d_start[q + 1]]`` (by rank: rows of
    ``dt_box``, ``dt_area`` and the outputs); its ground truth is
    ``g_order[gt_start[q]:gt_end[q]]`` (input order); ``gt_ignore (A, n_gt)``.
    Writes ``tp`` and ``fp`` ``(n_dt, A)`` (bit ``t``: true / false positive at threshold
    ``t``; neither: ignored) and, at area range ``area_ref``, the matched
    ground truth ``dt_gt (n_dt, T)`` (-1: unmatched, as initialised); other groups' rows are left
    alone, so disjoint group ranges may run on several threads at once.

    The matching depends on the area range only through the ground truth's ignore flags: it is
    done at ``area_ref`` and reused for every range whose flags in the group are the same, or
    (no crowd box in the group) all equal -- then the visiting order and every comparison are
    those of ``area_ref``'s all-equal flags. Only groups mixing flags are matched again. With
    one ground truth, each threshold is taken by the first detection reaching it (all
    thresholds and area ranges in one pass over the detections).
    """
    A, T = gt_ignore.shape[0], thresholds.shape[0]
    full = np.uint32((1 << T) - 1)
    cap_d, cap_g = 16, 16
    ious = np.zeros(cap_d * cap_g)
    dmax = np.zeros(cap_d)
    matched = np.empty((A, cap_d, T), dtype=np.int64)   # [a, di, t]: ground truth or -1
    visit = np.zeros(cap_g, dtype=np.int64)
    ign = np.zeros((A, cap_g), dtype=np.bool_)
    crowd = np.zeros(cap_g, dtype=np.bool_)
    taken = np.zeros(cap_g, dtype=np.bool_)
    source = np.empty(A, dtype=np.int64)                 # whose matching area a uses
    flat = np.empty(A, dtype=np.int64)                   # its flags: 0 / 1 all equal, -1 mixed
    thr = np.empty(T)
    for t in range(T):
        thr[t] = min(thresholds[t], 1 - 1e-10)
    for q in range(g_lo, g_hi):
        i0, nd = d_start[q], d_start[q + 1] - d_start[q]
        gi0, ng = gt_start[q], gt_end[q] - gt_start[q]
        if ng == 0:
            for di in range(nd):
                row = d_order[i0 + di]
                for a in range(A):
                    if area_ranges[a, 0] <= dt_area[row] <= area_ranges[a, 1]:
                        fp[row, a] = full
            continue
        if nd > cap_d or ng > cap_g:
            cap_d, cap_g = max(cap_d, 2 * nd), max(cap_g, 2 * ng)
            ious = np.zeros(cap_d * cap_g)
            dmax = np.zeros(cap_d)
            matched = np.empty((A, cap_d, T), dtype=np.int64)
            visit = np.zeros(cap_g, dtype=np.int64)
            ign = np.zeros((A, cap_g), dtype=np.bool_)
            crowd = np.zeros(cap_g, dtype=np.bool_)
            taken = np.zeros(cap_g, dtype=np.bool_)
        if ng == 1:
            # one ground truth: the matching ignores the flags (nothing to visit first), so it
            # is every area range's; at each threshold the first detection reaching it takes
            # the box (every one does when it is a crowd box)
            g = g_order[gi0]
            gx, gy, gw, gh = gt_box[g, 0], gt_box[g, 1], gt_box[g, 2], gt_box[g, 3]
            is_crowd = gt_crowd[g]
            done = 0
            for di in range(nd):
                d = i0 + di
                row = d_order[d]
                v = _bb_iou(dt_box[row, 0], dt_box[row, 1], dt_box[row, 2], dt_box[row, 3], gx,
                            gy, gw, gh, is_crowd)
                c = 0
                while c < T and v >= thr[c]:
                    c += 1
                lo = 0 if is_crowd else done
                hits = np.uint32(0)
                for t in range(lo, c):
                    dt_gt[row, t] = g
                    hits |= np.uint32(1) << np.uint32(t)
                if not is_crowd:
                    done = max(done, c)
                for a in range(A):
                    tp[row, a] = np.uint32(0) if gt_ignore[a, g] else hits
                    if area_ranges[a, 0] <= dt_area[row] <= area_ranges[a, 1]:
                        fp[row, a] = full & ~hits
            continue
        any_crowd = False
        for gj in range(ng):
            g = g_order[gi0 + gj]
            crowd[gj] = gt_crowd[g]
            any_crowd = any_crowd or crowd[gj]
            for a in range(A):
                ign[a, gj] = gt_ignore[a, g]
        for di in range(nd):
            dmax[di] = 0.0
        for gj in range(ng):
            g = g_order[gi0 + gj]
            gx, gy, gw, gh = gt_box[g, 0], gt_box[g, 1], gt_box[g, 2], gt_box[g, 3]
            for di in range(nd):
                d = d_order[i0 + di]
                v = _bb_iou(dt_box[d, 0], dt_box[d, 1], dt_box[d, 2], dt_box[d, 3], gx, gy, gw,
                            gh, crowd[gj])
                ious[di * ng + gj] = v
                dmax[di] = max(dmax[di], v)
        for a in range(A):
            flat[a] = 1 if ign[a, 0] else 0
            for gj in range(1, ng):
                if ign[a, gj] != ign[a, 0]:
                    flat[a] = -1
        for a in range(A):
            same = True
            for gj in range(ng):
                same = same and ign[a, gj] == ign[area_ref, gj]
            if a == area_ref or not (
                    same or (flat[a] >= 0 and flat[area_ref] >= 0 and not any_crowd)):
                source[a] = a
            else:
                source[a] = area_ref
        for a in range(A):
            if source[a] != a:
                continue
            nv = 0
            for gj in range(ng):
                if not ign[a, gj]:
                    visit[nv] = gj
                    nv += 1
            for gj in range(ng):
                if ign[a, gj]:
                    visit[nv] = gj
                    nv += 1
            for t in range(T):
                _greedy(nd, ng, ious, dmax, visit, ign, a, crowd, taken, thr[t], matched, t)
        for di in range(nd):
            row = d_order[i0 + di]
            area_d = dt_area[row]
            hits = np.uint32(0)                 # thresholds where area_ref's matching hits
            for t in range(T):
                m = matched[area_ref, di, t]
                if m > -1:
                    dt_gt[row, t] = g_order[gi0 + m]
                    hits |= np.uint32(1) << np.uint32(t)
            for a in range(A):
                inside = area_ranges[a, 0] <= area_d <= area_ranges[a, 1]
                if source[a] == area_ref and flat[a] >= 0:
                    # one ignore flag for the whole group: true positives where matched (if
                    # not ignored), false positives where not (if the detection is in range)
                    tp[row, a] = hits if flat[a] == 0 else np.uint32(0)
                    fp[row, a] = (full & ~hits) if inside else np.uint32(0)
                    continue
                src = source[a]
                tw = np.uint32(0)
                fw = np.uint32(0)
                for t in range(T):
                    m = matched[src, di, t]
                    bit = np.uint32(1) << np.uint32(t)
                    if m > -1:
                        if not ign[a, m]:
                            tw |= bit
                    elif inside:
                        fw |= bit
                tp[row, a] = tw
                fp[row, a] = fw


@njit(cache=True, nogil=True)
def group_bounds(sorted_keys, queries):
    """``(searchsorted(sorted_keys, queries, "left"), searchsorted(..., "right"))`` for
    ascending ``queries``: one merge walk."""
    n, m = sorted_keys.shape[0], queries.shape[0]
    lo = np.empty(m, dtype=np.int64)
    hi = np.empty(m, dtype=np.int64)
    i = 0
    for q in range(m):
        key = queries[q]
        while i < n and sorted_keys[i] < key:
            i += 1
        lo[q] = i
        while i < n and sorted_keys[i] == key:
            i += 1
        hi[q] = i
    return lo, hi


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


@njit(cache=True, nogil=True, inline="always")
def _positives_for_recall(r, p):
    """The true positives from which the recall ``tp / p`` reaches the threshold ``r`` (the
    same float division as the comparison it replaces, so exact)."""
    c = np.ceil(r * p)
    while c > 0 and (c - 1.0) / p >= r:
        c -= 1.0
    while c / p < r:
        c += 1.0
    return c


@njit(cache=True, nogil=True, inline="always")
def _interpolated_mean(best, s, t, R):
    """Interpolated precision averaged over the ``R`` recall thresholds, from
    ``best[s, t, j]`` (the best precision where exactly ``j`` thresholds are reached): at
    threshold ``j`` the best over positions reaching more than ``j`` (pycocotools'
    right-to-left running max)."""
    run = 0.0
    total = 0.0
    for j in range(R, 0, -1):
        if best[s, t, j] > run:
            run = best[s, t, j]
        total += run
    return total / R


@njit(cache=True, nogil=True, inline="always")
def _reach_table(npig, a, k, rec, need, off):
    """Per slice ``s`` of cell ``(a, k)``: ``reach[off[s] + x]``, the recall thresholds reached
    by ``x`` true positives (a lookup instead of a data-dependent branch per true positive);
    writes ``off`` and uses ``need`` as scratch."""
    S = npig.shape[0]
    R = rec.shape[0]
    for s in range(S):
        off[s + 1] = off[s] + int(max(npig[s, a, k], 0.0)) + 1
    reach = np.zeros(off[S], dtype=np.int64)
    for s in range(S):
        p = npig[s, a, k]
        if p > 0:
            for j in range(R):
                need[j] = _positives_for_recall(rec[j], p)
            j = 0
            for x in range(off[s + 1] - off[s]):
                while j < R and x >= need[j]:
                    j += 1
                reach[off[s] + x] = j
    return reach


@njit(cache=True, nogil=True, inline="always")
def _last_counted(tp, a, dt_rank, max_det, lo, hi):
    """The last detection of ``lo .. hi - 1`` that is a true positive (rank < ``max_det``) at
    area ``a``, ``lo - 1`` if none: past it a detection changes no count that is read again
    (precision and recall are taken at true positives)."""
    for i in range(hi - 1, lo - 1, -1):
        if tp[i, a] != 0 and dt_rank[i] < max_det:
            return i
    return lo - 1


@njit(cache=True, nogil=True, inline="always")
def _split_thresholds(tw, fw, T, tl, il):
    """A detection's true-positive thresholds into ``tl`` and ignored ones into ``il``;
    returns their numbers."""
    n_tp = 0
    n_ig = 0
    for t in range(T):
        bit = np.uint32(1) << np.uint32(t)
        if tw & bit:
            tl[n_tp] = t
            n_tp += 1
        elif not fw & bit:
            il[n_ig] = t
            n_ig += 1
    return n_tp, n_ig


@njit(cache=True, nogil=True, inline="always")
def _count_cell(a, lo, hi, tp, fp, T, dt_img, dt_rank, labels, max_det, recall_dets,
                with_m, reach, off, tpc, igc, seen, hits, best, sl, tl, il):
    """Count the detections ``lo .. hi - 1`` of cell ``(a, k)`` into every slice: true
    positives ``tpc``, ignored ``igc`` and seen ``seen``, ``hits`` (recall at the smaller
    ``recall_dets``, when ``with_m``), and ``best`` (see :func:`accumulate_cells`)."""
    C = labels.shape[1]
    M = recall_dets.shape[0]
    full = np.uint32((1 << T) - 1)
    for i in range(lo, hi):
        r = dt_rank[i]
        if r >= max_det:
            continue
        tw = tp[i, a]
        fw = fp[i, a]
        if tw == 0 and fw == 0:        # ignored at every threshold
            continue
        img = dt_img[i]
        if fw == full:                 # a false positive at every threshold: seen only
            for c in range(C):
                s = labels[img, c]
                if s >= 0:
                    seen[s] += 1.0
            continue
        n_tp, n_ig = _split_thresholds(tw, fw, T, tl, il)
        ns = 0
        for c in range(C):
            s = labels[img, c]
            if s >= 0:
                sl[ns] = s
                ns += 1
                seen[s] += 1.0
        m_lo = M                       # first of the (increasing) recall_dets above r
        if with_m:
            while m_lo > 0 and r < recall_dets[m_lo - 1]:
                m_lo -= 1
        for c in range(ns):
            s = sl[c]
            for u in range(n_ig):
                igc[s, il[u]] += 1.0
            sk = seen[s]
            for u in range(n_tp):
                t = tl[u]
                tps = tpc[s, t] + 1.0
                tpc[s, t] = tps
                for mi in range(m_lo, M):
                    hits[s, mi, t] += 1.0
                # a true positive's ground truth is in the slice: npig > 0 here
                fps = sk - tps - igc[s, t]
                pr = tps / (fps + tps + EPS)
                j = reach[off[s] + min(int(tps), off[s + 1] - off[s] - 1)]
                cur = best[s, t, j]
                best[s, t, j] = pr if pr > cur else cur  # branch-free (a select)


@njit(cache=True, nogil=True, inline="always")
def _write_cell(a, k, T, npig, with_m, tpc, hits, best, precision, recall, recall_m):
    """Cell ``(a, k)``'s precision, recall and (``with_m``) ``recall_m`` of every slice from
    its counts; NaN where a slice has no positives."""
    S = npig.shape[0]
    M = hits.shape[1]
    R = best.shape[2] - 1
    for s in range(S):
        p = npig[s, a, k]
        for t in range(T):
            if p <= 0:
                recall[s, a, t, k] = np.nan
                precision[s, a, t, k] = np.nan
                if with_m:
                    for mi in range(M):
                        recall_m[s, mi, t, k] = np.nan
                continue
            recall[s, a, t, k] = tpc[s, t] / p
            if with_m:
                for mi in range(M):
                    recall_m[s, mi, t, k] = hits[s, mi, t] / p
            precision[s, a, t, k] = _interpolated_mean(best, s, t, R)


@njit(cache=True, nogil=True)
def accumulate_cells(q_lo, q_hi, tp, fp, T, dt_img, dt_cat, dt_rank, cat_start, labels, npig,
                     rec, max_det, recall_dets, recall_area, precision, recall, recall_m):
    """COCO accumulation of every slice at once for the cells ``q_lo .. q_hi - 1``, cell
    ``q`` = (area range ``q // K``, category ``q % K``): one pass over the category's
    detections (``cat_start[k]:cat_start[k + 1]``: the detections are in accumulation order,
    category first), every IoU threshold and slice counted along.

    ``tp``/``fp``: ``(n, A)`` bit words over the ``T`` IoU thresholds, in pycocotools'
    accumulation order (category, score order);
    ``labels (n_images, C)``: each image's slice in each column (-1: none; a column is a
    partition of some images, e.g. the overall set or the values of one slice column);
    ``npig (S, A, K)``. Counts detections of rank < ``max_det``. Writes the interpolated
    precision averaged over the recall thresholds ``precision (S, A, T, K)`` (every valid cell
    has all ``R`` of them, so means of these equal pycocotools' means over the (T, R, K) cube up
    to the summation order), recall ``(S, A, T, K)`` and, at area ``recall_area``, the
    recall for the smaller ``recall_dets`` ``recall_m (S, M, T, K)``; NaN where a slice has no
    positives. The counts of one (area, category) cell depend on its detections alone, so
    disjoint cell ranges may run on several threads at once (and a cell's counters stay in
    the cache).

    False positives are not counted one by one: a detection is a true positive, a false
    positive or ignored at each threshold, so the false positives before a position are the
    detections seen (not ignored at every threshold) minus the true positives and the ignored
    ones there -- one count per slice for most detections instead of one per threshold.
    """
    S, _, K = npig.shape
    C = labels.shape[1]
    R = rec.shape[0]
    M = recall_dets.shape[0]
    tpc = np.zeros((S, T))
    igc = np.zeros((S, T))
    seen = np.zeros(S)
    hits = np.zeros((S, M, T))
    # best[s, t, j]: highest precision at a position where exactly j thresholds are reached
    best = np.zeros((S, T, R + 1))
    # need[j]: true positives from which the recall tp / npig reaches threshold j;
    # reach[off[s] + x]: the thresholds reached by x true positives (see _reach_table)
    need = np.zeros(R)
    off = np.zeros(S + 1, dtype=np.int64)
    sl = np.empty(C, dtype=np.int64)
    tl = np.empty(T, dtype=np.int64)        # a detection's true-positive thresholds
    il = np.empty(T, dtype=np.int64)        # and ignored ones
    for q in range(q_lo, q_hi):
        a = q // K
        k = q % K
        tpc[:] = 0.0
        igc[:] = 0.0
        seen[:] = 0.0
        hits[:] = 0.0
        best[:] = 0.0
        reach = _reach_table(npig, a, k, rec, need, off)
        last = _last_counted(tp, a, dt_rank, max_det, cat_start[k], cat_start[k + 1])
        with_m = a == recall_area
        _count_cell(a, cat_start[k], last + 1, tp, fp, T, dt_img, dt_rank, labels, max_det,
                    recall_dets, with_m, reach, off, tpc, igc, seen, hits, best, sl, tl, il)
        _write_cell(a, k, T, npig, with_m, tpc, hits, best, precision, recall, recall_m)


def n_threads() -> int:
    """Threads the kernels split their work over (the CPUs this process may run on)."""
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:  # not on Linux
        return max(1, min(8, os.cpu_count() or 1))


_POOL: tuple[int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def _forget_pool() -> None:
    """In a forked child: the parent's helper threads do not exist there (and its lock may
    have been held by one of them): start afresh on first use."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _helper_pool() -> ThreadPoolExecutor:
    """The process's helper threads (started on first use, again in a forked child)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            _POOL = (os.getpid(), ThreadPoolExecutor(7, thread_name_prefix="preflight-kernel"))
        return _POOL[1]


class Split:
    """The work ranges of one kernel call, each taken by whichever thread is free first: the
    caller and the helpers it asked for. A helper that starts late (the other CPUs busy)
    finds the ranges taken and returns: the caller never waits for a thread that did not
    get a CPU, only for ranges being computed."""

    def __init__(self, kernel, ranges: list[tuple[int, int]], args: tuple) -> None:
        self._kernel, self._args = kernel, args
        self._todo = deque(ranges)
        self._left = len(ranges)
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._error: BaseException | None = None
        if not ranges:
            self._done.set()

    def work(self) -> None:
        """Compute ranges until none is left to take."""
        while True:
            try:
                lo, hi = self._todo.popleft()
            except IndexError:
                return
            try:
                self._kernel(lo, hi, *self._args)
            except BaseException as exc:  # noqa: BLE001 -- re-raised by wait()
                self._error = exc
            with self._lock:
                self._left -= 1
                if self._left == 0:
                    self._done.set()

    def wait(self) -> None:
        """Help with the ranges left, then wait until every range is computed."""
        self.work()
        self._done.wait()
        if self._error is not None:
            raise self._error


def run_split(kernel, n_items: int, args: tuple, weights: np.ndarray | None = None,
              chunks_per_thread: int = 4, wait: bool = True) -> Split:
    """``kernel(lo, hi, *args)`` over ``[0, n_items)`` cut into ranges of similar work (by
    cumulative ``weights`` when given), a few per thread, largest first, taken by the calling
    thread and ``n_threads() - 1`` helpers as they free up: on a shared machine a thread that
    gets less CPU time takes fewer, and one that gets none takes none. On one thread: a single
    call over everything. ``wait=False``: return once the helpers are asked (the caller may do
    other work meanwhile) and let the caller join in with ``.wait()``."""
    threads = min(n_threads(), max(1, n_items))
    if threads <= 1:
        split = Split(kernel, [(0, n_items)] if n_items else [], args)
        split.work()
        return split
    k = min(n_items, threads * chunks_per_thread)
    w = np.ones(n_items) if weights is None else np.asarray(weights, dtype=np.float64)
    cum = np.cumsum(w)
    bounds = np.r_[0, np.searchsorted(cum, cum[-1] * np.arange(1, k) / k, side="right"),
                   n_items]
    ranges = [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
              if hi > lo]
    work = [cum[hi - 1] - (cum[lo - 1] if lo else 0.0) for lo, hi in ranges]
    split = Split(kernel, [ranges[i] for i in np.argsort(work, kind="stable")[::-1]], args)
    pool = _helper_pool()
    for _ in range(min(threads, len(ranges)) - 1):
        pool.submit(split.work)
    if wait:
        split.wait()
    return split


@njit(cache=True, nogil=True)
def grouped_cluster_sums(y, n, labels, n_groups):
    """Per subset of frames (``labels (m, C)``: each frame's subset in each column, -1: none)
    and column of ``y``/``n (m, W)``: ``sum n``, ``sum y``, frames with ``n > 0`` and
    ``sum (y - p n)^2`` with ``p = sum y / sum n`` (the terms of the clustered variance)."""
    m, W = y.shape
    C = labels.shape[1]
    total_n = np.zeros((n_groups, W))
    total_y = np.zeros((n_groups, W))
    frames = np.zeros((n_groups, W))
    sq = np.zeros((n_groups, W))
    for i in range(m):
        for c in range(C):
            g = labels[i, c]
            if g < 0:
                continue
            for w in range(W):
                total_n[g, w] += n[i, w]
                total_y[g, w] += y[i, w]
                if n[i, w] > 0:
                    frames[g, w] += 1.0
    p = total_y / total_n
    for i in range(m):
        for c in range(C):
            g = labels[i, c]
            if g < 0:
                continue
            for w in range(W):
                resid = y[i, w] - p[g, w] * n[i, w]
                sq[g, w] += resid * resid
    return total_n, total_y, frames, sq, p


@njit(cache=True, nogil=True, inline="always")
def _resample_thresholds(tp, fp, T, cat, K):
    """Each detection's true-positive thresholds ``tl[i, :n_tp[i]]`` and ignored ones
    ``il[i, :n_ig[i]]``; ``n_ig[i] = T`` marks one that is skipped: past the last true positive
    of its category it changes nothing that is read again. Returns ``(tl, il, n_tp, n_ig)``."""
    n = tp.shape[0]
    tl = np.empty((n, max(T, 1)), dtype=np.int64)
    il = np.empty((n, max(T, 1)), dtype=np.int64)
    n_tp = np.zeros(n, dtype=np.int64)
    n_ig = np.zeros(n, dtype=np.int64)
    last = np.full(K, -1, dtype=np.int64)          # last true positive of each category
    for i in range(n):
        if tp[i] != 0:
            last[cat[i]] = i
    for i in range(n):
        if i > last[cat[i]]:                       # changes nothing that is read again
            n_ig[i] = T
            continue
        for t in range(T):
            bit = np.uint32(1) << np.uint32(t)
            if tp[i] & bit:
                tl[i, n_tp[i]] = t
                n_tp[i] += 1
            elif not fp[i] & bit:
                il[i, n_ig[i]] = t
                n_ig[i] += 1
    return tl, il, n_tp, n_ig


@njit(cache=True, nogil=True, inline="always")
def _count_resample(b, T, cat, img, weights, npig, tl, il, n_tp, n_ig, need, tpc, igc, seen,
                    reached, best):
    """Count resample ``b``'s detections (each ``weights[b, img[i]]`` times) into its
    per-category counts ``tpc``, ``igc``, ``seen`` and ``best`` (``reached[k, t]``: the recall
    thresholds reached so far; ``need``: see :func:`_positives_for_recall`)."""
    R = need.shape[1]
    for i in range(tl.shape[0]):
        w = weights[b, img[i]]
        if w == 0 or n_ig[i] == T:
            continue
        k = cat[i]
        seen[k] += w
        for u in range(n_ig[i]):
            igc[k, il[i, u]] += w
        p = npig[b, k]
        for u in range(n_tp[i]):
            t = tl[i, u]
            tps = tpc[k, t] + w
            tpc[k, t] = tps
            if p > 0:
                fps = seen[k] - tps - igc[k, t]
                pr = tps / (fps + tps + EPS)
                j = reached[k, t]
                while j < R and tps >= need[k, j]:
                    j += 1
                reached[k, t] = j
                cur = best[k, t, j]
                best[k, t, j] = pr if pr > cur else cur  # branch-free (a select)


@njit(cache=True, nogil=True)
def accumulate_resamples_kernel(b_lo, b_hi, tp, fp, T, cat, img, weights, npig, rec, ap,
                                recall):
    """COCO accumulation of the image resamples ``b_lo .. b_hi - 1`` at one area range: for
    resample ``b`` every detection counts ``weights[b, img[i]]`` times (integer draws; 0: not
    drawn). ``tp``/``fp``: ``(n,)`` bit words over the ``T`` IoU thresholds (see
    :func:`match_groups`) in accumulation order, ``cat (n,)`` non-decreasing,
    ``npig (B, K)`` weighted positives. Writes the interpolated precision averaged over the
    recall thresholds ``ap (B, T, K)`` and the recall ``(B, T, K)``; NaN where ``npig == 0``.

    The same counts and float operations as :func:`accumulate_cells` (false positives as
    seen - true positives - ignored; a threshold's best precision kept where it is first
    reached), so equal to accumulating each resample's images on their own: a detection drawn
    ``k`` times gives the precision of ``k`` copies at its last copy, and the copies before it
    reach no new recall threshold with a better precision than that last one. Disjoint
    resample ranges may run on several threads at once.
    """
    B, K = npig.shape
    R = rec.shape[0]
    tl, il, n_tp, n_ig = _resample_thresholds(tp, fp, T, cat, K)
    tpc = np.zeros((K, T))
    igc = np.zeros((K, T))
    seen = np.zeros(K)
    best = np.zeros((K, T, R + 1))
    need = np.zeros((K, R))
    reached = np.zeros((K, T), dtype=np.int64)
    for b in range(b_lo, b_hi):
        tpc[:] = 0.0
        igc[:] = 0.0
        seen[:] = 0.0
        best[:] = 0.0
        reached[:] = 0
        for k in range(K):
            p = npig[b, k]
            if p > 0:
                for j in range(R):
                    need[k, j] = _positives_for_recall(rec[j], p)
        _count_resample(b, T, cat, img, weights, npig, tl, il, n_tp, n_ig, need, tpc, igc, seen,
                        reached, best)
        for k in range(K):
            p = npig[b, k]
            for t in range(T):
                if p <= 0:
                    ap[b, t, k] = np.nan
                    recall[b, t, k] = np.nan
                    continue
                recall[b, t, k] = tpc[k, t] / p
                ap[b, t, k] = _interpolated_mean(best, k, t, R)


@njit(cache=True, nogil=True)
def grouped_sum(x, labels, n_groups):
    """``(n_groups, W)``: the rows of ``x (m, W)`` summed per subset (``labels (m, C)``: each
    row's subset in each column, -1: none)."""
    m, W = x.shape
    out = np.zeros((n_groups, W))
    for i in range(m):
        for c in range(labels.shape[1]):
            g = labels[i, c]
            if g >= 0:
                for w in range(W):
                    out[g, w] += x[i, w]
    return out


@njit(cache=True, nogil=True)
def radix_sort_by(order, keys):
    """``order`` stably sorted by ``keys[order]`` (``uint64``): least-significant-digit radix
    sort, 11 bits a pass, the counts of every pass taken in one read of the keys, passes whose
    digit is the same for every key skipped."""
    n = order.shape[0]
    bits = 11
    n_pass = (64 + bits - 1) // bits
    mask = np.uint64((1 << bits) - 1)
    count = np.zeros((n_pass, (1 << bits) + 1), dtype=np.int64)
    idx = order.copy()
    k = np.empty(n, dtype=np.uint64)
    for i in range(n):
        key = keys[idx[i]]
        k[i] = key
        for p in range(n_pass):
            count[p, ((key >> np.uint64(p * bits)) & mask) + 1] += 1
    idx2 = np.empty(n, dtype=idx.dtype)
    k2 = np.empty(n, dtype=np.uint64)
    for p in range(n_pass):
        if n == 0:
            break
        c = count[p]
        skip = False
        for d in range(1, (1 << bits) + 1):
            if c[d] == n:
                skip = True
                break
        if skip:
            continue
        for d in range(1, (1 << bits) + 1):
            c[d] += c[d - 1]
        s = np.uint64(p * bits)
        for i in range(n):
            d = (k[i] >> s) & mask
            j = c[d]
            c[d] = j + 1
            idx2[j] = idx[i]
            k2[j] = k[i]
        idx, idx2 = idx2, idx
        k, k2 = k2, k
    return idx
