"""Stage 5: re-evaluation of the fine-tuned models, and tiling as a remedy for small objects.

The fine-tuned model goes through the same evaluation engine, stress suite and latency checks on
the same held-out set; ``reeval`` also carries the before/after table per slice
(:func:`preflight.evaluation.before_after`). ``tiling_eval`` measures sliced inference when the
candidate's small-object recall fails the bar (:func:`preflight.models.tiling.plan_tiling`).
"""

import time

import dagster as dg
import pandas as pd

from assets._candidate import CandidateRun, candidate_asset
from assets._md import md_table
from assets._record import jsonable, record_run, write_tables
from assets.evaluation import evaluation_context, run_evaluation, run_latency, run_stress
from preflight.stages import FINE_TUNED_KEY


def _finetuned(run: CandidateRun, finetuned_model: dict):
    return run.zoo.finetuned_detector(run.candidate, finetuned_model["weights"])


def _reeval(run: CandidateRun, validated_labels: dict, finetuned_model: dict,
            offtheshelf_eval: dict) -> dg.Output[dict]:
    """The fine-tuned model on the same held-out set, with the before/after table per slice
    (which failures fine-tuning fixed and which it did not)."""
    from preflight.evaluation import before_after

    out = run_evaluation(run.context, stage=FINE_TUNED_KEY, name=run.candidate,
                         detector=_finetuned(run, finetuned_model),
                         validated_labels=validated_labels, **run.resources,
                         params={"policy": finetuned_model["policy"]})
    table = before_after(pd.read_parquet(offtheshelf_eval["tables"]["metrics"]),
                         pd.read_parquet(out.value["tables"]["metrics"]))
    path = run.store.write_table(f"{run.key}/{FINE_TUNED_KEY}/before_after", table)
    out.value["tables"]["before_after"] = str(path)
    out.metadata["before_after_recall"] = dg.MetadataValue.md(md_table(table, max_rows=30))
    return out


def _reeval_stress(run: CandidateRun, validated_labels: dict, finetuned_model: dict
                   ) -> dg.Output[dict]:
    """The stress suite on the fine-tuned model (same images, seed and conditions)."""
    return run_stress(run.context, stage=FINE_TUNED_KEY, name=run.candidate,
                      detector=_finetuned(run, finetuned_model),
                      validated_labels=validated_labels, **run.resources)


def _reeval_latency(run: CandidateRun, validated_labels: dict, finetuned_model: dict
                    ) -> dg.Output[dict]:
    """Batch-1 latency of the fine-tuned checkpoint, idle and under load (same
    architecture as off-the-shelf, so the cold start and server scenario are not repeated)."""
    return run_latency(run.context, stage=FINE_TUNED_KEY, name=run.candidate,
                       detector=_finetuned(run, finetuned_model),
                       validated_labels=validated_labels, **run.resources, quick=True)


def build_reeval_assets(candidate: str) -> list[dg.AssetsDefinition]:
    """The fine-tuned model's evaluation (with the before/after table), stress and latency."""
    inputs = ["validated_labels", "finetuned_model"]
    return [candidate_asset(candidate, "reeval", group="reevaluation",
                            inputs=[*inputs, "offtheshelf_eval"], body=_reeval),
            candidate_asset(candidate, "reeval_stress", group="reevaluation", inputs=inputs,
                            body=_reeval_stress),
            candidate_asset(candidate, "reeval_latency", group="reevaluation", inputs=inputs,
                            body=_reeval_latency)]


def _tiling_eval(run: CandidateRun, validated_labels: dict, offtheshelf_eval: dict
                 ) -> dg.Output[dict]:
    """Sliced (tiled) inference when small-object recall fails: the recall it recovers and
    the latency it costs, measured side by side on the same frames."""
    from preflight.evaluation import evaluate_tiling
    from preflight.models.tiling import plan_tiling

    input_size = run.zoo.candidate(run.candidate).input_size
    cfg, eval_images, gt, _ = evaluation_context(run.settings, validated_labels, input_size)
    # "small" at the model input (scales with the input size); frame pixels if not measured
    plan = plan_tiling(pd.read_parquet(offtheshelf_eval["tables"]["metrics"]), gt,
                       eval_images, model_input_size=input_size,
                       min_slice_recall=cfg.bar.min_slice_recall, enabled=cfg.tiling.enabled)
    if not plan.evaluate:
        run.log(f"{run.candidate}: tiling not evaluated ({plan.reason})")
        return dg.Output({"candidate": run.candidate, "evaluated": False, "reason": plan.reason},
                         metadata={"evaluated": False, "reason": plan.reason})
    detector = run.zoo.detector(run.candidate)
    t0 = time.perf_counter()
    tiling = evaluate_tiling(detector.predict, plan, eval_images, gt,
                             pd.read_parquet(offtheshelf_eval["tables"]["predictions"]), cfg,
                             model_input_size=detector.input_size)
    gain = tiling.gain
    value = {"candidate": run.candidate, "evaluated": True, "n_boxes": gain.n_boxes,
             "recall_full": gain.recall_full, "recall_tiled": gain.recall_tiled,
             "ci_full": list(gain.ci_full), "ci_tiled": list(gain.ci_tiled),
             "recovered": gain.recovered, "lost": gain.lost, "gain": gain.gain,
             "passes_per_frame": tiling.passes_per_frame, "p99_ms_full": tiling.p99_ms_full,
             "p99_ms_tiled": tiling.p99_ms_tiled, "latency_ratio": tiling.latency_ratio,
             "tile": tiling.tile, "seconds": time.perf_counter() - t0}
    value["tables"] = write_tables(run.store, f"{run.key}/tiling", {"tiling": tiling.to_frame()})
    mlflow_meta = record_run(
        run.context, run.tracker, name=f"{run.candidate}/tiling", stage="tiling",
        candidate=run.candidate, params={"tile": tiling.tile, "overlap": tiling.overlap},
        metrics={"recall.small.full": gain.recall_full, "recall.small.tiled": gain.recall_tiled,
                 "latency.p99_ms.full": tiling.p99_ms_full,
                 "latency.p99_ms.tiled": tiling.p99_ms_tiled},
        artifacts=[("tables", value["tables"]["tiling"])])
    return dg.Output(jsonable(value), metadata={
        "recall_small_full": gain.recall_full, "recall_small_tiled": gain.recall_tiled,
        "p99_ms_full": tiling.p99_ms_full, "p99_ms_tiled": tiling.p99_ms_tiled,
        "passes_per_frame": tiling.passes_per_frame, "frames": tiling.n_frames, **mlflow_meta})


def build_tiling_asset(candidate: str) -> dg.AssetsDefinition:
    """``<candidate>/tiling_eval``: sliced inference as a remedy for small objects."""
    return candidate_asset(candidate, "tiling_eval", group="reevaluation",
                           inputs=["validated_labels", "offtheshelf_eval"], body=_tiling_eval)
