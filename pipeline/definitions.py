"""The one `Definitions` object that `dagster dev` (workspace.yaml) and `preflight demo` load.

Per-candidate assets are built from the candidates file named in the settings, so adding a
candidate there adds its evaluation, stress, latency, fine-tuning and re-evaluation assets.
"""

from __future__ import annotations

import dagster as dg

from assets.ingestion import ingested_sample, production_sample
from assets.validation import validated_labels
from pipeline.jobs import build_jobs
from resources import MlflowTracker, ModelZoo, PreflightStore, SettingsResource


def build_resources() -> dict:
    """Resources from the environment: the settings file and project home decide everything."""
    from preflight.config import load_settings

    settings = load_settings()
    return {
        "settings": SettingsResource(),
        "store": PreflightStore(),
        "zoo": ModelZoo(device=settings.finetune.device),
        "tracker": MlflowTracker(
            tracking_uri=settings.mlflow.tracking_uri,
            artifact_location=settings.mlflow.artifact_location,
            experiment=settings.mlflow.experiment,
        ),
    }


def build_assets() -> list:
    """Every asset: the shared stages and one set of per-candidate assets per candidate."""
    from assets.decision import build_decision_asset
    from assets.evaluation import build_candidate_eval_assets, model_zoo
    from assets.finetuning import build_finetune_assets
    from assets.reevaluation import build_reeval_assets, build_tiling_asset
    from preflight.config import load_settings

    ft = load_settings().finetune
    names = [c.name for c in ModelZoo().candidates()]
    finetuned = set(ft.candidates or names) & set(names)
    curves = (finetuned if "*" in ft.learning_curve_candidates
              else set(ft.learning_curve_candidates) & finetuned)
    assets: list = [production_sample, ingested_sample, validated_labels, model_zoo]
    for name in names:
        assets.extend(build_candidate_eval_assets(name))
        assets.append(build_tiling_asset(name))
        if name in finetuned:
            assets.extend(build_finetune_assets(name, learning_curve=name in curves))
            assets.extend(build_reeval_assets(name))
    assets.append(build_decision_asset(names, finetuned, curves))
    return assets


def build_definitions() -> dg.Definitions:
    return dg.Definitions(assets=build_assets(), jobs=build_jobs(), resources=build_resources())


defs = build_definitions()
