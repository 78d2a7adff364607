"""The champion as an MLflow model: a ``pyfunc`` wrapper around the chosen checkpoint.

``mlflow.pyfunc.load_model("models:/<name>@champion")`` gives a model whose ``predict`` takes an
RGB uint8 frame (``H x W x 3``), a batch (``N x H x W x 3``) or a list of frames, and returns
detections as one table (``frame, class_id, class_name, score, x, y, w, h``; pixels, top-left
xywh) -- or, for a classifier, one row of class probabilities per frame. The model holds:

* ``checkpoint``: the weights file (or exported artefact) the decision chose;
* ``champion.json``: the record -- candidate, family, stage, verdict, the class map (``null`` when
  the checkpoint already speaks the operational taxonomy, as a fine-tuned one does), the
  taxonomy, the input size, the metrics table it was validated with;
* ``decision.json``: the decision report that chose it.

Monitoring loads the champion this way (through the registry alias), never from a file path.
"""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

#: the packages a serving environment needs (pinned to the versions that logged the model; the
#: list is given, not inferred, because inference loads the model in a subprocess: minutes)
_REQUIREMENTS = ("mlflow", "numpy", "pandas", "torch", "torchvision", "ultralytics", "timm",
                 "opencv-python-headless")


#: families whose checkpoint is an exported artefact loaded with its sidecar
EXPORTED_FAMILIES = ("onnxruntime", "openvino")


class ChampionModel(mlflow.pyfunc.PythonModel):
    """The chosen checkpoint behind MLflow's ``pyfunc`` interface."""

    def load_context(self, context) -> None:
        self.record: dict[str, Any] = json.loads(
            Path(context.artifacts["champion"]).read_text(encoding="utf-8"))
        self.decision: dict[str, Any] = json.loads(
            Path(context.artifacts["decision"]).read_text(encoding="utf-8"))
        self.detector = load_checkpoint(context.artifacts["checkpoint"], self.record)

    def predict(self, context, model_input, params=None):
        frames = as_frames(model_input)
        out = self.detector.predict(frames)
        names = list(self.record["taxonomy"])
        if isinstance(out, np.ndarray):  # a classifier: probabilities over the taxonomy
            return pd.DataFrame(out, columns=names[:out.shape[1]])
        tables = [pred.assign(frame=i) for i, pred in enumerate(out)]
        table = (pd.concat(tables, ignore_index=True) if tables
                 else pd.DataFrame(columns=["class_id", "score", "x", "y", "w", "h", "frame"]))
        table["class_name"] = [names[int(c)] for c in table["class_id"]]
        return table[["frame", "class_id", "class_name", "score", "x", "y", "w", "h"]]


def as_frames(model_input: Any) -> list[np.ndarray]:
    """An RGB frame, a batch array or a list of frames as a list of ``H x W x 3`` arrays."""
    if isinstance(model_input, np.ndarray):
        if model_input.ndim == 3:
            return [model_input]
        if model_input.ndim == 4:
            return list(model_input)
    if isinstance(model_input, list | tuple) and all(
            isinstance(f, np.ndarray) and f.ndim == 3 for f in model_input):
        return list(model_input)
    raise ValueError("the champion predicts on RGB uint8 frames: an H x W x 3 array, an "
                     f"N x H x W x 3 array or a list of H x W x 3 arrays, got {type(model_input)}")


def load_checkpoint(checkpoint: str, record: dict[str, Any]):
    """The family's adapter loaded from the checkpoint, speaking the recorded taxonomy."""
    from preflight.models.registry import get_family
    from preflight.taxonomy import Taxonomy

    family = get_family(record["family"])  # the family -> adapter table
    adapter = family.load_adapter()
    if family.runs_artefact:  # the artefact with its sidecar (and weights) beside it
        return adapter.from_weights(Path(checkpoint) / record["artefact_file"],
                                    name=record["candidate"],
                                    taxonomy=Taxonomy(tuple(record["taxonomy"])))
    return adapter.from_weights(checkpoint, name=record["candidate"],
                                input_size=record["input_size"],
                                class_map=record.get("class_map"),
                                taxonomy=Taxonomy(tuple(record["taxonomy"])))


def save_champion_model(path: Path, checkpoint: str | Path, record: dict[str, Any],
                        decision_json: str | Path) -> Path:
    """Write the pyfunc model folder at ``path`` (copies of the checkpoint and the records)."""
    path = Path(path)
    staging = path.parent / f"{path.name}_inputs"
    staging.mkdir(parents=True, exist_ok=True)
    record = dict(record)
    if record.get("family") in EXPORTED_FAMILIES:  # model.onnx + model.onnx.json, .xml + .bin
        source = Path(checkpoint)
        bundle = staging / "artefact"
        bundle.mkdir()
        for sibling in source.parent.glob(f"{source.stem}.*"):
            if sibling.is_file():
                shutil.copyfile(sibling, bundle / sibling.name)
        record["artefact_file"] = source.name
        checkpoint = bundle
    (staging / "champion.json").write_text(json.dumps(record, indent=1, default=str),
                                           encoding="utf-8")
    shutil.copyfile(decision_json, staging / "decision.json")
    mlflow.pyfunc.save_model(
        str(path), python_model=ChampionModel(),
        artifacts={"checkpoint": str(checkpoint), "champion": str(staging / "champion.json"),
                   "decision": str(staging / "decision.json")},
        pip_requirements=_pinned(_REQUIREMENTS),
        metadata={"candidate": str(record.get("candidate")),
                  "verdict": str(record.get("verdict"))})
    shutil.rmtree(staging)
    return path


def _pinned(names: tuple[str, ...]) -> list[str]:
    out = []
    for name in names:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return out
