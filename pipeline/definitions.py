"""The one `Definitions` object that `dagster dev` (workspace.yaml) and `preflight demo` load."""

from __future__ import annotations

import dagster as dg

from assets.ingestion import ingested_sample, production_sample
from assets.validation import validated_labels
from pipeline.jobs import preflight_pass
from resources import MlflowTracker, PreflightStore, SettingsResource


def build_resources() -> dict:
    """Resources from the environment: the settings file and project home decide everything."""
    from preflight.config import load_settings

    settings = load_settings()
    return {
        "settings": SettingsResource(),
        "store": PreflightStore(),
        "tracker": MlflowTracker(
            tracking_uri=settings.mlflow.tracking_uri,
            artifact_location=settings.mlflow.artifact_location,
            experiment=settings.mlflow.experiment,
        ),
    }


ALL_ASSETS = [production_sample, ingested_sample, validated_labels]

defs = dg.Definitions(
    assets=ALL_ASSETS,
    jobs=[preflight_pass],
    resources=build_resources(),
)
