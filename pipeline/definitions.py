"""The one `Definitions` object that `dagster dev` (workspace.yaml) and `preflight demo` load.

Per-candidate assets are built from the candidates file named in the settings, so adding a
candidate there adds its evaluation, stress, latency, fine-tuning and re-evaluation assets.
"""

from __future__ import annotations

import os

import dagster as dg

from assets.ingestion import ingested_sample, production_sample
from assets.monitoring import batch_champion_eval, batch_labels, drift_report
from assets.validation import validated_labels
from pipeline.jobs import build_jobs
from pipeline.sensors import (
    build_landing_sensor,
    build_mlflow_finish_sensors,
    build_retrigger_sensor,
)
from resources import MlflowTracker, ModelZoo, PreflightStore, SettingsResource

#: the environment variables the pipeline reads -- here, and only here -- and what each sets. A
#: set variable becomes a Dagster ``EnvVar`` (resolved when a run's resources start, shown as
#: such in the UI); an unset one leaves the resource's documented default.
ENVIRONMENT: dict[str, str] = {
    "PREFLIGHT_CONFIG": "the settings file (SettingsResource.config_path)",
    "PREFLIGHT_HOME": "the project home: tables, reports, zoo, MLflow store (PreflightStore.home)",
    "PREFLIGHT_CANDIDATES": "a candidates file overriding the settings' (ModelZoo.candidates_file)",
    "PREFLIGHT_EXECUTOR": "the pass's executor: multiprocess, in_process, celery or k8s",
    "PREFLIGHT_MAX_CONCURRENT": "steps at once under the multiprocess executor (default 2)",
}


def _from_env(name: str, default=None):
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources() -> dict:
    """Resources from the environment: the settings file and project home decide everything."""
    from preflight.config import load_settings

    settings = load_settings(os.environ.get("PREFLIGHT_CONFIG") or None)
    return {
        "settings": SettingsResource(config_path=_from_env("PREFLIGHT_CONFIG")),
        "store": PreflightStore(home=_from_env("PREFLIGHT_HOME")),
        "zoo": ModelZoo(device=settings.finetune.device,
                        candidates_file=_from_env("PREFLIGHT_CANDIDATES",
                                                  settings.candidates_file)),
        "tracker": MlflowTracker(
            tracking_uri=settings.mlflow.tracking_uri,
            artifact_location=settings.mlflow.artifact_location,
            experiment=settings.mlflow.experiment,
        ),
    }


def build_assets() -> list:
    """Every asset: the shared stages and one set of per-candidate assets per candidate."""
    from assets.decision import build_decision_asset
    from assets.evaluation import build_candidate_eval_assets, model_zoo
    from assets.exports import build_export_assets
    from assets.finetuning import build_finetune_assets
    from assets.reevaluation import build_reeval_assets, build_tiling_asset
    from preflight.config import load_settings
    from preflight.tasks import task_of

    settings = load_settings(os.environ.get("PREFLIGHT_CONFIG") or None)
    task = task_of(settings.task)  # what differs by task is in its registry row
    ft = settings.finetune
    names = [c.name for c in ModelZoo().candidates()]
    finetuned = set(ft.candidates or names) & set(names)
    curves = (finetuned if "*" in ft.learning_curve_candidates
              else set(ft.learning_curve_candidates) & finetuned)
    exported = [n for n in names if n in set(settings.export.candidates)]
    assets: list = [production_sample, ingested_sample, validated_labels, model_zoo]
    for name in names:
        assets.extend(build_candidate_eval_assets(name))
        if task.tiling:  # sliced inference: a remedy for small objects in frames
            assets.append(build_tiling_asset(name))
        if name in finetuned:
            assets.extend(build_finetune_assets(name, learning_curve=name in curves))
            assets.extend(build_reeval_assets(name))
        if name in exported:  # what ships: exported / INT8 artefacts through the same pass
            assets.extend(build_export_assets(name, settings.export.formats, name in finetuned))
    assets.append(build_decision_asset(names, finetuned, curves,
                                       tiling=task.tiling,
                                       exports={n: list(settings.export.formats)
                                                for n in exported}))
    return [*assets, batch_labels, batch_champion_eval, drift_report]


def build_definitions() -> dg.Definitions:
    from preflight.config import load_settings

    settings = load_settings(os.environ.get("PREFLIGHT_CONFIG") or None)
    jobs = build_jobs(executor=os.environ.get("PREFLIGHT_EXECUTOR") or "multiprocess",
                      max_concurrent=int(os.environ.get("PREFLIGHT_MAX_CONCURRENT") or 2))
    schedule = dg.ScheduleDefinition(
        name="nightly_drift", job=jobs["drift_job"], cron_schedule=settings.schedule.cron,
        execution_timezone=settings.schedule.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Nightly drift re-evaluation of the champion on the batches landed since "
                    "the last run (schedule.cron / schedule.timezone in the settings).")
    sensors = [build_landing_sensor(jobs["landed_batch_job"],
                                    settings.landing.sensor_interval_seconds),
               build_retrigger_sensor(jobs["preflight_pass"]), *build_mlflow_finish_sensors()]
    return dg.Definitions(assets=build_assets(), jobs=list(jobs.values()), schedules=[schedule],
                          sensors=sensors, resources=build_resources())


defs = build_definitions()
