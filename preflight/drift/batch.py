"""All drift checks of one landed batch against the reference evaluation set, in one table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from preflight.drift.embedding import embedding_drift
from preflight.drift.input import DriftThresholds, input_drift
from preflight.drift.performance import performance_drift
from preflight.drift.prediction import prediction_drift


@dataclass(frozen=True)
class DriftSide:
    """What the checks compare on one side: the images table (pixel properties, slice columns,
    ``group_id``), the champion's predictions and metrics, and its embeddings of the frames."""

    images: pd.DataFrame
    predictions: pd.DataFrame
    metrics: pd.DataFrame
    embeddings: np.ndarray | None = None


def batch_drift(reference: DriftSide, current: DriftSide, *, thresholds: DriftThresholds,
                operating_threshold: float, class_names: Mapping[int, str],
                seed: int = 0) -> pd.DataFrame:
    """Input (properties, slice mix, embeddings), prediction and performance drift rows."""
    frames = [input_drift(reference.images, current.images, seed=seed, thresholds=thresholds)]
    if reference.embeddings is not None and current.embeddings is not None \
            and len(reference.embeddings) > 1 and len(current.embeddings) > 1:
        frames.append(embedding_drift(reference.embeddings, current.embeddings, seed=seed,
                                      feature="embedding", thresholds=thresholds))
    frames.append(prediction_drift(reference.predictions, current.predictions,
                                   operating_threshold=operating_threshold,
                                   class_names=class_names, seed=seed, thresholds=thresholds))
    frames.append(performance_drift(reference.metrics, current.metrics, thresholds=thresholds))
    return pd.concat([f for f in frames if len(f)], ignore_index=True)
