"""Stage 5b: what ships -- exported and INT8-quantised models through the same pass.

One asset per (candidate, stage, format) (``<candidate>/export_<stage>_<format>``, e.g.
``yolov8n/export_finetuned_onnx_int8``): the candidate's off-the-shelf model, and its fine-tuned
model when it is fine-tuned, exported to each configured format, INT8 calibrated on frames of
the fine-tuning pool, then evaluated on the same held-out set, stressed with the same suite, timed
on its own runtime (batch 1, p50/p95/p99, under load, cold start), and compared slice by slice
with its own FP32 source on the same frames (paired bootstrap). The artefact and its sha256
travel to the decision, which may ship it.
"""

import time

import dagster as dg
import pandas as pd

from assets._md import md_table
from assets._record import candidate_key, jsonable, record_run
from assets.evaluation import evaluation_context, run_evaluation, run_latency, run_stress
from preflight.decide.classify_failure import slice_label
from preflight.metrics.slices import OVERALL
from preflight.stages import FINE_TUNED, FINE_TUNED_KEY, OFF_THE_SHELF, OFF_THE_SHELF_KEY
from resources import MlflowTracker, ModelZoo, PreflightStore, SettingsResource

#: export stage (``export.stages``) -> (evaluation, latency) assets of its FP32 source
SOURCE_ASSETS = {OFF_THE_SHELF_KEY: ("offtheshelf_eval", "offtheshelf_latency"),
                 FINE_TUNED_KEY: ("reeval", "reeval_latency")}


def export_plan(stages: list[str], formats: list[str], finetuned: bool
                ) -> list[tuple[str, str]]:
    """The (stage, format) exports of one candidate: every configured stage it has (the
    fine-tuned stage only when the candidate is fine-tuned) times every format."""
    return [(stage, label) for stage in stages if stage != FINE_TUNED_KEY or finetuned
            for label in formats]


def export_asset_name(stage: str, label: str) -> str:
    """``export_<stage>_<format>``: the asset name of one export of a candidate."""
    return f"export_{stage}_{label}"


def build_export_assets(candidate: str, formats: list[str], finetuned: bool,
                        stages: list[str] | tuple[str, ...] = tuple(SOURCE_ASSETS)
                        ) -> list[dg.AssetsDefinition]:
    """One asset per (stage, format) of ``candidate`` (see :func:`export_plan`)."""
    return [_export_asset(candidate, stage, label)
            for stage, label in export_plan(list(stages), formats, finetuned)]


def _export_asset(candidate: str, stage: str, label: str) -> dg.AssetsDefinition:
    from preflight.models.export import parse_spec

    key = candidate_key(candidate)
    spec = parse_spec(label)
    finetuned = stage == FINE_TUNED_KEY
    src_eval, src_latency = SOURCE_ASSETS[stage]
    ins = {"validated_labels": dg.AssetIn(key="validated_labels"),
           "source_eval": dg.AssetIn(key=[key, src_eval]),
           "source_latency": dg.AssetIn(key=[key, src_latency])}
    if finetuned:
        ins["finetuned_model"] = dg.AssetIn(key=[key, "finetuned_model"])
    else:
        ins["model_zoo"] = dg.AssetIn(key="model_zoo")

    stage_name = FINE_TUNED if finetuned else OFF_THE_SHELF

    @dg.asset(name=export_asset_name(stage, label), key_prefix=[key], ins=ins,
              group_name="export", kinds={"onnx", "mlflow"},
              tags={"candidate": key, "format": label, "stage": stage},
              description=f"{spec.describe()} export of {candidate} ({stage_name}): its "
                          "per-slice recall against its FP32 source (paired over the same "
                          "frames, slices below the bar flagged), its latency on its own "
                          "runtime and the speed-up.")
    def export_asset(context: dg.AssetExecutionContext, settings: SettingsResource,
                     store: PreflightStore, tracker: MlflowTracker, zoo: ModelZoo,
                     **inputs) -> dg.Output[dict]:
        """The export's per-slice recall against its FP32 source (paired over the same frames,
        slices below the bar flagged), its latency on its own runtime and the speed-up."""
        return run_export(context, candidate=candidate, label=label, finetuned=finetuned,
                          settings=settings, store=store, tracker=tracker, zoo=zoo, **inputs)

    return export_asset


