"""Sliced (tiled) inference: a remedy for objects too small for a model's input size.

A detector that letterboxes a 1280 px frame to 320 px sees a 16 px object as 4 px, below what a
stride-8 network resolves. :class:`TiledPredictor` follows SAHI's slicing ("Slicing Aided Hyper
Inference", Akyon et al. 2022): predict on overlapping crops of the frame at native resolution
*plus* the full frame (so large objects are not split), shift the crop boxes back to frame
coordinates and merge everything with per-class NMS. It is implemented here, framework-free, on
top of any ``predict_fn(list_of_rgb_frames) -> list of predictions frames`` (the SAHI package is
not a dependency). Differences from SAHI's defaults: NMS by IoU (SAHI's ``GREEDYNMM`` with IOS
is available as ``match_metric="ios"`` without the box merging), tile origins evenly spread
(same tile count as SAHI, whose last tile is pushed back against the border), and boxes cut by an
interior tile edge are dropped when another tile holds the same region uncut.

The cost is ``passes_per_frame`` forward passes instead of one: measure it with
``preflight.latency`` on the ``TiledPredictor`` itself (it is a ``predict_fn``), and the benefit
with :func:`tiling_gain` (small-object recall at the operating threshold, both ways, with Wilson
intervals and the paired recovered / lost counts).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from preflight.metrics.intervals import wilson_interval
from preflight.models.base import PRED_COLUMNS, ModelError, check_rgb_frame, empty_predictions

PredictFn = Callable[[list[np.ndarray]], Sequence[pd.DataFrame]]
MATCH_METRICS = ("iou", "ios")


# ---------------------------------------------------------------------- the grid
def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    """``(height, width)`` from one int or a pair."""
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    else:
        vals = tuple(value)
        if len(vals) != 2:
            raise ValueError(f"{what} must be an int or a (height, width) pair, got {value!r}")
        pair = (int(vals[0]), int(vals[1]))
    if min(pair) < 1:
        raise ValueError(f"{what} must be >= 1 pixel, got {value!r}")
    return pair


def overlap_pixels(tile: int, overlap: float) -> int:
    """Overlap in pixels: a float in ``[0, 1)`` is a fraction of ``tile`` (rounded), anything
    else (an int, or a float >= 1) is pixels. Must leave a positive stride (``< tile``)."""
    if not np.isfinite(overlap) or overlap < 0:
        raise ValueError(f"overlap must be >= 0 (a fraction in [0, 1) or pixels), got {overlap!r}")
    is_fraction = isinstance(overlap, (float, np.floating)) and overlap < 1.0
    px = int(round(overlap * tile)) if is_fraction else int(round(overlap))
    if px >= tile:
        raise ValueError(f"overlap of {px} px leaves no stride for a tile of {tile} px "
                         "(use a fraction in [0, 1) or fewer pixels than the tile)")
    return px


def _axis_starts(length: int, tile: int, overlap_px: int) -> np.ndarray:
    """Tile origins along one axis: first at 0, last at ``length - tile``, evenly spread, with at
    least ``overlap_px`` between neighbours (a single origin 0 when the tile covers the axis)."""
    if length <= tile:
        return np.zeros(1, dtype=np.int64)
    n = math.ceil((length - tile) / (tile - overlap_px)) + 1
    return np.round(np.linspace(0, length - tile, n)).astype(np.int64)


def tile_grid(height: int, width: int, tile: int | Sequence[int],
              overlap: float = 0.2) -> np.ndarray:
    """Overlapping tiles covering a ``height x width`` frame: ``(k, 4)`` int64 ``x0, y0, x1, y1``
    (row-major). The last row / column is aligned with the border and no tile leaves the frame;
    along an axis shorter than the tile, the tile is the whole axis. ``tile`` is pixels (int or
    ``(h, w)``), ``overlap`` a fraction of the tile in ``[0, 1)`` or pixels (see
    :func:`overlap_pixels`)."""
    height, width = int(height), int(width)
    if height < 1 or width < 1:
        raise ValueError(f"frame must be at least 1x1 pixel, got {height}x{width}")
    tile_h, tile_w = _pair(tile, "tile")
    ys = _axis_starts(height, tile_h, overlap_pixels(tile_h, overlap))
    xs = _axis_starts(width, tile_w, overlap_pixels(tile_w, overlap))
    y0, x0 = (a.ravel() for a in np.meshgrid(ys, xs, indexing="ij"))
    return np.stack([x0, y0, np.minimum(x0 + tile_w, width), np.minimum(y0 + tile_h, height)],
                    axis=1).astype(np.int64)


# ---------------------------------------------------------------------- merging
def pairwise_overlap(box: np.ndarray, others: np.ndarray, metric: str = "iou") -> np.ndarray:
    """Overlap of one ``x0, y0, x1, y1`` box with each of ``others (n, 4)``: IoU, or IOS
    (intersection over the smaller area, SAHI's metric: a partial box inside a whole one is 1)."""
    a = (box[2] - box[0]) * (box[3] - box[1])
    b = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return _overlap(box, a, others, b, metric)


def _overlap(box, area, others, areas, metric: str) -> np.ndarray:
    iw = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    ih = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    denom = area + areas - inter if metric == "iou" else np.minimum(area, areas)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, inter / denom, 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray | None = None, *,
        threshold: float = 0.5, metric: str = "iou", backend: str = "auto") -> np.ndarray:
    """Greedy NMS over ``x0, y0, x1, y1`` boxes; indices kept, by descending score (ties: input
    order). Per class unless ``class_ids`` is None: boxes are offset by class (torchvision's
    ``batched_nms`` trick) so one pass serves every class. A box is suppressed when its overlap
    with a kept one exceeds ``threshold`` (``threshold >= 1`` with IoU: nothing is suppressed).

    ``backend``: ``"numpy"`` (one vectorised step per kept box), ``"torch"``
    (``torchvision.ops.nms``, IoU only, ~100x faster on thousands of boxes) or ``"auto"``: torch
    for IoU when torch is already loaded (a torch model is running), else NumPy. Both give the
    same indices (ties are broken by input order before either runs)."""
    if metric not in MATCH_METRICS:
        raise ValueError(f"match metric must be one of {MATCH_METRICS}, got {metric!r}")
    if backend not in ("auto", "numpy", "torch"):
        raise ValueError(f"backend must be 'auto', 'numpy' or 'torch', got {backend!r}")
    if backend == "torch" and metric != "iou":
        raise ValueError("the torch NMS backend supports IoU only; use backend='numpy' for IOS")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if class_ids is not None:
        _, cls = np.unique(np.asarray(class_ids), return_inverse=True)
        span = float(boxes.max() - boxes.min()) + 1.0
        boxes = boxes + (cls.astype(np.float64) * span)[:, None]
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    use_torch = backend == "torch" or (backend == "auto" and metric == "iou"
                                       and "torch" in sys.modules and _has_torchvision())
    if use_torch:
        import torch
        from torchvision.ops import nms as tv_nms

        # rank scores (n, n-1, ...) make torch's unstable sort agree with the stable order
        rank = torch.arange(n, 0, -1, dtype=torch.float64)
        kept = tv_nms(torch.from_numpy(np.ascontiguousarray(boxes[order])), rank, threshold)
        return order[kept.numpy()].astype(np.int64)
    sorted_boxes = boxes[order]
    areas = (sorted_boxes[:, 2] - sorted_boxes[:, 0]) * (sorted_boxes[:, 3] - sorted_boxes[:, 1])
    alive = np.arange(n)
    keep: list[int] = []
    # one iteration per *kept* box, each vectorised over the remaining candidates
    while alive.size:
        i, rest = alive[0], alive[1:]
        keep.append(int(i))
        ov = _overlap(sorted_boxes[i], areas[i], sorted_boxes[rest], areas[rest], metric)
        alive = rest[ov <= threshold]
    return order[np.asarray(keep, dtype=np.int64)]


