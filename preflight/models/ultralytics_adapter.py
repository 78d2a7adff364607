"""Ultralytics detectors (YOLOv8, RT-DETR, ...) behind Preflight's :class:`Detector` protocol.

Input frames are RGB ``uint8`` (Preflight's convention); ultralytics treats numpy input as BGR
(OpenCV order), so :meth:`UltralyticsDetector.predict` reverses the channels before handing the
frames over. Predictions come back in each frame's original pixel coordinates (ultralytics undoes
its letterbox), as top-left ``x, y, w, h``, with class ids translated to the operational taxonomy
through the candidate's ``class_map``; only mapped model classes are kept (filtered before NMS).

Defaults follow COCO-style evaluation: ``conf=0.001``, ``max_det=100``, NMS IoU 0.7, fp32.
Every frame is letterboxed to a square ``input_size`` (``rect=False``; ultralytics' own default
pads same-shaped batches only to a stride multiple), so a frame's predictions do not depend on
which frames share its batch, and batch-1 latency measures what a fixed-shape export would do.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from preflight.models.base import (
    PRED_COLUMNS,
    CheckpointFacts,
    ModelError,
    TrainResult,
    check_rgb_frame,
    empty_predictions,
    latency_spec_of,
    load_candidate_model,
    operational_id_map,
    predict_fn_of,
)
from preflight.models.candidates import Candidate
from preflight.models.ultralytics_env import (
    import_ultralytics,
    load_ultralytics_model,
    resolve_device,
    ultralytics_device,
)
from preflight.taxonomy import Taxonomy

log = logging.getLogger(__name__)

PREDICT_FN_FACTORY = "preflight.models.ultralytics_adapter:make_predict_fn"


class UltralyticsDetector:
    """One loaded ultralytics model plus its mapping onto the operational taxonomy."""

    family = "ultralytics"

    def __init__(self, model: Any, *, name: str, input_size: int, class_map: dict[str, str] | None,
                 weights: str, taxonomy: Taxonomy, device: str | None = None,
                 conf: float = 0.001, iou: float = 0.7, max_det: int = 100, batch_size: int = 16,
                 sha256: str | None = None, weights_source: str = "local") -> None:
        self.model = model
        self.name = name
        self.input_size = int(input_size)
        self.weights = weights
        self.sha256 = sha256
        self.weights_source = weights_source
        self.taxonomy = taxonomy
        self.device = resolve_device(device)
        self.conf, self.iou, self.max_det = float(conf), float(iou), int(max_det)
        self.batch_size = max(1, int(batch_size))
        names = {int(k): str(v) for k, v in dict(model.names).items()}
        if class_map is None:  # model already speaks the operational taxonomy (e.g. fine-tuned)
            class_map = {n: n for n in names.values() if n in taxonomy.names}
        #: model class id -> operational class id (mapped classes only)
        self.id_map = operational_id_map(name, names, class_map, taxonomy,
                                         listed=sorted(names.values()))
        self.class_map = dict(class_map)
        self.model_names = names
        self._lut = np.full(max(names) + 1, -1, dtype=np.int64)
        for model_id, op_id in self.id_map.items():
            self._lut[model_id] = op_id

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_candidate(cls, candidate: Candidate, zoo_dir: str | Path | None = None,
                       device: str | None = None, *, taxonomy: Taxonomy,
                       **kwargs: Any) -> UltralyticsDetector:
        """Load a candidate's weights (zoo: sha256-checked against the manifest)."""
        from preflight.models.zoo import resolve_weights

        if candidate.family != cls.family:
            raise ModelError(f"candidate {candidate.name!r} is family {candidate.family!r}, "
                             f"not {cls.family!r}")
        resolved = resolve_weights(candidate, zoo_dir)
        model = _load(resolved.path)
        return cls(model, name=candidate.name, input_size=candidate.input_size,
                   class_map=candidate.class_map, weights=resolved.path, taxonomy=taxonomy,
                   device=device, sha256=resolved.sha256, weights_source=resolved.source, **kwargs)

    @classmethod
    def from_weights(cls, weights: str | Path, *, name: str | None = None, input_size: int = 320,
                     class_map: dict[str, str] | None = None, device: str | None = None,
                     taxonomy: Taxonomy, **kwargs: Any) -> UltralyticsDetector:
        """Load a checkpoint the caller names (e.g. a fine-tuned ``best.pt``). ``class_map=None``:
        the model's class names are operational class names (unknown ones are dropped)."""
        path = Path(weights)
        if not path.is_file():
            raise ModelError(f"weights file {path} does not exist")
        model = _load(str(path))
        return cls(model, name=name or path.stem, input_size=input_size, class_map=class_map,
                   weights=str(path), taxonomy=taxonomy, device=device, **kwargs)

    # ------------------------------------------------------------------ inference
    def _predict_args(self) -> dict[str, Any]:
        return dict(imgsz=self.input_size, conf=self.conf, iou=self.iou, max_det=self.max_det,
                    classes=sorted(self.id_map), device=ultralytics_device(self.device),
                    rect=False, verbose=False, save=False)

    def predict(self, images: list[np.ndarray]):
        """RGB uint8 frames -> one DataFrame (class_id, score, x, y, w, h) per frame."""
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        frames = [check_rgb_frame(im, i) for i, im in enumerate(images)]
        out = []
        for start in range(0, len(frames), self.batch_size):
            chunk = [np.ascontiguousarray(f[..., ::-1]) for f in frames[start:start + self.batch_size]]
            results = self.model.predict(chunk, stream=False, **self._predict_args())
            out.extend(self._to_frame(r) for r in results)
        return out

    __call__ = predict

    def predict_stages(self) -> UltralyticsStages:
        """:meth:`predict` cut into its three stages, for a loop that overlaps them across
        batches (:func:`preflight.evaluation.predict_images`): same predictions, frame for
        frame."""
        predictor = self.model.predictor
        args = self._predict_args()
        current = None if predictor is None else predictor.args
        # what predict() would run with: our arguments, and no embedding / TTA left over from
        # an earlier embed() or another caller's settings
        wanted = {**{k: v for k, v in args.items() if k not in ("device", "verbose", "save")},
                  "embed": None, "augment": False, "visualize": False}
        if current is None or any(getattr(current, k, None) != v for k, v in wanted.items()):
            # (re)configure ultralytics' predictor exactly as predict() would, on one blank frame
            blank = np.zeros((self.input_size, self.input_size, 3), np.uint8)
            self.model.predict([blank], stream=False, **args)
        return UltralyticsStages(self, self.model.predictor)

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """Pooled backbone features ``(n, d)`` of RGB frames (ultralytics' ``embed``: the
        second-to-last layer, global-average-pooled) -- the model's view of the input, for
        embedding drift."""
        frames = [check_rgb_frame(im, i) for i, im in enumerate(images)]
        rows = []
        for start in range(0, len(frames), self.batch_size):
            chunk = [np.ascontiguousarray(f[..., ::-1]) for f in frames[start:start + self.batch_size]]
            out = self.model.embed(chunk, imgsz=self.input_size, device=ultralytics_device(
                self.device), rect=False, verbose=False)
            rows.extend(t.detach().float().cpu().numpy().reshape(-1) for t in out)
        return np.stack(rows) if rows else np.zeros((0, 0))

    @property
    def num_parameters(self) -> int:
        """Weights in the network (ultralytics' ``DetectionModel`` inside the ``YOLO`` wrapper)."""
        return int(sum(p.numel() for p in self.model.model.parameters()))

    @property
    def predict_fn(self):
        """``predict_fn(list_of_rgb_frames)`` for ``preflight.latency`` (pre-processing, model and
        NMS included; results are copied to host memory, so CUDA work is complete on return)."""
        return self.predict

    def latency_spec(self) -> tuple[str, dict[str, Any]]:
        """``(factory, kwargs)`` for ``preflight.latency.ModelSpec`` (cold-start measurement)."""
        return latency_spec_of(self, PREDICT_FN_FACTORY)

    def _to_array(self, result) -> np.ndarray:
        """One frame's Results as an ``(n, 6)`` float64 array in ``PRED_COLUMNS`` order (model
        classes mapped to operational ids, unmapped dropped), by descending score (stable)."""
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return np.zeros((0, len(PRED_COLUMNS)))
        data = boxes.data.detach().cpu().numpy().astype(np.float64)  # x1 y1 x2 y2 [id] conf cls
        op_ids = self._lut[np.clip(data[:, -1].astype(np.int64), 0, len(self._lut) - 1)]
        keep = op_ids >= 0
        data, op_ids = data[keep], op_ids[keep]
        out = np.column_stack([op_ids, data[:, -2], data[:, 0], data[:, 1],
                               data[:, 2] - data[:, 0], data[:, 3] - data[:, 1]])
        return out[np.argsort(-out[:, 1], kind="stable")]

    def _to_frame(self, result):
        import pandas as pd

        rows = self._to_array(result)
        if not len(rows):
            return empty_predictions()
        frame = pd.DataFrame(rows, columns=list(PRED_COLUMNS))
        frame["class_id"] = frame["class_id"].astype(np.int64)
        return frame

    # ------------------------------------------------------------------ training / export
    def train(self, data_yaml: str | Path, out_dir: str | Path, **kwargs: Any) -> TrainResult:
        """Fine-tune from these weights (see :func:`preflight.models.training.train_detector`;
        ``kwargs`` are :class:`~preflight.models.training.DetectorTraining` fields plus
        ``callbacks`` and ``report``; ``imgsz`` and ``device`` default to this detector's)."""
        from preflight.models.training import DetectorTraining, train_detector

        run = {k: kwargs.pop(k) for k in ("callbacks", "report") if k in kwargs}
        settings = DetectorTraining(**{"imgsz": self.input_size, "device": self.device, **kwargs})
        return train_detector(self.weights, data_yaml, out_dir, settings, **run)

    def export(self, out_dir: str | Path, *, format: str = "torchscript") -> Path:
        """Export the weights (``torchscript`` needs nothing extra; ``onnx`` needs the onnx
        package, which is never auto-installed). Returns the artefact's path in ``out_dir``."""
        import importlib.util
        import shutil
        import tempfile

        from preflight.models.ultralytics_env import integrations_off

        needs = {"onnx": "onnx", "openvino": "openvino", "engine": "tensorrt"}
        if format in needs and importlib.util.find_spec(needs[format]) is None:
            raise ModelError(f"export to {format} needs the '{needs[format]}' package, which is "
                             "not installed (Preflight never installs packages on its own)")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="preflight-export-") as tmp, integrations_off():
            src = Path(tmp) / f"{self.name}.pt"
            shutil.copyfile(self.weights, src)
            model = _load(str(src))
            produced = Path(model.export(format=format, imgsz=self.input_size, device="cpu",
                                         half=False, verbose=False))
            target = out_dir / produced.name
            if produced.is_dir():
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(produced, target)
            else:
                shutil.copyfile(produced, target)
        return target


