"""Confusion matrix over classes plus background, checked by hand."""

from __future__ import annotations

import pandas as pd

from preflight.metrics import EvaluationIndex, confusion_matrix, confusion_pivot

A, B = 0, 1
NAMES = {A: "sku_a", B: "sku_b"}


def _frames():
    """Image 1: G1 (A), G2 (B), G3 (A), G4 (B), 10x10 boxes 100 px apart, plus a crowd box.

    D1 A .9 on G1 -> (A, A);  D2 A .8 on G2 -> (B, A): the look-alike confusion;
    D3 B .7 far away -> (background, B);  G3: only D4 A .1 below the threshold -> (A, background);
    D5 B .6 on G4 -> (B, B);  D6 B .5 on G4 again -> (background, B) (a duplicate);
    D7 A .6 inside the crowd region -> ignored, not counted.
    Image 2 (other site): D8 A .4, nothing there -> (background, A).
    """
    gt = pd.DataFrame({
        "image_id": [1, 1, 1, 1, 1], "class_id": [A, B, A, B, A],
        "x": [0.0, 100.0, 200.0, 300.0, 400.0], "y": 0.0,
        "w": [10.0, 10.0, 10.0, 10.0, 80.0], "h": [10.0, 10.0, 10.0, 10.0, 80.0],
        "area": [100.0] * 4 + [6400.0], "iscrowd": [0, 0, 0, 0, 1]})
    dt = pd.DataFrame({
        "image_id": [1, 1, 1, 1, 1, 1, 1, 2],
        "class_id": [A, A, B, A, B, B, A, A],
        "score": [0.9, 0.8, 0.7, 0.1, 0.6, 0.5, 0.6, 0.4],
        "x": [0.0, 100.0, 600.0, 200.0, 300.0, 300.0, 420.0, 0.0],
        "y": [0.0, 0.0, 300.0, 0.0, 0.0, 0.0, 20.0, 0.0], "w": 10.0, "h": 10.0})
    images = pd.DataFrame({"image_id": [1, 2], "site": ["north", "south"]})
    return gt, dt, images


def test_confusion_by_hand():
    gt, dt, images = _frames()
    index = EvaluationIndex.build(gt, dt, images, class_names=NAMES)
    table = confusion_matrix(index, slice_columns=["site"], operating_threshold=0.25)
    m = confusion_pivot(table)
    assert list(m.index) == ["sku_a", "sku_b", "background"]
    assert m.loc["sku_a"].tolist() == [1, 0, 1]
    assert m.loc["sku_b"].tolist() == [1, 1, 0]
    assert m.loc["background"].tolist() == [1, 2, 0]
    north = confusion_pivot(table, "site", "north")
    assert north.loc["background"].tolist() == [0, 2, 0]
    south = confusion_pivot(table, "site", "south")
    assert int(south.to_numpy().sum()) == 1 and south.loc["background", "sku_a"] == 1
    assert set(table["n_images"]) == {1, 2}


def test_rows_add_up_to_boxes_and_diagonal_to_true_positives():
    gt, dt, images = _frames()
    index = EvaluationIndex.build(gt, dt, images, class_names=NAMES)
    m = confusion_pivot(confusion_matrix(index, operating_threshold=0.25))
    # every non-crowd box appears once in its row
    assert m.loc["sku_a"].sum() == 2 and m.loc["sku_b"].sum() == 2
    tp, fp = index.op_status(0.25)
    assert m.loc["sku_a", "sku_a"] + m.loc["sku_b", "sku_b"] == int(tp.sum())
    # every counted detection appears once in its column
    assert int(m[["sku_a", "sku_b"]].to_numpy().sum()) == int(tp.sum() + fp.sum())
    # a lower threshold lets D4 find G3
    m2 = confusion_pivot(confusion_matrix(index, operating_threshold=0.05))
    assert m2.loc["sku_a"].tolist() == [2, 0, 0]


def test_share_of_a_class_detected_as_another_with_a_frame_clustered_interval():
    from preflight.metrics.intervals import wilson_interval

    # 10 frames with two sku_a boxes each; in frames 0-3 both are detected as sku_b, elsewhere
    # both as sku_a: 8 of 20 boxes (40%) confused, but only 4 of 10 frames
    gt_rows, dt_rows = [], []
    for i in range(10):
        for j in range(2):
            box = {"image_id": i, "x": 50.0 * j, "y": 0.0, "w": 20.0, "h": 20.0}
            gt_rows.append({**box, "class_id": A})
            dt_rows.append({**box, "class_id": B if i < 4 else A, "score": 0.9})
    index = EvaluationIndex.build(pd.DataFrame(gt_rows), pd.DataFrame(dt_rows),
                                  pd.DataFrame({"image_id": range(10)}), class_names=NAMES)
    t = confusion_matrix(index, operating_threshold=0.25).set_index(["true_class", "pred_class"])
    ab = t.loc[("sku_a", "sku_b")]
    assert ab["count"] == 8 and ab["share"] == 0.4
    wlo, whi = wilson_interval(8, 20)
    assert ab["ci_low"] < 0.4 < ab["ci_high"] and ab["ci_high"] - ab["ci_low"] > whi - wlo
    assert t.loc[("sku_a", "sku_a"), "share"] == 0.6
    # a zero cell: share 0, interval from the 10 frames holding sku_a boxes
    zero = t.loc[("sku_a", "background")]
    assert zero["share"] == 0 and zero["ci_low"] == 0
    assert zero["ci_high"] == float(wilson_interval(0, 10)[1])
    # no sku_b boxes: no share; the background row has none either
    assert pd.isna(t.loc[("sku_b", "sku_a"), "share"])
    assert pd.isna(t.loc[("background", "sku_b"), "share"])
