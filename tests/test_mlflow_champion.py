"""MLflow as its users expect: one parent run per Dagster run, created once even when parallel
steps ask together and finished with the run's status; the champion is an MLflow pyfunc model
that ``mlflow.pyfunc.load_model("models:/<name>@champion")`` loads and predicts with, and the
monitoring assets load it through that alias."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from resources import MlflowTracker, SettingsResource

TAXONOMY = ("worker", "cart", "crate")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("mlflow_home")
    patch = pytest.MonkeyPatch()
    patch.setenv("PREFLIGHT_HOME", str(home))
    patch.setenv("YOLO_CONFIG_DIR", str(home / "ultralytics"))
    patch.setenv("YOLO_OFFLINE", "1")
    yield home
    patch.undo()


@pytest.fixture(scope="module")
def tracker(home):
    return MlflowTracker(tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
                         artifact_location=(home / "artifacts").as_uri(), experiment="t")


@pytest.fixture(scope="module")
def checkpoint(home) -> Path:
    """An untrained YOLOv8n head for three classes, saved the way ultralytics saves one (no
    download, no training: the test is about the wrapper, not the weights)."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolov8n.yaml", nc=len(TAXONOMY), verbose=False)
    model.names = dict(enumerate(TAXONOMY))
    path = home / "champion.pt"
    torch.save({"model": model.half(), "train_args": {"imgsz": 64}}, path)
    return path


def _frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)


