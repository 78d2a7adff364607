"""The whole production-validation pass materialised with Dagster on a tiny generated sample,
then the after-launch loop: landed batches, the sensor, and the drift report.

One module-scoped run (60 frames at 160 px, one tiny candidate, one epoch) feeds every test, so
the assertions are on real stored outputs: Parquet tables, MLflow runs, the registry, reports.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from conftest import project

from preflight.runs import run_dir

FIXTURES = Path(__file__).parent / "fixtures" / "tiny"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("pfhome")
    with project(home, FIXTURES / "preflight.yaml") as instance:
        yield {"home": home, "instance": instance}


@pytest.fixture(scope="module")
def defs(env):
    from pipeline.definitions import build_definitions

    return build_definitions()


@pytest.fixture(scope="module")
def pass_run(env, defs):
    """The production-validation pass, materialised once."""
    from pipeline.jobs import PASS_GROUPS

    result = defs.resolve_job_def("preflight_pass").execute_in_process(
        instance=env["instance"], raise_on_error=True)
    assert result.success
    assert PASS_GROUPS
    return result


def _table(run: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(run / "tables" / f"{name}.parquet")


@pytest.fixture(scope="module")
def kept(env, pass_run) -> Path:
    """The pass's own folder in the store (tables, reports, training)."""
    return run_dir(env["home"], pass_run.run_id)


def _mlflow(home: Path):
    import mlflow

    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("preflight")
    return client, client.search_runs([exp.experiment_id], max_results=500)


def test_every_stage_materialised(pass_run):
    keys = {e.event_specific_data.materialization.asset_key.to_user_string()
            for e in pass_run.get_asset_materialization_events()}
    for key in ("production_sample", "ingested_sample", "validated_labels", "model_zoo",
                "tiny/weights", "tiny/offtheshelf_eval", "tiny/offtheshelf_stress", "tiny/offtheshelf_latency",
                "tiny/finetuned_model", "tiny/learning_curve", "tiny/reeval", "tiny/reeval_stress",
                "tiny/reeval_latency", "tiny/tiling_eval", "tiny/export_finetuned_onnx_fp32",
                "tiny/export_finetuned_onnx_int8", "decision"):
        assert key in keys, key
    checks = pass_run.get_asset_check_evaluations()
    assert {c.check_name for c in checks} >= {"classes_in_taxonomy", "images_decode",
                                              "invalid_fraction_within_limit"}


def test_predictions_and_per_slice_table_with_intervals(kept):
    home = kept
    preds = _table(home, "tiny/offtheshelf/predictions")
    assert list(preds.columns) == ["image_id", "class_id", "score", "x", "y", "w", "h"]
    eval_ids = set(_table(home, "validated_images").query("split == 'eval'")["image_id"])
    assert set(preds["image_id"]) <= eval_ids  # only the held-out set is predicted
    metrics = _table(home, "tiny/offtheshelf/metrics")
    assert {"slice_column", "slice_value", "metric", "value", "ci_low", "ci_high", "n_images",
            "n_boxes", "thin"} <= set(metrics.columns)
    assert {"lighting", "camera", "shift", "size_bin"} <= set(metrics["slice_column"])
    recall = metrics[metrics["metric"] == "recall"].dropna(subset=["ci_low"])
    assert len(recall) and (recall["ci_low"] <= recall["value"] + 1e-9).all()
    assert (recall["value"] <= recall["ci_high"] + 1e-9).all()
    for name in ("errors", "confusion", "cost"):
        assert len(_table(home, f"tiny/offtheshelf/{name}"))


