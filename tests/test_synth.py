"""The synthetic warehouse generator: layout, exact labels, profiles, rates, completeness, CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from preflight.cli import main
from preflight.data.ingest import SLICE_COLUMNS, ingest
from preflight.data.landing import (
    COMPLETE_MARKER,
    MANIFEST_NAME,
    batch_is_complete,
    write_manifest,
)
from preflight.synth.generate import METADATA_COLUMNS, generate
from preflight.synth.scene import PRODUCTION_RATES, ProductionRates
from preflight.synth.scene import SYNTH_TAXONOMY as DEFAULT_TAXONOMY

NAMES = DEFAULT_TAXONOMY.names
SKU_NEW = NAMES.index("sku_new")


@pytest.fixture(scope="module")
def production(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "production"
    generate(out, profile="production", n=40, weeks=4, seed=0, image_size=128)
    return out


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "benchmark"
    generate(out, profile="benchmark", n=30, seed=0, image_size=160)
    return out


def yolo_boxes(root: Path) -> dict[str, list[tuple[int, float, float, float, float]]]:
    """file_name -> YOLO rows, asserting every line is well formed and normalised."""
    out = {}
    for img in sorted((root / "images").glob("*.jpg")):
        rows = []
        for line in (root / "labels" / f"{img.stem}.txt").read_text().splitlines():
            parts = line.split()
            assert len(parts) == 5, line
            cls, (cx, cy, w, h) = int(parts[0]), map(float, parts[1:])
            assert 0 <= cls < len(NAMES)
            assert all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)), line
            assert w > 0 and h > 0
            assert cx - w / 2 >= -1e-6 and cx + w / 2 <= 1 + 1e-6, line
            assert cy - h / 2 >= -1e-6 and cy + h / 2 <= 1 + 1e-6, line
            rows.append((cls, cx, cy, w, h))
        out[img.name] = rows
    return out


# ------------------------------------------------------------------------------ determinism
def test_same_seed_is_byte_identical_and_another_seed_differs(tmp_path):
    kw = dict(profile="production", n=16, weeks=4, image_size=128)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, seed=5, **kw)
    generate(b, seed=5, **kw)
    generate(c, seed=6, **kw)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        if rel.name not in ("data.yaml", MANIFEST_NAME, COMPLETE_MARKER):  # these name the folder
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    labels = lambda root: [p.read_bytes() for p in sorted((root / "labels").glob("*.txt"))]  # noqa: E731
    assert labels(a) != labels(c)
    assert not (pd.read_parquet(a / "metadata.parquet")["file_name"].equals(
        pd.read_parquet(c / "metadata.parquet")["file_name"]))


# ---------------------------------------------------------------------------- layout/formats
def test_layout_yolo_coco_and_metadata_agree(production):
    root = production
    for name in ("images", "labels"):
        assert (root / name).is_dir()
    for name in ("data.yaml", "annotations.json", "metadata.parquet", "boxes_metadata.parquet",
                 MANIFEST_NAME, COMPLETE_MARKER):
        assert (root / name).is_file(), name
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert data["names"] == dict(enumerate(NAMES))
    assert Path(data["path"]) == root.resolve() and data["train"] == data["val"] == "images"

    yolo = yolo_boxes(root)
    assert len(yolo) == 40 and sum(map(len, yolo.values())) > 40
    img = cv2.imread(str(root / "images" / next(iter(yolo))), cv2.IMREAD_COLOR)
    assert img.shape == (128, 128, 3)

    coco = json.loads((root / "annotations.json").read_text())
    assert [(c["id"], c["name"]) for c in coco["categories"]] == list(enumerate(NAMES))
    by_id = {im["id"]: im for im in coco["images"]}
    assert {im["file_name"] for im in coco["images"]} == set(yolo)
    anns: dict[str, list] = {}
    for a in coco["annotations"]:
        im = by_id[a["image_id"]]
        assert (im["width"], im["height"]) == (128, 128)
        x, y, w, h = a["bbox"]
        assert a["area"] == w * h and a["iscrowd"] == 0
        assert isinstance(a["truncated"], bool) and 0.0 <= a["occluded"] <= 1.0
        anns.setdefault(im["file_name"], []).append((a["category_id"], x, y, w, h))
    for file_name, rows in yolo.items():
        got = anns.get(file_name, [])
        assert len(got) == len(rows)
        for (c1, cx, cy, w, h), (c2, x, y, bw, bh) in zip(rows, got, strict=True):
            assert c1 == c2
            np.testing.assert_allclose([(cx - w / 2) * 128, (cy - h / 2) * 128, w * 128, h * 128],
                                       [x, y, bw, bh], atol=1e-3)

    meta = pd.read_parquet(root / "metadata.parquet")
    assert list(meta.columns) == list(METADATA_COLUMNS)
    assert meta["file_name"].is_unique and set(meta["file_name"]) == set(yolo)
    ids = {im["file_name"]: im["id"] for im in coco["images"]}
    assert (meta["image_id"] == meta["file_name"].map(ids)).all()
    assert set(meta["shift"]) <= {"day", "night"}
    assert set(meta["lighting"]) <= {"bright", "normal", "dim"}
    assert set(meta["blur"]) <= {"none", "motion"} and set(meta["lens"]) <= {"clean", "dirty"}
    assert set(meta["camera"]) <= {"cam1", "cam2", "cam3", "cam4"}
    assert set(meta["site"]) <= {"site_a", "site_b"} and set(meta["profile"]) == {"production"}
    assert set(meta["week"]) == {1, 2, 3, 4}
    assert pd.api.types.is_datetime64_any_dtype(meta["captured_at"])
    for col in ("colour_cast", "noise", "flicker"):
        assert meta[col].dtype == bool
    assert meta["jpeg_quality"].between(1, 100).all()
    for f, w in zip(meta["file_name"], meta["week"], strict=True):
        assert f.startswith(f"w{w:02d}_")
    # captured_at lies in the frame's week
    start = pd.Timestamp("2024-03-04") + pd.to_timedelta(7 * (meta["week"] - 1), unit="D")
    assert ((meta["captured_at"] >= start) & (meta["captured_at"] < start + pd.Timedelta(days=7))).all()

    boxes = pd.read_parquet(root / "boxes_metadata.parquet")
    assert list(boxes.columns) == ["file_name", "box_index", "class_id", "area_px", "truncated",
                                   "occluded"]
    assert len(boxes) == sum(map(len, yolo.values()))
    for f, part in boxes.groupby("file_name"):
        assert part["box_index"].tolist() == list(range(len(yolo[f])))
        assert part["class_id"].tolist() == [r[0] for r in yolo[f]]
        np.testing.assert_allclose(part["area_px"], [r[3] * r[4] * 128 * 128 for r in yolo[f]],
                                   atol=1e-2)
    assert boxes["occluded"].between(0, 1).all()


def test_truncated_boxes_touch_the_border(production):
    boxes = pd.read_parquet(production / "boxes_metadata.parquet")
    yolo = yolo_boxes(production)
    for r in boxes[boxes["truncated"]].itertuples():
        _, cx, cy, w, h = yolo[r.file_name][r.box_index]
        edges = [cx - w / 2, cy - h / 2, 1 - (cx + w / 2), 1 - (cy + h / 2)]
        assert min(edges) < 1e-6, (r.file_name, r.box_index)


# ------------------------------------------------------------------------------ exact labels
def test_boxes_are_the_exact_visible_extent():
    from preflight.synth import draw, scene

    S = 96
    shadow = (88, 88, 86)  # the contact-shadow colour: the shadow leaves no difference
    bg = np.empty((S, S, 3), np.uint8)
    bg[:] = shadow
    for cls in range(len(NAMES)):
        obj = scene._Obj(cls, 20.3, 10.6, 41.2, 47.5, cls % 2 == 0, 0, False, 0.0, True)
        img, boxes = draw._render(bg, [obj], None)
        ys, xs = np.nonzero((img != bg).any(axis=2))
        assert len(boxes) == 1
        c, x0, y0, x1, y1, truncated, occluded = boxes[0]
        assert c == cls and not truncated and occluded == 0.0
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), cls
    # a pallet's silhouette is its rectangle: a column over 10 of its 40 columns hides 25%;
    # in the middle the visible extent is unchanged, at the edge the box shrinks to it
    pallet = scene._Obj(scene.PALLET, 20, 40, 40, 16, False, 0, False, 0.0, True)
    for column, box in (((35.0, 10.0), (20, 40, 60, 56)), ((50.0, 10.0), (20, 40, 50, 56))):
        _, boxes = draw._render(bg, [pallet], column)
        assert tuple(boxes[0][1:5]) == box and boxes[0][6] == pytest.approx(0.25)
    # across the right border: clipped to the frame and flagged truncated
    edge = scene._Obj(scene.PALLET, S - 20, 40, 40, 16, False, 0, False, 0.0, False)
    _, boxes = draw._render(bg, [edge], None)
    assert boxes[0][1:6] == (S - 20, 40, S, 56, True) and boxes[0][6] == 0.0
    # a nearer object hides part of a farther one: the farther box shrinks to what is visible
    far = scene._Obj(scene.PALLET, 10, 30, 40, 10, False, 0, False, 0.0, True)
    near = scene._Obj(scene.PALLET, 30, 35, 40, 10, False, 0, False, 0.0, True)
    _, boxes = draw._render(bg, [near, far], None)
    (c1, *b1, t1, o1), (c2, *b2, t2, o2) = boxes  # painting order: far first
    assert b1 == [10, 30, 50, 40] and o1 == pytest.approx(20 * 5 / 400)
    assert b2 == [30, 35, 70, 45] and o2 == 0.0


# ---------------------------------------------------------------------------------- profiles
def test_benchmark_is_clean(benchmark):
    meta = pd.read_parquet(benchmark / "metadata.parquet")
    boxes = pd.read_parquet(benchmark / "boxes_metadata.parquet")
    assert set(meta["profile"]) == {"benchmark"} and set(meta["week"]) == {1}
    assert set(meta["shift"]) == {"day"} and set(meta["lighting"]) <= {"bright", "normal"}
    assert set(meta["blur"]) == {"none"} and set(meta["lens"]) == {"clean"}
    assert not meta[["colour_cast", "noise", "flicker"]].to_numpy().any()
    assert (meta["jpeg_quality"] >= 90).all()
    assert SKU_NEW not in set(boxes["class_id"]) and not boxes["truncated"].any()
    assert boxes["occluded"].max() == 0.0
    yolo = yolo_boxes(benchmark)
    sides = [min(w, h) * 160 for rows in yolo.values() for _, _, _, w, h in rows]
    assert min(sides) >= 0.08 * 160  # no tiny objects
    assert {NAMES.index(c) for c in ("sku_a", "sku_b")} <= set(boxes["class_id"])


def test_weekly_batches_drift_and_never_collide(tmp_path):
    b1 = generate(tmp_path / "w1", profile="production", n=30, week=1, seed=0, image_size=128)
    b3 = generate(tmp_path / "w3", profile="production", n=30, week=3, seed=0, image_size=128)
    assert b1.weeks == (1,) and b3.weeks == (3,)
    assert b1.class_counts["sku_new"] == 0 and b3.class_counts["sku_new"] > 0
    m1 = pd.read_parquet(tmp_path / "w1" / "metadata.parquet")
    m3 = pd.read_parquet(tmp_path / "w3" / "metadata.parquet")
    assert set(m1["week"]) == {1} and set(m3["week"]) == {3}
    assert not set(m1["file_name"]) & set(m3["file_name"])
    assert all(f.startswith("w03_") for f in m3["file_name"])
    assert m3["captured_at"].min() > m1["captured_at"].max()
    tagged = generate(tmp_path / "t", profile="production", n=4, week=3, seed=0, image_size=64,
                      batch_id="2024-W12")
    names = pd.read_parquet(tmp_path / "t" / "metadata.parquet")["file_name"]
    assert all("_2024-W12_" in f for f in names) and tagged.batch_id == "2024-W12"
    with pytest.raises(ValueError, match="week 1 only"):
        generate(tmp_path / "bad", profile="benchmark", n=4, week=3, image_size=64)


def test_production_rates_roughly_respected(tmp_path):
    rates = PRODUCTION_RATES
    s = generate(tmp_path / "p", profile="production", n=200, weeks=4, seed=1, image_size=96)
    meta = pd.read_parquet(tmp_path / "p" / "metadata.parquet")
    boxes = pd.read_parquet(tmp_path / "p" / "boxes_metadata.parquet").merge(
        meta[["file_name", "camera", "week"]], on="file_name")
    checks = {
        "colour_cast": (meta["colour_cast"].mean(), rates.colour_cast),
        "motion_blur": ((meta["blur"] == "motion").mean(), rates.motion_blur),
        "dirty_lens": ((meta["lens"] == "dirty").mean(), rates.dirty_lens),
        "flicker": (meta["flicker"].mean(), rates.flicker),
        "low_jpeg": ((meta["jpeg_quality"] <= rates.low_jpeg_quality[1]).mean(), rates.low_jpeg),
        "truncation": (boxes["truncated"].mean(), rates.truncation),
    }
    for name, (observed, expected) in checks.items():
        assert abs(observed - expected) <= max(0.08, 0.6 * expected), (name, observed, expected)
    night = meta.groupby("week")["shift"].apply(lambda s: (s == "night").mean())
    assert night[4] > night[1]
    assert (meta.loc[meta["shift"] == "night", "lighting"] == "dim").mean() > 0.6
    noise = meta.groupby("shift")["noise"].mean()
    assert noise["night"] > 0.7 and noise["night"] > noise["day"] + 0.4  # heavier at night
    assert (boxes["occluded"] > 0.01).mean() > 0.03
    lookalike = boxes["class_id"].isin([NAMES.index("sku_a"), NAMES.index("sku_b")]).mean()
    assert lookalike > 0.35
    assert set(boxes.loc[boxes["class_id"] == SKU_NEW, "week"]) <= {3, 4}
    assert s.class_counts["sku_new"] > 0
    # the high-mounted camera sees small objects (< 16 px at 320 -> < 4.8 px at 96)
    med = boxes.groupby("camera")["area_px"].median()
    assert med["cam4"] < 0.5 * med.drop("cam4").min()
    # frames come in bursts: several frames of a camera within minutes
    gaps = meta.sort_values("captured_at").groupby("camera")["captured_at"].diff().dropna()
    assert (gaps < pd.Timedelta(minutes=2)).mean() > 0.3


def test_rates_are_validated():
    with pytest.raises(ValueError, match="colour_cast"):
        ProductionRates(colour_cast=1.5)
    r = ProductionRates()
    assert r.weights(1)[SKU_NEW] == 0 and r.weights(3)[SKU_NEW] > 0
    assert r.new_packaging_share(1) == 0 < r.new_packaging_share(2) < r.new_packaging_share(4)


# ------------------------------------------------------------------------------ completeness
def test_manifest_and_complete_marker(tmp_path):
    out = tmp_path / "batch"
    generate(out, profile="production", n=8, week=2, seed=0, image_size=64)
    ok, why = batch_is_complete(out)
    assert ok, why
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    listed = {e["path"] for e in manifest["files"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert listed == on_disk - {MANIFEST_NAME, COMPLETE_MARKER}
    assert all(len(e["sha256"]) == 64 and e["size"] > 0 for e in manifest["files"])
    assert batch_is_complete(out, verify_hashes=True)[0]

    victim = sorted((out / "images").glob("*.jpg"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[:-10])
    ok, why = batch_is_complete(out)
    assert not ok and victim.name in why
    victim.unlink()
    ok, why = batch_is_complete(out)
    assert not ok and "missing" in why and victim.name in why
    victim.write_bytes(data)
    assert batch_is_complete(out)[0]
    (out / COMPLETE_MARKER).unlink()
    ok, why = batch_is_complete(out)
    assert not ok and COMPLETE_MARKER in why
    assert not batch_is_complete(tmp_path / "nowhere")[0]

    (out / "extra.txt").write_text("late file")
    write_manifest(out)
    assert "extra.txt" in {e["path"] for e in json.loads((out / MANIFEST_NAME).read_text())["files"]}


def test_regenerate_replaces_and_refuses_foreign_folders(tmp_path):
    out = tmp_path / "s"
    generate(out, profile="production", n=10, seed=0, image_size=64)
    generate(out, profile="production", n=4, seed=1, image_size=64)
    assert len(list((out / "images").glob("*.jpg"))) == 4 and batch_is_complete(out)[0]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate(foreign, n=2, image_size=64)


# ------------------------------------------------------------------------------------ ingest
def test_ingest_keeps_slices_and_quarantines_nothing(production):
    res = ingest(production, taxonomy=DEFAULT_TAXONOMY)
    assert res.quarantine.empty, res.quarantine["reason"].tolist()[:5]
    assert res.stats["format"] == "coco" and len(res.images) == 40
    for col in SLICE_COLUMNS:
        assert col in res.images.columns and res.images[col].notna().all(), col
    assert res.images["meta_colour_cast"].dtype == bool
    assert res.boxes["truncated"].notna().all() and res.boxes["occluded"].notna().all()
    assert res.stats["groups"] < len(res.images)  # bursts group near-duplicates
    yolo = ingest(production, fmt="yolo", taxonomy=DEFAULT_TAXONOMY)
    assert yolo.quarantine.empty and len(yolo.boxes) == len(res.boxes)
    assert yolo.boxes["truncated"].notna().all()  # from boxes_metadata.parquet


# --------------------------------------------------------------------------------------- CLI
def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["synth", "--profile", "production", "--n", "6", "--weeks", "2", "--out", str(out),
               "--seed", "3", "--image-size", "64", "--no-progress"])
    assert rc == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "6 images" in line and "boxes" in line and "images/s" in line
    assert batch_is_complete(out)[0]
    rc = main(["synth", "--profile", "benchmark", "--n", "2", "--week", "3", "--out",
               str(tmp_path / "bad"), "--no-progress"])
    assert rc == 2 and "week 1 only" in capsys.readouterr().err


def test_generation_speed_is_reported(tmp_path, capsys):
    t0 = time.perf_counter()
    s = generate(tmp_path / "speed", profile="production", n=100, weeks=4, seed=0, image_size=320)
    rate = s.n_images / (time.perf_counter() - t0)
    with capsys.disabled():
        print(f"\n[synth speed] production 100 images at 320 px: {rate:.0f} images/s "
              f"({s.images_per_second:.0f} inside generate)")
    assert s.n_images == 100
