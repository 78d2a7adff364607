"""Wilson intervals, the image bootstrap and thin flags, checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from preflight.metrics import EvaluationIndex, evaluate_detections, wilson_interval
from preflight.metrics.intervals import percentile_interval, resample_weights, thin_flag
from preflight.metrics.synthetic import random_case


def test_wilson_hand_values():
    # 5/10: centre 0.5, half = 1.96/1.38415 * sqrt(0.025 + 3.8415/400) = 0.26341
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.236593, abs=1e-5)
    assert hi == pytest.approx(0.763407, abs=1e-5)
    # 0/10: centre = 0.19207/1.38415 = 0.13876 = half, so [0, 0.27753]
    lo, hi = wilson_interval(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12)
    assert hi == pytest.approx(0.277533, abs=1e-5)
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0, abs=1e-12)
    assert lo == pytest.approx(1 - 0.277533, abs=1e-5)
    # 81/263 (Wilson 1927 style textbook check: 0.2553, 0.3662)
    lo, hi = wilson_interval(81, 263)
    assert (lo, hi) == pytest.approx((0.2553, 0.3662), abs=5e-4)
    lo, hi = wilson_interval(np.array([0, 3]), np.array([0, 0]))
    assert np.isnan(lo).all() and np.isnan(hi).all()


def test_wilson_narrows_with_n_and_contains_p():
    k = np.array([1, 10, 100, 1000])
    n = k * 2
    lo, hi = wilson_interval(k, n)
    assert (lo <= 0.5).all() and (hi >= 0.5).all()
    assert np.all(np.diff(hi - lo) < 0)


def test_percentile_interval_and_resample_weights():
    rng = np.random.default_rng(0)
    w = resample_weights(rng, 7, 500)
    assert w.shape == (500, 7) and (w.sum(axis=1) == 7).all()
    samples = np.column_stack([np.arange(1, 101, dtype=float), np.full(100, np.nan)])
    lo, hi = percentile_interval(samples)
    assert lo[0] == pytest.approx(3.475) and hi[0] == pytest.approx(97.525)
    assert np.isnan(lo[1]) and np.isnan(hi[1])
    lo, hi = percentile_interval(samples[:, :1], np.array([99.9]))   # widened to the point
    assert hi[0] == 99.9
    assert thin_flag([10, 40, 40], [100, 10, 100], 30, 50).tolist() == [True, True, False]


def _ap_rows(table):
    return table[table["metric"].isin(["AP", "AP50", "AP75", "AR100", "F1"])
                 | table["metric"].str.startswith("AP.")].reset_index(drop=True)


def test_bootstrap_is_seeded_and_contains_the_estimate():
    rng = np.random.default_rng(1)
    gt, dt, images = random_case(rng, 60, 3, 4.0, 0.05, 2)
    kw = dict(slice_columns=["shift"], bootstrap=40)
    a = evaluate_detections(gt, dt, images, seed=3, **kw)
    b = evaluate_detections(gt, dt, images, seed=3, **kw)
    c = evaluate_detections(gt, dt, images, seed=4, **kw)
    pd.testing.assert_frame_equal(a, b)
    rows = _ap_rows(a)
    assert not rows["ci_low"].equals(_ap_rows(c)["ci_low"])
    finite = rows[rows["value"].notna()]
    assert finite["ci_low"].notna().all()
    assert (finite["ci_low"] <= finite["value"] + 1e-12).all()
    assert (finite["value"] <= finite["ci_high"] + 1e-12).all()
    assert (finite["ci_high"] - finite["ci_low"] > 0).any()
    # requesting another slice column does not change a slice's interval
    d = evaluate_detections(gt, dt, images, seed=3, slice_columns=["camera", "shift"],
                            bootstrap=40)
    key = ["slice_column", "slice_value", "metric"]
    merged = a.merge(d, on=key, suffixes=("", "_d"))
    assert np.allclose(merged["ci_low"], merged["ci_low_d"], equal_nan=True)


def test_weighted_accumulation_equals_physically_resampled_images():
    """The bootstrap re-accumulates stored matches with image weights; that must equal
    evaluating a data set in which the drawn images are really duplicated."""
    rng = np.random.default_rng(2)
    gt, dt, images = random_case(rng, 25, 3, 4.0, 0.1, 6)    # (almost) no score ties
    index = EvaluationIndex.build(gt, dt, images)
    weights = resample_weights(np.random.default_rng(9), index.n_images, 1)[0]
    got = index.quick_stats(weights.astype(float))

    copies_gt, copies_dt, copies_img = [], [], []
    for pos, k in enumerate(weights):
        img = index.image_ids[pos]
        for c in range(k):
            new = int(img) * 10 + c
            copies_gt.append(gt[gt["image_id"] == img].assign(image_id=new))
            copies_dt.append(dt[dt["image_id"] == img].assign(image_id=new))
            copies_img.append(new)
    dup = EvaluationIndex.build(pd.concat(copies_gt), pd.concat(copies_dt),
                                pd.DataFrame({"image_id": copies_img}))
    stats, per_class = dup.stats()
    want = np.concatenate([[stats[0], stats[1], stats[2], stats[8]], per_class])
    assert np.allclose(got, want, atol=1e-12, equal_nan=True)


def test_thin_flags_follow_the_minimums():
    rng = np.random.default_rng(4)
    gt, dt, images = random_case(rng, 40, 2, 3.0, 0.0, 1)
    t = evaluate_detections(gt, dt, images, slice_columns=["shift"], min_images=20,
                            min_boxes=10)
    expect = (t["n_images"] < 20) | (t["n_boxes"] < 10)
    assert (t["thin"] == expect).all()
    assert t["thin"].any() and not t["thin"].all()


@pytest.mark.parametrize("seed,ties", [(0, 6), (1, 2), (5, 1)])
def test_batched_bootstrap_equals_one_resample_at_a_time(seed, ties):
    """``bootstrap_stats`` (all resamples in one pass, chunked) gives, row for row, what
    ``quick_stats`` gives for each resample's weights: same AP / AP50 / AP75 / AR100 / AP.<class>,
    NaN in the same places (classes with no ground truth drawn), on a slice and on all images."""
    rng = np.random.default_rng(seed)
    gt, dt, images = random_case(rng, 40, 4, 5.0, 0.2, ties)
    index = EvaluationIndex.build(gt, dt, images)
    for mask in (np.ones(index.n_images, bool), rng.random(index.n_images) < 0.4):
        W = resample_weights(np.random.default_rng(seed + 1), int(mask.sum()), 60)
        W[0] = 0                       # a resample that draws nothing
        W[1] = 0
        W[1, 0] = 3                    # ... and one that draws a single image three times
        batched = index.bootstrap_stats(mask, W)
        full = np.zeros(index.n_images)
        for b in range(len(W)):
            full[mask] = W[b]
            one = index.quick_stats(full)
            np.testing.assert_allclose(batched[b], one, rtol=0, atol=1e-12, equal_nan=True)


def test_batched_bootstrap_chunks_agree():
    from preflight.metrics.bootstrap import accumulate_resamples

    rng = np.random.default_rng(4)
    gt, dt, images = random_case(rng, 30, 3, 4.0, 0.1, 3)
    index = EvaluationIndex.build(gt, dt, images)
    a = index.params.area_index("all")
    W = resample_weights(np.random.default_rng(1), index.n_images, 17).astype(float)
    npig = W @ np.stack([np.bincount(index.gt_cat[(index.gt_img == i) & ~index.gt_ignore[a]],
                                     minlength=index.n_classes) for i in range(index.n_images)])
    args = (index.tp[a], index.fp[a], index.dt_cat, index.dt_img, W, npig,
            np.asarray(index.params.rec_thresholds))
    p1, r1 = accumulate_resamples(*args)
    p2, r2 = accumulate_resamples(*args, max_elements=1)       # one resample per chunk
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(r1, r2)


@pytest.mark.parametrize("seed,ties", [(2, 6), (3, 1)])
def test_compiled_resamples_equal_the_numpy_ones(seed, ties):
    """The bootstrap's compiled kernel gives the NumPy implementation's AP cells and recall
    (crowds, ties, images drawn 0..k times, a resample drawing nothing), on any thread count."""
    from preflight.metrics import kernels

    rng = np.random.default_rng(seed)
    gt, dt, images = random_case(rng, 50, 4, 5.0, 0.2, ties)
    index = EvaluationIndex.build(gt, dt, images)
    a = index.params.area_index("all")
    idx = np.flatnonzero(index.dt_rank < 100)
    W = resample_weights(np.random.default_rng(seed), index.n_images, 40).astype(float)
    W[0] = 0
    per_image = np.stack([np.bincount(index.gt_cat[(index.gt_img == i) & ~index.gt_ignore[a]],
                                      minlength=index.n_classes)
                          for i in range(index.n_images)])
    args = (idx, index.dt_img[idx], W, W @ per_image)
    ref = index.resample_ap(*args, compiled=False)
    for threads in (1, 3):
        kernels_n = kernels.n_threads
        kernels.n_threads = lambda n=threads: n
        try:
            got = index.resample_ap(*args)
        finally:
            kernels.n_threads = kernels_n
        for g, r in zip(got, ref, strict=True):
            np.testing.assert_allclose(g, r, rtol=0, atol=1e-12, equal_nan=True)
    assert np.isnan(ref[0][0]).all()


def test_nanquantiles_equal_numpy():
    from preflight.metrics.intervals import nanquantiles

    rng = np.random.default_rng(3)
    s = rng.normal(size=(200, 9))
    s[rng.random(s.shape) < 0.2] = np.nan
    s[:, 3] = np.nan                      # no finite value
    s[:190, 4] = np.nan                   # ten finite values
    s[:, 5] = 0.25                        # constant
    s[:199, 6] = np.nan                   # one finite value
    s[5, 7] = np.inf                      # infinities count as missing, as for nanquantile here
    for q in (0.0, 0.025, 0.5, 0.975, 1.0):
        (got,) = nanquantiles(s, (q,))
        finite = np.where(np.isfinite(s), s, np.nan)
        with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore")
            ref = np.nanquantile(finite, q, axis=0)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-14, equal_nan=True)



def test_thresholds_reached_equals_searchsorted():
    from preflight.metrics.accumulate import thresholds_reached
    from preflight.metrics.coco import CocoParams

    rec = np.asarray(CocoParams().rec_thresholds)
    rng = np.random.default_rng(0)
    k = rng.integers(0, 500, 20000)
    n = np.maximum(k, 1) + rng.integers(0, 500, 20000)
    values = np.concatenate([k / n, rec, np.nextafter(rec, 2).clip(0, 1),
                             np.nextafter(rec, -1).clip(0, 1), np.arange(0, 101) / 100,
                             [0.0, 1.0]]).reshape(-1, 2)
    ref = np.searchsorted(rec, values.ravel(), side="right").reshape(values.shape)
    np.testing.assert_array_equal(thresholds_reached(rec, values), ref)
    uneven = np.array([0.0, 0.3, 0.35, 1.0])
    np.testing.assert_array_equal(thresholds_reached(uneven, values),
                                  np.searchsorted(uneven, values.ravel(), "right")
                                  .reshape(values.shape))


def _clustered_sample(rng, mu, rho, frames, reps):
    """``reps`` samples of ``frames`` frames: 1 + Poisson(4) boxes each, detected with a per-frame
    probability drawn from a Beta of mean ``mu`` and intra-frame correlation ``rho``."""
    a, b = mu * (1 - rho) / rho, (1 - mu) * (1 - rho) / rho
    n = 1 + rng.poisson(4, size=(frames, reps))
    return rng.binomial(n, rng.beta(a, b, size=(frames, reps))), n


@pytest.mark.parametrize("mu,rho", [(0.7, 0.3), (0.5, 0.6), (0.9, 0.05)])
def test_frame_clustered_interval_covers_at_nominal_rate(mu, rho):
    # 2000 simulated samples of 120 frames: the design-effect interval covers the true recall
    # 93-97% of the time; the box-level Wilson interval (boxes of a frame taken as independent)
    # falls short as soon as boxes of a frame succeed or fail together
    from preflight.metrics.intervals import cluster_wilson_interval

    y, n = _clustered_sample(np.random.default_rng(20261205), mu, rho, 120, 2000)
    lo, hi = cluster_wilson_interval(y, n)
    coverage = np.mean((lo <= mu) & (mu <= hi))
    assert 0.93 <= coverage <= 0.97
    wlo, whi = wilson_interval(y.sum(0), n.sum(0))
    box_coverage = np.mean((wlo <= mu) & (mu <= whi))
    if rho >= 0.3:
        assert box_coverage < 0.85
    assert box_coverage < coverage


def test_frame_clustered_interval_edges():
    from preflight.metrics.intervals import cluster_wilson_interval

    def pair(interval):
        return [float(v) for v in interval]

    # independent boxes (one per frame): Wilson at n * (m-1)/m (the unbiased variance)
    y = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1])
    lo, hi = cluster_wilson_interval(y, np.ones_like(y))
    assert pair((lo, hi)) == pytest.approx(pair(wilson_interval(0.7 * 9, 9)))
    # all boxes of a frame found or all missed: each frame counts once
    y2 = np.array([5, 0, 5, 5, 0, 5, 5, 5, 0, 5])
    lo2, hi2 = cluster_wilson_interval(y2, np.full(10, 5))
    assert pair((lo2, hi2)) == pytest.approx(pair((lo, hi)))
    # recall 1.0 on 50 boxes in 10 frames: no variation seen, so one observation per frame
    assert cluster_wilson_interval(np.full(10, 5), np.full(10, 5))[0] == pytest.approx(
        wilson_interval(10, 10)[0])
    # columns are classes; a class without boxes is NaN
    lo, hi = cluster_wilson_interval(np.array([[1, 0], [2, 0]]), np.array([[2, 0], [2, 0]]))
    assert np.isfinite(lo[0]) and np.isnan(lo[1]) and np.isnan(hi[1])
    with pytest.raises(ValueError, match="shape"):
        cluster_wilson_interval(np.ones(3), np.ones(4))


def test_frames_to_decide():
    from preflight.metrics.intervals import frames_to_decide

    # value 0.6, interval [0.45, 0.75] from 40 frames, bar 0.5: half-width 0.15 against a gap of
    # 0.1 -> 40 * 2.25 = 90 frames (and 90 * 5 boxes at 5 boxes per frame)
    frames, boxes = frames_to_decide(0.6, 0.45, 0.75, 0.5, 40, 200)
    assert float(frames) == 90 and float(boxes) == 450
    # below the bar: the upper half-width counts
    frames, _ = frames_to_decide(0.4, 0.3, 0.6, 0.5, 10)
    assert float(frames) == 40
    # already decided: no more than it has; on the bar: never
    assert float(frames_to_decide(0.9, 0.85, 0.95, 0.5, 30)[0]) == 30
    assert np.isinf(frames_to_decide(0.5, 0.4, 0.6, 0.5, 30)[0])
    assert np.isnan(frames_to_decide(0.5, np.nan, np.nan, 0.6, 30)[0])


def test_detection_recall_interval_widens_on_dense_frames():
    # one frame holding 40 boxes, all found, plus ten frames of one box each (half found): the
    # boxes of the dense frame are one observation, so the interval is wider than box-level Wilson
    rows, dets = [], []
    for i in range(11):
        nb = 40 if i == 0 else 1
        for j in range(nb):
            box = {"x": 10.0 + 30 * (j % 10), "y": 10.0 + 30 * (j // 10), "w": 20.0, "h": 20.0}
            rows.append({"image_id": i, "class_id": 0, **box})
            if i == 0 or i % 2:
                dets.append({"image_id": i, "class_id": 0, **box, "score": 0.9})
    gt, dt = pd.DataFrame(rows), pd.DataFrame(dets)
    t = evaluate_detections(gt, dt, pd.DataFrame({"image_id": range(11)}))
    r = t[(t["slice_column"] == "__all__") & (t["metric"] == "recall")].iloc[0]
    k, n = int(round(r["value"] * 50)), 50
    wlo, whi = wilson_interval(k, n)
    assert r["ci_high"] - r["ci_low"] > 1.5 * (whi - wlo)


def test_cluster_wilson_grouped_equals_one_subset_at_a_time():
    from preflight.metrics.intervals import cluster_wilson_grouped, cluster_wilson_interval

    rng = np.random.default_rng(0)
    m = 400
    n = rng.integers(0, 5, (m, 3))
    y = np.minimum(n, rng.integers(0, 4, (m, 3)))
    labels = np.column_stack([np.zeros(m, int), rng.integers(-1, 3, m)])
    labels[labels[:, 1] >= 0, 1] += 1                 # subsets 1..3 in column 1, -1: none
    lo, hi = cluster_wilson_grouped(y, n, labels, 4)
    for g in range(4):
        frames = (labels == g).any(axis=1)
        ref_lo, ref_hi = cluster_wilson_interval(y[frames], n[frames])
        np.testing.assert_allclose(lo[g], ref_lo, rtol=0, atol=1e-12, equal_nan=True)
        np.testing.assert_allclose(hi[g], ref_hi, rtol=0, atol=1e-12, equal_nan=True)


def test_before_after_calls_a_change_significant_only_when_the_intervals_are_disjoint():
    from preflight.evaluation import before_after

    def table(rows):
        return pd.DataFrame([{"slice_column": "lighting", "slice_value": v, "metric": "recall",
                              "value": x, "ci_low": lo, "ci_high": hi, "thin": False}
                             for v, x, lo, hi in rows])

    before = table([("dark", 0.40, 0.30, 0.50), ("bright", 0.80, 0.70, 0.90)])
    after = table([("dark", 0.70, 0.60, 0.80), ("bright", 0.85, 0.75, 0.95),
                   ("dusk", 0.5, 0.4, 0.6)])
    ba = before_after(before, after).set_index("slice_value")
    assert ba.loc["dark", "significant"] and not ba.loc["bright", "significant"]
    assert ba.loc["dark", "change"] == pytest.approx(0.3)
    assert list(ba.index) == ["dark", "bright", "dusk"]  # worst before first; new rows last
    assert np.isnan(ba.loc["dusk", "value_before"]) and not ba.loc["dusk", "significant"]
