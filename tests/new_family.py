"""A model family that is not in the product: a colour-matching detector whose "checkpoint" is a
JSON file (class name -> RGB colour). Used by test_own_data to show that adding a family is this
one module plus its registry row (``ModelFamily(adapter=..., inspect=...)``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from preflight.models.base import CheckpointFacts, ModelError, TrainResult, empty_predictions

FORMAT = "colour-detector/1"


def inspect_checkpoint(path: str | Path) -> CheckpointFacts | None:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return None
    return CheckpointFacts(tuple(raw["colours"]), int(raw.get("input_size", 320)))


class ColourDetector:
    """One box per class: the bounding box of the pixels within ``tolerance`` of its colour."""

    family = "colours"

    def __init__(self, colours: dict[str, list[int]], *, name: str, input_size: int,
                 class_map: dict[str, str] | None, taxonomy, weights: str) -> None:
        self.name, self.input_size, self.taxonomy, self.weights = name, input_size, taxonomy, weights
        self.class_map = dict(class_map) if class_map is not None else {
            c: c for c in colours if c in taxonomy.names}
        self.colours = {taxonomy.names.index(self.class_map[c]): np.array(rgb, dtype=np.int16)
                        for c, rgb in colours.items() if c in self.class_map}
        self.trained_on: list[Path] = []

    @classmethod
    def from_candidate(cls, candidate, zoo_dir=None, device=None, *, taxonomy, **kwargs: Any):
        raw = json.loads(Path(candidate.resolve_path(candidate.weights)).read_text())
        return cls(raw["colours"], name=candidate.name, input_size=candidate.input_size,
                   class_map=candidate.class_map, taxonomy=taxonomy, weights=candidate.weights)

    @classmethod
    def from_weights(cls, weights, *, taxonomy, name=None, input_size=None, class_map=None,
                     device=None, **kwargs: Any):
        raw = json.loads(Path(weights).read_text())
        return cls(raw["colours"], name=name or Path(weights).stem,
                   input_size=input_size or raw.get("input_size", 320), class_map=class_map,
                   taxonomy=taxonomy, weights=str(weights))

    def predict(self, images: list[np.ndarray]) -> list[pd.DataFrame]:
        out = []
        for image in images:
            rows = []
            for class_id, rgb in self.colours.items():
                ys, xs = np.nonzero(np.abs(image.astype(np.int16) - rgb).max(axis=2) < 30)
                if len(xs):
                    rows.append((class_id, 0.9, xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                 ys.max() - ys.min() + 1))
            out.append(pd.DataFrame(rows, columns=["class_id", "score", "x", "y", "w", "h"])
                       .astype({"class_id": np.int64, "x": float, "y": float, "w": float,
                                "h": float}) if rows else empty_predictions())
        return out

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        return np.array([im.reshape(-1, 3).mean(axis=0) for im in images])

    @property
    def predict_fn(self):
        return self.predict

    def latency_spec(self) -> tuple[str, dict[str, Any]]:
        return "new_family:ColourDetector", {}

    def train(self, data, out_dir, **kwargs: Any) -> TrainResult:
        """Re-measure each class's colour as the median pixel inside its boxes of a YOLO view
        (``data``: its data.yaml), for every class of the taxonomy."""
        import cv2
        import yaml

        view = yaml.safe_load(Path(data).read_text())
        root = Path(view["path"])
        pixels: dict[int, list[np.ndarray]] = {}
        for label in sorted((root / "labels" / "train").glob("*.txt")):
            image = cv2.imread(str(next((root / "images" / "train").glob(label.stem + ".*"))))
            image = image[..., ::-1]
            h, w = image.shape[:2]
            for line in label.read_text().split("\n"):
                if not line.strip():
                    continue
                c, cx, cy, bw, bh = (float(v) for v in line.split())
                x0, y0 = int((cx - bw / 4) * w), int((cy - bh / 4) * h)
                x1, y1 = int((cx + bw / 4) * w) + 1, int((cy + bh / 4) * h) + 1
                pixels.setdefault(int(c), []).append(image[y0:y1, x0:x1].reshape(-1, 3))
        if not pixels:
            raise ModelError(f"{self.name}: no boxes to train on in {data}")
        self.trained_on.append(Path(data))
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        colours = {self.taxonomy.names[c]: np.median(np.concatenate(p), axis=0).astype(int)
                   .tolist() for c, p in sorted(pixels.items())}
        ckpt = out / "colours.json"
        ckpt.write_text(json.dumps({"format": FORMAT, "colours": colours,
                                    "input_size": self.input_size}))
        return TrainResult(ckpt, ckpt, {}, pd.DataFrame({"epoch": [1]}), 0.0, 1,
                           {"freeze": kwargs.get("freeze"), "at": time.time()})

    def export(self, out_dir, *, format: str = "torchscript") -> Path:
        raise ModelError(f"{self.name}: the colours family has no export format")
