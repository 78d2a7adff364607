"""The one protocol every model family implements, and the shapes it returns.

:class:`Model` is what the pipeline calls on any candidate, detector or classifier; the family
registry (:mod:`preflight.models.registry`) maps a candidate's ``family`` to the adapter class,
so the pipeline never names a family. What ``predict`` returns depends on the family's ``task``:

* ``detect`` (:class:`Detector`): one DataFrame of :data:`PRED_COLUMNS` per frame;
* ``classify``: an ``(n, K)`` array of probabilities over the K operational classes.

Either way, model classes reach the caller already in the *operational* taxonomy (the settings'
``taxonomy``) through the candidate's ``class_map``; model classes it does not map are dropped.

A :class:`Detector` takes RGB ``uint8`` frames (``H x W x 3``, any size) and returns one
DataFrame per frame with columns :data:`PRED_COLUMNS` -- ``class_id`` already in the
*operational* taxonomy (via the candidate's ``class_map``; detections of model classes with no
mapping are dropped), ``x, y, w, h`` top-left box in the frame's own pixel coordinates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pandas only for type hints: keep ``import preflight.models`` light
    import pandas as pd

    from preflight.models.candidates import Candidate
    from preflight.taxonomy import Taxonomy

#: Columns of one frame's predictions (the ``image_id`` column is added by the caller).
PRED_COLUMNS: tuple[str, ...] = ("class_id", "score", "x", "y", "w", "h")


class ModelError(RuntimeError):
    """A model could not be built, loaded, trained or exported (with a sentence saying why)."""


class ChecksumError(ModelError):
    """A checkpoint's sha256 does not match the one recorded for it."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file (what :class:`ChecksumError` compares), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    ``checkpoint`` is the weights to use (best.pt when the run validated, else last.pt);
    ``last_checkpoint`` the resumable/last epoch; ``metrics`` the final validation numbers
    (``map50``, ``map50_95``, ``precision``, ``recall`` -- empty when no validation ran);
    ``history`` one row per epoch from ultralytics' ``results.csv`` (losses, lr, val metrics).
    """

    checkpoint: Path
    last_checkpoint: Path
    metrics: dict[str, float]
    history: pd.DataFrame
    seconds: float
    epochs_run: int = 0
    train_args: dict[str, Any] = field(default_factory=dict)

    @property
    def final_train_loss(self) -> dict[str, float]:
        """The last epoch's ``train/*`` losses (empty when no epoch finished)."""
        if self.history is None or self.history.empty:
            return {}
        last = self.history.iloc[-1]
        return {str(k): float(last[k]) for k in self.history.columns if str(k).startswith("train/")}


@dataclass(frozen=True)
class CheckpointFacts:
    """What a family's checkpoint inspector (``ModelFamily.inspect``) reads from a file, for
    ``preflight init``: the model's class names (in id order), the input size it was trained at
    and, when the file alone cannot rebuild the network, its ``arch`` (a candidates-file key)."""

    class_names: tuple[str, ...]
    input_size: int
    arch: str | None = None


@runtime_checkable
class Model(Protocol):
    """What Preflight needs from any model, whatever its family or task.

    Construction is by class method, so the registry can hand out the class: ``from_candidate``
    loads a candidate's weights with its ``class_map``; ``from_weights`` loads a checkpoint
    that already speaks the operational taxonomy (a fine-tuned one). Both take the taxonomy.
    """

    name: str
    family: str
    input_size: int
    taxonomy: Taxonomy

    @classmethod
    def from_candidate(cls, candidate: Candidate, zoo_dir: str | Path | None = None,
                       device: str | None = None, *, taxonomy: Taxonomy,
                       **kwargs: Any) -> Model:
        """A candidate's weights (zoo, local or hub), class_map applied."""
        ...

    @classmethod
    def from_weights(cls, weights: str | Path, *, taxonomy: Taxonomy, name: str | None = None,
                     input_size: int | None = None, class_map: dict[str, str] | None = None,
                     device: str | None = None, **kwargs: Any) -> Model:
        """A checkpoint the caller names; ``class_map=None``: its classes are operational."""
        ...

    def predict(self, images: list[np.ndarray]) -> Any:
        """RGB uint8 images -> the task's predictions (see the module doc)."""
        ...

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """``(n, d)`` features: the model's view of the input (embedding drift)."""
        ...

    @property
    def predict_fn(self) -> Any:
        """``predict_fn(list_of_rgb_images)`` for latency measurement."""
        ...

    def latency_spec(self) -> tuple[str, dict[str, Any]]:
        """``(factory, kwargs)`` that rebuild ``predict_fn`` in a fresh process (cold start)."""
        ...

    def train(self, data: Any, out_dir: str | Path, **kwargs: Any) -> TrainResult:
        """Fine-tune from the current weights; the result speaks the operational taxonomy."""
        ...

    def export(self, out_dir: str | Path, *, format: str = "torchscript") -> Path:
        """Write a deployable artefact of the current weights; returns its path."""
        ...


@runtime_checkable
class Detector(Protocol):
    """What Preflight needs from any detector, whatever its family."""

    name: str
    input_size: int

    def predict(self, images: list[np.ndarray]) -> list[pd.DataFrame]:
        """RGB uint8 frames -> one frame of :data:`PRED_COLUMNS` per image (original pixels,
        operational class ids)."""
        ...

    def train(self, data_yaml: str | Path, out_dir: str | Path, **kwargs: Any) -> TrainResult:
        """Fine-tune from the current weights on a YOLO dataset; returns where the weights went."""
        ...

    def export(self, out_dir: str | Path, *, format: str = "torchscript") -> Path:
        """Write a deployable artefact of the current weights; returns its path."""
        ...


