"""Dagster wiring: definitions, jobs, schedules, sensors (the thin shell around `preflight`)."""
