"""The one `Definitions` object that `dagster dev` (workspace.yaml) and `preflight demo` load.

Per-candidate assets are built from the candidates file named in the settings, so adding a
candidate there adds its evaluation, stress, latency, fine-tuning and re-evaluation assets.
The environment is read through ``preflight.environment`` only; a variable that is set reaches
its resource as a Dagster ``EnvVar``. A mistake in the settings file does not stop the code
location from loading: it is logged in one line, and every run fails on its first step with that
line (a ``dagster.Failure``), never a stack trace.
"""

from __future__ import annotations

import logging

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
from preflight import environment
from preflight.config import ConfigError, Settings, load_settings, settings_from_dict
from preflight.environment import ENVIRONMENT  # noqa: F401 - the variables, documented there
from preflight.models.candidates import CandidateError
from resources import MlflowTracker, ModelZoo, PreflightStore, SettingsResource
from resources.settings import settings_error_line

log = logging.getLogger("preflight")


def _from_env(name: str, default=None):
    """A set Preflight variable as a Dagster ``EnvVar`` (resolved when a run's resources start,
    shown as such in the UI); an unset one leaves ``default``."""
    return dg.EnvVar(name) if environment.value(name) else default


def settings_problem() -> str | None:
    """The one-line mistake in the settings (or candidates) file the environment names, if any.

    The definitions still load with such a mistake (``dagster dev`` shows the pass, not a stack
    trace); every run then fails on its first step with this line (``SettingsResource``)."""
    try:
        settings = load_settings(environment.config_file())
        ModelZoo(candidates_file=environment.candidates_file()).candidates()
        settings.taxonomy_obj  # noqa: B018 - validates the class names
    except ConfigError as exc:
        return settings_error_line(exc)
    except CandidateError as exc:
        return f"candidates: {' '.join(str(exc).split())}"
    return None


def _structure_settings() -> Settings:
    """The settings the graph is shaped by: the file's, or the documented defaults when the
    file has a mistake (the runs then fail with it; see ``settings_problem``)."""
    try:
        return load_settings(environment.config_file())
    except ConfigError:
        return settings_from_dict({})


def build_resources() -> dict:
    """Resources from the environment: the settings file and project home decide everything."""
    settings = _structure_settings()
    # one settings resource: the zoo maps candidates with the run's snapshot of both files
    settings_resource = SettingsResource(config_path=_from_env("PREFLIGHT_CONFIG"),
                                         candidates_file=_from_env("PREFLIGHT_CANDIDATES"))
    return {
        "settings": settings_resource,
        "store": PreflightStore(home=_from_env("PREFLIGHT_HOME")),
        "zoo": ModelZoo(device=settings.finetune.device, settings=settings_resource),
        "tracker": MlflowTracker(
            tracking_uri=settings.mlflow.tracking_uri,
            artifact_location=settings.mlflow.artifact_location,
            experiment=settings.mlflow.experiment,
        ),
    }


def build_assets() -> list:
    """Every asset: the shared stages and one set of per-candidate assets per candidate."""
    from assets.decision import build_decision_asset
    from assets.evaluation import build_candidate_eval_assets
    from assets.exports import build_export_assets, export_asset_name, export_plan
    from assets.finetuning import build_finetune_assets
    from assets.reevaluation import build_reeval_assets, build_tiling_asset
    from assets.second_seed import build_second_seed_asset
    from assets.zoo import build_candidate_weights_asset, model_zoo
    from preflight.tasks import task_of

    problem = settings_problem()
    settings = _structure_settings()
    task = task_of(settings.task)  # what differs by task is in its registry row
    ft = settings.finetune
    names = ([] if problem else  # a broken file: the shared stages only; each run fails first
             [c.name for c in ModelZoo(candidates_file=environment.candidates_file()).candidates()])
    finetuned = set(ft.candidates or names) & set(names)
    curves = (finetuned if "*" in ft.learning_curve_candidates
              else set(ft.learning_curve_candidates) & finetuned)
    ex = settings.export
    exported = [n for n in names if n in set(ex.candidates)]
    assets: list = [production_sample, ingested_sample, validated_labels, model_zoo]
    for order, name in enumerate(names):
        assets.append(build_candidate_weights_asset(name, order))
        assets.extend(build_candidate_eval_assets(name))
        if task.tiling:  # sliced inference: a remedy for small objects in frames
            assets.append(build_tiling_asset(name))
        if name in finetuned:
            assets.extend(build_finetune_assets(name, learning_curve=name in curves))
            assets.extend(build_reeval_assets(name))
            if settings.decision.second_seed is not None:  # settles rows close to the bar
                assets.append(build_second_seed_asset(name))
        if name in exported:  # what ships: exported / INT8 artefacts through the same pass
            assets.extend(build_export_assets(name, ex.formats, name in finetuned, ex.stages))
    assets.append(build_decision_asset(
        names, finetuned, curves, tiling=task.tiling,
        exports={n: [export_asset_name(stage, label) for stage, label in
                     export_plan(ex.stages, ex.formats, n in finetuned)] for n in exported},
        second_seed=finetuned if settings.decision.second_seed is not None else set()))
    return [*assets, batch_labels, batch_champion_eval, drift_report]


def build_definitions() -> dg.Definitions:
    problem = settings_problem()
    if problem:  # one line in the code server's log; the runs fail with the same line
        log.error("%s (every run fails on its first step until it is fixed)", problem)
    settings = _structure_settings()
    resources = build_resources()
    jobs = build_jobs(environment.executor())
    schedule = dg.ScheduleDefinition(
        name="nightly_drift", job=jobs["drift_job"], cron_schedule=settings.schedule.cron,
        execution_timezone=settings.schedule.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Nightly drift re-evaluation of the champion on the batches landed since "
                    "the last run (schedule.cron / schedule.timezone in the settings).")
    sensors = [build_landing_sensor(jobs["landed_batch_job"],
                                    settings.landing.sensor_interval_seconds),
               build_retrigger_sensor(jobs["preflight_pass"], resources["settings"]),
               *build_mlflow_finish_sensors()]
    return dg.Definitions(assets=build_assets(), jobs=list(jobs.values()), schedules=[schedule],
                          sensors=sensors, resources=resources)


defs = build_definitions()