def _has_torchvision() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchvision") is not None


def _cut_by_own_tile(boxes: np.ndarray, own: np.ndarray, tiles: np.ndarray, height: int,
                     width: int, margin: float) -> np.ndarray:
    """True for a tile box that touches an interior edge of its own tile (the object probably
    continues past it) while another tile contains the box away from all its interior edges."""
    drop = np.zeros(len(boxes), dtype=bool)
    from_tile = own >= 0
    if not from_tile.any() or len(tiles) < 2:
        return drop
    b = boxes[:, None, :]                                     # (n, 1, 4) vs tiles (1, k, 4)
    t = tiles[None, :, :].astype(np.float64)
    interior = np.stack([tiles[:, 0] > 0, tiles[:, 1] > 0, tiles[:, 2] < width,
                         tiles[:, 3] < height], axis=1)[None]  # (1, k, 4)
    touch = np.stack([b[..., 0] <= t[..., 0] + margin, b[..., 1] <= t[..., 1] + margin,
                      b[..., 2] >= t[..., 2] - margin, b[..., 3] >= t[..., 3] - margin], axis=2)
    cut = (touch & interior).any(axis=2)                     # (n, k)
    inside = ((b[..., 0] >= t[..., 0]) & (b[..., 1] >= t[..., 1])
              & (b[..., 2] <= t[..., 2]) & (b[..., 3] <= t[..., 3]))
    clean = inside & ~cut
    rows = np.flatnonzero(from_tile)
    clean[rows, own[rows]] = False                           # another tile, not its own
    drop[rows] = cut[rows, own[rows]] & clean[rows].any(axis=1)
    return drop