def test_mlflow_has_one_run_per_candidate_and_stage(env, pass_run):
    client, runs = _mlflow(env["home"])
    by_name = {r.info.run_name: r for r in runs}
    for name in ("tiny/offtheshelf", "tiny/offtheshelf-stress", "tiny/offtheshelf-latency",
                 "tiny/finetune", "tiny/finetuned", "tiny/learning-curve", "decision"):
        assert name in by_name, sorted(by_name)
    off = by_name["tiny/offtheshelf"]
    parent = off.data.tags["mlflow.parentRunId"]
    assert client.get_run(parent).data.tags["preflight.role"] == "parent"
    assert {"weights", "sha256", "input_size", "operating_threshold", "data_version"} <= set(
        off.data.params)
    assert "recall" in off.data.metrics
    assert any(k.startswith("recall.lighting.") for k in off.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(off.info.run_id, "plots")}
    assert {"plots/slices_recall.png", "plots/confusion.png", "plots/worst_frames.png"} <= artifacts
    tables = {a.path for a in client.list_artifacts(off.info.run_id, "tables")}
    assert "tables/metrics.parquet" in tables
    latency = by_name["tiny/offtheshelf-latency"].data.metrics
    assert latency["latency.p50_ms"] <= latency["latency.p95_ms"] <= latency["latency.p99_ms"]
    assert latency["latency.cold_start_s"] > 0


def test_stress_and_latency_tables(kept):
    stress = _table(kept, "tiny/offtheshelf/stress")
    assert set(stress["family"]) >= {"clean", "distribution_shift", "occlusion", "adversarial",
                                     "resolution"}
    assert set(stress["severity"]) >= {1, 2, 3}
    latency = _table(kept, "tiny/offtheshelf/latency").iloc[0]
    assert latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]
    for field in ("load_p99_ms", "cold_start_s", "server_p99_ms", "max_rate_meeting_bound_qps",
                  "benchmark_ms_per_image", "gap_ratio"):
        assert np.isfinite(latency[field]), field


def test_finetune_never_sees_the_evaluation_set(kept):
    home = kept
    images = _table(home, "validated_images")
    eval_ids = set(images.query("split == 'eval'")["image_id"])
    trained_on = {p.stem for p in (home / "datasets" / "tiny" / "finetune").rglob("*.jpg")}
    assert trained_on and not trained_on & eval_ids
    before_after = _table(home, "tiny/finetuned/before_after")
    assert {"value_before", "value_after", "change", "significant"} <= set(before_after.columns)


def test_run_log_shows_progress_with_the_time_left(env, kept, pass_run):
    """Long steps log done / total and the time left in the run log; the zoo says why it
    trains the stand-in; fine-tuning validates on held-out pool images, not its training set."""
    msgs = [r.user_message for r in env["instance"].all_logs(pass_run.run_id)]

    def logged(*parts: str) -> bool:
        return any(all(p in m for p in parts) for m in msgs)

    assert logged("tiny offtheshelf:", "batches (100%)", "elapsed, done")
    assert logged("tiny (offtheshelf) stress:", "batches (100%)", "done")
    assert logged("tiny (offtheshelf) latency:", "phases", "left")
    assert logged("training", "epochs (100%)", "done")
    assert logged("zoo: (re)building tiny because it is not in the manifest yet")
    view = kept / "datasets" / "tiny" / "finetune" / "images"
    train = {p.stem for p in (view / "train").glob("*.jpg")}
    val = {p.stem for p in (view / "val").glob("*.jpg")}
    assert train and val and not train & val


def test_decision_report_and_champion(env, kept):
    home = kept
    decision = json.loads((home / "reports" / "decision.json").read_text())
    assert decision["overall"]["verdict"] in ("ship off-the-shelf", "fine-tune", "replace",
                                              "collect more data first",
                                              "collect evaluation data first", "measure first")
    assert (home / "reports" / "decision.md").read_text().strip()
    html = (home / "reports" / "decision.html").read_text()
    assert "data:image/png;base64," in html
    champion = json.loads((home / "reports" / "champion.json").read_text())
    client, _ = _mlflow(env["home"])
    version = client.get_model_version_by_alias("preflight-detector", "champion")
    assert version.tags["candidate"] == champion["candidate"] == "tiny"
    if decision["overall"]["verdict"] in ("ship off-the-shelf", "fine-tune"):
        assert version.tags["verdict"] == decision["overall"]["verdict"]
    else:  # the fixture's decision.ship_anyway: the override is recorded as such, everywhere
        assert version.tags["verdict"] == f"operator override ({decision['overall']['verdict']})"
        assert decision["override"] == "tiny"
        assert "by operator override **tiny**" in (home / "reports" / "decision.md").read_text()


