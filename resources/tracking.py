"""MLflow as a Dagster resource: one parent run per pipeline run, one child run per candidate and stage.

The default is a local SQLite store under the project home; any tracking URI (an MLflow server,
``postgresql://...``) and artifact root (``s3://...``) works through configuration alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from preflight.config import preflight_home

_BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch call


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

        mlflow.set_tracking_uri(self.resolved_tracking_uri())
        return mlflow.MlflowClient(tracking_uri=self.resolved_tracking_uri())

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
    def parent_run(self, pipeline_run_id: str, job_name: str = "") -> str:
        """The parent MLflow run of one Dagster run (created on first use, found afterwards)."""
        client = self.client()
        exp = self.experiment_id()
        found = client.search_runs(
            [exp], filter_string=f"tags.`dagster.run_id` = '{pipeline_run_id}' "
                                 "and tags.`preflight.role` = 'parent'", max_results=1)
        if found:
            return found[0].info.run_id
        run = client.create_run(exp, run_name=f"pipeline-{pipeline_run_id[:8]}", tags={
            "dagster.run_id": pipeline_run_id, "dagster.job": job_name, "preflight.role": "parent"})
        return run.info.run_id

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

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        client = self.client()
        for k, v in tags.items():
            client.set_tag(run_id, k, str(v))

    def run_url(self, run_id: str) -> str:
        base = self.tracking_uri if (self.tracking_uri or "").startswith("http") else self.ui_url
        return f"{base.rstrip('/')}/#/experiments/{self.experiment_id()}/runs/{run_id}"

    # -- registry ---------------------------------------------------------------------------
    def register_model(self, run_id: str, model_path: str | Path, name: str, alias: str = "champion",
                       description: str = "", tags: Mapping[str, str] | None = None) -> str:
        """Log `model_path` to `run_id`, register it under `name` and point `alias` at the new version."""
        from mlflow.exceptions import MlflowException

        client = self.client()
        model_path = Path(model_path)
        self.log_artifact(run_id, model_path, "model")
        try:
            client.create_registered_model(name, description=description)
        except MlflowException:
            pass  # already registered
        source = f"runs:/{run_id}/model/{model_path.name}"
        version = client.create_model_version(name, source, run_id=run_id, tags=dict(tags or {}),
                                              description=description)
        client.set_registered_model_alias(name, alias, version.version)
        return str(version.version)


def _metric_key(key: str) -> str:
    """MLflow keys allow [A-Za-z0-9_-. /]; map anything else (e.g. ':' or '<') to '_'."""
    return "".join(c if (c.isalnum() or c in "_-. /") else "_" for c in str(key))[:250]
