"""The operational settings file as a Dagster resource."""

from __future__ import annotations

import dagster as dg

from preflight.config import Settings, load_settings


class SettingsResource(dg.ConfigurableResource):
    """Loads and validates the operational settings YAML (taxonomy, bars, costs, thresholds)."""

    config_path: str | None = None  # None: $PREFLIGHT_CONFIG or config/preflight.yaml

    def load(self) -> Settings:
        return load_settings(self.config_path)
