"""Jobs: the production-validation pass (the whole graph) and the after-launch jobs."""

from __future__ import annotations

import dagster as dg

PASS_GROUPS = ("ingestion", "validation", "models", "evaluation", "finetuning", "reevaluation",
               "decision")


def build_jobs() -> list:
    #: The whole production-validation pass: ingestion -> validation -> evaluation -> ... ->
    #: decision. Candidates run side by side (multiprocess executor; two at a time on a laptop).
    preflight_pass = dg.define_asset_job(
        name="preflight_pass",
        selection=dg.AssetSelection.groups(*PASS_GROUPS),
        description="Ingest the production sample, validate labels, evaluate candidates, "
                    "fine-tune, re-evaluate and decide.",
        executor_def=dg.multiprocess_executor.configured({"max_concurrent": 2}),
    )
    return [preflight_pass]