class UltralyticsStages:
    """``prepare`` (frame checks, letterbox, tensor: host work), ``infer`` (the forward) and
    ``finish`` (NMS or RT-DETR's decoding, boxes back to original pixels, taxonomy mapping).

    ``prepare`` and ``finish`` may run on other threads than ``infer`` (one thread per stage):
    each enters ``torch.inference_mode`` itself, and only ``finish`` touches the predictor's
    per-batch state.
    """

    def __init__(self, detector: UltralyticsDetector, predictor: Any) -> None:
        self.detector = detector
        self.predictor = predictor

    def prepare(self, images: list[np.ndarray]) -> tuple[Any, list[np.ndarray]]:
        import torch

        frames = [check_rgb_frame(im, i) for i, im in enumerate(images)]
        p = self.predictor
        with torch.inference_mode():
            # ultralytics' preprocess on BGR frames is letterbox -> stack -> BCHW -> flip to RGB;
            # the letterbox pads every channel alike, so letterboxing the RGB frames and not
            # flipping gives the same tensor without two channel reversals.
            boxed = p.pre_transform(frames)
            x = torch.from_numpy(np.stack(boxed)).to(p.device).permute(0, 3, 1, 2).contiguous()
            x = (x.half() if p.model.fp16 else x.float()).div_(255)
        return x, frames

    def infer(self, prepared: tuple[Any, list[np.ndarray]]) -> Any:
        import torch

        with torch.inference_mode():
            return self.predictor.inference(prepared[0])

    def finish(self, raw: Any, prepared: tuple[Any, list[np.ndarray]]) -> list[np.ndarray]:
        """One ``(n, 6)`` array per frame in ``PRED_COLUMNS`` order (what :meth:`predict`'s
        frames hold, without building a DataFrame per frame)."""
        import torch

        x, frames = prepared
        bgr_views = [f[..., ::-1] for f in frames]   # Results keep the frame; only shape is read
        p = self.predictor
        with torch.inference_mode():
            p.batch = ([""] * len(frames), bgr_views, "")
            results = p.postprocess(raw, x, bgr_views)
        return [self.detector._to_array(r) for r in results]


