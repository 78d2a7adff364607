"""Recording a stage's results: MLflow child runs and Dagster metadata, in one place."""


from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from resources import MlflowTracker


def candidate_key(name: str) -> str:
    """A candidate name as a Dagster asset-key/op-name component (``yolov8n-p2`` -> ``yolov8n_p2``)."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def record_run(context: dg.AssetExecutionContext, tracker: MlflowTracker, *, name: str,
               stage: str, candidate: str, params: Mapping[str, Any],
               metrics: Mapping[str, float],
               artifacts: list[tuple[str, Path | str]] | None = None,
               tags: Mapping[str, Any] | None = None, step: int = 0) -> dict[str, Any]:
    """One MLflow run for (candidate, stage), nested under the pipeline run's parent run.

    ``artifacts``: ``(artifact folder, file)`` pairs. Returns Dagster metadata pointing at it (run id and URL). MLflow trouble (a tracking server
    that is down) fails the asset with a message that names the tracking URI."""
    try:  # the run's settings snapshot, when the asset has the settings resource
        settings = context.resources.settings
    except Exception:  # noqa: BLE001 - Dagster raises its own error type for a missing resource
        settings = None
    try:
        parent = tracker.parent_run(context.run_id, context.job_name or "",
                                    settings=settings.load().to_dict() if settings else None)
        run_id = tracker.start_child(parent, name, {"preflight.stage": stage,
                                                    "preflight.candidate": candidate,
                                                    "dagster.run_id": context.run_id,
                                                    **(tags or {})})
        tracker.log_params(run_id, params)
        logged = tracker.log_metrics(run_id, metrics, step=step)
        for artifact_path, path in artifacts or []:
            if Path(path).exists():
                tracker.log_artifact(run_id, path, artifact_path or None)
        tracker.finish(run_id)
        url = tracker.run_url(run_id)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types; name the store
        raise dg.Failure(f"recording {name} in MLflow at {tracker.resolved_tracking_uri()} "
                         f"failed: {exc}") from exc
    context.log.info(f"MLflow run {name}: {logged} metrics -> {url}")
    return {"mlflow_run_id": run_id, "mlflow_run": dg.MetadataValue.url(url),
            "mlflow_metrics_logged": logged}


def write_tables(store, prefix: str, tables: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    """Write each table as ``tables/<prefix>/<name>.parquet``; returns name -> path."""
    return {name: str(store.write_table(f"{prefix}/{name}", frame))
            for name, frame in tables.items()}


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj
