"""Bad input never crashes ingestion: each case ends in quarantine with a clear reason.

The landing folders here are hand-made; one pipeline run (ingest + validate) must account for
every image and label line: found = valid + quarantined.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from preflight.data.errors import IngestError
from preflight.data.ingest import ingest
from preflight.data.validate import validate_labels
from preflight.synth.scene import SYNTH_TAXONOMY as DEFAULT_TAXONOMY

NAMES_YAML = "names: [" + ", ".join(DEFAULT_TAXONOMY.names) + "]\n"


def jpeg(level: int = 120, seed: int = 0) -> bytes:
    img = np.full((64, 64, 3), level, np.uint8)
    img[10:30, 10:30] = np.random.default_rng(seed).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def pipeline(root: Path, **kw):
    res = ingest(root, **kw, taxonomy=DEFAULT_TAXONOMY)
    val = validate_labels(res.images, res.boxes, prior_quarantine=res.quarantine,
                          max_invalid_fraction=1.0, taxonomy=DEFAULT_TAXONOMY)
    return res, val


def codes_for(q: pd.DataFrame, source: str) -> list[str]:
    return q.loc[q["source"] == source, "reason_code"].tolist()


@pytest.fixture(scope="module")
def yolo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_yolo")
    images, labels = root / "images", root / "labels"
    images.mkdir()
    labels.mkdir()
    (root / "data.yaml").write_text(NAMES_YAML)
    good = jpeg(seed=1)
    (images / "ok.jpg").write_bytes(good)
    # CRLF line endings and a UTF-8 BOM are read normally
    (labels / "ok.txt").write_bytes("\ufeff0 0.5 0.5 0.2 0.2\r\n1 0.3 0.3 0.1 0.1\r\n".encode())
    (images / "trunc.jpg").write_bytes(jpeg(seed=2)[:200])
    (labels / "trunc.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (images / "zero.jpg").write_bytes(b"")
    (images / "notimg.jpg").write_bytes(b"this is a text file, not a JPEG\n" * 20)
    (images / "background.jpg").write_bytes(jpeg(seed=3))  # no label file: zero boxes
    (images / "lines.jpg").write_bytes(jpeg(seed=4))
    (labels / "lines.txt").write_bytes("\n".join([
        "0 0.5 0.5 0.2 0.2",      # 1 ok
        "0 nan 0.5 0.2 0.2",      # 2 NaN
        "0 -0.5 0.5 0.2 0.2",     # 3 negative
        "0 1.5 0.5 0.2 0.2",      # 4 out of range
        "9 0.5 0.5 0.1 0.1",      # 5 unknown class id
        "0 0.5 0.5",              # 6 wrong column count
        "0 0.5 0.5 0.2 0.2",      # 7 duplicate of line 1
        "x 0.5 0.5 0.1 0.1",      # 8 class not a number
        "0 0.5 0.5 abc 0.1",      # 9 coordinate not a number
        "0 0.5 0.5 0 0.1",        # 10 zero width
        "",                       # 11 blank: ignored
        "0 0.5 0.5 0.2 0.2 0.9",  # 12 too many columns
        "2.5 0.5 0.5 0.1 0.1",    # 13 fractional class id
    ]).encode() + b"\r\n")
    (labels / "orphan.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (images / "notes.txt").write_text("not an image type")
    outside = tmp_path_factory.mktemp("outside") / "secret.jpg"
    outside.write_bytes(jpeg(seed=5))
    (images / "escape.jpg").symlink_to(outside)
    res, val = pipeline(root)
    return root, res, val


@pytest.mark.parametrize(("source", "line", "code"), [
    ("images/trunc.jpg", None, "truncated_image"),
    ("images/zero.jpg", None, "empty_file"),
    ("images/notimg.jpg", None, "undecodable_image"),
    ("images/escape.jpg", None, "path_escape"),
    ("images/notes.txt", None, "unsupported_file"),
    ("labels/orphan.txt", None, "orphan_label"),
    ("labels/trunc.txt", 1, "image_quarantined"),
    ("labels/lines.txt", 2, "nan_coordinate"),
    ("labels/lines.txt", 3, "negative_coordinate"),
    ("labels/lines.txt", 4, "out_of_bounds"),
    ("labels/lines.txt", 5, "unknown_class_id"),
    ("labels/lines.txt", 6, "wrong_column_count"),
    ("labels/lines.txt", 7, "duplicate_box"),
    ("labels/lines.txt", 8, "bad_class_id"),
    ("labels/lines.txt", 9, "bad_number"),
    ("labels/lines.txt", 10, "non_positive_size"),
    ("labels/lines.txt", 12, "wrong_column_count"),
    ("labels/lines.txt", 13, "bad_class_id"),
])
def test_each_bad_yolo_input_has_its_reason(yolo_run, source, line, code):
    _, _, val = yolo_run
    q = val.quarantine
    rows = q[(q["source"] == source) & (q["line"].isna() if line is None else q["line"] == line)]
    assert rows["reason_code"].tolist() == [code], q[["source", "line", "reason_code"]]
    reason = rows["reason"].iloc[0]
    assert reason.startswith(source if line is None else f"{source} line {line}:"), reason


def test_bad_yolo_books_balance(yolo_run):
    root, res, val = yolo_run
    q = val.quarantine
    msg = q.loc[(q["source"] == "labels/lines.txt") & (q["line"] == 5), "reason"].iloc[0]
    assert msg == "labels/lines.txt line 5: class id 9 not in taxonomy (0-6)"
    valid = set(val.images["file_name"])
    assert valid == {"ok.jpg", "background.jpg", "lines.jpg"}
    assert len(val.boxes[val.boxes["file_name"] == "ok.jpg"]) == 2  # CRLF + BOM read fine
    assert (val.boxes["file_name"] == "background.jpg").sum() == 0
    assert len(val.boxes[val.boxes["file_name"] == "lines.jpg"]) == 1
    s = val.stats
    # ok, trunc, zero, notimg, background, lines, escape (notes.txt is not an image)
    assert s["images_in"] == 7 == s["images_valid"] + s["images_quarantined"]
    # ok 2 + trunc 1 + lines 12 non-blank (orphan's line is a file-level row)
    assert s["boxes_in"] == 15 == s["boxes_valid"] + s["boxes_quarantined"]
    assert res.stats["images_found"] == res.stats["images_ingested"] + res.stats[
        "images_quarantined"]
    assert set(q["stage"]) == {"ingestion", "validation"}
    assert not (root / "images" / "escape.jpg").resolve().is_relative_to(root.resolve())
    assert "secret" not in " ".join(res.images["path"])


def test_unknown_class_name_in_data_yaml(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "data.yaml").write_text("names:\n  0: person\n  1: cat\n")
    (tmp_path / "images" / "a.jpg").write_bytes(jpeg())
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n"
                                               "2 0.5 0.5 0.2 0.2\n")
    res, val = pipeline(tmp_path)
    q = val.quarantine.set_index("line")
    assert q.loc[2, "reason_code"] == "unknown_class"
    assert "'cat'" in q.loc[2, "reason"]
    assert q.loc[3, "reason_code"] == "unknown_class_id"
    assert q.loc[3, "reason"] == "labels/a.txt line 3: class id 2 not in data.yaml names (0-1)"
    assert val.boxes["class_name"].tolist() == ["person"]
    (tmp_path / "data.yaml").write_text("names: [unclosed\n")
    with pytest.raises(IngestError, match=r"^data.yaml: cannot read the class names \(expected "
                                          r"',' or '\]', but got '<stream end>' at line 2"):
        pipeline(tmp_path)  # ids guessed as taxonomy ids could mislabel every box: stop


def test_bad_coco_json(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(jpeg(seed=1))
    (tmp_path / "images" / "b.jpg").write_bytes(jpeg(seed=2))
    (tmp_path.parent / "outside.jpg").write_bytes(jpeg(seed=3))
    cats = [{"id": i, "name": n} for i, n in enumerate(DEFAULT_TAXONOMY.names)]
    coco = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 64, "height": 64},
            {"id": 2, "file_name": "../outside.jpg"},
            {"id": 3, "file_name": "/etc/passwd"},
            {"id": 4},
            {"id": 5, "file_name": "nope.jpg"},
            {"id": 6, "file_name": "b.jpg", "width": 100, "height": 64},
            {"id": 1, "file_name": "b.jpg"},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 0, "bbox": [1, 2, 10, 10]},
            {"id": 11, "image_id": 99, "category_id": 0, "bbox": [1, 2, 10, 10]},
            {"id": 12, "image_id": 1, "category_id": 0},
            {"id": 13, "image_id": 2, "category_id": 0, "bbox": [1, 2, 10, 10]},
            {"id": 14, "image_id": 1, "category_id": 0, "bbox": "wide"},
            {"id": 15, "image_id": 1, "category_id": 42, "bbox": [1, 2, 10, 10]},
            {"id": 16, "image_id": 1, "category_id": 0, "bbox": [1, 2, float("nan"), 10]},
            {"id": 17, "image_id": 6, "category_id": 0, "bbox": [1, 2, 10, 10]},
            {"id": 18, "image_id": 1, "category_id": 0, "bbox": [60, 2, 10, 10]},
            {"image_id": 1, "category_id": 1, "bbox": [20, 20, 5, 5]},  # no id: "#9"
            {"id": 19, "image_id": [1], "category_id": 0, "bbox": [1, 2, 10, 10]},
        ],
        "categories": cats,
    }
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    res, val = pipeline(tmp_path)
    q = val.quarantine
    by = dict(zip(q["reason"].str.extract(r"^(\S+ (?:annotation|image) \S+)")[0].fillna(
        q["source"]), q["reason_code"], strict=True))
    assert codes_for(q, "../outside.jpg") == ["path_escape"]
    assert codes_for(q, "/etc/passwd") == ["path_escape"]
    assert by["annotations.json annotation 11:"] == "unknown_image_id"
    assert by["annotations.json annotation 12:"] == "coco_missing_key"
    assert by["annotations.json annotation 13:"] == "image_quarantined"
    assert by["annotations.json annotation 14:"] == "coco_bad_value"
    assert by["annotations.json annotation 15:"] == "unknown_class_id"
    assert by["annotations.json annotation 16:"] == "nan_coordinate"
    assert by["annotations.json annotation 17:"] == "image_quarantined"
    assert by["annotations.json annotation 18:"] == "out_of_bounds"
    assert set(q.loc[q["level"] == "image", "reason_code"]) == {
        "path_escape", "coco_missing_key", "missing_image", "size_mismatch", "duplicate_coco_id"}
    assert by["annotations.json annotation 19:"] == "unknown_image_id"
    assert val.images["file_name"].tolist() == ["a.jpg"]
    assert val.boxes["source_box_id"].tolist() == ["10", "#9"]  # mixed ids become strings
    s = val.stats
    assert s["images_in"] == 7 == s["images_valid"] + s["images_quarantined"]
    assert s["boxes_in"] == 11 == s["boxes_valid"] + s["boxes_quarantined"]
    for name, table in (("images", res.images), ("boxes", res.boxes), ("q", val.quarantine),
                        ("expectations", val.expectations)):
        table.to_parquet(tmp_path / f"{name}.parquet")  # the caller writes Parquet
        assert len(pd.read_parquet(tmp_path / f"{name}.parquet")) == len(table)


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", r"^annotations.json: cannot be read as JSON \(JSONDecodeError"),
    (b"\xff\xfe\x00garbage", r"^annotations.json: cannot be read as JSON \(UnicodeDecodeError"),
    (b'{"images": []}', r"^annotations.json: a COCO file needs list-valued top-level keys"),
])
def test_unreadable_coco_file_stops_the_run(tmp_path, content, message):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(jpeg())
    (tmp_path / "annotations.json").write_bytes(content)
    with pytest.raises(IngestError, match=message) as err:
        ingest(tmp_path, fmt="coco", taxonomy=DEFAULT_TAXONOMY)
    assert "\n" not in str(err.value)
    # a labels/ folder beside it does not make Preflight silently read YOLO instead
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(IngestError, match=message):
        ingest(tmp_path, taxonomy=DEFAULT_TAXONOMY)
    assert ingest(tmp_path, fmt="yolo", taxonomy=DEFAULT_TAXONOMY).stats["format"] == "yolo"  # unless asked to


def test_unreadable_metadata_stops_the_run(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(jpeg())
    (tmp_path / "metadata.parquet").write_bytes(b"PAR1 definitely not parquet")
    with pytest.raises(IngestError, match=r"^metadata.parquet: the metadata table cannot be "
                                          r"read \(") as err:
        ingest(tmp_path, taxonomy=DEFAULT_TAXONOMY)
    assert "\n" not in str(err.value)
    (tmp_path / "metadata.parquet").unlink()
    pd.DataFrame({"camera": ["c"]}).to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(IngestError, match=r"^metadata.csv: the metadata table needs a "
                                          r"'file_name' or 'image_id' column \(has \['camera'\]\)"):
        ingest(tmp_path, taxonomy=DEFAULT_TAXONOMY)
