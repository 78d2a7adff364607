"""Exported artefacts as candidates: the ``onnxruntime`` and ``openvino`` model families.

:class:`ExportedDetector` and :class:`ExportedClassifier` have the source model's ``predict``
interface and its pre/post-processing (from the artefact's sidecar, see
:mod:`preflight.models.export`), so evaluation, stress, latency and the decision treat an export
like any other candidate:

* detectors: the same square letterbox (ultralytics' ``LetterBox``, ``auto=False``), RGB in
  [0, 1], then ultralytics' own ``non_max_suppression`` and ``scale_boxes`` with the source's
  ``conf``/``iou``/``max_det`` and only mapped classes kept -- what
  :class:`~preflight.models.ultralytics_adapter.UltralyticsDetector` runs;
* classifiers: :func:`preflight.models.timm_model.preprocess` (resize, mean/std) and the
  softmax over mapped model classes summed per operational class.

The runtime runs one frame at a time (the artefact has a fixed batch-1 input: what an edge
device serves); ``threads`` is the runtime's intra-op thread count (None: the runtime's
default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from preflight.config import resolve_taxonomy
from preflight.models.base import (
    ModelError,
    OperationalSoftmax,
    check_rgb_frame,
    empty_predictions,
    operational_id_map,
)
from preflight.models.export import letterbox_tensor, preprocess_for, read_sidecar
from preflight.taxonomy import Taxonomy

PREDICT_FN_FACTORY = "preflight.models.exported:make_predict_fn"
RUNTIMES: tuple[str, ...] = ("onnxruntime", "openvino")


# ---------------------------------------------------------------------------------- runtimes
class OnnxRuntimeSession:
    """An ONNX Runtime CPU session of one artefact."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError("the onnxruntime family needs the 'onnxruntime' package") from exc
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own types
            raise ModelError(f"cannot load {path} with ONNX Runtime: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


class OpenVinoSession:
    """An OpenVINO CPU compiled model of one artefact (IR ``.xml`` or ONNX)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise ModelError("the openvino family needs the 'openvino' package") from exc
        # f32: the CPU plugin would otherwise run FP32 layers in bf16 where the CPU has it
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own types
            raise ModelError(f"cannot load {path} with OpenVINO: {exc}") from exc
        self.request = self.compiled.create_infer_request()

    def run(self, x: np.ndarray) -> np.ndarray:
        out = self.request.infer({0: x})
        return np.asarray(out[self.compiled.output(0)])


def open_session(path: str | Path, runtime: str, threads: int | None = None):
    if runtime == "onnxruntime":
        return OnnxRuntimeSession(path, threads)
    if runtime == "openvino":
        return OpenVinoSession(path, threads)
    raise ModelError(f"unknown runtime {runtime!r}; known: {list(RUNTIMES)}")


# ---------------------------------------------------------------------------------- adapters
class _Exported:
    """What both exported adapters share: the artefact, its sidecar and its runtime."""

    task = "detect"

    def __init__(self, path: str | Path, *, runtime: str, name: str | None = None,
                 threads: int | None = None, class_map: dict[str, str] | None = None,
                 taxonomy: Taxonomy | None = None, sha256: str | None = None) -> None:
        from preflight.models.zoo import sha256_file

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"exported model {path} does not exist")
        self.meta = read_sidecar(path)
        if self.meta.get("task") != self.task:
            raise ModelError(f"{path}: a {self.meta.get('task')!r} model, not {self.task!r}")
        actual = sha256_file(path)
        if sha256 is not None and actual != sha256:
            from preflight.models.base import ChecksumError

            raise ChecksumError(f"{path} does not match the expected sha256 {sha256}")
        self.family = runtime
        self.runtime = runtime
        self.threads = int(threads) if threads else None
        self.weights = str(path)
        self.sha256 = actual
        self.weights_source = "export"
        self.device = "cpu"
        # None: the taxonomy the artefact was exported under (its sidecar)
        taxonomy = resolve_taxonomy(self.meta["taxonomy"]) if taxonomy is None else taxonomy
        self.taxonomy = taxonomy
        self.input_size = int(self.meta["input_size"])
        self.name = name or path.name
        self.model_classes = [str(c) for c in self.meta["model_classes"]]
        if class_map is None:
            class_map = dict(self.meta["class_map"])
        self.id_map = operational_id_map(self.name, dict(enumerate(self.model_classes)),
                                         class_map, taxonomy)
        self.class_map = dict(class_map)
        self.session = open_session(path, runtime, self.threads)

    @classmethod
    def from_candidate(cls, candidate: Any, zoo_dir: str | Path | None = None,
                       device: str | None = None, *, taxonomy: Taxonomy | None = None,
                       threads: int | None = None, **kwargs: Any) -> _Exported:
        """A candidate of family ``onnxruntime`` / ``openvino`` whose weights are an exported
        artefact (with its sidecar); ``sha256`` checked when the candidate gives one."""
        path = candidate.resolve_path(candidate.weights)
        if path is None:
            raise ModelError(f"candidate {candidate.name!r}: exported model "
                             f"{candidate.weights!r} not found")
        return load_exported(path, runtime=candidate.family, name=candidate.name,
                             class_map=candidate.class_map, taxonomy=taxonomy,
                             sha256=candidate.sha256, threads=threads)

    @classmethod
    def from_weights(cls, weights: str | Path, *, name: str | None = None,
                     input_size: int | None = None, device: str | None = None,
                     **kwargs: Any) -> _Exported:
        """An artefact by path (its sidecar's class map unless ``class_map`` is given)."""
        return load_exported(weights, name=name, **kwargs)

    @property
    def predict_fn(self):
        return self.predict

    def latency_spec(self) -> tuple[str, dict[str, Any]]:
        """``(factory, kwargs)`` for ``preflight.latency.ModelSpec`` (cold start: a fresh process
        loads the artefact on its own runtime)."""
        return PREDICT_FN_FACTORY, {"path": self.weights, "runtime": self.runtime,
                                    "name": self.name, "threads": self.threads,
                                    "class_map": self.class_map, "sha256": self.sha256,
                                    "taxonomy": list(self.taxonomy.names)}

    @property
    def num_parameters(self) -> int:
        """Weights in the artefact (ONNX initialisers; 0 where the runtime hides them)."""
        if self.runtime != "onnxruntime":
            return 0
        import onnx

        graph = onnx.load(self.weights, load_external_data=False).graph
        return int(sum(int(np.prod(t.dims)) for t in graph.initializer if len(t.dims) > 1))

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """Pooled features of the FP32 *source* model (the artefact exposes no feature output):
        the input's embedding for drift, which does not depend on how the head was quantised."""
        if getattr(self, "_source", None) is None:
            weights = Path(self.meta["source_weights"])
            if not weights.is_file():
                raise ModelError(f"{self.name}: embeddings need the source model {weights}, "
                                 "which is gone")
            from preflight.models.registry import adapter_for

            source = adapter_for(self.meta.get("source_family") or "ultralytics")
            self._source = source.from_weights(weights, name=self.name, device="cpu",
                                               input_size=self.input_size,
                                               class_map=dict(self.meta["class_map"]),
                                               taxonomy=self.taxonomy)
        return self._source.embed(images)

    def train(self, *args: Any, **kwargs: Any):
        raise ModelError(f"{self.name}: an exported {self.runtime} model cannot be trained; "
                         "fine-tune its source model and export again")

    def export(self, *args: Any, **kwargs: Any):
        raise ModelError(f"{self.name}: already an exported artefact ({self.weights})")


class ExportedDetector(_Exported):
    """A detector artefact (ONNX / OpenVINO IR) with its source's letterbox and NMS."""

    task = "detect"

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.conf = float(self.meta["conf"])
        self.iou = float(self.meta["iou"])
        self.max_det = int(self.meta["max_det"])
        self._classes = sorted(self.id_map)
        self._lut = np.full(len(self.model_classes), -1, dtype=np.int64)
        for model_id, op_id in self.id_map.items():
            self._lut[model_id] = op_id

    def predict(self, images: list[np.ndarray]):
        """RGB uint8 frames -> one DataFrame (class_id, score, x, y, w, h) per frame."""
        import pandas as pd

        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        out = []
        for i, frame in enumerate(images):
            frame = check_rgb_frame(frame, i)
            rows = self._decode(self.session.run(letterbox_tensor([frame], self.input_size)),
                                frame.shape)
            if not len(rows):
                out.append(empty_predictions())
                continue
            table = pd.DataFrame(rows, columns=["class_id", "score", "x", "y", "w", "h"])
            table["class_id"] = table["class_id"].astype(np.int64)
            out.append(table)
        return out

    __call__ = predict

    def _decode(self, raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Ultralytics' NMS and box scaling on the raw head output -> ``(n, 6)`` rows."""
        import torch
        from ultralytics.utils import nms, ops

        with torch.inference_mode():
            det = nms.non_max_suppression(torch.from_numpy(np.asarray(raw, np.float32)),
                                          self.conf, self.iou, self._classes, False,
                                          max_det=self.max_det, nc=0)[0]
            if not len(det):
                return np.zeros((0, 6))
            det[:, :4] = ops.scale_boxes((self.input_size, self.input_size), det[:, :4], shape)
            data = det.cpu().numpy().astype(np.float64)  # x1 y1 x2 y2 conf cls
        op_ids = self._lut[np.clip(data[:, 5].astype(np.int64), 0, len(self._lut) - 1)]
        keep = op_ids >= 0
        data, op_ids = data[keep], op_ids[keep]
        rows = np.column_stack([op_ids, data[:, 4], data[:, 0], data[:, 1],
                                data[:, 2] - data[:, 0], data[:, 3] - data[:, 1]])
        return rows[np.argsort(-rows[:, 1], kind="stable")]


class ExportedClassifier(_Exported):
    """A classifier artefact with its source's resize/normalisation and class mapping."""

    task = "classify"

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.mean, self.std = list(self.meta["mean"]), list(self.meta["std"])
        self._probabilities = OperationalSoftmax(self.id_map, len(self.taxonomy))

    def logits(self, images: list[np.ndarray]) -> np.ndarray:
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        rows = [self.session.run(x).reshape(1, -1) for x in preprocess_for(self.meta, images)]
        return (np.concatenate(rows).astype(np.float64) if rows
                else np.zeros((0, len(self.model_classes))))

    def predict(self, images: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 images -> probabilities ``(n, K)`` over the operational taxonomy."""
        return self._probabilities(self.logits(images))

    __call__ = predict


def load_exported(path: str | Path, *, runtime: str | None = None, **kwargs: Any):
    """The adapter for an artefact (detector or classifier, from its sidecar); ``runtime``
    defaults to the one of its format (``.onnx``: onnxruntime, ``.xml``: openvino)."""
    meta = read_sidecar(path)
    runtime = runtime or ("openvino" if str(path).endswith(".xml") else "onnxruntime")
    cls = ExportedClassifier if meta.get("task") == "classify" else ExportedDetector
    return cls(path, runtime=runtime, **kwargs)


def make_predict_fn(path: str, *, runtime: str, name: str | None = None,
                    threads: int | None = None, class_map: dict[str, str] | None = None,
                    sha256: str | None = None, taxonomy: list[str] | None = None):
    """Factory for ``preflight.latency.ModelSpec`` (cold start in a fresh process)."""
    return load_exported(path, runtime=runtime, name=name, threads=threads, class_map=class_map,
                         sha256=sha256,
                         taxonomy=None if taxonomy is None else resolve_taxonomy(taxonomy)
                         ).predict_fn
