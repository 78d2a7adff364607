"""Stress suite: boxes stay right through every corruption, determinism, severity, occlusion, rPC."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from preflight.stress import (
    FAMILIES,
    GEOMETRIC,
    SEVERITY_PARAMS,
    Corruption,
    apply,
    default_suite,
    iter_stressed,
    predictions_frame,
    stress_evaluate,
    summarize_rpc,
)

H, W = 120, 160
RECTS = np.array([[10, 12, 50, 36], [90, 20, 48, 60], [30, 80, 24, 26]], dtype=np.float64)
COLOURS = [(230, 60, 60), (60, 220, 60), (240, 240, 90)]
CLASSES = np.array([0, 1, 3])


def scene(rects=RECTS, colours=COLOURS, height=H, width=W) -> np.ndarray:
    img = np.zeros((height, width, 3), dtype=np.uint8)
    for (x, y, w, h), c in zip(rects.astype(int), colours, strict=True):
        img[y : y + h, x : x + w] = c
    return img


def textured(height=96, width=128, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 216, size=(height // 8, width // 8, 3)).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


ALL = default_suite((1, 2, 3))


def test_suite_covers_families_and_validates_names():
    assert set(FAMILIES) == {"distribution_shift", "occlusion", "adversarial", "resolution"}
    assert {c.family for c in ALL} == set(FAMILIES)
    assert len({c.key for c in ALL}) == len(ALL) == 3 * sum(len(v) for v in SEVERITY_PARAMS.values())
    assert len(default_suite((1, 2, 3, 4, 5), families=["resolution"])) == 10
    with pytest.raises(ValueError, match="unknown corruption"):
        Corruption("adversarial", "snow", 1)
    with pytest.raises(ValueError, match="severity"):
        Corruption("adversarial", "fog", 6)


@pytest.mark.parametrize("corruption", ALL, ids=lambda c: c.key)
def test_boxes_stay_inside_and_on_the_objects(corruption):
    out = apply(corruption, scene(), RECTS, CLASSES, seed=3)
    nh, nw = out.image.shape[:2]
    b = out.boxes_xywh
    assert out.image.dtype == np.uint8 and out.image.shape[2] == 3
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
    assert (b[:, 0] + b[:, 2] <= nw + 1e-9).all() and (b[:, 1] + b[:, 3] <= nh + 1e-9).all()
    np.testing.assert_array_equal(out.class_ids, CLASSES)
    np.testing.assert_array_equal(out.box_index, [0, 1, 2])
    if corruption.name in GEOMETRIC:
        expected = RECTS * np.array([nw / W, nh / H, nw / W, nh / H])
        assert (nh, nw) != (H, W)
        np.testing.assert_allclose(b, expected, atol=1e-4)
    else:
        assert (nh, nw) == (H, W)
        np.testing.assert_allclose(b, RECTS, atol=1e-4)
    # the box still sits on its object: brighter inside than in a background ring around it
    grey = out.image.astype(np.float64).mean(axis=2)
    for x, y, w, h in b:
        x0, y0, x1, y1 = int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h))
        inside = grey[y0:y1, x0:x1].mean()
        m = max(1, int(round(3 * nw / W)))
        ring = np.zeros(grey.shape, bool)
        ring[max(0, y0 - 2 * m) : y1 + 2 * m, max(0, x0 - 2 * m) : x1 + 2 * m] = True
        ring[max(0, y0 - m) : y1 + m, max(0, x0 - m) : x1 + m] = False
        assert inside > grey[ring].mean() + 10, (corruption.key, inside, grey[ring].mean())


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_resize_scales_boxes_with_the_pixels(severity):
    c = Corruption("resolution", "resize", severity)
    out = apply(c, scene(), RECTS, CLASSES, seed=0)
    nh, nw = out.image.shape[:2]
    assert nh == round(H * c.param) and nw == round(W * c.param)
    for (x, y, w, h), colour in zip(out.boxes_xywh, COLOURS, strict=True):
        # pixels close to the object's colour after resizing: their extent is the scaled box
        near = np.abs(out.image.astype(int) - np.array(colour)).sum(axis=2) < 120
        ys, xs = np.nonzero(near)
        assert abs(xs.min() - x) <= 1 and abs(xs.max() + 1 - (x + w)) <= 1
        assert abs(ys.min() - y) <= 1 and abs(ys.max() + 1 - (y + h)) <= 1


def test_boxes_outside_the_frame_are_clipped_or_dropped():
    boxes = np.array([[-10, -5, 30, 20], [150, 100, 40, 40], [200, 10, 5, 5]], dtype=float)
    out = apply(Corruption("resolution", "resize", 2), scene(), boxes, np.array([1, 2, 4]), seed=0)
    np.testing.assert_array_equal(out.box_index, [0, 1])
    np.testing.assert_array_equal(out.class_ids, [1, 2])
    np.testing.assert_allclose(out.boxes_xywh, np.array([[0, 0, 20, 15], [150, 100, 10, 20]]) * 0.5,
                               atol=1e-4)


@pytest.mark.parametrize("corruption", default_suite((2,)), ids=lambda c: c.key)
def test_same_seed_same_output(corruption):
    a = apply(corruption, scene(), RECTS, CLASSES, seed=11)
    apply(corruption, textured(), RECTS, CLASSES, seed=99)  # interleaved use of the cached pipeline
    b = apply(corruption, scene(), RECTS, CLASSES, seed=11)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes_xywh, b.boxes_xywh)
    np.testing.assert_array_equal(a.occluded, b.occluded)


@pytest.mark.parametrize("name", ["sensor_noise", "iso_noise", "rain", "fog", "dirty_lens", "flicker"])
def test_different_seed_different_draw(name):
    c = next(c for c in default_suite((2,)) if c.name == name)
    a = apply(c, textured(), RECTS, CLASSES, seed=1)
    b = apply(c, textured(), RECTS, CLASSES, seed=2)
    assert not np.array_equal(a.image, b.image)


def test_per_image_seeds_do_not_depend_on_order():
    items = [(f"img{i}", textured(seed=i), RECTS, CLASSES) for i in range(4)]
    c = Corruption("occlusion", "cutout_half", 2)
    forward = {k: s for k, s in iter_stressed(c, items, seed=5)}
    backward = {k: s for k, s in iter_stressed(c, items[::-1], seed=5)}
    for k in forward:
        np.testing.assert_array_equal(forward[k].image, backward[k].image)
        np.testing.assert_array_equal(forward[k].occluded, backward[k].occluded)


def _effect(name: str, family: str, metric) -> list[float]:
    img = textured()
    return [metric(img, apply(Corruption(family, name, s), img, RECTS, CLASSES, seed=4).image)
            for s in (1, 2, 3, 4, 5)]


def _deviation(a, b):
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


def _sharpness(_, b):
    return -float(cv2.Laplacian(cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


@pytest.mark.parametrize(
    ("family", "name", "metric"),
    [
        ("distribution_shift", "sensor_noise", _deviation),
        ("distribution_shift", "colour_cast", _deviation),
        ("distribution_shift", "gamma", _deviation),
        ("distribution_shift", "jpeg", _deviation),
        ("adversarial", "flicker", _deviation),
        ("adversarial", "fog", _deviation),
        ("adversarial", "defocus", _sharpness),
        ("resolution", "downscale", _deviation),
    ],
)
def test_severity_is_monotone_in_effect(family, name, metric):
    effect = _effect(name, family, metric)
    assert all(a < b for a, b in zip(effect, effect[1:], strict=False)), effect


def test_occlusion_covers_the_requested_fraction():
    rects = np.array([[5, 5, 20, 20], [40, 8, 37, 53], [90, 10, 60, 30], [10, 70, 75, 41],
                      [100, 60, 50, 50]], dtype=float)
    colours = [(200, 200, 200)] * len(rects)
    img = scene(rects, colours)
    for sev in (1, 2, 3, 4, 5):
        target = SEVERITY_PARAMS["occlusion"]["cutout_all"][sev - 1]
        out = apply(Corruption("occlusion", "cutout_all", sev), img, rects, np.zeros(5), seed=sev)
        np.testing.assert_allclose(out.occluded, target, atol=0.03)
        changed = np.any(out.image != img, axis=2)
        for (x, y, w, h), frac in zip(rects.astype(int), out.occluded, strict=True):
            # the reported fraction is what the pixels show (occluder colour is random)
            assert changed[y : y + h, x : x + w].mean() == pytest.approx(frac, abs=0.02)
        np.testing.assert_allclose(out.boxes_xywh, rects)  # boxes are kept, object partly hidden
    half = apply(Corruption("occlusion", "cutout_half", 2), img, rects, np.zeros(5), seed=0)
    assert (half.occluded > 0).sum() == round(0.5 * len(rects))
    np.testing.assert_allclose(half.occluded[half.occluded > 0], 0.5, atol=0.03)
    photometric = apply(Corruption("adversarial", "fog", 3), img, rects, np.zeros(5), seed=0)
    assert (photometric.occluded == 0).all()


# -- rPC end to end with a real (if simple) detector and an IoU recall --------------------------

def blob_detector(frames: list[np.ndarray], min_area: int = 30) -> list[np.ndarray]:
    """Connected components of bright pixels (Otsu on the max channel) -> (N, 6) predictions."""
    out = []
    for img in frames:
        grey = cv2.medianBlur(np.ascontiguousarray(img.max(axis=2)), 3)
        _, binary = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        n, _, stats, _ = cv2.connectedComponentsWithStats(binary)
        rows = [[0, 0.9, x, y, w, h] for x, y, w, h, area in stats[1:n] if area >= min_area]
        out.append(np.array(rows, dtype=float).reshape(-1, 6))
    return out


def iou_recall(gt: pd.DataFrame, dt: pd.DataFrame, images: pd.DataFrame) -> dict[str, float]:
    hits = 0
    for image_id, g in gt.groupby("image_id"):
        d = dt[dt["image_id"] == image_id][["x", "y", "w", "h"]].to_numpy()
        used = np.zeros(len(d), bool)
        for x, y, w, h in g[["x", "y", "w", "h"]].to_numpy():
            ix = np.clip(np.minimum(x + w, d[:, 0] + d[:, 2]) - np.maximum(x, d[:, 0]), 0, None)
            iy = np.clip(np.minimum(y + h, d[:, 1] + d[:, 3]) - np.maximum(y, d[:, 1]), 0, None)
            iou = ix * iy / (w * h + d[:, 2] * d[:, 3] - ix * iy)
            iou[used] = 0
            if len(iou) and iou.max() >= 0.5:
                used[iou.argmax()] = True
                hits += 1
    return {"recall": hits / len(gt), "mean_occluded": float(gt["occluded"].mean())}


def test_rpc_with_an_exact_detector():
    # three objects per image; the 12x12 one falls under the detector's 30 px^2 floor at 0.35x
    rects = np.array([[10, 12, 50, 36], [90, 20, 48, 60], [30, 80, 12, 12]], dtype=float)
    pulled = []

    def images():
        for i in range(6):
            pulled.append(i)
            shifted = rects + np.array([i * 2, i, 0, 0])
            yield f"im{i}", scene(shifted), shifted, CLASSES

    calls = []

    def predict(frames):
        calls.append(len(pulled))
        return blob_detector(frames)

    suite = [Corruption("distribution_shift", n, s) for n in ("colour_cast", "gamma", "jpeg")
             for s in (1, 2, 3)]
    suite += [Corruption("resolution", "resize", s) for s in (1, 3)]
    suite += [Corruption("occlusion", "cutout_all", 2)]
    table = stress_evaluate(predict, images(), iou_recall, suite, seed=0, batch_size=4)

    assert calls[0] <= 4  # streamed: the first batch is predicted before the rest is read
    assert len(table) == 2 * (len(suite) + 1)
    recall = table[table["metric"] == "recall"].set_index(["corruption", "severity"])
    assert recall.loc[("none", 0), "value"] == 1.0
    assert (recall["n_images"] == 6).all() and (recall["n_boxes"] == 18).all()
    photometric = recall.loc[["colour_cast", "gamma", "jpeg"]]
    np.testing.assert_array_equal(photometric["rpc"], 1.0)
    assert recall.loc[("resize", 1), "rpc"] == 1.0  # boxes scaled with the frame
    assert recall.loc[("resize", 3), "rpc"] == pytest.approx(2 / 3)  # the small-object cliff
    np.testing.assert_allclose(recall["rpc"], recall["value"] / recall["clean_value"])
    occl = table[table["metric"] == "mean_occluded"].set_index(["corruption", "severity"])
    assert occl.loc[("cutout_all", 2), "value"] == pytest.approx(0.5, abs=0.03)
    assert occl["rpc"].isna().all()  # clean value 0 -> rPC undefined, not inf

    summary = summarize_rpc(table).set_index(["family", "metric"])
    assert summary.loc[("distribution_shift", "recall"), "rpc"] == 1.0
    assert summary.loc[("resolution", "recall"), "rpc"] == pytest.approx((1 + 2 / 3) / 2)
    rec = recall.drop(index=("none", 0))
    assert summary.loc[("__all__", "recall"), "mpc"] == pytest.approx(rec["value"].mean())
    assert summary.loc[("__all__", "recall"), "worst_condition"] in (
        "resolution/resize/3", "occlusion/cutout_all/2")


def test_predictions_frame_and_input_checks():
    df = predictions_frame(np.array([[2, 0.5, 1, 2, 3, 4]]), "a")
    assert list(df.columns) == ["image_id", "class_id", "score", "x", "y", "w", "h"]
    assert df["class_id"].dtype == np.int64 and df["image_id"].iloc[0] == "a"
    assert len(predictions_frame(np.zeros((0, 6)), "b")) == 0
    assert len(predictions_frame([], "b")) == 0
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        predictions_frame(np.zeros((2, 5)), "c")
    dup = [("x", scene(), RECTS, CLASSES), ("x", scene(), RECTS, CLASSES)]
    with pytest.raises(ValueError, match="duplicate image ids"):
        stress_evaluate(blob_detector, dup, iou_recall, default_suite((1,), ["resolution"]))
