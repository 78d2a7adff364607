"""Stage 4: fine-tuning on the production pool, and the learning curve.

Per candidate (``<candidate>/finetuned_model``, ``<candidate>/learning_curve``). Fine-tuning is
resumable: an interrupted run continues from its ``last.pt`` when Dagster re-executes the run
(the training folder belongs to the root run); a new pass trains afresh in its own folder. The
learning curve's training loop is :func:`preflight.finetune.learning_curve_points`.
"""

import time

import dagster as dg
import pandas as pd

from assets._candidate import CandidateRun, candidate_asset
from assets._md import md_table
from assets._record import jsonable, record_run, write_tables
from preflight.decide.learning_curve import N_IMAGES_TRAIN
from preflight.metrics.slices import OVERALL
from resources import MlflowTracker, PreflightStore


def finetune_pool(validated_labels: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``finetune`` split of the validated tables (images, and their boxes)."""
    images = pd.read_parquet(validated_labels["images"])
    boxes = pd.read_parquet(validated_labels["boxes"])
    pool = images[images["split"] == "finetune"].reset_index(drop=True)
    return pool, boxes[boxes["image_id"].isin(pool["image_id"])]


def train_on(context, *, detector, images: pd.DataFrame, boxes: pd.DataFrame, settings,
             store: PreflightStore, run_name: str, policy):
    """Fine-tune ``detector`` on ``images`` with ``policy`` the way its task does (the task
    registry's ``fine_tune``); resumable in its run folder."""
    from preflight.tasks import task_of

    cfg = settings.load()
    context.log.info(f"fine-tuning {detector.name} on {len(images)} images for "
                     f"{cfg.finetune.epochs} epochs ({policy.describe()})")
    return task_of(cfg.task).call(
        "fine_tune", detector, images, boxes, cfg,
        out_dir=store.resume_path("training", run_name, "x").parent,
        work_dir=store.run_path("datasets", run_name, "x").parent, policy=policy,
        report=context.log.info)


def _policy(cfg, offtheshelf_eval: dict, pool: pd.DataFrame):
    """The augmentation policy chosen from the candidate's off-the-shelf failures."""
    from preflight.finetune import augmentation_policy, failing_rows

    metrics = pd.read_parquet(offtheshelf_eval["tables"]["metrics"])
    return augmentation_policy(failing_rows(metrics, cfg.bar.min_slice_recall), pool)


def _finetuned_model(run: CandidateRun, validated_labels: dict, offtheshelf_eval: dict
                     ) -> dg.Output[dict]:
    """The candidate fine-tuned on the production pool (never the evaluation set), with an
    augmentation policy chosen from its off-the-shelf failures."""
    cfg = run.settings.load()
    pool, boxes = finetune_pool(validated_labels)
    policy = _policy(cfg, offtheshelf_eval, pool)
    t0 = time.perf_counter()
    result = train_on(run.context, detector=run.zoo.detector(run.candidate), images=pool,
                      boxes=boxes, settings=run.settings, store=run.store,
                      run_name=f"{run.key}/finetune", policy=policy)
    history = result.history
    paths = write_tables(run.store, f"{run.key}/finetuned", {"training_history": history})
    ft = cfg.finetune
    freeze = result.train_args.get("freeze") or "none"  # what the training run froze
    mlflow_meta = record_run(
        run.context, run.tracker, name=f"{run.candidate}/finetune", stage="finetune",
        candidate=run.candidate,
        params={"epochs": ft.epochs, "batch": ft.batch, "freeze": freeze,
                "pool_images": len(pool), "policy": policy.describe(),
                "policy_reasons": " | ".join(policy.reasons),
                "base_weights": offtheshelf_eval["weights"]},
        metrics={"train_seconds": result.seconds, **result.final_train_loss},
        artifacts=[("tables", paths["training_history"]), ("model", str(result.checkpoint))])
    _log_curves(run.tracker, mlflow_meta["mlflow_run_id"], history)
    value = {"candidate": run.candidate, "weights": str(result.checkpoint),
             "pool_images": len(pool), "policy": policy.describe(),
             "policy_reasons": list(policy.reasons), "epochs_run": result.epochs_run,
             "seconds": time.perf_counter() - t0, "mlflow_run_id": mlflow_meta["mlflow_run_id"]}
    return dg.Output(jsonable(value), metadata={
        "weights": dg.MetadataValue.path(str(result.checkpoint)),
        "pool_images": len(pool), "epochs_run": result.epochs_run,
        "augmentation_policy": dg.MetadataValue.md("\n".join(f"- {r}" for r in policy.reasons)),
        "training_history": dg.MetadataValue.md(md_table(history.tail(10))), **mlflow_meta})


def _learning_curve(run: CandidateRun, validated_labels: dict, offtheshelf_eval: dict,
                    finetuned_model: dict) -> dg.Output[dict]:
    """Per-slice metrics of the candidate fine-tuned on nested subsets of the pool
    (e.g. 25/50/100 %): the points a saturating power law is fitted to."""
    from assets.evaluation import evaluation_context
    from preflight.finetune import learning_curve_points
    from preflight.metrics.cost import CostModel
    from preflight.tasks import task_of

    cfg = run.settings.load()
    ft = cfg.finetune
    pool, boxes = finetune_pool(validated_labels)
    policy = _policy(cfg, offtheshelf_eval, pool)
    _, eval_images, gt, spec = evaluation_context(run.settings, validated_labels,
                                                  run.zoo.candidate(run.candidate).input_size)
    spec = type(spec)(**{**vars(spec), "bootstrap": 0})

    def train(images: pd.DataFrame, subset_boxes: pd.DataFrame, pct: int) -> str:
        return str(train_on(run.context, detector=run.zoo.detector(run.candidate), images=images,
                            boxes=subset_boxes, settings=run.settings, store=run.store,
                            run_name=f"{run.key}/curve_{pct}", policy=policy).checkpoint)

    def evaluate(weights: str):
        det = run.zoo.finetuned_detector(run.candidate, weights)
        return task_of(cfg.task).call("evaluate", det.predict, eval_images, gt, spec,
                                      CostModel(**vars(cfg.cost)), cfg.taxonomy_obj.as_dict(),
                                      batch_size=cfg.evaluation.batch_size)

    points, subsets = learning_curve_points(
        pool, boxes, ft.learning_curve_fractions, seed=ft.seed,
        full_pool_weights=finetuned_model["weights"], train=train, evaluate=evaluate,
        report=lambda line: run.log(f"learning curve {run.candidate}: {line}"))
    paths = write_tables(run.store, f"{run.key}/learning_curve", {"points": points})
    overall = points[(points["slice_column"] == OVERALL) & (points["metric"] == "recall")]
    mlflow_meta = record_run(
        run.context, run.tracker, name=f"{run.candidate}/learning-curve", stage="learning_curve",
        candidate=run.candidate,
        params={"fractions": ft.learning_curve_fractions, "pool_images": len(pool)},
        metrics={f"recall.n{int(n)}": v
                 for n, v in zip(overall[N_IMAGES_TRAIN], overall["value"], strict=True)},
        artifacts=[("tables", paths["points"])])
    return dg.Output(jsonable({"candidate": run.candidate, "tables": paths,
                               "sizes": [len(s) for s in subsets]}),
                     metadata={"overall_recall": dg.MetadataValue.md(md_table(
                         overall[[N_IMAGES_TRAIN, "value", "ci_low", "ci_high"]])),
                         **mlflow_meta})


def build_finetune_assets(candidate: str, learning_curve: bool) -> list[dg.AssetsDefinition]:
    """``<candidate>/finetuned_model`` and, when asked, ``<candidate>/learning_curve``."""
    inputs = ["validated_labels", "offtheshelf_eval"]
    assets = [candidate_asset(candidate, "finetuned_model", group="finetuning", inputs=inputs,
                              body=_finetuned_model)]
    if learning_curve:
        assets.append(candidate_asset(candidate, "learning_curve", group="finetuning",
                                      inputs=[*inputs, "finetuned_model"],
                                      body=_learning_curve))
    return assets


def _log_curves(tracker: MlflowTracker, run_id: str, history: pd.DataFrame) -> None:
    """Training curves as MLflow metric histories (one step per epoch)."""
    if history is None or history.empty:
        return
    for step, row in enumerate(history.to_dict("records")):
        values = {f"train.{k}": float(v) for k, v in row.items()
                  if k != "epoch" and isinstance(v, int | float)}
        tracker.log_metrics(run_id, values, step=step)
