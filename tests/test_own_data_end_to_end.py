"""End to end on a sample `preflight synth` did not make: `preflight init`, then `preflight run`.

The world (``own_world``): classes worker / cart / crate / drone, 480 x 360 frames, COCO only,
no metadata table, no capture times. The checkpoint is trained here, one epoch of a tiny
yolov8n, on a "pre-training" set of the same world labelled ``Workers`` / ``car`` / ``box`` and
without drones: ``init`` maps ``Workers`` by plural/case, the user maps ``car`` and ``box`` by
hand (the only lines a user writes), and ``drone`` has no analog in pre-training.
CPU-sized: 48 frames, input size 160, one epoch, a tiny stress / latency budget.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from own_world import CLASSES, coco_to_yolo, make_world

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFLIGHT_CONFIG", "PREFLIGHT_CANDIDATES")}
    env.update(PREFLIGHT_HOME=str(home), DAGSTER_HOME=str(home / "dagster"),
               YOLO_CONFIG_DIR=str(home / "ultralytics"), YOLO_OFFLINE="1", MPLBACKEND="Agg",
               GX_ANALYTICS_ENABLED="false", DAGSTER_DISABLE_TELEMETRY="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


def _run_folder(home: Path) -> Path:
    """The folder of the one pass (``<home>/runs/<run id>/``)."""
    (folder,) = [p.parent for p in home.glob("runs/*/tables")]
    return folder


def _preflight(args: list[str], home: Path, timeout: int = 1200) -> str:
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=home,
                         env=_env(home), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"preflight {args[0]} failed:\n{out.stdout[-4000:]}\n" \
                                f"{out.stderr[-6000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    t0 = time.perf_counter()
    root = tmp_path_factory.mktemp("own")
    home = root / "home"
    (home / "dagster").mkdir(parents=True)
    sample = make_world(root / "sample", n_clips=8, frames=6, seed=0)
    pre = make_world(root / "pretrain", n_clips=6, frames=4, classes=CLASSES[:3],
                     names=("Workers", "car", "box"), seed=1)
    from preflight.models.training import DetectorTraining, train_detector

    os.environ.setdefault("YOLO_CONFIG_DIR", str(home / "ultralytics"))
    trained = train_detector("yolov8n.yaml", coco_to_yolo(pre, root / "pretrain_yolo"),
                             root / "pretrain_run",
                             DetectorTraining(epochs=1, imgsz=160, batch=8, seed=0, device="cpu",
                                              progress=False))
    weights = root / "site-detector.pt"
    shutil.copyfile(trained.checkpoint, weights)

    cfg = root / "cfg"
    init_out = _preflight(["init", "--data", str(sample), "--weights", str(weights),
                           "--out", str(cfg)], home)
    # what the user writes by hand: the class_map lines init could not match by name ...
    cands = (cfg / "candidates.yaml").read_text()
    assert '"Workers": "worker"' in cands
    (cfg / "candidates.yaml").write_text(cands.replace(
        '      "Workers": "worker"\n', '      "Workers": "worker"\n      car: cart\n'
        '      box: crate\n'))
    # ... and, for a CPU-sized test, small evaluation / stress / latency / fine-tune budgets
    settings = yaml.safe_load((cfg / "preflight.yaml").read_text())
    settings["evaluation"].update(bootstrap=10, min_images=3, min_boxes=5, batch_size=8)
    settings.update(
        stress={"n_images": 4, "severities": [1],
                "corruptions": ["distribution_shift/colour_cast", "resolution/downscale"]},
        latency={"iterations": 5, "warmup": 1, "server_queries": 5, "server_max_seconds": 2,
                 "batch_size": 2, "search_steps": 2},
        finetune={"epochs": 1, "batch": 8},
        tiling={"max_images": 4})
    (cfg / "preflight.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    run_out = _preflight(["run", "--config", str(cfg / "preflight.yaml")], home)
    seconds = time.perf_counter() - t0
    print(f"\n[own data end to end] {seconds:.0f} s (init + run, checkpoint training included)")
    return {"home": home, "init": init_out, "run": run_out, "seconds": seconds, "cfg": cfg}


def test_init_reports_what_it_found(own_run):
    out = own_run["init"]
    assert "coco, 48 images, 4 classes: worker, cart, crate, drone" in out
    assert "no metadata table" in out
    assert "mapped 1 (1 by case/plural), unmatched 2 (car, box)" in out
    assert "no analog in pre-training: cart, crate, drone" in out


def test_the_run_completes_with_pixel_and_object_size_slices(own_run):
    assert "succeeded" in own_run["run"]
    run = _run_folder(own_run["home"])
    metrics = pd.read_parquet(run / "tables" / "site_detector" / "offtheshelf" / "metrics.parquet")
    columns = set(metrics["slice_column"])
    assert {"brightness_bin", "contrast_bin", "sharpness_bin", "colour_cast_bin",
            "size_bin", "input_size_bin", "input_px_bin"} <= columns
    assert {f"recall.{c}" for c in CLASSES} <= set(metrics["metric"])


def test_the_report_names_the_class_with_no_analog(own_run):
    report = (_run_folder(own_run["home"]) / "reports" / "decision.md").read_text()
    assert "drone" in report and "no analog" in report
    assert "__all__" not in report  # rows by their human names, never the internal sentinel
    assert "INT8 ONNX export of site-detector (fine-tuned)" in report  # init listed it


def test_the_finetuned_model_predicts_the_operational_taxonomy(own_run):
    from preflight.models.ultralytics_adapter import UltralyticsDetector
    from preflight.taxonomy import Taxonomy

    run = _run_folder(own_run["home"])
    summary = json.loads((run / "reports" / "decision.json").read_text())
    assert summary["overall"]["verdict"]
    checkpoints = sorted(own_run["home"].rglob("best.pt")) + sorted(
        own_run["home"].rglob("last.pt"))
    finetuned = [p for p in checkpoints if "site_detector" in p.parts and "finetune" in p.parts]
    assert finetuned, checkpoints
    det = UltralyticsDetector.from_weights(finetuned[0], input_size=160, device="cpu",
                                           taxonomy=Taxonomy(CLASSES))
    assert list(det.model_names.values()) == list(CLASSES)   # a head for the taxonomy
    assert sorted(det.id_map.values()) == [0, 1, 2, 3]        # drone included
    reeval = pd.read_parquet(run / "tables" / "site_detector" / "finetuned" / "metrics.parquet")
    assert "recall.drone" in set(reeval["metric"])
