"""Label validation: the Great Expectations suites, quarantine policy and the failure threshold."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from preflight.data.errors import QUARANTINE_COLUMNS, LabelValidationError
from preflight.data.ingest import ingest
from preflight.data.validate import EXPECTATION_COLUMNS, validate_labels
from preflight.synth.scene import SYNTH_TAXONOMY as DEFAULT_TAXONOMY

REQUIRED = {"camera": None, "shift": {"day", "night"}}


def landing(root: Path, n: int = 5, *, duplicate: bool = False) -> Path:
    (root / "labels").mkdir(parents=True)
    (root / "images").mkdir()
    rows = []
    for i in range(n):
        img = np.full((64, 64, 3), 40 + 30 * i, np.uint8)
        cv2.rectangle(img, (5 + i, 5), (30, 40), (200, 10, 10), -1)
        cv2.imwrite(str(root / "images" / f"im{i}.jpg"), img)
        (root / "labels" / f"im{i}.txt").write_text("0 0.5 0.5 0.25 0.5\n3 0.2 0.2 0.1 0.1\n")
        rows.append({"file_name": f"im{i}.jpg", "camera": "c1",
                     "shift": "day" if i % 2 else "night"})
    if duplicate:
        (root / "images" / "copy.jpg").write_bytes((root / "images" / "im0.jpg").read_bytes())
        (root / "labels" / "copy.txt").write_text("1 0.5 0.5 0.2 0.2\n")
        rows.append({"file_name": "copy.jpg", "camera": "c1", "shift": "day"})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def run(root: Path, **kw):
    res = ingest(root, taxonomy=DEFAULT_TAXONOMY)
    kw.setdefault("required_columns", REQUIRED)
    return res, validate_labels(res.images, res.boxes, prior_quarantine=res.quarantine, **kw, taxonomy=DEFAULT_TAXONOMY)


def test_clean_sample_passes_and_reports_expectations(tmp_path):
    res, val = run(landing(tmp_path / "ok"))
    assert val.quarantine.empty and list(val.quarantine.columns) == list(QUARANTINE_COLUMNS)
    s = val.stats
    assert (s["images_in"], s["images_valid"], s["images_quarantined"]) == (5, 5, 0)
    assert (s["boxes_in"], s["boxes_valid"], s["boxes_quarantined"]) == (10, 10, 0)
    assert s["passed"] and s["reasons"] == {} and s["expectations_failed"] == 0
    ex = val.expectations
    assert list(ex.columns) == list(EXPECTATION_COLUMNS)
    assert ex["success"].all() and (ex["unexpected_count"] == 0).all()
    names = set(ex["expectation"])
    assert {"expect_column_values_to_be_in_set", "expect_column_values_to_be_between",
            "expect_column_values_to_be_unique", "expect_column_to_exist",
            "expect_compound_columns_to_be_unique"} <= names
    assert {"camera", "shift", "decode_ok", "class_id", "right_margin"} <= set(ex["column"])
    pd.testing.assert_frame_equal(val.images, res.images)


def test_bad_boxes_are_quarantined_one_by_one(tmp_path):
    res = ingest(landing(tmp_path / "boxes", n=6), taxonomy=DEFAULT_TAXONOMY)
    b = res.boxes.copy()
    b.loc[0, "class_id"] = 9
    b.loc[1, "x"] = 60.0  # x + w beyond 64
    b.loc[2, "h"] = -3.0
    b.loc[3, "y"] = -8.0
    b.loc[4, "occluded"] = 1.5
    b = pd.concat([b, b.iloc[[5]].assign(box_id=999)], ignore_index=True)
    val = validate_labels(res.images, b, required_columns=REQUIRED, max_invalid_fraction=0.5, taxonomy=DEFAULT_TAXONOMY)
    q = val.quarantine.set_index("line")
    codes = sorted(val.quarantine["reason_code"])
    assert codes == sorted(["unknown_class_id", "out_of_bounds", "non_positive_size",
                            "negative_coordinate", "bad_value", "duplicate_box"])
    assert (val.quarantine["level"] == "box").all()
    assert (val.quarantine["stage"] == "validation").all()
    assert "labels/im0.txt line 1: class id 9 not in taxonomy (0-6)" in set(q["reason"])
    s = val.stats
    assert s["boxes_in"] == 13 == s["boxes_valid"] + s["boxes_quarantined"]
    assert s["images_valid"] == 6 and s["reasons"]["duplicate_box"] == 1
    assert len(val.boxes) == 7 and 999 not in set(val.boxes["box_id"])  # first copy kept
    failed = val.expectations.loc[~val.expectations["success"], "reason_code"]
    assert set(failed) == set(codes)


def test_undecodable_image_quarantines_its_boxes(tmp_path):
    root = landing(tmp_path / "undec", n=5)
    (root / "images" / "im2.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")  # cut-short JPEG
    res, val = run(root, max_invalid_fraction=0.5)
    q = val.quarantine
    img_row = q[q["level"] == "image"].iloc[0]
    assert img_row["reason_code"] == "truncated_image" and img_row["source"] == "images/im2.jpg"
    box_rows = q[q["level"] == "box"]
    assert len(box_rows) == 2 and set(box_rows["reason_code"]) == {"image_quarantined"}
    assert "im2.jpg" not in set(val.images["file_name"])
    s = val.stats
    assert s["images_in"] == 5 == s["images_valid"] + s["images_quarantined"]
    assert s["boxes_in"] == 10 == s["boxes_valid"] + s["boxes_quarantined"]
    # the slice checks skip undecodable rows, so only the decode expectation fails
    assert val.stats["failed_expectations"] == ["images.expect_column_values_to_be_in_set(decode_ok)"]


def test_duplicate_image_content_keeps_the_first(tmp_path):
    _, val = run(landing(tmp_path / "dup", n=5, duplicate=True), max_invalid_fraction=0.5)
    q = val.quarantine
    assert q[q["level"] == "image"]["reason_code"].tolist() == ["duplicate_image"]
    # tables are in file-name order, so copy.jpg (first) is kept and im0.jpg quarantined
    assert q[q["level"] == "image"]["source"].tolist() == ["images/im0.jpg"]
    assert "copy.jpg" in set(val.images["file_name"]) and val.images["image_id"].is_unique
    boxes_q = q[q["level"] == "box"]
    assert boxes_q["source"].tolist() == ["labels/im0.txt"] * 2
    assert set(boxes_q["reason_code"]) == {"image_quarantined"}
    assert (val.boxes["file_name"] == "copy.jpg").sum() == 1


def test_slice_values_and_missing_columns(tmp_path):
    root = landing(tmp_path / "slices", n=6)
    meta = pd.read_csv(root / "metadata.csv")
    meta.loc[0, "shift"] = "evening"
    meta.loc[1, "camera"] = None
    meta.to_csv(root / "metadata.csv", index=False)
    _, val = run(root, max_invalid_fraction=0.5)
    reasons = val.stats["reasons"]
    assert reasons["bad_slice_value"] == 1 and reasons["missing_slice_value"] == 1
    assert reasons["image_quarantined"] == 4
    msg = val.quarantine.loc[val.quarantine["reason_code"] == "bad_slice_value", "reason"].iloc[0]
    assert msg == "images/im0.jpg: shift 'evening' not in ['day', 'night']"
    # a required column that does not exist fails every image -> the run fails
    with pytest.raises(LabelValidationError) as info:
        run(root, required_columns={"site": None})
    assert "missing_column (6" in str(info.value)
    assert info.value.stats["images_valid"] == 0


def test_threshold_decides_failure_and_names_worst_reasons(tmp_path):
    res = ingest(landing(tmp_path / "thr", n=5), taxonomy=DEFAULT_TAXONOMY)
    b = res.boxes.copy()
    b.loc[[0, 2, 4], "class_id"] = 8
    with pytest.raises(LabelValidationError) as info:
        validate_labels(res.images, b, required_columns=REQUIRED, max_invalid_fraction=0.2, taxonomy=DEFAULT_TAXONOMY)
    text = str(info.value)
    assert "unknown_class_id (3" in text and "30%" in text and "class id 8" in text
    assert info.value.stats["boxes_quarantined"] == 3
    ok = validate_labels(res.images, b, required_columns=REQUIRED, max_invalid_fraction=0.3, taxonomy=DEFAULT_TAXONOMY)
    assert ok.stats["passed"] and ok.stats["invalid_fraction"] == pytest.approx(0.3)
    soft = validate_labels(res.images, b, required_columns=REQUIRED, max_invalid_fraction=0.1,
                           raise_on_failure=False, taxonomy=DEFAULT_TAXONOMY)
    assert not soft.stats["passed"]
    with pytest.raises(LabelValidationError, match="no images"):
        validate_labels(res.images.iloc[0:0], b.iloc[0:0], taxonomy=DEFAULT_TAXONOMY)


def test_contract_shaped_sample_is_clean(tmp_path):
    """The generator's layout (YOLO + COCO + metadata.parquet, docs/CONTRACTS.md), hand-made."""
    root = tmp_path / "contract"
    (root / "labels").mkdir(parents=True)
    images, anns, meta = [], [], []
    for i in range(8):
        img = np.full((64, 64, 3), 60 + 20 * i, np.uint8)
        cv2.circle(img, (20 + i, 30), 9, (10, 200, 30), -1)
        (root / "images").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "images" / f"w1_{i:03d}.jpg"), img)
        (root / "labels" / f"w1_{i:03d}.txt").write_text(
            f"4 {(20 + i) / 64} 0.46875 0.28125 0.28125\n")
        images.append({"id": i, "file_name": f"w1_{i:03d}.jpg", "width": 64, "height": 64})
        anns.append({"id": i, "image_id": i, "category_id": 4, "bbox": [11 + i, 21, 18, 18],
                     "area": 324.0, "iscrowd": 0, "truncated": False, "occluded": 0.0})
        meta.append({"file_name": f"w1_{i:03d}.jpg", "image_id": i, "site": "s1",
                     "camera": f"cam{i % 2}", "shift": ["day", "night"][i // 4],
                     "captured_at": pd.Timestamp("2024-01-01") + pd.Timedelta(hours=i),
                     "week": 1, "lighting": "normal", "blur": "none", "lens": "clean",
                     "colour_cast": bool(i % 2), "noise": False, "jpeg_quality": 90,
                     "flicker": False, "profile": "production"})
    cats = [{"id": k, "name": n} for k, n in enumerate(("person", "forklift", "pallet", "box",
                                                          "sku_a", "sku_b", "sku_new"))]
    (root / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": cats}))
    pd.DataFrame(meta).to_parquet(root / "metadata.parquet")
    res = ingest(root, taxonomy=DEFAULT_TAXONOMY)
    val = validate_labels(res.images, res.boxes, prior_quarantine=res.quarantine,
                          required_columns={"camera": None, "shift": {"day", "night"},
                                            "lighting": {"bright", "normal", "dim"}}, taxonomy=DEFAULT_TAXONOMY)
    assert res.stats["format"] == "coco" and res.quarantine.empty and val.quarantine.empty
    assert len(res.stats["derived_slices"]) == 4  # pixel slices always, beside the metadata
    assert res.images["meta_colour_cast"].tolist() == [bool(i % 2) for i in range(8)]
    assert res.images["colour_cast"].dtype == float  # the pixel property keeps its name
    assert res.stats["strata_columns"] == ["brightness_bin"]  # none given: the pixel bin
    assert ingest(root, taxonomy=DEFAULT_TAXONOMY, strata=("camera", "shift")
                  ).stats["strata_columns"] == ["camera", "shift"]
    yolo = ingest(root, fmt="yolo", taxonomy=DEFAULT_TAXONOMY)  # the same boxes from the YOLO labels
    cols = ["image_id", "file_name", "class_id", "x", "y", "w", "h", "area", "size_bin"]
    pd.testing.assert_frame_equal(yolo.boxes[cols], res.boxes[cols], check_exact=False)
    assert yolo.images["split"].tolist() == res.images["split"].tolist()


@pytest.mark.skipif(importlib.util.find_spec("preflight.synth.generate") is None,
                    reason="preflight.synth.generate not written yet")
def test_generated_production_sample_is_clean(tmp_path):
    from preflight.synth.generate import generate

    generate(tmp_path / "synth", profile="production", n=30, weeks=2, seed=0, image_size=128)
    res = ingest(tmp_path / "synth", taxonomy=DEFAULT_TAXONOMY)
    val = validate_labels(res.images, res.boxes, prior_quarantine=res.quarantine,
                          required_columns={"camera": None, "shift": {"day", "night"},
                                            "lighting": {"bright", "normal", "dim"}}, taxonomy=DEFAULT_TAXONOMY)
    assert res.quarantine.empty, res.quarantine["reason"].tolist()[:5]
    assert val.quarantine.empty, val.quarantine["reason"].tolist()[:5]
    assert val.stats["images_valid"] == 30 and val.stats["passed"]
    assert len(val.boxes) > 0 and set(val.images["split"]) == {"finetune", "eval"}
