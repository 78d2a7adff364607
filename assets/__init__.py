"""Dagster assets, one module per pipeline stage; each is thin and calls the `preflight` core."""
