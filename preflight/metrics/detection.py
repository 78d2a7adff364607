"""Per-slice detection metrics in the long format: COCO stats, per-class AP, operating point.

``evaluate_detections`` matches once (:class:`EvaluationIndex`) and then, for the overall set and
every slice value, re-accumulates the stored matches: the twelve COCO stats (equal to pycocotools
with ``params.imgIds`` = the slice's images), ``AP.<class>``, and precision / recall / F1 at the
deployment's operating confidence threshold (IoU 0.5, area all, maxDets 100), per class and
pooled over classes. Box slices (gt columns such as ``size_bin``) get the recall of their boxes at
the operating point. Rates (precision, recall) carry frame-clustered Wilson intervals (the boxes
of one frame are not independent: the interval is widened by the measured design effect, see
:func:`cluster_wilson_interval`); with ``bootstrap > 0`` AP, AP50, AP75, AR100,
``AP.<class>`` and the F1s carry image-level percentile bootstrap intervals (resample the slice's
images with replacement, re-accumulate the stored matches: no re-matching).
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd

from preflight.metrics.coco import STAT_NAMES, CocoParams
from preflight.metrics.index import EvaluationIndex, subset_labels
from preflight.metrics.intervals import (
    cluster_wilson_grouped,
    cluster_wilson_interval,
    percentile_interval,
    resample_weights,
    slice_rng,
)
from preflight.metrics.kernels import grouped_sum, slice_npig
from preflight.metrics.slices import (
    OVERALL,
    LongTable,
    Slice,
    box_table,
    class_metric,
    make_slices,
)

DEFAULT_MIN_IMAGES = 30
DEFAULT_MIN_BOXES = 50
#: stats whose bootstrap interval is computed (area all, maxDets 100) -> position in quick_stats
BOOTSTRAP_STATS = {"AP": 0, "AP50": 1, "AP75": 2, "AR100": 3}
#: area range of each stat (for the row's n_boxes)
STAT_AREA = {"AP_small": "small", "AP_medium": "medium", "AP_large": "large",
             "AR_small": "small", "AR_medium": "medium", "AR_large": "large"}


def evaluate_detections(
    gt: pd.DataFrame,
    dt: pd.DataFrame,
    images: pd.DataFrame | None = None,
    *,
    class_names: dict[int, str] | None = None,
    params: CocoParams | None = None,
    **options: Any,
) -> pd.DataFrame:
    """The long metrics table for a detector's results ``dt`` against ground truth ``gt``.

    ``images`` (``image_id`` + slice columns) is the set of evaluated images; images without
    ground truth or detections count (as in COCO). Image ids may be str or int but must have the
    same type in all three tables. ``class_names`` maps class id to name (default: ``gt``'s
    ``class_name`` column, else the id). ``options``: those of :func:`evaluate_index`
    (``slice_columns``, ``box_slice_columns``, ``operating_threshold``, ``bootstrap``, ``seed``,
    ``min_images``, ``min_boxes``, ``model_input_size``).
    """
    index = EvaluationIndex.build(gt, dt, images, class_names=class_names, params=params)
    return evaluate_index(index, **options)


def evaluate_index(
    index: EvaluationIndex,
    *,
    slice_columns: list[str] | None = None,
    box_slice_columns: list[str] | None = None,
    operating_threshold: float = 0.25,
    bootstrap: int = 0,
    seed: int = 0,
    min_images: int = DEFAULT_MIN_IMAGES,
    min_boxes: int = DEFAULT_MIN_BOXES,
    model_input_size: int | None = None,
    bootstraps: list | None = None,
) -> pd.DataFrame:
    """:func:`evaluate_detections` on an already built :class:`EvaluationIndex`.

    ``bootstraps``: the slices' bootstrap tasks already started by :func:`start_bootstraps`
    (e.g. on a thread pool, with the same slices, ``bootstrap`` and ``seed``); the table is the
    same as when they run here. The calling thread must not be one of that pool's workers."""
    if bootstrap < 0:
        raise ValueError("bootstrap must be >= 0")
    table = LongTable()
    slices = index.image_slices(slice_columns)
    if bootstraps is None:
        bootstraps = start_bootstraps(index, slice_columns, bootstrap, seed)
    if len(bootstraps) != len(slices):
        raise ValueError("bootstraps do not match the slices")
    # point estimates of every slice first: the bootstraps may still be running elsewhere;
    # then each slice's rows as soon as its bootstrap is in (a task with ``step()`` is shared
    # with a helper: one step takes what arrived or computes one slice here), in slice order
    masks = [s.mask for s in slices]
    labels = subset_labels(masks, index.n_images)
    npig = slice_npig(labels, len(masks), index.gt_img, index.gt_cat, index.gt_ignore,
                      index.n_classes)
    box_rows = LongTable()
    # the COCO accumulation (compiled, the GIL released) starts on the kernel's helper threads
    # and runs beside the operating-point intervals and the box slices, which do not need it;
    # then this thread joins in with the accumulation left
    accumulation = index.start_slice_stats(masks, labels, npig)
    rate_ci = _rate_intervals(index, labels, len(masks), operating_threshold)
    if box_slice_columns:
        boxes = box_table(index.gt, box_slice_columns, index.images, model_input_size)
        _box_slice_rows(index, make_slices(boxes, box_slice_columns, include_overall=False,
                                           what="ground-truth"), box_rows,
                        operating_threshold)
    slice_stats, slice_ap = accumulation.result()
    points = _slice_points(index, slices, labels, npig, operating_threshold, slice_stats,
                           slice_ap, rate_ci)
    parts: dict[int, LongTable] = {}
    pending = list(range(len(slices)))
    while pending:
        i = next((j for j in pending if _is_done(bootstraps[j])), None)
        if i is None and hasattr(bootstraps[pending[0]], "step"):
            bootstraps[pending[0]].step()
            continue
        i = pending[0] if i is None else i
        parts[i] = LongTable()
        _image_slice_rows(index, slices[i], parts[i], points[i], bootstraps[i])
        pending.remove(i)
    for i in range(len(slices)):
        table.rows.extend(parts[i].rows)
    table.rows.extend(box_rows.rows)
    return table.frame(min_images, min_boxes)