def test_exports_go_through_evaluation_latency_and_the_decision(env, pass_run, kept):
    """The fine-tuned tiny model exported to ONNX FP32 and INT8 (calibrated on the fine-tuning
    pool): evaluated on the same held-out set, timed on ONNX Runtime, compared slice by slice
    with its FP32 source on the same frames, weighed by the decision."""
    from preflight.metrics.paired import DELTA_COLUMNS
    from preflight.models.export import read_sidecar
    from preflight.models.zoo import sha256_file

    home = kept
    values = {}
    for e in pass_run.get_asset_materialization_events():
        key = e.event_specific_data.materialization.asset_key.to_user_string()
        if key.startswith("tiny/export_"):
            values[key] = pass_run.output_for_node(key.replace("/", "__"))
    assert set(values) == {"tiny/export_finetuned_onnx_fp32", "tiny/export_finetuned_onnx_int8"}
    int8 = values["tiny/export_finetuned_onnx_int8"]
    assert int8["source_stage"] == "fine-tuned" and int8["runtime"] == "onnxruntime"
    assert int8["weights"].endswith(".int8.onnx") and sha256_file(int8["weights"]) == int8["sha256"]
    side = read_sidecar(int8["weights"])
    assert side["calibration_frames"] == 8 and side["precision"] == "int8"
    assert Path(int8["weights"]).is_relative_to(kept)   # in this pass's own folder
    images = _table(home, "validated_images")
    eval_ids = set(images.query("split == 'eval'")["image_id"])
    preds = pd.read_parquet(int8["tables"]["predictions"])
    assert set(preds["image_id"]) <= eval_ids
    fp32 = values["tiny/export_finetuned_onnx_fp32"]
    deltas = pd.read_parquet(fp32["tables"]["deltas"])
    assert set(DELTA_COLUMNS) - {"export_status"} <= set(deltas.columns)
    assert {"bar", "below_bar", "export_status"} <= set(deltas.columns)
    overall = deltas[(deltas["slice_column"] == "__all__") & (deltas["metric"] == "recall")]
    assert len(overall) == 1
    assert (deltas["delta_ci_low"] <= deltas["delta"] + 1e-12).all()
    assert set(deltas["slice_column"]) > {"__all__"}   # image and box slices
    latency = pd.read_parquet(int8["tables"]["latency"]).iloc[0]
    assert latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]
    assert latency["cold_start_s"] > 0 and np.isfinite(latency["load_p99_ms"])
    assert int8["speedup_p99"] > 0 and int8["source_production_p99_ms"] > 0

    client, runs = _mlflow(env["home"])
    by_name = {r.info.run_name: r for r in runs}
    stress = pd.read_parquet(int8["tables"]["stress"])
    assert set(stress["family"]) > {"clean"} and "mean_rpc_recall" in int8
    for stage in ("finetuned-onnx_int8", "finetuned-onnx_int8-latency",
                  "finetuned-onnx_int8-stress", "finetuned-onnx_int8-deltas"):
        assert f"tiny/{stage}" in by_name, sorted(by_name)
    run = by_name["tiny/finetuned-onnx_int8-deltas"].data
    assert run.params["sha256"] == int8["sha256"] and "speedup_p99" in run.metrics
    assert "delta.recall" in run.metrics

    report = (home / "reports" / "decision.md").read_text()
    assert "INT8 ONNX export of tiny (fine-tuned)" in report
    assert "Export per-slice recall against the FP32 source" in report
    champion = json.loads((home / "reports" / "champion.json").read_text())
    if champion.get("candidate"):
        assert champion["sha256"] == sha256_file(champion["weights"])
        version = client.get_model_version_by_alias("preflight-detector", "champion")
        assert version.tags["sha256"] == champion["sha256"]


# --------------------------------------------------------------------------- after launch

