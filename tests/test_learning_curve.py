"""Learning curves recovered from synthetic points of a known saturating power law."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from preflight.decide import (
    LearningCurveError,
    curves_table,
    fit_learning_curve,
    fit_slice_curves,
)

A, B, C = 0.9, 3.0, 0.7
SIZES = np.array([50, 100, 200, 400, 800, 1600], dtype=float)


def curve(n, a=A, b=B, c=C):
    return a - b * np.asarray(n, dtype=float) ** (-c)


def exact_need(target, a=A, b=B, c=C):
    return (b / (a - target)) ** (1.0 / c)


def test_noiseless_points_recover_the_parameters():
    fit = fit_learning_curve(SIZES, curve(SIZES))
    assert fit.method == "curve_fit" and fit.n_points == 6 and fit.n_max == 1600
    assert fit.a == pytest.approx(A, abs=1e-4)
    assert fit.b == pytest.approx(B, rel=1e-3)
    assert fit.c == pytest.approx(C, abs=1e-4)
    assert fit.predict(3200) == pytest.approx(curve(3200), abs=1e-6)
    estimate, low, high = fit.images_needed(0.85)
    assert estimate == pytest.approx(exact_need(0.85), rel=1e-3)
    assert low <= estimate <= high


def test_noisy_points_recover_the_curve_within_tolerance():
    rng = np.random.default_rng(7)
    values = curve(SIZES) + rng.normal(0, 0.005, len(SIZES))
    fit = fit_learning_curve(SIZES, values, sigma=np.full(len(SIZES), 0.005), seed=1)
    assert fit.a == pytest.approx(A, abs=0.02)
    assert fit.c == pytest.approx(C, abs=0.15)
    estimate, low, high = fit.images_needed(0.85)
    assert estimate == pytest.approx(exact_need(0.85), rel=0.25)
    assert low < exact_need(0.85) < high  # the truth inside the bootstrap interval
    assert low < estimate < high


def test_three_points_use_the_fixed_exponent():
    n = np.array([250.0, 500.0, 1000.0])  # nested 25/50/100% subsets of a 1000-image pool
    fit = fit_learning_curve(n, curve(n, a=0.8, b=4.0, c=0.5))
    assert fit.method == "fixed_c" and fit.c == 0.5
    assert fit.a == pytest.approx(0.8, abs=1e-6) and fit.b == pytest.approx(4.0, rel=1e-6)
    estimate, low, high = fit.images_needed(0.75)
    assert estimate == pytest.approx((4.0 / 0.05) ** 2, rel=1e-4)
    assert low < estimate < high  # the MIN_SIGMA floor gives even an exact fit an interval


def test_two_points_are_enough():
    fit = fit_learning_curve([500, 1000], curve([500, 1000], a=0.8, b=4.0, c=0.5))
    assert fit.a == pytest.approx(0.8, abs=1e-6) and fit.n_points == 2


def test_target_above_the_asymptote_needs_infinite_data():
    fit = fit_learning_curve(SIZES, curve(SIZES))
    assert fit.images_needed(0.95) == (math.inf, math.inf, math.inf)
    assert not fit.reaches(0.95)


def test_flat_curve_is_saturated():
    fit = fit_learning_curve([250, 500, 1000], [0.5, 0.5, 0.5])
    assert fit.saturated and fit.b == pytest.approx(0.0, abs=1e-9)
    assert fit.gain_from_doubling() == pytest.approx(0.0, abs=1e-9)
    assert math.isinf(fit.images_needed(0.6)[0])


def test_steep_curve_is_not_saturated_and_tolerance_is_configurable():
    n = np.array([100.0, 200.0, 400.0])
    values = curve(n, a=0.95, b=4.0, c=0.5)
    fit = fit_learning_curve(n, values)
    assert not fit.saturated and fit.gain_from_doubling() > 0.01
    loose = fit_learning_curve(n, values, saturation_tol=0.1)
    assert loose.saturated


def test_decreasing_points_clip_to_a_flat_curve():
    fit = fit_learning_curve([250, 500, 1000], [0.6, 0.55, 0.5])
    assert fit.b == pytest.approx(0.0, abs=1e-9) and fit.saturated


@pytest.mark.parametrize("n, values, match", [
    ([1000], [0.5], "distinct"),
    ([1000, 1000], [0.5, 0.6], "distinct"),
    ([0, 500], [0.1, 0.5], "distinct"),
    ([250, 500], [0.5, 1.5], r"\[0, 1\]"),
    ([250, 500, 1000], [0.5, 0.6], "equal length"),
])
def test_bad_points_raise(n, values, match):
    with pytest.raises(LearningCurveError, match=match):
        fit_learning_curve(n, values)


def test_fit_slice_curves_one_per_slice_and_ignores_the_offtheshelf_point():
    rows = []
    for col, val, a in [("lighting", "dim", 0.85), ("size_bin", "small", 0.4)]:
        for n in (0, 250, 500, 1000):
            v = 0.1 if n == 0 else float(curve(n, a=a, b=2.0, c=0.5))
            rows.append((col, val, "recall", n, v, v - 0.03, v + 0.03))
    rows.append(("camera", "c1", "recall", 500, 0.7, 0.65, 0.75))  # one size: skipped
    points = pd.DataFrame(rows, columns=["slice_column", "slice_value", "metric",
                                         "n_images_train", "value", "ci_low", "ci_high"])
    fits = fit_slice_curves(points, n_boot=50)
    assert set(fits) == {("lighting", "dim", "recall"), ("size_bin", "small", "recall")}
    assert fits[("lighting", "dim", "recall")].a == pytest.approx(0.85, abs=1e-3)
    only = fit_slice_curves(points, keys=[("size_bin", "small", "recall")], n_boot=0)
    assert list(only) == [("size_bin", "small", "recall")]
    assert only[("size_bin", "small", "recall")].samples == ()
    table = curves_table(fits, {("lighting", "dim", "recall"): 0.8})
    dim = table[table["slice_value"] == "dim"].iloc[0]
    assert dim["images_needed"] == pytest.approx((2.0 / 0.05) ** 2, rel=1e-3)
    assert np.isnan(table[table["slice_value"] == "small"]["images_needed"].iloc[0])


def test_fit_slice_curves_is_deterministic_per_seed():
    n = [250, 500, 1000]
    points = pd.DataFrame({"slice_column": "lighting", "slice_value": "dim", "metric": "recall",
                           "n_images_train": n, "value": curve(n, a=0.8, b=4.0, c=0.5)})
    one = fit_slice_curves(points, n_boot=30, seed=3)[("lighting", "dim", "recall")]
    two = fit_slice_curves(points, n_boot=30, seed=3)[("lighting", "dim", "recall")]
    assert one.images_needed(0.7) == two.images_needed(0.7)


def test_missing_columns_raise():
    with pytest.raises(LearningCurveError, match="n_images_train"):
        fit_slice_curves(pd.DataFrame({"slice_column": [], "slice_value": [], "metric": [],
                                       "value": []}))


def test_learning_curve_points_train_each_subset_and_reuse_the_full_pool_model():
    from types import SimpleNamespace

    from preflight.decide.learning_curve import N_IMAGES_TRAIN
    from preflight.finetune import learning_curve_points
    from preflight.metrics.slices import OVERALL

    pool = pd.DataFrame({"image_id": [f"i{k}" for k in range(8)]})
    boxes = pd.DataFrame({"image_id": [f"i{k}" for k in range(8)], "class_id": 0})
    trained = []

    def train(images, subset_boxes, pct):
        assert set(subset_boxes["image_id"]) == set(images["image_id"])
        trained.append((len(images), pct))
        return f"w{pct}"

    def evaluate(weights):
        recall = {"w25": 0.5, "w50": 0.6, "full": 0.7}[weights]
        metrics = pd.DataFrame({"slice_column": [OVERALL], "slice_value": [OVERALL],
                                "metric": ["recall"], "value": [recall]})
        return SimpleNamespace(metrics=metrics, overall=lambda m: recall)

    lines = []
    points, subsets = learning_curve_points(pool, boxes, [0.25, 0.5, 1.0], seed=0,
                                            full_pool_weights="full", train=train,
                                            evaluate=evaluate, report=lines.append)
    assert trained == [(2, 25), (4, 50)]  # the whole pool is the fine-tuned model already
    assert [len(s) for s in subsets] == [2, 4, 8]
    assert points[N_IMAGES_TRAIN].tolist() == [2, 4, 8]
    assert points["fraction"].tolist() == [0.25, 0.5, 1.0]
    assert points["value"].tolist() == [0.5, 0.6, 0.7]
    assert lines[-1] == "8 images -> recall 0.700"
