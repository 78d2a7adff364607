"""Sliced (tiled) inference: the grid, shifting boxes back, merging, and the small-object gain."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from preflight.metrics.detection import evaluate_detections
from preflight.models.base import PRED_COLUMNS, ModelError
from preflight.models.tiling import (
    TiledPredictor,
    nms,
    overlap_pixels,
    tile_grid,
    tiling_gain,
)


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(PRED_COLUMNS))
    return df.astype({"class_id": np.int64, "score": np.float64, "x": np.float64,
                      "y": np.float64, "w": np.float64, "h": np.float64})


class BlobDetector:
    """A real (classical) detector with a network's blind spot: it letterboxes its input to
    ``input_size`` px, finds bright blobs on a dark background with connected components and
    drops those smaller than ``min_size`` px *at the model input* (as a stride-8 network cannot
    resolve objects below a few cells); boxes are mapped back to the input frame's pixels."""

    def __init__(self, input_size: int = 96, min_size: int = 3, threshold: int = 128) -> None:
        self.input_size, self.min_size, self.threshold = input_size, min_size, threshold
        self.crop_shapes: list[tuple[int, int]] = []
        self.calls: list[int] = []

    def __call__(self, images: list[np.ndarray]) -> list[pd.DataFrame]:
        self.calls.append(len(images))
        return [self._one(im) for im in images]

    def _one(self, image: np.ndarray) -> pd.DataFrame:
        self.crop_shapes.append(image.shape[:2])
        h, w = image.shape[:2]
        scale = self.input_size / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), size,
                           interpolation=cv2.INTER_AREA)
        mask = (small >= self.threshold).astype(np.uint8)
        _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        stats = stats[1:]                                        # label 0 is the background
        big = (stats[:, 2] >= self.min_size) & (stats[:, 3] >= self.min_size)
        ids = np.flatnonzero(big) + 1
        means = np.array([small[labels == i].mean() for i in ids]) if len(ids) else np.zeros(0)
        s = stats[big].astype(np.float64)
        return _frame([{"class_id": 0, "score": float(m) / 255.0, "x": x / scale, "y": y / scale,
                        "w": bw / scale, "h": bh / scale}
                       for (x, y, bw, bh, _), m in zip(s, means, strict=True)])


def _tiny_squares(n_frames: int = 6, size: int = 384, per_frame: int = 5, seed: int = 0):
    """Dark noisy frames with a few bright 6-10 px squares; returns frames and ground truth."""
    rng = np.random.default_rng(seed)
    frames, gt = [], []
    for f in range(n_frames):
        img = rng.normal(20, 4, size=(size, size, 3)).clip(0, 255).astype(np.uint8)
        placed: list[tuple[int, int, int]] = []
        while len(placed) < per_frame:
            s = int(rng.integers(6, 11))
            x, y = (int(v) for v in rng.integers(4, size - s - 4, size=2))
            if any(abs(x - px) < 30 and abs(y - py) < 30 for px, py, _ in placed):
                continue
            placed.append((x, y, s))
            img[y:y + s, x:x + s] = 240
            gt.append({"image_id": f"img{f}", "class_id": 0, "x": float(x), "y": float(y),
                       "w": float(s), "h": float(s), "area": float(s * s), "iscrowd": 0})
        frames.append(img)
    return frames, pd.DataFrame(gt)


