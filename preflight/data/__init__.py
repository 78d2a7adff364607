"""Data: landing-folder ingestion, label validation and the synthetic warehouse generator."""
