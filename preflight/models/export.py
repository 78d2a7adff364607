"""Deployable artefacts of a candidate: ONNX (FP32), INT8 ONNX (post-training static
quantisation) and OpenVINO IR, each with a sidecar that says how to run it.

What ships is what gets validated: every artefact written here is loaded by
:mod:`preflight.models.exported` with the *same* pre- and post-processing as its source model
(letterbox, NMS settings and class map for detectors; resize and mean/std for classifiers),
read from the sidecar ``<artefact>.preflight.json`` -- never from the artefact's own metadata,
which quantisers and converters do not all keep.

* Detectors (ultralytics, NMS-decoded heads such as YOLOv8) export through ultralytics' own
  exporter (offline; graph simplification off, so ``onnxslim`` is not needed); timm classifiers
  through ``torch.onnx`` (TorchScript-based exporter). RT-DETR-style heads decode without NMS and
  are refused with a reason.
* INT8 is ONNX Runtime's ``quantize_static`` (QDQ, MinMax calibration: no randomness) calibrated
  on frames of the *fine-tuning pool*, chosen by a seeded draw: the same seed, frames and model
  give the same bytes. Only Conv/MatMul/Gemm are quantised: a detection head concatenates boxes
  (pixels) and class scores (0-1) into one tensor that a single INT8 scale cannot carry.
* OpenVINO IR is ``openvino.convert_model`` of the ONNX file (FP32 weights kept; a QDQ INT8 ONNX
  becomes an INT8 IR).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from preflight.models.base import ModelError, check_rgb_frame

log = logging.getLogger(__name__)

#: (runtime format, precision) pairs Preflight can produce; ``onnx`` runs on ONNX Runtime,
#: ``openvino`` on the OpenVINO runtime.
FORMATS: tuple[str, ...] = ("onnx", "openvino")
PRECISIONS: tuple[str, ...] = ("fp32", "int8")
#: the model family (adapter) that runs each format
RUNTIME_OF_FORMAT: dict[str, str] = {"onnx": "onnxruntime", "openvino": "openvino"}
SIDECAR_SUFFIX = ".preflight.json"
#: ONNX operators INT8 quantisation touches (the rest, head included, stays float)
QUANTIZED_OPS: tuple[str, ...] = ("Conv", "MatMul", "Gemm")


@dataclass(frozen=True)
class ExportSpec:
    """One artefact to produce: ``format`` x ``precision`` (``onnx``/``openvino`` x
    ``fp32``/``int8``)."""

    format: str
    precision: str

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ModelError(f"export format {self.format!r} not supported; known: {list(FORMATS)}")
        if self.precision not in PRECISIONS:
            raise ModelError(f"precision {self.precision!r} not supported; known: "
                             f"{list(PRECISIONS)}")

    @property
    def label(self) -> str:
        """``onnx_int8`` -- the asset / file name part."""
        return f"{self.format}_{self.precision}"

    @property
    def runtime(self) -> str:
        return RUNTIME_OF_FORMAT[self.format]

    def describe(self) -> str:
        """``INT8 ONNX`` -- for the verdict sentence."""
        return f"{self.precision.upper()} {'ONNX' if self.format == 'onnx' else 'OpenVINO'}"


def parse_spec(label: str) -> ExportSpec:
    """``"onnx_int8"`` -> ``ExportSpec("onnx", "int8")`` (a clear error otherwise)."""
    fmt, _, precision = str(label).partition("_")
    if not precision:
        raise ModelError(f"export {label!r}: expected <format>_<precision>, e.g. onnx_int8")
    return ExportSpec(fmt, precision)


@dataclass(frozen=True)
class ExportedArtefact:
    """An artefact on disk, its sidecar and its checksum (the exact file that is validated)."""

    path: Path
    spec: ExportSpec
    sha256: str
    meta: dict[str, Any]

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.path)


def sidecar_path(path: str | Path) -> Path:
    return Path(str(path) + SIDECAR_SUFFIX)


def read_sidecar(path: str | Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.is_file():
        raise ModelError(f"{path}: no sidecar {side.name} beside it (it says how to pre- and "
                         "post-process the model); export it with preflight.models.export")
    try:
        return json.loads(side.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{side}: not valid JSON ({exc})") from None


def _finish(path: Path, spec: ExportSpec, meta: dict[str, Any]) -> ExportedArtefact:
    from preflight.models.zoo import sha256_file

    meta = {**meta, "format": spec.format, "precision": spec.precision}
    sidecar_path(path).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    return ExportedArtefact(path, spec, sha256_file(path), meta)


# ---------------------------------------------------------------------------------- sources
def _detector_meta(model: Any) -> dict[str, Any]:
    """An ultralytics detector's classes and NMS settings."""
    names = model.model_names
    return {"model_classes": [names[i] for i in sorted(names)], "conf": model.conf,
            "iou": model.iou, "max_det": model.max_det}


def _classifier_meta(model: Any) -> dict[str, Any]:
    """A timm classifier's classes and input normalisation."""
    return {"model_classes": list(model.class_names), "mean": list(model.mean),
            "std": list(model.std)}


