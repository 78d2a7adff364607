"""Learning curves: how a slice's metric grows with the number of labelled fine-tuning images.

Fit a saturating power law ``m(n) = a - b * n^(-c)`` (``a`` the asymptote in [0, 1], ``b >= 0``,
``c > 0``) to points from fine-tuning on nested subsets (e.g. 25/50/100% of the pool). With four
or more distinct sizes all three parameters are fitted (``scipy.optimize.curve_fit`` with
bounds); with two or three the exponent is fixed at ``default_c`` (a fully determined 3-parameter
fit through three noisy points extrapolates wildly) and ``a, b`` come from a bounded linear least
squares. Uncertainty is a parametric bootstrap: refit on ``fitted + N(0, sigma)`` where ``sigma``
is each point's standard error (from its interval when given) or the residual spread.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit, lsq_linear

from preflight.metrics.intervals import Z95, slice_rng

log = logging.getLogger(__name__)

#: exponent used when too few points to fit it (learning-curve exponents for vision tasks are
#: typically 0.3-0.7; 0.5 is the usual middle)
DEFAULT_C = 0.5
C_BOUNDS = (0.05, 3.0)
#: floor on a point's standard error, so an exact fit through 2-3 points still has an interval
MIN_SIGMA = 0.005
CURVE_KEY_COLUMNS = ("slice_column", "slice_value", "metric")
#: the column of a learning-curve points table that holds the training-set size of each point
N_IMAGES_TRAIN = "n_images_train"


class LearningCurveError(ValueError):
    """The points cannot define a learning curve (too few distinct sizes, bad values)."""


@dataclass(frozen=True)
class LearningCurveFit:
    """A fitted ``m(n) = a - b * n^(-c)``; ``n_max`` is the largest observed training size."""

    a: float
    b: float
    c: float
    n_points: int
    n_max: float
    saturated: bool
    method: str  # "curve_fit" (3 parameters) | "fixed_c" (c fixed, a and b fitted)
    saturation_tol: float = 0.01
    residual_rms: float = 0.0
    #: bootstrap replicates of (a, b, c), for intervals; empty when not bootstrapped
    samples: tuple[tuple[float, float, float], ...] = ()

    def predict(self, n: float | np.ndarray) -> float | np.ndarray:
        """The curve at ``n`` labelled images (``n > 0``)."""
        out = _power_law(np.asarray(n, dtype=np.float64), self.a, self.b, self.c)
        return float(out) if np.ndim(out) == 0 else out

    def gain_from_doubling(self, n: float | None = None) -> float:
        """``m(2n) - m(n)`` at ``n`` (default: the largest observed size)."""
        n = float(self.n_max if n is None else n)
        return float(self.b * n ** (-self.c) * (1.0 - 2.0 ** (-self.c)))

    def images_needed(self, target: float, level: float = 0.95) -> tuple[float, float, float]:
        """Total labelled images at which the curve reaches ``target``: (estimate, low, high).

        ``inf`` where the asymptote is below the target (more data of this kind will not get
        there); the interval is the bootstrap percentile interval, widened to hold the estimate.
        """
        estimate = _n_for_target(self.a, self.b, self.c, target)
        if not self.samples:
            return estimate, estimate, estimate
        s = np.asarray(self.samples, dtype=np.float64)
        ns = np.sort(_n_for_target_array(s[:, 0], s[:, 1], s[:, 2], target))
        alpha = (1.0 - level) / 2.0
        # order statistics, not interpolation: replicates may be inf
        lo = float(ns[int(math.floor(alpha * (len(ns) - 1)))])
        hi = float(ns[int(math.ceil((1.0 - alpha) * (len(ns) - 1)))])
        return estimate, min(lo, estimate), max(hi, estimate)

    def reaches(self, target: float) -> bool:
        """Whether the asymptote is at or above ``target``."""
        return self.a >= target

    def to_dict(self) -> dict[str, object]:
        return {"a": self.a, "b": self.b, "c": self.c, "n_points": self.n_points,
                "n_max": self.n_max, "saturated": self.saturated, "method": self.method,
                "saturation_tol": self.saturation_tol, "residual_rms": self.residual_rms,
                "gain_from_doubling": self.gain_from_doubling()}


def _power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * np.power(n, -c)


def _n_for_target(a: float, b: float, c: float, target: float) -> float:
    return float(_n_for_target_array(np.array([a]), np.array([b]), np.array([c]), target)[0])


def _n_for_target_array(a: np.ndarray, b: np.ndarray, c: np.ndarray, target: float) -> np.ndarray:
    """Solve ``a - b n^-c = target`` for n: ``(b / (a - target))^(1/c)``; inf if ``a <= target``."""
    gap = a - target
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        n = np.power(np.where(gap > 0, b / gap, np.inf), 1.0 / c)
    return np.where(gap > 0, np.where(b > 0, n, 0.0), np.inf)


def _fit_fixed_c(x: np.ndarray, y: np.ndarray, w: np.ndarray, c: float) -> tuple[float, float]:
    """Bounded weighted linear least squares for ``y = a - b' x^-c`` (x scaled to n / n_max)."""
    design = np.column_stack([np.ones_like(x), -np.power(x, -c)]) * w[:, None]
    res = lsq_linear(design, y * w, bounds=([0.0, 0.0], [1.0, np.inf]))
    return float(res.x[0]), float(res.x[1])


