"""Stage 3: the off-the-shelf evaluation of every candidate (the zoo: ``assets.zoo``).

Per candidate (asset keys ``<candidate>/offtheshelf_eval``, ``.../offtheshelf_stress``,
``.../offtheshelf_latency``), so the multiprocess executor runs candidates side by side and a
distributed executor spreads them over machines by configuration alone. Each is made by the
per-candidate factory (:func:`assets._candidate.candidate_asset`); the stage runners here
(``run_evaluation``, ``run_stress``, ``run_latency``) serve the fine-tuned, second-seed and
exported models too.
"""


import time

import dagster as dg
import pandas as pd

from assets._candidate import CandidateRun, candidate_asset
from assets._md import md_table
from assets._record import candidate_key, jsonable, record_run, write_tables
from assets.zoo import weights_key
from preflight.metrics.slices import OVERALL
from preflight.stages import OFF_THE_SHELF_KEY
from resources import MlflowTracker, PreflightStore, SettingsResource


def evaluation_context(settings: SettingsResource, validated_labels: dict, input_size: int):
    """Settings, the evaluation split and its ground truth, and the evaluation spec."""
    from preflight.evaluation import EvaluationSpec, ground_truth

    cfg = settings.load()
    images = pd.read_parquet(validated_labels["images"])
    boxes = pd.read_parquet(validated_labels["boxes"])
    eval_images = images[images["split"] == "eval"].reset_index(drop=True)
    gt = ground_truth(boxes[boxes["image_id"].isin(eval_images["image_id"])])
    spec = EvaluationSpec.from_settings(cfg.evaluation, model_input_size=input_size)
    return cfg, eval_images, gt, spec


def run_evaluation(context, *, stage: str, name: str, detector, settings: SettingsResource,
                   store: PreflightStore, tracker: MlflowTracker, validated_labels: dict,
                   params: dict) -> dg.Output[dict]:
    """Evaluate ``detector`` on the held-out set, store the tables, record the MLflow run."""
    from preflight.evaluation import mlflow_metric_names
    from preflight.metrics.bootstrap_process import BootstrapPool
    from preflight.metrics.cost import CostModel
    from preflight.tasks import task_of

    cfg, eval_images, gt, spec = evaluation_context(settings, validated_labels,
                                                    detector.input_size)
    key = candidate_key(name)
    plot_dir = store.run_path("reports", key, stage, "x").parent
    context.log.info(f"{name} ({stage}): predicting {len(eval_images)} held-out images")
    with BootstrapPool() as bootstraps:  # the intervals' helper process, for this evaluation
        ev = task_of(cfg.task).call("evaluate", detector.predict, eval_images, gt, spec,
                                    CostModel(**vars(cfg.cost)), cfg.taxonomy_obj.as_dict(),
                                    plot_dir=str(plot_dir), batch_size=cfg.evaluation.batch_size,
                                    title=f"{name} {stage}", recall_bar=cfg.bar.min_slice_recall,
                                    report=context.log.info, bootstraps=bootstraps)
    paths = write_tables(store, f"{key}/{stage}", ev.tables())
    daily_cost = _daily_cost(ev.result.cost)
    metrics = {**mlflow_metric_names(ev.metrics), "cost.daily": daily_cost,
               "predict_seconds": ev.predict_seconds,
               "predict_ms_per_image": 1000 * ev.predict_seconds / max(1, ev.n_images)}
    run_params = {"candidate": name, "stage": stage, "weights": detector.weights,
                  "sha256": detector.sha256 or "", "input_size": detector.input_size,
                  "operating_threshold": spec.operating_threshold,
                  "bootstrap": spec.bootstrap, "eval_images": ev.n_images,
                  "data_version": _data_version(eval_images), "device": detector.device, **params}
    artifacts = [("tables", p) for p in paths.values()] + [("plots", p) for p in ev.plots.values()]
    mlflow_meta = record_run(context, tracker, name=f"{name}/{stage}", stage=stage,
                             candidate=name, params=run_params, metrics=metrics,
                             artifacts=artifacts)
    summary = _evaluation_summary(ev, name=name, stage=stage, task=cfg.task, paths=paths,
                                  detector=detector, daily_cost=daily_cost,
                                  eval_images=eval_images,
                                  mlflow_run_id=mlflow_meta["mlflow_run_id"])
    return dg.Output(jsonable(summary), metadata={**_evaluation_metadata(ev, summary, paths),
                                                  **mlflow_meta})


def _daily_cost(cost: pd.DataFrame) -> float:
    """The overall expected daily cost row of a cost table (NaN when it has none)."""
    daily = cost[(cost["slice_column"] == OVERALL) & (cost["metric"] == "cost.daily")]
    return float(daily["value"].iloc[0]) if len(daily) else float("nan")


