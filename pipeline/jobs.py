"""Jobs: the production-validation pass (the whole graph)."""

from __future__ import annotations

import dagster as dg

#: The whole production-validation pass: ingestion -> validation -> evaluation -> ... -> decision.
preflight_pass = dg.define_asset_job(
    name="preflight_pass",
    selection=dg.AssetSelection.groups("ingestion", "validation", "models", "evaluation",
                                       "finetuning", "decision"),
    description="Ingest the production sample, validate labels, evaluate candidates, fine-tune, decide.",
)
