"""Stage 5: re-evaluation of the fine-tuned models, and tiling as a remedy for small objects.

The fine-tuned model goes through the same evaluation engine, stress suite and latency checks on
the same held-out set; ``reeval`` also carries the before/after table per slice.
"""

import time

import dagster as dg
import pandas as pd

from assets._md import md_table
from assets._record import candidate_key, jsonable, record_run, write_tables
from assets.evaluation import evaluation_context, run_evaluation, run_latency, run_stress
from preflight.stages import FINE_TUNED_KEY
from resources import MlflowTracker, ModelZoo, PreflightStore, SettingsResource


def before_after(before: pd.DataFrame, after: pd.DataFrame, metric: str = "recall"
                 ) -> pd.DataFrame:
    """Per slice: the metric off-the-shelf and fine-tuned, with intervals and the change."""
    cols = ["slice_column", "slice_value", "value", "ci_low", "ci_high", "thin"]
    b = before[before["metric"] == metric][cols]
    a = after[after["metric"] == metric][cols]
    table = b.merge(a, on=["slice_column", "slice_value"], suffixes=("_before", "_after"),
                    how="outer")
    table["change"] = table["value_after"] - table["value_before"]
    table["significant"] = ((table["ci_low_after"] > table["ci_high_before"])
                            | (table["ci_high_after"] < table["ci_low_before"]))
    return table.sort_values("value_before", na_position="last").reset_index(drop=True)


def build_reeval_assets(candidate: str) -> list[dg.AssetsDefinition]:
    key = candidate_key(candidate)
    ins = {"validated_labels": dg.AssetIn(key="validated_labels"),
           "finetuned_model": dg.AssetIn(key=[key, "finetuned_model"])}

    @dg.asset(name="reeval", key_prefix=[key], group_name="reevaluation",
              ins={**ins, "offtheshelf_eval": dg.AssetIn(key=[key, "offtheshelf_eval"])},
              kinds={"pytorch", "mlflow"}, tags={"candidate": key})
    def reeval(context: dg.AssetExecutionContext, validated_labels: dict, finetuned_model: dict,
               offtheshelf_eval: dict, settings: SettingsResource, store: PreflightStore,
               tracker: MlflowTracker, zoo: ModelZoo) -> dg.Output[dict]:
        """The fine-tuned model on the same held-out set, with the before/after table per slice
        (which failures fine-tuning fixed and which it did not)."""
        detector = zoo.finetuned_detector(candidate, finetuned_model["weights"])
        out = run_evaluation(context, stage=FINE_TUNED_KEY, name=candidate, detector=detector,
                             settings=settings, store=store, tracker=tracker,
                             validated_labels=validated_labels,
                             params={"policy": finetuned_model["policy"]})
        table = before_after(pd.read_parquet(offtheshelf_eval["tables"]["metrics"]),
                             pd.read_parquet(out.value["tables"]["metrics"]))
        path = store.write_table(f"{key}/{FINE_TUNED_KEY}/before_after", table)
        out.value["tables"]["before_after"] = str(path)
        out.metadata["before_after_recall"] = dg.MetadataValue.md(md_table(table, max_rows=30))
        return out

    @dg.asset(name="reeval_stress", key_prefix=[key], ins=ins, group_name="reevaluation",
              kinds={"pytorch", "mlflow"}, tags={"candidate": key})
    def reeval_stress(context: dg.AssetExecutionContext, validated_labels: dict,
                      finetuned_model: dict, settings: SettingsResource, store: PreflightStore,
                      tracker: MlflowTracker, zoo: ModelZoo) -> dg.Output[dict]:
        """The stress suite on the fine-tuned model (same images, seed and conditions)."""
        detector = zoo.finetuned_detector(candidate, finetuned_model["weights"])
        return run_stress(context, stage=FINE_TUNED_KEY, name=candidate, detector=detector,
                          settings=settings, store=store, tracker=tracker,
                          validated_labels=validated_labels)

    @dg.asset(name="reeval_latency", key_prefix=[key], ins=ins, group_name="reevaluation",
              kinds={"pytorch", "mlflow"}, tags={"candidate": key})
    def reeval_latency(context: dg.AssetExecutionContext, validated_labels: dict,
                       finetuned_model: dict, settings: SettingsResource, store: PreflightStore,
                       tracker: MlflowTracker, zoo: ModelZoo) -> dg.Output[dict]:
        """Batch-1 latency of the fine-tuned checkpoint, idle and under load (same
        architecture as off-the-shelf, so the cold start and server scenario are not repeated)."""
        detector = zoo.finetuned_detector(candidate, finetuned_model["weights"])
        return run_latency(context, stage=FINE_TUNED_KEY, name=candidate, detector=detector,
                           settings=settings, store=store, tracker=tracker,
                           validated_labels=validated_labels, quick=True)

    return [reeval, reeval_stress, reeval_latency]