def _fit_free(x: np.ndarray, y: np.ndarray, sigma: np.ndarray,
              c0: float) -> tuple[float, float, float]:
    """Three-parameter bounded fit in scaled units; falls back to fixed c if it fails."""
    a0, b0 = _fit_fixed_c(x, y, 1.0 / sigma, c0)
    p0 = (min(max(a0, 1e-6), 1.0 - 1e-6), max(b0, 1e-6), c0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            popt, _ = curve_fit(_power_law, x, y, p0=p0, sigma=sigma, absolute_sigma=True,
                                bounds=([0.0, 0.0, C_BOUNDS[0]], [1.0, np.inf, C_BOUNDS[1]]),
                                maxfev=5000)
        return float(popt[0]), float(popt[1]), float(popt[2])
    except (RuntimeError, ValueError):
        return a0, b0, c0


def _fit_scaled(x: np.ndarray, y: np.ndarray, sigma: np.ndarray, free_c: bool,
                c0: float) -> tuple[float, float, float]:
    if free_c:
        return _fit_free(x, y, sigma, c0)
    a, b = _fit_fixed_c(x, y, 1.0 / sigma, c0)
    return a, b, c0


def fit_learning_curve(
    n_images: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    *,
    sigma: Sequence[float] | np.ndarray | None = None,
    saturation_tol: float = 0.01,
    default_c: float = DEFAULT_C,
    min_points_free_c: int = 4,
    n_boot: int = 200,
    seed: int = 0,
) -> LearningCurveFit:
    """Fit ``m(n) = a - b n^-c`` to ``(n_images, values)``; ``sigma`` are per-point standard
    errors (optional). ``saturated``: doubling the largest observed size gains < ``saturation_tol``.
    """
    n = np.asarray(n_images, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if n.shape != y.shape or n.ndim != 1:
        raise LearningCurveError(f"n_images and values must be 1-d of equal length, got "
                                 f"{n.shape} and {y.shape}")
    ok = np.isfinite(n) & np.isfinite(y) & (n > 0)
    if len(np.unique(n[ok])) < 2:
        raise LearningCurveError(f"a learning curve needs points at >= 2 distinct positive "
                                 f"training sizes, got sizes {sorted(set(n[ok].tolist()))}")
    if ((y[ok] < 0) | (y[ok] > 1)).any():
        raise LearningCurveError(f"metric values must be in [0, 1], got {y[ok].tolist()}")
    s = _point_sigma(sigma, ok, len(n))
    n, y = n[ok], y[ok]
    n_max = float(n.max())
    x = n / n_max  # scaled sizes keep b well-conditioned; b = b' * n_max^c in original units
    free_c = len(np.unique(n)) >= min_points_free_c
    a, b_scaled, c = _fit_scaled(x, y, s if s is not None else np.ones_like(y), free_c, default_c)
    resid = y - _power_law(x, a, b_scaled, c)
    dof = max(len(y) - (3 if free_c else 2), 0)
    rms = float(np.sqrt(np.sum(resid**2) / dof)) if dof else 0.0
    noise = s if s is not None else np.full_like(y, max(rms, MIN_SIGMA))
    samples = _bootstrap(x, a, b_scaled, c, noise, free_c, default_c, n_boot, seed, n_max)
    b = b_scaled * n_max**c
    gain = b * n_max ** (-c) * (1.0 - 2.0 ** (-c))
    return LearningCurveFit(a=a, b=b, c=c, n_points=len(y), n_max=n_max,
                            saturated=bool(gain < saturation_tol),
                            method="curve_fit" if free_c else "fixed_c",
                            saturation_tol=saturation_tol,
                            residual_rms=float(np.sqrt(np.mean(resid**2))), samples=samples)


def _point_sigma(sigma, ok: np.ndarray, size: int) -> np.ndarray | None:
    if sigma is None:
        return None
    s = np.asarray(sigma, dtype=np.float64)
    if s.shape != (size,):
        raise LearningCurveError(f"sigma must have one value per point ({size}), got {s.shape}")
    s = s[ok]
    return np.where(np.isfinite(s), np.maximum(s, MIN_SIGMA), MIN_SIGMA)


def _bootstrap(x: np.ndarray, a: float, b: float, c: float, noise: np.ndarray, free_c: bool,
               default_c: float, n_boot: int, seed: int,
               n_max: float) -> tuple[tuple[float, float, float], ...]:
    """Parametric bootstrap replicates of (a, b, c) in original units."""
    if n_boot <= 0:
        return ()
    rng = np.random.default_rng(seed)
    fitted = _power_law(x, a, b, c)
    ys = np.clip(fitted + rng.normal(size=(n_boot, len(x))) * noise, 0.0, 1.0)
    out = []
    for y_star in ys:
        a_s, b_s, c_s = _fit_scaled(x, y_star, noise, free_c, c if free_c else default_c)
        out.append((a_s, b_s * n_max**c_s, c_s))
    return tuple(out)


def fit_slice_curves(
    points: pd.DataFrame,
    *,
    keys: Iterable[tuple[str, str, str]] | None = None,
    saturation_tol: float = 0.01,
    default_c: float = DEFAULT_C,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[tuple[str, str, str], LearningCurveFit]:
    """One curve per ``(slice_column, slice_value, metric)`` of a long table of points.

    ``points`` has ``slice_column, slice_value, metric, n_images_train, value`` and optionally
    ``ci_low, ci_high`` (95%, turned into per-point standard errors). ``keys`` restricts the fit
    to those slices (e.g. the failing ones). Rows with ``n_images_train <= 0`` (the off-the-shelf
    model) are not on the curve and are ignored; slices with fewer than two sizes are skipped.
    """
    missing = {*CURVE_KEY_COLUMNS, N_IMAGES_TRAIN, "value"} - set(points.columns)
    if missing:
        raise LearningCurveError(f"learning-curve points lack columns {sorted(missing)}")
    frame = points[points[N_IMAGES_TRAIN] > 0]
    wanted = None if keys is None else {tuple(map(str, k)) for k in keys}
    fits: dict[tuple[str, str, str], LearningCurveFit] = {}
    for key, group in frame.groupby(list(CURVE_KEY_COLUMNS), sort=True):
        key = tuple(map(str, key))
        if wanted is not None and key not in wanted:
            continue
        sigma = _sigma_from_interval(group)
        try:
            fits[key] = fit_learning_curve(
                group[N_IMAGES_TRAIN].to_numpy(), group["value"].to_numpy(), sigma=sigma,
                saturation_tol=saturation_tol, default_c=default_c, n_boot=n_boot,
                seed=int(slice_rng(seed, *key).integers(2**31)))
        except LearningCurveError as exc:
            log.warning("learning curve for %s skipped: %s", "/".join(key), exc)
    return fits


def _sigma_from_interval(group: pd.DataFrame) -> np.ndarray | None:
    if not {"ci_low", "ci_high"} <= set(group.columns):
        return None
    width = (group["ci_high"] - group["ci_low"]).to_numpy(dtype=np.float64)
    return width / (2.0 * Z95) if np.isfinite(width).any() else None


def curves_table(fits: dict[tuple[str, str, str], LearningCurveFit],
                 targets: dict[tuple[str, str, str], float] | None = None) -> pd.DataFrame:
    """A summary row per curve: parameters, saturation and (with a target) images needed."""
    rows = []
    for key, fit in fits.items():
        target = (targets or {}).get(key, np.nan)
        need = fit.images_needed(target) if np.isfinite(target) else (np.nan,) * 3
        rows.append({**dict(zip(CURVE_KEY_COLUMNS, key, strict=True)), **fit.to_dict(),
                     "target": target, "images_needed": need[0],
                     "images_needed_low": need[1], "images_needed_high": need[2]})
    columns = [*CURVE_KEY_COLUMNS, "a", "b", "c", "n_points", "n_max", "saturated", "method",
               "saturation_tol", "residual_rms", "gain_from_doubling", "target",
               "images_needed", "images_needed_low", "images_needed_high"]
    return pd.DataFrame(rows, columns=columns)