def test_one_parent_run_even_when_parallel_steps_ask_together(tracker):
    start = threading.Barrier(6)
    got: list[str] = []

    def step():
        start.wait()
        got.append(tracker.parent_run("dagster-run-1", "preflight_pass"))

    threads = [threading.Thread(target=step) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 6 and len(set(got)) == 1
    assert [r.info.run_id for r in tracker._parents("dagster-run-1")] == got[:1]
    assert tracker.parent_run("dagster-run-1") == got[0]  # found by its tag afterwards


@pytest.mark.parametrize(("outcome", "status"), [("success", "FINISHED"),
                                                 ("failure", "FAILED"),
                                                 ("canceled", "KILLED")])
def test_parent_run_ends_with_the_dagster_run_status(tracker, outcome, status):
    parent = tracker.parent_run(f"run-{outcome}", "preflight_pass")
    client = tracker.client()
    assert client.get_run(parent).info.status == "RUNNING"
    assert tracker.finish_parent(f"run-{outcome}", outcome) == parent
    run = client.get_run(parent)
    assert run.info.status == status and run.data.tags["dagster.status"] == outcome
    assert tracker.finish_parent("a-run-that-logged-nothing", outcome) is None


def test_the_finish_sensor_ends_the_parent_run(tracker):
    import dagster as dg

    from pipeline.sensors import build_mlflow_finish_sensors

    sensors = {s.name: s for s in build_mlflow_finish_sensors()}
    assert set(sensors) == {"mlflow_parent_run_success", "mlflow_parent_run_failure",
                            "mlflow_parent_run_canceled"}
    run_id = str(uuid.uuid4())
    parent = tracker.parent_run(run_id, "preflight_pass")
    with dg.instance_for_test() as instance:
        dagster_run = instance.create_run_for_job(
            dg.GraphDefinition(name="g").to_job(), run_id=run_id)
        ctx = dg.build_run_status_sensor_context(
            sensor_name="mlflow_parent_run_failure", dagster_instance=instance,
            dagster_run=dagster_run,
            dagster_event=dg.DagsterEvent(event_type_value="PIPELINE_FAILURE", job_name="g"),
            resources={"tracker": tracker})
        sensors["mlflow_parent_run_failure"](ctx)
    assert tracker.client().get_run(parent).info.status == "FAILED"


def _register(tracker, checkpoint, tmp_path, verdict: str) -> tuple[str, dict, dict]:
    run = tracker.start_child(tracker.parent_run("pass-1"), "decision")
    decision = {"overall": {"verdict": verdict, "candidate": "tiny"}, "reasons": ["because"]}
    (tmp_path / "decision.json").write_text(json.dumps(decision))
    record = {"candidate": "tiny", "stage": "fine-tuned", "verdict": verdict,
              "family": "ultralytics", "class_map": None, "taxonomy": list(TAXONOMY),
              "input_size": 64, "weights": str(checkpoint), "mlflow_run_id": run,
              "metrics": "metrics.parquet"}
    version = tracker.register_champion(run, name="tiny-detector", checkpoint=checkpoint,
                                        record=record, decision_json=tmp_path / "decision.json")
    return version, record, decision


def test_champion_alias_loads_as_pyfunc_and_predicts_on_a_frame(tracker, checkpoint, tmp_path):
    import mlflow
    import mlflow.pyfunc

    from preflight.models.ultralytics_adapter import UltralyticsDetector
    from preflight.taxonomy import Taxonomy

    version, record, decision = _register(tracker, checkpoint, tmp_path, "fine-tune")
    mlflow.set_tracking_uri(tracker.resolved_tracking_uri())
    model = mlflow.pyfunc.load_model("models:/tiny-detector@champion")
    wrapper = model.unwrap_python_model()
    wrapper.detector.conf = 1e-4  # an untrained head scores low: keep its boxes to compare
    frame = _frame()
    got = model.predict(frame)
    assert list(got.columns) == ["frame", "class_id", "class_name", "score", "x", "y", "w", "h"]
    assert len(got) > 0 and set(got["frame"]) == {0}
    assert set(got["class_name"]) <= set(TAXONOMY)
    direct = UltralyticsDetector.from_weights(checkpoint, input_size=64,
                                              taxonomy=Taxonomy(TAXONOMY))
    direct.conf = 1e-4
    expected = direct.predict([frame])[0]
    pd.testing.assert_frame_equal(got[["class_id", "score", "x", "y", "w", "h"]],
                                  expected.reset_index(drop=True), check_dtype=False)
    two = model.predict([frame, _frame(1)])  # a list of frames, numbered
    assert set(two["frame"]) <= {0, 1} and (two["frame"] == 0).sum() == len(got)
    # the model holds what the decision chose it with
    assert wrapper.record["input_size"] == 64 and wrapper.record["class_map"] is None
    assert wrapper.record["taxonomy"] == list(TAXONOMY) and wrapper.decision == decision
    with pytest.raises(ValueError, match="RGB uint8 frames"):
        model.predict(pd.DataFrame({"x": [1]}))
    # a later shipping decision moves the alias
    newer, _, _ = _register(tracker, checkpoint, tmp_path, "ship off-the-shelf")
    assert int(newer) == int(version) + 1
    again = mlflow.pyfunc.load_model("models:/tiny-detector@champion").unwrap_python_model()
    assert again.record["verdict"] == "ship off-the-shelf"


def test_monitoring_loads_the_champion_through_the_alias(tracker, checkpoint, tmp_path):
    import dagster as dg

    from assets.monitoring import champion_model

    config = tmp_path / "settings.yaml"
    config.write_text(f"taxonomy: {list(TAXONOMY)}\n"
                      "decision: {registered_model_name: tiny-detector}\n")
    _, record, _ = _register(tracker, checkpoint, tmp_path, "fine-tune")
    settings = SettingsResource(config_path=str(config))
    detector = champion_model(tracker, settings, record)  # the decision's champion record
    assert detector.input_size == 64 and len(detector.predict([_frame()])) == 1
    with pytest.raises(dg.Failure, match=r"is the model of MLflow run .* but the latest "
                                         r"decision registered run elsewhere"):
        champion_model(tracker, settings, {**record, "mlflow_run_id": "elsewhere"})
    config.write_text(f"taxonomy: {list(TAXONOMY)}\n"
                      "decision: {registered_model_name: never-registered}\n")
    with pytest.raises(dg.Failure, match=r"no champion at models:/never-registered@champion"):
        champion_model(tracker, settings, record)
