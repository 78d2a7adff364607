"""Jobs: the production-validation pass (the whole graph) and the after-launch jobs."""

from __future__ import annotations

import dagster as dg

PASS_GROUPS = ("ingestion", "validation", "models", "evaluation", "finetuning", "reevaluation",
               "decision")


def build_jobs() -> dict[str, dg.UnresolvedAssetJobDefinition]:
    from assets.monitoring import landed_batches

    #: Candidates run side by side (multiprocess executor; two at a time on a laptop).
    executor = dg.multiprocess_executor.configured({"max_concurrent": 2})
    return {
        "preflight_pass": dg.define_asset_job(
            name="preflight_pass", selection=dg.AssetSelection.groups(*PASS_GROUPS),
            description="Ingest the production sample, validate labels, evaluate candidates, "
                        "fine-tune, re-evaluate and decide.", executor_def=executor),
        "ingest_job": dg.define_asset_job(
            name="ingest_job", selection=dg.AssetSelection.groups("ingestion", "validation"),
            description="Only ingestion and label validation (a quick look at new data)."),
        "landed_batch_job": dg.define_asset_job(
            name="landed_batch_job",
            selection=dg.AssetSelection.assets("batch_labels", "batch_champion_eval"),
            partitions_def=landed_batches,
            description="Ingest and validate one landed batch and re-evaluate the champion on it."),
        "drift_job": dg.define_asset_job(
            name="drift_job", selection=dg.AssetSelection.assets("drift_report"),
            description="Drift of every batch that landed since the last report."),
    }
