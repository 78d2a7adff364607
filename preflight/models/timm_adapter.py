"""timm image classifiers (MobileNetV3, EfficientNet-lite, MobileViT, ...) for the classify task.

A :class:`TimmClassifier` takes RGB ``uint8`` images (object crops, any size) and returns
probabilities ``(n, K)`` over the *operational* taxonomy (``K = len(taxonomy)``): the softmax is
taken over the model classes the candidate's ``class_map`` maps (the classifier counterpart of a
detector keeping only mapped classes), the probability of model classes mapping to the same
operational class is summed, and operational classes no model class maps to get 0. Each row sums
to 1.

Networks, checkpoints and pre-processing (the same in training and inference) are
:mod:`preflight.models.timm_model`; fine-tuning is :mod:`preflight.models.timm_training`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from preflight.config import resolve_taxonomy
from preflight.models.base import (
    CheckpointFacts,
    ModelError,
    OperationalSoftmax,
    TrainResult,
    check_rgb_frame,
    latency_spec_of,
    load_candidate_model,
    operational_id_map,
    predict_fn_of,
)
from preflight.models.candidates import Candidate
from preflight.models.timm_model import (
    HUB_PREFIX,
    create_timm_model,
    data_config,
    hub_class_names,
    load_checkpoint,
    model_from_checkpoint,
    preprocess,
)
from preflight.models.ultralytics_env import resolve_device
from preflight.taxonomy import Taxonomy

log = logging.getLogger(__name__)

PREDICT_FN_FACTORY = "preflight.models.timm_adapter:make_predict_fn"


def inspect_checkpoint(path: str | Path) -> CheckpointFacts | None:
    """A Preflight timm checkpoint's class names, input size and timm model name (its
    ``arch``), for ``preflight init``; None when ``path`` is not such a checkpoint."""
    try:
        ckpt = load_checkpoint(path)
    except ModelError:
        return None
    return CheckpointFacts(tuple(map(str, ckpt["class_names"])),
                           int(ckpt.get("input_size") or 224), str(ckpt["model_name"]))


# ------------------------------------------------------------------------------ the adapter
class TimmClassifier:
    """One loaded timm classifier plus its mapping onto the operational taxonomy."""

    family = "timm"

    def __init__(self, model: Any, *, name: str, model_name: str, class_names: list[str],
                 input_size: int, class_map: dict[str, str] | None, weights: str,
                 taxonomy: Taxonomy, device: str | None = None,
                 batch_size: int = 64, sha256: str | None = None, weights_source: str = "local",
                 mean: list[float] | None = None, std: list[float] | None = None) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.name = name
        self.model_name = model_name
        self.class_names = [str(c) for c in class_names]
        self.input_size = int(input_size)
        self.weights = weights
        self.sha256 = sha256
        self.weights_source = weights_source
        self.taxonomy = taxonomy
        self.batch_size = max(1, int(batch_size))
        #: what :meth:`train` freezes unless told otherwise (the candidate's ``freeze``)
        self.default_freeze = "none"
        cfg = data_config(model) if mean is None or std is None else {"mean": mean, "std": std}
        self.mean, self.std = list(cfg["mean"]), list(cfg["std"])
        if len(self.class_names) != int(getattr(model, "num_classes", len(self.class_names))):
            raise ModelError(f"{name}: {len(self.class_names)} class names for a model with "
                             f"{model.num_classes} outputs")
        if class_map is None:  # the model already speaks the operational taxonomy (fine-tuned)
            class_map = {n: n for n in self.class_names if n in taxonomy.names}
        shown = self.class_names if len(self.class_names) <= 20 else (
            self.class_names[:20] + ["..."])
        #: model class index -> operational class id (mapped classes only)
        self.id_map = operational_id_map(name, dict(enumerate(self.class_names)), class_map,
                                         taxonomy, listed=shown)
        self.class_map = dict(class_map)
        self._probabilities = OperationalSoftmax(self.id_map, len(taxonomy))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_candidate(cls, candidate: Candidate, zoo_dir: str | Path | None = None,
                       device: str | None = None, *, taxonomy: Taxonomy,
                       **kwargs: Any) -> TimmClassifier:
        """Load a candidate's weights: ``zoo:`` (sha256-checked against the manifest), a local
        checkpoint (checked against the candidate's ``sha256`` when given) or ``timm:<name>``
        (timm's pretrained weights from the hub: needs the network)."""
        from preflight.models.zoo import resolve_weights

        if candidate.family != cls.family:
            raise ModelError(f"candidate {candidate.name!r} is family {candidate.family!r}, "
                             f"not {cls.family!r}")
        if candidate.weights.startswith(HUB_PREFIX):
            clf = cls.from_hub(candidate.weights, name=candidate.name,
                               input_size=candidate.input_size, class_map=candidate.class_map,
                               device=device, taxonomy=taxonomy, **kwargs)
        else:
            resolved = resolve_weights(candidate, zoo_dir)
            ckpt = load_checkpoint(resolved.path)
            if candidate.arch and candidate.arch != ckpt["model_name"]:
                log.warning("candidate %r: arch %r but the checkpoint is a %r; using the "
                            "checkpoint", candidate.name, candidate.arch, ckpt["model_name"])
            clf = cls(model_from_checkpoint(ckpt, resolved.path), name=candidate.name,
                      model_name=str(ckpt["model_name"]), class_names=list(ckpt["class_names"]),
                      input_size=candidate.input_size, class_map=candidate.class_map,
                      weights=resolved.path, taxonomy=taxonomy, device=device,
                      sha256=resolved.sha256, weights_source=resolved.source,
                      mean=ckpt.get("mean"), std=ckpt.get("std"), **kwargs)
        clf.default_freeze = candidate.freeze or "none"
        return clf

    @classmethod
    def from_hub(cls, weights: str, *, name: str | None = None, input_size: int | None = None,
                 class_map: dict[str, str] | None = None, device: str | None = None,
                 taxonomy: Taxonomy, **kwargs: Any) -> TimmClassifier:
        """timm's pretrained weights for ``timm:<model name>`` (downloads: needs the network).
        ``input_size=None``: the model's pretraining size."""
        hub_name = weights[len(HUB_PREFIX):] if weights.startswith(HUB_PREFIX) else weights
        log.warning("downloading timm weights %r (needs the network)", hub_name)
        model = create_timm_model(hub_name, pretrained=True)
        size = input_size or int(model.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
        return cls(model, name=name or hub_name, model_name=hub_name,
                   class_names=hub_class_names(model), input_size=size, class_map=class_map,
                   weights=HUB_PREFIX + hub_name, taxonomy=taxonomy, device=device,
                   weights_source="hub", **kwargs)

    @classmethod
    def from_weights(cls, weights: str | Path, *, name: str | None = None,
                     input_size: int | None = None, class_map: dict[str, str] | None = None,
                     device: str | None = None, taxonomy: Taxonomy,
                     **kwargs: Any) -> TimmClassifier:
        """Load a checkpoint the caller names (e.g. a fine-tuned ``best.pt``). ``class_map=None``:
        the model's class names are operational names; ``input_size=None``: the checkpoint's."""
        path = Path(weights)
        ckpt = load_checkpoint(path)
        return cls(model_from_checkpoint(ckpt, str(path)), name=name or path.stem,
                   model_name=str(ckpt["model_name"]), class_names=list(ckpt["class_names"]),
                   input_size=int(input_size or ckpt["input_size"]), class_map=class_map,
                   weights=str(path), taxonomy=taxonomy, device=device,
                   mean=ckpt.get("mean"), std=ckpt.get("std"), **kwargs)

    # ------------------------------------------------------------------ inference
    def _batches(self, images: list[np.ndarray]):
        import torch

        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        frames = [check_rgb_frame(im, i) for i, im in enumerate(images)]
        for start in range(0, len(frames), self.batch_size):
            x = preprocess(frames[start:start + self.batch_size], self.input_size, self.mean,
                           self.std)
            yield torch.from_numpy(x).to(self.device)

    def logits(self, images: list[np.ndarray]) -> np.ndarray:
        """Raw model logits ``(n, num_model_classes)``."""
        import torch

        rows = []
        with torch.inference_mode():
            for x in self._batches(images):
                rows.append(self.model(x).float().cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, len(self.class_names)))

    def predict(self, images: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 images -> probabilities ``(n, K)`` over the operational taxonomy (softmax
        over the mapped model classes; unmapped operational classes 0; rows sum to 1)."""
        return self._probabilities(self.logits(images))

    __call__ = predict

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """Pooled pre-logits features ``(n, d)`` (``forward_features`` then
        ``forward_head(pre_logits=True)``): the model's view of the input, for embedding drift."""
        import torch

        rows = []
        with torch.inference_mode():
            for x in self._batches(images):
                feats = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
                rows.append(feats.reshape(len(feats), -1).float().cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 0))

    @property
    def num_parameters(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))

    @property
    def predict_fn(self):
        """``predict_fn(list_of_rgb_images)`` for ``preflight.latency`` (pre-processing, model
        and softmax included; results are copied to host memory, so CUDA work is complete)."""
        return self.predict

    def latency_spec(self) -> tuple[str, dict[str, Any]]:
        """``(factory, kwargs)`` for ``preflight.latency.ModelSpec`` (cold-start measurement)."""
        return latency_spec_of(self, PREDICT_FN_FACTORY)

    # ------------------------------------------------------------------ training / export
    def train(self, data, out_dir: str | Path, **kwargs: Any) -> TrainResult:
        """Fine-tune from these weights on a classification sample (see
        :func:`preflight.models.timm_training.train_classifier`; ``kwargs`` are
        :class:`~preflight.models.timm_training.ClassifierTraining` fields plus ``taxonomy``,
        ``val_data`` and ``on_epoch_end``; ``freeze`` defaults to the candidate's). The fine-tuned model speaks the operational taxonomy (``classes`` defaults
        to it); load it with :meth:`from_weights`."""
        from preflight.models.timm_training import ClassifierTraining, train_classifier

        taxonomy = kwargs.pop("taxonomy", self.taxonomy)
        run = {k: kwargs.pop(k) for k in ("val_data", "on_epoch_end") if k in kwargs}
        defaults = {"input_size": self.input_size, "freeze": self.default_freeze,
                    "device": self.device}
        if self.weights_source == "hub":
            defaults["init_classes"] = self.class_names
        return train_classifier(self.weights, data, out_dir,
                                ClassifierTraining(**{**defaults, **kwargs}), taxonomy=taxonomy,
                                **run)

    def export(self, out_dir: str | Path, *, format: str = "torchscript") -> Path:
        """Write a deployable artefact (``torchscript``: a traced module taking a normalised
        ``(n, 3, S, S)`` tensor, returning model logits). Returns its path."""
        import torch

        if format != "torchscript":
            raise ModelError(f"export format {format!r} is not supported for timm classifiers "
                             "(only 'torchscript'; Preflight never installs packages on its own)")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        example = torch.zeros(1, 3, self.input_size, self.input_size, device=self.device)
        with torch.inference_mode(), warnings.catch_warnings():
            # torch >= 2.10 marks jit deprecated; TorchScript still loads without Python/timm
            warnings.simplefilter("ignore", FutureWarning)
            traced = torch.jit.trace(self.model, example)
        target = out_dir / f"{self.name}.torchscript"
        traced.save(str(target))
        return target


def load_classifier(name: str, **options: Any) -> TimmClassifier:
    """The classifier for candidate ``name`` of the candidates file (``options``: those of
    :func:`preflight.models.base.load_candidate_model`: ``candidates_path``, ``zoo_dir``,
    ``device``, ``taxonomy``, and the adapter's own keywords)."""
    return load_candidate_model(TimmClassifier, name, **options)


def make_predict_fn(candidate: str | None = None, *, candidates_path: str | None = None,
                    zoo_dir: str | None = None, weights: str | None = None, name: str | None = None,
                    input_size: int | None = None, class_map: dict[str, str] | None = None,
                    device: str | None = None, sha256: str | None = None,
                    taxonomy: list[str] | None = None):
    """Factory for ``preflight.latency.ModelSpec``: a candidate by name, ``timm:<name>`` (timm's
    pretrained weights) or a checkpoint (verified against ``sha256`` when given; ``taxonomy``:
    the operational class names, default the settings'). Returns
    ``predict_fn(list_of_rgb_images)``."""
    if candidate is None and weights is not None and weights.startswith(HUB_PREFIX):
        return TimmClassifier.from_hub(weights, name=name, input_size=input_size,
                                       class_map=class_map, device=device,
                                       taxonomy=resolve_taxonomy(taxonomy)).predict_fn
    return predict_fn_of(TimmClassifier, candidate, candidates_path=candidates_path,
                         zoo_dir=zoo_dir, weights=weights, sha256=sha256, device=device,
                         taxonomy=taxonomy, name=name, input_size=input_size,
                         class_map=class_map)