def build_tiling_asset(candidate: str) -> dg.AssetsDefinition:
    key = candidate_key(candidate)

    @dg.asset(name="tiling_eval", key_prefix=[key], group_name="reevaluation",
              ins={"validated_labels": dg.AssetIn(key="validated_labels"),
                   "offtheshelf_eval": dg.AssetIn(key=[key, "offtheshelf_eval"])},
              kinds={"pytorch", "mlflow"}, tags={"candidate": key})
    def tiling_eval(context: dg.AssetExecutionContext, validated_labels: dict,
                    offtheshelf_eval: dict, settings: SettingsResource, store: PreflightStore,
                    tracker: MlflowTracker, zoo: ModelZoo) -> dg.Output[dict]:
        """Sliced (tiled) inference when small-object recall fails: the recall it recovers and
        the latency it costs, measured side by side on the same frames."""
        from preflight.evaluation import predict_images, read_rgb, stratified_subset
        from preflight.latency import percentiles, time_single_stream
        from preflight.models.tiling import TiledPredictor, plan_tiling, tiling_gain

        input_size = zoo.candidate(candidate).input_size
        cfg, eval_images, gt, _ = evaluation_context(settings, validated_labels, input_size)
        # "small" at the model input (scales with the input size); frame pixels if not measured
        plan = plan_tiling(pd.read_parquet(offtheshelf_eval["tables"]["metrics"]), gt,
                           eval_images, model_input_size=input_size,
                           min_slice_recall=cfg.bar.min_slice_recall,
                           enabled=cfg.tiling.enabled)
        size_column = plan.size_column
        if not plan.evaluate:
            reason = plan.reason
            context.log.info(f"{candidate}: tiling not evaluated ({reason})")
            return dg.Output({"candidate": candidate, "evaluated": False, "reason": reason},
                             metadata={"evaluated": False, "reason": reason})
        detector = zoo.detector(candidate)
        tile = cfg.tiling.tile_for(detector.input_size)  # half the input size unless set
        tiled = TiledPredictor(detector.predict, tile=tile, overlap=cfg.tiling.overlap)
        t0 = time.perf_counter()
        # the frames that hold small objects (tiling is judged on their recall), a subset
        eval_images = stratified_subset(eval_images[eval_images["image_id"].isin(
                                            plan.small_image_ids)],
                                        cfg.tiling.max_images, cfg.evaluation.slice_columns,
                                        cfg.evaluation.seed)
        gt = gt[gt["image_id"].isin(eval_images["image_id"])]
        full_dt = pd.read_parquet(offtheshelf_eval["tables"]["predictions"])
        full_dt = full_dt[full_dt["image_id"].isin(eval_images["image_id"])]
        tiled_dt = predict_images(tiled, eval_images, batch_size=cfg.evaluation.batch_size)
        gain = tiling_gain(gt, full_dt, tiled_dt, eval_images,
                           operating_threshold=cfg.evaluation.operating_threshold,
                           class_names=cfg.taxonomy_obj.as_dict(), size_column=size_column,
                           model_input_size=detector.input_size)
        frame = read_rgb(eval_images["path"].iloc[0])
        n = max(5, cfg.latency.iterations // 3)
        plain_ms = percentiles(time_single_stream(detector.predict, frame, iterations=n,
                                                  warmup=2))
        tiled_ms = percentiles(time_single_stream(tiled, frame, iterations=n, warmup=2))
        h, w = frame.shape[:2]
        value = {"candidate": candidate, "evaluated": True, "n_boxes": gain.n_boxes,
                 "recall_full": gain.recall_full, "recall_tiled": gain.recall_tiled,
                 "ci_full": list(gain.ci_full), "ci_tiled": list(gain.ci_tiled),
                 "recovered": gain.recovered, "lost": gain.lost, "gain": gain.gain, "passes_per_frame": tiled.passes_per_frame(h, w),
                 "p99_ms_full": plain_ms[2], "p99_ms_tiled": tiled_ms[2],
                 "latency_ratio": tiled_ms[2] / plain_ms[2], "tile": tile,
                 "seconds": time.perf_counter() - t0}
        paths = write_tables(store, f"{key}/tiling", {"tiling": gain.to_frame().assign(
            p99_ms=[plain_ms[2], tiled_ms[2]], passes_per_frame=[1, value["passes_per_frame"]])})
        run = record_run(context, tracker, name=f"{candidate}/tiling", stage="tiling",
                         candidate=candidate,
                         params={"tile": tile, "overlap": cfg.tiling.overlap},
                         metrics={"recall.small.full": gain.recall_full,
                                  "recall.small.tiled": gain.recall_tiled,
                                  "latency.p99_ms.full": plain_ms[2],
                                  "latency.p99_ms.tiled": tiled_ms[2]},
                         artifacts=[("tables", paths["tiling"])])
        value["tables"] = paths
        return dg.Output(jsonable(value), metadata={
            "recall_small_full": gain.recall_full, "recall_small_tiled": gain.recall_tiled,
            "p99_ms_full": plain_ms[2], "p99_ms_tiled": tiled_ms[2],
            "passes_per_frame": value["passes_per_frame"], "frames": len(eval_images), **run})

    return tiling_eval