def _with_ids(preds: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([p.assign(image_id=f"img{i}") for i, p in enumerate(preds)],
                     ignore_index=True)


# ---------------------------------------------------------------------- tile_grid
@pytest.mark.parametrize("height,width,tile,overlap", [
    (384, 384, 128, 0.2), (480, 640, 160, 32), (1080, 1920, 640, 0.25), (100, 300, 128, 0.1),
    (129, 129, 128, 0.5), (384, 384, (96, 160), 0.2)])
def test_tile_grid_covers_the_frame_within_bounds(height, width, tile, overlap):
    grid = tile_grid(height, width, tile, overlap)
    assert grid.dtype == np.int64 and grid.shape[1] == 4
    assert (grid[:, 0] >= 0).all() and (grid[:, 1] >= 0).all()
    assert (grid[:, 2] <= width).all() and (grid[:, 3] <= height).all()
    assert grid[:, 0].min() == 0 and grid[:, 1].min() == 0
    assert grid[:, 2].max() == width and grid[:, 3].max() == height   # last tile on the border
    covered = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in grid:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    assert ((grid[:, 3] - grid[:, 1]) == min(th, height)).all()
    assert ((grid[:, 2] - grid[:, 0]) == min(tw, width)).all()


def test_tile_grid_respects_overlap():
    grid = tile_grid(384, 384, 128, 0.2)
    assert len(grid) == 16                                         # 4 x 4, like SAHI's count
    xs = np.unique(grid[:, 0])
    assert xs.tolist() == [0, 85, 171, 256]
    assert (xs[:-1] + 128 - xs[1:] >= overlap_pixels(128, 0.2)).all()
    px = tile_grid(480, 640, 160, 32)
    for axis in (0, 1):
        starts = np.unique(px[:, axis])
        assert (starts[:-1] + 160 - starts[1:] >= 32).all()
    assert overlap_pixels(128, 0.2) == 26 and overlap_pixels(128, 20) == 20
    assert overlap_pixels(128, 1.0) == 1 and overlap_pixels(128, 0) == 0


def test_tile_grid_frame_smaller_than_tile():
    assert tile_grid(50, 70, 128, 0.2).tolist() == [[0, 0, 70, 50]]
    grid = tile_grid(50, 300, 128, 0.2)                             # one row, several columns
    assert (grid[:, 1] == 0).all() and (grid[:, 3] == 50).all() and len(grid) == 3


@pytest.mark.parametrize("kwargs", [dict(tile=0, overlap=0.2), dict(tile=128, overlap=128),
                                    dict(tile=128, overlap=-0.1), dict(tile=(1, 2, 3), overlap=0)])
def test_tile_grid_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        tile_grid(100, 100, **kwargs)
    with pytest.raises(ValueError):
        tile_grid(0, 100, 32, 0.2)


# ---------------------------------------------------------------------- shifting and merging
def test_boxes_are_shifted_back_to_frame_coordinates():
    def fixed(images):                     # one box at crop position (10, 20, 5, 6) per crop
        return [_frame([{"class_id": 1, "score": 0.9, "x": 10, "y": 20, "w": 5, "h": 6}])
                for _ in images]

    tiler = TiledPredictor(fixed, tile=128, overlap=0.2, nms_iou=1.0, drop_cut_boxes=False,
                           max_det=None)
    frame = np.zeros((300, 400, 3), dtype=np.uint8)
    (out,) = tiler([frame])
    grid = tile_grid(300, 400, 128, 0.2)
    expected = {(float(x0 + 10), float(y0 + 20)) for x0, y0, _, _ in grid} | {(10.0, 20.0)}
    got = set(zip(out["x"].tolist(), out["y"].tolist(), strict=True))
    assert got == expected and len(out) == len(grid) + 1           # (10, 20) twice: tile 0 + full
    assert (out["w"] == 5).all() and (out["h"] == 6).all() and list(out.columns) == list(PRED_COLUMNS)
    assert tiler.passes_per_frame(300, 400) == len(grid) + 1


def test_boxes_are_clipped_to_their_crop():
    def overflowing(images):
        return [_frame([{"class_id": 0, "score": 0.5, "x": -5, "y": 100, "w": 20, "h": 60}])
                for _ in images]

    tiler = TiledPredictor(overflowing, tile=128, include_full_frame=False, nms_iou=1.0,
                           drop_cut_boxes=False)
    (out,) = tiler([np.zeros((128, 128, 3), np.uint8)])
    assert out[["x", "y", "w", "h"]].to_numpy().tolist() == [[0.0, 100.0, 15.0, 28.0]]


def test_nms_merges_duplicates_from_overlapping_tiles():
    frame = np.full((256, 256, 3), 10, dtype=np.uint8)
    frame[100:120, 100:120] = 250          # in the overlap of all four tiles, and the full frame
    detector = BlobDetector(input_size=512, min_size=1)            # sees everything, any crop
    tiles = tile_grid(256, 256, 128, 0.5)
    inside = [(x0 <= 100 and 120 <= x1 and y0 <= 100 and 120 <= y1) for x0, y0, x1, y1 in tiles]
    assert sum(inside) >= 3
    raw = TiledPredictor(detector, tile=128, overlap=0.5, nms_iou=1.0, drop_cut_boxes=False)
    assert len(raw([frame])[0]) >= sum(inside) + 1                 # the duplicates exist ...
    merged = TiledPredictor(detector, tile=128, overlap=0.5, nms_iou=0.5)
    (out,) = merged([frame])
    assert len(out) == 1                                            # ... and are merged
    np.testing.assert_allclose(out[["x", "y", "w", "h"]].to_numpy()[0], [100, 100, 20, 20],
                               atol=1.0)


def test_boxes_cut_by_a_tile_edge_are_dropped_when_another_tile_holds_them():
    frame = np.full((128, 224, 3), 10, dtype=np.uint8)
    frame[60:72, 120:150] = 250            # straddles tile 0's right edge (x = 128)
    detector = BlobDetector(input_size=512, min_size=1)
    kw = dict(tile=128, overlap=32, include_full_frame=False, nms_iou=0.5)
    assert tile_grid(128, 224, 128, 32).tolist() == [[0, 0, 128, 128], [96, 0, 224, 128]]
    (kept,) = TiledPredictor(detector, drop_cut_boxes=False, **kw)([frame])
    assert len(kept) == 2                       # the cut part (8 px, IoU 0.27) survives NMS
    assert sorted(kept["w"].round().tolist()) == [8.0, 30.0]
    (dropped,) = TiledPredictor(detector, drop_cut_boxes=True, **kw)([frame])
    assert dropped[["x", "y", "w", "h"]].round().to_numpy().tolist() == [[120, 60, 30, 12]]


def test_nms_is_per_class_unless_class_agnostic():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([0, 0, 1, 0])
    assert nms(boxes, scores, classes, threshold=0.5).tolist() == [0, 2, 3]
    assert nms(boxes, scores, None, threshold=0.5).tolist() == [0, 3]
    inner = np.array([[0, 0, 100, 100], [10, 10, 30, 30]], float)   # a part inside a whole
    assert nms(inner, np.array([0.9, 0.8]), threshold=0.5, metric="iou").tolist() == [0, 1]
    assert nms(inner, np.array([0.9, 0.8]), threshold=0.5, metric="ios").tolist() == [0]
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []


@pytest.mark.parametrize("class_aware", [True, False])
def test_nms_numpy_and_torch_backends_agree(class_aware):
    pytest.importorskip("torchvision")
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 200, size=(600, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 60, size=(600, 2))], axis=1)
    scores = rng.choice(np.linspace(0.1, 0.9, 9), size=600)         # many ties
    classes = rng.integers(0, 3, 600) if class_aware else None
    for thr in (0.3, 0.5, 0.7):
        a = nms(boxes, scores, classes, threshold=thr, backend="numpy")
        b = nms(boxes, scores, classes, threshold=thr, backend="torch")
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="IoU only"):
        nms(boxes, scores, metric="ios", backend="torch")


