"""``EvaluationIndex``: detections matched to ground truth once, queried per slice.

Build it from the ingested tables (``gt``: ``image_id, class_id, x, y, w, h, area, iscrowd``
plus optional box columns; ``dt``: ``image_id, class_id, score, x, y, w, h``; ``images``:
``image_id`` plus slice columns). Every query takes an image mask (a slice) or integer image
weights (a bootstrap resample) and re-accumulates the stored per-detection match results.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from preflight.metrics.accumulate import accumulate, coco_stats, nanmean
from preflight.metrics.bootstrap import accumulate_resamples
from preflight.metrics.coco import CocoParams, match, unpack
from preflight.metrics.kernels import (
    accumulate_cells,
    accumulate_resamples_kernel,
    radix_sort_by,
    rank_in_groups,
    run_split,
    slice_npig,
)

GT_REQUIRED = ("image_id", "class_id", "x", "y", "w", "h")
DT_REQUIRED = ("image_id", "class_id", "score", "x", "y", "w", "h")


def _require(df: pd.DataFrame, cols, what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what} table lacks columns {missing} (has {list(df.columns)})")


def _numeric(df: pd.DataFrame, cols, what: str) -> np.ndarray:
    try:       # column by column (df[cols] would build and copy a new frame first), each
        arr = np.empty((len(df), len(cols)), order="F")        # written contiguously
        for j, col in enumerate(cols):
            values = df[col]
            numpy_number = isinstance(values.dtype, np.dtype) and values.dtype.kind in "iuf"
            arr[:, j] = (values.to_numpy() if numpy_number
                         else values.to_numpy(dtype=np.float64, na_value=np.nan))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: columns {list(cols)} must be numeric ({exc})") from None
    if arr.size and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(f"{what}: {bad} rows have a missing or non-finite value in {list(cols)}")
    return arr


def _image_index(ids: pd.Series) -> pd.Index:
    values = ids.to_numpy()
    if values.dtype.kind in "iu":              # integers: NumPy's sort is Python's order
        return pd.Index(np.unique(values))
    uniq = pd.unique(values)
    try:
        return pd.Index(sorted(uniq))
    except TypeError:  # mixed types: order as strings
        return pd.Index(sorted(uniq, key=str))


def _positions(index: pd.Index, ids: pd.Series, what: str) -> np.ndarray:
    values = ids.to_numpy()
    keys = index.to_numpy()
    if (values.dtype.kind in "iu" and keys.dtype.kind in "iu" and len(keys) and len(values)
            and keys[0] >= 0 and 0 <= values.min() and values.max() < 8 * len(keys) + 4096
            and keys[-1] < 8 * len(keys) + 4096):
        # small non-negative integer ids (``index`` is ascending): a table lookup
        table = np.full(max(int(values.max()), int(keys[-1])) + 1, -1, dtype=np.int64)
        table[keys] = np.arange(len(keys))
        pos = table[values]
    else:
        pos = index.get_indexer(values)
    if (pos < 0).any():
        unknown = pd.unique(ids.to_numpy()[pos < 0])
        raise ValueError(
            f"{what} references {len(unknown)} image id(s) that are not in the images table, "
            f"e.g. {[str(u) for u in unknown[:5]]} (check the id type: str vs int)")
    return pos.astype(np.int64)


def _categories(ids: list[np.ndarray], named: np.ndarray
                ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The distinct class ids (ascending) of ``ids`` and ``named``, and each array's positions
    in them (a table lookup when the ids are small non-negative integers, else sorting)."""
    parts = [*ids, named]
    top = max((int(p.max()) for p in parts if len(p)), default=0)
    low = min((int(p.min()) for p in parts if len(p)), default=0)
    if low >= 0 and top < 1 << 20:
        present = np.zeros(top + 1, dtype=bool)
        for p in parts:
            present[p] = True
        class_ids = np.flatnonzero(present).astype(np.int64)
        lookup = np.cumsum(present) - 1
        return class_ids, [lookup[p].astype(np.int64) for p in ids]
    class_ids = np.unique(np.concatenate(parts))
    return class_ids, [np.searchsorted(class_ids, p).astype(np.int64) for p in ids]


