"""Exported candidates through the materialised pass: every export of every stage is evaluated,
timed and compared with its own FP32 source, appears in the decision's candidate table with the
sha256 of its file, and the decision ships the INT8 export -- registering that exact file.

One tiny candidate (yolov8n at 160 px, one epoch of zoo training, one epoch of fine-tuning) on 80
frames of four weeks (so the evaluation split holds every class, sku_new included); its
off-the-shelf and fine-tuned models exported to ONNX FP32 and INT8: four export assets, built by
the factory per (candidate, stage, format).

Latency is the one thing the test fixes: which artefact fits a p99 budget on a shared 2-core box
is timing noise, so the measurement runs for real (tables, MLflow) and then reports the p99 of
the test's "edge device" per artefact kind (``DEVICE_P99_MS``): the FP32 models (PyTorch and
ONNX) are over the 250 ms budget, the INT8 exports within it. The bar is 0 (a one-epoch model
clears nothing else) and one frame / box is evidence enough, so the verdict follows from the
rule alone: the off-the-shelf INT8 export
is blocked by its source's class without an analog in pre-training (as the FP32 rule blocks the
off-the-shelf model), and the fine-tuned INT8 export ships.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import project

from preflight.runs import run_dir

FIXTURES = Path(__file__).parent / "fixtures" / "tiny"
pytestmark = pytest.mark.slow

#: p99 (ms) of the test's edge device per artefact kind; the budget is 250 ms
DEVICE_P99_MS = {"pytorch": 400.0, "fp32": 300.0, "int8": 100.0}
EXPORTS = [f"export_{stage}_onnx_{precision}" for stage in ("offtheshelf", "finetuned")
           for precision in ("fp32", "int8")]


def _device_p99(spec) -> float:
    """The fixed p99 for the artefact a latency spec loads (an exported file or a checkpoint)."""
    path = str(spec.kwargs.get("path") or "")
    if not path:
        return DEVICE_P99_MS["pytorch"]
    return DEVICE_P99_MS["int8" if ".int8." in Path(path).name else "fp32"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import preflight.latency
    from pipeline.definitions import build_definitions

    home = tmp_path_factory.mktemp("exphome")
    config = home / "preflight.yaml"
    config.write_text(f"""base: {FIXTURES / 'preflight.yaml'}
candidates_file: {FIXTURES / 'candidates.yaml'}
data: {{synth: {{profile: production, n: 80, weeks: 4, seed: 0, image_size: 160}}}}
evaluation: {{min_images: 1, min_boxes: 1}}
stress: {{n_images: 4, corruptions: [distribution_shift/colour_cast], severities: [1]}}
latency: {{iterations: 5, warmup: 1, load_workers: 0, server_queries: 5, server_max_seconds: 1,
          search_steps: 1, cold_start: false, batch_size: 2}}
finetune: {{epochs: 1, batch: 8, learning_curve_candidates: []}}
tiling: {{enabled: false}}
bar: {{min_recall: {{default: 0.0}}, min_precision: {{default: 0.0}}, min_slice_recall: 0.0,
      latency_budget_p99_ms: 250}}
decision: {{ship_anyway: null}}
export: {{candidates: [tiny], formats: [onnx_fp32, onnx_int8], stages: [offtheshelf, finetuned],
         calibration_frames: 4, bootstrap: 10}}