def test_class_agnostic_merge_in_the_predictor():
    def two_classes(images):
        return [_frame([{"class_id": 0, "score": 0.9, "x": 10, "y": 10, "w": 20, "h": 20},
                        {"class_id": 3, "score": 0.6, "x": 11, "y": 10, "w": 20, "h": 20}])
                for _ in images]

    frame = np.zeros((100, 100, 3), np.uint8)
    (per_class,) = TiledPredictor(two_classes, tile=128)([frame])
    (agnostic,) = TiledPredictor(two_classes, tile=128, class_agnostic=True)([frame])
    assert sorted(per_class["class_id"].tolist()) == [0, 3]
    assert agnostic["class_id"].tolist() == [0]


def test_batches_and_passes_per_frame():
    detector = BlobDetector()
    tiler = TiledPredictor(detector, tile=128, overlap=0.2, batch_size=5)
    frames = [np.zeros((384, 384, 3), np.uint8), np.zeros((100, 90, 3), np.uint8)]
    out = tiler(frames)
    assert len(out) == 2 and all(list(o.columns) == list(PRED_COLUMNS) for o in out)
    assert tiler.passes_per_frame(384, 384) == 17                  # 16 tiles + the full frame
    assert tiler.passes_per_frame(100, 90) == 1                    # the tile is the frame
    assert sum(detector.calls) == 18 and max(detector.calls) <= 5
    assert detector.crop_shapes.count((128, 128)) == 16 and (384, 384) in detector.crop_shapes
    no_full = TiledPredictor(detector, tile=128, overlap=0.2, include_full_frame=False)
    assert no_full.passes_per_frame(384, 384) == 16