def _evaluation_summary(ev, *, name: str, stage: str, task: str, paths: dict, detector,
                        daily_cost: float, eval_images: pd.DataFrame, mlflow_run_id: str) -> dict:
    """The evaluation asset's value: where the tables are and the overall numbers."""
    from preflight.models.base import parameter_count

    return {"candidate": name, "stage": stage, "tables": paths, "plots": ev.plots,
            "task": task, "AP": ev.overall("AP"), "AP50": ev.overall("AP50"),
            "accuracy": ev.overall("accuracy"),
            "recall": ev.overall("recall"), "precision": ev.overall("precision"),
            "daily_cost": daily_cost, "input_size": detector.input_size,
            "weights": detector.weights, "mlflow_run_id": mlflow_run_id,
            "n_parameters": parameter_count(detector),
            "image_size": int(eval_images[["width", "height"]].max(axis=1).max())}


def _evaluation_metadata(ev, summary: dict, paths: dict) -> dict:
    """What the evaluation asset shows in Dagster (the MLflow run's metadata aside)."""
    from preflight.evaluation import failing_slices

    worst = failing_slices(ev.metrics, "recall", k=10)  # top-1 accuracy for classifiers
    return {"AP": summary["AP"], "AP50": summary["AP50"], "recall": summary["recall"],
            "precision": summary["precision"], "daily_cost": summary["daily_cost"],
            "eval_images": ev.n_images, "predictions": len(ev.predictions),
            "top_failing_slices": dg.MetadataValue.md(md_table(worst)),
            "slice_chart": dg.MetadataValue.path(ev.plots.get("slices_recall", "")),
            "metrics_table": dg.MetadataValue.path(paths["metrics"])}


def _data_version(images: pd.DataFrame) -> str:
    import hashlib

    return hashlib.sha1("".join(sorted(images["image_id"].astype(str))).encode()).hexdigest()[:12]


def _offtheshelf_eval(run: CandidateRun, validated_labels: dict, model_zoo: dict
                      ) -> dg.Output[dict]:
    """Off-the-shelf predictions on the held-out set and the failure distribution: per-slice
    metrics with intervals, error types, confusion and daily cost."""
    from preflight.models.candidates import unmapped_classes

    no_analog = unmapped_classes(run.zoo.candidate(run.candidate), run.settings.load().taxonomy_obj)
    out = run_evaluation(run.context, stage=OFF_THE_SHELF_KEY, name=run.candidate,
                         detector=run.zoo.detector(run.candidate),
                         validated_labels=validated_labels, **run.resources,
                         params={"no_analog_in_pretraining": ",".join(no_analog) or "none"})
    out.value["no_analog"] = no_analog
    out.metadata["no_analog_in_pretraining"] = dg.MetadataValue.text(
        ", ".join(no_analog) or "none")
    return out


def _offtheshelf_stress(run: CandidateRun, validated_labels: dict, model_zoo: dict
                        ) -> dg.Output[dict]:
    """The edge-case stress suite: AP / recall per family, corruption and severity, and the
    relative performance under corruption (rPC = corrupted / clean)."""
    return run_stress(run.context, stage=OFF_THE_SHELF_KEY, name=run.candidate,
                      detector=run.zoo.detector(run.candidate),
                      validated_labels=validated_labels, **run.resources)


def _offtheshelf_latency(run: CandidateRun, validated_labels: dict, model_zoo: dict
                         ) -> dg.Output[dict]:
    """Latency as production sees it: batch-1 p50/p95/p99, under co-tenant load, cold start,
    a Poisson server scenario, and the gap to the benchmark-style number."""
    return run_latency(run.context, stage=OFF_THE_SHELF_KEY, name=run.candidate,
                       detector=run.zoo.detector(run.candidate),
                       validated_labels=validated_labels, **run.resources)


def build_candidate_eval_assets(candidate: str) -> list[dg.AssetsDefinition]:
    """The three off-the-shelf assets of one candidate."""
    # this candidate's stand-in only (not the whole zoo): evaluated as soon as its own is ready
    return [candidate_asset(candidate, f"offtheshelf_{what}", group="evaluation",
                            inputs=["validated_labels", "model_zoo"], body=body,
                            deps=[weights_key(candidate)])
            for what, body in (("eval", _offtheshelf_eval), ("stress", _offtheshelf_stress),
                               ("latency", _offtheshelf_latency))]


