"""Pixel properties of a frame and their fixed slice bins.

Each image is decoded once, from the same bytes that were hashed for its id. Properties are
computed on the luma (``Y = 0.299 R + 0.587 G + 0.114 B``) at a working resolution of at most
``WORK_SIZE`` px on the longer side (downscaled with ``INTER_AREA``, never upscaled) so that a
4K frame and a 640 px frame of the same scene land in the same bin:

=============  ===========================================================  ===================
property       definition                                                    range
=============  ===========================================================  ===================
brightness     mean luma / 255                                               0..1
contrast       standard deviation of luma / 255                              0..0.5
sharpness      variance of the 3x3 Laplacian of luma (0-255 scale)          0..~1e4
colour_cast    max |channel mean - mean of channel means| / 255              0..~0.67
=============  ===========================================================  ===================

The bins are fixed thresholds (``BINS``), not quantiles, so a frame gets the same bin in every run
and the bins of two weeks of data can be compared for drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

WORK_SIZE = 640

#: property -> (bin column, (lower, upper) thresholds, (labels low..high)).
#: A value v gets labels[0] when v < lower, labels[1] when lower <= v < upper, else labels[2].
BINS: dict[str, tuple[str, tuple[float, float], tuple[str, str, str]]] = {
    "brightness": ("brightness_bin", (0.30, 0.65), ("low", "mid", "high")),
    "contrast": ("contrast_bin", (0.08, 0.20), ("low", "mid", "high")),
    "sharpness": ("sharpness_bin", (50.0, 400.0), ("low", "mid", "high")),
    "colour_cast": ("colour_cast_bin", (0.03, 0.08), ("none", "mild", "strong")),
}

PROPERTY_COLUMNS: tuple[str, ...] = tuple(BINS)

#: Object size bins on the box area (COCO convention).
SIZE_BINS: tuple[float, float] = (32.0**2, 96.0**2)


@dataclass
class Decoded:
    """The outcome of decoding one file: either an RGB image or an error code and message."""

    image: np.ndarray | None  # RGB uint8 HxWx3
    error: str | None = None  # empty_file | truncated_image | undecodable_image
    detail: str | None = None


def _truncated(data: bytes) -> str | None:
    """A message when a JPEG/PNG stream is visibly cut short (decoders often accept these)."""
    tail = data[-64:].rstrip(b"\x00\r\n\t ")
    if data[:3] == b"\xff\xd8\xff" and not tail.endswith(b"\xff\xd9"):
        return "JPEG has no end-of-image marker (file cut short)"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-32:]:
        return "PNG has no IEND chunk (file cut short)"
    return None


def decode(data: bytes) -> Decoded:
    """Decode image bytes to RGB; never raises."""
    if not data:
        return Decoded(None, "empty_file", "zero-byte file")
    cut = _truncated(data)
    if cut:
        return Decoded(None, "truncated_image", cut)
    try:
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # pragma: no cover - depends on the codec
        bgr = None
        detail = f"decoder error: {exc}"
    else:
        detail = "not a decodable image (wrong extension or corrupt data)"
    if bgr is None or bgr.size == 0:
        return Decoded(None, "undecodable_image", detail)
    return Decoded(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def pixel_properties(rgb: np.ndarray) -> dict[str, float]:
    """brightness, contrast, sharpness, colour_cast of an RGB uint8 image (see module doc)."""
    h, w = rgb.shape[:2]
    scale = WORK_SIZE / max(h, w)
    if scale < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    mean, std = cv2.meanStdDev(luma)
    lap = cv2.Laplacian(luma, cv2.CV_64F, ksize=3)
    channel_means = rgb.reshape(-1, 3).mean(axis=0) / 255.0
    cast = float(np.max(np.abs(channel_means - channel_means.mean())))
    return {
        "brightness": float(mean[0, 0]) / 255.0,
        "contrast": float(std[0, 0]) / 255.0,
        "sharpness": float(lap.var()),
        "colour_cast": cast,
    }


def perceptual_hash(rgb: np.ndarray) -> str:
    """The 64-bit perceptual hash (DCT ``phash``, ``imagehash``) of an RGB frame, as 16 hex
    digits: near-identical frames (consecutive video frames) differ in a few bits."""
    import imagehash
    from PIL import Image

    return str(imagehash.phash(Image.fromarray(rgb)))


def bin_values(values: pd.Series, prop: str) -> pd.Series:
    """The fixed bin label of each value (missing values stay missing)."""
    _, (lo, hi), labels = BINS[prop]
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    out = np.where(v < lo, labels[0], np.where(v < hi, labels[1], labels[2])).astype(object)
    out[np.isnan(v)] = None
    return pd.Series(out, index=values.index, dtype=object)


def size_bin(area: pd.Series) -> pd.Series:
    """``small`` (< 32²), ``medium`` (< 96²) or ``large`` from box area in px²."""
    a = pd.to_numeric(area, errors="coerce").to_numpy(dtype=float)
    out = np.where(a < SIZE_BINS[0], "small", np.where(a < SIZE_BINS[1], "medium", "large"))
    out = out.astype(object)
    out[np.isnan(a)] = None
    return pd.Series(out, index=area.index, dtype=object)
