"""Custom albumentations transforms for the stress suite.

* :class:`BoxOcclusion` -- box-aware cut-outs: hides a set fraction of the area of a chosen
  fraction of the objects with a solid occluder entering from one edge of the box. The boxes are
  kept (the object is still there, partly hidden); the occluded pixels are written as ``1`` into
  the ``mask`` target so the caller can measure the occluded fraction of every box.
* :class:`DirtyLens` -- semi-transparent, soft-edged blotches (dust / smudges on the lens).
* :class:`FlickerBanding` -- horizontal brightness bands (rolling shutter under mains-frequency
  lighting).

All randomness comes from the transform's own generators (``self.random_generator``), which
``A.Compose(seed=...)`` / ``Compose.set_random_seed`` seed, so the output is a pure function of
(image, boxes, seed).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from preflight.environment import import_albumentations

#: the transforms below subclass albumentations': the stress suite's first use of it is its import
A = import_albumentations()


def box_pixel_region(box_xyxy: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Integer pixel region ``(x0, y0, x1, y1)`` (exclusive ends) of a pixel ``xyxy`` box.

    Edges are rounded to the nearest pixel boundary and the region is at least one pixel wide and
    high and lies inside the image. Used both to draw occluders and to measure occlusion, so the
    two agree exactly.
    """
    x0 = int(np.clip(np.floor(box_xyxy[0] + 0.5), 0, max(width - 1, 0)))
    y0 = int(np.clip(np.floor(box_xyxy[1] + 0.5), 0, max(height - 1, 0)))
    x1 = int(np.clip(np.floor(box_xyxy[2] + 0.5), x0 + 1, width))
    y1 = int(np.clip(np.floor(box_xyxy[3] + 0.5), y0 + 1, height))
    return x0, y0, x1, y1


class BoxOcclusion(A.DualTransform):
    """Hide ``area_fraction`` of each of a random ``object_fraction`` of the boxes.

    Each occluder is a solid rectangle of a random colour that enters the box from a random edge
    (left, right, top or bottom) and spans the full box extent along that edge, so it covers
    ``round(area_fraction * side)`` whole columns/rows of the box region. Boxes pass through
    unchanged; the ``mask`` target receives ``1`` on occluded pixels.
    """

    def __init__(self, area_fraction: float, object_fraction: float = 1.0, p: float = 1.0):
        super().__init__(p=p)
        if not 0.0 <= area_fraction <= 1.0:
            raise ValueError(f"area_fraction must be in [0, 1], got {area_fraction}")
        if not 0.0 <= object_fraction <= 1.0:
            raise ValueError(f"object_fraction must be in [0, 1], got {object_fraction}")
        self.area_fraction = float(area_fraction)
        self.object_fraction = float(object_fraction)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        raw = data.get("bboxes")
        boxes = np.zeros((0, 4)) if raw is None or len(raw) == 0 else np.asarray(raw, np.float64)
        rng = self.random_generator
        n = len(boxes)
        n_sel = int(round(self.object_fraction * n))
        chosen = np.sort(rng.choice(n, size=n_sel, replace=False)) if n_sel else np.zeros(0, int)
        holes = np.zeros((n_sel, 4), dtype=np.int64)
        colours = rng.integers(0, 256, size=(n_sel, 3)).astype(np.uint8)
        edges = rng.integers(0, 4, size=n_sel)
        scale = np.array([width, height, width, height], dtype=np.float64)
        for k, i in enumerate(chosen):
            x0, y0, x1, y1 = box_pixel_region(boxes[i, :4] * scale, height, width)
            bw, bh = x1 - x0, y1 - y0
            cw, ch = int(round(self.area_fraction * bw)), int(round(self.area_fraction * bh))
            edge = int(edges[k])
            if edge == 0:  # from the left
                holes[k] = (x0, y0, x0 + cw, y1)
            elif edge == 1:  # from the right
                holes[k] = (x1 - cw, y0, x1, y1)
            elif edge == 2:  # from the top
                holes[k] = (x0, y0, x1, y0 + ch)
            else:  # from the bottom
                holes[k] = (x0, y1 - ch, x1, y1)
        return {"holes": holes, "colours": colours}

    def apply(self, img: np.ndarray, holes: np.ndarray, colours: np.ndarray, **params: Any) -> np.ndarray:
        if len(holes) == 0:
            return img
        out = img.copy()
        for (x0, y0, x1, y1), colour in zip(holes, colours, strict=True):
            out[y0:y1, x0:x1] = colour if out.ndim == 3 else colour[0]
        return out

    def apply_to_mask(self, mask: np.ndarray, holes: np.ndarray, **params: Any) -> np.ndarray:
        if len(holes) == 0:
            return mask
        out = mask.copy()
        for x0, y0, x1, y1 in holes:
            out[y0:y1, x0:x1] = 1
        return out

    def apply_to_bboxes(self, bboxes: np.ndarray, **params: Any) -> np.ndarray:
        return bboxes

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("area_fraction", "object_fraction")


