"""Train or fine-tune a timm classifier: a plain PyTorch loop, resumable, deterministic on CPU.

:func:`train_classifier` builds the zoo's classifier stand-ins (from scratch, ``pretrained=False``)
and fine-tunes candidates (from their checkpoint). AdamW, cosine learning rate per step (to 1% of
``lr``), cross-entropy. ``freeze``: ``head`` trains only the classifier layer; ``deeper`` also
the last ``deeper_groups`` parameter groups of timm's ``group_matcher`` (the last stages and the
head convolution); ``none`` trains everything. Frozen BatchNorm layers stay in eval mode, so their
running statistics do not drift either.

The label space is ``classes`` (default: the operational taxonomy). When the starting checkpoint
has other classes, the classifier layer is replaced and the rows of the classes both share are
copied over (a pre-trained class that is also an operational class keeps its learned row when
fine-tuning trains a head for the operational taxonomy).

Output in ``out_dir``: ``last.pt`` (model + optimizer + scheduler + epoch + history: resumable),
``best.pt`` (best held-out accuracy, ties to lower loss; the last epoch without validation) and
``history.csv`` (one row per epoch). ``resume`` (on by default) continues an interrupted run with the same
settings from its last finished epoch; a finished run with the same settings is returned as is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from preflight.data.filenames import fs_path
from preflight.data.ingest import hash_unit
from preflight.models.base import ModelError, TrainResult, sha256_file
from preflight.models.timm_model import (
    HUB_PREFIX,
    checkpoint_dict,
    create_timm_model,
    data_config,
    hub_class_names,
    load_checkpoint,
    model_from_checkpoint,
    preprocess,
    save_checkpoint,
)
from preflight.models.ultralytics_env import resolve_device
from preflight.taxonomy import Taxonomy

log = logging.getLogger(__name__)

FREEZE_MODES: tuple[str, ...] = ("head", "deeper", "none")
HISTORY_NAME = "history.csv"
MIN_LR_FRACTION = 0.01


# ------------------------------------------------------------------------------ data
def _samples(data: Any, taxonomy: Taxonomy) -> pd.DataFrame:
    """``path, label_name, group`` from an images table or a classification sample folder."""
    if isinstance(data, (str, Path)):
        from preflight.data.classification_sample import read_classification_sample

        data, quarantine = read_classification_sample(data, taxonomy)
        if len(quarantine):
            log.warning("%d file(s) of the training sample were quarantined", len(quarantine))
    if not isinstance(data, pd.DataFrame):
        raise ModelError(f"training data must be an images table or a sample folder, "
                         f"got {type(data).__name__}")
    if "path" not in data.columns or not {"label_name", "label"} & set(data.columns):
        raise ModelError("training data needs 'path' and 'label_name' (or 'label') columns")
    names = (data["label_name"].astype(str) if "label_name" in data.columns
             else data["label"].map(lambda i: taxonomy.name_of(int(i))))
    group = data["group_id"].astype(str) if "group_id" in data.columns else data["path"].astype(str)
    return pd.DataFrame({"path": data["path"].astype(str).to_numpy(),
                         "label_name": names.to_numpy(), "group": group.to_numpy()})


def _targets(samples: pd.DataFrame, classes: list[str], label_map: dict[str, str] | None
             ) -> tuple[pd.DataFrame, int]:
    """Target index per sample in ``classes`` (labels mapped through ``label_map``, operational ->
    model name); samples outside the label space are dropped (their count returned)."""
    index = {c: i for i, c in enumerate(classes)}
    mapped = samples["label_name"].map(lambda n: (label_map or {}).get(n, n))
    target = mapped.map(lambda n: index.get(n, -1)).astype(np.int64)
    keep = target >= 0
    return samples[keep].assign(target=target[keep]).reset_index(drop=True), int((~keep).sum())


def holdout_split(samples: pd.DataFrame, fraction: float, seed: int
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded, group-whole hold-out of about ``fraction`` of the samples (at least one group,
    never all of them)."""
    groups = sorted(samples["group"].unique(), key=lambda g: hash_unit(f"{seed}:{g}"))
    if fraction <= 0 or len(groups) < 2:
        return samples, samples.iloc[:0]
    sizes = samples["group"].value_counts()
    target, taken, val = fraction * len(samples), 0, set()
    for g in groups[:-1]:
        if taken and abs(taken + sizes[g] - target) >= abs(taken - target):
            break
        val.add(g)
        taken += int(sizes[g])
    is_val = samples["group"].isin(val)
    return samples[~is_val].reset_index(drop=True), samples[is_val].reset_index(drop=True)


