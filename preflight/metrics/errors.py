"""Why detections fail: TIDE-style error decomposition (Bolya et al., ECCV 2020, dbolya/tide).

Every false positive (at IoU ``pos_iou`` = 0.5, area all, maxDets 100, COCO matching) gets one
type, tested in TIDE's order against the non-crowd ground truth of its image:

* ``bkg`` if the image has no ground truth;
* ``loc`` (localisation): highest IoU with a same-class box in ``[bg_iou, pos_iou]``;
* ``cls`` (classification): IoU >= ``pos_iou`` with a box of another class;
* ``dupe`` (duplicate): IoU >= ``pos_iou`` with a same-class box already matched (by a
  higher-scoring detection);
* ``bkg`` (background): highest IoU with any box <= ``bg_iou``;
* ``both`` (classification and localisation): anything else.

A ground-truth box nobody detected and no ``cls``/``loc`` error points at is ``missed``.

Counts are taken at the operating threshold (detections scoring >= it; a box is missed when no
such detection matched it and none of their ``cls``/``loc`` errors points at it). ``dAP50.<type>``
is TIDE's oracle, over all detections: AP50 after fixing only that type minus AP50 (floored at 0):
``cls``/``loc`` errors become true positives (``cls`` relabelled to the box's class) when their box
is unmatched and they are the highest-scoring such error on it, otherwise they are removed;
``both``/``dupe``/``bkg`` are removed; ``missed`` boxes are removed from the positives.

Difference to TIDE, on purpose: the matching is COCO's (per class, maxDets per class, crowd
regions as ignore), so AP50 here is exactly pycocotools' AP50.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from preflight.metrics.accumulate import accumulate, nanmean
from preflight.metrics.coco import candidate_pairs
from preflight.metrics.detection import DEFAULT_MIN_BOXES, DEFAULT_MIN_IMAGES
from preflight.metrics.index import EvaluationIndex
from preflight.metrics.slices import LongTable

ERROR_TYPES: tuple[str, ...] = ("cls", "loc", "both", "dupe", "bkg", "missed")
#: per-detection labels (``classify_detections``)
TP, IGNORED = "tp", "ignored"


def _first_per_dt(d: np.ndarray, g: np.ndarray, iou: np.ndarray, n: int, keep: np.ndarray):
    """Per detection: max IoU over the kept pairs and the gt attaining it (lowest row on ties)."""
    best_iou = np.zeros(n)
    best_gt = np.full(n, -1, dtype=np.int64)
    d, g, iou = d[keep], g[keep], iou[keep]
    if len(d):
        order = np.lexsort((g, -iou, d))
        d, g, iou = d[order], g[order], iou[order]
        first = np.r_[True, d[1:] != d[:-1]]
        best_iou[d[first]] = iou[first]
        best_gt[d[first]] = g[first]
    return best_iou, best_gt


class ErrorAnalysis:
    """Per-detection error types and fix targets, computed once for an index."""

    @classmethod
    def of(cls, index: EvaluationIndex, pos_iou: float = 0.5, bg_iou: float = 0.1
           ) -> ErrorAnalysis:
        """The analysis of ``index`` at these IoUs, built once and kept with the index."""
        return index.cached(("errors", float(pos_iou), float(bg_iou)),
                            lambda: cls(index, pos_iou, bg_iou))

    def __init__(self, index: EvaluationIndex, pos_iou: float = 0.5, bg_iou: float = 0.1):
        self.index, self.pos_iou, self.bg_iou = index, pos_iou, bg_iou
        p = index.params
        a, t = p.area_index("all"), p.iou_index(pos_iou)
        self.tp, self.fp = index.tp[a, t], index.fp[a, t]
        n_dt, n_gt = len(index.dt_img), len(index.gt_img)
        self.gt_ok = ~index.gt_ignore[a]                     # TIDE's gt: crowd regions excluded
        used = np.zeros(n_gt, dtype=bool)
        used[index.dt_gt[t][self.tp]] = True
        f = np.flatnonzero(self.fp)
        g_ok = np.flatnonzero(self.gt_ok)
        pd_, pg, piou = candidate_pairs(index.dt_box[f], index.dt_img[f], index.gt_box[g_ok],
                                        index.gt_img[g_ok], None, bg_iou)
        pd_, pg = f[pd_], g_ok[pg]
        same = index.gt_cat[pg] == index.dt_cat[pd_]
        s_iou, s_gt = _first_per_dt(pd_, pg, piou, n_dt, same)
        o_iou, o_gt = _first_per_dt(pd_, pg, piou, n_dt, ~same)
        u_iou, _ = _first_per_dt(pd_, pg, piou, n_dt, same & used[pg])
        a_iou, _ = _first_per_dt(pd_, pg, piou, n_dt, np.ones(len(pd_), bool))
        has_gt = np.bincount(index.gt_img[self.gt_ok], minlength=index.n_images)[index.dt_img] > 0

        kind = np.full(n_dt, "", dtype=object)
        kind[self.tp] = TP
        kind[~self.tp & ~self.fp] = IGNORED
        target = np.full(n_dt, -1, dtype=np.int64)
        rest = self.fp.copy()
        for name, cond, tgt in (
                ("bkg", ~has_gt, None),
                ("loc", (s_iou >= bg_iou) & (s_iou <= pos_iou), s_gt),
                ("cls", o_iou >= pos_iou, o_gt),
                ("dupe", u_iou >= pos_iou, None),
                ("bkg", a_iou <= bg_iou, None),
                ("both", np.ones(n_dt, bool), None)):
            hit = rest & cond
            kind[hit] = name
            if tgt is not None:
                target[hit] = tgt[hit]
            rest &= ~hit
        self.kind, self.target, self.used = kind, target, used
        self.kind_is = {k: kind == k for k in (*ERROR_TYPES[:-1], TP, IGNORED)}
        self._views: dict = {}
        # TIDE's BestGTMatch: among cls/loc errors on a still unmatched box, the highest score
        # (ties: earliest input row) is the one a fix turns into a true positive
        fixable = (target >= 0) & ~used[np.maximum(target, 0)]
        cand = np.flatnonzero(fixable)
        order = cand[np.lexsort((index.dt_row[cand], -index.dt_score[cand], target[cand]))]
        first = np.r_[True, target[order][1:] != target[order][:-1]] if len(order) else order
        self.best = np.zeros(n_dt, dtype=bool)
        self.best[order[first]] = True
        usable = np.zeros(n_gt, dtype=bool)
        usable[target[fixable]] = True
        self.missed_all = self.gt_ok & ~used & ~usable

    # ------------------------------------------------------------------ counts
    def counts(self, mask: np.ndarray, threshold: float) -> dict[str, int]:
        idx = self.index
        dsel = mask[idx.dt_img] & (idx.dt_score >= threshold)
        out = {k: int((dsel & self.kind_is[k]).sum()) for k in ERROR_TYPES[:-1]}
        targeted = np.zeros(len(idx.gt_img), dtype=bool)
        aim = dsel & (self.target >= 0)
        targeted[self.target[aim]] = True
        gsel = mask[idx.gt_img] & self.gt_ok
        out["missed"] = int((gsel & ~idx.gt_detected(threshold, self.pos_iou) & ~targeted).sum())
        return out

    # ------------------------------------------------------------------ oracle fixes
    def _fixed(self, fix: str | None):
        """All detections after fixing ``fix`` (see the module docstring), in accumulation
        order: ``(tp, fp, category, image)``. A slice's detections are a subsequence of these."""
        if fix not in self._views:
            idx = self.index
            cat, tp, fp = idx.dt_cat, self.tp, self.fp
            keep = np.ones(len(cat), dtype=bool)
            if fix in ("cls", "loc"):
                hit = self.kind_is[fix]
                good = hit & self.best
                tp, fp = tp | good, fp & ~good
                if fix == "cls":
                    cat = cat.copy()
                    cat[good] = idx.gt_cat[self.target[good]]
                keep = ~(hit & ~self.best)
            elif fix in ("both", "dupe", "bkg"):
                keep = ~self.kind_is[fix]
            order = np.flatnonzero(keep)
            if fix == "cls":   # relabelled detections move to their new category's run
                order = order[np.lexsort((idx.dt_row[order], idx.dt_img[order],
                                          -idx.dt_score[order], cat[order]))]
            self._views[fix] = (tp[order], fp[order], cat[order], idx.dt_img[order])
        return self._views[fix]

    def ap50(self, mask: np.ndarray, fix: str | None = None) -> float:
        """AP50 of the images in ``mask`` after fixing ``fix`` (None: as detected)."""
        return self.ap50_all(mask)[fix]

    def ap50_all(self, mask: np.ndarray) -> dict[str | None, float]:
        """``{fix: AP50}`` for no fix (None) and every error type, in one accumulation: the
        fixed views are concatenated with each view's categories offset by ``view * K``."""
        idx = self.index
        fixes = (None, *ERROR_TYPES)
        if "all" not in self._views:
            K = idx.n_classes
            views = [self._fixed(f) for f in fixes]
            self._views["all"] = tuple(np.concatenate(parts) for parts in (
                [v[0] for v in views], [v[1] for v in views],
                [v[2] + i * K for i, v in enumerate(views)], [v[3] for v in views]))
        tp, fp, cat, img = self._views["all"]
        sel = mask[img]
        gsel = mask[idx.gt_img] & self.gt_ok
        npig = np.bincount(idx.gt_cat[gsel], minlength=idx.n_classes)
        missed = np.bincount(idx.gt_cat[gsel & ~self.missed_all], minlength=idx.n_classes)
        pr, _ = accumulate(tp[None, sel], fp[None, sel], cat[sel],
                           np.concatenate([missed if f == "missed" else npig for f in fixes]),
                           np.asarray(idx.params.rec_thresholds))
        per_view = pr[0].reshape(pr.shape[1], len(fixes), idx.n_classes)       # (R, views, K)
        return {f: float(nanmean(per_view[:, i])) for i, f in enumerate(fixes)}

    def frame(self) -> pd.DataFrame:
        """One row per detection (maxDets-truncated, input order): ``image_id, class_id, score,
        x, y, w, h, error`` (``tp``, ``ignored`` or an error type) and ``gt_row`` (the box a
        ``cls``/``loc`` error points at, -1 otherwise)."""
        idx = self.index
        df = pd.DataFrame({
            "dt_row": idx.dt_row, "image_id": idx.image_ids[idx.dt_img].to_numpy(),
            "class_id": idx.class_ids[idx.dt_cat], "score": idx.dt_score,
            "x": idx.dt_box[:, 0], "y": idx.dt_box[:, 1], "w": idx.dt_box[:, 2],
            "h": idx.dt_box[:, 3], "error": self.kind.astype(str), "gt_row": self.target})
        return df.sort_values("dt_row").reset_index(drop=True)