def parameter_count(model: Any) -> int:
    """The model's size in weights, as its adapter reports it (``num_parameters``; orders
    candidates from lightest to heaviest). An adapter that does not say counts 0."""
    return int(getattr(model, "num_parameters", 0) or 0)


def empty_predictions() -> pd.DataFrame:
    """A zero-row predictions frame with the right columns and dtypes."""
    import pandas as pd

    return pd.DataFrame({
        "class_id": np.zeros(0, dtype=np.int64),
        "score": np.zeros(0, dtype=np.float64),
        "x": np.zeros(0, dtype=np.float64),
        "y": np.zeros(0, dtype=np.float64),
        "w": np.zeros(0, dtype=np.float64),
        "h": np.zeros(0, dtype=np.float64),
    })


def check_rgb_frame(image: Any, index: int = 0) -> np.ndarray:
    """Validate one input frame (H x W x 3 uint8) and return it as a contiguous array."""
    if not isinstance(image, np.ndarray):
        raise ModelError(f"image {index}: expected a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ModelError(f"image {index}: expected an RGB frame of shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        raise ModelError(f"image {index}: expected dtype uint8, got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ModelError(f"image {index}: empty frame {image.shape}")
    return image


class OperationalSoftmax:
    """A classifier's logits -> probabilities over the operational taxonomy: softmax over the
    mapped model classes, summed per operational class (unmapped operational classes get 0;
    rows sum to 1). One place for every classifier family (timm, exported runtimes)."""

    def __init__(self, id_map: dict[int, int], n_operational: int) -> None:
        #: model class indices that map to an operational class, ascending
        self.mapped = np.array(sorted(id_map), dtype=np.int64)
        #: (mapped model classes, K) 0/1 matrix summing model-class probabilities per op class
        self.to_operational = np.zeros((len(self.mapped), n_operational), dtype=np.float64)
        for row, model_id in enumerate(self.mapped):
            self.to_operational[row, id_map[int(model_id)]] = 1.0

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64)[:, self.mapped]
        if not len(z):
            return np.zeros((0, self.to_operational.shape[1]))
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return p @ self.to_operational


# ------------------------------------------------------------------------- loading by name
def load_candidate_model(adapter: type, name: str, *, candidates_path: str | Path | None = None,
                         zoo_dir: str | Path | None = None, device: str | None = None,
                         taxonomy: Taxonomy | list[str] | None = None, **kwargs: Any) -> Any:
    """Candidate ``name`` of the candidates file, loaded by ``adapter`` (a family's
    :class:`Model` class, through its ``from_candidate``); ``taxonomy``: default the settings'."""
    from preflight.config import resolve_taxonomy
    from preflight.models.candidates import get_candidate, load_candidates

    taxonomy = resolve_taxonomy(taxonomy)
    candidate = get_candidate(load_candidates(candidates_path, taxonomy=taxonomy), name)
    return adapter.from_candidate(candidate, zoo_dir, device, taxonomy=taxonomy, **kwargs)


def predict_fn_of(adapter: type, candidate: str | None = None, *,
                  candidates_path: str | Path | None = None, zoo_dir: str | Path | None = None,
                  weights: str | None = None, sha256: str | None = None,
                  device: str | None = None, taxonomy: list[str] | None = None,
                  **weights_kwargs: Any):
    """What a family's ``make_predict_fn`` (its ``preflight.latency.ModelSpec`` factory) returns:
    the ``predict_fn`` of candidate ``candidate``, or of a weights file (verified against
    ``sha256`` when given) loaded by ``adapter.from_weights(weights, **weights_kwargs)``."""
    from preflight.config import resolve_taxonomy

    if candidate is not None:
        return load_candidate_model(adapter, candidate, candidates_path=candidates_path,
                                    zoo_dir=zoo_dir, device=device, taxonomy=taxonomy).predict_fn
    if weights is None:
        raise ModelError("make_predict_fn needs a candidate name or a weights path")
    if sha256 is not None and sha256_file(weights) != sha256:
        raise ChecksumError(f"{weights} does not match the expected sha256 {sha256}")
    return adapter.from_weights(weights, device=device, taxonomy=resolve_taxonomy(taxonomy),
                                **weights_kwargs).predict_fn


def latency_spec_of(model: Any, factory: str) -> tuple[str, dict[str, Any]]:
    """A loaded model's ``latency_spec()``: ``(factory, kwargs)`` for
    ``preflight.latency.ModelSpec``, where ``factory`` (its family's ``make_predict_fn``) rebuilds
    it from its weights in a fresh process (cold-start measurement)."""
    return factory, {"weights": model.weights, "name": model.name,
                     "input_size": model.input_size, "class_map": model.class_map,
                     "device": model.device, "sha256": model.sha256,
                     "taxonomy": list(model.taxonomy.names)}


def operational_id_map(name: str, model_classes: dict[int, str], class_map: dict[str, str],
                       taxonomy: Taxonomy, listed: Any = None) -> dict[int, int]:
    """Model class id -> operational class id through ``class_map`` (mapped classes only); a
    ``ModelError`` when ``class_map`` names a class the model does not have (``listed``: how the
    message shows the model's classes, default all in id order) or maps nothing."""
    unknown = sorted(set(class_map) - set(model_classes.values()))
    if unknown:
        shown = list(model_classes.values()) if listed is None else listed
        raise ModelError(f"{name}: class_map names model class(es) {unknown} that the model "
                         f"does not have; its classes are {shown}")
    id_map = {i: taxonomy.id_of(class_map[n]) for i, n in model_classes.items() if n in class_map}
    if not id_map:
        raise ModelError(f"{name}: no model class maps to the operational taxonomy")
    return id_map