def test_bad_predict_fn_output_and_arguments():
    frame = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ModelError, match="2 predictions frames for 1 crops"):
        TiledPredictor(lambda ims: [_frame([]), _frame([])], tile=128)([frame])
    with pytest.raises(ModelError, match="lacks columns"):
        TiledPredictor(lambda ims: [pd.DataFrame({"score": [1.0]})], tile=128)([frame])
    with pytest.raises(ModelError, match="uint8"):
        TiledPredictor(lambda ims: [_frame([])], tile=128)([frame.astype(np.float32)])
    with pytest.raises(ValueError):
        TiledPredictor(lambda ims: [], tile=128, overlap=200)
    with pytest.raises(ValueError):
        TiledPredictor(lambda ims: [], tile=128, match_metric="giou")
    with pytest.raises(ValueError):
        TiledPredictor(lambda ims: [], tile=128, batch_size=0)


# ---------------------------------------------------------------------- the acceptance test
def test_tiling_recovers_small_objects_that_full_frame_inference_misses():
    frames, gt = _tiny_squares()
    detector = BlobDetector(input_size=96, min_size=3)
    full = _with_ids(detector(frames))
    tiler = TiledPredictor(detector, tile=128, overlap=0.2)
    tiled = _with_ids(tiler(frames))
    assert tiler.passes_per_frame(384, 384) == len(tile_grid(384, 384, 128, 0.2)) + 1 == 17

    gain = tiling_gain(gt, full, tiled, operating_threshold=0.25)
    assert gain.n_boxes == len(gt) == 30 and gain.n_images == 6
    assert gain.recall_full < 0.3
    assert gain.recall_tiled > 0.9
    assert gain.ci_tiled[0] > gain.ci_full[1]                       # the intervals separate
    assert gain.recovered == gain.hits_tiled - gain.hits_full + gain.lost
    assert gain.gain > 0.6
    rows = gain.to_frame()
    assert rows["mode"].tolist() == ["full_frame", "tiled"]

    # the same numbers as the evaluator's box-slice recall row
    for preds, recall in ((full, gain.recall_full), (tiled, gain.recall_tiled)):
        table = evaluate_detections(gt, preds, box_slice_columns=["size_bin"],
                                    operating_threshold=0.25)
        row = table[(table["slice_column"] == "size_bin") & (table["slice_value"] == "small")
                    & (table["metric"] == "recall")]
        assert float(row["value"].iloc[0]) == pytest.approx(recall)
    # tiling adds no false positives on this scene (duplicates merged, cut boxes dropped)
    assert len(tiled) <= len(gt)


def test_tiling_gain_rejects_an_absent_slice_value():
    frames, gt = _tiny_squares(n_frames=1)
    preds = _with_ids(BlobDetector()(frames))
    with pytest.raises(ValueError, match="values present"):
        tiling_gain(gt, preds, preds, size_value="large")