def error_decomposition(index: EvaluationIndex, *, slice_columns: list[str] | None = None,
                        operating_threshold: float = 0.25, pos_iou: float = 0.5,
                        bg_iou: float = 0.1, min_images: int = DEFAULT_MIN_IMAGES,
                        min_boxes: int = DEFAULT_MIN_BOXES) -> pd.DataFrame:
    """Long table per slice: ``AP50``, ``errors.<type>`` (count at the operating threshold),
    ``errors.<type>.per_image`` and ``dAP50.<type>`` for the six TIDE types."""
    ea = ErrorAnalysis.of(index, pos_iou, bg_iou)
    table = LongTable()
    for s in index.image_slices(slice_columns):
        n_img = int(s.mask.sum())
        n_box = int((s.mask[index.gt_img] & ea.gt_ok).sum())
        ap50 = ea.ap50_all(s.mask)
        base = ap50[None]
        table.add(s.column, s.value, "AP50", base, n_images=n_img, n_boxes=n_box)
        counts = ea.counts(s.mask, operating_threshold)
        for kind in ERROR_TYPES:
            table.add(s.column, s.value, f"errors.{kind}", counts[kind], n_images=n_img,
                      n_boxes=n_box)
            table.add(s.column, s.value, f"errors.{kind}.per_image",
                      counts[kind] / n_img if n_img else np.nan, n_images=n_img, n_boxes=n_box)
        for kind in ERROR_TYPES:
            fixed = ap50[kind]
            gain = max(fixed - base, 0.0) if np.isfinite(fixed) and np.isfinite(base) else np.nan
            table.add(s.column, s.value, f"dAP50.{kind}", gain, n_images=n_img, n_boxes=n_box)
    return table.frame(min_images, min_boxes)


def classify_detections(index: EvaluationIndex, *, pos_iou: float = 0.5,
                        bg_iou: float = 0.1) -> pd.DataFrame:
    """Per-detection error labels (see :meth:`ErrorAnalysis.frame`)."""
    return ErrorAnalysis.of(index, pos_iou, bg_iou).frame()
