"""Uncertainty: Wilson score intervals for rates (box-level and frame-clustered), percentile
bootstrap intervals, thin flags, and the frames a rate needs to be told apart from a bar."""

from __future__ import annotations

import zlib

import numpy as np

from preflight.metrics.kernels import grouped_cluster_sums

#: two-sided 95% normal quantile
Z95 = 1.959963984540054


def wilson_interval(successes, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for ``successes / n`` (arrays broadcast); NaN where ``n == 0``.

    ``centre = (p + z²/2n) / (1 + z²/n)``, ``half = z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²)``.
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        z2 = z * z
        denom = 1.0 + z2 / n
        centre = (p + z2 / (2.0 * n)) / denom
        half = z / denom * np.sqrt(np.maximum(p * (1.0 - p) / n + z2 / (4.0 * n * n), 0.0))
        low = np.clip(centre - half, 0.0, 1.0)
        high = np.clip(centre + half, 0.0, 1.0)
    bad = ~(n > 0)
    return np.where(bad, np.nan, low), np.where(bad, np.nan, high)


def cluster_wilson_interval(successes, trials, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson interval for a rate pooled over clusters (the boxes of one frame are not
    independent): ``successes``/``trials`` are ``(m, ...)`` counts per frame.

    The ratio estimator ``p = sum(y) / sum(n)`` gets its between-frame variance
    ``m/(m-1) * sum((y - p n)^2) / sum(n)^2`` (Kish / Korn-Graubard); its ratio to the binomial
    variance is the design effect ``deff`` (floored at 1), and the Wilson interval is taken at the
    effective sample size ``sum(n) / deff``. Where the frames show no variation to estimate it
    from (``p`` is 0 or 1, or a single frame) every frame counts as one observation
    (``deff = sum(n) / frames``: the boxes of a frame are assumed to fail together). NaN where
    ``sum(n) == 0``.
    """
    y = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if y.shape != n.shape:
        raise ValueError(f"successes {y.shape} and trials {n.shape} differ in shape")
    total_n, total_y = n.sum(axis=0), y.sum(axis=0)
    frames = (n > 0).sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = total_y / total_n
        resid = y - p * n
        var_cluster = frames / (frames - 1.0) * (resid * resid).sum(axis=0) / (total_n * total_n)
        var_binom = p * (1.0 - p) / total_n
        estimable = (frames > 1) & (var_binom > 0)
        deff = np.where(estimable, var_cluster / np.where(estimable, var_binom, 1.0),
                        total_n / frames)
        n_eff = total_n / np.maximum(deff, 1.0)
        return wilson_interval(p * n_eff, n_eff, z)


def cluster_wilson_grouped(successes, trials, labels: np.ndarray, n_groups: int,
                           z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cluster_wilson_interval` of many frame subsets at once: ``labels (m, C)`` gives
    each frame's subset in each of ``C`` columns (-1: none; the subsets of one column are
    disjoint), ``successes``/``trials`` are ``(m, ...)`` counts per frame. Returns ``(lo, hi)``
    of shape ``(n_groups, ...)``: row ``g`` equals ``cluster_wilson_interval`` of the frames of
    subset ``g`` (the same terms, summed in another order)."""
    y = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if y.shape != n.shape:
        raise ValueError(f"successes {y.shape} and trials {n.shape} differ in shape")
    rest = y.shape[1:]
    y2 = np.ascontiguousarray(y.reshape(len(y), -1))
    n2 = np.ascontiguousarray(n.reshape(len(n), -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        total_n, total_y, frames, sq, p = grouped_cluster_sums(
            y2, n2, np.ascontiguousarray(labels, dtype=np.int64), n_groups)
        var_cluster = frames / (frames - 1.0) * sq / (total_n * total_n)
        var_binom = p * (1.0 - p) / total_n
        estimable = (frames > 1) & (var_binom > 0)
        deff = np.where(estimable, var_cluster / np.where(estimable, var_binom, 1.0),
                        total_n / frames)
        n_eff = total_n / np.maximum(deff, 1.0)
        lo, hi = wilson_interval(p * n_eff, n_eff, z)
    return lo.reshape((n_groups, *rest)), hi.reshape((n_groups, *rest))


def frames_to_decide(value, ci_low, ci_high, bar, n_images, n_boxes=None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Labelled frames (and boxes, at the sample's boxes per frame) a row needs in all for its
    95% interval to lie wholly on one side of ``bar`` if the observed rate holds.

    The interval's half-width shrinks as ``1/sqrt(frames)`` (also under clustering: the design
    effect is a per-frame constant), so ``frames = n_images * (half_width / |value - bar|)^2``.
    Infinite where the value sits on the bar; NaN where there is no interval.
    """
    v, lo, hi, b, n = (np.asarray(x, dtype=np.float64) for x in
                       (value, ci_low, ci_high, bar, n_images))
    with np.errstate(invalid="ignore", divide="ignore"):
        half = np.where(v >= b, v - lo, hi - v)                 # the side facing the bar
        gap = np.abs(v - b)
        frames = np.where(gap > 0, np.ceil(n * (half / gap) ** 2), np.inf)
        frames = np.where(np.isfinite(half) & (n > 0), np.maximum(frames, n), np.nan)
        if n_boxes is None:
            return frames, np.full_like(frames, np.nan)
        per_frame = np.asarray(n_boxes, dtype=np.float64) / n
        return frames, np.ceil(frames * per_frame)


def percentile_interval(samples: np.ndarray, point: np.ndarray | None = None,
                        level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval per column of ``samples (B, m)``, ignoring NaN replicates.

    With ``point`` given, the interval is widened where needed so that it contains the point
    estimate (a percentile interval of a skewed statistic can miss it by a hair); NaN where there
    is no finite replicate or the point estimate is NaN.
    """
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    alpha = (1.0 - level) / 2.0
    low = np.full(s.shape[1], np.nan)
    high = np.full(s.shape[1], np.nan)
    ok = np.isfinite(s).any(axis=0)
    if ok.any():
        low[ok], high[ok] = nanquantiles(s[:, ok], (alpha, 1.0 - alpha))
    if point is not None:
        pt = np.asarray(point, dtype=np.float64).reshape(-1)
        low = np.where(np.isfinite(pt), np.fmin(low, pt), np.nan)
        high = np.where(np.isfinite(pt), np.fmax(high, pt), np.nan)
        low = np.where(ok, low, np.nan)
        high = np.where(ok, high, np.nan)
    return low, high


def nanquantiles(samples: np.ndarray, qs) -> tuple[np.ndarray, ...]:
    """``np.nanquantile(samples, q, axis=0)`` (linear interpolation) for each ``q``, every
    column at once (numpy's ``nanquantile`` loops over columns in Python); columns with no finite
    value give NaN."""
    s = np.where(np.isfinite(samples), samples, np.nan)
    s = np.sort(s, axis=0)                                   # NaN sort last
    count = np.isfinite(s).sum(axis=0)
    cols = np.arange(s.shape[1])
    out = []
    for q in qs:
        h = (count - 1) * float(q)
        lo = np.floor(h).astype(np.int64).clip(0, None)
        hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
        a, b = s[lo, cols], s[hi, cols]
        # numpy's _lerp: a + (b - a) * t, computed from the far end when t >= 0.5
        t = h - lo
        diff = b - a
        with np.errstate(invalid="ignore"):
            val = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
            val = np.where(a == b, a, val)
        out.append(np.where(count > 0, val, np.nan))
    return tuple(out)


def slice_rng(seed: int, *key: object) -> np.random.Generator:
    """A generator determined by ``seed`` and the slice key only, so that a slice's bootstrap does
    not depend on which other slices were requested."""
    h = zlib.crc32("\x1f".join(map(str, key)).encode())
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, h]))


def resample_weights(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """``(resamples, n)`` integer weights: how often each of ``n`` units is drawn (with
    replacement, ``n`` draws per resample)."""
    draws = rng.integers(0, n, size=(resamples, n)) if n else np.zeros((resamples, 0), int)
    offs = np.arange(resamples)[:, None] * n
    return np.bincount((draws + offs).ravel(), minlength=resamples * n).reshape(resamples, n)


def thin_flag(n_images, n_boxes, min_images: int, min_boxes: int) -> np.ndarray:
    """True where the sample is too small for the estimate to be read as a fact."""
    return (np.asarray(n_images) < min_images) | (np.asarray(n_boxes) < min_boxes)
