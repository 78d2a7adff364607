"""After launch: labelled batches that land are ingested, validated and used to re-evaluate the
champion (one dynamic partition per batch); the nightly ``drift_report`` compares every batch
that landed since its last run with the reference evaluation set.

Both depend on the ``decision`` asset (an input, so the lineage view shows it): the champion and
the reference sample it was validated on, pinned by the decision in its run's folder. A landed
batch passes the same gate as the production sample (quarantine, invalid-fraction limit, asset
checks); a batch over the limit fails its run and so never reaches the champion's evaluation or
the drift statistics.
"""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from assets._md import md_table
from assets._record import jsonable, record_run
from assets.validation import CHECKS, check_results
from preflight.drift.checks import DRIFT_CHECKS
from preflight.runs import write_npy, write_parquet
from resources import MlflowTracker, PreflightStore, SettingsResource

landed_batches = dg.DynamicPartitionsDefinition(name="landed_batches")

def landing_dir(settings: SettingsResource, store: PreflightStore) -> Path:
    cfg = settings.load().landing
    return Path(cfg.dir).expanduser().resolve() if cfg.dir else store.path("landing", "batches",
                                                                             "x").parent


def load_champion(decision: dict) -> dict:
    """The champion the ``decision`` asset registered, with its pinned reference sample."""
    champion = decision.get("champion") or {}
    if not champion.get("candidate"):
        raise dg.Failure(f"the last decision chose no model: {champion.get('reason')}")
    if not champion.get("reference_images"):
        raise dg.Failure("the last decision pinned no reference sample (it predates pinning): "
                         "run the production-validation pass (job preflight_pass) again")
    return champion


def champion_model(tracker: MlflowTracker, settings: SettingsResource, champion: dict):
    """The champion's model, loaded through MLflow's registry alias
    (``models:/<name>@champion``), checked to be the one the decision registered."""
    name = settings.load().decision.registered_model_name
    try:
        model = tracker.load_champion(name)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types; say what is missing
        detail = " ".join(str(exc).split())[:300]
        raise dg.Failure(f"no champion at models:/{name}@champion in "
                         f"{tracker.resolved_tracking_uri()} ({detail}): materialise the "
                         f"production-validation pass (job preflight_pass) so the decision "
                         f"registers one") from None
    loaded = model.unwrap_python_model()
    if champion.get("mlflow_run_id") and loaded.record.get("mlflow_run_id") != champion[
            "mlflow_run_id"]:
        raise dg.Failure(f"models:/{name}@champion is the model of MLflow run "
                         f"{loaded.record.get('mlflow_run_id')}, but the latest decision "
                         f"registered run {champion['mlflow_run_id']}: materialise the decision "
                         f"again so the reference and the model agree")
    return loaded.detector


@dg.asset(partitions_def=landed_batches, group_name="monitoring", kinds={"pandas", "parquet"},
          check_specs=[dg.AssetCheckSpec(name, asset="batch_labels", description=desc)
                       for name, desc in CHECKS.items()])
def batch_labels(context: dg.AssetExecutionContext, settings: SettingsResource,
                 store: PreflightStore):
    """A landed batch, ingested and label-validated (bad rows quarantined with a reason); over
    ``validation.max_invalid_fraction`` the run fails naming the worst reasons."""
    from preflight.data.errors import PreflightDataError
    from preflight.data.landing import batch_folder
    from preflight.data.validate import failure_message, validate_labels
    from preflight.tasks import task_of

    batch = context.partition_key
    cfg = settings.load()
    try:  # a symlinked batch, an unusable annotations file: the run stops with one line
        folder = batch_folder(landing_dir(settings, store), batch)
        result = task_of(cfg.task).call("read_sample", folder, cfg)  # frames or crops
    except PreflightDataError as exc:
        raise dg.Failure(description=str(exc)) from None
    images = result.images.assign(split="eval")  # every batch image is evaluation data
    required = {k: (set(v) if v is not None else None)
                for k, v in cfg.validation.required_columns.items()}
    valid = validate_labels(images, result.boxes, taxonomy=cfg.taxonomy_obj,
                            required_columns=required,
                            max_invalid_fraction=cfg.validation.max_invalid_fraction,
                            prior_quarantine=result.quarantine, raise_on_failure=False)
    quarantine = valid.quarantine
    paths = {name: str(store.write_table(f"batches/{batch}/{name}", frame)) for name, frame in
             {"images": valid.images, "boxes": valid.boxes, "quarantine": quarantine}.items()}
    metadata = {
        "images_valid": len(valid.images), "boxes_valid": len(valid.boxes),
        "quarantined": len(quarantine), "folder": dg.MetadataValue.path(str(folder)),
        "quarantine_table": dg.MetadataValue.path(paths["quarantine"]),
        "quarantine_reasons": dg.MetadataValue.md(md_table(
            quarantine.groupby("reason_code").size().rename("rows").reset_index()
            if len(quarantine) else quarantine))}
    if not valid.stats["passed"]:
        # the quarantine is written (nothing lost); no output, so nothing downstream runs
        raise dg.Failure(description=f"landed batch {batch}: "
                         + failure_message(valid.stats, quarantine), metadata=metadata)
    yield dg.Output({"batch": batch, **paths}, metadata=metadata)
    yield from check_results(valid.expectations, valid.stats,
                             cfg.validation.max_invalid_fraction)


