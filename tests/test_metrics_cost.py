"""The operational cost model, checked by hand."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from preflight.metrics import CostModel, EvaluationIndex, expected_cost

PERSON, BOX = 0, 3
NAMES = {0: "person", 1: "forklift", 2: "pallet", 3: "box"}


def _frames():
    """day (image 1): person P1 found (.9), box X1 missed, one FP box (.5).
    night (image 2): person P2 and box X2 missed, one FP person (.3), one FP person at .2
    (below the .25 threshold: not counted)."""
    gt = pd.DataFrame({"image_id": [1, 1, 2, 2], "class_id": [PERSON, BOX, PERSON, BOX],
                       "x": [0.0, 100.0, 0.0, 100.0], "y": 0.0, "w": 20.0, "h": 40.0,
                       "area": 800.0, "iscrowd": 0})
    dt = pd.DataFrame({"image_id": [1, 1, 2, 2], "class_id": [PERSON, BOX, PERSON, PERSON],
                       "score": [0.9, 0.5, 0.3, 0.2], "x": [0.0, 400.0, 400.0, 500.0],
                       "y": 0.0, "w": 20.0, "h": 40.0})
    images = pd.DataFrame({"image_id": [1, 2], "shift": ["day", "night"]})
    return EvaluationIndex.build(gt, dt, images, class_names=NAMES)


MODEL = CostModel(operator_minutes_per_false_positive=0.5, cost_per_operator_minute=2.0,
                  cost_per_missed_object={"default": 5.0, "person": 50.0}, frames_per_day=1000)


def _v(t, metric, col="__all__", val="__all__"):
    r = t[(t["metric"] == metric) & (t["slice_column"] == col) & (t["slice_value"] == val)]
    assert len(r) == 1
    return float(r["value"].iloc[0])


def test_daily_cost_by_hand():
    t = expected_cost(_frames(), MODEL, slice_columns=["shift"], operating_threshold=0.25)
    # overall: 2 FP / 2 frames = 1 per frame -> 1 * 1000 * 0.5 min * 2 = 1000 a day
    assert _v(t, "fp_per_frame") == 1.0
    assert _v(t, "cost.fp_daily") == 1000.0
    # misses: person 1 / 2 frames * 1000 * 50 = 25000; box 2 / 2 * 1000 * 5 = 5000
    assert _v(t, "fn_per_frame.person") == 0.5
    assert _v(t, "cost.fn_daily.person") == 25000.0
    assert _v(t, "cost.fn_daily.box") == 5000.0
    assert _v(t, "cost.fn_daily.forklift") == 0.0
    assert _v(t, "fn_per_frame") == 1.5
    assert _v(t, "cost.daily") == 31000.0
    assert _v(t, "cost.daily", "shift", "day") == 1000.0 + 5000.0
    assert _v(t, "cost.daily", "shift", "night") == 1000.0 + 50000.0 + 5000.0


def test_cost_bootstrap_interval_contains_estimate():
    t = expected_cost(_frames(), MODEL, bootstrap=50, seed=1)
    row = t[(t["metric"] == "cost.daily") & (t["slice_column"] == "__all__")].iloc[0]
    assert row["ci_low"] <= row["value"] <= row["ci_high"]


def test_cost_model_is_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        MODEL.frames_per_day = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        MODEL.cost_per_missed_object["box"] = 1.0  # type: ignore[index]
    assert MODEL.miss_cost("pallet") == 5.0 and MODEL.cost_per_false_positive == 1.0
    with pytest.raises(ValueError, match="no 'default'"):
        CostModel(cost_per_missed_object={"person": 1.0}).miss_cost("box")
    with pytest.raises(ValueError, match=">= 0"):
        CostModel(cost_per_operator_minute=-1.0)
    m = CostModel.from_settings({"frames_per_day": 10, "cost_per_missed_object": {"default": 1}})
    assert m.frames_per_day == 10 and m.miss_cost("x") == 1.0
    with pytest.raises(ValueError, match="unknown keys"):
        CostModel.from_settings({"frames": 1})
    from preflight.config import CostSettings

    assert CostModel.from_settings(CostSettings()).frames_per_day == CostSettings().frames_per_day
