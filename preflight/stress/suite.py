"""The stress suite: named, deterministic albumentations pipelines per (family, corruption, severity).

Families and corruptions (severity 1..5; the default suite uses 1..3):

=====================  ==============  ======================================================
family                 corruption      what changes with severity
=====================  ==============  ======================================================
distribution_shift     colour_cast     fixed warm cast: R += s, B -= s (RGBShift)
distribution_shift     sensor_noise    Gaussian noise std as a fraction of 255 (GaussNoise)
distribution_shift     iso_noise       camera ISO noise intensity (ISONoise)
distribution_shift     jpeg            JPEG quality (ImageCompression), lower is worse
distribution_shift     gamma           fixed gamma > 1, darker frames (RandomGamma)
occlusion              cutout_all      every object loses 25/50/75/85/95 % of its box area
occlusion              cutout_half     half of the objects (chosen at random) lose that area
adversarial            motion_blur     centred motion-blur kernel length (MotionBlur)
adversarial            defocus         defocus radius (Defocus)
adversarial            dirty_lens      number and opacity of lens blotches (DirtyLens)
adversarial            flicker         amplitude of horizontal brightness bands (FlickerBanding)
adversarial            rain            RandomRain's rain presets, lightest to heaviest
adversarial            fog             fog coefficient (RandomFog)
resolution             downscale       down-then-up-sample factor, same frame size (Downscale)
resolution             resize          the frame is resized to a smaller size; boxes scaled
=====================  ==============  ======================================================

Boxes go through ``A.BboxParams(format="coco", clip=True)``, so geometric transforms (``resize``)
move them and every box stays inside the image; all other corruptions leave boxes unchanged.
Randomness is seeded per call (``Compose.set_random_seed``), so :func:`apply` is a pure function
of its inputs and ``seed``; :func:`derive_seed` gives each (image, corruption) its own seed from
the run seed and the image id, so results do not depend on iteration order.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from preflight.environment import import_albumentations
from preflight.stress.transforms import (
    BoxOcclusion,
    DirtyLens,
    FlickerBanding,
    box_pixel_region,
)

A = import_albumentations()

MAX_SEVERITY = 5

#: Per-corruption parameter for severities 1..5 (index = severity - 1).
SEVERITY_PARAMS: dict[str, dict[str, tuple]] = {
    "distribution_shift": {
        "colour_cast": (15, 30, 45, 60, 80),  # channel shift in grey levels
        "sensor_noise": (0.04, 0.08, 0.12, 0.18, 0.25),  # noise std / 255
        "iso_noise": (0.2, 0.4, 0.6, 0.8, 1.0),  # ISONoise intensity
        "jpeg": (50, 30, 15, 10, 5),  # JPEG quality
        "gamma": (140, 180, 230, 280, 350),  # gamma * 100 (> 100 darkens)
    },
    "occlusion": {
        "cutout_all": (0.25, 0.5, 0.75, 0.85, 0.95),  # occluded fraction of each box
        "cutout_half": (0.25, 0.5, 0.75, 0.85, 0.95),
    },
    "adversarial": {
        "motion_blur": (5, 9, 15, 21, 27),  # kernel length (px)
        "defocus": (2, 4, 6, 8, 10),  # radius (px)
        "dirty_lens": ((3, 0.35), (6, 0.5), (10, 0.6), (14, 0.7), (18, 0.8)),  # spots, opacity
        "flicker": (0.1, 0.2, 0.3, 0.4, 0.5),  # relative amplitude
        # RandomRain's rain preset (0: its lightest .. 2: its heaviest), brightness coefficient
        "rain": ((0, 0.9), (1, 0.8), (2, 0.7), (2, 0.6), (2, 0.5)),
        "fog": (0.3, 0.5, 0.7, 0.85, 1.0),  # fog coefficient
    },
    "resolution": {
        "downscale": (0.5, 0.35, 0.25, 0.18, 0.12),  # down-sampling factor
        "resize": (0.75, 0.5, 0.35, 0.25, 0.18),  # new frame side / old frame side
    },
}

FAMILIES: tuple[str, ...] = tuple(SEVERITY_PARAMS)


@lru_cache(maxsize=1)
def _rain_presets() -> tuple[str, ...]:
    """albumentations ``RandomRain``'s named rain presets, lightest first, read from its
    validation schema (``Literal[...]``, in the library's order of drop density), without its
    ``default``."""
    import typing

    hint = A.RandomRain.InitSchema.model_fields["rain_type"].annotation
    return tuple(t for t in typing.get_args(hint) if t != "default")
#: Corruptions that move pixels to new coordinates (boxes are transformed).
GEOMETRIC: frozenset[str] = frozenset({"resize"})


@dataclass(frozen=True, order=True)
class Corruption:
    """One named stress condition."""

    family: str
    name: str
    severity: int

    def __post_init__(self) -> None:
        if self.family not in SEVERITY_PARAMS:
            raise ValueError(f"unknown stress family {self.family!r}; expected one of {list(FAMILIES)}")
        if self.name not in SEVERITY_PARAMS[self.family]:
            raise ValueError(f"unknown corruption {self.name!r} in family {self.family!r}; "
                             f"expected one of {list(SEVERITY_PARAMS[self.family])}")
        if not 1 <= int(self.severity) <= MAX_SEVERITY:
            raise ValueError(f"severity must be in 1..{MAX_SEVERITY}, got {self.severity}")

    @property
    def key(self) -> str:
        return f"{self.family}/{self.name}/{self.severity}"

    @property
    def param(self):
        return SEVERITY_PARAMS[self.family][self.name][int(self.severity) - 1]


def default_suite(severities: Sequence[int] = (1, 2, 3),
                  families: Sequence[str] | None = None) -> list[Corruption]:
    """Every corruption of the chosen ``families`` (default all) at each of ``severities``."""
    fams = FAMILIES if families is None else tuple(families)
    return [Corruption(f, name, int(s)) for f in fams for name in SEVERITY_PARAMS[f]
            for s in severities]


@dataclass(frozen=True)
class StressedSample:
    """A corrupted frame and its boxes (pixel, top-left ``xywh``) in the corrupted frame.

    ``box_index`` maps each output box to its row in the input; ``occluded`` is the fraction of
    each box's pixel region hidden by added occluders (0 for non-occlusion corruptions).
    """

    corruption: Corruption
    image: np.ndarray
    boxes_xywh: np.ndarray
    class_ids: np.ndarray
    box_index: np.ndarray
    occluded: np.ndarray


def _transform(c: Corruption, height: int, width: int) -> A.BasicTransform:
    v = c.param
    n = c.name
    if n == "colour_cast":
        return A.RGBShift(r_shift_limit=(v, v), g_shift_limit=(0, 0), b_shift_limit=(-v, -v), p=1.0)
    if n == "sensor_noise":
        return A.GaussNoise(std_range=(v, v), mean_range=(0.0, 0.0), per_channel=True, p=1.0)
    if n == "iso_noise":
        return A.ISONoise(color_shift=(0.03, 0.03), intensity=(v, v), p=1.0)
    if n == "jpeg":
        return A.ImageCompression(compression_type="jpeg", quality_range=(v, v), p=1.0)
    if n == "gamma":
        return A.RandomGamma(gamma_limit=(v, v), p=1.0)
    if n in ("cutout_all", "cutout_half"):
        return BoxOcclusion(area_fraction=v, object_fraction=1.0 if n == "cutout_all" else 0.5)
    if n == "motion_blur":
        return A.MotionBlur(blur_limit=(v, v), allow_shifted=False, p=1.0)
    if n == "defocus":
        return A.Defocus(radius=(v, v), alias_blur=(0.1, 0.1), p=1.0)
    if n == "dirty_lens":
        return DirtyLens(n_spots=v[0], opacity=v[1])
    if n == "flicker":
        return FlickerBanding(amplitude=v)
    if n == "rain":
        return A.RandomRain(rain_type=_rain_presets()[v[0]], brightness_coefficient=v[1], p=1.0)
    if n == "fog":
        return A.RandomFog(fog_coef_range=(v, v), alpha_coef=0.08, p=1.0)
    if n == "downscale":
        return A.Downscale(scale_range=(v, v), interpolation_pair={
            "downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}, p=1.0)
    if n == "resize":
        return A.Resize(height=max(1, int(round(height * v))), width=max(1, int(round(width * v))),
                        interpolation=cv2.INTER_LINEAR, area_for_downscale="image", p=1.0)
    raise AssertionError(f"no pipeline for {c}")  # unreachable: Corruption validates names


@lru_cache(maxsize=256)
def build_pipeline(corruption: Corruption, height: int, width: int) -> A.Compose:
    """The albumentations pipeline of ``corruption`` for frames of ``height`` x ``width``.

    Cached per (corruption, frame size); callers re-seed it with ``set_random_seed`` before each
    use (not thread-safe: use one process per worker).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "processor for bboxes but no transform" on pixel-only
        return A.Compose(
            [_transform(corruption, height, width)],
            bbox_params=A.BboxParams(format="coco", label_fields=["class_ids", "box_index"],
                                     clip=True),
            seed=0,
        )


def derive_seed(seed: int, image_id: object, corruption: Corruption | None = None) -> int:
    """A 63-bit seed from the run ``seed``, the image id and the corruption (order-independent)."""
    text = f"{int(seed)}|{image_id}|{corruption.key if corruption else ''}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def sanitize_boxes(boxes_xywh: np.ndarray, class_ids: np.ndarray, height: int, width: int):
    """Clip ``xywh`` boxes to the frame; drop boxes with no area inside it.

    Returns ``(boxes, class_ids, kept_row_indices)``.
    """
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    cls = np.asarray(class_ids).reshape(-1).astype(np.int64)
    if len(cls) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(cls)} class ids")
    x0 = np.clip(boxes[:, 0], 0, width)
    y0 = np.clip(boxes[:, 1], 0, height)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, width)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    keep = np.flatnonzero((x1 - x0 > 0) & (y1 - y0 > 0))
    clipped = np.column_stack([x0, y0, x1 - x0, y1 - y0])[keep]
    return clipped, cls[keep], keep