def run_export(context, *, candidate: str, label: str, finetuned: bool,
               settings: SettingsResource, store: PreflightStore, tracker: MlflowTracker,
               zoo: ModelZoo, validated_labels: dict, source_eval: dict, source_latency: dict,
               finetuned_model: dict | None = None, model_zoo: dict | None = None
               ) -> dg.Output[dict]:
    from assets.finetuning import finetune_pool
    from preflight.decide import Bar
    from preflight.decide.exports import flag_deltas
    from preflight.evaluation import read_rgb
    from preflight.metrics.paired import prediction_deltas
    from preflight.models.export import calibration_frames, export_all, parse_spec
    from preflight.models.exported import load_exported

    cfg = settings.load()
    ex = cfg.export
    spec = parse_spec(label)
    stage_name = FINE_TUNED if finetuned else OFF_THE_SHELF
    description = f"{spec.describe()} export of {candidate} ({stage_name})"
    key = candidate_key(candidate)
    source = (zoo.finetuned_detector(candidate, finetuned_model["weights"]) if finetuned
              else zoo.detector(candidate))
    t0 = time.perf_counter()
    calib: list = []
    if spec.precision == "int8":
        pool, _ = finetune_pool(validated_labels)   # never the evaluation set
        calib = [read_rgb(p) for p in calibration_frames(pool, ex.calibration_frames, ex.seed)]
    # in this run's folder, one per (stage, format): both stages' files take the source's name,
    # and an INT8 export writes its own FP32 intermediate, which must not overwrite the file the
    # FP32 export validated
    out_dir = store.run_path("exports", key, FINE_TUNED_KEY if finetuned else OFF_THE_SHELF_KEY, label,
                             "x").parent
    artefact = export_all(source, [spec], out_dir, calibration=calib, seed=ex.seed)[label]
    export_seconds = time.perf_counter() - t0
    context.log.info(f"{description}: {artefact.path.name} (sha256 {artefact.sha256[:12]}) "
                     f"in {export_seconds:.0f}s")
    threads = ex.threads or cfg.latency.threads
    model = load_exported(artefact.path, runtime=spec.runtime, name=f"{candidate}@{label}",
                          threads=threads, sha256=artefact.sha256)
    stage = f"{FINE_TUNED_KEY if finetuned else OFF_THE_SHELF_KEY}-{label}"
    params = {"format": spec.format, "precision": spec.precision, "runtime": spec.runtime,
              "source_stage": stage_name, "source_sha256": source.sha256 or "",
              "calibration_frames": len(calib), "calibration_seed": ex.seed,
              "runtime_threads": threads or "default"}
    ev = run_evaluation(context, stage=stage, name=candidate, detector=model, settings=settings,
                        store=store, tracker=tracker, validated_labels=validated_labels,
                        params=params)
    lat = run_latency(context, stage=stage, name=candidate, detector=model, settings=settings,
                      store=store, tracker=tracker, validated_labels=validated_labels)
    stress = run_stress(context, stage=stage, name=candidate, detector=model, settings=settings,
                        store=store, tracker=tracker, validated_labels=validated_labels)

    _, eval_images, gt, espec = evaluation_context(settings, validated_labels, model.input_size)
    bar = Bar.from_settings(cfg.bar, cfg.decision)
    deltas = prediction_deltas(
        cfg.task, gt, eval_images, pd.read_parquet(source_eval["tables"]["predictions"]),
        pd.read_parquet(ev.value["tables"]["predictions"]), slice_columns=espec.slice_columns,
        box_slice_columns=espec.box_slice_columns,
        operating_threshold=espec.operating_threshold, model_input_size=model.input_size,
        class_names=cfg.taxonomy_obj.as_dict(), bootstrap=ex.bootstrap, seed=ex.seed)
    deltas = flag_deltas(deltas, pd.read_parquet(ev.value["tables"]["metrics"]), bar)
    deltas_path = store.write_table(f"{key}/{stage}/deltas", deltas)
    p99, src_p99 = lat.value["production_p99_ms"], source_latency["production_p99_ms"]
    speedup = src_p99 / p99 if p99 else float("nan")
    changed = deltas[deltas["changed"]]
    below = deltas[deltas["below_bar"]]
    metrics = {"speedup_p99": speedup, "latency.production_p99_ms": p99,
               "source.production_p99_ms": src_p99, "export_seconds": export_seconds,
               "slices_changed": float(len(changed)), "slices_below_bar": float(len(below))}
    for r in deltas.itertuples():
        where = "" if r.slice_column == OVERALL else f".{r.slice_column}.{r.slice_value}"
        metrics[f"delta.{r.metric}{where}"] = r.delta
        metrics[f"delta_ci_low.{r.metric}{where}"] = r.delta_ci_low
        metrics[f"delta_ci_high.{r.metric}{where}"] = r.delta_ci_high
    mlflow_meta = record_run(context, tracker, name=f"{candidate}/{stage}-deltas",
                             stage=f"{stage}-deltas", candidate=candidate,
                             params={**params, "sha256": artefact.sha256,
                                     "artefact": artefact.path.name,
                                     "paired_bootstrap": ex.bootstrap},
                             metrics=metrics,
                             artifacts=[("tables", str(deltas_path)),
                                        ("model", str(artefact.path)),
                                        ("model", str(artefact.sidecar))])
    shown = deltas.sort_values("delta")
    shown = shown.assign(slice=[slice_label(*k) for k in shown[
        ["slice_column", "slice_value", "metric"]].itertuples(index=False)])[
        ["slice", "source", "export", "delta", "delta_ci_low", "delta_ci_high", "changed",
         "export_status"]]
    value = {"candidate": candidate, "label": label, "stage": stage, "format": spec.format,
             "precision": spec.precision, "runtime": spec.runtime, "description": description,
             "source_stage": stage_name, "weights": str(artefact.path),
             "sha256": artefact.sha256, "source_weights": str(source.weights),
             "source_sha256": source.sha256 or "",
             "tables": {**ev.value["tables"], "latency": lat.value["tables"]["latency"],
                        **stress.value["tables"], "deltas": str(deltas_path)},
             "mean_rpc_recall": stress.value["mean_rpc_recall"],
             "AP50": ev.value["AP50"], "recall": ev.value["recall"],
             "daily_cost": ev.value["daily_cost"], "input_size": model.input_size,
             "production_p99_ms": p99, "p99_ms": lat.value.get("p99_ms"),
             "source_production_p99_ms": src_p99, "source_p99_ms": source_latency.get("p99_ms"),
             "speedup_p99": speedup,
             "changed_slices": [f"{r.slice_column}={r.slice_value} {r.metric}: {r.delta:+.3f}"
                                for r in changed.itertuples()],
             "below_bar_slices": [f"{r.slice_column}={r.slice_value} {r.metric}"
                                  for r in below.itertuples()],
             "mlflow_run_id": mlflow_meta["mlflow_run_id"]}
    return dg.Output(jsonable(value), metadata={
        "artefact": dg.MetadataValue.path(str(artefact.path)),
        "sha256": artefact.sha256, "p99_ms": p99, "source_p99_ms": src_p99,
        "speedup_p99": speedup, "recall": ev.value["recall"],
        "mean_rpc_recall": stress.value["mean_rpc_recall"],
        "slices_changed": len(changed), "slices_below_bar": len(below),
        "deltas": dg.MetadataValue.md(md_table(shown, max_rows=30)), **mlflow_meta})
