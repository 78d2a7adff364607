"""Models behind one interface: every family (ultralytics detectors, timm classifiers) is an
adapter implementing :class:`preflight.models.base.Model`, found by its family in the registry
(``registry.FAMILIES``).

It owns the candidates file (``candidates``), the adapters and their training (``ultralytics_*``,
``training``, ``timm_*``), the demo zoo of trained checkpoints (``zoo``, ``preflight zoo``),
sliced inference (``tiling``), deployable artefacts and their runtimes (``export``, ``exported``)
and a toy dataset for tests (``toy``). Import-light: ultralytics/torch load only when a model is
built, trained or loaded.
"""

from preflight.models.base import (
    PRED_COLUMNS,
    ChecksumError,
    Detector,
    ModelError,
    TrainResult,
    empty_predictions,
)
from preflight.models.candidates import (
    DEFAULT_CANDIDATES_PATH,
    Candidate,
    CandidateError,
    get_candidate,
    load_candidates,
    parse_candidates,
    unmapped_classes,
)
from preflight.models.zoo import (
    Manifest,
    ResolvedWeights,
    ZooBuild,
    ZooError,
    build_zoo,
    default_zoo_dir,
    resolve_weights,
    sha256_file,
)


def __getattr__(name: str):
    """Lazy access to the torch/ultralytics-backed pieces."""
    if name in ("UltralyticsDetector", "load_detector", "make_predict_fn", "PREDICT_FN_FACTORY"):
        from preflight.models import ultralytics_adapter

        return getattr(ultralytics_adapter, name)
    if name in ("TimmClassifier", "load_classifier"):
        from preflight.models import timm_adapter

        return getattr(timm_adapter, name)
    if name in ("train_classifier", "ClassifierTraining"):
        from preflight.models import timm_training

        return getattr(timm_training, name)
    if name in ("train_detector", "evaluate_detector", "DetectorTraining"):
        from preflight.models import training

        return getattr(training, name)
    raise AttributeError(f"module 'preflight.models' has no attribute {name!r}")


__all__ = [
    "DEFAULT_CANDIDATES_PATH",
    "PREDICT_FN_FACTORY",
    "PRED_COLUMNS",
    "Candidate",
    "ClassifierTraining",
    "CandidateError",
    "ChecksumError",
    "Detector",
    "DetectorTraining",
    "Manifest",
    "ModelError",
    "ResolvedWeights",
    "TimmClassifier",
    "TrainResult",
    "UltralyticsDetector",
    "ZooError",
    "ZooBuild",
    "build_zoo",
    "default_zoo_dir",
    "empty_predictions",
    "evaluate_detector",
    "get_candidate",
    "load_candidates",
    "load_classifier",
    "load_detector",
    "make_predict_fn",
    "parse_candidates",
    "resolve_weights",
    "sha256_file",
    "train_classifier",
    "train_detector",
    "unmapped_classes",
]
