"""Dagster resources: how the pipeline meets the outside world (storage, MLflow, settings, zoo)."""

from resources.settings import SettingsResource
from resources.store import PreflightStore
from resources.tracking import MlflowTracker
from resources.zoo import ModelZoo

__all__ = ["MlflowTracker", "ModelZoo", "PreflightStore", "SettingsResource"]