""")
    real = preflight.latency.measure_latency

    def on_the_device(model, frame, config=None, *, spec=None, **kwargs):
        report = real(model, frame, config, spec=spec, **kwargs)
        p99 = _device_p99(spec)
        return dataclasses.replace(report, p50_ms=min(report.p50_ms, p99),
                                   p95_ms=min(report.p95_ms, p99), p99_ms=p99,
                                   production_p99_ms=p99,
                                   gap_ratio=p99 / report.benchmark_ms_per_image)

    patch = pytest.MonkeyPatch()
    patch.setattr(preflight.latency, "measure_latency", on_the_device)
    t0 = time.perf_counter()
    try:
        with project(home, config) as instance:
            defs = build_definitions()
            result = defs.resolve_job_def("preflight_pass").execute_in_process(
                instance=instance, raise_on_error=True)
            seconds = time.perf_counter() - t0
            print(f"\n[exports pass] {seconds:.0f} s")
            yield {"home": home, "result": result, "folder": run_dir(home, result.run_id)}
    finally:
        patch.undo()


def _value(run, asset: str) -> dict:
    return run["result"].output_for_node(f"tiny__{asset}")


def _mlflow(home: Path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("preflight")
    return client, {r.info.run_name: r for r in client.search_runs([exp.experiment_id],
                                                                   max_results=500)}


def test_every_stage_and_format_is_exported_evaluated_and_timed(run):
    """One asset per (stage, format); each export's evaluation and latency tables are in the
    store under its own stage, its file is the one hashed, and its deltas are paired with its
    own FP32 source (the off-the-shelf or the fine-tuned model)."""
    from preflight.models.zoo import sha256_file

    keys = {e.event_specific_data.materialization.asset_key.to_user_string()
            for e in run["result"].get_asset_materialization_events()}
    assert {f"tiny/{a}" for a in EXPORTS} <= keys
    assert not any(k.startswith("tiny/export_") and k.split("/")[1] not in EXPORTS for k in keys)
    folder = run["folder"]
    values = {a: _value(run, a) for a in EXPORTS}
    assert len({v["sha256"] for v in values.values()}) == 4   # four distinct files
    for asset, v in values.items():
        stage = "offtheshelf" if "offtheshelf" in asset else "finetuned"
        assert v["stage"] == f"{stage}-{v['label']}" and asset.endswith(v["label"])
        assert Path(v["weights"]).is_relative_to(folder / "exports" / "tiny" / stage)
        assert sha256_file(v["weights"]) == v["sha256"]
        metrics = pd.read_parquet(folder / "tables" / "tiny" / v["stage"] / "metrics.parquet")
        latency = pd.read_parquet(folder / "tables" / "tiny" / v["stage"] / "latency.parquet")
        assert {"recall", "precision"} <= set(metrics["metric"])
        assert latency["production_p99_ms"].iloc[0] == DEVICE_P99_MS[v["precision"]]
        assert v["source_production_p99_ms"] == DEVICE_P99_MS["pytorch"]
        # paired with its own source: the deltas' source recall is that model's evaluation
        source = pd.read_parquet(folder / "tables" / "tiny" / stage / "metrics.parquet")
        deltas = pd.read_parquet(v["tables"]["deltas"])
        overall = deltas[(deltas["slice_column"] == "__all__") & (deltas["metric"] == "recall")]
        expected = source[(source["slice_column"] == "__all__") & (source["metric"] == "recall")]
        assert overall["source"].iloc[0] == pytest.approx(expected["value"].iloc[0])
    assert values["export_offtheshelf_onnx_int8"]["source_stage"] == "off-the-shelf"
    assert values["export_finetuned_onnx_int8"]["source_stage"] == "fine-tuned"

    _, runs = _mlflow(run["home"])
    for v in values.values():
        for suffix in ("", "-latency", "-stress"):
            assert f"tiny/{v['stage']}{suffix}" in runs, sorted(runs)
        deltas_run = runs[f"tiny/{v['stage']}-deltas"].data
        assert deltas_run.params["sha256"] == v["sha256"]
        assert deltas_run.metrics["latency.production_p99_ms"] == DEVICE_P99_MS[v["precision"]]
        assert runs[f"tiny/{v['stage']}"].data.params["sha256"] == v["sha256"]


def test_exports_are_candidates_in_the_decision_table(run):
    """The decision's candidate table: the FP32 model and the four exports, each with the
    sha256 of its exact file and its verdict against the bar."""
    decision = run["result"].output_for_node("decision")
    rows = pd.DataFrame(decision["candidates"])
    exports = rows[rows["artefact"] != "FP32 model"].set_index("artefact")
    for asset in EXPORTS:
        v = _value(run, asset)
        assert exports.loc[v["description"], "sha256"] == v["sha256"]
        assert exports.loc[v["description"], "p99 ms"] == DEVICE_P99_MS[v["precision"]]
    assert exports["verdict"].to_dict() == {
        "FP32 ONNX export of tiny (off-the-shelf)": "does not clear the bar",
        "INT8 ONNX export of tiny (off-the-shelf)": "does not clear the bar",
        "FP32 ONNX export of tiny (fine-tuned)": "does not clear the bar",
        "INT8 ONNX export of tiny (fine-tuned)": "ships"}
    fp32 = rows[rows["artefact"] == "FP32 model"].iloc[0]
    assert fp32["p99 ms"] == DEVICE_P99_MS["pytorch"] and len(fp32["sha256"]) == 64
    report = (run["folder"] / "reports" / "decision.md").read_text()
    assert "Candidates and exported artefacts" in report and "__all__" not in report
    for asset in EXPORTS:
        assert _value(run, asset)["sha256"][:12] in report
    assert "no analog in pre-training: sku_new" in report  # why the off-the-shelf INT8 is out
    assert "recall changed beyond the interval" in report  # the exports' closing numbers


def test_the_decision_ships_the_int8_export_and_registers_that_file(run):
    """FP32 over the budget, the fine-tuned INT8 export within it and clearing the bar: the
    verdict ships it, and the registered champion is the validated file, byte for byte."""
    from preflight.models.zoo import sha256_file

    int8 = _value(run, "export_finetuned_onnx_int8")
    decision = run["result"].output_for_node("decision")
    assert decision["verdict"] == "fine-tune" and decision["stage"] == "fine-tuned"
    assert decision["reasons"][0] == "ship the INT8 ONNX export of tiny (fine-tuned)"
    assert decision["artefact"] == "INT8 ONNX export of tiny (fine-tuned)"
    champion = json.loads((run["folder"] / "reports" / "champion.json").read_text())
    assert champion["weights"] == int8["weights"] and champion["export"] == "onnx_int8"
    assert champion["sha256"] == int8["sha256"] == sha256_file(int8["weights"])
    assert champion["family"] == "onnxruntime"
    assert champion["metrics"] == int8["tables"]["metrics"]
    report = (run["folder"] / "reports" / "decision.md").read_text()
    assert f"sha256 {int8['sha256'][:12]}" in report

    client, _ = _mlflow(run["home"])
    version = client.get_model_version_by_alias("preflight-detector", "champion")
    assert version.tags["sha256"] == int8["sha256"]
    assert version.tags["artefact"] == "INT8 ONNX export of tiny (fine-tuned)"
    registered = Path(client.download_artifacts(version.run_id, "champion",
                                                str(run["home"] / "registered")))
    (copy,) = registered.rglob(Path(int8["weights"]).name)
    assert sha256_file(copy) == int8["sha256"]   # the registered bytes are the validated ones