def _read_rgb(path: str) -> np.ndarray:
    import cv2

    from preflight.data.filenames import read_image_bgr

    bgr = read_image_bgr(path)
    if bgr is None:
        raise ModelError(f"training image {path} cannot be decoded; read the sample with "
                         "preflight.data.classification_sample.read_classification_sample to quarantine it")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _fingerprint(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    for path, target in zip(frame["path"], frame["target"], strict=True):
        p = Path(fs_path(path))
        size = p.stat().st_size if p.is_file() else -1
        digest.update(f"{p.name}:{size}:{int(target)}\n".encode())
    return digest.hexdigest()


# ------------------------------------------------------------------------------ model
def _initial_model(init: str | Path, classes: list[str], init_classes: list[str] | None,
                   seed: int) -> tuple[Any, str, dict[str, Any], int | None, str]:
    """``(model, timm name, {mean, std}, checkpoint input size, init description)`` with the
    classifier layer already sized for ``classes``."""
    import torch

    torch.manual_seed(seed)
    text = str(init)
    if Path(text).is_file():
        ckpt = load_checkpoint(text)
        model = model_from_checkpoint(ckpt, text)
        old = list(ckpt["class_names"])
        norm = {"mean": ckpt.get("mean"), "std": ckpt.get("std")}
        size, name, desc = int(ckpt["input_size"]), str(ckpt["model_name"]), text
    elif text.startswith(HUB_PREFIX):
        name = text[len(HUB_PREFIX):]
        model = create_timm_model(name, pretrained=True)
        old = list(init_classes or hub_class_names(model))
        norm, size, desc = {}, None, text
    elif "/" in text or text.endswith((".pt", ".pth")):
        raise ModelError(f"initial weights {text} do not exist")
    else:  # a bare timm name: from scratch
        name = text
        model = create_timm_model(name, len(classes), pretrained=False)
        old, norm, size, desc = list(classes), {}, None, f"{name} (from scratch)"
    if old != list(classes):
        _replace_head(model, old, classes)
    if not norm.get("mean") or not norm.get("std"):
        norm = data_config(model)
    return model, name, {"mean": list(norm["mean"]), "std": list(norm["std"])}, size, desc


def _replace_head(model, old: list[str], new: list[str]) -> None:
    """A fresh classifier layer for ``new`` classes, keeping the rows of classes in both."""
    import torch

    head = model.get_classifier()
    weight = getattr(head, "weight", None)
    saved = (weight.detach().clone(), head.bias.detach().clone()
             if getattr(head, "bias", None) is not None else None) if weight is not None else None
    model.reset_classifier(len(new))
    fresh = model.get_classifier()
    if saved is None or getattr(fresh, "weight", None) is None:
        return
    if fresh.weight.shape[1:] != saved[0].shape[1:]:
        return
    with torch.no_grad():
        for j, name in enumerate(new):
            if name in old:
                i = old.index(name)
                fresh.weight[j] = saved[0][i]
                if saved[1] is not None and fresh.bias is not None:
                    fresh.bias[j] = saved[1][i]


def trainable_parameter_names(model, freeze: str, deeper_groups: int = 3) -> set[str]:
    """Names of the parameters ``freeze`` leaves trainable (see the module doc)."""
    names = [n for n, _ in model.named_parameters()]
    if freeze == "none":
        return set(names)
    head = model.get_classifier()
    head_ids = {id(p) for p in head.parameters()}
    keep = {n for n, p in model.named_parameters() if id(p) in head_ids}
    if freeze == "deeper":
        from timm.models import group_parameters

        groups = group_parameters(model, model.group_matcher(coarse=True))
        for gid in list(groups)[-max(1, int(deeper_groups)):]:
            keep.update(groups[gid])
    return keep


def _apply_freeze(model, trainable: set[str]) -> list:
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)
        if name in trainable:
            params.append(p)
    if not params:
        raise ModelError("freeze left no trainable parameters")
    return params


def _train_mode(model) -> None:
    """``model.train()``, but BatchNorm layers whose parameters are all frozen stay in eval."""
    from torch import nn

    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            ps = list(module.parameters(recurse=False))
            if ps and not any(p.requires_grad for p in ps):
                module.eval()


