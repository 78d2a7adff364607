"""Preflight: production validation for lightweight vision models (framework-free core)."""

__version__ = "0.1.0"