def accumulation_order(img: np.ndarray, score: np.ndarray, cat: np.ndarray, n_images: int,
                       n_classes: int) -> np.ndarray:
    """``np.lexsort((img, -score, cat))`` (category, descending score, image, input order) as
    three stable radix sorts (the scores by their :func:`descending_key`)."""
    order = radix_sort_by(np.arange(len(img), dtype=np.int64), np.asarray(img, np.uint64))
    order = radix_sort_by(order, descending_key(score))
    return radix_sort_by(order, np.asarray(cat, np.uint64))


def descending_key(x: np.ndarray) -> np.ndarray:
    """``uint64`` keys whose ascending order is ``x``'s descending order, ties kept equal (the
    float's bits made monotone; ``-0.0`` counts as ``0.0``): a stable sort of these integers
    is that of ``-x`` and about twice as fast."""
    bits = (np.asarray(x, dtype=np.float64) + 0.0).view(np.uint64)
    negative = (bits >> np.uint64(63)).astype(bool)
    ascending = np.where(negative, ~bits, bits | np.uint64(1 << 63))
    return ~ascending


def subset_labels(masks: list[np.ndarray], n_images: int) -> np.ndarray:
    """``(n_images, C)`` int32: image subsets packed into as few columns as possible, each
    column a partition of some images (the subset each image is in, -1: none); the values of
    one slice column share a column."""
    labels: list[np.ndarray] = []
    for i, m in enumerate(masks):
        for col in labels:
            if not (col[m] >= 0).any():
                col[m] = i
                break
        else:
            col = np.full(n_images, -1, dtype=np.int32)
            col[m] = i
            labels.append(col)
    if not labels:
        return np.full((n_images, 1), -1, dtype=np.int32)
    return np.ascontiguousarray(np.column_stack(labels))