# ------------------------------------------------------------------------------ loop
def _result(out_dir: Path, seconds: float) -> TrainResult:
    last, best = out_dir / "last.pt", out_dir / "best.pt"
    if not last.is_file():
        raise ModelError(f"training in {out_dir} finished without writing {last}")
    ckpt = load_checkpoint(last)
    state = ckpt.get("train_state") or {}
    history = pd.DataFrame(state.get("history") or [])
    return TrainResult(checkpoint=best if best.is_file() else last, last_checkpoint=last,
                       metrics=dict(state.get("metrics") or {}), history=history,
                       seconds=seconds, epochs_run=len(history),
                       train_args=dict(state.get("train_args") or {}))


def _evaluate(model, images: list[np.ndarray], targets: np.ndarray, input_size: int,
              norm: dict[str, Any], device: str, batch: int) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F

    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            x = torch.from_numpy(preprocess(images[start:start + batch], input_size,
                                            norm["mean"], norm["std"])).to(device)
            y = torch.from_numpy(targets[start:start + batch]).to(device)
            logits = model(x).float()
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    n = max(1, len(images))
    return loss_sum / n, correct / n


def _train_epoch(model, optimizer, scheduler, images: list[np.ndarray], targets: np.ndarray, *,
                 batch: int, size: int, norm: dict[str, Any], device: str, compose,
                 desc: str | None, scaler=None) -> tuple[float, int]:
    """One pass over ``images`` in the given order; returns (summed loss, correct count).
    ``scaler``: a CUDA ``GradScaler``: the forward runs in mixed precision (autocast)."""
    import torch
    import torch.nn.functional as F

    _train_mode(model)
    loss_sum, correct = 0.0, 0
    batches = range(0, len(images), batch)
    if desc:
        from tqdm import tqdm

        batches = tqdm(batches, desc=desc, unit="batch")
    for start in batches:
        ims = images[start:start + batch]
        if compose is not None:
            ims = [compose(image=im)["image"] for im in ims]
        x = torch.from_numpy(preprocess(ims, size, norm["mean"], norm["std"])).to(device)
        y = torch.from_numpy(targets[start:start + batch]).to(device)
        with torch.autocast(device_type="cuda", dtype=torch.float16,
                            enabled=scaler is not None):
            logits = model(x).float()
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        loss_sum += float(loss.detach()) * len(ims)
        correct += int((logits.detach().argmax(1) == y).sum())
    return loss_sum, correct


@dataclass(frozen=True)
class ClassifierTraining:
    """How :func:`train_classifier` trains: the label space, the schedule and the run's knobs.

    ``classes``: the label space (default: the taxonomy's names); ``label_map`` maps operational
    label names to it (a zoo stand-in's inverse ``class_map``); ``init_classes``: the class names
    of a hub model's head (to copy the rows of shared classes). Without held-out ``val_data``,
    ``val_fraction`` of the groups (``group_id``) is held out (0: no validation). ``freeze`` is
    one of :data:`FREEZE_MODES` (``deeper_groups`` for ``deeper``). ``augment``: albumentations
    transforms applied to the uint8 image before resizing (seeded per epoch). ``input_size``
    (default: the checkpoint's, else 224). ``resume``: continue an interrupted run with the same
    settings. ``progress``: a progress bar per epoch.
    """

    classes: list[str] | None = None
    label_map: dict[str, str] | None = None
    init_classes: list[str] | None = None
    val_fraction: float = 0.15
    epochs: int = 10
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    freeze: str = "none"
    deeper_groups: int = 3
    augment: list | None = None
    input_size: int | None = None
    seed: int = 0
    device: str | None = None
    resume: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        if self.freeze not in FREEZE_MODES:
            raise ModelError(f"freeze must be one of {FREEZE_MODES}, got {self.freeze!r}")
        if self.epochs < 1 or self.batch < 1 or self.lr <= 0:
            raise ModelError(f"bad training settings: epochs={self.epochs}, batch={self.batch}, "
                             f"lr={self.lr}")


@dataclass
class _Run:
    """One training run's fixed pieces: what every epoch reads."""

    settings: ClassifierTraining
    out_dir: Path
    model: Any
    device: Any
    size: int
    norm: dict[str, Any]
    #: what the checkpoints record: the run's settings (a resume needs the same) and the model's
    train_args: dict[str, Any]
    meta: dict[str, Any]
    train_set: pd.DataFrame
    val_set: pd.DataFrame


