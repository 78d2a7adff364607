"""Dagster resources: how the pipeline meets the outside world (storage, MLflow, settings, zoo)."""

from resources.settings import SettingsResource
from resources.store import PreflightStore
from resources.tracking import MlflowTracker

__all__ = ["MlflowTracker", "PreflightStore", "SettingsResource"]