def occluded_fractions(mask: np.ndarray, boxes_xywh: np.ndarray) -> np.ndarray:
    """Fraction of each box's pixel region where ``mask`` is non-zero."""
    height, width = mask.shape[:2]
    out = np.zeros(len(boxes_xywh), dtype=np.float64)
    for i, (x, y, w, h) in enumerate(np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)):
        x0, y0, x1, y1 = box_pixel_region(np.array([x, y, x + w, y + h]), height, width)
        out[i] = float(np.count_nonzero(mask[y0:y1, x0:x1])) / ((x1 - x0) * (y1 - y0))
    return out


def apply(corruption: Corruption, image: np.ndarray, boxes_xywh: np.ndarray,
          class_ids: np.ndarray, *, seed: int) -> StressedSample:
    """Apply ``corruption`` to an RGB ``uint8`` frame and its ``xywh`` pixel boxes.

    Input boxes are clipped to the frame first; boxes with no area inside the frame are dropped
    (``box_index`` says which input rows survive). Same inputs and ``seed`` give identical arrays.
    """
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected an HxW(xC) uint8 image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    boxes, cls, keep = sanitize_boxes(boxes_xywh, class_ids, height, width)
    pipe = build_pipeline(corruption, height, width)
    pipe.set_random_seed(int(seed) % (2**63))
    out = pipe(image=image, mask=np.zeros((height, width), dtype=np.uint8), bboxes=boxes,
               class_ids=cls, box_index=keep)
    new_boxes = np.asarray(out["bboxes"], dtype=np.float64).reshape(-1, 4)
    new_h, new_w = out["image"].shape[:2]
    # clip away float round-off from the normalise/denormalise round trip
    x0 = np.clip(new_boxes[:, 0], 0, new_w)
    y0 = np.clip(new_boxes[:, 1], 0, new_h)
    x1 = np.clip(new_boxes[:, 0] + new_boxes[:, 2], 0, new_w)
    y1 = np.clip(new_boxes[:, 1] + new_boxes[:, 3], 0, new_h)
    new_boxes = np.column_stack([x0, y0, x1 - x0, y1 - y0])
    return StressedSample(
        corruption=corruption,
        image=out["image"],
        boxes_xywh=new_boxes,
        class_ids=np.asarray(out["class_ids"], dtype=np.int64).reshape(-1),
        box_index=np.asarray(out["box_index"], dtype=np.int64).reshape(-1),
        occluded=occluded_fractions(out["mask"], new_boxes),
    )