def _as_xyxy(frame: pd.DataFrame, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    missing = [c for c in PRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ModelError(f"predict_fn output {index} lacks columns {missing} "
                         f"(has {list(frame.columns)}); expected {list(PRED_COLUMNS)}")
    xywh = frame[["x", "y", "w", "h"]].to_numpy(dtype=np.float64)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    return (xyxy, frame["score"].to_numpy(dtype=np.float64),
            frame["class_id"].to_numpy(dtype=np.int64))


# ---------------------------------------------------------------------- the predictor
def _crop(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = (int(v) for v in box)
    return np.ascontiguousarray(frame[y0:y1, x0:x1])


class TiledPredictor:
    """``predict_fn`` wrapped in SAHI-style sliced inference; itself a ``predict_fn``.

    ``tile``/``overlap`` as in :func:`tile_grid`. ``include_full_frame`` adds the whole frame as
    one more crop (skipped when a single tile already is the whole frame). Crops of all frames
    go to ``predict_fn`` in lists of at most ``batch_size``. Boxes are shifted back to frame
    coordinates and clipped to their crop; with ``drop_cut_boxes`` a tile box touching an
    interior tile edge (within ``edge_margin`` px) is dropped when another tile contains it
    uncut; the rest is merged by NMS (``nms_iou`` threshold, ``match_metric`` ``"iou"`` or
    ``"ios"``, per class unless ``class_agnostic``; ``nms_backend`` as in :func:`nms`) and the
    ``max_det`` best kept per frame.
    """

    def __init__(self, predict_fn: PredictFn, *, tile: int | Sequence[int],
                 overlap: float = 0.2, include_full_frame: bool = True, nms_iou: float = 0.5,
                 class_agnostic: bool = False, batch_size: int = 8, match_metric: str = "iou",
                 drop_cut_boxes: bool = True, edge_margin: float = 2.0,
                 max_det: int | None = 100, nms_backend: str = "auto") -> None:
        if not callable(predict_fn):
            raise TypeError(f"predict_fn must be callable, got {type(predict_fn).__name__}")
        if match_metric not in MATCH_METRICS:
            raise ValueError(f"match_metric must be one of {MATCH_METRICS}, got {match_metric!r}")
        if not 0.0 <= nms_iou <= 1.0:
            raise ValueError(f"nms_iou must lie in [0, 1], got {nms_iou}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_det is not None and int(max_det) < 1:
            raise ValueError(f"max_det must be >= 1 or None, got {max_det}")
        self.predict_fn = predict_fn
        self.tile = _pair(tile, "tile")
        overlap_pixels(self.tile[0], overlap)                  # validate now, not per frame
        overlap_pixels(self.tile[1], overlap)
        self.overlap = overlap
        self.include_full_frame = bool(include_full_frame)
        self.nms_iou = float(nms_iou)
        self.class_agnostic = bool(class_agnostic)
        self.batch_size = int(batch_size)
        self.match_metric = match_metric
        self.drop_cut_boxes = bool(drop_cut_boxes)
        self.edge_margin = float(edge_margin)
        self.max_det = None if max_det is None else int(max_det)
        if nms_backend not in ("auto", "numpy", "torch"):
            raise ValueError(f"nms_backend must be 'auto', 'numpy' or 'torch', got {nms_backend!r}")
        self.nms_backend = nms_backend

    def crops(self, height: int, width: int) -> np.ndarray:
        """The crops of a ``height x width`` frame, ``(k, 4) x0, y0, x1, y1``: the tiles, then the
        full frame when it is included and not already a tile."""
        tiles = tile_grid(height, width, self.tile, self.overlap)
        whole = np.array([[0, 0, width, height]], dtype=np.int64)
        if self.include_full_frame and not (len(tiles) == 1 and (tiles == whole).all()):
            return np.concatenate([tiles, whole])
        return tiles

    def passes_per_frame(self, height: int, width: int) -> int:
        """Forward passes (crops) one ``height x width`` frame costs: tiles + 1 for the full frame
        (1 for a frame no larger than a tile)."""
        return len(self.crops(height, width))

    def __call__(self, images: list[np.ndarray]) -> list[pd.DataFrame]:
        """RGB uint8 frames -> one predictions frame (``class_id, score, x, y, w, h`` in the
        frame's pixels) per frame."""
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        frames = [check_rgb_frame(im, i) for i, im in enumerate(images)]
        plans = [self.crops(f.shape[0], f.shape[1]) for f in frames]
        jobs = [(i, j) for i, p in enumerate(plans) for j in range(len(p))]
        outputs: list[pd.DataFrame] = []
        for start in range(0, len(jobs), self.batch_size):
            batch = jobs[start:start + self.batch_size]
            crops = [_crop(frames[i], plans[i][j]) for i, j in batch]
            result = list(self.predict_fn(crops))
            if len(result) != len(crops):
                raise ModelError(f"predict_fn returned {len(result)} predictions frames for "
                                 f"{len(crops)} crops (one per crop expected)")
            outputs.extend(result)
        out, pos = [], 0
        for frame, plan in zip(frames, plans, strict=True):
            out.append(self._merge(outputs[pos:pos + len(plan)], plan, *frame.shape[:2]))
            pos += len(plan)
        return out

    predict = __call__

    def _merge(self, preds: list[pd.DataFrame], plan: np.ndarray, height: int,
               width: int) -> pd.DataFrame:
        parts = [_as_xyxy(p, k) for k, p in enumerate(preds)]
        counts = np.array([len(p[0]) for p in parts], dtype=np.int64)
        if counts.sum() == 0:
            return empty_predictions()
        crop_of = np.repeat(np.arange(len(plan)), counts)
        origin = plan[crop_of, :2].astype(np.float64)
        boxes = np.concatenate([p[0] for p in parts]) + np.tile(origin, 2)
        scores = np.concatenate([p[1] for p in parts])
        classes = np.concatenate([p[2] for p in parts])
        crop = plan[crop_of].astype(np.float64)              # clip to the crop it came from
        boxes = np.clip(boxes, np.tile(crop[:, :2], 2), np.tile(crop[:, 2:], 2))
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & np.isfinite(scores)
        whole = (plan[:, 0] == 0) & (plan[:, 1] == 0) & (plan[:, 2] == width) \
            & (plan[:, 3] == height)
        is_tile = ~whole if len(plan) > 1 else np.ones(len(plan), bool)
        tile_ids = np.flatnonzero(is_tile)
        own = np.full(len(boxes), -1, dtype=np.int64)          # index into tile_ids, -1: full
        from_tile = is_tile[crop_of]
        own[from_tile] = np.searchsorted(tile_ids, crop_of[from_tile])
        if self.drop_cut_boxes:
            ok &= ~_cut_by_own_tile(boxes, own, plan[tile_ids], height, width, self.edge_margin)
        boxes, scores, classes = boxes[ok], scores[ok], classes[ok]
        keep = nms(boxes, scores, None if self.class_agnostic else classes,
                   threshold=self.nms_iou, metric=self.match_metric, backend=self.nms_backend)
        if self.max_det is not None:
            keep = keep[:self.max_det]
        b = boxes[keep]
        return pd.DataFrame({
            "class_id": classes[keep].astype(np.int64), "score": scores[keep],
            "x": b[:, 0], "y": b[:, 1], "w": b[:, 2] - b[:, 0], "h": b[:, 3] - b[:, 1]})


# ---------------------------------------------------------------------- what it buys
@dataclass(frozen=True)
class TilingGain:
    """Recall of one box slice (e.g. ``size_bin == small``) at the operating threshold, full
    frame vs tiled, on the same ground truth. ``recovered``: boxes found only when tiled;
    ``lost``: found only on the full frame (the paired counts behind the difference)."""

    size_column: str
    size_value: str
    operating_threshold: float
    n_boxes: int
    n_images: int
    hits_full: int
    hits_tiled: int
    recall_full: float
    recall_tiled: float
    ci_full: tuple[float, float]
    ci_tiled: tuple[float, float]
    recovered: int
    lost: int

    @property
    def gain(self) -> float:
        """Recall points gained by tiling (tiled - full frame)."""
        return self.recall_tiled - self.recall_full

    def to_frame(self) -> pd.DataFrame:
        """Two rows (``mode`` full_frame / tiled): recall, Wilson interval, hits, boxes."""
        return pd.DataFrame({
            "mode": ["full_frame", "tiled"], "slice_column": self.size_column,
            "slice_value": self.size_value, "metric": "recall",
            "value": [self.recall_full, self.recall_tiled],
            "ci_low": [self.ci_full[0], self.ci_tiled[0]],
            "ci_high": [self.ci_full[1], self.ci_tiled[1]],
            "hits": [self.hits_full, self.hits_tiled], "n_boxes": self.n_boxes,
            "n_images": self.n_images})


def tiling_gain(gt: pd.DataFrame, full_frame: pd.DataFrame, tiled: pd.DataFrame,
                images: pd.DataFrame | None = None, *, size_column: str = "size_bin",
                size_value: str = "small", operating_threshold: float = 0.25, iou: float = 0.5,
                class_names: dict[int, str] | None = None,
                model_input_size: int | None = None) -> TilingGain:
    """Recall of the ground-truth boxes with ``size_column == size_value`` (derived as in
    ``evaluate_detections``' box slices: ``size_bin`` from the area, ``input_size_bin`` with
    ``model_input_size``) at ``operating_threshold`` and IoU ``iou``, for full-frame and tiled
    predictions (``image_id, class_id, score, x, y, w, h``). Same numbers as the ``recall`` row
    of :func:`preflight.metrics.detection.evaluate_detections` for that box slice."""
    from preflight.metrics.index import EvaluationIndex
    from preflight.metrics.slices import box_table, make_slices

    if images is None:
        ids = pd.concat([gt["image_id"], full_frame["image_id"], tiled["image_id"]])
        images = pd.DataFrame({"image_id": pd.unique(ids.to_numpy())})
    idx_full = EvaluationIndex.build(gt, full_frame, images, class_names=class_names)
    idx_tiled = EvaluationIndex.build(gt, tiled, images, class_names=class_names)
    boxes = box_table(idx_full.gt, [size_column], idx_full.images, model_input_size)
    slices = {s.value: s.mask for s in make_slices(boxes, [size_column], include_overall=False,
                                                   what="ground-truth")}
    if str(size_value) not in slices:
        raise ValueError(f"no ground-truth box has {size_column} == {size_value!r} "
                         f"(values present: {sorted(slices)})")
    # ground-truth arrays keep gt's row order in both indexes, so the masks line up
    ok = slices[str(size_value)] & ~idx_full.gt_ignore[idx_full.params.area_index("all")]
    hit_full = idx_full.gt_detected(operating_threshold, iou) & ok
    hit_tiled = idx_tiled.gt_detected(operating_threshold, iou) & ok
    n, k_full, k_tiled = int(ok.sum()), int(hit_full.sum()), int(hit_tiled.sum())
    lo_f, hi_f = wilson_interval(k_full, n)
    lo_t, hi_t = wilson_interval(k_tiled, n)
    return TilingGain(
        size_column=size_column, size_value=str(size_value),
        operating_threshold=float(operating_threshold), n_boxes=n,
        n_images=len(np.unique(idx_full.gt_img[ok])), hits_full=k_full, hits_tiled=k_tiled,
        recall_full=k_full / n if n else float("nan"),
        recall_tiled=k_tiled / n if n else float("nan"),
        ci_full=(float(lo_f), float(hi_f)), ci_tiled=(float(lo_t), float(hi_t)),
        recovered=int((hit_tiled & ~hit_full).sum()), lost=int((hit_full & ~hit_tiled).sum()))


@dataclass(frozen=True)
class TilingPlan:
    """Whether sliced inference is evaluated for a candidate, and on which frames.

    ``size_column``: the box slice that says "small" -- ``input_size_bin`` (object area at the
    candidate's input, so the threshold scales with the input size) when the metrics have it,
    else ``size_bin`` (frame pixels); ``small_image_ids``: the frames holding at least one
    small object by that slice (tiling is judged on their recall)."""

    evaluate: bool
    reason: str
    size_column: str
    small_image_ids: frozenset


def plan_tiling(metrics: pd.DataFrame, gt: pd.DataFrame, images: pd.DataFrame, *,
                model_input_size: int, min_slice_recall: float,
                enabled: bool = True) -> TilingPlan:
    """Tiling is evaluated when small-object recall fails the slice bar: the upper end of the
    ``small`` row's interval (its value when no interval was computed) is below
    ``min_slice_recall``. The small frames use the same binning as the metrics' box slice
    (:func:`preflight.metrics.slices.box_table`)."""
    from preflight.metrics.slices import box_table

    size_column = ("input_size_bin" if (metrics["slice_column"] == "input_size_bin").any()
                   else "size_bin")
    small = metrics[(metrics["slice_column"] == size_column)
                    & (metrics["slice_value"] == "small") & (metrics["metric"] == "recall")]
    bound = float("nan")
    if len(small):
        row = small.iloc[0]
        bound = float(row["ci_high"]) if np.isfinite(row["ci_high"]) else float(row["value"])
    fails = bool(np.isfinite(bound) and bound < min_slice_recall)
    reason = ("tiling disabled in settings" if not enabled else
              "no small objects in the evaluation set" if not len(small) else
              f"small-object recall fails the bar ({size_column}=small: {bound:.2f} < "
              f"{min_slice_recall:.2f})" if fails else
              "small-object recall does not fail the bar")
    ids: frozenset = frozenset()
    if enabled and fails and len(gt):
        bins = box_table(gt, [size_column], images, model_input_size)[size_column]
        ids = frozenset(gt.loc[(bins == "small").to_numpy(), "image_id"])
    return TilingPlan(evaluate=bool(enabled and fails), reason=reason, size_column=size_column,
                      small_image_ids=ids)


__all__ = ["TiledPredictor", "TilingGain", "TilingPlan", "nms", "overlap_pixels",
           "pairwise_overlap", "plan_tiling", "tile_grid", "tiling_gain"]
