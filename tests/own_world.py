"""A procedural world that `preflight synth` did not make, for the own-data tests.

Other classes (``worker``, ``cart``, ``crate``, ``drone``), other frames (480 x 360 by default),
COCO only, no metadata table and no capture times: clips of consecutive frames in which a few
flat-coloured objects drift sideways over a cluttered background, some clips dark.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import yaml

CLASSES = ("worker", "cart", "crate", "drone")
COLOURS = {"worker": (230, 60, 40), "cart": (40, 200, 60), "crate": (60, 80, 230),
           "drone": (240, 240, 40)}
SIZES = {"worker": (30, 70), "cart": (80, 50), "crate": (40, 40), "drone": (26, 14)}


def make_world(root: Path, *, n_clips: int = 8, frames: int = 6, size=(480, 360),
               classes=CLASSES, names=None, seed: int = 0) -> Path:
    """Write ``n_clips x frames`` JPEGs and ``annotations.json`` (COCO) under ``root``.
    ``names``: the category names written for ``classes`` (default: the same)."""
    rng = np.random.default_rng(seed)
    width, height = size
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for clip in range(n_clips):
        base = np.empty((height, width, 3), np.uint8)
        base[:] = rng.integers(40, 200, 3)
        for _ in range(6):  # clutter
            x, y = rng.integers(0, width - 60), rng.integers(0, height - 40)
            base[y:y + 40, x:x + 60] = rng.integers(0, 255, 3)
        if clip % 3 == 2:
            base = (base * 0.3).astype(np.uint8)  # a dark clip
        objects = []
        for _ in range(int(rng.integers(2, 5))):
            cls = classes[int(rng.integers(0, len(classes)))]
            scale = rng.uniform(0.8, 1.6) * max(width, height) / 480
            w, h = (int(v * scale) for v in SIZES[cls])
            objects.append((cls, w, h, rng.uniform(0, width - w - 40), rng.uniform(0, height - h),
                            rng.uniform(-4, 4)))
        for f in range(frames):
            img = base.copy()
            for cls, w, h, x0, y0, vx in objects:
                x, y = int(np.clip(x0 + vx * f, 0, width - w)), int(y0)
                img[y:y + h, x:x + w] = COLOURS[cls]
                anns.append({"id": len(anns) + 1, "image_id": len(images) + 1,
                             "category_id": classes.index(cls) + 1, "bbox": [x, y, w, h],
                             "area": w * h, "iscrowd": 0})
            img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
            name = f"clip{clip:02d}_f{f:02d}.jpg"
            cv2.imwrite(str(root / "images" / name), img[..., ::-1])
            images.append({"id": len(images) + 1, "file_name": name, "width": width,
                           "height": height})
    cats = [{"id": i + 1, "name": (names or classes)[i]} for i in range(len(classes))]
    (root / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": cats}))
    return root


def coco_to_yolo(coco_root: Path, out: Path) -> Path:
    """The same sample as a YOLO folder (for ultralytics training); returns its data.yaml."""
    data = json.loads((coco_root / "annotations.json").read_text())
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(exist_ok=True)
    by_image: dict[int, list] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for im in data["images"]:
        shutil.copy(coco_root / "images" / im["file_name"], out / "images" / im["file_name"])
        w, h = im["width"], im["height"]
        lines = [f"{a['category_id'] - 1} {(a['bbox'][0] + a['bbox'][2] / 2) / w:.6f} "
                 f"{(a['bbox'][1] + a['bbox'][3] / 2) / h:.6f} {a['bbox'][2] / w:.6f} "
                 f"{a['bbox'][3] / h:.6f}" for a in by_image.get(im["id"], [])]
        (out / "labels" / f"{Path(im['file_name']).stem}.txt").write_text("\n".join(lines) + "\n")
    names = [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]
    (out / "data.yaml").write_text(yaml.safe_dump(
        {"path": str(out.resolve()), "train": "images", "val": "images",
         "names": dict(enumerate(names))}))
    return out / "data.yaml"