def train_classifier(init: str | Path, data: Any, out_dir: str | Path,
                     settings: ClassifierTraining | None = None, *, taxonomy: Taxonomy,
                     val_data: Any = None,
                     on_epoch_end: Callable[[int, dict[str, float]], None] | None = None
                     ) -> TrainResult:
    """Train ``init`` -- a Preflight timm checkpoint, ``timm:<name>`` (pretrained hub weights) or a
    bare timm model name (from scratch) -- on ``data`` (an images table with ``path`` and
    ``label_name``/``label``, e.g. the ``finetune`` rows of ``read_classification_sample``, or a
    sample folder) as ``settings`` say (:class:`ClassifierTraining`); results in ``out_dir``
    (module doc). ``val_data``: held-out samples. ``on_epoch_end(epoch, row)`` is called after
    each epoch is saved.
    """
    settings = settings or ClassifierTraining()
    run = _prepare_run(init, data, Path(out_dir).resolve(), settings, taxonomy, val_data)
    t0 = time.perf_counter()
    state = _previous_state(run)
    if state is not None and int(state.get("epoch", 0)) >= settings.epochs:
        log.info("training in %s already finished with these settings; not retraining",
                 run.out_dir)
        return _result(run.out_dir, time.perf_counter() - t0)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    _fit(run, state, on_epoch_end)
    return _result(run.out_dir, time.perf_counter() - t0)


def _prepare_run(init: str | Path, data: Any, out_dir: Path, s: ClassifierTraining,
                 taxonomy: Taxonomy, val_data: Any) -> _Run:
    """The samples split and labelled, the initial model, and the settings a resume must match."""
    classes = list(s.classes or taxonomy.names)
    samples, dropped = _targets(_samples(data, taxonomy), classes, s.label_map)
    if val_data is not None:
        train_set = samples
        val_set, _ = _targets(_samples(val_data, taxonomy), classes, s.label_map)
    else:
        train_set, val_set = holdout_split(samples, s.val_fraction, s.seed)
    if not len(train_set):
        raise ModelError(f"no training samples in the label space {classes} "
                         f"({dropped} sample(s) outside it)")
    dev = resolve_device(s.device)
    model, model_name, norm, ckpt_size, init_desc = _initial_model(init, classes, s.init_classes,
                                                                   s.seed)
    size = int(s.input_size or ckpt_size or 224)
    if size < 32:
        raise ModelError(f"input_size must be at least 32, got {size}")
    train_args = {
        "init": init_desc, "init_sha256": sha256_file(init) if Path(str(init)).is_file() else None,
        "model_name": model_name, "classes": classes, "epochs": int(s.epochs),
        "batch": int(s.batch), "lr": float(s.lr), "weight_decay": float(s.weight_decay),
        "freeze": s.freeze, "deeper_groups": int(s.deeper_groups),
        "augment": [repr(t) for t in s.augment or []], "input_size": size, "seed": int(s.seed),
        "optimizer": "AdamW", "schedule": "cosine", "val_fraction": float(s.val_fraction),
        "train_fingerprint": _fingerprint(train_set), "val_fingerprint": _fingerprint(val_set),
        "train_samples": int(len(train_set)), "val_samples": int(len(val_set)),
        "dropped_samples": dropped}
    # mixed precision where the device allows it (CUDA); recorded only then, so CPU runs keep
    # their settings (and resume) as before
    if str(dev).startswith("cuda"):
        train_args["amp"] = True
    meta = {"model_name": model_name, "class_names": classes, "input_size": size, **norm}
    return _Run(s, out_dir, model, dev, size, norm, train_args, meta, train_set, val_set)


def _previous_state(run: _Run) -> dict[str, Any] | None:
    """The ``train_state`` of ``last.pt`` when it is a run with the same settings and ``resume``
    is on; otherwise None, and a previous run's files are removed (a fresh run starts)."""
    last = run.out_dir / "last.pt"
    if not last.is_file():
        return None
    try:
        previous = load_checkpoint(last).get("train_state") or {}
    except ModelError:
        previous = {}
    if run.settings.resume and previous.get("train_args") == run.train_args:
        return previous
    log.info("starting a fresh run in %s (previous run has other settings)", run.out_dir)
    for name in ("last.pt", "best.pt", HISTORY_NAME):
        (run.out_dir / name).unlink(missing_ok=True)
    return None


