"""Preflight: production validation for lightweight vision models (the framework-free core).

Plain functions and dataclasses, no Dagster or MLflow (``assets/``, ``pipeline/`` and
``resources/`` build on this package, never the reverse). One folder a concept: ``data`` (a
user's sample read and validated into tables), ``synth`` (the synthetic warehouse generator),
``metrics`` (per-slice metrics with intervals), ``stress`` (edge-case corruptions), ``latency``,
``models`` (adapters behind one interface, the zoo, export), ``decide`` (the bar and the
verdict), ``drift`` (a landed batch against the validated one) and ``report``; the modules at
the top are the settings, the task registry, the taxonomy, evaluation, fine-tuning, run history
and the ``preflight`` command line.
"""

__version__ = "0.1.0"