def start_bootstraps(index: EvaluationIndex, slice_columns: list[str] | None, bootstrap: int,
                     seed: int, pool: Executor | None = None) -> list:
    """One task per slice (``make_slices`` order) giving ``(W, samples)``: the resample weights
    and the bootstrapped quick stats; run on ``pool``, or here when it is None. None for a slice
    without images or when ``bootstrap`` is 0."""
    out = []
    for s in index.image_slices(slice_columns):
        args = (index, s, bootstrap, seed)
        out.append(None if not has_bootstrap(s, bootstrap) else
                   pool.submit(_bootstrap_slice, *args) if pool is not None else
                   _Ready(_bootstrap_slice(*args)))
    return out


def has_bootstrap(s: Slice, bootstrap: int) -> bool:
    """Whether slice ``s`` gets a bootstrap task (resamples asked for, images in the slice)."""
    return bool(bootstrap) and bool(s.mask.any())


def summary_metrics(gt: pd.DataFrame, dt: pd.DataFrame, images: pd.DataFrame | None = None, *,
                    operating_threshold: float = 0.25,
                    class_names: dict[int, str] | None = None) -> dict[str, float]:
    """Overall metrics as ``{metric: value}`` (the twelve COCO stats, ``AP.<class>``, and
    precision / recall / F1 at the operating point): a drop-in ``evaluate_fn`` for stress tests."""
    table = evaluate_detections(gt, dt, images, operating_threshold=operating_threshold,
                                class_names=class_names)
    return dict(zip(table["metric"], table["value"].astype(float), strict=True))


def _prf(tp, fp, pos):
    tp, fp, pos = (np.asarray(v, dtype=np.float64) for v in (tp, fp, pos))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = np.where(pos > 0, tp / pos, np.nan)
        denom = tp + fp + pos          # 2TP + FP + FN
        f1 = np.where(denom > 0, 2 * tp / denom, np.nan)
    return precision, recall, f1


class _Ready:
    """A finished result with the ``Future.result()`` interface."""

    def __init__(self, value) -> None:
        self.value = value

    def result(self):
        return self.value

    def done(self) -> bool:
        return True


def _is_done(task) -> bool:
    return task is None or task.done()