class _PendingStats:
    """:meth:`EvaluationIndex.slice_stats` under way: the kernel's outputs, filled by the
    threads of ``split``; ``result()`` waits for them and derives the stats."""

    def __init__(self, params: CocoParams, precision: np.ndarray, recall: np.ndarray,
                 recall_m: np.ndarray) -> None:
        self.params, self.precision, self.recall, self.recall_m = (params, precision, recall,
                                                                   recall_m)
        self.split = None

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(S, 12)`` stats and ``(S, K)`` per-class AP."""
        self.split.wait()
        p = self.params
        precision, recall, recall_m = self.precision, self.recall, self.recall_m
        a_all = p.area_index("all")
        t50, t75 = p.iou_index(0.5), p.iou_index(0.75)
        areas = [p.area_index(k) for k in ("small", "medium", "large")]
        pa = precision[:, a_all]                                           # (S, T, K)
        stats = np.column_stack(
            [nanmean(pa, axis=(1, 2)), nanmean(pa[:, t50], axis=1),
             nanmean(pa[:, t75], axis=1)]
            + [nanmean(precision[:, a], axis=(1, 2)) for a in areas]
            + [nanmean(recall_m[:, 0], axis=(1, 2)), nanmean(recall_m[:, 1], axis=(1, 2)),
               nanmean(recall[:, a_all], axis=(1, 2))]
            + [nanmean(recall[:, a], axis=(1, 2)) for a in areas])
        return stats, nanmean(pa, axis=1)


@dataclass
class EvaluationIndex:
    """Matching done once; per-slice COCO accumulation and operating-point counts on demand.

    Detection arrays (``dt_*``) are in pycocotools' accumulation order (category, descending score,
    image order, input order) and truncated to ``params.max_dets[-1]`` per (image, category).
    Ground-truth arrays (``gt_*``) keep the input row order (``gt_row``).
    """

    params: CocoParams
    image_ids: pd.Index
    images: pd.DataFrame
    class_ids: np.ndarray
    class_names: list[str]
    gt: pd.DataFrame
    gt_img: np.ndarray
    gt_cat: np.ndarray
    gt_box: np.ndarray
    gt_area: np.ndarray
    gt_crowd: np.ndarray
    gt_ignore: np.ndarray
    dt_row: np.ndarray
    dt_img: np.ndarray
    dt_cat: np.ndarray
    dt_score: np.ndarray
    dt_box: np.ndarray
    dt_rank: np.ndarray
    dt_gt: np.ndarray
    tp_bits: np.ndarray
    fp_bits: np.ndarray
    _cache: dict = field(default_factory=dict, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, gt: pd.DataFrame, dt: pd.DataFrame, images: pd.DataFrame | None = None, *,
              class_names: dict[int, str] | None = None,
              params: CocoParams | None = None) -> EvaluationIndex:
        params = params or CocoParams()
        _require(gt, GT_REQUIRED, "ground-truth")
        _require(dt, DT_REQUIRED, "detection")
        if images is None:
            images = pd.DataFrame({"image_id": _image_index(gt["image_id"])})
        _require(images, ("image_id",), "images")
        image_ids = _image_index(images["image_id"])
        if len(image_ids) != len(images):
            dup = images.loc[images["image_id"].duplicated(), "image_id"].head(5).tolist()
            raise ValueError(f"images table has duplicate image ids, e.g. {dup}")
        given = images["image_id"].to_numpy()
        if len(given) == len(image_ids) and (given == image_ids.to_numpy()).all():
            images = images.reset_index(drop=True)          # already in image order
        else:
            images = images.set_index("image_id").loc[image_ids].reset_index()
        gt = gt.reset_index(drop=True)
        dt = dt.reset_index(drop=True)
        gt_img = _positions(image_ids, gt["image_id"], "ground truth")
        dt_img = _positions(image_ids, dt["image_id"], "detections")

        # every numeric column of a table in one array (one validation pass)
        gt_cols = ["class_id", "x", "y", "w", "h"] + (["area"] if "area" in gt.columns else [])
        gt_num = _numeric(gt, gt_cols, "ground truth")
        dt_num = _numeric(dt, ["class_id", "score", "x", "y", "w", "h"], "detections")
        gt_cls = gt_num[:, 0].astype(np.int64)
        dt_cls = dt_num[:, 0].astype(np.int64)
        names = {int(k): str(v) for k, v in (class_names or {}).items()}
        if not names and "class_name" in gt.columns:
            pairs = pd.DataFrame({"c": gt_cls, "n": gt["class_name"].astype(str)}).drop_duplicates()
            names = dict(zip(pairs["c"].tolist(), pairs["n"].tolist(), strict=True))
        class_ids, (gt_cat, dt_cat_all) = _categories(
            [gt_cls, dt_cls], np.array(list(names), np.int64))
        K = len(class_ids)

        gt_box = np.ascontiguousarray(gt_num[:, 1:5])
        gt_area = gt_num[:, 5].copy() if "area" in gt.columns else gt_box[:, 2] * gt_box[:, 3]
        gt_crowd = (gt["iscrowd"].fillna(0).to_numpy().astype(np.int64) != 0
                    if "iscrowd" in gt.columns else np.zeros(len(gt), bool))
        dt_box_all = dt_num[:, 2:6]                     # columns (Fortran order)
        dt_score_all = np.ascontiguousarray(dt_num[:, 1])

        # pycocotools' accumulation order: category, -score (stable), image order, input order
        # (lexsort is stable: input order breaks the remaining ties); the rank of a detection in
        # its (image, category) group follows from it, and only the top max_dets[-1] are kept
        # (pycocotools truncates before matching)
        acc = accumulation_order(dt_img, dt_score_all, dt_cat_all, len(image_ids), K)
        rank_acc, keep, d_order, d_start = rank_in_groups(
            dt_img[acc], dt_cat_all[acc], len(image_ids), K, int(params.max_dets[-1]))
        order = acc[keep]
        dt_box = np.ascontiguousarray(dt_box_all[order])
        m = match(dt_box, dt_box[:, 2] * dt_box[:, 3], dt_img[order] * K + dt_cat_all[order],
                  d_order, d_start, gt_box, gt_area, gt_crowd, gt_img * K + gt_cat, params)
        return cls(
            params=params, image_ids=image_ids, images=images, class_ids=class_ids,
            class_names=[str(names.get(int(c), c)) for c in class_ids], gt=gt,
            gt_img=gt_img, gt_cat=gt_cat, gt_box=gt_box, gt_area=gt_area, gt_crowd=gt_crowd,
            gt_ignore=m.gt_ignore, dt_row=order, dt_img=dt_img[order], dt_cat=dt_cat_all[order],
            dt_score=dt_score_all[order], dt_box=dt_box, dt_rank=rank_acc[keep],
            dt_gt=m.dt_gt, tp_bits=m.tp_bits, fp_bits=m.fp_bits)

    # ------------------------------------------------------------------ basics
    @property
    def tp(self) -> np.ndarray:
        """``(A, T, n)``: detection is a true positive at (area range, IoU threshold)."""
        return self.cached("tp", lambda: unpack(self.tp_bits, len(self.params.iou_thresholds)))

    @property
    def fp(self) -> np.ndarray:
        """``(A, T, n)``: detection is a false positive (neither: ignored)."""
        return self.cached("fp", lambda: unpack(self.fp_bits, len(self.params.iou_thresholds)))

    @property
    def n_images(self) -> int:
        return len(self.image_ids)

    @property
    def n_classes(self) -> int:
        return len(self.class_ids)

    def _weights(self, mask: np.ndarray | None, weights: np.ndarray | None):
        """(image weight vector or None, dt selection, gt selection)."""
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            return w, w[self.dt_img] > 0, w[self.gt_img] > 0
        if mask is None:
            return None, np.ones(len(self.dt_img), bool), np.ones(len(self.gt_img), bool)
        return None, mask[self.dt_img], mask[self.gt_img]

    def npig(self, area: int, gsel: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        """Non-ignored ground truth per category (weighted by image weights ``w``)."""
        ok = gsel & ~self.gt_ignore[area]
        ww = None if w is None else w[self.gt_img[ok]]
        return np.bincount(self.gt_cat[ok], weights=ww, minlength=self.n_classes)

    # ------------------------------------------------------------------ COCO accumulation
    def evaluate(self, mask: np.ndarray | None = None, *, weights: np.ndarray | None = None,
                 areas: list[int] | None = None, max_dets: list[int] | None = None,
                 iou_index: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``precision (T, R, K, A, M)`` and ``recall (T, K, A, M)`` for the images in ``mask``
        (or weighted by integer image ``weights``); cells not requested stay NaN."""
        p = self.params
        T = len(p.iou_thresholds) if iou_index is None else len(iou_index)
        R, K, A, M = len(p.rec_thresholds), self.n_classes, len(p.area_ranges), len(p.max_dets)
        precision = np.full((T, R, K, A, M), np.nan)
        recall = np.full((T, K, A, M), np.nan)
        w, dsel, gsel = self._weights(mask, weights)
        rec = np.asarray(p.rec_thresholds)
        tsel = slice(None) if iou_index is None else np.asarray(iou_index)
        area_list = list(range(A) if areas is None else areas)
        npig = np.stack([self.npig(a, gsel, w) for a in area_list])              # (areas, K)
        for mi, md in enumerate(p.max_dets):
            if max_dets is not None and md not in max_dets:
                continue
            idx = np.flatnonzero(dsel & (self.dt_rank < md))
            cat = self.dt_cat[idx]
            dw = None if w is None else w[self.dt_img[idx]]
            # every requested area range in one accumulation: its rows stacked under the
            # IoU thresholds, each row with its own positives
            rows = len(area_list) * T
            tp = self.tp[area_list][:, tsel][:, :, idx].reshape(rows, len(idx))
            fp = self.fp[area_list][:, tsel][:, :, idx].reshape(rows, len(idx))
            pr, rc = accumulate(tp, fp, cat, np.repeat(npig, T, axis=0), rec, dw)
            for i, a in enumerate(area_list):
                precision[:, :, :, a, mi] = pr[i * T:(i + 1) * T]
                recall[:, :, a, mi] = rc[i * T:(i + 1) * T]
        return precision, recall

    def stats(self, mask: np.ndarray | None = None, *,
              weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The twelve COCO stats (NaN for pycocotools' -1) and per-class AP ``(K,)``."""
        p = self.params
        # precision is read at maxDets 100 only; AR1 / AR10 need the recall alone
        precision, recall = self.evaluate(mask, weights=weights, max_dets=[100])
        a_all = p.area_index("all")
        for md in (1, 10):
            recall[:, :, a_all, p.max_det_index(md)] = self._recall(mask, weights, a_all, md)
        stats = coco_stats(precision, recall, p.iou_index(0.5), p.iou_index(0.75),
                           {k: p.area_index(k) for k in ("all", "small", "medium", "large")},
                           {k: p.max_det_index(k) for k in (1, 10, 100)})
        per_class = nanmean(precision[:, :, :, p.area_index("all"), p.max_det_index(100)],
                            axis=(0, 1))
        return stats, per_class

    def slice_stats(self, masks, labels: np.ndarray | None = None,
                    npig: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`stats` of many image subsets at once: ``(S, 12)`` stats and ``(S, K)``
        per-class AP for the image masks ``masks`` (one compiled pass over the detections per
        (area range, category), every IoU threshold and subset counted along; equal to
        ``stats(mask)`` for each mask; ``labels``: :func:`subset_labels` of the masks and
        ``npig``: their :func:`~preflight.metrics.kernels.slice_npig` when the caller has
        them)."""
        return self.start_slice_stats(masks, labels, npig).result()

    def start_slice_stats(self, masks, labels: np.ndarray | None = None,
                          npig: np.ndarray | None = None) -> _PendingStats:
        """:meth:`slice_stats`, started on the kernel's helper threads: ``.result()`` joins in
        with the work left and returns it (the caller may do other work meanwhile)."""
        p = self.params
        masks = [np.asarray(m, dtype=bool) for m in masks]
        S, K = len(masks), self.n_classes
        labels = subset_labels(masks, self.n_images) if labels is None else labels
        if npig is None:
            npig = slice_npig(labels, S, self.gt_img, self.gt_cat, self.gt_ignore, K)
        a_all = p.area_index("all")
        A, T = len(p.area_ranges), len(p.iou_thresholds)
        pending = _PendingStats(p, np.empty((S, A, T, K)), np.empty((S, A, T, K)),
                                np.empty((S, 2, T, K)))
        cat_start, work = self.cached("cell_work", self._cell_work)
        pending.split = run_split(accumulate_cells, A * K, (
            self.tp_bits, self.fp_bits, T, self.dt_img, self.dt_cat, self.dt_rank, cat_start,
            labels, npig, np.asarray(p.rec_thresholds, dtype=np.float64), 100,
            np.array([1, 10], np.int64), a_all, pending.precision, pending.recall,
            pending.recall_m), work, wait=False)
        return pending

    def _cell_work(self) -> tuple[np.ndarray, np.ndarray]:
        """Where each category's detections start (they are in accumulation order, category
        first), and the work of accumulating each (area range, category) cell, in proportion:
        the category's detections, more for an area range with more ground truth (a range's
        detections are mostly those matching it or of its size; "all" has the most)."""
        K = self.n_classes
        cat_start = np.searchsorted(self.dt_cat, np.arange(K + 1)).astype(np.int64)
        area = (~self.gt_ignore).sum(axis=1) + 1.0
        work = (1.0 + area / area.max())[:, None] * (np.diff(cat_start) + 1.0)[None, :]
        return cat_start, work.ravel()

    def _recall(self, mask, weights, area: int, max_det: int) -> np.ndarray:
        """Recall ``(T, K)`` at one (area, maxDets) cell: what :meth:`evaluate` gives there,
        without the precision curves."""
        w, dsel, gsel = self._weights(mask, weights)
        T, K = len(self.params.iou_thresholds), self.n_classes
        idx = np.flatnonzero(dsel & (self.dt_rank < max_det))
        t_i, j = np.nonzero(self.tp[area][:, idx])
        ww = None if w is None else w[self.dt_img[idx[j]]]
        hits = np.bincount(t_i * K + self.dt_cat[idx[j]], weights=ww, minlength=T * K)
        npig = self.npig(area, gsel, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(npig > 0, hits.reshape(T, K) / np.where(npig > 0, npig, 1.0), np.nan)

    def quick_stats(self, weights: np.ndarray) -> np.ndarray:
        """``[AP, AP50, AP75, AR100, AP.<class>...]`` at area all / maxDets 100 (bootstrap)."""
        p = self.params
        a, m = p.area_index("all"), p.max_det_index(100)
        precision, recall = self.evaluate(weights=weights, areas=[a], max_dets=[100])
        pr, rc = precision[..., a, m], recall[..., a, m]
        t50, t75 = p.iou_index(0.5), p.iou_index(0.75)
        return np.concatenate([[nanmean(pr), nanmean(pr[t50]), nanmean(pr[t75]), nanmean(rc)],
                               nanmean(pr, axis=(0, 1))])

    def bootstrap_stats(self, mask: np.ndarray, resamples: np.ndarray, *,
                        compiled: bool = True) -> np.ndarray:
        """:meth:`quick_stats` for many resamples of the images in ``mask`` at once: row ``b``
        equals ``quick_stats(w)`` with ``w`` zero outside ``mask`` and ``resamples[b]`` (integer
        draws per image of the slice, in image order) inside. Returns ``(B, 4 + K)``."""
        p = self.params
        a = p.area_index("all")
        img_pos = np.flatnonzero(mask)
        W = np.asarray(resamples, dtype=np.float64)
        idx = np.flatnonzero(mask[self.dt_img] & (self.dt_rank < 100))
        local = np.full(self.n_images, -1, dtype=np.int64)
        local[img_pos] = np.arange(len(img_pos))
        ok = mask[self.gt_img] & ~self.gt_ignore[a]
        K = self.n_classes
        per_image = np.bincount(local[self.gt_img[ok]] * K + self.gt_cat[ok],
                                minlength=len(img_pos) * K).reshape(len(img_pos), K)
        precision, recall = self.resample_ap(idx, local[self.dt_img[idx]], W, W @ per_image,
                                             compiled=compiled)
        t50, t75 = p.iou_index(0.5), p.iou_index(0.75)
        # NaN marks a class with no ground truth drawn, for every IoU threshold alike, so means
        # over thresholds then classes equal pycocotools' mean over all valid cells
        return np.column_stack([nanmean(precision, axis=(1, 2)),
                                nanmean(precision[:, t50], axis=1),
                                nanmean(precision[:, t75], axis=1),
                                nanmean(recall, axis=(1, 2)),
                                nanmean(precision, axis=1)])

    def resample_ap(self, idx: np.ndarray, img: np.ndarray, weights: np.ndarray,
                    npig: np.ndarray, *, compiled: bool = True
                    ) -> tuple[np.ndarray, np.ndarray]:
        """AP cells (precision averaged over the recall thresholds) and recall ``(B, T, K)``
        at area all of the detections ``idx`` (accumulation order) for ``B`` image
        resamples: ``img``: each detection's column of ``weights (B, m)``, ``npig (B, K)``.
        The compiled kernel, the resamples split over threads; ``compiled=False``: the NumPy
        one (:func:`preflight.metrics.bootstrap.accumulate_resamples`, the same numbers)."""
        p = self.params
        a = p.area_index("all")
        rec = np.asarray(p.rec_thresholds, dtype=np.float64)
        W = np.ascontiguousarray(weights, dtype=np.float64)
        npig = np.ascontiguousarray(npig, dtype=np.float64)
        if not compiled:
            return accumulate_resamples(self.tp[a][:, idx], self._relevant_fp()[:, idx],
                                        self.dt_cat[idx], img, W, npig, rec)
        B, T, K = len(W), len(p.iou_thresholds), self.n_classes
        ap, recall = np.empty((B, T, K)), np.empty((B, T, K))
        run_split(accumulate_resamples_kernel, B, (
            self.tp_bits[idx, a], self.fp_bits[idx, a], T, self.dt_cat[idx],
            np.asarray(img, dtype=np.int64), W, npig, rec, ap, recall))
        return ap, recall

    def cached(self, key, build):
        """``build()`` once per ``key`` for this index, also when threads ask at the same time
        (every lazily computed array of the index goes through here; the lock is re-entrant,
        so a build may ask for another cached value)."""
        with self._lock:
            if key not in self._cache:
                self._cache[key] = build()
            return self._cache[key]

    def image_slices(self, columns) -> list:
        """``make_slices(self.images, columns)``, computed once per column list (every view of
        the failure distribution asks for the same slices)."""
        from preflight.metrics.slices import make_slices

        key = ("slices", tuple(columns or ()))
        return self.cached(key, lambda: make_slices(self.images, list(columns or [])))

    def _relevant_fp(self) -> np.ndarray:
        """False positives (area all, maxDets 100) that can change a precision: those before
        the last true positive of their (IoU threshold, category) run. A later one stays after
        the last true positive of any subset (a slice, a resample), so no AP counts it."""
        def build() -> np.ndarray:
            a = self.params.area_index("all")
            tp, fp = self.tp[a] & (self.dt_rank < 100), self.fp[a] & (self.dt_rank < 100)
            T, n = tp.shape
            t_idx, j_idx = np.nonzero(tp)
            last = np.full((T, self.n_classes), -1, dtype=np.int64)
            np.maximum.at(last, (t_idx, self.dt_cat[j_idx]), j_idx)
            return fp & (np.arange(n)[None, :] < last[:, self.dt_cat])

        return self.cached("relevant_fp", build)

    # ------------------------------------------------------------------ operating point
    def op_status(self, threshold: float, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """Per detection at the operating point (area all, maxDets 100): (true positive, false
        positive) booleans, both False for ignored detections or scores below ``threshold``."""
        def build():
            t, a = self.params.iou_index(iou), self.params.area_index("all")
            above = self.dt_score >= threshold
            bit = np.uint32(1 << t)
            return (self.tp_bits[:, a] & bit).astype(bool) & above, \
                (self.fp_bits[:, a] & bit).astype(bool) & above

        return self.cached(("op", float(threshold), float(iou)), build)

    def gt_detected(self, threshold: float, iou: float = 0.5) -> np.ndarray:
        """Per ground truth: matched (area all) by a detection scoring at least ``threshold``."""
        def build() -> np.ndarray:
            t = self.params.iou_index(iou)
            tp, _ = self.op_status(threshold, iou)
            hit = np.zeros(len(self.gt_img), dtype=bool)
            hit[self.dt_gt[t][tp]] = True
            return hit

        return self.cached(("gtdet", float(threshold), float(iou)), build)

    def op_counts(self, threshold: float, iou: float = 0.5) -> tuple[np.ndarray, ...]:
        """Per-image, per-class counts ``(N, K)`` of TP, FP and positives (non-ignored GT)."""
        def build():
            N, K = self.n_images, self.n_classes
            tp, fp = self.op_status(threshold, iou)
            cells = self.dt_img * K + self.dt_cat
            tpc = np.bincount(cells[tp], minlength=N * K).reshape(N, K)
            fpc = np.bincount(cells[fp], minlength=N * K).reshape(N, K)
            ok = ~self.gt_ignore[self.params.area_index("all")]
            pos = np.bincount((self.gt_img * K + self.gt_cat)[ok], minlength=N * K).reshape(N, K)
            return tpc, fpc, pos

        return self.cached(("counts", float(threshold), float(iou)), build)
