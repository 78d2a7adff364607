"""A tiny YOLO dataset of coloured rectangles, for smoke tests of training and the zoo.

Each class of the taxonomy gets its own colour; every image holds 1-3 filled rectangles on a
grey, slightly noisy background. Written in the synthetic generator's layout (``images/``,
``labels/``, ``data.yaml`` with the taxonomy's names) so it can stand in for it in tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from preflight.taxonomy import Taxonomy

#: RGB colour per class id (cycled when the taxonomy is longer).
COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 40, 40), (40, 200, 40), (40, 60, 230), (230, 200, 30), (200, 40, 200), (30, 200, 210),
    (250, 140, 20),
)


def write_toy_dataset(out_dir: str | Path, *, n: int = 12, size: int = 96, seed: int = 0,
                      classes: list[int] | None = None,
                      taxonomy: Taxonomy) -> Path:
    """Write ``n`` RGB JPEGs of ``size`` px with YOLO labels; returns ``out_dir``.

    ``classes``: class ids to draw (default: every class of the taxonomy).
    """
    import cv2

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if classes is None:
        classes = list(range(len(taxonomy)))
    for i in range(n):
        img = rng.normal(110, 8, size=(size, size, 3)).clip(0, 255).astype(np.uint8)
        lines = []
        for _ in range(int(rng.integers(1, 4))):
            cls = int(classes[int(rng.integers(0, len(classes)))])
            w, h = (int(v) for v in rng.integers(size // 6, size // 2, size=2))
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            img[y:y + h, x:x + w] = COLOURS[cls % len(COLOURS)]
            lines.append(f"{cls} {(x + w / 2) / size:.6f} {(y + h / 2) / size:.6f} "
                         f"{w / size:.6f} {h / size:.6f}")
        cv2.imwrite(str(out / "images" / f"toy_{i:04d}.jpg"), img[..., ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        (out / "labels" / f"toy_{i:04d}.txt").write_text("\n".join(lines) + "\n", "utf-8")
    (out / "data.yaml").write_text(yaml.safe_dump(
        {"path": str(out.resolve()), "train": "images", "val": "images",
         "names": taxonomy.as_dict()}, sort_keys=False), "utf-8")
    return out
