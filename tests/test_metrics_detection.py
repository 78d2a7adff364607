"""Operating-point metrics, box slices and the long-table shape, checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from preflight.metrics import LONG_COLUMNS, STAT_NAMES, evaluate_detections, summary_metrics


def _frames():
    """Class person (0): 3 boxes, class box (1): 1 box, all 20x20 except one large person.

    person: D .9 hits P1, D .6 hits P2, D .2 hits P3 (below .25), D .5 background FP
    box:    D .8 hits X1 (truncated), D .3 background FP
    At .25: person TP 2 FP 1 pos 3, box TP 1 FP 1 pos 1.
    """
    gt = pd.DataFrame({
        "image_id": ["a", "a", "b", "b"], "class_id": [0, 0, 0, 1],
        "class_name": ["person", "person", "person", "box"],
        "x": [0.0, 100.0, 0.0, 100.0], "y": 0.0, "w": [20.0, 20.0, 200.0, 20.0],
        "h": [20.0, 20.0, 200.0, 20.0], "area": [400.0, 400.0, 40000.0, 400.0], "iscrowd": 0,
        "truncated": [False, False, False, True], "occluded": [0.0, 0.3, 0.0, 0.6]})
    dt = pd.DataFrame({
        "image_id": ["a", "a", "b", "a", "b", "b"], "class_id": [0, 0, 0, 0, 1, 1],
        "score": [0.9, 0.6, 0.2, 0.5, 0.8, 0.3],
        "x": [0.0, 100.0, 0.0, 300.0, 100.0, 400.0], "y": [0.0, 0.0, 0.0, 300.0, 0.0, 300.0],
        "w": [20.0, 20.0, 200.0, 20.0, 20.0, 20.0], "h": [20.0, 20.0, 200.0, 20.0, 20.0, 20.0]})
    images = pd.DataFrame({"image_id": ["a", "b", "c"], "width": 640, "height": 480,
                           "shift": ["day", "night", "night"]})
    return gt, dt, images


def _v(t, metric, col="__all__", val="__all__", field="value"):
    r = t[(t["metric"] == metric) & (t["slice_column"] == col) & (t["slice_value"] == val)]
    assert len(r) == 1, (metric, col, val)
    return r[field].iloc[0]


def test_operating_point_by_hand():
    gt, dt, images = _frames()
    t = evaluate_detections(gt, dt, images, slice_columns=["shift"], operating_threshold=0.25)
    assert list(t.columns) == LONG_COLUMNS
    assert _v(t, "precision.person") == pytest.approx(2 / 3)
    assert _v(t, "recall.person") == pytest.approx(2 / 3)
    assert _v(t, "F1.person") == pytest.approx(2 / 3)
    assert _v(t, "precision.box") == 0.5 and _v(t, "recall.box") == 1.0
    assert _v(t, "F1.box") == pytest.approx(2 / 3)
    assert _v(t, "precision") == pytest.approx(3 / 5)
    assert _v(t, "recall") == pytest.approx(3 / 4)
    assert _v(t, "F1") == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    # Wilson interval of 3/4 precision rows are carried
    assert _v(t, "recall", field="ci_low") < 0.75 < _v(t, "recall", field="ci_high")
    # night: image b (P3 missed at .25, X1 found, one FP box) and the empty image c
    assert _v(t, "recall.person", "shift", "night") == 0.0
    assert _v(t, "recall", "shift", "night", "n_images") == 2
    # at threshold .1 the .2 detection counts
    t2 = evaluate_detections(gt, dt, images, operating_threshold=0.1)
    assert _v(t2, "recall.person") == 1.0
    # n_boxes follows the metric: AP_large counts the one large box
    assert _v(t, "AP_large", field="n_boxes") == 1 and _v(t, "AP", field="n_boxes") == 4
    assert set(STAT_NAMES) <= set(t["metric"])


def test_box_slices_recall_at_the_operating_point():
    gt, dt, images = _frames()
    t = evaluate_detections(gt, dt, images, operating_threshold=0.25,
                            box_slice_columns=["size_bin", "truncated", "occluded_bin",
                                               "input_size_bin"], model_input_size=320)
    assert _v(t, "recall", "size_bin", "small") == 1.0       # P1, P2, X1 all found
    assert _v(t, "recall", "size_bin", "large") == 0.0       # P3 only at .2
    assert _v(t, "recall", "truncated", "True") == 1.0
    assert _v(t, "recall", "occluded_bin", "over_half") == 1.0
    assert _v(t, "recall", "occluded_bin", "none", "n_boxes") == 2
    # at a 320 input a 20x20 box of a 640-wide frame is 10x10: small; 200x200 -> 100x100: large
    assert _v(t, "recall", "input_size_bin", "small", "n_boxes") == 3
    assert _v(t, "recall.person", "size_bin", "small") == 1.0
    with pytest.raises(ValueError, match="cannot be derived"):
        evaluate_detections(gt, dt, images, box_slice_columns=["nope"])


def test_summary_metrics_and_numeric_slices_are_binned():
    gt, dt, images = _frames()
    m = summary_metrics(gt, dt, images)
    assert m["recall"] == pytest.approx(0.75) and "AP.person" in m
    rng = np.random.default_rng(0)
    images = pd.DataFrame({"image_id": ["a", "b", "c"], "brightness": rng.random(3)})
    t = evaluate_detections(gt, dt, images, slice_columns=["brightness"])
    assert t["slice_column"].eq("brightness").any()
    with pytest.raises(ValueError, match="slice column"):
        evaluate_detections(gt, dt, images, slice_columns=["camera"])