def inspect_checkpoint(path: str | Path) -> CheckpointFacts | None:
    """An ultralytics ``.pt``'s class names (``model.names``) and training ``imgsz`` (640 when
    not recorded), for ``preflight init``; None when ``path`` is not such a checkpoint."""
    import torch

    try:
        raw = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - unreadable here means "not an ultralytics checkpoint"
        return None
    names = getattr(raw.get("model") if isinstance(raw, dict) else None, "names", None)
    if names is None:
        return None
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    args = raw.get("train_args") or {}
    size = args.get("imgsz") if isinstance(args, dict) else None
    return CheckpointFacts(tuple(map(str, names)), int(size) if isinstance(size, int) else 640)


def _load(source: str):
    import_ultralytics()
    try:
        return load_ultralytics_model(source)
    except Exception as exc:  # noqa: BLE001 - wrap ultralytics' many failure types
        raise ModelError(f"cannot load ultralytics weights {source!r}: {exc}") from exc


def load_detector(name: str, **options: Any) -> UltralyticsDetector:
    """The detector for candidate ``name`` of the candidates file (``options``: those of
    :func:`preflight.models.base.load_candidate_model`: ``candidates_path``, ``zoo_dir``,
    ``device``, ``taxonomy``, and the adapter's own keywords)."""
    return load_candidate_model(UltralyticsDetector, name, **options)


def make_predict_fn(candidate: str | None = None, *, candidates_path: str | None = None,
                    zoo_dir: str | None = None, weights: str | None = None, name: str | None = None,
                    input_size: int = 320, class_map: dict[str, str] | None = None,
                    device: str | None = None, sha256: str | None = None,
                    taxonomy: list[str] | None = None):
    """Factory for ``preflight.latency.ModelSpec``: a candidate by name, or a weights file
    (verified against ``sha256`` when given; ``taxonomy``: the operational class names, default
    the settings'). Returns ``predict_fn(list_of_rgb_frames)``."""
    return predict_fn_of(UltralyticsDetector, candidate, candidates_path=candidates_path,
                         zoo_dir=zoo_dir, weights=weights, sha256=sha256, device=device,
                         taxonomy=taxonomy, name=name, input_size=input_size,
                         class_map=class_map)
