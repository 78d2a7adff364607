"""timm networks and Preflight's timm checkpoints: create, save, load, pre-process.

The building blocks both the classifier adapter (:mod:`preflight.models.timm_adapter`) and its
training loop (:mod:`preflight.models.timm_training`) use; neither module is imported here.

Pre-processing is the same in training and inference: resize to ``input_size`` square (the crops
are square already; no centre crop, which would cut object borders), scale to [0, 1], normalise
with the model's ``timm.data.resolve_data_config`` mean/std (recorded in the checkpoint).

Checkpoints (``torch.save``, read back with ``weights_only=True``) are a plain dict:
``format``, ``model_name`` (the timm name), ``num_classes``, ``class_names``, ``input_size``,
``mean``, ``std``, ``state_dict`` -- plus ``train_state`` (optimizer, scheduler, epoch, history)
in a resumable ``last.pt``. Loading rebuilds ``timm.create_model(name, pretrained=False,
num_classes=...)``: nothing is downloaded. Weights ``timm:<name>`` in a candidate are the only way
to reach the hub (timm's pretrained ImageNet weights, whose class names are ImageNet's
descriptions such as ``carton`` or ``crate``); the demo never names them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from preflight.models.base import ModelError

CHECKPOINT_FORMAT = "preflight.timm-classifier/1"
HUB_PREFIX = "timm:"
_CKPT_KEYS = ("model_name", "num_classes", "class_names", "input_size", "state_dict")


# ------------------------------------------------------------------------------ model + checkpoint
def create_timm_model(model_name: str, num_classes: int | None = None, *,
                      pretrained: bool = False):
    """``timm.create_model`` with a clear error for an unknown name (``pretrained`` downloads)."""
    import timm

    if not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name.split('.')[0][:12]}*")[:8]
        raise ModelError(f"{model_name!r} is not a timm model name (timm {timm.__version__}); "
                         f"similar: {close}")
    kwargs = {} if num_classes is None else {"num_classes": int(num_classes)}
    try:
        return timm.create_model(model_name, pretrained=pretrained, **kwargs)
    except Exception as exc:  # noqa: BLE001 - hub/network/config failures, one message
        raise ModelError(f"cannot create timm model {model_name!r} (pretrained={pretrained}): "
                         f"{exc}") from exc


def hub_class_names(model) -> list[str]:
    """Class names of a pretrained timm head: ImageNet descriptions (``carton``, ``crate``);
    a repeated description gets its synset appended."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(model)
    n = int(model.num_classes)
    if subset is None:
        return [f"class_{i}" for i in range(n)]
    info = ImageNetInfo(subset)
    names = [info.index_to_description(i) for i in range(n)]
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    return [f"{d} ({info.index_to_label_name(i)})" if seen[d] > 1 else d
            for i, d in enumerate(names)]


def data_config(model) -> dict[str, Any]:
    """mean / std / interpolation from ``timm.data.resolve_data_config``."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    return {"mean": [float(v) for v in cfg["mean"]], "std": [float(v) for v in cfg["std"]],
            "interpolation": str(cfg.get("interpolation", "bilinear"))}


def checkpoint_dict(model, *, model_name: str, class_names: list[str], input_size: int,
                    mean: list[float], std: list[float], **extra: Any) -> dict[str, Any]:
    """The checkpoint dict of a model (tensors moved to CPU)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"format": CHECKPOINT_FORMAT, "model_name": model_name,
            "num_classes": len(class_names), "class_names": list(class_names),
            "input_size": int(input_size), "mean": list(mean), "std": list(std),
            "state_dict": state, **extra}


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` atomically (temp file + rename: an interrupted save never leaves half a
    checkpoint behind)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Preflight timm checkpoint (``weights_only=True``: no code is unpickled)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a usable checkpoint"
        raise ModelError(f"cannot read timm checkpoint {path}: {exc}") from exc
    missing = [k for k in _CKPT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ModelError(f"{path} is not a Preflight timm checkpoint (missing {missing}); "
                         "train or build it with Preflight, or name timm:<model> for hub weights")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint"):
    """Rebuild the network of a checkpoint (``pretrained=False``) and load its weights."""
    model = create_timm_model(str(ckpt["model_name"]), int(ckpt["num_classes"]))
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{source}: weights do not fit {ckpt['model_name']} with "
                         f"{ckpt['num_classes']} classes: {exc}") from exc
    return model


def preprocess(images: list[np.ndarray], input_size: int, mean, std) -> np.ndarray:
    """RGB uint8 images -> float32 ``(n, 3, S, S)``: resize (area when shrinking), [0, 1],
    ``(x - mean) / std``."""
    import cv2

    size = int(input_size)
    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    m = np.asarray(mean, dtype=np.float32).reshape(1, 1, 3)
    s = np.asarray(std, dtype=np.float32).reshape(1, 1, 3)
    for i, im in enumerate(images):
        if im.shape[0] != size or im.shape[1] != size:
            interp = cv2.INTER_AREA if max(im.shape[:2]) > size else cv2.INTER_LINEAR
            im = cv2.resize(im, (size, size), interpolation=interp)
        out[i] = ((im.astype(np.float32) / 255.0 - m) / s).transpose(2, 0, 1)
    return out
