"""Train or fine-tune an ultralytics detector, resumably; evaluate one on a YOLO dataset.

:func:`train_detector` is used both to build the demo zoo (from a model YAML) and later to
fine-tune a candidate (from its checkpoint). Runs are offline-safe (see ``ultralytics_env``):
``amp=False`` (ultralytics' AMP check downloads a model on CUDA), ``plots=False``, integrations
off. Output layout is ultralytics': ``out_dir/weights/{last,best}.pt``, ``out_dir/results.csv``,
``out_dir/args.yaml``.

Resume: when ``out_dir/weights/last.pt`` is an interrupted run (it still carries optimizer state
and its epoch is before the last), ``resume=True`` continues it from the next epoch. A finished
run with the same settings is not retrained: its result is returned as is.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preflight.models.base import ModelError, TrainResult
from preflight.models.ultralytics_env import (
    import_ultralytics,
    integrations_off,
    load_ultralytics_model,
    resolve_device,
    ultralytics_device,
    ultralytics_logging,
)
from preflight.progress import Progress

log = logging.getLogger(__name__)

#: Augmentation hyper-parameters ``DetectorTraining(augment=...)`` may override.
AUGMENT_KEYS = frozenset({
    "hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective", "flipud",
    "fliplr", "bgr", "mosaic", "mixup", "cutmix", "copy_paste", "erasing", "close_mosaic",
})
#: Optimisation-schedule hyper-parameters ``DetectorTraining.schedule`` may override: the
#: nominal batch (an optimizer step every ``nbs / batch`` batches), the warmup and the decay.
SCHEDULE_KEYS = frozenset({"nbs", "warmup_epochs", "warmup_bias_lr", "lrf", "cos_lr"})
#: Settings that must match for a finished run in ``out_dir`` to count as "this run".
_SAME_RUN_KEYS = ("data", "epochs", "imgsz", "batch", "seed", "freeze", "lr0", "optimizer",
                  *sorted(SCHEDULE_KEYS))


def _load_ckpt(path: Path) -> dict[str, Any]:
    import_ultralytics()
    from ultralytics.utils.patches import torch_load

    try:
        ckpt = torch_load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a usable checkpoint"
        raise ModelError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(ckpt, dict):
        raise ModelError(f"{path} is not an ultralytics checkpoint")
    return ckpt


def read_history(out_dir: str | Path):
    """Per-epoch rows of ``results.csv`` (column names stripped); empty frame if none."""
    import pandas as pd

    csv = Path(out_dir) / "results.csv"
    if not csv.is_file():
        return pd.DataFrame()
    frame = pd.read_csv(csv)
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def normalise_metrics(raw: dict[str, Any] | None) -> dict[str, float]:
    """ultralytics ``metrics/mAP50(B)``-style keys -> ``map50, map50_95, precision, recall``."""
    names = {"metrics/mAP50(B)": "map50", "metrics/mAP50-95(B)": "map50_95",
             "metrics/precision(B)": "precision", "metrics/recall(B)": "recall",
             "fitness": "fitness"}
    out: dict[str, float] = {}
    for key, value in (raw or {}).items():
        if key in names and value is not None:
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            if not math.isnan(value):
                out[names[key]] = value
    return out


def _run_state(last: Path, wanted: dict[str, Any]) -> str:
    """``resumable`` | ``finished`` (same settings) | ``stale`` (other settings or unreadable)."""
    try:
        ckpt = _load_ckpt(last)
    except ModelError:
        return "stale"
    args = ckpt.get("train_args") or {}
    epoch = int(ckpt.get("epoch", -1))  # a finished run's last.pt is stripped: epoch -1
    epochs = int(args.get("epochs", 0) or 0)
    if ckpt.get("optimizer") is not None and 0 <= epoch < epochs - 1:
        return "resumable"
    keys = [k for k in _SAME_RUN_KEYS if k in wanted]
    if wanted.get("optimizer") == "auto":  # ultralytics records the optimizer/lr it picked
        keys = [k for k in keys if k not in ("optimizer", "lr0")]
    same = all(str(args.get(k)) == str(wanted.get(k)) for k in keys)
    return "finished" if same else "stale"


def _clear_run(out_dir: Path) -> None:
    """Remove a previous run's ultralytics artefacts (results.csv would otherwise be appended)."""
    shutil.rmtree(out_dir / "weights", ignore_errors=True)
    for name in ("results.csv", "args.yaml"):
        (out_dir / name).unlink(missing_ok=True)


