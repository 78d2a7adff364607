"""Stage 4: fine-tuning on the production pool, and the learning curve.

Per candidate (``<candidate>/finetuned_model``, ``<candidate>/learning_curve``). Fine-tuning is
resumable: an interrupted run continues from its ``last.pt`` when Dagster re-executes the run
(the training folder belongs to the root run); a new pass trains afresh in its own folder.
"""

import time

import dagster as dg
import pandas as pd

from assets._md import md_table
from assets._record import candidate_key, jsonable, record_run, write_tables
from preflight.decide.learning_curve import N_IMAGES_TRAIN
from preflight.metrics.slices import OVERALL
from resources import MlflowTracker, ModelZoo, PreflightStore, SettingsResource


def finetune_pool(validated_labels: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
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


def build_finetune_assets(candidate: str, learning_curve: bool) -> list[dg.AssetsDefinition]:
    key = candidate_key(candidate)

    @dg.asset(name="finetuned_model", key_prefix=[key], group_name="finetuning",
              ins={"validated_labels": dg.AssetIn(key="validated_labels"),
                   "offtheshelf_eval": dg.AssetIn(key=[key, "offtheshelf_eval"])},
              kinds={"pytorch", "mlflow"}, tags={"candidate": key})
    def finetuned_model(context: dg.AssetExecutionContext, validated_labels: dict,
                        offtheshelf_eval: dict, settings: SettingsResource,
                        store: PreflightStore, tracker: MlflowTracker,
                        zoo: ModelZoo) -> dg.Output[dict]:
        """The candidate fine-tuned on the production pool (never the evaluation set), with an
        augmentation policy chosen from its off-the-shelf failures."""
        from preflight.finetune import augmentation_policy, failing_rows

        cfg = settings.load()
        metrics = pd.read_parquet(offtheshelf_eval["tables"]["metrics"])
        failing = failing_rows(metrics, cfg.bar.min_slice_recall)
        pool, boxes = finetune_pool(validated_labels)
        policy = augmentation_policy(failing, pool)
        t0 = time.perf_counter()
        result = train_on(context, detector=zoo.detector(candidate), images=pool, boxes=boxes,
                          settings=settings, store=store, run_name=f"{key}/finetune",
                          policy=policy)
        history = result.history
        paths = write_tables(store, f"{key}/finetuned", {"training_history": history})
        ft = cfg.finetune
        freeze = result.train_args.get("freeze") or "none"  # what the training run froze
        run = record_run(context, tracker, name=f"{candidate}/finetune", stage="finetune",
                         candidate=candidate,
                         params={"epochs": ft.epochs, "batch": ft.batch, "freeze": freeze,
                                 "pool_images": len(pool), "policy": policy.describe(),
                                 "policy_reasons": " | ".join(policy.reasons),
                                 "base_weights": offtheshelf_eval["weights"]},
                         metrics={"train_seconds": result.seconds, **result.final_train_loss},
                         artifacts=[("tables", paths["training_history"]),
                                    ("model", str(result.checkpoint))])
        _log_curves(tracker, run["mlflow_run_id"], history)
        value = {"candidate": candidate, "weights": str(result.checkpoint),
                 "pool_images": len(pool), "policy": policy.describe(),
                 "policy_reasons": list(policy.reasons), "epochs_run": result.epochs_run,
                 "seconds": time.perf_counter() - t0, "mlflow_run_id": run["mlflow_run_id"]}
        return dg.Output(jsonable(value), metadata={
            "weights": dg.MetadataValue.path(str(result.checkpoint)),
            "pool_images": len(pool), "epochs_run": result.epochs_run,
            "augmentation_policy": dg.MetadataValue.md(
                "\n".join(f"- {r}" for r in policy.reasons)),
            "training_history": dg.MetadataValue.md(md_table(history.tail(10))), **run})

    assets = [finetuned_model]
    if not learning_curve:
        return assets

    @dg.asset(name="learning_curve", key_prefix=[key], group_name="finetuning",
              ins={"validated_labels": dg.AssetIn(key="validated_labels"),
                   "offtheshelf_eval": dg.AssetIn(key=[key, "offtheshelf_eval"]),
                   "finetuned_model": dg.AssetIn(key=[key, "finetuned_model"])},
              kinds={"pytorch", "mlflow"}, tags={"candidate": key})
    def learning_curve(context: dg.AssetExecutionContext, validated_labels: dict,
                       offtheshelf_eval: dict, finetuned_model: dict,
                       settings: SettingsResource, store: PreflightStore,
                       tracker: MlflowTracker, zoo: ModelZoo) -> dg.Output[dict]:
        """Per-slice metrics of the candidate fine-tuned on nested subsets of the pool
        (e.g. 25/50/100 %): the points a saturating power law is fitted to."""
        from assets.evaluation import evaluation_context
        from preflight.finetune import augmentation_policy, failing_rows, nested_subsets
        from preflight.metrics.cost import CostModel
        from preflight.tasks import task_of

        cfg = settings.load()
        ft = cfg.finetune
        metrics = pd.read_parquet(offtheshelf_eval["tables"]["metrics"])
        pool, boxes = finetune_pool(validated_labels)
        policy = augmentation_policy(failing_rows(metrics, cfg.bar.min_slice_recall), pool)
        subsets = nested_subsets(pool, list(ft.learning_curve_fractions), seed=ft.seed)
        _, eval_images, gt, spec = evaluation_context(settings, validated_labels,
                                                      zoo.candidate(candidate).input_size)
        spec = type(spec)(**{**vars(spec), "bootstrap": 0})
        frames = []
        for fraction, subset in zip(ft.learning_curve_fractions, subsets, strict=True):
            if fraction >= 1.0:
                weights = finetuned_model["weights"]
            else:
                pct = int(round(100 * fraction))
                sub_boxes = boxes[boxes["image_id"].isin(subset["image_id"])]
                weights = str(train_on(context, detector=zoo.detector(candidate),
                                       images=subset, boxes=sub_boxes, settings=settings,
                                       store=store, run_name=f"{key}/curve_{pct}",
                                       policy=policy).checkpoint)
            det = zoo.finetuned_detector(candidate, weights)
            ev = task_of(cfg.task).call("evaluate", det.predict, eval_images, gt, spec,
                                        CostModel(**vars(cfg.cost)), cfg.taxonomy_obj.as_dict(),
                                        batch_size=cfg.evaluation.batch_size)
            frames.append(ev.metrics.assign(**{N_IMAGES_TRAIN: len(subset)}, fraction=fraction))
            context.log.info(f"learning curve {candidate}: {len(subset)} images -> recall "
                             f"{ev.overall('recall'):.3f}")
        points = pd.concat(frames, ignore_index=True)
        paths = write_tables(store, f"{key}/learning_curve", {"points": points})
        overall = points[(points["slice_column"] == OVERALL) & (points["metric"] == "recall")]
        run = record_run(context, tracker, name=f"{candidate}/learning-curve",
                         stage="learning_curve", candidate=candidate,
                         params={"fractions": ft.learning_curve_fractions,
                                 "pool_images": len(pool)},
                         metrics={f"recall.n{int(n)}": v
                                  for n, v in zip(overall[N_IMAGES_TRAIN], overall["value"],
                                                  strict=True)},
                         artifacts=[("tables", paths["points"])])
        return dg.Output(jsonable({"candidate": candidate, "tables": paths,
                                   "sizes": [len(s) for s in subsets]}),
                         metadata={"overall_recall": dg.MetadataValue.md(md_table(
                             overall[[N_IMAGES_TRAIN, "value", "ci_low", "ci_high"]])),
                             **run})

    assets.append(learning_curve)
    return assets


def _log_curves(tracker: MlflowTracker, run_id: str, history: pd.DataFrame) -> None:
    """Training curves as MLflow metric histories (one step per epoch)."""
    if history is None or history.empty:
        return
    for step, row in enumerate(history.to_dict("records")):
        values = {f"train.{k}": float(v) for k, v in row.items()
                  if k != "epoch" and isinstance(v, int | float)}
        tracker.log_metrics(run_id, values, step=step)