def _export_ultralytics_onnx(detector: Any, target: Path, opset: int | None) -> None:
    from preflight.models.ultralytics_env import integrations_off

    _require("onnx")
    head = type(detector.model.model.model[-1]).__name__
    if "RTDETR" in head:
        raise ModelError(f"{detector.name}: exporting RT-DETR-style heads is not supported "
                         "(they decode without NMS; Preflight's exported runtime replays NMS)")
    if getattr(detector.model.model, "end2end", False):
        raise ModelError(f"{detector.name}: end-to-end (NMS-free) heads are not supported")
    from preflight.models.ultralytics_adapter import _load

    with tempfile.TemporaryDirectory(prefix="preflight-export-") as tmp, integrations_off():
        src = Path(tmp) / f"{detector.name}.pt"
        shutil.copyfile(detector.weights, src)
        model = _load(str(src))
        args = dict(format="onnx", imgsz=detector.input_size, device="cpu",
                    simplify=False, dynamic=False, nms=False, batch=1, verbose=False)
        if opset:
            args["opset"] = int(opset)
        try:
            produced = Path(model.export(**args))
        except Exception as exc:  # noqa: BLE001 - ultralytics raises many kinds
            raise ModelError(f"{detector.name}: ONNX export failed: {exc}") from exc
        shutil.copyfile(produced, target)


def _export_torch_onnx(module: Any, input_size: int, target: Path, opset: int | None) -> None:
    import warnings

    import torch

    _require("onnx")
    module = module.to("cpu").eval()
    example = torch.zeros(1, 3, input_size, input_size)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(target), input_names=["images"],
                          output_names=["output0"], opset_version=opset or 17, dynamo=False,
                          do_constant_folding=True)


def _export_timm_onnx(classifier: Any, target: Path, opset: int | None) -> None:
    _export_torch_onnx(classifier.model, classifier.input_size, target, opset)


@dataclass(frozen=True)
class SourceExporter:
    """How one model family's models export: the ``task`` the runtime replays, what it needs
    from the source beyond the common fields (``meta``: classes, pre/post-processing settings),
    and how the FP32 ONNX file is written (``onnx(model, target, opset)``)."""

    task: str
    what: str   # "ultralytics detectors": for the refusal of other families
    meta: Callable[[Any], dict[str, Any]]
    onnx: Callable[[Any, Path, int | None], None]


#: model family -> how its models export; the families the registry marks ``exportable``
#: (:data:`preflight.models.registry.FAMILIES`)
SOURCE_EXPORTERS: dict[str, SourceExporter] = {
    "ultralytics": SourceExporter("detect", "ultralytics detectors", _detector_meta,
                                  _export_ultralytics_onnx),
    "timm": SourceExporter("classify", "timm classifiers", _classifier_meta, _export_timm_onnx),
}


def _exporter(model: Any) -> SourceExporter:
    family = getattr(model, "family", "")
    try:
        return SOURCE_EXPORTERS[family]
    except KeyError:
        known = " and ".join(e.what for e in SOURCE_EXPORTERS.values())
        raise ModelError(f"{model.name}: cannot export a model of family {family!r} "
                         f"({known} only)") from None


def source_meta(model: Any) -> dict[str, Any]:
    """What the runtime needs to reproduce ``model``'s pre/post-processing (a model of a family
    in :data:`SOURCE_EXPORTERS`)."""
    exporter = _exporter(model)
    return {"source_name": model.name, "source_family": model.family,
            "source_weights": str(model.weights), "source_sha256": model.sha256 or "",
            "input_size": int(model.input_size), "class_map": dict(model.class_map),
            "taxonomy": list(model.taxonomy.names), "task": exporter.task,
            **exporter.meta(model)}


def export_onnx(model: Any, out_dir: str | Path, *, opset: int | None = None) -> ExportedArtefact:
    """The FP32 ONNX file of a loaded source model (fixed batch-1 input, ``1x3xSxS``)."""
    meta = source_meta(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{model.name}.fp32.onnx"
    _exporter(model).onnx(model, target, opset)
    return _finish(target, ExportSpec("onnx", "fp32"), meta)


def _require(package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(package) is None:
        raise ModelError(f"exporting needs the '{package}' package, which is not installed "
                         "(pip install the version pinned in pyproject.toml)")


# ---------------------------------------------------------------------------------- INT8
def calibration_frames(images: Any, n: int, seed: int) -> list[str]:
    """Paths of ``n`` frames drawn (seeded, without replacement) from ``images`` (a table with
    ``image_id`` and ``path``): sorted by image id first, so the draw does not depend on row
    order."""
    if n < 1:
        raise ModelError(f"calibration needs at least one frame, got n={n}")
    if len(images) == 0:
        raise ModelError("no frames to calibrate INT8 quantisation on (the fine-tuning pool "
                         "is empty)")
    table = images.sort_values("image_id", kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(table), size=min(n, len(table)), replace=False))
    return [str(p) for p in table["path"].iloc[pick]]


class _FramesReader:
    """ONNX Runtime ``CalibrationDataReader`` over pre-processed frames (one batch-1 input
    each)."""

    def __init__(self, input_name: str, tensors: Sequence[np.ndarray]) -> None:
        self.input_name = input_name
        self.tensors = list(tensors)
        self._it: Iterator[np.ndarray] = iter(self.tensors)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self.input_name: x}

    def rewind(self) -> None:
        self._it = iter(self.tensors)