def _result(out_dir: Path, seconds: float) -> TrainResult:
    weights = out_dir / "weights"
    last, best = weights / "last.pt", weights / "best.pt"
    if not last.is_file():
        raise ModelError(f"training in {out_dir} finished without writing {last}")
    checkpoint = best if best.is_file() else last
    ckpt = _load_ckpt(checkpoint)
    history = read_history(out_dir)
    return TrainResult(checkpoint=checkpoint, last_checkpoint=last,
                       metrics=normalise_metrics(ckpt.get("train_metrics")), history=history,
                       seconds=seconds, epochs_run=len(history),
                       train_args=dict(ckpt.get("train_args") or {}))


@dataclass(frozen=True)
class DetectorTraining:
    """How :func:`train_detector` trains (ultralytics' own argument names where they exist).

    ``freeze``: number of leading layers to freeze (ultralytics' ``freeze``). ``lr0``: initial
    learning rate; with ``optimizer="auto"`` ultralytics ignores it, so giving ``lr0`` switches
    the optimizer to AdamW. ``augment``: augmentation hyper-parameters (:data:`AUGMENT_KEYS`).
    ``albumentations``: image-only albumentations transforms applied in ultralytics'
    augmentation pipeline (its ``augmentations`` argument). ``schedule``: ultralytics' schedule
    hyper-parameters (:data:`SCHEDULE_KEYS`; e.g. ``{"nbs": 8, "warmup_epochs": 1}``: an
    optimizer step every batch of 8 and one warmup epoch, for a from-scratch run that must learn
    in a few epochs). ``val=False`` validates only after
    the last epoch (ultralytics always does that). ``workers`` / ``amp``: data-loader worker
    processes and mixed precision; None picks them for the device (:func:`training_resources`:
    on CUDA workers and AMP, on a CPU in-process loading and full precision). ``resume``:
    continue an interrupted run with the same settings. ``progress``: ultralytics' own output.
    """

    epochs: int = 10
    imgsz: int = 320
    batch: int = 16
    freeze: int | None = None
    seed: int = 0
    device: str | None = None
    resume: bool = True
    augment: dict[str, Any] | None = None
    lr0: float | None = None
    optimizer: str = "auto"
    workers: int | None = None
    amp: bool | None = None
    val: bool = False
    progress: bool = True
    albumentations: list | None = None
    schedule: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch < 1 or self.imgsz < 32:
            raise ModelError(f"bad training settings: epochs={self.epochs}, batch={self.batch}, "
                             f"imgsz={self.imgsz}")
        unknown = sorted(set(self.augment or {}) - AUGMENT_KEYS)
        if unknown:
            raise ModelError(f"unknown augmentation key(s) {unknown}; allowed: "
                             f"{sorted(AUGMENT_KEYS)}")
        unknown = sorted(set(self.schedule or {}) - SCHEDULE_KEYS)
        if unknown:
            raise ModelError(f"unknown schedule key(s) {unknown}; allowed: "
                             f"{sorted(SCHEDULE_KEYS)}")

    def ultralytics_args(self, data_yaml: Path, out_dir: Path, device: str) -> dict[str, Any]:
        """The arguments of ultralytics' ``model.train`` for a fresh run on ``device`` (an
        ultralytics device string): deterministic (``seed``), no plots, results in ``out_dir``."""
        auto_workers, auto_amp = training_resources(device)
        args: dict[str, Any] = dict(
            data=str(data_yaml), epochs=int(self.epochs), imgsz=int(self.imgsz),
            batch=int(self.batch), seed=int(self.seed), deterministic=True,
            device=ultralytics_device(device),
            workers=auto_workers if self.workers is None else int(self.workers),
            amp=auto_amp if self.amp is None else bool(self.amp), plots=False, val=bool(self.val),
            save=True, exist_ok=True, project=str(out_dir.parent), name=out_dir.name,
            verbose=self.progress,
            optimizer="AdamW" if self.lr0 is not None and self.optimizer == "auto"
            else self.optimizer, **(self.augment or {}), **(self.schedule or {}))
        if self.lr0 is not None:
            args["lr0"] = float(self.lr0)
        if self.freeze:
            args["freeze"] = int(self.freeze)
        if self.albumentations:
            args["augmentations"] = list(self.albumentations)
        return args