class DirtyLens(A.ImageOnlyTransform):
    """Blend ``n_spots`` soft, semi-transparent blotches (opacity up to ``opacity``) into the image.

    Spot radii are drawn in ``[0.04, 0.15] * min(height, width)``; the colour is a dull grey-brown
    (dirt) and the alpha map is a Gaussian-blurred union of discs, so edges are soft.
    """

    def __init__(self, n_spots: int, opacity: float, p: float = 1.0):
        super().__init__(p=p)
        self.n_spots = int(n_spots)
        self.opacity = float(opacity)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        rng = self.random_generator
        side = min(height, width)
        centres = np.column_stack([rng.uniform(0, width, self.n_spots), rng.uniform(0, height, self.n_spots)])
        radii = rng.uniform(0.04, 0.15, self.n_spots) * side
        alphas = rng.uniform(0.5, 1.0, self.n_spots) * self.opacity
        colour = np.array([110, 100, 85], dtype=np.float32) + rng.uniform(-15, 15, 3).astype(np.float32)
        return {"centres": centres, "radii": radii, "alphas": alphas, "colour": colour}

    def apply(self, img: np.ndarray, centres: np.ndarray, radii: np.ndarray, alphas: np.ndarray,
              colour: np.ndarray, **params: Any) -> np.ndarray:
        height, width = img.shape[:2]
        alpha = np.zeros((height, width), dtype=np.float32)
        for (cx, cy), r, a in zip(centres, radii, alphas, strict=True):
            spot = np.zeros_like(alpha)
            cv2.circle(spot, (int(cx), int(cy)), max(1, int(r)), float(a), thickness=-1)
            alpha = np.maximum(alpha, spot)
        sigma = max(1.0, 0.02 * min(height, width))
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)[..., None]
        src = img.astype(np.float32)
        col = colour if img.ndim == 3 else colour[:1]
        out = src * (1.0 - alpha) + col * alpha
        return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(img.shape)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("n_spots", "opacity")


class FlickerBanding(A.ImageOnlyTransform):
    """Multiply rows by ``1 + amplitude * sin(2 pi y / period + phase)`` (horizontal bands).

    The number of bands over the frame height is drawn in ``[3, 8]`` and the phase uniformly.
    """

    def __init__(self, amplitude: float, p: float = 1.0):
        super().__init__(p=p)
        self.amplitude = float(amplitude)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        rng = self.random_generator
        return {"n_bands": float(rng.uniform(3.0, 8.0)), "phase": float(rng.uniform(0, 2 * np.pi))}

    def apply(self, img: np.ndarray, n_bands: float, phase: float, **params: Any) -> np.ndarray:
        height = img.shape[0]
        y = np.arange(height, dtype=np.float32)
        gain = 1.0 + self.amplitude * np.sin(2 * np.pi * n_bands * y / height + phase)
        shape = (height, 1, 1) if img.ndim == 3 else (height, 1)
        out = img.astype(np.float32) * gain.reshape(shape)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("amplitude",)