def run_stress(context, *, stage: str, name: str, detector, settings: SettingsResource,
               store: PreflightStore, tracker: MlflowTracker, validated_labels: dict
               ) -> dg.Output[dict]:
    from preflight.evaluation import stratified_subset, stress_candidate
    from preflight.report.plots import line_chart
    from preflight.stress.suite import select_suite
    from preflight.tasks import task_of

    cfg, eval_images, gt, _ = evaluation_context(settings, validated_labels, detector.input_size)
    s = cfg.stress
    subset = stratified_subset(eval_images, s.n_images, cfg.evaluation.slice_columns, s.seed)
    suite = select_suite(s.corruptions, s.severities)
    context.log.info(f"{name} ({stage}): {len(suite)} stress conditions x {len(subset)} images")
    t0 = time.perf_counter()
    predict, evaluate_fn = task_of(cfg.task).call("stress_fns", detector.predict)
    table, summary = stress_candidate(
        predict, subset, gt[gt["image_id"].isin(subset["image_id"])], suite,
        operating_threshold=cfg.evaluation.operating_threshold,
        class_names=cfg.taxonomy_obj.as_dict(), seed=s.seed, evaluate_fn=evaluate_fn,
        report=context.log.info, desc=f"{name} ({stage}) stress")
    key = candidate_key(name)
    paths = write_tables(store, f"{key}/{stage}", {"stress": table, "stress_summary": summary})
    recall = table[(table["metric"] == "recall") & (table["family"] != "clean")].copy()
    recall["condition"] = recall["family"] + "/" + recall["corruption"]
    chart = line_chart(recall, "severity", "rpc", "condition",
                       store.run_path("reports", key, stage, "stress_rpc.png"),
                       title=f"{name} {stage}: recall under corruption (rPC)", threshold=1.0,
                       ylabel="rPC (corrupted / clean)")
    metrics = {f"rPC.{r.family}.{r.metric}": r.rpc for r in summary.itertuples()}
    metrics.update({f"stress.{r.metric}.{r.family}.{r.corruption}.s{int(r.severity)}": r.value
                    for r in table.itertuples() if r.family != "clean"})
    mlflow_meta = record_run(context, tracker, name=f"{name}/{stage}-stress",
                             stage=f"{stage}-stress", candidate=name,
                             params={"stress_images": len(subset), "conditions": len(suite),
                                     "severities": s.severities, "seed": s.seed},
                             metrics=metrics, artifacts=[("tables", paths["stress"]),
                                                         ("plots", str(chart))])
    fam = summary[summary["metric"] == "recall"][["family", "clean_value", "mpc", "rpc",
                                                   "worst_condition"]]
    mean_rpc = summary[(summary["family"] == OVERALL) & (summary["metric"] == "recall")]
    value = {"candidate": name, "stage": stage, "tables": paths, "chart": str(chart),
             "mean_rpc_recall": float(mean_rpc["rpc"].iloc[0]) if len(mean_rpc) else None,
             "seconds": time.perf_counter() - t0}
    return dg.Output(jsonable(value), metadata={
        "rpc_by_family": dg.MetadataValue.md(md_table(fam)),
        "mean_rpc_recall": value["mean_rpc_recall"], "conditions": len(suite),
        "stress_images": len(subset), "chart": dg.MetadataValue.path(str(chart)), **mlflow_meta})


def run_latency(context, *, stage: str, name: str, detector, settings: SettingsResource,
                store: PreflightStore, tracker: MlflowTracker, validated_labels: dict,
                quick: bool = False) -> dg.Output[dict]:
    """``quick``: single stream and load only (a fine-tuned model of the same architecture)."""
    from preflight.evaluation import read_rgb
    from preflight.latency import LatencyConfig, ModelSpec, measure_latency

    cfg, eval_images, _, _ = evaluation_context(settings, validated_labels, detector.input_size)
    lat = cfg.latency
    config = LatencyConfig(warmup=lat.warmup, iterations=lat.iterations,
                           load_workers=lat.load_workers, batch_size=lat.batch_size,
                           server_queries=lat.server_queries if not quick else 20,
                           server_max_seconds=lat.server_max_seconds,
                           latency_bound_ms=cfg.bar.latency_budget_p99_ms,
                           search_steps=3 if quick else lat.search_steps,
                           cold_start=lat.cold_start and not quick, threads=lat.threads)
    factory, kwargs = detector.latency_spec()
    frame = read_rgb(eval_images["path"].iloc[0])
    context.log.info(f"{name} ({stage}): measuring latency on {config.iterations} frames")
    report = measure_latency(detector.predict, frame, config, spec=ModelSpec(factory, kwargs),
                             report=context.log.info, desc=f"{name} ({stage}) latency")
    values = report.to_dict()
    key = candidate_key(name)
    paths = write_tables(store, f"{key}/{stage}", {"latency": report.to_frame()})
    numeric = {f"latency.{k}": v for k, v in values.items() if isinstance(v, int | float)}
    mlflow_meta = record_run(context, tracker, name=f"{name}/{stage}-latency",
                             stage=f"{stage}-latency", candidate=name,
                             params={"device": report.device, "iterations": config.iterations,
                             "threads": lat.threads or "default",
                                     "load_workers": config.load_workers,
                                     "latency_bound_ms": config.latency_bound_ms},
                             metrics=numeric, artifacts=[("tables", paths["latency"])])
    shown = pd.DataFrame([{"p50": report.p50_ms, "p95": report.p95_ms, "p99": report.p99_ms,
                           "p99 under load": report.load_p99_ms,
                           "benchmark ms/img": report.benchmark_ms_per_image,
                           "gap (prod p99 / bench)": report.gap_ratio,
                           "cold start s": report.cold_start_s,
                           "max qps within bound": report.max_rate_meeting_bound_qps}])
    return dg.Output(jsonable({"candidate": name, "stage": stage, "tables": paths, **values}),
                     metadata={"p99_ms": report.p99_ms, "production_p99_ms":
                               report.production_p99_ms, "gap_ratio": report.gap_ratio,
                               "latency": dg.MetadataValue.md(md_table(shown)), **mlflow_meta})