def _fit(run: _Run, state: dict[str, Any] | None,
         on_epoch_end: Callable[[int, dict[str, float]], None] | None) -> None:
    """The epochs from the first not yet run (``state``: the run to resume) to the last."""
    import torch

    s = run.settings
    params = _apply_freeze(run.model, trainable_parameter_names(run.model, s.freeze,
                                                                s.deeper_groups))
    run.model.to(run.device)
    optimizer = torch.optim.AdamW(params, lr=float(s.lr), weight_decay=float(s.weight_decay))
    scaler = torch.amp.GradScaler("cuda") if run.train_args.get("amp") else None
    steps_per_epoch = math.ceil(len(run.train_set) / s.batch)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, steps_per_epoch * s.epochs), eta_min=float(s.lr) * MIN_LR_FRACTION)
    start_epoch, history, best = 0, [], {"accuracy": -1.0, "loss": math.inf, "epoch": 0}
    if state is not None:
        run.model.load_state_dict(load_checkpoint(run.out_dir / "last.pt")["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history, best = int(state["epoch"]), list(state["history"]), dict(state["best"])
        log.info("resuming %s from epoch %d of %d", run.out_dir, start_epoch, s.epochs)
    train = ([_read_rgb(p) for p in run.train_set["path"]],
             np.array(run.train_set["target"], dtype=np.int64))  # writable: torch needs it
    val = ([_read_rgb(p) for p in run.val_set["path"]],
           np.array(run.val_set["target"], dtype=np.int64))
    for epoch in range(start_epoch, s.epochs):
        t_epoch = time.perf_counter()
        row = _epoch(run, optimizer, scheduler, scaler, epoch, train)
        improved = True
        if len(val[0]):
            v_loss, v_acc = _evaluate(run.model, *val, run.size, run.norm, run.device, s.batch)
            row.update({"val/loss": v_loss, "val/accuracy": v_acc})
            improved = (v_acc, -v_loss) > (best["accuracy"], -best["loss"])
            if improved:
                best = {"accuracy": v_acc, "loss": v_loss, "epoch": epoch + 1}
        row["seconds"] = time.perf_counter() - t_epoch
        history.append(row)
        _save_epoch(run, optimizer, scheduler, epoch + 1, history, best, improved)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)


def _epoch(run: _Run, optimizer, scheduler, scaler, epoch: int,
           train: tuple[list[np.ndarray], np.ndarray]) -> dict[str, float]:
    """One pass over the training samples in a seeded order; the epoch's training numbers."""
    import torch

    s = run.settings
    torch.manual_seed(s.seed * 1000 + epoch)  # dropout / stochastic depth, reproducible on resume
    images, targets = train
    order = np.random.default_rng([s.seed, epoch]).permutation(len(images))
    compose = None
    if s.augment:
        from preflight.environment import import_albumentations

        compose = import_albumentations().Compose(list(s.augment), seed=s.seed * 1000 + epoch)
    loss_sum, correct = _train_epoch(
        run.model, optimizer, scheduler, [images[i] for i in order], targets[order],
        batch=s.batch, size=run.size, norm=run.norm, device=run.device, compose=compose,
        desc=f"epoch {epoch + 1}/{s.epochs}" if s.progress else None, scaler=scaler)
    return {"epoch": epoch + 1, "train/loss": loss_sum / len(order),
            "train/accuracy": correct / len(order), "lr": float(scheduler.get_last_lr()[0])}


def _save_epoch(run: _Run, optimizer, scheduler, epoch: int, history: list[dict[str, float]],
                best: dict[str, float], improved: bool) -> None:
    """``best.pt`` when the epoch improved, ``last.pt`` (resumable) and ``history.csv``."""
    metrics = _metrics(history, best)
    if improved:
        save_checkpoint(checkpoint_dict(run.model, **run.meta, epoch=epoch, metrics=metrics,
                                        train_args=run.train_args), run.out_dir / "best.pt")
    save_checkpoint(checkpoint_dict(run.model, **run.meta, train_state={
        "epoch": epoch, "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "history": history, "best": best,
        "metrics": metrics, "train_args": run.train_args}), run.out_dir / "last.pt")
    pd.DataFrame(history).to_csv(run.out_dir / HISTORY_NAME, index=False)
    log.info("epoch %d/%d: %s", epoch, run.settings.epochs, json.dumps(
        {k: round(v, 4) for k, v in history[-1].items()}))


def _metrics(history: list[dict[str, float]], best: dict[str, float]) -> dict[str, float]:
    """The last epoch's held-out numbers plus the best epoch's (empty without validation)."""
    last = history[-1]
    if "val/accuracy" not in last:
        return {}
    return {"accuracy": float(last["val/accuracy"]), "loss": float(last["val/loss"]),
            "best_accuracy": float(best["accuracy"]), "best_epoch": float(best["epoch"])}