def _land(root: Path, week: int, seed: int, n: int = 24) -> Path:
    from preflight.synth.generate import generate

    out = root / f"week{week:02d}_s{seed}"
    generate(out, profile="production", n=n, week=week, seed=seed, image_size=160,
             batch_id=f"b{week}s{seed}")
    return out


def _tick(defs, instance, cursor):
    sensor = defs.get_sensor_def("landed_batch_sensor")
    # the sensor reads its resources; nested resources (the zoo holds the settings resource)
    # are set up as context managers, so the context is entered as the daemon does
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                 resources=defs.resources) as ctx:
        result = sensor(ctx)
        return result, (ctx.cursor if isinstance(result, dg.SkipReason) else result.cursor)


def test_sensor_requests_each_complete_batch_exactly_once(env, defs, pass_run):
    instance = env["instance"]
    landing = env["home"] / "landing" / "batches"
    cursor, requested = None, []
    for week in (1, 2, 3):
        _land(landing, week, seed=week)
        result, cursor = _tick(defs, instance, cursor)
        requested += [r.partition_key for r in result.run_requests]
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name,
                                            list(request.partition_keys))
        again, cursor = _tick(defs, instance, cursor)  # a second tick changes nothing
        assert isinstance(again, dg.SkipReason)
    assert requested == ["week01_s1", "week02_s2", "week03_s3"]
    assert set(instance.get_dynamic_partitions("landed_batches")) == set(requested)

    # a half-copied batch (a file listed in its manifest is missing) waits until complete
    partial = _land(env["home"] / "staging", 4, seed=4)
    image = next((partial / "images").iterdir())
    saved = image.read_bytes()
    image.unlink()
    shutil.move(str(partial), landing / partial.name)
    waiting, cursor = _tick(defs, instance, cursor)
    assert isinstance(waiting, dg.SkipReason) and "missing" in waiting.skip_message
    (landing / partial.name / "images" / image.name).write_bytes(saved)
    result, cursor = _tick(defs, instance, cursor)
    assert [r.run_key for r in result.run_requests] == [partial.name]


def test_drifted_week_is_flagged_and_undrifted_is_not(env, defs, pass_run):
    """Week 1 again (another seed) against a night-heavy week 6 with new packaging; a third
    batch, mostly unreadable, fails the validation gate and stays out of the drift statistics."""
    instance = env["instance"]
    landing = env["home"] / "landing" / "batches"
    calm, drifted = _land(landing, 1, seed=21, n=160), _land(landing, 6, seed=22, n=160)
    broken = _land(landing, 1, seed=23, n=12)
    for image in sorted((broken / "images").iterdir())[:6]:
        image.write_bytes(b"not a jpeg\n")
    instance.add_dynamic_partitions("landed_batches", [calm.name, drifted.name, broken.name])
    job = defs.resolve_job_def("landed_batch_job")
    for name in (calm.name, drifted.name):
        assert job.execute_in_process(instance=instance, partition_key=name).success
    failed = job.execute_in_process(instance=instance, partition_key=broken.name,
                                    raise_on_error=False)
    assert not failed.success
    failure = next(e for e in failed.all_events if e.is_step_failure)
    message = failure.event_specific_data.user_failure_data.description
    assert broken.name in message and "Worst reasons" in message
    assert "undecodable_image" in message or "truncated_image" in message
    assert not failed.get_asset_materialization_events()  # nothing downstream ran
    result = defs.resolve_job_def("drift_job").execute_in_process(instance=instance)
    assert result.success
    history = pd.read_parquet(run_dir(env["home"], result.run_id) / "tables"
                              / "drift_history.parquet")
    assert broken.name not in set(history["batch"])
    level = history.groupby("batch")["level"].agg(lambda s: "fail" if (s == "fail").any()
                                                  else "ok")
    assert level[drifted.name] == "fail"
    assert level[calm.name] == "ok"
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["input_drift"].passed
    assert (run_dir(env["home"], result.run_id) / "reports" / "drift_timeseries.png").is_file()