@dg.asset(partitions_def=landed_batches, group_name="monitoring", kinds={"pytorch", "parquet"})
def batch_champion_eval(context: dg.AssetExecutionContext, batch_labels: dict, decision: dict,
                        settings: SettingsResource, store: PreflightStore,
                        tracker: MlflowTracker) -> dg.Output[dict]:
    """The champion re-evaluated on a landed batch: predictions, per-slice metrics with
    intervals, and the model's embeddings of the frames (inputs to the drift checks)."""
    from preflight.evaluation import EvaluationSpec, embed_frames, ground_truth
    from preflight.metrics.cost import CostModel
    from preflight.tasks import task_of

    champion = load_champion(decision)
    cfg = settings.load()
    images = pd.read_parquet(batch_labels["images"])
    gt = ground_truth(pd.read_parquet(batch_labels["boxes"]))
    detector = champion_model(tracker, settings, champion)
    spec = EvaluationSpec.from_settings(cfg.evaluation, model_input_size=detector.input_size)
    ev = task_of(cfg.task).call("evaluate", detector.predict, images, gt, spec,
                                CostModel(**vars(cfg.cost)), cfg.taxonomy_obj.as_dict(),
                                batch_size=cfg.evaluation.batch_size)
    batch = context.partition_key
    paths = {name: str(store.write_table(f"batches/{batch}/champion_{name}", frame))
             for name, frame in (("metrics", ev.metrics), ("predictions", ev.predictions))}
    embeddings = embed_frames(detector.embed, images, batch_size=cfg.evaluation.batch_size)
    paths["embeddings"] = str(write_npy(
        store.run_path("tables", "batches", batch, "champion_embeddings.npy"), embeddings))
    paths["images"] = batch_labels["images"]
    return dg.Output(jsonable({"batch": batch, "champion": champion["candidate"], **paths,
                               "recall": ev.overall("recall"), "AP50": ev.overall("AP50")}),
                     metadata={"recall": ev.overall("recall"), "AP50": ev.overall("AP50"),
                               "images": len(images), "champion": champion["candidate"],
                               "tables": dg.MetadataValue.json(paths)})


@dg.asset(group_name="monitoring", deps=[batch_champion_eval], kinds={"mlflow", "parquet"},
          check_specs=[dg.AssetCheckSpec(name, asset="drift_report", description=desc)
                       for name, desc in DRIFT_CHECKS.items()])
def drift_report(context: dg.AssetExecutionContext, decision: dict, settings: SettingsResource,
                 store: PreflightStore, tracker: MlflowTracker):
    """Input, embedding, prediction and performance drift of every batch that landed since the
    last report, against the reference evaluation set; a time series per monitored metric."""
    from preflight.drift import drift_metrics, drift_timeseries_chart, summarise

    cfg = settings.load()
    champion = load_champion(decision)
    history_path = store.table_path("drift_history")
    evaluated, batches = _new_batches(context, history_path)
    reference = (reference_side(store, champion, champion_model(tracker, settings, champion),
                                cfg.evaluation.batch_size) if batches else None)
    current, weeks = _drift_of_batches(context, cfg, reference, {b: evaluated[b] for b in batches},
                                       history_path)
    history = pd.read_parquet(history_path) if history_path.is_file() else None
    chart = None
    if history is not None and len(history):
        chart = drift_timeseries_chart(history, store.run_path("reports", "drift_timeseries.png"))
    run = record_run(context, tracker, name="drift", stage="drift",
                     candidate=champion["candidate"],
                     params={"batches": ",".join(batches) or "none", "psi_fail": cfg.drift.psi_fail},
                     metrics={},
                     artifacts=[("plots", str(chart))] if chart else [])
    for batch in batches:  # one MLflow time series per monitored feature, stepped by week
        tracker.log_metrics(run["mlflow_run_id"], drift_metrics(current[current["batch"] == batch]),
                            step=int(np.nan_to_num(weeks[batch])))
    worst = summarise([current])["level"] if len(current) else "ok"
    if worst == "fail" and cfg.drift.retrigger_on_fail:
        context.log.warning("drift fails: the retrigger sensor will request preflight_pass")
    yield dg.Output(jsonable({"batches": batches, "worst": worst}), metadata={
        "batches_checked": dg.MetadataValue.text(", ".join(batches) or "none new"),
        "worst_level": dg.MetadataValue.text(worst),
        "drift": dg.MetadataValue.md(md_table(current[current["level"] != "ok"]
                                              if len(current) else current, max_rows=30)),
        **({"history_table": dg.MetadataValue.path(str(history_path))}
           if history_path.is_file() else {}),
        **({"chart": dg.MetadataValue.path(str(chart))} if chart else {}), **run})
    yield from _drift_check_results(current)