def iter_stressed(corruption: Corruption,
                  images: Iterable[tuple[object, np.ndarray, np.ndarray, np.ndarray]],
                  *, seed: int) -> Iterator[tuple[object, StressedSample]]:
    """Stream ``(image_id, StressedSample)``; each image is seeded by :func:`derive_seed`."""
    for image_id, image, boxes, class_ids in images:
        yield image_id, apply(corruption, image, boxes, class_ids,
                              seed=derive_seed(seed, image_id, corruption))


def select_suite(names: Sequence[str], severities: Sequence[int] = (1, 2, 3)) -> list[Corruption]:
    """The suite for ``names`` (``family`` or ``family/corruption``; empty: everything) at each of
    ``severities``; an unknown name is an error that lists the valid ones."""
    if not names:
        return default_suite(severities)
    chosen: list[Corruption] = []
    for name in names:
        family, _, corruption = str(name).partition("/")
        if family not in SEVERITY_PARAMS:
            raise ValueError(f"unknown stress family {family!r}; known: {list(SEVERITY_PARAMS)}")
        known = SEVERITY_PARAMS[family]
        if corruption and corruption not in known:
            raise ValueError(f"unknown corruption {name!r}; {family} has {list(known)}")
        for corr in ([corruption] if corruption else list(known)):
            chosen.extend(Corruption(family, corr, int(s)) for s in severities)
    return list(dict.fromkeys(chosen))
