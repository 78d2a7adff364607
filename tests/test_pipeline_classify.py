"""The classification task through the same pass: crops of a tiny generated sample, one tiny
timm candidate, every stage materialised by Dagster, results asserted on the stored outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import project

from preflight.runs import run_dir

FIXTURES = Path(__file__).parent / "fixtures" / "tiny_classify"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from pipeline.definitions import build_definitions

    home = tmp_path_factory.mktemp("clshome")
    with project(home, FIXTURES / "preflight.yaml") as instance:
        defs = build_definitions()
        result = defs.resolve_job_def("preflight_pass").execute_in_process(instance=instance)
        # the pass's own folder, the result, the definitions; the project home and instance
        yield run_dir(home, result.run_id), result, defs, home, instance


def _table(home: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(home / "tables" / f"{name}.parquet")


def test_every_stage_of_the_classification_pass(run):
    home, result, defs, *_ = run
    assert result.success
    keys = {e.event_specific_data.materialization.asset_key.to_user_string()
            for e in result.get_asset_materialization_events()}
    assert {"validated_labels", "model_zoo", "tinycls/offtheshelf_eval",
            "tinycls/offtheshelf_stress", "tinycls/offtheshelf_latency",
            "tinycls/finetuned_model", "tinycls/learning_curve", "tinycls/reeval",
            "decision"} <= keys
    assert not any(k.endswith("tiling_eval") for k in keys)  # a detection-only remedy


def test_the_int8_classifier_export_is_compared_with_its_source(run):
    """The fine-tuned timm classifier exported to INT8 ONNX, evaluated, timed and compared with
    its FP32 source per slice (paired over the same crops)."""
    home, result, *_ = run
    value = result.output_for_node("tinycls__export_finetuned_onnx_int8")
    assert value["source_stage"] == "fine-tuned" and value["weights"].endswith(".int8.onnx")
    deltas = pd.read_parquet(value["tables"]["deltas"])
    overall = deltas[(deltas["slice_column"] == "__all__") & (deltas["metric"] == "recall")]
    assert len(overall) == 1 and overall["n_units"].iloc[0] == len(
        _table(home, "validated_images").query("split == 'eval'"))
    assert {"camera", "lighting"} <= set(deltas["slice_column"])
    assert value["production_p99_ms"] > 0 and value["speedup_p99"] > 0
    report = (home / "reports" / "decision.md").read_text()
    assert "INT8 ONNX export of tinycls (fine-tuned)" in report
    # the off-the-shelf classifier (its class map in the sidecar) exported too, against its
    # own FP32 source
    off = result.output_for_node("tinycls__export_offtheshelf_onnx_int8")
    assert off["source_stage"] == "off-the-shelf" and off["sha256"] != value["sha256"]
    source = _table(home, "tinycls/offtheshelf/metrics")
    deltas = pd.read_parquet(off["tables"]["deltas"])
    overall = deltas[(deltas["slice_column"] == "__all__") & (deltas["metric"] == "recall")]
    expected = source[(source["slice_column"] == "__all__") & (source["metric"] == "recall")]
    assert overall["source"].iloc[0] == pytest.approx(expected["value"].iloc[0])
    assert "INT8 ONNX export of tinycls (off-the-shelf)" in report


def test_crops_are_validated_like_boxes(run):
    home, *_ = run
    images = _table(home, "validated_images")
    boxes = _table(home, "validated_boxes")
    assert len(images) == len(boxes) > 20  # one whole-image label per crop
    assert (boxes["w"] == images.set_index("image_id").loc[boxes["image_id"], "width"].values).all()
    assert set(images["split"]) == {"finetune", "eval"}


def test_classifier_metrics_stress_and_latency(run):
    home, *_ = run
    metrics = _table(home, "tinycls/offtheshelf/metrics")
    overall = metrics[metrics["slice_column"] == "__all__"].set_index("metric")["value"]
    assert {"accuracy", "recall", "precision", "macro_F1", "ECE"} <= set(overall.index)
    assert overall["recall"] == overall["accuracy"]
    assert {"camera", "lighting", "size_bin"} <= set(metrics["slice_column"])
    preds = _table(home, "tinycls/offtheshelf/predictions")
    assert {"image_id", "label", "class_id", "score"} <= set(preds.columns)
    stress = _table(home, "tinycls/offtheshelf/stress")
    assert set(stress["metric"]) == {"accuracy", "recall"}
    assert {"distribution_shift", "occlusion", "resolution"} <= set(stress["family"])
    latency = _table(home, "tinycls/offtheshelf/latency").iloc[0]
    assert latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]


def test_finetuned_classifier_and_decision(run):
    home, *_ = run
    after = _table(home, "tinycls/finetuned/metrics")
    assert "accuracy" in set(after["metric"])
    decision = json.loads((home / "reports" / "decision.json").read_text())
    assert decision["overall"]["verdict"] in ("ship off-the-shelf", "fine-tune", "replace",
                                              "collect more data first",
                                              "collect evaluation data first", "measure first")
    champion = json.loads((home / "reports" / "champion.json").read_text())
    if champion.get("candidate"):
        assert champion["registered_model"] == "preflight-classifier"


def test_monitoring_a_landed_batch_of_crops(run):
    """After launch, for the classification task too: a landed batch of crops is read,
    validated and scored by the champion classifier, and the drift report covers it."""
    from preflight.data.classification_sample import crops_from_detection_sample
    from preflight.synth.generate import generate
    from preflight.synth.scene import SYNTH_TAXONOMY

    _, _, defs, home, instance = run
    frames = home / "staging" / "frames"
    generate(frames, profile="production", n=16, week=3, seed=31, image_size=160)
    batch = home / "landing" / "batches" / "crops_w03"
    crops_from_detection_sample(frames, batch, size=64, taxonomy=SYNTH_TAXONOMY)
    instance.add_dynamic_partitions("landed_batches", [batch.name])
    landed = defs.resolve_job_def("landed_batch_job").execute_in_process(
        instance=instance, partition_key=batch.name)
    assert landed.success
    scored = run_dir(home, landed.run_id) / "tables" / "batches" / batch.name
    preds = pd.read_parquet(scored / "champion_predictions.parquet")
    assert {"image_id", "label", "class_id", "score"} <= set(preds.columns) and len(preds)
    drift = defs.resolve_job_def("drift_job").execute_in_process(instance=instance)
    assert drift.success
    history = pd.read_parquet(run_dir(home, drift.run_id) / "tables" / "drift_history.parquet")
    assert batch.name in set(history["batch"])
    assert {"input", "prediction", "performance"} <= set(history["kind"])
