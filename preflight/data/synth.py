"""The embedded synthetic warehouse: procedural frames with exact labels (docs/CONTRACTS.md layout).

``generate(out_dir, profile=..., n=..., weeks=..., seed=...)`` draws ``n`` frames of a warehouse
floor seen by four fixed cameras at two sites (``cam1``/``cam2`` at ``site_a``, ``cam3``/``cam4``
at ``site_b``; ``cam4`` is mounted high, so its objects are small) and writes them in the sample
layout: ``images/``, ``labels/`` (YOLO), ``data.yaml``, ``annotations.json`` (COCO),
``metadata.parquet`` (one row per image, slice columns plus the ground truth of every effect
applied) and ``boxes_metadata.parquet`` (``truncated`` / ``occluded`` per box). It then writes
``manifest.json`` (every file with size and sha256) and, last, the ``_COMPLETE`` marker, so a
watcher (``batch_is_complete``) never picks up a half-written batch.

The world, in taxonomy order: ``person`` (head, hard hat, hi-vis vest), ``forklift`` (yellow or
orange body, overhead guard, mast, forks, wheels), ``pallet`` (wooden slats and blocks), ``box``
(cardboard with a tape line), ``sku_a`` / ``sku_b`` (identical small blue packages that differ
only by a white printed mark, a circle or a cross, about 18% of the package side) and
``sku_new`` (a green tub with a yellow band: production weeks >= 3 only). Everything is drawn
with OpenCV on a per-camera background (concrete floor, lane markings, racking along the back
wall) that is the same in every run: the cameras are fixed.

Labels are exact: objects are painted far-to-near into the frame and into an object-id map, so
the box of an object is the extent of its *visible* pixels (clipped to the frame),
``occluded = 1 - visible / in-frame pixels`` (the hidden fraction, 0 = fully visible) and
``truncated`` says the object crosses a frame border. Post-render effects (blur, noise, ...)
do not move the labels.

Profiles:

* ``benchmark``: the stand-in for public data; week 1, day shift, bright/normal lighting, three
  cameras at a canonical, close framing (medium and large objects only), no overlap, no
  truncation, no corruption, JPEG quality 95, no ``sku_new``.
* ``production``: the same world with the five edge-case families at the rates of
  ``ProductionRates`` (``PRODUCTION_RATES``): distribution shift (colour cast, sensor noise,
  low JPEG quality), occlusion and truncation, frequent look-alikes, adversarial conditions
  (motion blur, dirty lens, flicker banding) and week-by-week drift (more night shifts, new
  packaging colours, ``sku_new`` from week 3). Frames come in bursts of a few seconds per camera
  (near-duplicates that share a scene), so the ingest grouping has something to group.

Deterministic: the same arguments give byte-identical files (``data.yaml``'s ``path`` aside, which
is the absolute output folder). ``week=N`` generates one weekly batch whose frames all belong to
week N; file names carry the week, camera and seed (or ``batch_id``), so weekly batches landed
side by side never collide.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from preflight.data.landing import (
    COMPLETE_MARKER,
    INCOMPLETE_MARKER,
    MANIFEST_NAME,
    batch_is_complete,
    mark_complete,
    write_manifest,
)
from preflight.taxonomy import DEFAULT_TAXONOMY

CLASS_NAMES: tuple[str, ...] = DEFAULT_TAXONOMY.names
PERSON, FORKLIFT, PALLET, BOX, SKU_A, SKU_B, SKU_NEW = (
    DEFAULT_TAXONOMY.id_of(n)
    for n in ("person", "forklift", "pallet", "box", "sku_a", "sku_b", "sku_new"))
N_CLASSES = len(CLASS_NAMES)

PROFILES: tuple[str, ...] = ("production", "benchmark")
METADATA_NAME = "metadata.parquet"
BOX_METADATA_NAME = "boxes_metadata.parquet"
COCO_NAME = "annotations.json"
#: Monday 00:00 of week 1; week N starts 7 * (N - 1) days later.
WEEK1_START = datetime(2024, 3, 4)

METADATA_COLUMNS: tuple[str, ...] = (
    "file_name", "image_id", "site", "camera", "shift", "captured_at", "week", "lighting",
    "blur", "lens", "colour_cast", "noise", "jpeg_quality", "flicker", "profile")
BOX_METADATA_COLUMNS: tuple[str, ...] = (
    "file_name", "box_index", "class_id", "area_px", "truncated", "occluded")
LIGHTING_VALUES: tuple[str, ...] = ("bright", "normal", "dim")

#: Object (width, height) as fractions of the image side at perspective scale 1.
BASE_SIZE: dict[int, tuple[float, float]] = {
    PERSON: (0.15, 0.40),
    FORKLIFT: (0.34, 0.31),
    PALLET: (0.28, 0.10),
    BOX: (0.14, 0.125),
    SKU_A: (0.095, 0.09),
    SKU_B: (0.095, 0.09),
    SKU_NEW: (0.085, 0.10),
}
#: Size of the printed mark on sku_a (circle diameter) / sku_b (cross span), fraction of the side.
SKU_MARK_FRACTION = 0.18


# --------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Camera:
    """A fixed camera: its site, where the floor meets the back wall, and its perspective scale
    (object scale at the far edge of the floor and at the bottom of the frame)."""

    name: str
    site: str
    horizon: float
    scale_far: float
    scale_near: float
    layout_seed: int
    floor_rgb: tuple[int, int, int]
    wall_rgb: tuple[int, int, int]


CAMERAS: tuple[Camera, ...] = (
    Camera("cam1", "site_a", 0.34, 0.60, 1.30, 11, (148, 146, 140), (178, 182, 186)),
    Camera("cam2", "site_a", 0.30, 0.55, 1.25, 23, (138, 139, 137), (170, 176, 184)),
    Camera("cam3", "site_b", 0.38, 0.62, 1.35, 37, (158, 151, 138), (186, 180, 170)),
    # high-mounted: sees more floor, everything is far away (the small-object camera)
    Camera("cam4", "site_b", 0.16, 0.22, 0.60, 41, (150, 148, 142), (180, 180, 176)),
)
CAMERA_BY_NAME: dict[str, Camera] = {c.name: c for c in CAMERAS}


@dataclass(frozen=True)
class BenchmarkSettings:
    """The clean benchmark profile: canonical framing, no edge cases."""

    cameras: tuple[str, ...] = ("cam1", "cam2", "cam3")
    #: perspective scale range of every benchmark camera (close framing: sku >= ~32 px at 320)
    scale: tuple[float, float] = (1.05, 1.40)
    horizon: float = 0.30
    lighting: tuple[float, float] = (0.45, 0.55)  # bright, normal
    jpeg_quality: int = 95
    objects_per_frame: tuple[int, int] = (2, 6)
    class_weights: tuple[float, ...] = (0.18, 0.10, 0.16, 0.20, 0.18, 0.18, 0.0)


@dataclass(frozen=True)
class ProductionRates:
    """The production profile's edge-case rates (probabilities, per frame unless stated).

    Per *burst* (a camera's few frames seconds apart share them): ``shift``, ``lighting``,
    ``colour_cast``, ``dirty_lens`` and the scene, so ``occlusion`` (one deliberate occlusion
    in the scene) and ``truncation`` (per object of the scene). Per frame: ``noise``,
    ``low_jpeg``, ``motion_blur`` and ``flicker``. Objects also overlap by chance as people and
    forklifts move during a burst; ``occluded`` in the labels is always the measured value.
    """

    # (1) distribution shift
    colour_cast: float = 0.15
    noise_day: float = 0.15
    noise_night: float = 0.90
    noise_sigma_day: tuple[float, float] = (3.0, 7.0)
    noise_sigma_night: tuple[float, float] = (8.0, 15.0)
    low_jpeg: float = 0.20
    low_jpeg_quality: tuple[int, int] = (20, 45)
    normal_jpeg_quality: tuple[int, int] = (75, 92)
    # (2) occlusion and truncation
    occlusion: float = 0.35  # scenes with one deliberate occlusion (behind an object or rack)
    rack_occlusion_share: float = 0.40  # of those, the occluder is a foreground rack column
    truncation: float = 0.12  # per object: placed across a frame border, box clipped
    # (3) look-alikes: object class weights in taxonomy order (sku_a + sku_b = half the objects)
    class_weights: tuple[float, ...] = (0.14, 0.07, 0.12, 0.17, 0.25, 0.25, 0.0)
    # (4) adversarial conditions
    motion_blur: float = 0.12
    dirty_lens: float = 0.10
    flicker: float = 0.08
    # (5) drift, week by week
    night_share_week1: float = 0.15
    night_share_step: float = 0.10
    night_share_max: float = 0.55
    night_dim: float = 0.85  # night frames that are dim (the rest: normal)
    day_lighting: tuple[float, float, float] = (0.35, 0.55, 0.10)  # bright, normal, dim
    sku_new_from_week: int = 3
    sku_new_weight: float = 0.12
    new_packaging_from_week: int = 2
    new_packaging_step: float = 0.25  # share of box/sku in new colours: step * (week - from + 1)
    new_packaging_max: float = 0.75
    # scene
    camera_weights: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)  # CAMERAS order; cam4 = small
    objects_per_frame: tuple[int, int] = (2, 8)
    burst_frames: tuple[int, int] = (1, 5)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not 0.0 <= v <= 1.0:
                raise ValueError(f"ProductionRates.{f.name} must be in [0, 1], got {v}")

    def night_share(self, week: int) -> float:
        return min(self.night_share_max, self.night_share_week1 + self.night_share_step * (week - 1))

    def new_packaging_share(self, week: int) -> float:
        k = week - self.new_packaging_from_week + 1
        return 0.0 if k <= 0 else min(self.new_packaging_max, self.new_packaging_step * k)

    def weights(self, week: int) -> np.ndarray:
        w = np.array(self.class_weights, dtype=float)
        if week >= self.sku_new_from_week:
            w[SKU_NEW] = self.sku_new_weight
        return w / w.sum()


PRODUCTION_RATES = ProductionRates()
BENCHMARK = BenchmarkSettings()


@dataclass(frozen=True)
class SynthSummary:
    """What ``generate`` wrote."""

    out_dir: Path
    profile: str
    n_images: int
    n_boxes: int
    seconds: float
    class_counts: dict[str, int]
    weeks: tuple[int, ...]
    seed: int
    image_size: int
    batch_id: str | None = None
    files: int = 0

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else float("inf")

    def line(self) -> str:
        return (f"synth {self.profile}: {self.n_images} images, {self.n_boxes} boxes, "
                f"weeks {','.join(map(str, self.weeks))}, {self.seconds:.1f} s "
                f"({self.images_per_second:.0f} images/s) -> {self.out_dir}")




# ------------------------------------------------------------------------------- drawing
Color = tuple[int, int, int]


class _Pen:
    """Draws filled shapes into the RGB frame and, for silhouette parts, into the id map."""

    __slots__ = ("img", "idm", "val")

    def __init__(self, img: np.ndarray, idm: np.ndarray) -> None:
        self.img, self.idm, self.val = img, idm, 0

    def rect(self, x0: float, y0: float, x1: float, y1: float, color: Color,
             sil: bool = True) -> None:
        a, b = int(round(x0)), int(round(y0))
        c, d = max(a, int(round(x1)) - 1), max(b, int(round(y1)) - 1)
        cv2.rectangle(self.img, (a, b), (c, d), color, -1)
        if sil:
            cv2.rectangle(self.idm, (a, b), (c, d), self.val, -1)

    def poly(self, pts: list[tuple[float, float]], color: Color, sil: bool = True) -> None:
        p = np.round(np.asarray(pts, dtype=np.float64)).astype(np.int32)
        cv2.fillConvexPoly(self.img, p, color)
        if sil:
            cv2.fillConvexPoly(self.idm, p, self.val)

    def circle(self, cx: float, cy: float, r: float, color: Color, sil: bool = True) -> None:
        c, r_ = (int(round(cx)), int(round(cy))), max(1, int(round(r)))
        # anti-aliased only inside a silhouette: an AA edge would bleed past the label
        cv2.circle(self.img, c, r_, color, -1, cv2.LINE_8 if sil else cv2.LINE_AA)
        if sil:
            cv2.circle(self.idm, c, r_, self.val, -1)

    def ellipse(self, cx: float, cy: float, ax: float, ay: float, a0: float, a1: float,
                color: Color, sil: bool = True) -> None:
        c = (int(round(cx)), int(round(cy)))
        axes = (max(1, int(round(ax))), max(1, int(round(ay))))
        cv2.ellipse(self.img, c, axes, 0, a0, a1, color, -1)
        if sil:
            cv2.ellipse(self.idm, c, axes, 0, a0, a1, self.val, -1)


@dataclass
class _Obj:
    cls: int
    x0: float
    y0: float
    w: float
    h: float
    flip: bool
    style: int
    new_pack: bool
    speed: float  # per-frame movement sigma within a burst, px
    keep_inside: bool

    @property
    def base(self) -> float:
        return self.y0 + self.h


VESTS: tuple[Color, ...] = ((255, 122, 24), (206, 240, 40), (250, 212, 30))
HATS: tuple[Color, ...] = ((245, 245, 240), (250, 210, 30), (40, 110, 220))
TROUSERS: tuple[Color, ...] = ((34, 40, 70), (50, 50, 54), (70, 60, 50))
SKIN: tuple[Color, ...] = ((232, 190, 160), (190, 140, 100), (130, 90, 60))
FORKLIFT_BODY: tuple[Color, ...] = ((242, 182, 24), (246, 140, 26))


def _draw_person(pen: _Pen, o: _Obj) -> None:
    x0, y0, w, h = o.x0, o.y0, o.w, o.h
    cx = x0 + w / 2
    s = o.style
    shirt = TROUSERS[(s // 7) % 3]
    # legs and shoes
    pen.rect(cx - 0.30 * w, y0 + 0.56 * h, cx - 0.03 * w, y0 + 0.96 * h, TROUSERS[s % 3])
    pen.rect(cx + 0.03 * w, y0 + 0.56 * h, cx + 0.30 * w, y0 + 0.96 * h, TROUSERS[s % 3])
    pen.rect(cx - 0.33 * w, y0 + 0.955 * h, cx - 0.02 * w, y0 + h, (20, 20, 20))
    pen.rect(cx + 0.02 * w, y0 + 0.955 * h, cx + 0.33 * w, y0 + h, (20, 20, 20))
    # arms, torso (hi-vis vest with reflective stripes)
    pen.rect(x0, y0 + 0.21 * h, x0 + 0.17 * w, y0 + 0.53 * h, shirt)
    pen.rect(x0 + 0.83 * w, y0 + 0.21 * h, x0 + w, y0 + 0.53 * h, shirt)
    pen.rect(x0 + 0.15 * w, y0 + 0.19 * h, x0 + 0.85 * w, y0 + 0.58 * h, VESTS[s % 3])
    stripe = max(1.0, 0.025 * h)
    for v in (0.40, 0.49):
        pen.rect(x0 + 0.15 * w, y0 + v * h, x0 + 0.85 * w, y0 + v * h + stripe, (205, 205, 200),
                 sil=False)
    # head and hard hat
    r = max(1.0, 0.085 * h)
    hy = y0 + 0.035 * h + r
    pen.rect(cx - 0.3 * r, hy + 0.7 * r, cx + 0.3 * r, y0 + 0.2 * h, SKIN[(s // 3) % 3])
    pen.circle(cx, hy, r, SKIN[(s // 3) % 3])
    pen.ellipse(cx, hy - 0.25 * r, 1.15 * r, 0.95 * r, 180, 360, HATS[(s // 9) % 3])


def _mapper(o: _Obj) -> Callable[[float], float]:
    if o.flip:
        return lambda u: o.x0 + (1.0 - u) * o.w
    return lambda u: o.x0 + u * o.w


def _rect_uv(pen: _Pen, o: _Obj, U: Callable[[float], float], u0: float, v0: float, u1: float,
             v1: float, color: Color, sil: bool = True) -> None:
    a, b = U(u0), U(u1)
    pen.rect(min(a, b), o.y0 + v0 * o.h, max(a, b), o.y0 + v1 * o.h, color, sil)


def _draw_forklift(pen: _Pen, o: _Obj) -> None:
    U, y0, h = _mapper(o), o.y0, o.h
    body = FORKLIFT_BODY[o.style % 2]
    dark_body = tuple(int(c * 0.7) for c in body)
    steel, black = (58, 58, 62), (22, 22, 22)
    _rect_uv(pen, o, U, 0.00, 0.45, 0.70, 0.82, body)            # chassis
    _rect_uv(pen, o, U, 0.00, 0.38, 0.24, 0.47, dark_body)       # counterweight
    _rect_uv(pen, o, U, 0.05, 0.10, 0.10, 0.46, steel)           # rear post
    _rect_uv(pen, o, U, 0.56, 0.10, 0.61, 0.46, steel)           # front post
    _rect_uv(pen, o, U, 0.02, 0.06, 0.66, 0.12, steel)           # overhead guard
    _rect_uv(pen, o, U, 0.20, 0.30, 0.34, 0.46, black)           # seat
    _rect_uv(pen, o, U, 0.71, 0.00, 0.75, 0.90, steel)           # mast rails
    _rect_uv(pen, o, U, 0.78, 0.00, 0.82, 0.90, steel)
    _rect_uv(pen, o, U, 0.71, 0.04, 0.82, 0.08, steel)
    _rect_uv(pen, o, U, 0.71, 0.46, 0.82, 0.50, steel)
    _rect_uv(pen, o, U, 0.82, 0.58, 0.86, 0.93, (80, 80, 84))    # carriage
    _rect_uv(pen, o, U, 0.82, 0.89, 1.00, 0.93, (120, 120, 124))  # fork
    _rect_uv(pen, o, U, 0.02, 0.60, 0.68, 0.64, (30, 30, 30), sil=False)  # hazard stripe
    for u, r in ((0.20, 0.15), (0.57, 0.13)):
        cy = y0 + (0.97 - r) * h
        pen.circle(U(u), cy, r * h, black)
        pen.circle(U(u), cy, 0.45 * r * h, (150, 150, 150), sil=False)
    pen.circle(U(0.33), y0 + 0.045 * h, 0.035 * h, (255, 120, 20))  # beacon


def _draw_pallet(pen: _Pen, o: _Obj) -> None:
    U, y0, h = _mapper(o), o.y0, o.h
    k = o.style % 3
    wood = ((198, 152, 94), (186, 140, 86), (206, 166, 110))[k]
    dark = tuple(int(c * 0.75) for c in wood)
    _rect_uv(pen, o, U, 0, 0, 1, 0.45, wood)
    gap = max(1.0, 0.03 * h)
    for v in (0.11, 0.22, 0.33):
        pen.rect(o.x0, y0 + v * h, o.x0 + o.w, y0 + v * h + gap, dark, sil=False)
    _rect_uv(pen, o, U, 0, 0.45, 1, 0.82, (52, 40, 28))  # fork openings in shadow
    for u0 in (0.0, 0.43, 0.86):
        _rect_uv(pen, o, U, u0, 0.45, u0 + 0.14, 0.82, dark)
    _rect_uv(pen, o, U, 0, 0.82, 1, 1.0, wood)


BOX_COLOURS = {False: ((182, 136, 82), (212, 172, 114), (148, 108, 64), (226, 204, 152)),
               True: ((226, 224, 214), (242, 240, 232), (192, 190, 182), (200, 56, 46))}
SKU_COLOURS = {False: ((38, 88, 196), (94, 142, 228), (26, 60, 148)),
               True: ((120, 70, 178), (158, 112, 212), (84, 48, 130))}


def _cuboid(pen: _Pen, o: _Obj, front: Color, top: Color, side: Color, skew: float,
            top_h: float) -> tuple[float, float, float, float]:
    """A box seen from slightly above: front face, top face and one side face.
    Returns the front face (x0, y0, x1, y1)."""
    U, y0, h = _mapper(o), o.y0, o.h
    yt, y1 = y0 + top_h * h, y0 + h
    fu = 1.0 - skew
    pen.poly([(U(0), yt), (U(fu), yt), (U(fu), y1), (U(0), y1)], front)
    pen.poly([(U(0), yt), (U(skew), y0), (U(1), y0), (U(fu), yt)], top)
    pen.poly([(U(fu), yt), (U(1), y0), (U(1), y1 - top_h * h), (U(fu), y1)], side)
    a, b = U(0), U(fu)
    return min(a, b), yt, max(a, b), y1


def _draw_box(pen: _Pen, o: _Obj) -> None:
    front, top, side, tape = BOX_COLOURS[o.new_pack]
    fx0, fy0, fx1, _ = _cuboid(pen, o, front, top, side, 0.18, 0.22)
    U, y0, h = _mapper(o), o.y0, o.h
    tw = 0.05 * o.w
    mid = (fx0 + fx1) / 2
    shift = (U(0.18) - U(0.0))  # the top face's skew, signed
    pen.poly([(mid - tw, fy0), (mid + tw, fy0), (mid + tw + shift, y0), (mid - tw + shift, y0)],
             tape, sil=False)
    pen.rect(mid - tw, fy0, mid + tw, y0 + 0.45 * h, tape, sil=False)


def _draw_sku(pen: _Pen, o: _Obj) -> None:
    front, top, side = SKU_COLOURS[o.new_pack]
    fx0, fy0, fx1, fy1 = _cuboid(pen, o, front, top, side, 0.15, 0.18)
    cx, cy = (fx0 + fx1) / 2, (fy0 + fy1) / 2
    m = max(2.0, SKU_MARK_FRACTION * o.w)
    white = (246, 246, 246)
    if o.cls == SKU_A:
        pen.circle(cx, cy, m / 2, white, sil=False)
    else:
        t = max(1.0, 0.3 * m) / 2
        pen.rect(cx - m / 2, cy - t, cx + m / 2, cy + t, white, sil=False)
        pen.rect(cx - t, cy - m / 2, cx + t, cy + m / 2, white, sil=False)


def _draw_sku_new(pen: _Pen, o: _Obj) -> None:
    x0, y0, w, h = o.x0, o.y0, o.w, o.h
    cx = x0 + w / 2
    body, lid, band = (46, 150, 84), (98, 202, 128), (234, 206, 44)
    pen.rect(x0, y0 + 0.12 * h, x0 + w, y0 + 0.90 * h, body)
    pen.ellipse(cx, y0 + 0.90 * h, w / 2, 0.10 * h, 0, 180, body)
    pen.rect(x0, y0 + 0.45 * h, x0 + w, y0 + 0.62 * h, band, sil=False)
    pen.ellipse(cx, y0 + 0.12 * h, w / 2, 0.12 * h, 0, 360, lid)


DRAW: dict[int, Callable[[_Pen, _Obj], None]] = {
    PERSON: _draw_person, FORKLIFT: _draw_forklift, PALLET: _draw_pallet, BOX: _draw_box,
    SKU_A: _draw_sku, SKU_B: _draw_sku, SKU_NEW: _draw_sku_new,
}


def _draw_column(img: np.ndarray, idm: np.ndarray, x0: float, pw: float, val: int) -> None:
    """A foreground rack column (steel upright with a yellow/black guard), full frame height."""
    S = img.shape[0]
    a, b = int(round(x0)), max(int(round(x0)), int(round(x0 + pw)) - 1)
    cv2.rectangle(img, (a, 0), (b, S - 1), (92, 98, 108), -1)
    cv2.rectangle(img, (a, 0), (a + max(1, (b - a) // 4), S - 1), (130, 136, 146), -1)
    band = max(2, S // 40)
    for i, y in enumerate(range(S - 5 * band, S, band)):
        cv2.rectangle(img, (a, y), (b, y + band - 1), (240, 200, 30) if i % 2 else (25, 25, 25), -1)
    cv2.rectangle(idm, (a, 0), (b, S - 1), val, -1)


# --------------------------------------------------------------------------- backgrounds
def _smooth_noise(rng: np.random.Generator, S: int, cells: int) -> np.ndarray:
    small = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(small, (S, S), interpolation=cv2.INTER_CUBIC)


def _background(cam: Camera, S: int, horizon: float) -> np.ndarray:
    """The fixed view of a camera (same in every run): wall with racking, concrete floor."""
    rng = np.random.default_rng([cam.layout_seed, 7])
    yh = int(round(horizon * S))
    img = np.empty((S, S, 3), np.float32)
    ramp = np.linspace(0.92, 1.04, max(yh, 1), dtype=np.float32)[:, None, None]
    img[:yh] = np.asarray(cam.wall_rgb, np.float32) * ramp
    depth = np.linspace(0.0, 1.0, S - yh, dtype=np.float32)[:, None, None]
    img[yh:] = np.asarray(cam.floor_rgb, np.float32) * (0.88 + 0.14 * depth)
    # concrete texture: mottling and grain (floor), fainter on the wall
    tex = 9.0 * _smooth_noise(rng, S, 10) + 4.0 * _smooth_noise(rng, S, max(4, S // 6))
    tex += 2.5 * rng.standard_normal((S, S)).astype(np.float32)
    img[yh:] += tex[yh:, :, None]
    img[:yh] += 0.3 * tex[:yh, :, None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    img = np.ascontiguousarray(img)
    # racking along the back wall: blue uprights, orange beams, wrapped loads and bins
    if yh > 8:
        bay = S * rng.uniform(0.17, 0.24)
        levels = max(2, int(yh / (0.1 * S)))
        lev_h = (yh - 2) / levels
        x = -rng.uniform(0, bay)
        post = max(1, int(0.012 * S))
        beam = max(1, int(0.01 * S))
        loads = ((222, 224, 226), (206, 208, 212), (60, 62, 66), (46, 86, 60), (170, 40, 36))
        while x < S:
            for lv in range(levels):
                yb = yh - 1 - lv * lev_h
                lx = x + post
                while lx < x + bay - post:
                    lw = min(bay * rng.uniform(0.25, 0.45), x + bay - post - lx)
                    if rng.random() < 0.8 and lw > 2:
                        lh = lev_h * rng.uniform(0.45, 0.85)
                        col = loads[int(rng.choice(5, p=[0.35, 0.25, 0.2, 0.12, 0.08]))]
                        cv2.rectangle(img, (int(lx), int(yb - lh)), (int(lx + lw) - 1, int(yb)),
                                      col, -1)
                        cv2.line(img, (int(lx), int(yb - lh / 2)), (int(lx + lw) - 1,
                                 int(yb - lh / 2)), tuple(int(c * 0.8) for c in col), 1)
                    lx += lw + bay * 0.04
                cv2.rectangle(img, (int(x), int(yb - beam)), (int(x + bay), int(yb)),
                              (232, 112, 34), -1)
            cv2.rectangle(img, (int(x), 0), (int(x) + post, yh), (40, 72, 150), -1)
            x += bay
        cv2.rectangle(img, (0, yh - max(1, S // 80)), (S, yh), (70, 70, 72), -1)  # skirting
    # floor markings: yellow lanes converging to a vanishing point, expansion joints
    vx = S * rng.uniform(0.35, 0.65)
    vy = yh - S * 0.6
    for xb in (S * rng.uniform(-0.1, 0.15), S * rng.uniform(0.85, 1.1)):
        t_b = 0.012 * S
        t_h = t_b * (yh - vy) / (S - vy)
        xh = vx + (xb - vx) * (yh - vy) / (S - vy)
        pts = np.array([(xb - t_b, S), (xb + t_b, S), (xh + t_h, yh), (xh - t_h, yh)])
        cv2.fillConvexPoly(img, np.round(pts).astype(np.int32), (214, 184, 40))
    for k in range(1, 5):
        y = int(yh + (S - yh) * (k / 5) ** 1.6)
        cv2.line(img, (0, y), (S, y), tuple(int(c * 0.78) for c in cam.floor_rgb), 1)
    return img


def _vignette(S: int, cx: float, cy: float) -> np.ndarray:
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    r2 = (xx - cx) ** 2 + (yy - cy) ** 2
    return (1.15 - 0.9 * np.minimum(r2, 1.0))[:, :, None].astype(np.float32)


# ---------------------------------------------------------------------------------- scenes
@dataclass
class _Cond:
    week: int
    camera: Camera
    shift: str
    lighting: str
    colour_cast: bool
    lens: str
    burst: int
    captured_at: datetime
    blur: str = "none"
    flicker: bool = False
    noise: bool = False
    jpeg_quality: int = 95


def _overlap(a: _Obj, b: _Obj) -> float:
    """Intersection over the smaller box."""
    iw = min(a.x0 + a.w, b.x0 + b.w) - max(a.x0, b.x0)
    ih = min(a.base, b.base) - max(a.y0, b.y0)
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / min(a.w * a.h, b.w * b.h)


class _World:
    """Scene sampling for one profile at one image size."""

    def __init__(self, profile: str, S: int, rates: ProductionRates) -> None:
        self.profile, self.S, self.rates = profile, S, rates
        self.bench = profile == "benchmark"

    def scales(self, cam: Camera) -> tuple[float, float, float]:
        if self.bench:
            return BENCHMARK.horizon, *BENCHMARK.scale
        return cam.horizon, cam.scale_far, cam.scale_near

    def _scale_at(self, cam: Camera, base: float) -> float:
        hz, s_far, s_near = self.scales(cam)
        t = (base - hz * self.S) / (self.S * (1 - hz))
        return s_far + (s_near - s_far) * min(1.0, max(0.0, t))

    def _new(self, rng: np.random.Generator, cls: int, cam: Camera, base: float, week: int,
             truncate: bool) -> _Obj:
        S = self.S
        s = self._scale_at(cam, base) * rng.uniform(0.9, 1.1)
        bw, bh = BASE_SIZE[cls]
        w, h = bw * s * S, bh * s * S
        speed = {PERSON: 0.03, FORKLIFT: 0.05}.get(cls, 0.004) * S
        new_pack = (cls in (BOX, SKU_A, SKU_B) and not self.bench
                    and rng.random() < self.rates.new_packaging_share(week))
        return _Obj(cls, 0.0, base - h, w, h, bool(rng.random() < 0.5), int(rng.integers(1000)),
                    bool(new_pack), 0.0 if self.bench else speed, not truncate)

    def place(self, rng: np.random.Generator, cls: int, cam: Camera, week: int,
              objs: list[_Obj]) -> _Obj | None:
        S = self.S
        hz = self.scales(cam)[0]
        max_overlap = 0.0 if self.bench else 0.05
        truncate = not self.bench and rng.random() < self.rates.truncation
        for _ in range(30):
            base = rng.uniform(hz * S + 0.03 * S, S - 1)
            o = self._new(rng, cls, cam, base, week, truncate)
            if truncate:
                frac = rng.uniform(0.25, 0.6)
                side = rng.choice(3, p=[0.4, 0.4, 0.2])
                if side == 0:
                    o.x0 = -frac * o.w
                elif side == 1:
                    o.x0 = S - (1 - frac) * o.w
                else:
                    o.x0 = rng.uniform(0, max(1.0, S - o.w))
                    o.y0 = S - (1 - frac) * o.h
            else:
                if o.w > S - 2 or o.h > S - 2:
                    continue
                o.x0 = rng.uniform(1, S - 1 - o.w)
                o.y0 = min(max(o.y0, 1.0), S - 1 - o.h)
            if all(_overlap(o, p) <= max_overlap for p in objs):
                return o
        return None

    def place_front(self, rng: np.random.Generator, target: _Obj, cam: Camera, week: int,
                    objs: list[_Obj], weights: np.ndarray) -> _Obj | None:
        """An object in front of ``target`` hiding 15-75% of its box."""
        S = self.S
        lo, hi = target.base + 0.02 * S, min(S - 1.0, target.base + 0.35 * S)
        if hi <= lo:
            return None
        for _ in range(30):
            cls = int(rng.choice(N_CLASSES, p=weights))
            o = self._new(rng, cls, cam, rng.uniform(lo, hi), week, False)
            if o.y0 >= target.base or o.w > S - 2 or o.y0 < 1:
                continue
            f = rng.uniform(0.3, 0.7)
            if rng.random() < 0.5:
                o.x0 = target.x0 + target.w * (1 - f)
            else:
                o.x0 = target.x0 + target.w * f - o.w
            o.x0 = min(max(o.x0, 1.0), S - 1 - o.w)
            hidden = _overlap(o, target) * min(o.w * o.h, target.w * target.h) / (
                target.w * target.h)
            if not 0.15 <= hidden <= 0.75:
                continue
            if all(_overlap(o, p) <= 0.05 for p in objs if p is not target):
                return o
        return None

    def scene(self, rng: np.random.Generator, cam: Camera, week: int
              ) -> tuple[list[_Obj], tuple[float, float] | None]:
        """Objects of one burst and an optional foreground column ``(x0, width)``."""
        if self.bench:
            weights = np.asarray(BENCHMARK.class_weights, float)
            weights = weights / weights.sum()
            lo, hi = BENCHMARK.objects_per_frame
        else:
            weights = self.rates.weights(week)
            lo, hi = self.rates.objects_per_frame
        limits = {PERSON: 3, FORKLIFT: 1}
        counts = dict.fromkeys(range(N_CLASSES), 0)
        objs: list[_Obj] = []
        for _ in range(int(rng.integers(lo, hi + 1))):
            w = weights.copy()
            for c, lim in limits.items():
                if counts[c] >= lim:
                    w[c] = 0.0
            cls = int(rng.choice(N_CLASSES, p=w / w.sum()))
            o = self.place(rng, cls, cam, week, objs)
            if o is not None:
                objs.append(o)
                counts[cls] += 1
        column = None
        if not self.bench and objs and rng.random() < self.rates.occlusion:
            inside = [o for o in objs if o.keep_inside] or objs
            target = inside[int(rng.integers(len(inside)))]
            front = None
            if rng.random() >= self.rates.rack_occlusion_share:
                front = self.place_front(rng, target, cam, week, objs, weights)
            if front is not None:
                objs.append(front)
            else:
                pw = self.S * rng.uniform(0.04, 0.07)
                cover = min(pw, rng.uniform(0.25, 0.5) * target.w)
                x0 = (target.x0 + target.w - cover) if rng.random() < 0.5 else (
                    target.x0 + cover - pw)
                column = (x0, pw)
        if not objs:  # never an empty frame: a box in the middle of the floor
            o = self.place(rng, BOX, cam, week, [])
            if o is not None:
                objs.append(o)
        return objs, column


def _moved(objs: list[_Obj], rng: np.random.Generator, S: int, first: bool) -> list[_Obj]:
    """The burst's objects a few seconds later (people and forklifts move, the rest jitter)."""
    out = []
    for o in objs:
        p = _Obj(**o.__dict__)
        if not first and o.speed > 0:
            p.x0 += rng.normal(0.0, o.speed)
            p.y0 += rng.normal(0.0, o.speed / 4)
        if p.keep_inside:
            p.x0 = min(max(p.x0, 1.0), S - 1 - p.w)
            p.y0 = min(max(p.y0, 1.0), S - 1 - p.h)
        out.append(p)
    return out


def _render(bg: np.ndarray, objs: list[_Obj], column: tuple[float, float] | None
            ) -> tuple[np.ndarray, list[tuple[int, int, int, int, int, bool, float]]]:
    """Paint far-to-near; boxes ``(class, x0, y0, x1, y1, truncated, occluded)`` of the
    visible pixels, in painting order."""
    S = bg.shape[0]
    img = bg.copy()
    idm = np.zeros((S, S), np.uint8)
    pen = _Pen(img, idm)
    order = sorted(range(len(objs)), key=lambda i: (objs[i].base, i))
    crops, full = [], []
    for rank, i in enumerate(order):
        o = objs[i]
        pen.val = rank + 1
        # contact shadow below the base line (never over farther objects)
        cx, cy = o.x0 + o.w / 2, o.base
        cv2.ellipse(img, (int(round(cx)), int(round(cy))),
                    (max(1, int(0.55 * o.w)), max(1, int(0.04 * o.h + 0.01 * S))), 0, 0, 180,
                    (88, 88, 86), -1)
        DRAW[o.cls](pen, o)
        a, b = max(0, math.floor(o.x0) - 2), max(0, math.floor(o.y0) - 2)
        c, d = min(S, math.ceil(o.x0 + o.w) + 2), min(S, math.ceil(o.base) + 2)
        crops.append((a, b, c, d))
        full.append(int(np.count_nonzero(idm[b:d, a:c] == pen.val)) if c > a and d > b else 0)
    if column is not None:
        _draw_column(img, idm, column[0], column[1], 255)
    boxes = []
    for rank, i in enumerate(order):
        o = objs[i]
        a, b, c, d = crops[rank]
        if full[rank] == 0:
            continue
        mask = idm[b:d, a:c] == rank + 1
        vis = int(np.count_nonzero(mask))
        if vis < 4:
            continue
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        x0, x1 = a + int(cols[0]), a + int(cols[-1]) + 1
        y0, y1 = b + int(rows[0]), b + int(rows[-1]) + 1
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        truncated = bool(o.x0 < -0.5 or o.y0 < -0.5 or o.x0 + o.w > S + 0.5 or o.base > S + 0.5)
        occluded = round(max(0.0, 1.0 - vis / full[rank]), 4)
        boxes.append((o.cls, x0, y0, x1, y1, truncated, occluded))
    return img, boxes


# --------------------------------------------------------------------------------- effects
CASTS: tuple[tuple[float, float, float], ...] = (
    (1.18, 1.00, 0.74),  # sodium / warm
    (0.88, 1.10, 0.92),  # fluorescent green
    (0.82, 0.95, 1.18),  # cold daylight
)
GAIN = {"bright": (1.10, 1.22), "normal": (0.94, 1.04)}


def _effects(img: np.ndarray, cond: _Cond, rng: np.random.Generator, vignette: np.ndarray,
             rates: ProductionRates) -> np.ndarray:
    S = img.shape[0]
    f = img.astype(np.float32)
    if cond.lighting == "dim":
        gain = rng.uniform(0.32, 0.48) if cond.shift == "night" else rng.uniform(0.52, 0.68)
    else:
        gain = rng.uniform(*GAIN[cond.lighting])
    mult = np.full(3, gain, np.float32)
    if cond.colour_cast:
        k = int(rng.integers(len(CASTS)))
        strength = rng.uniform(0.7, 1.2)
        mult *= 1.0 + strength * (np.asarray(CASTS[k], np.float32) - 1.0)
    f *= mult
    if cond.lighting == "dim":
        f *= vignette
    if cond.flicker:
        amp = rng.uniform(0.15, 0.28)
        period = S * rng.uniform(0.1, 0.25)
        y = np.arange(S, dtype=np.float32)
        f *= (1.0 + amp * np.sin(2 * np.pi * y / period + rng.uniform(0, 2 * np.pi)))[:, None,
                                                                                      None]
    if cond.blur == "motion":
        length = max(3, int(S * rng.uniform(0.015, 0.035)) | 1)
        ang = rng.uniform(0, np.pi)
        k = np.zeros((length, length), np.float32)
        c, r = (length - 1) / 2, (length - 1) / 2
        cv2.line(k, (int(round(c - r * np.cos(ang))), int(round(c - r * np.sin(ang)))),
                 (int(round(c + r * np.cos(ang))), int(round(c + r * np.sin(ang)))), 1.0, 1)
        f = cv2.filter2D(f, -1, k / k.sum())
    if cond.lens == "dirty":
        small = max(8, S // 4)
        m = np.zeros((small, small), np.float32)
        lrng = np.random.default_rng([cond.burst, 31])  # the same smudges through a burst
        for _ in range(int(lrng.integers(3, 7))):
            cv2.ellipse(m, (int(lrng.uniform(0, small)), int(lrng.uniform(0, small))),
                        (max(1, int(small * lrng.uniform(0.08, 0.22))),
                         max(1, int(small * lrng.uniform(0.06, 0.16)))),
                        float(lrng.uniform(0, 180)), 0, 360, float(lrng.uniform(0.7, 1.0)), -1)
        m = cv2.GaussianBlur(m, (0, 0), max(1.0, small / 30))
        m = cv2.resize(m, (S, S), interpolation=cv2.INTER_LINEAR)[:, :, None] * 0.95
        soft = cv2.GaussianBlur(f, (0, 0), max(1.0, S / 60))
        haze = np.asarray((176, 166, 146), np.float32) * gain  # grime scatters light
        f += m * (0.45 * soft + 0.55 * haze - f)
    if cond.noise:
        lo, hi = rates.noise_sigma_night if cond.shift == "night" else rates.noise_sigma_day
        f += rng.standard_normal(f.shape, dtype=np.float32) * np.float32(rng.uniform(lo, hi))
    np.clip(f, 0, 255, out=f)
    return f.astype(np.uint8)


# ----------------------------------------------------------------------------------- plan
_PROFILE_CODE = {"production": 1, "benchmark": 2}


def _plan(profile: str, n: int, week_list: list[int], seed: int, week_key: int,
          rates: ProductionRates) -> list[_Cond]:
    """Every frame's conditions, in generation order (bursts of one camera)."""
    rng = np.random.default_rng([seed, _PROFILE_CODE[profile], week_key, 0xB0])
    bench = profile == "benchmark"
    counts = [week_list.count(w) for w in sorted(set(week_list))]
    conds: list[_Cond] = []
    burst = 0
    cam_names = BENCHMARK.cameras if bench else tuple(c.name for c in CAMERAS)
    cam_p = (np.full(len(cam_names), 1 / len(cam_names)) if bench
             else np.asarray(rates.camera_weights, float) / sum(rates.camera_weights))
    for week, count in zip(sorted(set(week_list)), counts, strict=True):
        left = count
        while left > 0:
            burst += 1
            cam = CAMERA_BY_NAME[cam_names[int(rng.choice(len(cam_names), p=cam_p))]]
            if bench:
                length, shift = 1, "day"
                lighting = "bright" if rng.random() < BENCHMARK.lighting[0] else "normal"
                cast, lens = False, "clean"
            else:
                length = min(left, int(rng.integers(rates.burst_frames[0],
                                                    rates.burst_frames[1] + 1)))
                shift = "night" if rng.random() < rates.night_share(week) else "day"
                if shift == "night":
                    lighting = "dim" if rng.random() < rates.night_dim else "normal"
                else:
                    lighting = LIGHTING_VALUES[int(rng.choice(3, p=rates.day_lighting))]
                cast = bool(rng.random() < rates.colour_cast)
                lens = "dirty" if rng.random() < rates.dirty_lens else "clean"
            day = int(rng.integers(7))
            span = rng.uniform(0, 12 * 3600)
            if shift == "day":
                offset = 6 * 3600 + span
            else:
                offset = 18 * 3600 + span if span < 6 * 3600 else span - 6 * 3600
            t = WEEK1_START + timedelta(days=7 * (week - 1) + day,
                                        seconds=int(min(offset, 86399 - 5 * 60)))
            for _ in range(length):
                c = _Cond(week, cam, shift, lighting, cast, lens, burst, t)
                if bench:
                    c.jpeg_quality = BENCHMARK.jpeg_quality
                else:
                    c.blur = "motion" if rng.random() < rates.motion_blur else "none"
                    c.flicker = bool(rng.random() < rates.flicker)
                    c.noise = bool(rng.random() < (rates.noise_night if shift == "night"
                                                   else rates.noise_day))
                    q = rates.low_jpeg_quality if rng.random() < rates.low_jpeg else (
                        rates.normal_jpeg_quality)
                    c.jpeg_quality = int(rng.integers(q[0], q[1] + 1))
                conds.append(c)
                t += timedelta(seconds=int(rng.integers(3, 41)))
            left -= length
    return conds


# -------------------------------------------------------------------------------- generate
def _clean_target(out: Path) -> None:
    """Refuse a non-empty folder that is not a generator output; clear a previous output."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    entries = list(out.iterdir())
    if not entries:
        return
    ours = any((out / m).exists() for m in (COMPLETE_MARKER, INCOMPLETE_MARKER, MANIFEST_NAME))
    if not ours:
        raise FileExistsError(f"{out} is not empty and is not a synthetic sample (no "
                              f"{MANIFEST_NAME} / {COMPLETE_MARKER}); pick an empty folder")
    (out / COMPLETE_MARKER).unlink(missing_ok=True)  # first: never complete while rewriting
    for name in ("images", "labels"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (MANIFEST_NAME, METADATA_NAME, BOX_METADATA_NAME, COCO_NAME, "data.yaml"):
        (out / name).unlink(missing_ok=True)


def _tag(seed: int, batch_id: str | None) -> str:
    if batch_id is None:
        return f"s{seed}"
    tag = re.sub(r"[^A-Za-z0-9_-]+", "-", str(batch_id)).strip("-")
    if not tag:
        raise ValueError(f"batch_id {batch_id!r} has no usable characters (letters, digits, _ -)")
    return tag


def generate(out_dir: str | Path, *, profile: str = "production", n: int = 400, weeks: int = 4,
             seed: int = 0, image_size: int = 320, week: int | None = None,
             progress: bool = False, batch_id: str | None = None,
             rates: ProductionRates = PRODUCTION_RATES) -> SynthSummary:
    """Generate ``n`` labelled frames in ``out_dir`` (see the module doc); ``_COMPLETE`` last.

    ``week=N``: one weekly batch, every frame in week N (production; benchmark is week 1 only).
    Otherwise frames are spread evenly over weeks ``1..weeks`` (benchmark: all week 1).
    ``batch_id`` replaces the seed in file names (``w02_cam3_<batch_id>_000123.jpg``).
    """
    t0 = time.perf_counter()
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    if int(n) < 1:
        raise ValueError(f"n must be positive, got {n}")
    if int(weeks) < 1:
        raise ValueError(f"weeks must be at least 1, got {weeks}")
    if not 32 <= int(image_size) <= 4096:
        raise ValueError(f"image_size must be in 32..4096, got {image_size}")
    if week is not None and int(week) < 1:
        raise ValueError(f"week must be at least 1, got {week}")
    if profile == "benchmark" and week not in (None, 1):
        raise ValueError("the benchmark profile is week 1 only")
    n, S, seed = int(n), int(image_size), int(seed)
    tag = _tag(seed, batch_id)
    if profile == "benchmark":
        week_list = [1] * n
    elif week is not None:
        week_list = [int(week)] * n
    else:
        week_list = [(i * int(weeks)) // n + 1 for i in range(n)]  # even spread, in order
    week_key = int(week) if week is not None else 0
    out = Path(out_dir)
    _clean_target(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    (out / INCOMPLETE_MARKER).write_text("generation in progress\n", encoding="utf-8")

    conds = _plan(profile, n, week_list, seed, week_key, rates)
    world = _World(profile, S, rates)
    bgs: dict[str, np.ndarray] = {}
    vigs: dict[str, np.ndarray] = {}
    code = _PROFILE_CODE[profile]
    meta_rows: list[dict[str, Any]] = []
    box_rows: list[dict[str, Any]] = []
    coco_images: list[dict[str, Any]] = []
    coco_anns: list[dict[str, Any]] = []
    class_counts = [0] * N_CLASSES
    seen: set[str] = set()
    scene: tuple[list[_Obj], tuple[float, float] | None] = ([], None)
    current_burst = -1
    for idx, cond in enumerate(tqdm(conds, desc=f"synth {profile}", unit="img",
                                    disable=not progress)):
        cam = cond.camera
        if cam.name not in bgs:
            bgs[cam.name] = _background(cam, S, world.scales(cam)[0])
            vig_rng = np.random.default_rng([cam.layout_seed, 9])
            vigs[cam.name] = _vignette(S, vig_rng.uniform(0.3, 0.7), vig_rng.uniform(0.1, 0.4))
        frng = np.random.default_rng([seed, code, week_key, 0xF0, idx])
        first = cond.burst != current_burst
        if first:
            srng = np.random.default_rng([seed, code, week_key, 0x5C, cond.burst])
            scene = world.scene(srng, cam, cond.week)
            current_burst = cond.burst
        objs = _moved(scene[0], frng, S, first)
        img, boxes = _render(bgs[cam.name], objs, scene[1])
        for _attempt in range(50):
            out_img = _effects(img, cond, frng, vigs[cam.name], rates)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out_img, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, cond.jpeg_quality])
            if not ok:  # pragma: no cover - OpenCV always encodes a uint8 RGB array
                raise RuntimeError("JPEG encoding failed")
            data = buf.tobytes()
            digest = hashlib.sha1(data).hexdigest()
            if digest not in seen:  # content ids must be unique (ingest / validation)
                break
        seen.add(digest)
        stem = f"w{cond.week:02d}_{cam.name}_{tag}_{idx:06d}"
        file_name = f"{stem}.jpg"
        (out / "images" / file_name).write_bytes(data)
        lines = []
        image_id = idx + 1
        for bi, (cls, x0, y0, x1, y1, trunc, occ) in enumerate(boxes):
            w, h = x1 - x0, y1 - y0
            lines.append(f"{cls} {(x0 + x1) / 2 / S:.6f} {(y0 + y1) / 2 / S:.6f} "
                         f"{w / S:.6f} {h / S:.6f}\n")
            box_rows.append({"file_name": file_name, "box_index": bi, "class_id": cls,
                             "area_px": w * h, "truncated": trunc, "occluded": occ})
            coco_anns.append({"id": len(coco_anns) + 1, "image_id": image_id, "category_id": cls,
                              "bbox": [x0, y0, w, h], "area": w * h, "iscrowd": 0,
                              "truncated": trunc, "occluded": occ})
            class_counts[cls] += 1
        (out / "labels" / f"{stem}.txt").write_text("".join(lines), encoding="utf-8")
        coco_images.append({"id": image_id, "file_name": file_name, "width": S, "height": S})
        meta_rows.append({
            "file_name": file_name, "image_id": image_id, "site": cam.site, "camera": cam.name,
            "shift": cond.shift, "captured_at": cond.captured_at, "week": cond.week,
            "lighting": cond.lighting, "blur": cond.blur, "lens": cond.lens,
            "colour_cast": cond.colour_cast, "noise": cond.noise,
            "jpeg_quality": cond.jpeg_quality, "flicker": cond.flicker, "profile": profile,
        })

    _write_tables(out, meta_rows, box_rows)
    info = {"generator": "preflight.data.synth", "profile": profile, "seed": seed,
            "image_size": S, "n": n, "weeks": sorted(set(week_list)), "batch_id": batch_id}
    (out / COCO_NAME).write_text(json.dumps({
        "info": info,
        "images": coco_images, "annotations": coco_anns,
        "categories": [{"id": i, "name": name} for i, name in enumerate(CLASS_NAMES)],
    }, separators=(",", ":")), encoding="utf-8")
    (out / "data.yaml").write_text(yaml.safe_dump(
        {"path": str(out.resolve()), "train": "images", "val": "images",
         "names": dict(enumerate(CLASS_NAMES))}, sort_keys=False), encoding="utf-8")
    (out / INCOMPLETE_MARKER).unlink(missing_ok=True)
    manifest = write_manifest(out, extra={"generator": info})
    n_files = json.loads(manifest.read_text(encoding="utf-8"))["n_files"]
    mark_complete(out)
    return SynthSummary(
        out_dir=out, profile=profile, n_images=n, n_boxes=len(box_rows),
        seconds=time.perf_counter() - t0,
        class_counts={name: class_counts[i] for i, name in enumerate(CLASS_NAMES)},
        weeks=tuple(sorted(set(week_list))), seed=seed, image_size=S, batch_id=batch_id,
        files=n_files)


def _write_tables(out: Path, meta_rows: list[dict[str, Any]],
                  box_rows: list[dict[str, Any]]) -> None:
    meta = pd.DataFrame(meta_rows, columns=list(METADATA_COLUMNS))
    meta["captured_at"] = pd.to_datetime(meta["captured_at"]).astype("datetime64[us]")
    for col in ("image_id", "week", "jpeg_quality"):
        meta[col] = meta[col].astype("int64")
    for col in ("colour_cast", "noise", "flicker"):
        meta[col] = meta[col].astype(bool)
    meta.to_parquet(out / METADATA_NAME, index=False)
    boxes = pd.DataFrame(box_rows, columns=list(BOX_METADATA_COLUMNS))
    boxes = boxes.astype({"box_index": "int64", "class_id": "int64", "area_px": "int64",
                          "truncated": bool, "occluded": "float64"})
    boxes.to_parquet(out / BOX_METADATA_NAME, index=False)


__all__ = [
    "BENCHMARK", "CAMERAS", "CLASS_NAMES", "COMPLETE_MARKER", "MANIFEST_NAME",
    "PRODUCTION_RATES", "BenchmarkSettings", "Camera", "ProductionRates", "SynthSummary",
    "batch_is_complete", "generate", "mark_complete", "write_manifest",
]
