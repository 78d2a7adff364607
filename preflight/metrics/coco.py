"""COCO bbox evaluation, vectorised: parameters, IoU and greedy matching.

This reproduces ``pycocotools.cocoeval.COCOeval.evaluate`` for ``iouType='bbox'`` with NumPy
(no Python loop over images): the matching of every (image, category) is done once, for every
IoU threshold and area range at the same time, and the results are kept per detection so that
any subset of images (a slice, a bootstrap resample) can be accumulated without matching again.

The semantics follow pycocotools exactly:

* detections of one (image, category) are ordered by score with a stable sort (ties keep input
  order) and truncated to ``max_dets[-1]`` *before* matching;
* ground truth is ignored when ``iscrowd`` or when its ``area`` field (as given, not ``w*h``)
  lies outside the area range (both bounds inclusive); non-ignored ground truth is visited first;
* IoU with a crowd box is ``intersection / detection area``; a crowd box can be matched by any
  number of detections;
* a detection takes, among the eligible non-ignored ground truth with ``IoU >= t``, the one with
  the highest IoU (ties: the later one in input order); only if there is none it may take an
  ignored one (same rule); a detection matched to ignored ground truth is ignored;
* an unmatched detection whose area ``w*h`` lies outside the area range is ignored.

Known, deliberate difference: pycocotools stores matches as annotation ids and tests ``id != 0``,
so a ground-truth annotation with ``id == 0`` is never counted as matched there. Here matches are
positions, so that quirk is not reproduced (COCO ids start at 1 in practice).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AREA_LABELS: tuple[str, ...] = ("all", "small", "medium", "large")
STAT_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)
#: largest number of candidate (detection, ground truth) pairs whose IoU is computed at once
PAIR_CHUNK = 2_000_000


@dataclass(frozen=True)
class CocoParams:
    """The COCO detection parameters (``pycocotools.cocoeval.Params(iouType='bbox')``)."""

    iou_thresholds: tuple[float, ...] = tuple(float(v) for v in np.linspace(0.5, 0.95, 10))
    rec_thresholds: tuple[float, ...] = tuple(float(v) for v in np.linspace(0.0, 1.0, 101))
    max_dets: tuple[int, ...] = (1, 10, 100)
    area_ranges: tuple[tuple[float, float], ...] = (
        (0.0, 1e5**2), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))
    area_labels: tuple[str, ...] = AREA_LABELS

    def __post_init__(self) -> None:
        if list(self.max_dets) != sorted(self.max_dets) or not self.max_dets:
            raise ValueError("max_dets must be a non-empty increasing sequence")
        if len(self.area_ranges) != len(self.area_labels):
            raise ValueError("area_ranges and area_labels differ in length")
        if list(self.iou_thresholds) != sorted(self.iou_thresholds):
            raise ValueError("iou_thresholds must be increasing")
        if not 0 < len(self.iou_thresholds) <= 32:
            raise ValueError("iou_thresholds: between 1 and 32 thresholds (the matches are "
                             "kept as one 32-bit word per detection and area range)")

    def iou_index(self, iou: float) -> int:
        hits = np.flatnonzero(np.isclose(np.asarray(self.iou_thresholds), iou))
        if not len(hits):
            raise ValueError(f"IoU threshold {iou} is not one of {self.iou_thresholds}")
        return int(hits[0])

    def area_index(self, label: str) -> int:
        return self.area_labels.index(label)

    def max_det_index(self, max_det: int) -> int:
        return self.max_dets.index(max_det)


def box_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """IoU of paired boxes ``d[i]`` and ``g[i]`` (top-left ``x, y, w, h``), the same floating-point
    operations as pycocotools' ``bbIou`` (crowd: intersection over the detection's area)."""
    dx, dy, dw, dh = d[:, 0], d[:, 1], d[:, 2], d[:, 3]
    gx, gy, gw, gh = g[:, 0], g[:, 1], g[:, 2], g[:, 3]
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = w * h
    da = dw * dh
    union = da + gw * gh - inter
    if crowd is not None:
        union = np.where(crowd, da, union)
    ok = (w > 0) & (h > 0)
    out = np.zeros(len(d), dtype=np.float64)
    np.divide(inter, union, out=out, where=ok)
    return out


def candidate_pairs(dt_box: np.ndarray, dt_group: np.ndarray, gt_box: np.ndarray,
                    gt_group: np.ndarray, gt_crowd: np.ndarray | None,
                    min_iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (detection, ground truth) pairs of the same group with ``IoU >= min_iou``.

    Returns ``(dt_index, gt_index, iou)``; IoU is computed in chunks of at most ``PAIR_CHUNK``.
    """
    n_gt = len(gt_group)
    order_g = np.lexsort((np.arange(n_gt), gt_group))
    g_sorted = gt_group[order_g]
    lo = np.searchsorted(g_sorted, dt_group, side="left")
    hi = np.searchsorted(g_sorted, dt_group, side="right")
    counts = hi - lo
    out_d, out_g, out_iou = [], [], []
    dts = np.flatnonzero(counts)
    if len(dts):
        cum = np.cumsum(counts[dts])
        bounds = [0]
        while bounds[-1] < len(dts):
            base = cum[bounds[-1] - 1] if bounds[-1] else 0
            nxt = int(np.searchsorted(cum, base + PAIR_CHUNK, side="right"))
            bounds.append(max(nxt, bounds[-1] + 1))
        for b0, b1 in zip(bounds[:-1], bounds[1:], strict=True):
            d_idx = dts[b0:b1]
            c = counts[d_idx]
            rep_d = np.repeat(d_idx, c)
            first = np.cumsum(c) - c
            offs = np.arange(int(c.sum())) - np.repeat(first, c) + np.repeat(lo[d_idx], c)
            rep_g = order_g[offs]
            iou = box_iou(dt_box[rep_d], gt_box[rep_g],
                          None if gt_crowd is None else gt_crowd[rep_g])
            keep = iou >= min_iou
            out_d.append(rep_d[keep])
            out_g.append(rep_g[keep])
            out_iou.append(iou[keep])
    if not out_d:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
    return np.concatenate(out_d), np.concatenate(out_g), np.concatenate(out_iou)


