"""`preflight evaluate` (preflight.metrics.cli) end to end on small files."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from preflight.metrics import STAT_NAMES, load_coco_gt, load_coco_results
from preflight.metrics.cli import add_arguments, run
from preflight.metrics.synthetic import pycocotools_stats, random_case, to_coco


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture()
def files(tmp_path):
    gt, dt, images = random_case(np.random.default_rng(0), 30, 3, 4.0, 0.05, 1)
    dataset, results = to_coco(gt, dt, images, 3)
    for a, t, o in zip(dataset["annotations"], gt["truncated"], gt["occluded"], strict=True):
        a["truncated"], a["occluded"] = bool(t), float(o)
    (tmp_path / "gt.json").write_text(json.dumps(dataset))
    (tmp_path / "dt.json").write_text(json.dumps(results))
    images[["image_id", "camera", "shift"]].to_csv(tmp_path / "meta.csv", index=False)
    return tmp_path, dataset, results, images


def test_cli_writes_the_long_table_and_a_summary(files, capsys):
    d, dataset, results, images = files
    out = d / "out" / "metrics.parquet"
    rc = run(_parse(["--gt", str(d / "gt.json"), "--dt", str(d / "dt.json"), "--slices",
                     str(d / "meta.csv"), "--out", str(out), "--bootstrap", "10",
                     "--errors-out", str(d / "errors.csv"),
                     "--confusion-out", str(d / "confusion.csv")]))
    assert rc == 0
    table = pd.read_parquet(out)
    printed = capsys.readouterr().out
    assert "AP50=" in printed and "worst slices by AP" in printed
    overall = table[table["slice_column"] == "__all__"].set_index("metric")["value"]
    ref = pycocotools_stats(dataset, results)
    assert np.allclose(overall[list(STAT_NAMES)].to_numpy(), ref, atol=1e-9, equal_nan=True)
    assert {"camera", "shift", "size_bin", "truncated", "occluded_bin"} <= set(
        table["slice_column"])
    cam = images.loc[images["camera"] == "c1", "image_id"]
    sl = table[(table["slice_column"] == "camera") & (table["slice_value"] == "c1")]
    got = sl.set_index("metric")["value"][list(STAT_NAMES)].to_numpy()
    assert np.allclose(got, pycocotools_stats(dataset, results, cam), atol=1e-9, equal_nan=True)
    assert (d / "errors.csv").is_file() and (d / "confusion.csv").is_file()


def test_cli_reports_bad_inputs(files, capsys):
    d, dataset, results, _ = files
    bad_gt = d / "bad_gt.json"
    bad_gt.write_text(json.dumps({"images": [], "categories": []}))
    assert run(_parse(["--gt", str(bad_gt), "--dt", str(d / "dt.json"),
                       "--out", str(d / "o.csv")])) == 2
    assert "lacks key(s) ['annotations']" in capsys.readouterr().err

    bad_dt = d / "bad_dt.json"
    bad_dt.write_text(json.dumps(results + [{**results[0], "image_id": 123456789}]))
    assert run(_parse(["--gt", str(d / "gt.json"), "--dt", str(bad_dt),
                       "--out", str(d / "o.csv")])) == 2
    assert "not in the ground truth" in capsys.readouterr().err

    missing_key = d / "missing.json"
    missing_key.write_text(json.dumps([{"image_id": results[0]["image_id"], "bbox": [0, 0, 1, 1]}]))
    assert run(_parse(["--gt", str(d / "gt.json"), "--dt", str(missing_key),
                       "--out", str(d / "o.csv")])) == 2
    assert "lacks key(s) ['category_id', 'score']" in capsys.readouterr().err

    not_json = d / "x.json"
    not_json.write_text("{oops")
    assert run(_parse(["--gt", str(not_json), "--dt", str(d / "dt.json"),
                       "--out", str(d / "o.csv")])) == 2
    assert "not valid JSON" in capsys.readouterr().err

    assert run(_parse(["--gt", str(d / "gt.json"), "--dt", str(d / "dt.json"),
                       "--out", str(d / "o.txt")])) == 2
    assert "unsupported output format" in capsys.readouterr().err


def test_loaders(files):
    d, dataset, results, images = files
    coco = load_coco_gt(d / "gt.json")
    assert len(coco.gt) == len(dataset["annotations"]) and coco.class_names[0] == "c0"
    assert {"truncated", "occluded"} <= set(coco.gt.columns)
    dt = load_coco_results(d / "dt.json", image_ids=coco.images["image_id"], class_ids=[0, 1])
    assert set(dt["class_id"]) <= {0, 1}
    assert list(dt.columns) == ["image_id", "class_id", "score", "x", "y", "w", "h"]
