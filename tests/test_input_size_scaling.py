"""The small-object threshold and tiling follow the candidate's input size, not the frame size:
the same objects in the same frames are small for a 320 px model and not for a 1280 px one, and
tiling is triggered (and sized) accordingly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_tiling import BlobDetector

from preflight.config import TilingSettings
from preflight.decide.classify_failure import share_below
from preflight.metrics.detection import evaluate_detections
from preflight.metrics.slices import box_table
from preflight.models.tiling import TiledPredictor, plan_tiling, tiling_gain

WIDTH, HEIGHT = 960, 540  # frame pixels; the input sizes below are 1/3, 2/3 and 4/3 of the width
SIDE = 20                  # every object's side in frame pixels


def _frames(n_frames: int = 4, per_frame: int = 6, seed: int = 0):
    """Dark noisy frames with bright SIDE-px squares (far apart); frames, images and gt."""
    rng = np.random.default_rng(seed)
    frames, gt = [], []
    for f in range(n_frames):
        img = rng.normal(20, 4, size=(HEIGHT, WIDTH, 3)).clip(0, 255).astype(np.uint8)
        for k in range(per_frame):
            x, y = 60 + 140 * k, int(rng.integers(40, HEIGHT - SIDE - 40))
            img[y:y + SIDE, x:x + SIDE] = 240
            gt.append({"image_id": f"f{f}", "class_id": 0, "x": float(x), "y": float(y),
                       "w": float(SIDE), "h": float(SIDE), "area": float(SIDE**2),
                       "iscrowd": 0})
        frames.append(img)
    images = pd.DataFrame({"image_id": [f"f{f}" for f in range(n_frames)], "width": WIDTH,
                           "height": HEIGHT})
    return frames, images, pd.DataFrame(gt)


def _with_ids(preds: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([p.assign(image_id=f"f{i}") for i, p in enumerate(preds)],
                     ignore_index=True)


def test_the_same_objects_fall_in_different_input_bins_at_320_640_1280():
    images = pd.DataFrame({"image_id": ["a"], "width": [1920], "height": [1080]})
    gt = pd.DataFrame({"image_id": "a", "class_id": 0, "x": 0.0, "y": 0.0,
                       "w": [40.0, 100.0, 300.0], "h": [40.0, 100.0, 300.0]})
    bins = {size: box_table(gt, ["input_px_bin", "input_size_bin", "size_bin"], images, size)
            for size in (320, 640, 1280)}
    # side at input = side x size / 1920: 40 px -> 6.7 / 13.3 / 26.7 px
    assert bins[320]["input_px_bin"].tolist() == ["<8", "16-32", "32-96"]
    assert bins[640]["input_px_bin"].tolist() == ["8-16", "32-96", ">=96"]
    assert bins[1280]["input_px_bin"].tolist() == ["16-32", "32-96", ">=96"]
    assert bins[320]["input_size_bin"].tolist() == ["small", "small", "medium"]
    assert bins[640]["input_size_bin"].tolist() == ["small", "medium", "large"]
    assert bins[1280]["input_size_bin"].tolist() == ["small", "medium", "large"]
    # the frame-pixel bin does not move with the input size
    for size in (640, 1280):
        assert bins[size]["size_bin"].tolist() == bins[320]["size_bin"].tolist()


def test_the_tile_is_half_the_input_size_unless_set():
    assert [TilingSettings().tile_for(s) for s in (320, 640, 1280)] == [160, 320, 640]
    assert TilingSettings(tile=256).tile_for(1280) == 256
    with pytest.raises(ValueError, match="tiling.overlap"):
        TilingSettings(overlap=0.95)


@pytest.mark.parametrize("input_size,side_at_input,triggered,share_below_16", [
    (320, 20 / 3, True, 1.0), (640, 40 / 3, False, 1.0), (1280, 80 / 3, False, 0.0)])
def test_tiling_trigger_and_small_object_share_follow_the_input_size(
        input_size, side_at_input, triggered, share_below_16):
    """A detector that cannot resolve objects under 8 px at its input misses the 20 px squares
    at input 320 (6.7 px) and finds them at 640 and 1280: tiling is evaluated only at 320, on
    the frames its input-size bins call small, and its tile (half the input) recovers them."""
    frames, images, gt = _frames()
    detector = BlobDetector(input_size=input_size, min_size=8)
    full = _with_ids(detector(frames))
    metrics = evaluate_detections(gt, full, images, box_slice_columns=["input_size_bin",
                                                                       "input_px_bin"],
                                  operating_threshold=0.25, model_input_size=input_size,
                                  bootstrap=20, min_images=1, min_boxes=1)
    plan = plan_tiling(metrics, gt, images, model_input_size=input_size, min_slice_recall=0.5)
    assert plan.size_column == "input_size_bin"
    assert plan.evaluate is triggered, plan.reason
    share, n = share_below(metrics, "recall", 16.0)  # decision.small_object_px's measurement
    assert (share, n) == (share_below_16, len(gt))
    if not triggered:
        assert plan.reason == "small-object recall does not fail the bar"
        assert plan.small_image_ids == frozenset()
        return
    assert "input_size_bin=small" in plan.reason
    assert plan.small_image_ids == frozenset(images["image_id"])
    tile = TilingSettings().tile_for(input_size)
    tiled = _with_ids(TiledPredictor(detector, tile=tile, overlap=0.2)(frames))
    gain = tiling_gain(gt, full, tiled, images, size_column=plan.size_column,
                       model_input_size=input_size)
    assert gain.recall_full < 0.1 and gain.recall_tiled > 0.9
    # side at input of one tile: SIDE x input_size / tile = 2 x SIDE (magnified 2x)
    assert SIDE * input_size / tile == pytest.approx(2 * SIDE) and side_at_input < 8


def test_tiling_is_not_planned_when_disabled_or_without_small_objects():
    frames, images, gt = _frames(n_frames=1)
    full = _with_ids(BlobDetector(input_size=320, min_size=8)(frames))
    metrics = evaluate_detections(gt, full, images, box_slice_columns=["input_size_bin"],
                                  model_input_size=320, min_images=1, min_boxes=1)
    off = plan_tiling(metrics, gt, images, model_input_size=320, min_slice_recall=0.5,
                      enabled=False)
    assert (off.evaluate, off.reason) == (False, "tiling disabled in settings")
    big = metrics[metrics["slice_value"] != "small"]
    none = plan_tiling(big, gt, images, model_input_size=320, min_slice_recall=0.5)
    assert (none.evaluate, none.reason) == (False, "no small objects in the evaluation set")
    # without input-size rows, "small" is measured in frame pixels
    frame_px = evaluate_detections(gt, full, images, box_slice_columns=["size_bin"],
                                   min_images=1, min_boxes=1)
    assert plan_tiling(frame_px, gt, images, model_input_size=320,
                       min_slice_recall=0.5).size_column == "size_bin"
