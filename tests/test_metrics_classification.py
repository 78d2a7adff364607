"""Classification metrics in the long format, checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from preflight.metrics import (
    classification_confusion,
    evaluate_classification,
    expected_calibration_error,
)

Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 2])
CONF = np.array([0.92, 0.83, 0.58, 0.67, 0.53, 0.97])


def _probs():
    p = np.zeros((6, 3))
    p[np.arange(6), Y_PRED] = CONF
    for i in range(6):
        others = [k for k in range(3) if k != Y_PRED[i]]
        p[i, others] = (1 - CONF[i]) / 2
    return p


def _v(t, metric, col="__all__", val="__all__"):
    r = t[(t["metric"] == metric) & (t["slice_column"] == col) & (t["slice_value"] == val)]
    assert len(r) == 1, metric
    return float(r["value"].iloc[0])


def test_classification_by_hand():
    names = {0: "a", 1: "b", 2: "c"}
    t = evaluate_classification(Y_TRUE, probs=_probs(), class_names=names)
    assert _v(t, "accuracy") == pytest.approx(4 / 6)
    assert _v(t, "precision.a") == 1.0 and _v(t, "recall.a") == pytest.approx(2 / 3)
    assert _v(t, "F1.a") == pytest.approx(0.8)
    assert _v(t, "F1.b") == pytest.approx(0.5) and _v(t, "F1.c") == pytest.approx(2 / 3)
    assert _v(t, "macro_F1") == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    from sklearn.metrics import f1_score

    assert _v(t, "macro_F1") == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro"))
    # ECE, 10 bins: (.5,.6] two wrong at .58/.53 -> 1.11; (.6,.7] .67 right -> .33;
    # (.8,.9] .83 right -> .17; (.9,1] .92 and .97 right -> .11; total 1.72 / 6
    assert expected_calibration_error(CONF, Y_TRUE == Y_PRED, n_bins=10) == pytest.approx(1.72 / 6)
    row = t[t["metric"] == "accuracy"].iloc[0]
    assert row["ci_low"] < 4 / 6 < row["ci_high"] and bool(row["thin"])


def test_classification_slices_bootstrap_and_confusion():
    images = pd.DataFrame({"camera": ["x", "x", "y", "y", "y", "y"]})
    t = evaluate_classification(Y_TRUE, Y_PRED, images=images, slice_columns=["camera"],
                                bootstrap=30, seed=0)
    assert _v(t, "accuracy", "camera", "x") == 1.0
    assert _v(t, "accuracy", "camera", "y") == 0.5
    m = t[(t["metric"] == "macro_F1") & (t["slice_column"] == "__all__")].iloc[0]
    assert m["ci_low"] <= m["value"] <= m["ci_high"]
    c = classification_confusion(Y_TRUE, Y_PRED, images=images, slice_columns=["camera"])
    overall = c[c["slice_column"] == "__all__"].pivot(index="true_class", columns="pred_class",
                                                       values="count")
    assert overall.to_numpy().tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # the share of a class's samples predicted as another, with a Wilson interval (the
    # look-alike finder reads these)
    first = c[c["slice_column"] == "__all__"].set_index(["true_class", "pred_class"])
    names = list(dict.fromkeys(first.index.get_level_values(0)))
    cell = first.loc[(names[0], names[1])]
    assert cell["share"] == pytest.approx(1 / 3)
    assert cell["ci_low"] < 1 / 3 < cell["ci_high"]
    with pytest.raises(ValueError):
        evaluate_classification(Y_TRUE, Y_PRED[:3])
