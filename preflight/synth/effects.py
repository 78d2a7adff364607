"""Post-render edge-case effects for the synthetic warehouse (see ``preflight.synth.generate``).

Lighting gain and vignette, colour cast, flicker banding, motion blur, dirty lens and sensor
noise; JPEG quality is drawn per frame in ``_plan`` and applied when ``generate`` encodes.
Effects never move the labels.
"""

from __future__ import annotations

import cv2
import numpy as np

from preflight.synth.scene import ProductionRates, _Cond


def _vignette(S: int, cx: float, cy: float) -> np.ndarray:
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    r2 = (xx - cx) ** 2 + (yy - cy) ** 2
    return (1.15 - 0.9 * np.minimum(r2, 1.0))[:, :, None].astype(np.float32)



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