def quantize_int8(fp32: ExportedArtefact, frames: Sequence[np.ndarray], out_dir: str | Path, *,
                  seed: int = 0) -> ExportedArtefact:
    """Static INT8 quantisation of an FP32 ONNX artefact, calibrated on ``frames`` (RGB uint8,
    pre-processed exactly as at inference). Deterministic: MinMax calibration, frames in the
    given order (``seed`` is recorded; the caller's frame draw uses it)."""
    _require("onnxruntime")
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if fp32.spec != ExportSpec("onnx", "fp32"):
        raise ModelError(f"INT8 quantisation starts from an FP32 ONNX file, got {fp32.spec.label}")
    if not frames:
        raise ModelError("INT8 calibration needs at least one frame")
    meta = fp32.meta
    tensors = [preprocess_for(meta, [f])[0] for f in frames]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / fp32.path.name.replace(".fp32.onnx", ".int8.onnx")
    if target == fp32.path:
        target = out_dir / f"{fp32.path.stem}.int8.onnx"
    import onnx

    input_name = onnx.load(str(fp32.path), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="preflight-quant-") as tmp:
        staged = Path(tmp) / target.name
        try:
            quantize_static(str(fp32.path), str(staged), _FramesReader(input_name, tensors),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS),
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"CalibTensorRangeSymmetric": False})
        except Exception as exc:  # noqa: BLE001 - the quantiser raises many kinds
            raise ModelError(f"{fp32.path.name}: INT8 quantisation failed: {exc}") from exc
        shutil.move(str(staged), target)
    return _finish(target, ExportSpec("onnx", "int8"),
                   {**meta, "calibration_frames": len(tensors), "calibration_seed": int(seed),
                    "fp32_sha256": fp32.sha256, "quantized_ops": list(QUANTIZED_OPS)})


# ---------------------------------------------------------------------------------- OpenVINO
def to_openvino(onnx_artefact: ExportedArtefact, out_dir: str | Path) -> ExportedArtefact:
    """The OpenVINO IR (``.xml`` + ``.bin``) of an ONNX artefact (same precision)."""
    _require("openvino")
    import openvino as ov

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / onnx_artefact.path.name.replace(".onnx", ".xml")
    try:
        model = ov.convert_model(str(onnx_artefact.path))
        ov.save_model(model, str(target), compress_to_fp16=False)
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds
        raise ModelError(f"{onnx_artefact.path.name}: OpenVINO conversion failed: {exc}") from exc
    return _finish(target, ExportSpec("openvino", onnx_artefact.spec.precision),
                   {**onnx_artefact.meta, "onnx_sha256": onnx_artefact.sha256})


def export_all(model: Any, specs: Sequence[ExportSpec], out_dir: str | Path, *,
               calibration: Sequence[np.ndarray] = (), seed: int = 0
               ) -> dict[str, ExportedArtefact]:
    """Every requested artefact of one source model, keyed by ``spec.label`` (FP32 ONNX first:
    the others derive from it)."""
    out_dir = Path(out_dir)
    fp32 = export_onnx(model, out_dir)
    int8 = None
    out: dict[str, ExportedArtefact] = {}
    for spec in specs:
        if spec.precision == "int8" and int8 is None:
            int8 = quantize_int8(fp32, calibration, out_dir, seed=seed)
        onnx_file = int8 if spec.precision == "int8" else fp32
        out[spec.label] = onnx_file if spec.format == "onnx" else to_openvino(onnx_file, out_dir)
    return out


# ------------------------------------------------- pre-processing (the sidecar says which one)
def letterbox_tensor(frames: list[np.ndarray], input_size: int) -> np.ndarray:
    """RGB uint8 frames -> float32 ``(n, 3, S, S)`` in [0, 1], letterboxed as ultralytics'
    predictor does for a fixed-shape model (pad 114, centred)."""
    from ultralytics.data.augment import LetterBox

    box = LetterBox((input_size, input_size), auto=False, stride=32)
    x = np.stack([box(image=f) for f in frames]).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32) / np.float32(255.0)


def preprocess_for(meta: dict[str, Any], frames: list[np.ndarray]) -> list[np.ndarray]:
    """One batch-1 input tensor per frame, as the artefact's source model prepares it."""
    frames = [check_rgb_frame(f, i) for i, f in enumerate(frames)]
    size = int(meta["input_size"])
    if meta["task"] == "detect":
        return [letterbox_tensor([f], size) for f in frames]
    from preflight.models.timm_model import preprocess

    return [preprocess([f], size, meta["mean"], meta["std"]) for f in frames]
