"""The decision from evidence alone: unresolved rows, look-alikes found from the confusion matrix,
the measured size distribution, capacity, evidence sufficiency, stress, close rows, and reasons
that agree with their own counts."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from preflight.decide import FINE_TUNED, OFF_THE_SHELF, Bar, decide, fit_learning_curve
from preflight.decide.lookalikes import OPEN, PERSISTS, REMOVED, find_lookalikes
from preflight.decide.rule import (
    COLLECT,
    EVALUATE,
    FINE_TUNE,
    MEASURE,
    REPLACE,
    SHIP,
    failing_counts,
)
from tests.test_decide import ALL, BAR, DIM, SKU_A, cand, confusion, row, table

SKU_NEW = (ALL, ALL, "recall.sku_new")


# ------------------------------------------------------------------ unresolved rows


def test_a_failing_row_without_evidence_is_unresolved_and_names_the_measurement():
    # fails off-the-shelf, no fine-tuned model: nothing says data or architecture
    d = decide([cand(ots=table({DIM: (0.30, 0.25, 0.35)}))], BAR)
    r = row(d, "nano", OFF_THE_SHELF, DIM)
    assert r["failure_kind"] == "unresolved" and r["route"] == "measure first"
    assert "fine-tune nano on the pool" in r["remedy"]
    v = d.candidate("nano")
    assert v.verdict == MEASURE and v.n_unresolved == 1 and v.n_data_solvable == 0
    assert d.overall.verdict == MEASURE
    assert "1 failing row(s): 1 unresolved" in d.overall.reasons[0]


def test_unresolved_after_fine_tuning_asks_for_a_learning_curve():
    d = decide([cand(ots=table({DIM: (0.10, 0.05, 0.15)}), ft=table({DIM: (0.21, 0.16, 0.26)}))],
               BAR)
    r = row(d, "nano", FINE_TUNED, DIM)
    # 0.10 -> 0.21 is a real gain, but 0.29 is still missing: not evidence on its own
    assert bool(r["improved_by_finetune"]) and r["failure_kind"] == "unresolved"
    assert "fit a learning curve for lighting=dim" in r["remedy"]
    assert "0.10 -> 0.21" in r["remedy"]


def test_no_analog_class_needs_the_fine_tuned_evidence():
    # off-the-shelf never ships with it, even when every row passes
    d = decide([cand(no_analog_classes=("sku_new",))], BAR)
    assert d.overall.verdict != SHIP
    # fine-tuned and still failing on it, no curve: unresolved, and says why it matters
    ots = table({SKU_NEW: (0.0, 0.0, 0.05)})
    d = decide([cand(ots=ots, ft=table({SKU_NEW: (0.11, 0.06, 0.18)}),
                     no_analog_classes=("sku_new",))], BAR)
    r = row(d, "nano", FINE_TUNED, SKU_NEW)
    assert r["failure_kind"] == "unresolved" and "no analog in pre-training" in r["remedy"]
    # its curve levels off below the bar: a model change
    flat = fit_learning_curve([250, 500, 1000], [0.10, 0.11, 0.11], n_boot=0)
    d = decide([cand(ots=ots, ft=table({SKU_NEW: (0.11, 0.06, 0.18)}),
                     no_analog_classes=("sku_new",), learning_curves={SKU_NEW: flat})], BAR)
    r = row(d, "nano", FINE_TUNED, SKU_NEW)
    assert r["failure_kind"] == "architecture-bound" and r["route"] == "model change"
    # the fine-tuned model clears the bar on it: fine-tune
    d = decide([cand(ots=ots, ft=table({SKU_NEW: (0.80, 0.72, 0.86)}),
                     no_analog_classes=("sku_new",))], BAR)
    assert d.overall.verdict == FINE_TUNE


# ------------------------------------------------------------------ measured sizes, capacity


def px_rows(metric, counts):
    """``input_px_bin`` box-slice rows of one metric: bin -> number of boxes."""
    return {("input_px_bin", b, metric): (0.3, 0.2, 0.4) for b in counts}, counts


def with_sizes(base, metric, counts):
    rows, counts = px_rows(metric, counts)
    t = table({**base, **rows})
    for b, n in counts.items():
        t.loc[(t["slice_column"] == "input_px_bin") & (t["slice_value"] == b), "n_boxes"] = n
    return t


def test_most_objects_below_the_pixel_threshold_at_input_is_architecture_bound():
    fail = {SKU_A: (0.30, 0.25, 0.35)}
    small = {"<8": 30, "8-16": 50, "16-32": 15, "32-96": 5}        # 80% below 16 px
    d = decide([cand(ots=with_sizes(fail, "recall.sku_a", small),
                     ft=with_sizes(fail, "recall.sku_a", small))], BAR)
    r = row(d, "nano", FINE_TUNED, SKU_A)
    assert r["basis"] == "pixel threshold" and r["route"] == "model change"
    assert "80% of its 100 objects below 16 px" in r["remedy"]
    large = {"<8": 5, "8-16": 10, "16-32": 45, "32-96": 40}        # 15% below
    d = decide([cand(ots=with_sizes(fail, "recall.sku_a", large),
                     ft=with_sizes(fail, "recall.sku_a", large))], BAR)
    assert row(d, "nano", FINE_TUNED, SKU_A)["basis"] != "pixel threshold"
    # a size slice of the fine bins wholly below the threshold
    d = decide([cand(ots=with_sizes({}, "recall", {"8-16": 60}))], Bar(min_slice_recall=0.5))
    r = row(d, "nano", OFF_THE_SHELF, ("input_px_bin", "8-16", "recall"))
    assert r["status"] == "fail" and r["basis"] == "pixel threshold"


def test_same_failure_in_every_lighter_candidate_while_a_heavier_passes():
    fail = table({DIM: (0.30, 0.25, 0.35)})
    nano = cand("nano", ots=fail, size_rank=0)
    small = cand("small", ots=fail, size_rank=1)
    large = cand("large", ots=table(), size_rank=2, latency_p99_ms=60.0)
    d = decide([nano, small, large], BAR)
    r = row(d, "small", OFF_THE_SHELF, DIM)
    assert r["failure_kind"] == "architecture-bound" and r["basis"] == "capacity"
    assert "a heavier model (large, measured to pass this row" in r["remedy"]
    assert "every lighter candidate (nano)" in r["remedy"]
    assert d.overall.candidate == "large" and d.overall.verdict == SHIP
    # a lighter candidate that passes the row: no capacity evidence for the heavier ones
    d = decide([cand("nano", ots=table(), size_rank=0),
                cand("small", ots=fail, size_rank=1),
                cand("large", ots=table(), size_rank=2)], BAR)
    assert row(d, "small", OFF_THE_SHELF, DIM)["failure_kind"] == "unresolved"


def test_a_remedy_names_only_a_heavier_candidate_that_passes_within_the_budget():
    """yolov8n's architecture-bound rows once got "a heavier model (yolov8s)" while yolov8s was
    over the latency budget: the remedy names a heavier candidate only when it was measured to
    pass the row and fits the budget; otherwise it says what to try."""
    n = np.array([250.0, 500.0, 1000.0])
    flat = fit_learning_curve(n, [0.40, 0.40, 0.40], n_boot=0)  # levels off below 0.5
    fail = table({DIM: (0.40, 0.35, 0.45)})
    nano = cand("nano", ots=fail, ft=fail, size_rank=0, learning_curves={DIM: flat})
    slow = cand("large", ots=table(), size_rank=2, latency_p99_ms=400.0)   # budget 250
    d = decide([nano, slow], BAR)
    r = row(d, "nano", FINE_TUNED, DIM)
    assert r["failure_kind"] == "architecture-bound" and r["basis"] == "learning curve"
    assert "a heavier model (large" not in r["remedy"]
    assert ("no measured candidate passes this row within the 250 ms budget, large passes this "
            "row but its p99 400 ms is over budget, so try a higher input size, tiling or a "
            "heavier family that fits the budget") in r["remedy"]
    assert not any("a heavier model (large" in c for c in d.candidate("nano").replacement)
    # a heavier candidate that fails the row is no remedy either, even within budget
    weak = cand("mid", ots=fail, size_rank=1, latency_p99_ms=60.0)
    r = row(decide([nano, weak, slow], BAR), "nano", FINE_TUNED, DIM)
    assert "(mid" not in r["remedy"] and "no measured candidate passes this row" in r["remedy"]
    # one that passes it within budget is named, with its measured p99
    fast = cand("mid", ots=table(), size_rank=1, latency_p99_ms=90.0)
    d = decide([nano, fast, slow], BAR)
    r = row(d, "nano", FINE_TUNED, DIM)
    assert "a heavier model (mid, measured to pass this row at p99 90 ms within the 250 ms " \
           "budget)" in r["remedy"]
    assert any(c.startswith("a heavier model (mid") for c in d.candidate("nano").replacement)
    # two rows with the same evidence, one of which mid passes: the grouped changes never
    # propose mid for the row it fails
    bright = ("lighting", "bright", "recall")
    both = table({DIM: (0.40, 0.35, 0.45), bright: (0.40, 0.35, 0.45)})
    nano2 = cand("nano", ots=both, ft=both, size_rank=0,
                 learning_curves={DIM: flat, bright: flat})
    half = cand("mid", ots=table({bright: (0.40, 0.35, 0.45)}), size_rank=1,
                latency_p99_ms=90.0)
    changes = decide([nano2, half], BAR).candidate("nano").replacement
    named = [c for c in changes if "(mid" in c]
    assert named and all("lighting=bright" not in c for c in named), changes
    assert any("no measured candidate passes this row" in c and "lighting=bright" in c
               for c in changes), changes
    # the pixel threshold's remedy follows the same rule
    small = ("size_bin", "small", "recall")
    tiny = table({small: (0.2, 0.15, 0.25)})
    pix = cand("nano", ots=tiny, ft=tiny, size_rank=0, image_size=2560)
    r = row(decide([pix, slow], BAR), "nano", FINE_TUNED, small)
    assert r["basis"] == "pixel threshold" and "large" not in r["remedy"]
    assert "a higher input size (640) or tiling" in r["remedy"]
    r = row(decide([pix, cand("mid", ots=table(), size_rank=1, latency_p99_ms=90.0)], BAR),
            "nano", FINE_TUNED, small)
    assert "or mid (measured to pass this row within the 250 ms budget)" in r["remedy"]


def test_a_slice_without_a_size_breakdown_gets_its_objects_sizes_from_the_ground_truth():
    """An image slice (no size rows of its own) whose objects are mostly below the pixel
    threshold at input routes architecture-bound from the ground-truth sizes; one whose
    objects are large stays unresolved."""
    from preflight.decide.evidence import object_sizes_at_input

    images = pd.DataFrame({"image_id": [1, 2, 3], "width": [2560] * 3, "height": [1440] * 3,
                           "lighting": ["dim", "dim", "bright"]})
    # at input 320 (scale 1/8): 64 px -> 8 px, 96 -> 12, 400 -> 50
    boxes = pd.DataFrame({"image_id": [1, 1, 2, 3, 3], "class_name": ["a", "a", "b", "a", "b"],
                          "w": [64, 96, 400, 400, 400], "h": [64, 96, 400, 400, 400],
                          "iscrowd": [0, 0, 0, 0, 0]})
    sizes = object_sizes_at_input(images, boxes, 320)
    assert sizes["side_px"].round(3).tolist() == [8.0, 12.0, 50.0, 50.0, 50.0]
    fail = table({DIM: (0.30, 0.25, 0.35), ("lighting", "bright", "recall"): (0.3, 0.25, 0.35)})
    d = decide([cand(ots=fail, ft=fail, object_sizes=sizes)], BAR)
    r = row(d, "nano", FINE_TUNED, DIM)
    assert r["failure_kind"] == "architecture-bound" and r["basis"] == "pixel threshold"
    assert "67% of its 3 objects below 16 px at input 320 (ground-truth sizes at input)" \
        in r["remedy"]
    bright = row(d, "nano", FINE_TUNED, ("lighting", "bright", "recall"))
    assert bright["failure_kind"] == "unresolved"


# ------------------------------------------------------------------ look-alikes


def test_lookalike_finder_statuses_and_stated_pairs():
    both = pd.concat([confusion(0.40, 0.33, 0.47),
                      confusion(0.02, 0.01, 0.04, true="box", pred="pallet")])
    ft = pd.concat([confusion(0.03, 0.01, 0.06),
                    confusion(0.02, 0.01, 0.04, true="box", pred="pallet")])
    pairs = find_lookalikes(both, ft, threshold=0.1)
    assert pairs[["true_class", "pred_class"]].values.tolist() == [["sku_a", "sku_b"]]
    first = pairs.iloc[0]
    assert first["status"] == REMOVED and first["source"] == "confusion matrix"
    assert first["share_ots"] == 0.40 and first["ci_high_ft"] == 0.06
    # persisting; straddling the threshold after fine-tuning; no fine-tuned model at all
    assert find_lookalikes(both, confusion(0.3, 0.2, 0.4)).iloc[0]["status"] == PERSISTS
    assert find_lookalikes(both, confusion(0.12, 0.06, 0.2)).iloc[0]["status"] == OPEN
    assert find_lookalikes(both).iloc[0]["status"] == OPEN
    # a pair stated by hand is listed although its share is low
    stated = find_lookalikes(both, ft, pairs=[("pallet", "box")])
    assert ("box", "pallet", "settings", "not confused") in set(
        stated[["true_class", "pred_class", "source", "status"]].itertuples(index=False,
                                                                           name=None))
    assert find_lookalikes(None).empty
    with pytest.raises(ValueError, match="threshold"):
        find_lookalikes(both, threshold=1.5)
    with pytest.raises(ValueError, match="lacks columns"):
        find_lookalikes(both.drop(columns="share"))


def test_lookalike_removed_by_fine_tuning_is_data_solvable():
    pairs = find_lookalikes(confusion(0.40, 0.33, 0.47), confusion(0.03, 0.01, 0.06))
    d = decide([cand(ots=table({SKU_A: (0.30, 0.24, 0.36)}),
                     ft=table({SKU_A: (0.45, 0.41, 0.49)}), lookalikes=pairs)],
               Bar(min_improvement=0.5))      # the gain alone does not count here
    r = row(d, "nano", FINE_TUNED, SKU_A)
    assert r["failure_kind"] == "data-solvable" and r["basis"] == "look-alike removed"
    assert d.overall.verdict == COLLECT


def test_confusion_table_from_the_evaluation_feeds_the_finder():
    from preflight.metrics import EvaluationIndex, confusion_matrix

    gt_rows, dt_rows = [], []
    for i in range(12):
        for j in range(3):
            box = {"image_id": i, "x": 40.0 * j, "y": 0.0, "w": 20.0, "h": 20.0}
            gt_rows.append({**box, "class_id": 0})
            dt_rows.append({**box, "class_id": 1 if (i + j) % 3 == 0 else 0, "score": 0.9})
    index = EvaluationIndex.build(pd.DataFrame(gt_rows), pd.DataFrame(dt_rows),
                                  pd.DataFrame({"image_id": range(12)}),
                                  class_names={0: "a", 1: "b"})
    pairs = find_lookalikes(confusion_matrix(index, operating_threshold=0.25), threshold=0.2)
    assert pairs.iloc[0][["true_class", "pred_class"]].tolist() == ["a", "b"]
    assert pairs.iloc[0]["share_ots"] == pytest.approx(1 / 3)


# ------------------------------------------------------------------ evidence sufficiency


def test_an_operational_class_without_enough_evidence_blocks_ship_with_a_label_plan():
    d = decide([cand(ots=table({SKU_A: (0.66, 0.52, 0.80)}))], BAR)   # straddles 0.6
    v = d.candidate("nano")
    assert v.verdict == EVALUATE and d.overall.verdict == EVALUATE
    plan = v.label_plan[0]
    # half-width 0.14 against a gap of 0.06 from 200 frames: 200 * (0.14 / 0.06)^2 = 1089
    assert plan.startswith("class sku_a (recall): about 1089 frames (2178 boxes) in all")
    assert any(r.startswith("label: class sku_a (recall)") for r in d.overall.reasons)
    r = row(d, "nano", OFF_THE_SHELF, SKU_A)
    assert r["frames_needed"] == 1089 and r["boxes_needed"] == 2178


def test_critical_slices_need_evidence_others_do_not():
    straddle = table({DIM: (0.52, 0.45, 0.59)})
    assert decide([cand(ots=straddle)], BAR).overall.verdict == SHIP
    critical = Bar(min_recall=BAR.min_recall, min_slice_recall=0.5,
                   critical_slices=("lighting=dim",))
    d = decide([cand(ots=straddle)], critical)
    assert d.overall.verdict == EVALUATE
    assert d.candidate("nano").label_plan[0].startswith("lighting=dim (recall)")
    with pytest.raises(Exception, match="column=value"):
        Bar(critical_slices=("dim",))


# ------------------------------------------------------------------ stress


def stress_table(value_by_condition):
    rows = [{"family": "clean", "corruption": "none", "severity": 0, "metric": "recall",
             "value": 0.8, "rpc": 1.0}]
    rows += [{"family": f, "corruption": c, "severity": s, "metric": "recall", "value": v,
              "rpc": v / 0.8} for (f, c, s), v in value_by_condition.items()]
    return pd.DataFrame(rows)


def test_stress_at_the_expected_severity_blocks_shipping_off_the_shelf():
    stress = stress_table({("distribution_shift", "jpeg", 1): 0.7,
                           ("distribution_shift", "jpeg", 2): 0.4,
                           ("adversarial", "fog", 3): 0.3})
    expected = Bar(min_recall=BAR.min_recall, expected_severity={"distribution_shift": 2})
    d = decide([cand(stress=stress)], expected)
    v = d.candidate("nano")
    assert v.verdict != SHIP
    assert v.stress_blocking == ("distribution_shift/jpeg severity 2: recall 0.40 < 0.60",)
    assert v.stress_risks == ("adversarial/fog severity 3: recall 0.30 < 0.60",)
    # nothing expected: the same failures are risks only, and it ships
    d = decide([cand(stress=stress)], BAR)
    assert d.overall.verdict == SHIP and len(d.candidate("nano").stress_risks) == 2


# ------------------------------------------------------------------ close rows


def test_fine_tuned_rows_near_the_bar_are_named_as_close():
    ots = table({DIM: (0.30, 0.25, 0.35)})
    d = decide([cand(ots=ots, ft=table({DIM: (0.56, 0.52, 0.60)}))], BAR)   # bar 0.5
    assert bool(row(d, "nano", FINE_TUNED, DIM)["close"])
    assert not bool(row(d, "nano", OFF_THE_SHELF, DIM)["close"])
    assert any("close to the bar" in r and "lighting=dim" in r for r in d.overall.reasons)
    d = decide([cand(ots=ots, ft=table({DIM: (0.75, 0.70, 0.80)}))], BAR)
    assert not d.slices["close"].any()
    # a close row that failed off-the-shelf is routed uncertain, not data-solvable (fixed)
    r = row(decide([cand(ots=ots, ft=table({DIM: (0.56, 0.52, 0.60)}))], BAR), "nano",
            OFF_THE_SHELF, DIM)
    assert r["failure_kind"] == "uncertain" and r["route"] == "re-run first"
    assert "another seed" in r["remedy"]


def test_a_second_seed_routes_close_rows_only_when_both_runs_agree():
    """decision.second_seed: a close row is routed like any other when the second fine-tuning
    run agrees on its pass/fail, and stays uncertain (naming both runs) when it does not."""
    ots = table({DIM: (0.30, 0.25, 0.35)})
    ft = table({DIM: (0.56, 0.52, 0.60)})           # passes, but within 0.03 of the bar 0.5
    agree = decide([cand(ots=ots, ft=ft, second_seed=1,
                         finetuned_second_seed=table({DIM: (0.58, 0.53, 0.62)}))], BAR)
    r = row(agree, "nano", FINE_TUNED, DIM)
    assert r["failure_kind"] == "data-solvable" and r["basis"] == "fixed by fine-tuning"
    assert "a second fine-tuning run (seed 1) agrees: pass at 0.58" in r["remedy"]
    assert agree.candidate("nano").verdict == FINE_TUNE
    differ = decide([cand(ots=ots, ft=ft, second_seed=1,
                          finetuned_second_seed=table({DIM: (0.40, 0.36, 0.44)}))], BAR)
    r = row(differ, "nano", FINE_TUNED, DIM)
    assert r["failure_kind"] == "uncertain" and r["basis"] == "seeds disagree"
    assert "fails with seed 1 at 0.40" in r["remedy"]
    # without a second run the close row is uncertain, asking for one
    r = row(decide([cand(ots=ots, ft=ft)], BAR), "nano", FINE_TUNED, DIM)
    assert r["basis"] == "close to the bar" and "decision.second_seed" in r["remedy"]


def test_close_rows_are_what_a_second_run_settles():
    from preflight.decide.candidate_tables import close_rows

    t = table({DIM: (0.56, 0.52, 0.60), SKU_A: (0.30, 0.25, 0.35)})
    assert [tuple(k) for k in close_rows(t, BAR)[["slice_column", "slice_value", "metric"]]
            .itertuples(index=False)] == [DIM]


# ------------------------------------------------------------------ sentences agree with counts


def _check_sentences(d):
    for v in d.candidates:
        for text in v.reasons:
            m = re.search(r"(\d+) row\(s\) fail\b", text)
            if m and "off-the-shelf" not in text:
                assert int(m.group(1)) == v.n_fail, text
            m = re.search(r"all (\d+) failing row\(s\) are data-solvable(?: \((\d+) of them "
                          r"sized)?", text)
            if m:
                assert int(m.group(1)) == v.n_fail == v.n_data_solvable, text
                rows = d.slices[(d.slices["candidate"] == v.name)
                                & (d.slices["stage"] == v.stage)
                                & (d.slices["status"] == "fail")]
                assert int(m.group(2) or 0) == int(rows["images_needed"].notna().sum()), text
            m = re.search(r"(\d+) failing row\(s\) are within the training noise", text)
            if m:
                assert int(m.group(1)) == v.n_uncertain, text
            m = re.search(r"(\d+) failing row\(s\) have no decisive evidence for a route",
                          text)
            if m:
                assert int(m.group(1)) == v.n_unresolved, text
            if "no row has enough evidence" in text and text.startswith("off-the-shelf"):
                assert "row(s) fail" not in text, text
    o = d.overall
    for text in o.reasons:
        m = re.search(r"(\S+) \((\d+) failing row\(s\)(?:: ([^)]*))?\)", text)
        if m:
            v = d.candidate(m.group(1))
            assert failing_counts(v) == f"{m.group(2)} failing row(s)" + (
                f": {m.group(3)}" if m.group(3) else ""), text
        m = re.search(r"no candidate ships(?: yet)?; (?:closest: )?(\S+) \(?(?:has )?no "
                      r"failing row", text)
        if m:
            assert d.candidate(m.group(1)).n_fail == 0, text
        m = re.search(r"fine-tuned row\(s\) are close to the bar.*; of them (\d+) routed "
                      r"uncertain", text)
        if m:
            close = d.slices[d.slices["close"].astype(bool)]
            assert int(m.group(1)) == int((close["failure_kind"] == "uncertain").sum()), text
    # a data-solvable row never needs more than the labelling budget
    solvable = d.slices[d.slices["failure_kind"] == "data-solvable"]
    for remedy in solvable["remedy"]:
        assert "exceeds the budget" not in remedy and "over the labelling" not in remedy, remedy
        assert "no failure is data-solvable" not in text
        assert "whose failures are data-solvable" not in text


@pytest.mark.parametrize("build", [
    lambda: [cand(ots=table({DIM: (0.30, 0.25, 0.35)}))],
    lambda: [cand(ots=table({DIM: (0.2, 0.1, 0.3), SKU_A: (0.1, 0.05, 0.2)}),
                  ft=table({DIM: (0.45, 0.4, 0.48), SKU_A: (0.12, 0.06, 0.2)}))],
    lambda: [cand(ots=table(thin=set(table()[["slice_column", "slice_value", "metric"]]
                                     .itertuples(index=False, name=None))))],
    lambda: [cand(no_analog_classes=("sku_new",))],
    lambda: [cand(ots=table({("size_bin", "small", "recall"): (0.2, 0.1, 0.3)}),
                  ft=table({("size_bin", "small", "recall"): (0.2, 0.1, 0.3)}),
                  image_size=2560),
             cand("b", size_rank=1, ots=table({DIM: (0.3, 0.2, 0.4)}))],
    lambda: [cand(latency_p99_ms=900.0)],
    # one row just under the bar after fine-tuning (uncertain), one far under it (unresolved)
    lambda: [cand(ots=table({DIM: (0.2, 0.1, 0.3), SKU_A: (0.1, 0.05, 0.2)}),
                  ft=table({DIM: (0.49, 0.47, 0.495), SKU_A: (0.12, 0.06, 0.2)}))],
    # learning curves beyond the labelling budget: at both ends (architecture-bound) and only
    # at the estimate (unresolved); one within it (data-solvable)
    lambda: [cand(ots=table({DIM: (0.3, 0.25, 0.35)}), ft=table({DIM: (0.42, 0.39, 0.45)}),
                  finetune_pool_images=1000, learning_curves={DIM: _curve((0.56, 0.55, 0.52))})],
    lambda: [cand(ots=table({DIM: (0.3, 0.25, 0.35)}), ft=table({DIM: (0.42, 0.39, 0.45)}),
                  finetune_pool_images=1000, learning_curves={DIM: _curve((0.6, 0.55, 0.52))})],
    lambda: [cand(ots=table({DIM: (0.3, 0.25, 0.35)}), ft=table({DIM: (0.42, 0.39, 0.45)}),
                  finetune_pool_images=1000, learning_curves={DIM: _curve((0.62,), a=0.6)})],
    # a close row a second run agrees on, beside one it does not
    lambda: [cand(ots=table({DIM: (0.3, 0.25, 0.35), SKU_A: (0.3, 0.25, 0.35)}),
                  ft=table({DIM: (0.56, 0.52, 0.60), SKU_A: (0.64, 0.61, 0.67)}),
                  second_seed=1, finetuned_second_seed=table({DIM: (0.58, 0.53, 0.62),
                                                              SKU_A: (0.55, 0.50, 0.59)}))],
])
def test_reasons_never_contradict_the_counts(build):
    d = decide(build(), BAR)
    _check_sentences(d)
    for v in d.candidates:
        assert v.n_fail == (v.n_data_solvable + v.n_architecture_bound + v.n_unresolved
                            + v.n_uncertain)
    if d.overall.verdict == REPLACE:
        assert "no candidate ships; closest" in d.overall.reasons[0]


def _curve(a_samples=(), a=0.55):
    """``a - 4 n^-0.5`` over 1000 images with bootstrap replicates of ``a``."""
    from preflight.decide.learning_curve import LearningCurveFit

    return LearningCurveFit(a=a, b=4.0, c=0.5, n_points=3, n_max=1000.0, saturated=False,
                            method="curve_fit",
                            samples=tuple((x, 4.0, 0.5) for x in a_samples for _ in range(10)))


def test_the_close_rows_sentence_counts_each_route():
    ots = table({DIM: (0.3, 0.25, 0.35), SKU_A: (0.3, 0.25, 0.35)})
    ft = table({DIM: (0.56, 0.52, 0.60), SKU_A: (0.64, 0.61, 0.67)})
    second = table({DIM: (0.58, 0.53, 0.62), SKU_A: (0.55, 0.50, 0.59)})
    d = decide([cand(ots=ots, ft=ft, second_seed=1, finetuned_second_seed=second)], BAR)
    (text,) = [r for r in d.overall.reasons if "are close to the bar" in r]
    assert text.startswith("2 fine-tuned row(s) are close to the bar")
    assert text.endswith("of them 1 routed uncertain (re-run first), not data-solvable or "
                         "architecture-bound, 1 routed by their evidence, as a second "
                         "fine-tuning run agrees on their pass/fail")


def test_thirteen_failing_rows_and_no_passing_row_says_so_once():
    # every row fails: the old text said "13 row(s) fail; no row has enough evidence"
    bad = {k: (0.05, 0.01, 0.1) for k in table()[["slice_column", "slice_value", "metric"]]
           .itertuples(index=False, name=None)}
    d = decide([cand(ots=table(bad), ft=table(bad))], BAR)
    _check_sentences(d)
    first = d.candidate("nano").reasons[0]
    assert first.startswith("off-the-shelf does not ship: 9 row(s) fail")
    assert "no row has enough evidence" not in first
    assert np.isnan(d.candidate("nano").images_needed)
