"""MLflow as a Dagster resource: one parent run per pipeline run, one child run per candidate and stage.

The default is a local SQLite store under the project home; any tracking URI (an MLflow server,
``postgresql://...``) and artifact root (``s3://...``) works through configuration alone.

The parent run of a Dagster run is found by its ``dagster.run_id`` tag and created once, even when
parallel steps (the multiprocess executor) ask at the same moment: creation holds a file lock per
Dagster run, and a process that still finds two parents (steps on machines that share no disk)
keeps the earliest and deletes its own. ``finish_parent`` ends it with the Dagster run's status.
The champion is registered as an MLflow ``pyfunc`` model (``resources.champion_model``), so
``mlflow.pyfunc.load_model("models:/<name>@champion")`` predicts on a frame.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from preflight.config import flat_keys, preflight_home
from preflight.filelock import file_lock

_BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch call
#: sqlite tracking URIs whose schema this process has seen created (MlflowTracker.client)
_SCHEMA_READY: set[str] = set()


class MlflowTracker(dg.ConfigurableResource):
    """Records parameters, per-slice metrics, plots and models of every candidate in MLflow."""

    tracking_uri: str | None = None  # None: sqlite:///<home>/mlflow/mlflow.db
    artifact_location: str | None = None  # None: <home>/mlflow/artifacts
    experiment: str = "preflight"
    ui_url: str = "http://127.0.0.1:5000"  # where `preflight ui` serves the MLflow UI

    # -- connection -------------------------------------------------------------------------
    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        db = preflight_home() / "mlflow" / "mlflow.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{db}"

    def resolved_artifact_location(self) -> str:
        if self.artifact_location:
            return self.artifact_location
        root = preflight_home() / "mlflow" / "artifacts"
        root.mkdir(parents=True, exist_ok=True)
        return root.as_uri()

    def client(self):  # -> mlflow.MlflowClient (imported lazily: mlflow is slow to import)
        import mlflow

        uri = self.resolved_tracking_uri()
        mlflow.set_tracking_uri(uri)
        db = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
        if not db or db == ":memory:" or uri in _SCHEMA_READY:
            return mlflow.MlflowClient(tracking_uri=uri)
        # a process's first client (its constructor opens the store) creates or migrates the
        # schema of a new database: steps starting together in several processes (multiprocess,
        # celery workers) would each create the same tables ("table ... already exists"), so
        # one process at a time does it
        with file_lock(Path(db + ".schema.lock")):
            client = mlflow.MlflowClient(tracking_uri=uri)
        _SCHEMA_READY.add(uri)
        return client

    def experiment_id(self) -> str:
        client = self.client()
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(
                self.experiment, artifact_location=self.resolved_artifact_location())
        except Exception:  # created concurrently by another process
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    # -- runs -------------------------------------------------------------------------------
    def parent_run(self, pipeline_run_id: str, job_name: str = "",
                   settings: Mapping[str, Any] | None = None) -> str:
        """The parent MLflow run of one Dagster run (created on first use, found afterwards;
        created once even when parallel steps ask together). ``settings``: the run's resolved
        settings, logged as ``settings.<dotted key>`` params when the parent is created."""
        found = self._parents(pipeline_run_id)
        if found:
            return found[0].info.run_id
        with file_lock(preflight_home() / "mlflow" / "locks" / f"{pipeline_run_id}.lock"):
            found = self._parents(pipeline_run_id)
            if found:
                return found[0].info.run_id
            client = self.client()
            mine = client.create_run(
                self.experiment_id(), run_name=f"pipeline-{pipeline_run_id[:8]}",
                tags={"dagster.run_id": pipeline_run_id, "dagster.job": job_name,
                      "preflight.role": "parent"}).info.run_id
            if settings:
                self.log_params(mine, {f"settings.{k}": v for k, v in flat_keys(settings).items()})
        winner = self._parents(pipeline_run_id)[0].info.run_id  # no shared disk: earliest wins
        if winner != mine:
            client.delete_run(mine)
        return winner

    def _parents(self, pipeline_run_id: str) -> list:
        """Live parent runs of a Dagster run, earliest first (ties: by run id)."""
        runs = self.client().search_runs(
            [self.experiment_id()],
            filter_string=f"tags.`dagster.run_id` = '{pipeline_run_id}' "
                          "and tags.`preflight.role` = 'parent'", max_results=50)
        return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))

    def finish_parent(self, pipeline_run_id: str, status: str) -> str | None:
        """End the parent run with the Dagster run's outcome: ``success``/``failure``/
        ``canceled`` become MLflow ``FINISHED``/``FAILED``/``KILLED``. None if it had none."""
        mlflow_status = {"success": "FINISHED", "failure": "FAILED",
                         "canceled": "KILLED"}[status.lower()]
        found = self._parents(pipeline_run_id)
        if not found:
            return None
        run_id = found[0].info.run_id
        client = self.client()
        client.set_tag(run_id, "dagster.status", status.lower())
        client.set_terminated(run_id, mlflow_status)
        return run_id

    def start_child(self, parent_run_id: str, name: str, tags: Mapping[str, str] | None = None) -> str:
        client = self.client()
        all_tags = {"mlflow.parentRunId": parent_run_id, "preflight.role": "child"}
        all_tags.update({k: str(v) for k, v in (tags or {}).items()})
        run = client.create_run(self.experiment_id(), run_name=name, tags=all_tags)
        return run.info.run_id

    def finish(self, run_id: str, ok: bool = True) -> None:
        self.client().set_terminated(run_id, "FINISHED" if ok else "FAILED")

    # -- logging ----------------------------------------------------------------------------
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k)[:250], str(v)[:6000]) for k, v in params.items()]
        client = self.client()
        for i in range(0, len(items), 100):
            client.log_batch(run_id, params=items[i:i + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> int:
        """Log finite metric values; returns how many were logged (NaN means 'nothing to measure')."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_metric_key(k), float(v), now, step) for k, v in metrics.items()
                 if v is not None and math.isfinite(float(v))]
        client = self.client()
        for i in range(0, len(items), _BATCH):
            client.log_batch(run_id, metrics=items[i:i + _BATCH])
        return len(items)

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client().log_artifact(run_id, str(path), artifact_path)

    def run_url(self, run_id: str) -> str:
        base = self.tracking_uri if (self.tracking_uri or "").startswith("http") else self.ui_url
        return f"{base.rstrip('/')}/#/experiments/{self.experiment_id()}/runs/{run_id}"

    # -- registry ---------------------------------------------------------------------------
    def register_model(self, run_id: str, model_path: str | Path, name: str, alias: str = "champion",
                       description: str = "", tags: Mapping[str, str] | None = None) -> str:
        """Log `model_path` to `run_id`, register it under `name` and point `alias` at the new version."""
        model_path = Path(model_path)
        self.log_artifact(run_id, model_path, "model")
        return self._new_version(run_id, f"runs:/{run_id}/model/{model_path.name}", name, alias,
                                 description, tags)

    def register_champion(self, run_id: str, *, name: str, checkpoint: str | Path,
                          record: Mapping[str, Any], decision_json: str | Path,
                          alias: str = "champion", description: str = "",
                          tags: Mapping[str, str] | None = None) -> str:
        """Log the champion as a ``pyfunc`` model (checkpoint, class map, input size, decision
        JSON) in ``run_id``, register it under ``name`` and point ``alias`` at it."""
        from resources.champion_model import save_champion_model

        with tempfile.TemporaryDirectory() as tmp:
            folder = save_champion_model(Path(tmp) / "champion", checkpoint, dict(record),
                                         decision_json)
            self.client().log_artifacts(run_id, str(folder), "champion")
        return self._new_version(run_id, f"runs:/{run_id}/champion", name, alias, description,
                                 tags)

    def load_champion(self, name: str, alias: str = "champion"):
        """``mlflow.pyfunc.load_model("models:/<name>@<alias>")`` against this tracking store."""
        import mlflow.pyfunc

        self.client()  # sets the tracking (and so the registry) URI
        return mlflow.pyfunc.load_model(f"models:/{name}@{alias}")

    def _new_version(self, run_id: str, source: str, name: str, alias: str, description: str,
                     tags: Mapping[str, str] | None) -> str:
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            client.create_registered_model(name, description=description)
        except MlflowException:
            pass  # already registered
        version = client.create_model_version(name, source, run_id=run_id, tags=dict(tags or {}),
                                              description=description)
        client.set_registered_model_alias(name, alias, version.version)
        return str(version.version)


def _metric_key(key: str) -> str:
    """MLflow keys allow [A-Za-z0-9_-. /]; map anything else (e.g. ':' or '<') to '_'."""
    return "".join(c if (c.isalnum() or c in "_-. /") else "_" for c in str(key))[:250]
