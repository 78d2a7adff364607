"""Sensors: newly landed labelled batches, the drift report's retrigger, and the end of each
Dagster run recorded on its MLflow parent run."""

from __future__ import annotations

import json

import dagster as dg

from assets.monitoring import landed_batches
from resources import MlflowTracker, PreflightStore, SettingsResource


def build_landing_sensor(job: dg.UnresolvedAssetJobDefinition, interval_s: int
                         ) -> dg.SensorDefinition:
    @dg.sensor(name="landed_batch_sensor", job=job, minimum_interval_seconds=interval_s,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Registers each complete batch in the landing folder as a partition "
                           "and requests its ingestion, validation and champion re-evaluation.")
    def landed_batch_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource,
                            store: PreflightStore):
        """A batch is processed once: its name is the run key and is kept in the cursor (which
        Dagster persists, so a daemon restart does not re-request it)."""
        from preflight.config import ConfigError
        from preflight.data.landing import scan_landing

        try:
            cfg = settings.load().landing
        except ConfigError as exc:  # one line in the tick, not a stack trace
            return dg.SkipReason(f"settings: {exc}")
        root = cfg.dir or str(store.path("landing", "batches", "x").parent)
        seen = set(json.loads(context.cursor)) if context.cursor else set()
        statuses = scan_landing(root)
        new = [s.name for s in statuses if s.complete and s.name not in seen]
        waiting = [f"{s.name}: {s.reason}" for s in statuses if not s.complete]
        if not new:
            return dg.SkipReason("no new complete batch in " + root
                                 + (f" (waiting: {'; '.join(waiting)})" if waiting else ""))
        known = set(context.instance.get_dynamic_partitions(landed_batches.name))
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=name, partition_key=name,
                                        tags={"preflight/batch": name}) for name in new],
            dynamic_partitions_requests=[landed_batches.build_add_request(
                [n for n in new if n not in known])],
            cursor=json.dumps(sorted(seen | set(new))))

    return landed_batch_sensor


def build_retrigger_sensor(pass_job, settings: SettingsResource) -> dg.SensorDefinition:
    @dg.asset_sensor(asset_key=dg.AssetKey("drift_report"), job=pass_job,
                     name="drift_retrigger_sensor",
                     description="When drift fails and drift.retrigger_on_fail is set, runs the "
                                 "fine-tune / decision chain again.")
    def drift_retrigger_sensor(context: dg.SensorEvaluationContext, asset_event):
        # Dagster 1.13's asset_sensor does not hand resources to its function when invoked
        # directly, so the definitions' settings resource is closed over instead
        from preflight.config import ConfigError

        try:
            # the resource's fields may be EnvVars: resolve them now, at the tick, as a run would
            retrigger = settings.process_config_and_initialize().load().drift.retrigger_on_fail
        except ConfigError as exc:
            return dg.SkipReason(f"settings: {exc}")
        if not retrigger:
            return dg.SkipReason("drift.retrigger_on_fail is off")
        mat = asset_event.dagster_event.event_specific_data.materialization
        level = mat.metadata.get("worst_level")
        if level is None or level.value != "fail":
            return dg.SkipReason(f"drift level {level.value if level else 'unknown'}: nothing to do")
        return dg.RunRequest(run_key=f"drift-retrigger-{asset_event.run_id}",
                             tags={"preflight/trigger": "drift"})

    return drift_retrigger_sensor


#: Dagster run outcome -> the word ``MlflowTracker.finish_parent`` takes
RUN_OUTCOMES = {"SUCCESS": "success", "FAILURE": "failure", "CANCELED": "canceled"}


def build_mlflow_finish_sensors() -> list[dg.SensorDefinition]:
    """One run-status sensor per outcome: the MLflow parent run of a Dagster run that ended is
    terminated with its status (FINISHED / FAILED / KILLED). ``preflight demo`` runs in process,
    without the daemon, and does the same itself when its run ends."""
    return [_finish_sensor(status, outcome) for status, outcome in RUN_OUTCOMES.items()]


def _finish_sensor(status: str, outcome: str) -> dg.SensorDefinition:
    @dg.run_status_sensor(run_status=getattr(dg.DagsterRunStatus, status),
                          name=f"mlflow_parent_run_{outcome}",
                          default_status=dg.DefaultSensorStatus.RUNNING,
                          description=f"Marks the MLflow parent run of a Dagster run that ended "
                                      f"in {outcome} as finished with that status.")
    def finish_parent(context: dg.RunStatusSensorContext, tracker: MlflowTracker):
        run_id = tracker.finish_parent(context.dagster_run.run_id, outcome)
        return dg.SkipReason(f"MLflow parent run {run_id} ended: {outcome}" if run_id
                             else "the run logged nothing to MLflow")

    return finish_parent
