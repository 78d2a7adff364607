"""Jobs: the production-validation pass (the whole graph) and the after-launch jobs."""

from __future__ import annotations

import dagster as dg

from preflight.environment import ExecutorChoice

PASS_GROUPS = ("ingestion", "validation", "models", "evaluation", "finetuning", "reevaluation",
               "export", "decision")


def pass_executor(choice: ExecutorChoice) -> dg.ExecutorDefinition:
    """The executor of the production-validation pass, as configured (``choice``: from
    ``preflight.environment.executor()``, resolved in ``pipeline.definitions``; no silent
    default here): ``multiprocess`` (candidates side by side, at most ``max_concurrent`` steps
    at once), ``in_process``, ``celery`` (dagster-celery; broker and backend from its own run
    config / environment) or ``k8s`` (dagster-k8s, one pod per step). The per-candidate assets
    are independent steps, so each executor spreads them."""
    kind, max_concurrent = choice.kind, choice.max_concurrent
    if kind == "multiprocess":
        return dg.multiprocess_executor.configured({"max_concurrent": max_concurrent})
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "celery":
        from dagster_celery import celery_executor  # pip install dagster-celery

        return celery_executor
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor  # pip install dagster-k8s

        return k8s_job_executor
    raise ValueError(f"PREFLIGHT_EXECUTOR={kind!r}: use multiprocess, in_process, celery or k8s")


def build_jobs(executor: ExecutorChoice) -> dict[str, dg.UnresolvedAssetJobDefinition]:
    from assets.monitoring import landed_batches

    executor_def = pass_executor(executor)
    return {
        "preflight_pass": dg.define_asset_job(
            name="preflight_pass", selection=dg.AssetSelection.groups(*PASS_GROUPS),
            description="Ingest the production sample, validate labels, evaluate candidates, "
                        "fine-tune, re-evaluate and decide.", executor_def=executor_def),
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