def slice_resamples(s: Slice, bootstrap: int, seed: int) -> np.ndarray:
    """``(bootstrap, n_images)``: the slice's resample weights (a function of the seed and the
    slice's name, so any process draws the same)."""
    return resample_weights(slice_rng(seed, s.column, s.value), int(s.mask.sum()), bootstrap)


def _bootstrap_slice(index: EvaluationIndex, s: Slice, bootstrap: int, seed: int):
    """``(W, samples)``: the slice's resample weights and its quick stats per resample."""
    W = slice_resamples(s, bootstrap, seed)
    return W, index.bootstrap_stats(s.mask, W)


def _rate_intervals(index: EvaluationIndex, labels: np.ndarray, S: int, threshold: float
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Frame-clustered Wilson intervals of the operating-point precision and recall (per class
    ``(S, K)`` and pooled ``(S,)``) of every image slice (``labels``: :func:`subset_labels`),
    all slices at once."""
    tpc, fpc, pos = index.op_counts(threshold)
    tp_i, fp_i, pos_i = tpc.sum(1), fpc.sum(1), pos.sum(1)
    return {"precision_k": cluster_wilson_grouped(tpc, tpc + fpc, labels, S),
            "recall_k": cluster_wilson_grouped(tpc, pos, labels, S),
            "precision": cluster_wilson_grouped(tp_i, tp_i + fp_i, labels, S),
            "recall": cluster_wilson_grouped(tp_i, pos_i, labels, S)}


def _slice_points(index: EvaluationIndex, slices: list[Slice], labels: np.ndarray,
                  npig: np.ndarray, threshold: float, stats: np.ndarray, per_class: np.ndarray,
                  rate_ci: dict) -> list[dict]:
    """Each slice's point estimates and counts (everything but the bootstrap intervals), given
    the slices' COCO stats, per-class AP, non-ignored ground truth ``npig (S, A, K)`` and
    operating-point rate intervals; counts of all slices summed at once (``labels``)."""
    p = index.params
    S, a_all = len(slices), p.area_index("all")
    lab = np.ascontiguousarray(labels, dtype=np.int64)
    n_img = grouped_sum(np.ones((index.n_images, 1)), lab, S)[:, 0]
    tp_k, fp_k, pos_k = (grouped_sum(np.asarray(c, dtype=np.float64), lab, S)
                         for c in index.op_counts(threshold))
    box_count = npig.sum(axis=2)                                              # (S, A)
    return [dict(n_img=int(n_img[i]), stats=stats[i], per_class=per_class[i],
                 box_count={lbl: int(box_count[i, a]) for a, lbl in enumerate(p.area_labels)},
                 class_boxes=npig[i, a_all].astype(np.int64), tp_k=tp_k[i], fp_k=fp_k[i],
                 pos_k=pos_k[i], mask=s.mask, threshold=threshold,
                 rate_ci={k: (lo[i], hi[i]) for k, (lo, hi) in rate_ci.items()})
            for i, s in enumerate(slices)]


def _image_slice_rows(index: EvaluationIndex, s: Slice, table: LongTable, pts: dict,
                      boot=None) -> None:
    n_img, stats, per_class = pts["n_img"], pts["stats"], pts["per_class"]
    box_count, class_boxes = pts["box_count"], pts["class_boxes"]
    K = index.n_classes
    tp_k, fp_k, pos_k = pts["tp_k"], pts["fp_k"], pts["pos_k"]
    prec_k, rec_k, f1_k = _prf(tp_k, fp_k, pos_k)
    prec, rec, f1 = _prf(tp_k.sum(), fp_k.sum(), pos_k.sum())

    ci_stats = np.full((len(STAT_NAMES), 2), np.nan)
    ci_class = np.full((K, 2), np.nan)
    ci_f1_k = np.full((K, 2), np.nan)
    ci_f1 = np.full(2, np.nan)
    if boot is not None:
        W, samples = boot.result()
        point = np.concatenate([[stats[STAT_NAMES.index(k)] for k in BOOTSTRAP_STATS],
                                per_class])
        lo, hi = percentile_interval(samples, point)
        for name, j in BOOTSTRAP_STATS.items():
            ci_stats[STAT_NAMES.index(name)] = lo[j], hi[j]
        ci_class[:] = np.column_stack([lo[4:], hi[4:]])
        tpc, fpc, pos = (c[pts["mask"]] for c in index.op_counts(pts["threshold"]))
        btp, bfp, bpos = W @ tpc, W @ fpc, W @ pos                    # (B, K)
        ci_f1_k[:] = np.column_stack(percentile_interval(_prf(btp, bfp, bpos)[2], f1_k))
        f1_b = _prf(btp.sum(1), bfp.sum(1), bpos.sum(1))[2]
        ci_f1[:] = np.ravel(percentile_interval(f1_b, np.atleast_1d(f1)))

    ci = pts["rate_ci"]
    plo, phi = ci["precision_k"]
    rlo, rhi = ci["recall_k"]
    names = index.class_names
    # rows: the 12 stats, AP per class, (precision, recall, F1) per class, pooled P / R / F1
    metrics = [*STAT_NAMES, *(class_metric("AP", c) for c in names),
               *(class_metric(m, c) for c in names for m in ("precision", "recall", "F1")),
               "precision", "recall", "F1"]
    per_class_prf = np.column_stack([prec_k, rec_k, f1_k]).ravel()
    per_class_lo = np.column_stack([plo, rlo, ci_f1_k[:, 0]]).ravel()
    per_class_hi = np.column_stack([phi, rhi, ci_f1_k[:, 1]]).ravel()
    values = np.concatenate([stats, per_class, per_class_prf, [prec, rec, f1]])
    lo = np.concatenate([ci_stats[:, 0], ci_class[:, 0], per_class_lo,
                         [ci["precision"][0], ci["recall"][0], ci_f1[0]]])
    hi = np.concatenate([ci_stats[:, 1], ci_class[:, 1], per_class_hi,
                         [ci["precision"][1], ci["recall"][1], ci_f1[1]]])
    n_boxes = np.concatenate([[box_count[STAT_AREA.get(name, "all")] for name in STAT_NAMES],
                              class_boxes, np.repeat(class_boxes, 3), [box_count["all"]] * 3])
    table.add_many(s.column, s.value, metrics, values, lo, hi, n_img, n_boxes)


def _box_slice_rows(index: EvaluationIndex, slices: list[Slice], table: LongTable,
                    threshold: float) -> None:
    """The operating-point recall of every box slice (pooled and per class), with intervals
    that resample frames, not boxes: counts per (frame, slice, class), all slices at once."""
    if not slices:
        return
    ok_all = ~index.gt_ignore[index.params.area_index("all")]
    detected = index.gt_detected(threshold)
    K, N, J = index.n_classes, index.n_images, len(slices)
    cells = index.gt_img * K + index.gt_cat
    n_ijk = np.zeros((N, J, K))
    hit_ijk = np.zeros((N, J, K))
    for j, s in enumerate(slices):
        ok = s.mask & ok_all
        n_ijk[:, j] = np.bincount(cells[ok], minlength=N * K).reshape(N, K)
        hit_ijk[:, j] = np.bincount(cells[ok & detected], minlength=N * K).reshape(N, K)
    n_ij, hit_ij = n_ijk.sum(2), hit_ijk.sum(2)
    lo, hi = cluster_wilson_interval(hit_ij, n_ij)                       # (J,)
    lo_k, hi_k = cluster_wilson_interval(hit_ijk, n_ijk)                 # (J, K)
    n_jk, hit_jk = n_ijk.sum(0), hit_ijk.sum(0)
    imgs_jk = (n_ijk > 0).sum(0)
    n_img = (n_ij > 0).sum(0)
    for j, s in enumerate(slices):
        n, k = int(n_jk[j].sum()), int(hit_jk[j].sum())
        table.add(s.column, s.value, "recall", k / n if n else np.nan, lo[j], hi[j],
                  int(n_img[j]), n)
        for c, cname in enumerate(index.class_names):
            if not n_jk[j, c]:
                continue
            table.add(s.column, s.value, class_metric("recall", cname), hit_jk[j, c] / n_jk[j, c],
                      lo_k[j, c], hi_k[j, c], int(imgs_jk[j, c]), int(n_jk[j, c]))


__all__ = ["evaluate_detections", "evaluate_index", "summary_metrics", "OVERALL"]