def _new_batches(context: dg.AssetExecutionContext, history_path: Path
                 ) -> tuple[dict[str, dict], list[str]]:
    """The evaluated batches (batch -> tables) and those the last report did not cover; this
    run's history starts as the last report's (kept in its run's folder)."""
    previous = _previous_history(context)
    if previous is not None:
        write_parquet(history_path, previous)
    done = set(previous["batch"].astype(str)) if previous is not None else set()
    evaluated = evaluated_batches(context.instance)
    return evaluated, [b for b in evaluated if b not in done]


def _drift_of_batches(context: dg.AssetExecutionContext, cfg, reference, batches: dict[str, dict],
                      history_path: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """Each batch's drift rows against ``reference`` (tagged with the batch, appended to the
    history), and each batch's week (the step of its metrics)."""
    from preflight.drift import DriftThresholds, append_history, history_rows, summarise
    from preflight.drift.batch import batch_drift

    thresholds = DriftThresholds.from_settings(cfg.drift)
    frames, weeks = [], {}
    for batch, tables in batches.items():
        current = current_side(tables)
        weeks[batch] = _batch_week(current.images)
        table = batch_drift(reference, current, thresholds=thresholds,
                            operating_threshold=cfg.evaluation.operating_threshold,
                            class_names=cfg.taxonomy_obj.as_dict(), seed=cfg.evaluation.seed)
        frames.append(table.assign(batch=batch))
        rows = history_rows(table, batch, thresholds=thresholds).assign(week=weeks[batch])
        append_history(history_path, rows)
        context.log.info(f"drift {batch}: {summarise([table])['level']}")
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), weeks


def _drift_check_results(current: pd.DataFrame):
    """One asset check result per drift check: its worst level over the batches' rows."""
    from preflight.drift import rows_by_check, summarise

    for check, rows in rows_by_check(current).items():
        worst = summarise([rows])["level"] if len(rows) else "ok"
        yield dg.AssetCheckResult(
            check_name=check, passed=worst == "ok",
            severity=dg.AssetCheckSeverity.ERROR if worst == "fail" else dg.AssetCheckSeverity.WARN,
            metadata={"level": worst, "rows": len(rows),
                      "flagged": dg.MetadataValue.md(md_table(
                          rows[rows["level"] != "ok"] if len(rows) else rows))})


def _previous_history(context: dg.AssetExecutionContext) -> pd.DataFrame | None:
    """The drift history the last ``drift_report`` materialisation kept (in its run's folder)."""
    records = context.instance.fetch_materializations(context.asset_key, limit=1).records
    entry = records[0].asset_materialization.metadata.get("history_table") if records else None
    return pd.read_parquet(entry.value) if entry is not None else None


def evaluated_batches(instance: dg.DagsterInstance) -> dict[str, dict]:
    """Batch -> the tables of its latest ``batch_champion_eval`` materialisation. A batch that
    failed its validation gate was never evaluated, so it is not here."""
    key = batch_champion_eval.key
    out = {}
    for batch in sorted(instance.get_materialized_partitions(key)):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[batch]), limit=1).records
        entry = records[0].asset_materialization.metadata.get("tables") if records else None
        if entry is not None:
            out[batch] = entry.value
    return out


def _batch_week(images: pd.DataFrame) -> float:
    return float(images["week"].median()) if "week" in images.columns else float("nan")


def current_side(tables: dict):
    """A batch's side of the drift comparison from its ``batch_champion_eval`` tables."""
    from preflight.drift.batch import DriftSide

    return DriftSide(images=pd.read_parquet(tables["images"]),
                     predictions=pd.read_parquet(tables["predictions"]),
                     metrics=pd.read_parquet(tables["metrics"]),
                     embeddings=np.load(tables["embeddings"]))


def reference_side(store: PreflightStore, champion: dict, detector, batch_size: int):
    """The reference: the evaluation split the champion was validated on (pinned by the
    decision), the champion's predictions and metrics on it, and its embeddings of those frames
    (computed once per champion, cached by its MLflow run id)."""
    from preflight.drift.batch import DriftSide
    from preflight.evaluation import embed_frames

    images = pd.read_parquet(champion["reference_images"])
    metrics_path = Path(champion["metrics"])
    cache = store.path("cache", f"reference_embeddings_{champion['mlflow_run_id']}.npy")
    if not cache.is_file():
        embeddings = embed_frames(detector.embed, images, batch_size=batch_size)
        write_npy(cache, embeddings)
    return DriftSide(images=images,
                     predictions=pd.read_parquet(metrics_path.with_name("predictions.parquet")),
                     metrics=pd.read_parquet(metrics_path), embeddings=np.load(cache))