def in_area(area: np.ndarray, area_ranges) -> np.ndarray:
    """``(A, n)``: area inside each range, both bounds inclusive (as pycocotools)."""
    rng = np.asarray(area_ranges, dtype=np.float64)
    return (area[None, :] >= rng[:, :1]) & (area[None, :] <= rng[:, 1:])


@dataclass
class Matches:
    """Per-detection and per-ground-truth results of COCO matching.

    ``dt_gt[t, i]``: the ground truth matched by detection ``i`` at area range "all" and IoU
    threshold ``t`` (-1: unmatched; int32; a transposed view of ``(n_dt, T)`` rows);
    ``tp_bits``/``fp_bits`` ``(n_dt, A)`` uint32: bit ``t`` set when the detection counts as a
    true / false positive at threshold ``t`` (neither: ignored), :func:`unpack` gives the
    ``(A, T, n_dt)`` booleans; ``gt_ignore (A, n_gt)``.
    """

    dt_gt: np.ndarray
    tp_bits: np.ndarray
    fp_bits: np.ndarray
    gt_ignore: np.ndarray


def unpack(bits: np.ndarray, n_thresholds: int) -> np.ndarray:
    """``(A, T, n)`` booleans from ``(n, A)`` threshold bit words."""
    t = np.arange(n_thresholds, dtype=np.uint32)
    return ((bits.T[:, None, :] >> t[None, :, None]) & np.uint32(1)).astype(bool)


def match(dt_box: np.ndarray, dt_area: np.ndarray, dt_group: np.ndarray, d_order: np.ndarray,
          d_start: np.ndarray, gt_box: np.ndarray, gt_area: np.ndarray, gt_crowd: np.ndarray,
          gt_group: np.ndarray, params: CocoParams) -> Matches:
    """COCO greedy matching for all groups (image, category) at once (compiled kernel, the
    groups split over threads).

    Detections must already be truncated to ``max_dets[-1]`` per group; ``d_order`` lists them by
    (group, rank inside the group: 0 = highest score) and ``d_start`` bounds the groups in it
    (see ``kernels.rank_in_groups``).
    """
    from preflight.metrics.kernels import group_bounds, match_groups, radix_sort_by, run_split

    thr = np.asarray(params.iou_thresholds, dtype=np.float64)
    gt_crowd = np.asarray(gt_crowd, dtype=bool)
    gt_ignore = np.ascontiguousarray(gt_crowd[None, :] | ~in_area(gt_area, params.area_ranges))
    A, T, n_dt = len(params.area_ranges), len(thr), len(dt_group)
    g_order = radix_sort_by(np.arange(len(gt_group), dtype=np.int64),
                            np.asarray(gt_group).astype(np.uint64))
    g_sorted = gt_group[g_order]
    first = np.asarray(dt_group)[d_order[d_start[:-1]]]              # ascending
    gt_start, gt_end = group_bounds(g_sorted, first)
    # one row per detection, written in place by the kernel: its matches per threshold, and
    # one bit word per area range for true and for false positives
    dt_gt = np.full((n_dt, T), -1, dtype=np.int32)
    tp = np.zeros((n_dt, A), dtype=np.uint32)
    fp = np.zeros((n_dt, A), dtype=np.uint32)
    work = np.diff(d_start) * (gt_end - gt_start + 1)
    run_split(match_groups, len(first), (
        d_start, d_order, np.ascontiguousarray(dt_box, dtype=np.float64),
        np.ascontiguousarray(dt_area, dtype=np.float64), gt_start, gt_end, g_order,
        np.ascontiguousarray(gt_box, np.float64), gt_crowd, gt_ignore,
        np.asarray(params.area_ranges, dtype=np.float64), thr, params.area_index("all"),
        dt_gt, tp, fp), work)
    return Matches(dt_gt=dt_gt.T, tp_bits=tp, fp_bits=fp, gt_ignore=gt_ignore)
