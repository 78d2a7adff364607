"""TIDE-style error types on a case with exactly one box of each type, answers by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from preflight.metrics import EvaluationIndex, classify_detections, error_decomposition

A, B = 0, 1
REC = np.linspace(0.0, 1.0, 101)


def _frames():
    """Image 1 holds four class-A boxes (10x10, 100 px apart):

    G1 [0, 0]    D1 (A, .9) on it exactly -> tp;  D2 (A, .8) on it exactly -> dupe
    G2 [100, 0]  D3 (B, .7) on it exactly -> cls (right place, wrong class)
    G3 [200, 0]  D4 (A, .6) shifted by 6 px: IoU 40/160 = 0.25 -> loc
    G4 [300, 0]  D5 (B, .5) shifted by 6 px: IoU .25 with a box of the other class -> both;
                 nothing else points at G4 -> missed
                 D6 (A, .4) far away from everything -> bkg
    Image 2 has no boxes; D7 (A, .3) there -> bkg (no ground truth in the image).
    """
    gt = pd.DataFrame({
        "image_id": [1, 1, 1, 1], "class_id": [A, A, A, A],
        "x": [0.0, 100.0, 200.0, 300.0], "y": 0.0, "w": 10.0, "h": 10.0,
        "area": 100.0, "iscrowd": 0})
    dt = pd.DataFrame({
        "image_id": [1, 1, 1, 1, 1, 1, 2],
        "class_id": [A, A, B, A, B, A, A],
        "score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3],
        "x": [0.0, 0.0, 100.0, 206.0, 306.0, 500.0, 0.0],
        "y": [0.0, 0.0, 0.0, 0.0, 0.0, 500.0, 0.0], "w": 10.0, "h": 10.0})
    images = pd.DataFrame({"image_id": [1, 2], "site": ["north", "south"]})
    return gt, dt, images


def _value(table, metric, col="__all__", val="__all__"):
    row = table[(table["metric"] == metric) & (table["slice_column"] == col)
                & (table["slice_value"] == val)]
    assert len(row) == 1, metric
    return float(row["value"].iloc[0])


def test_each_detection_gets_its_type():
    gt, dt, images = _frames()
    labels = classify_detections(EvaluationIndex.build(gt, dt, images))
    assert labels["error"].tolist() == ["tp", "dupe", "cls", "loc", "both", "bkg", "bkg"]
    # cls and loc errors point at the box a fix would claim (gt rows 1 and 2)
    assert labels["gt_row"].tolist() == [-1, -1, 1, 2, -1, -1, -1]


def test_counts_at_the_operating_threshold():
    gt, dt, images = _frames()
    index = EvaluationIndex.build(gt, dt, images)
    t = error_decomposition(index, operating_threshold=0.25, slice_columns=["site"])
    want = {"cls": 1, "loc": 1, "both": 1, "dupe": 1, "bkg": 2, "missed": 1}
    for kind, n in want.items():
        assert _value(t, f"errors.{kind}") == n, kind
    assert _value(t, "errors.bkg", "site", "south") == 1          # the empty image
    assert _value(t, "errors.bkg", "site", "north") == 1
    assert _value(t, "errors.bkg.per_image", "site", "north") == 1.0
    # raising the threshold above D4 (.6) drops the loc error: G3 becomes a plain miss, and D6,
    # D7 (bkg) and D5 (both) are gone too
    t = error_decomposition(index, operating_threshold=0.65)
    got = {k: _value(t, f"errors.{k}") for k in want}
    assert got == {"cls": 1, "loc": 0, "both": 0, "dupe": 1, "bkg": 0, "missed": 2}


def test_oracle_fixes_by_hand():
    """Class B has no ground truth, so mAP50 = AP50 of class A (4 boxes). Class A's ranked list:
    D1 tp, D2 fp, D4 fp, D6 fp, D7 fp -> one recall step at 1/4 with precision 1:
    AP = #(thresholds <= .25) / 101 = 26/101.

    * fix cls: D3 becomes an A hit on G2 at .7 -> tp, fp, tp, ... recall 1/4 at precision 1,
      2/4 at precision 2/3: AP = (26 + 25 * 2/3) / 101;
    * fix loc: D4 becomes a hit on G3 -> the same curve;
    * fix dupe / bkg: removing false positives after the last hit changes nothing; fix both:
      D5 is class B (no boxes) -> nothing;
    * fix missed: G4 leaves the positives -> recall step at 1/3: AP = #(thr <= 1/3) / 101.
    """
    gt, dt, images = _frames()
    t = error_decomposition(EvaluationIndex.build(gt, dt, images))
    n25 = int((REC <= 0.25).sum())
    n33 = int((REC <= 1 / 3).sum())
    n50 = int(((REC > 0.25) & (REC <= 0.5)).sum())
    base = n25 / 101
    assert (n25, n33, n50) == (26, 34, 25)
    assert _value(t, "AP50") == pytest.approx(base)
    assert _value(t, "dAP50.cls") == pytest.approx((n25 + n50 * 2 / 3) / 101 - base)
    assert _value(t, "dAP50.loc") == pytest.approx((n25 + n50 * 2 / 3) / 101 - base)
    assert _value(t, "dAP50.dupe") == pytest.approx(0.0)
    assert _value(t, "dAP50.bkg") == pytest.approx(0.0)
    assert _value(t, "dAP50.both") == pytest.approx(0.0)
    assert _value(t, "dAP50.missed") == pytest.approx(n33 / 101 - base)


def test_only_the_best_error_on_a_box_is_fixed():
    """Two loc errors on G3: the higher-scoring one is fixed, the other one removed."""
    gt, dt, images = _frames()
    extra = pd.DataFrame({"image_id": [1], "class_id": [A], "score": [0.55], "x": [194.0],
                          "y": [0.0], "w": 10.0, "h": 10.0})
    dt = pd.concat([dt, extra], ignore_index=True)
    index = EvaluationIndex.build(gt, dt, images)
    labels = classify_detections(index)
    assert labels["error"].tolist()[-1] == "loc"
    t = error_decomposition(index)
    # D1 tp, D2 fp, D4 (fixed) tp, extra removed, D6, D7 fp: same curve as the single loc fix
    n25, n50 = 26, 25
    assert _value(t, "dAP50.loc") == pytest.approx((n25 + n50 * 2 / 3) / 101 - n25 / 101)


def _ap50_reference(ea, mask, fix=None):
    """The oracle AP50 recomputed from scratch for one slice (select, relabel, re-sort)."""
    import numpy as np

    from preflight.metrics.accumulate import accumulate, nanmean

    idx = ea.index
    dsel = mask[idx.dt_img]
    cat = idx.dt_cat.copy()
    tp, fp = ea.tp.copy(), ea.fp.copy()
    if fix in ("cls", "loc"):
        hit = ea.kind == fix
        good = hit & ea.best
        tp[good], fp[good] = True, False
        if fix == "cls":
            cat[good] = idx.gt_cat[ea.target[good]]
        dsel &= ~(hit & ~ea.best)
    elif fix in ("both", "dupe", "bkg"):
        dsel &= ea.kind != fix
    sel = np.flatnonzero(dsel)
    if fix == "cls":
        sel = sel[np.lexsort((idx.dt_row[sel], idx.dt_img[sel], -idx.dt_score[sel], cat[sel]))]
    gsel = mask[idx.gt_img] & ea.gt_ok
    if fix == "missed":
        gsel &= ~ea.missed_all
    npig = np.bincount(idx.gt_cat[gsel], minlength=idx.n_classes)
    pr, _ = accumulate(tp[None, sel], fp[None, sel], cat[sel], npig,
                       np.asarray(idx.params.rec_thresholds))
    return float(nanmean(pr))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oracle_ap50_of_a_slice_equals_recomputing_it(seed):
    import numpy as np

    from preflight.metrics import EvaluationIndex
    from preflight.metrics.errors import ERROR_TYPES, ErrorAnalysis
    from preflight.metrics.synthetic import random_case

    rng = np.random.default_rng(seed)
    gt, dt, images = random_case(rng, 40, 4, 5.0, 0.1, 2)
    index = EvaluationIndex.build(gt, dt, images)
    ea = ErrorAnalysis.of(index)
    assert ErrorAnalysis.of(index) is ea                       # built once per index
    for mask in (np.ones(index.n_images, bool), rng.random(index.n_images) < 0.5):
        together = ea.ap50_all(mask)
        for fix in (None, *ERROR_TYPES):
            ref = _ap50_reference(ea, mask, fix)
            assert ea.ap50(mask, fix) == pytest.approx(ref, abs=1e-12, nan_ok=True)
            assert together[fix] == pytest.approx(ref, abs=1e-12, nan_ok=True)
