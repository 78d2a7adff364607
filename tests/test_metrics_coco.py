"""Preflight's COCO evaluation equals pycocotools (1e-9), overall and for every slice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from preflight.metrics import STAT_NAMES, EvaluationIndex, evaluate_detections
from preflight.metrics.synthetic import pycocotools_stats, random_case, to_coco

TOL = 1e-9
SLICE_COLUMNS = ["camera", "shift", "lighting"]


def _assert_close(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert np.array_equal(np.isnan(ours), np.isnan(ref)), f"{what}: missing differs {ours} {ref}"
    ok = np.isfinite(ref)
    assert np.allclose(ours[ok], ref[ok], atol=TOL, rtol=0), f"{what}:\n{ours}\n{ref}"


def _stats_by_slice(table: pd.DataFrame) -> pd.DataFrame:
    rows = table[table["metric"].isin(STAT_NAMES)]
    return rows.pivot_table(index=["slice_column", "slice_value"], columns="metric",
                            values="value", dropna=False)[list(STAT_NAMES)]


CASES = [
    # seed, images, classes, mean boxes, crowd rate, score decimals (ties)
    (0, 40, 3, 4.0, 0.05, 1),
    (1, 30, 5, 6.0, 0.15, 2),
    (2, 25, 1, 3.0, 0.0, 1),
    (3, 50, 4, 8.0, 0.1, 0),
    (4, 20, 2, 1.5, 0.3, 3),
]


@pytest.mark.parametrize("seed,n_images,n_classes,mean_gt,crowd,decimals", CASES)
def test_twelve_stats_match_pycocotools_overall_and_per_slice(seed, n_images, n_classes,
                                                              mean_gt, crowd, decimals):
    rng = np.random.default_rng(seed)
    gt, dt, images = random_case(rng, n_images, n_classes, mean_gt, crowd, decimals)
    # edge cases every case carries: an image with nothing at all, one with detections only
    extra = pd.DataFrame({"image_id": [10_000_001, 10_000_002], "width": 640, "height": 480,
                          "camera": "cam0", "shift": "night", "lighting": "dim"})
    images = pd.concat([images, extra], ignore_index=True)
    dt = pd.concat([dt, pd.DataFrame({"image_id": [10_000_002] * 2, "class_id": [0, 0],
                                      "score": [0.5, 0.5], "x": [1.0, 50.0], "y": [1.0, 5.0],
                                      "w": [30.0, 20.0], "h": [20.0, 40.0]})], ignore_index=True)
    dataset, results = to_coco(gt, dt, images, n_classes)
    table = evaluate_detections(gt, dt, images, slice_columns=SLICE_COLUMNS)
    stats = _stats_by_slice(table)
    _assert_close(stats.loc[("__all__", "__all__")].to_numpy(), pycocotools_stats(dataset, results),
                  "overall")
    n_slices = 0
    for col in SLICE_COLUMNS:
        for value, ids in images.groupby(col)["image_id"]:
            ref = pycocotools_stats(dataset, results, ids.tolist())
            _assert_close(stats.loc[(col, str(value))].to_numpy(), ref, f"{col}={value}")
            n_slices += 1
    assert n_slices >= 6


def test_max_dets_truncation_and_per_class_ap():
    rng = np.random.default_rng(7)
    gt, dt, images = random_case(rng, 12, 2, 6.0, 0.05, 2)
    img = int(images["image_id"].iloc[0])
    n = 260                                   # > 100 detections of one (image, category)
    flood = pd.DataFrame({"image_id": img, "class_id": 0, "score": np.round(rng.random(n), 2),
                          "x": rng.uniform(0, 500, n), "y": rng.uniform(0, 400, n),
                          "w": rng.uniform(5, 150, n), "h": rng.uniform(5, 150, n)})
    dt = pd.concat([flood, dt], ignore_index=True)
    dataset, results = to_coco(gt, dt, images, 2)
    index = EvaluationIndex.build(gt, dt, images)
    stats, per_class = index.stats()
    _assert_close(stats, pycocotools_stats(dataset, results), "flooded")
    # per-class AP equals pycocotools restricted to that category
    for k in (0, 1):
        ref = pycocotools_stats(dataset, results, cat_ids=[k])[0]
        assert per_class[k] == pytest.approx(ref, abs=TOL)


def test_string_image_ids_give_the_same_numbers():
    rng = np.random.default_rng(11)
    gt, dt, images = random_case(rng, 30, 3, 4.0, 0.05, 1)
    as_int = evaluate_detections(gt, dt, images, slice_columns=["camera"])
    to_str = {i: f"img-{i:08d}" for i in images["image_id"]}   # same order as the ints
    as_str = evaluate_detections(gt.assign(image_id=gt["image_id"].map(to_str)),
                                 dt.assign(image_id=dt["image_id"].map(to_str)),
                                 images.assign(image_id=images["image_id"].map(to_str)),
                                 slice_columns=["camera"])
    pd.testing.assert_frame_equal(as_int, as_str)


def test_no_detections_and_missing_values():
    rng = np.random.default_rng(5)
    gt, dt, images = random_case(rng, 10, 2, 3.0, 0.0, 1)
    table = evaluate_detections(gt, dt.iloc[:0], images)
    stats = _stats_by_slice(table).loc[("__all__", "__all__")]
    assert (stats.fillna(0) == 0).all()
    # a category without ground truth is NaN (pycocotools' -1), never 0
    only_crowd = gt.assign(iscrowd=1)
    t2 = evaluate_detections(only_crowd, dt, images)
    assert t2.loc[t2["metric"].isin(STAT_NAMES), "value"].isna().all()


def test_unknown_image_ids_are_a_clear_error():
    rng = np.random.default_rng(3)
    gt, dt, images = random_case(rng, 5, 2, 3.0, 0.0, 1)
    bad = pd.concat([dt, dt.iloc[:1].assign(image_id=99_999_999)], ignore_index=True)
    with pytest.raises(ValueError, match="not in the images table"):
        evaluate_detections(gt, bad, images)
    with pytest.raises(ValueError, match="lacks columns"):
        evaluate_detections(gt, dt.drop(columns=["score"]), images)


def test_kernels_give_the_same_numbers_on_any_number_of_threads(monkeypatch):
    """Matching and accumulation split over threads: the index and every slice's stats are
    identical with 1 or 3 threads (disjoint work, no shared counters)."""
    from preflight.metrics import kernels
    from preflight.metrics.synthetic import large_case

    gt, dt, images = large_case(np.random.default_rng(5), 300, n_classes=4,
                                slice_levels={"camera": 3, "shift": 2})
    out = []
    for n in (1, 3):
        monkeypatch.setattr(kernels, "n_threads", lambda n=n: n)
        index = EvaluationIndex.build(gt, dt, images)
        masks = [s.mask for s in index.image_slices(["camera", "shift"])]
        out.append((index.tp, index.fp, index.dt_gt, *index.slice_stats(masks)))
    for a, b in zip(*out, strict=True):
        np.testing.assert_array_equal(a, b)


def test_accumulation_order_is_the_lexsort():
    from preflight.metrics.index import accumulation_order

    rng = np.random.default_rng(3)
    for n_images in (50, 70_000):      # radix sort and the general stable sort
        img = rng.integers(0, n_images, 5000)
        cat = rng.integers(0, 5, 5000)
        score = np.round(rng.random(5000), 2)        # many ties
        np.testing.assert_array_equal(accumulation_order(img, score, cat, n_images, 5),
                                      np.lexsort((img, -score, cat)))
    # negative scores, -0.0 next to 0.0 (a tie), huge and tiny magnitudes
    score = np.round(rng.normal(size=5000), 1) * rng.choice([1.0, 1e-300, 1e300], 5000)
    assert (np.signbit(score) & (score == 0)).any()
    np.testing.assert_array_equal(accumulation_order(img, score, cat, n_images, 5),
                                  np.lexsort((img, -score, cat)))