def test_failing_drift_retriggers_the_pass_only_when_configured(env, defs, pass_run, tmp_path,
                                                               monkeypatch):
    """The drift report above failed; the retrigger sensor requests preflight_pass once."""
    sensor = defs.get_sensor_def("drift_retrigger_sensor")

    def tick():
        with dg.build_sensor_context(instance=env["instance"], definitions=defs) as ctx:
            return list(sensor(ctx) or [])

    results = tick()
    assert all(isinstance(r, dg.SkipReason) for r in results)  # off by default
    config = tmp_path / "retrigger.yaml"
    config.write_text(f"base: {FIXTURES / 'preflight.yaml'}\ndrift: {{retrigger_on_fail: true}}\n")
    monkeypatch.setenv("PREFLIGHT_CONFIG", str(config))
    requests = [r for r in tick() if isinstance(r, dg.RunRequest)]
    assert len(requests) == 1 and requests[0].run_key.startswith("drift-retrigger-")


def test_monitoring_uses_the_reference_pinned_by_the_decision(env, kept, pass_run):
    """The decision pins the evaluation split the champion was validated on in its own run's
    folder; monitoring reads that (through the decision asset), not the latest pass's tables."""
    champion = json.loads((kept / "reports" / "champion.json").read_text())
    if not champion.get("candidate"):
        pytest.skip("the tiny pass chose no champion")
    reference = Path(champion["reference_images"])
    assert reference.is_relative_to(kept)
    pinned = pd.read_parquet(reference)
    eval_split = _table(kept, "validated_images").query("split == 'eval'")
    assert sorted(pinned["image_id"]) == sorted(eval_split["image_id"])


def test_two_passes_are_both_kept_and_comparable(env, defs, kept, pass_run, tmp_path,
                                                 monkeypatch, capsys):
    """A second pass on another sample (ingestion to the off-the-shelf evaluation) leaves the
    first pass's tables as they were; `preflight runs` lists both, `preflight compare` prints
    per-slice deltas with both intervals."""
    from preflight.cli import main
    from preflight.runs import compare_runs, find_run, list_runs

    before = _table(kept, "validated_images")
    config = tmp_path / "other_sample.yaml"
    config.write_text(f"base: {FIXTURES / 'preflight.yaml'}\n"
                      f"candidates_file: {FIXTURES / 'candidates.yaml'}\n"
                      "data: {synth: {profile: production, n: 120, weeks: 1, seed: 9, "
                      "image_size: 160}}\n")
    monkeypatch.setenv("PREFLIGHT_CONFIG", str(config))
    from pipeline.definitions import build_assets, build_resources

    second = dg.materialize(
        build_assets(), resources=build_resources(), instance=env["instance"],
        selection=["production_sample", "ingested_sample", "validated_labels", "model_zoo",
                   "tiny/offtheshelf_eval"])
    assert second.success
    other = run_dir(env["home"], second.run_id)
    pd.testing.assert_frame_equal(_table(kept, "validated_images"), before)  # untouched
    assert set(_table(other, "validated_images")["image_id"]).isdisjoint(before["image_id"])

    runs = {r.run_id: r for r in list_runs(env["home"])}
    assert {pass_run.run_id, second.run_id} <= set(runs)
    assert runs[pass_run.run_id].verdict != "-" and runs[second.run_id].verdict == "-"
    table = compare_runs(find_run(env["home"], pass_run.run_id[:8]),
                         find_run(env["home"], second.run_id[:8]), ("recall",))
    rows = table[(table["table"] == "tiny/offtheshelf") & (table["slice_column"] == "__all__")]
    assert len(rows) == 1
    row = rows.iloc[0]
    assert np.isfinite([row["value_a"], row["value_b"], row["ci_low_a"], row["ci_high_b"]]).all()
    assert row["delta"] == pytest.approx(row["value_b"] - row["value_a"])

    assert main(["runs", "--home", str(env["home"])]) == 0
    listed = capsys.readouterr().out
    assert pass_run.run_id in listed and second.run_id in listed
    assert main(["compare", pass_run.run_id[:8], second.run_id[:8], "--metric", "recall",
                 "--home", str(env["home"])]) == 0
    out = capsys.readouterr().out
    assert "tiny/offtheshelf" in out and "recall" in out and "[" in out  # intervals shown
