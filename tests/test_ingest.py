"""Ingestion: tables, formats, derived slices, grouping and a stable, grouped, stratified split."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from preflight.data.ingest import BOX_COLUMNS, assign_groups, assign_split, ingest, stratum_keys
from preflight.data.properties import bin_values, decode, pixel_properties
from preflight.synth.scene import SYNTH_TAXONOMY as DEFAULT_TAXONOMY


def write_image(path: Path, level: int = 128, size: int = 64, seed: int = 0) -> bytes:
    """A small JPEG with a textured square so images differ; returns the written bytes."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), level, np.uint8)
    img[8:40, 8:40] = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    path.write_bytes(buf.tobytes())
    return buf.tobytes()


def make_yolo(root: Path, n: int = 6, *, metadata: bool = True, minutes_apart: float = 30.0,
              cameras: int = 2) -> Path:
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("names:\n" + "".join(
        f"  {i}: {name}\n" for i, name in enumerate(DEFAULT_TAXONOMY.names)))
    rows = []
    t0 = pd.Timestamp("2024-05-01 08:00")
    for i in range(n):
        stem = f"frame_{i:03d}"
        write_image(root / "images" / f"{stem}.jpg", level=30 + 200 * (i % 2), seed=i)
        (root / "labels" / f"{stem}.txt").write_text(
            f"{i % 7} 0.5 0.5 0.25 0.5\n2 0.25 0.25 0.1 0.1\n")
        rows.append({"file_name": f"{stem}.jpg", "camera": f"cam{i % cameras}",
                     "shift": "day" if i % 4 < 2 else "night",
                     "lighting": ["bright", "normal", "dim"][i % 3],
                     "captured_at": t0 + pd.Timedelta(minutes=minutes_apart * i), "week": 1})
    if metadata:
        pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def make_coco(root: Path, n: int = 6, *, shuffle_seed: int | None = None) -> Path:
    images, anns = [], []
    for i in range(n):
        write_image(root / "images" / f"c{i}.jpg", level=40 + (15 * i) % 200, seed=100 + i)
        images.append({"id": 10 + i, "file_name": f"c{i}.jpg", "width": 64, "height": 64})
        anns.append({"id": 100 + i, "image_id": 10 + i, "category_id": i % 7,
                     "bbox": [4.0, 6.0, 20.0, 10.0], "area": 150.0, "iscrowd": 0,
                     "truncated": bool(i % 2), "occluded": 0.25})
    meta = pd.DataFrame({"image_id": [im["id"] for im in images],
                         "camera": ["camA"] * n, "shift": ["day"] * n,
                         "captured_at": pd.date_range("2024-01-01", periods=n, freq="h")})
    if shuffle_seed is not None:
        rnd = random.Random(shuffle_seed)
        rnd.shuffle(images)
        rnd.shuffle(anns)
        meta = meta.sample(frac=1.0, random_state=shuffle_seed)
    categories = [{"id": i, "name": name} for i, name in enumerate(DEFAULT_TAXONOMY.names)]
    (root / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": categories}))
    meta.to_parquet(root / "metadata.parquet")
    return root


def test_yolo_tables_follow_the_contract(tmp_path):
    root = make_yolo(tmp_path / "land", n=4)
    res = ingest(root, taxonomy=DEFAULT_TAXONOMY)
    im, bx = res.images, res.boxes
    assert len(im) == 4 and len(bx) == 8 and res.quarantine.empty
    first = (root / "images" / "frame_000.jpg").read_bytes()
    row = im.set_index("file_name").loc["frame_000.jpg"]
    assert row["image_id"] == hashlib.sha1(first).hexdigest()[:16]
    assert Path(row["path"]).is_absolute() and (row["width"], row["height"]) == (64, 64)
    for col in ("camera", "shift", "lighting", "captured_at", "week", "split", "group_id",
                "brightness", "contrast", "sharpness", "colour_cast", "sharpness_bin"):
        assert col in im.columns, col
    assert "brightness_bin" in im.columns  # pixel slices always, beside the metadata's
    assert list(bx.columns) == list(BOX_COLUMNS)
    assert bx["box_id"].is_unique
    b0 = bx[(bx["file_name"] == "frame_000.jpg") & (bx["line"] == 1)].iloc[0]
    assert (b0["x"], b0["y"], b0["w"], b0["h"]) == pytest.approx((24.0, 16.0, 16.0, 32.0))
    assert b0["area"] == pytest.approx(512.0) and b0["size_bin"] == "small"
    assert b0["class_name"] == "person" and b0["iscrowd"] == 0
    s = res.stats
    assert s["format"] == "yolo"
    assert s["images_found"] == s["images_ingested"] + s["images_quarantined"] == 4
    assert s["boxes_found"] == s["boxes_ingested"] + s["boxes_quarantined"] == 8
    assert s["metadata"]["matched_images"] == 4
    for name in ("images", "boxes", "quarantine"):  # the caller writes these as Parquet
        getattr(res, name).to_parquet(tmp_path / f"{name}.parquet")
    back = pd.read_parquet(tmp_path / "images.parquet")
    assert back["captured_at"].dtype.kind == "M" and back["split"].notna().all()


def test_coco_with_metadata_by_image_id(tmp_path):
    root = make_coco(tmp_path / "coco", n=4)
    (root / "metadata.parquet").rename(root / "meta.parquet")
    res = ingest(root, metadata_path=root / "meta.parquet", taxonomy=DEFAULT_TAXONOMY)
    assert res.stats["format"] == "coco" and res.quarantine.empty
    assert res.stats["metadata"]["key"] == "image_id"
    assert sorted(res.images["source_image_id"]) == [10, 11, 12, 13]
    assert (res.images["camera"] == "camA").all()
    bx = res.boxes.sort_values("source_box_id")
    assert list(bx["truncated"]) == [False, True, False, True]
    assert bx["area"].tolist() == [150.0] * 4 and (bx["occluded"] == 0.25).all()
    assert (bx[["x", "y", "w", "h"]].iloc[0].tolist()) == [4.0, 6.0, 20.0, 10.0]


def test_format_autodetect_and_override(tmp_path):
    root = make_yolo(tmp_path / "both", n=3, metadata=False)
    images = [{"id": i, "file_name": f"images/frame_{i:03d}.jpg"} for i in range(3)]
    (root / "annotations.json").write_text(json.dumps({
        "images": images, "annotations": [], "categories": []}))
    auto = ingest(root, taxonomy=DEFAULT_TAXONOMY)
    assert auto.stats["format"] == "coco" and len(auto.boxes) == 0 and len(auto.images) == 3
    assert set(auto.images["file_name"]) == {f"frame_{i:03d}.jpg" for i in range(3)}
    forced = ingest(root, fmt="yolo", taxonomy=DEFAULT_TAXONOMY)
    assert forced.stats["format"] == "yolo" and len(forced.boxes) == 6
    assert set(forced.images["image_id"]) == set(auto.images["image_id"])


def test_pixel_properties_and_fixed_bins():
    flat = np.full((48, 48, 3), 128, np.uint8)
    p = pixel_properties(flat)
    assert p["brightness"] == pytest.approx(128 / 255, abs=1e-3)
    assert p["contrast"] == pytest.approx(0.0) and p["sharpness"] == pytest.approx(0.0)
    assert p["colour_cast"] == pytest.approx(0.0)
    red = flat.copy()
    red[..., 0] = 220
    assert pixel_properties(red)["colour_cast"] > 0.1
    values = pd.Series([0.1, 0.5, 0.9, np.nan])
    assert bin_values(values, "brightness").tolist() == ["low", "mid", "high", None]
    assert decode(b"").error == "empty_file"


def test_slices_derived_from_pixels_when_metadata_missing(tmp_path):
    root = make_yolo(tmp_path / "nometa", n=4, metadata=False)
    res = ingest(root, taxonomy=DEFAULT_TAXONOMY)
    im = res.images.set_index("file_name")
    assert set(res.stats["derived_slices"]) == {
        "brightness_bin", "contrast_bin", "sharpness_bin", "colour_cast_bin"}
    assert im.loc["frame_000.jpg", "brightness_bin"] == "low"  # level 30 background
    assert im.loc["frame_001.jpg", "brightness_bin"] == "high"  # level 230 background
    assert im[["contrast_bin", "sharpness_bin", "colour_cast_bin"]].notna().all().all()
    assert res.stats["strata_columns"] == ["brightness_bin"]
    assert im["group_id"].str.startswith("p:").all()  # no captured_at: perceptual hash
    assert im["phash"].str.fullmatch(r"[0-9a-f]{16}").all()


def test_split_is_stable_and_independent_of_input_order(tmp_path):
    a = ingest(make_coco(tmp_path / "a", n=12), eval_fraction=0.3, taxonomy=DEFAULT_TAXONOMY)
    b = ingest(make_coco(tmp_path / "b", n=12, shuffle_seed=3), eval_fraction=0.3, taxonomy=DEFAULT_TAXONOMY)
    again = ingest(tmp_path / "a", eval_fraction=0.3, taxonomy=DEFAULT_TAXONOMY)
    key = ["image_id", "split", "group_id"]
    sa = a.images[key].sort_values("image_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(sa, b.images[key].sort_values("image_id").reset_index(drop=True))
    pd.testing.assert_frame_equal(sa, again.images[key].sort_values("image_id").reset_index(
        drop=True))
    assert set(a.images["split"]) == {"finetune", "eval"}
    # the split functions themselves ignore row order
    shuffled = a.images.sample(frac=1.0, random_state=7)
    pd.testing.assert_series_equal(
        assign_split(shuffled, eval_fraction=0.3,
                     boxes=a.boxes.sample(frac=1.0, random_state=5)).sort_index(),
        a.images["split"].sort_index(), check_names=False)


def test_near_duplicate_frames_never_straddle_the_split(tmp_path):
    # 24 frames, one camera per 12, 2 minutes apart within bursts of 4, bursts 1 hour apart
    rows = []
    for i in range(24):
        burst, k = divmod(i, 4)
        rows.append({"image_id": f"{i:016x}", "decode_ok": True, "camera": f"cam{i // 12}",
                     "shift": "day", "lighting": "normal",
                     "captured_at": pd.Timestamp("2024-03-01") + pd.Timedelta(hours=burst,
                                                                              minutes=2 * k)})
    im = pd.DataFrame(rows)
    im["group_id"] = assign_groups(im, window_minutes=10)
    assert im["group_id"].nunique() == 6
    assert im.groupby("group_id").size().eq(4).all()
    im["stratum"] = stratum_keys(im, ["camera", "shift", "lighting"])
    im["split"] = assign_split(im, eval_fraction=0.3, seed=0)
    assert im.groupby("group_id")["split"].nunique().eq(1).all()
    assert 0 < (im["split"] == "eval").sum() < len(im)
    # a wider window chains the bursts of a camera together
    assert assign_groups(im, window_minutes=90).nunique() == 2


def test_split_fraction_is_stratified(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    im = pd.DataFrame({"image_id": [f"{i:016x}" for i in range(n)], "decode_ok": True,
                       "camera": rng.choice(["c1", "c2"], n), "shift": rng.choice(["day", "night"], n)})
    im["group_id"] = "h:" + im["image_id"]
    im["stratum"] = stratum_keys(im, ["camera", "shift"])
    split = assign_split(im, eval_fraction=0.3, seed=0)
    assert abs((split == "eval").mean() - 0.3) < 0.02
    per = (split == "eval").groupby(im["stratum"]).mean()
    assert ((per - 0.3).abs() < 0.05).all(), per
    other_seed = assign_split(im, eval_fraction=0.3, seed=1)
    assert (other_seed != split).any()


def test_yolo_box_metadata_and_landing_errors(tmp_path):
    root = make_yolo(tmp_path / "bm", n=2, metadata=False)
    pd.DataFrame({"file_name": ["frame_000.jpg", "frame_000.jpg"], "box_index": [0, 1],
                  "truncated": [True, False], "occluded": [0.5, 0.0]}).to_parquet(
        root / "boxes_metadata.parquet")
    bx = ingest(root, taxonomy=DEFAULT_TAXONOMY).boxes
    b = bx[bx["file_name"] == "frame_000.jpg"].sort_values("line")
    assert b["truncated"].tolist() == [True, False] and b["occluded"].tolist() == [0.5, 0.0]
    assert bx[bx["file_name"] == "frame_001.jpg"]["truncated"].isna().all()
    from preflight.data.errors import IngestError

    with pytest.raises(IngestError):
        ingest(tmp_path / "missing", taxonomy=DEFAULT_TAXONOMY)
    with pytest.raises(IngestError):
        ingest(root, eval_fraction=1.5, taxonomy=DEFAULT_TAXONOMY)
