"""Detection confusion matrix over the classes plus ``background``, at the operating point.

Rows are the truth, columns the prediction. At the operating threshold and IoU ``iou``:

* a true positive (COCO matching, area all, maxDets 100) counts on the diagonal;
* the remaining false positives and the remaining (undetected, non-crowd) boxes of the same image
  are paired one-to-one on ``IoU >= iou`` regardless of class, highest IoU first (as
  ultralytics' ConfusionMatrix does): a pair counts at ``(box class, predicted class)`` -- this
  is where look-alike classes show up;
* an unpaired box counts at ``(box class, background)`` (missed), an unpaired false positive at
  ``(background, predicted class)``; detections matched to crowd regions are not counted.

Each cell of a real class's row also carries ``share``: the share of that class's boxes counted
there (e.g. the share of class A's ground truth detected as class B), with a 95% interval
clustered by frame (:func:`~preflight.metrics.intervals.cluster_wilson_interval`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from preflight.metrics.coco import candidate_pairs
from preflight.metrics.index import EvaluationIndex
from preflight.metrics.intervals import cluster_wilson_interval, wilson_interval
from preflight.metrics.slices import OVERALL

BACKGROUND = "background"
CONFUSION_COLUMNS = ["slice_column", "slice_value", "true_class", "pred_class", "count",
                     "n_images", "share", "ci_low", "ci_high"]


def _one_to_one(d: np.ndarray, g: np.ndarray, iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique (detection, box) pairs, highest IoU first."""
    order = np.lexsort((g, d, -iou))
    d, g = d[order], g[order]
    _, first_d = np.unique(d, return_index=True)
    keep = np.sort(first_d)
    d, g = d[keep], g[keep]
    _, first_g = np.unique(g, return_index=True)
    keep = np.sort(first_g)
    return d[keep], g[keep]


def confusion_events(index: EvaluationIndex, operating_threshold: float = 0.25,
                     iou: float = 0.5) -> pd.DataFrame:
    """One row per counted event: ``image`` (position), ``true`` and ``pred`` (class position,
    ``K`` = background)."""
    K = index.n_classes
    tp, fp = index.op_status(operating_threshold, iou)
    a, t = index.params.area_index("all"), index.params.iou_index(iou)
    gt_left = ~index.gt_ignore[a] & ~index.gt_detected(operating_threshold, iou)
    f, g_left = np.flatnonzero(fp), np.flatnonzero(gt_left)
    pd_, pg, piou = candidate_pairs(index.dt_box[f], index.dt_img[f], index.gt_box[g_left],
                                    index.gt_img[g_left], None, iou)
    pd_, pg = _one_to_one(f[pd_], g_left[pg], piou)
    fp_left = fp.copy()
    fp_left[pd_] = False
    gt_left[pg] = False
    t_tp = index.gt_cat[index.dt_gt[t][tp]]
    images = np.concatenate([index.dt_img[tp], index.dt_img[pd_], index.gt_img[gt_left],
                             index.dt_img[fp_left]])
    true = np.concatenate([t_tp, index.gt_cat[pg], index.gt_cat[gt_left],
                           np.full(int(fp_left.sum()), K)])
    pred = np.concatenate([index.dt_cat[tp], index.dt_cat[pd_], np.full(int(gt_left.sum()), K),
                           index.dt_cat[fp_left]])
    return pd.DataFrame({"image": images, "true": true, "pred": pred})


def confusion_matrix(index: EvaluationIndex, *, slice_columns: list[str] | None = None,
                     operating_threshold: float = 0.25, iou: float = 0.5) -> pd.DataFrame:
    """Long confusion table ``slice_column, slice_value, true_class, pred_class, count,
    n_images``: every (true, predicted) cell of the (K+1)² matrix, overall and per slice value."""
    ev = confusion_events(index, operating_threshold, iou)
    K = index.n_classes
    names = [*index.class_names, BACKGROUND]
    cell = (ev["true"].to_numpy() * (K + 1) + ev["pred"].to_numpy())
    img = ev["image"].to_numpy()
    true_names = np.repeat(names, K + 1)
    pred_names = np.tile(names, K + 1)
    frames = []
    for s in index.image_slices(slice_columns):
        inside = s.mask[img]
        counts = np.bincount(cell[inside], minlength=(K + 1) ** 2)
        share, low, high = _shares(cell[inside], img[inside], counts, K)
        frames.append(pd.DataFrame({
            "slice_column": s.column, "slice_value": s.value, "true_class": true_names,
            "pred_class": pred_names, "count": counts.astype(np.int64),
            "n_images": int(s.mask.sum()), "share": share, "ci_low": low, "ci_high": high}))
    return pd.concat(frames, ignore_index=True)[CONFUSION_COLUMNS]


def _shares(cell: np.ndarray, img: np.ndarray, counts: np.ndarray, K: int):
    """Per cell of a real class's row: count / the class's boxes, with the frame-clustered
    interval (NaN in the background row and for classes without boxes). Dense per-frame counts
    only for the non-zero cells: a zero cell's interval needs only its class's frame count."""
    C = K + 1
    true_of = np.arange(C * C) // C
    boxes = np.bincount(true_of, weights=counts, minlength=C * C)[:C]      # row totals
    share = np.full(C * C, np.nan)
    low, high = np.full(C * C, np.nan), np.full(C * C, np.nan)
    real = (true_of < K) & (boxes[true_of] > 0)
    share[real] = counts[real] / boxes[true_of[real]]
    frames, frame_pos = np.unique(img, return_inverse=True)
    is_box = cell // C < K
    per_class = np.bincount(frame_pos[is_box] * C + cell[is_box] // C,
                            minlength=len(frames) * C).reshape(len(frames), C)
    frames_of = (per_class > 0).sum(axis=0)                                # frames with boxes
    zero = real & (counts == 0)
    low[zero], high[zero] = wilson_interval(0, frames_of[true_of[zero]])
    hit = np.flatnonzero(real & (counts > 0))
    if len(hit):
        col = np.full(C * C, -1)
        col[hit] = np.arange(len(hit))
        mine = col[cell] >= 0
        y = np.bincount(frame_pos[mine] * len(hit) + col[cell[mine]],
                        minlength=len(frames) * len(hit)).reshape(len(frames), len(hit))
        low[hit], high[hit] = cluster_wilson_interval(y, per_class[:, true_of[hit]])
    return share, low, high


def confusion_pivot(table: pd.DataFrame, slice_column: str = OVERALL,
                    slice_value: str = OVERALL) -> pd.DataFrame:
    """One slice of :func:`confusion_matrix` as a square matrix (rows true, columns predicted)."""
    sub = table[(table["slice_column"] == slice_column) & (table["slice_value"] == slice_value)]
    order = list(dict.fromkeys(sub["true_class"]))
    return sub.pivot(index="true_class", columns="pred_class", values="count").loc[order, order]