def train_detector(weights_or_arch: str | Path, data_yaml: str | Path, out_dir: str | Path,
                   settings: DetectorTraining | None = None, *,
                   callbacks: dict[str, Callable[[Any], None]] | None = None,
                   report: Callable[[str], None] | None = None) -> TrainResult:
    """Train ``weights_or_arch`` (a .pt to fine-tune, a model YAML to train from scratch, or a hub
    name) on ``data_yaml`` as ``settings`` say (:class:`DetectorTraining`); results in
    ``out_dir``. ``callbacks``: ``{event: fn(trainer)}`` added to the run (e.g.
    ``on_fit_epoch_end``). ``report``: a line per epoch with the time left (a run log).
    """
    s = settings or DetectorTraining()
    out_dir = Path(out_dir).resolve()
    data_yaml = Path(data_yaml).resolve()
    if not data_yaml.is_file():
        raise ModelError(f"data file {data_yaml} does not exist")
    args = s.ultralytics_args(data_yaml, out_dir, resolve_device(s.device))
    callbacks = {**(callbacks or {})}
    if report is not None:
        for event, fn in epoch_progress(f"training {Path(weights_or_arch).name}", report).items():
            callbacks[event] = _chain(callbacks.get(event), fn)

    t0 = time.perf_counter()
    last = out_dir / "weights" / "last.pt"
    with integrations_off(), ultralytics_logging(s.progress):
        state = _run_state(last, args) if last.is_file() else "none"
        if state == "finished" and s.resume:
            log.info("training in %s already finished with these settings; not retraining", out_dir)
            return _result(out_dir, time.perf_counter() - t0)
        if state == "resumable" and s.resume:
            log.info("resuming the interrupted run in %s", out_dir)
            model = load_ultralytics_model(last)
            _add_callbacks(model, callbacks)
            model.train(resume=True, device=args["device"], workers=args["workers"], plots=False,
                        save_dir=str(out_dir))
        else:
            if state != "none":
                log.info("starting a fresh run in %s (previous run: %s)", out_dir, state)
                _clear_run(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            model = load_ultralytics_model(weights_or_arch)
            _add_callbacks(model, callbacks)
            try:
                model.train(**args)
            except FileNotFoundError as exc:
                raise ModelError(f"training {weights_or_arch} on {data_yaml} failed: {exc}") from exc
    return _result(out_dir, time.perf_counter() - t0)


def training_resources(device: str) -> tuple[int, bool]:
    """``(data-loader workers, mixed precision)`` for training on ``device``: on CUDA, worker
    processes (one per spare core, at most 8) and AMP; elsewhere in-process loading and full
    precision (CPU training stays deterministic and leaves the cores to the model)."""
    if str(device).startswith("cuda"):
        return max(1, min(8, (os.cpu_count() or 2) - 1)), True
    return 0, False


def epoch_progress(desc: str, report: Callable[[str], None]) -> dict[str, Callable[[Any], None]]:
    """Ultralytics callbacks giving ``report`` a line per epoch: epochs done / total, the time
    left (from the epochs run in this session; a resumed run counts from where it resumed)."""
    state: dict[str, Progress] = {}

    def start(trainer) -> None:
        first = int(getattr(trainer, "start_epoch", 0) or 0)
        state["p"] = Progress(int(trainer.epochs) - first, desc, unit="epochs", report=report,
                              every_s=0.0)

    def epoch_end(trainer) -> None:
        if "p" in state:
            state["p"].update(1)

    return {"on_train_start": start, "on_train_epoch_end": epoch_end}


def _chain(first: Callable[[Any], None] | None, second: Callable[[Any], None]
           ) -> Callable[[Any], None]:
    if first is None:
        return second

    def both(trainer) -> None:
        first(trainer)
        second(trainer)

    return both


def _add_callbacks(model, callbacks: dict[str, Callable[[Any], None]] | None) -> None:
    for event, fn in (callbacks or {}).items():
        model.add_callback(event, fn)


def evaluate_detector(weights: str | Path, data_yaml: str | Path, *, imgsz: int = 320,
                      split: str = "val", batch: int = 16, device: str | None = None,
                      out_dir: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
    """ultralytics ``val`` (plots off) -> ``map50, map50_95, precision, recall`` plus per-class
    AP50 under ``ap50_per_class`` (model class names). For quick zoo sanity checks; Preflight's
    own COCO-exact evaluation lives in ``preflight.metrics``."""
    import tempfile

    dev = ultralytics_device(resolve_device(device))
    with integrations_off(), ultralytics_logging(progress), \
            tempfile.TemporaryDirectory(prefix="preflight-val-") as tmp:
        model = load_ultralytics_model(weights)
        project = Path(out_dir) if out_dir else Path(tmp)
        metrics = model.val(data=str(data_yaml), imgsz=int(imgsz), split=split, batch=int(batch),
                            device=dev, plots=False, save_json=False, verbose=False,
                            workers=0, project=str(project), name="val", exist_ok=True)
        out: dict[str, Any] = normalise_metrics(metrics.results_dict)
        names = model.names
        per_class = {}
        for i, cls in enumerate(getattr(metrics.box, "ap_class_index", [])):
            per_class[str(names[int(cls)])] = float(metrics.box.ap50[i])
        out["ap50_per_class"] = per_class
    return out
