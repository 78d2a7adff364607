"""Embedding drift: do the frames *as the model sees them* look like the reference set?

Pixel properties only catch the shifts someone thought of; the model's own pooled backbone
features (or, without a model, colour histograms) catch the rest. Half of the reference
embeddings (a seeded random half) fix a PCA basis (``k`` components); the other half and the
current batch are projected on it and compared two ways (fitting and comparing on the same rows
would make identical distributions look drifted: fitted rows sit closer to their own subspace):

* per component, a KS test, with the smallest p-value Bonferroni-corrected for the ``k + 1``
  tests (the components plus the PCA reconstruction error, which sees a shift that lies outside
  the reference's main directions);
* overall, a domain classifier: a logistic regression, cross-validated with seeded stratified
  folds, that tries to tell reference from current on the same ``k + 1`` features. Its AUC is
  the row's ``statistic``: 0.5 = indistinguishable, 1.0 = fully separable.

Level: ``fail`` when ``AUC > auc_fail`` **and** the corrected p-value ``< p_value``; ``warn`` when
only one of the two holds; ``ok`` otherwise (fewer than ``min_samples`` rows on a side: ``ok``,
not enough evidence; the held-out half counts as the reference side). The row is kind ``input``
(an embedding is a view of the input), feature ``embedding`` unless named otherwise (keep the
``embedding`` prefix: the history tracks such rows by their AUC); ``psi`` is the PSI of the most
shifted component and ``reference_n`` the held-out half.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from preflight.drift.input import (
    DriftInputError,
    DriftThresholds,
    drift_frame,
    drift_row,
    not_enough_row,
    psi,
    psi_bin_count,
)


def _matrix(name: str, x) -> np.ndarray:
    m = np.asarray(x, dtype=np.float64)
    if m.ndim != 2:
        raise DriftInputError(f"{name} embeddings must be an (n, d) matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise DriftInputError(f"{name} embeddings contain NaN or inf "
                              f"({int((~np.isfinite(m)).any(axis=1).sum())} rows)")
    return m


def domain_classifier_auc(reference: np.ndarray, current: np.ndarray, *, seed: int = 0,
                          folds: int = 5) -> float:
    """Cross-validated ROC AUC of a logistic regression telling ``current`` rows from
    ``reference`` rows (NaN when a side has fewer than 2 rows)."""
    n_min = min(len(reference), len(current))
    if n_min < 2:
        return float("nan")
    x = np.vstack([reference, current])
    y = np.r_[np.zeros(len(reference), int), np.ones(len(current), int)]
    cv = StratifiedKFold(n_splits=min(folds, n_min), shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    proba = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, proba))


def embedding_drift(reference, current, *, n_components: int = 10, seed: int = 0,
                    folds: int = 5, feature: str = "embedding",
                    thresholds: DriftThresholds | None = None) -> pd.DataFrame:
    """One drift row comparing ``current`` embeddings (n x d) with ``reference`` ones (m x d)."""
    t = thresholds or DriftThresholds()
    ref, cur = _matrix("reference", reference), _matrix("current", current)
    if ref.shape[1] != cur.shape[1]:
        raise DriftInputError(f"reference embeddings have {ref.shape[1]} dimensions but current "
                              f"ones have {cur.shape[1]}: embed both with the same model")
    # PCA is fitted on one half of the reference and the other half is what gets compared: the
    # rows a PCA was fitted on sit closer to its subspace than any new rows, so comparing them
    # with the current batch would show "drift" (in reconstruction error, component variance) on
    # identical distributions.
    order = np.random.default_rng(seed).permutation(len(ref))
    fit_rows, held_rows = order[: len(ref) // 2], order[len(ref) // 2:]
    if min(len(held_rows), len(cur)) < t.min_samples or len(fit_rows) < 2:
        return drift_frame([not_enough_row("input", feature, len(held_rows), len(cur), t,
                                           "rows (half the reference is held out)")])
    fit, held = ref[fit_rows], ref[held_rows]
    k = int(max(1, min(n_components, ref.shape[1], len(fit) - 1)))
    pca = PCA(n_components=k, random_state=seed).fit(fit)

    def features(x: np.ndarray) -> np.ndarray:
        z = pca.transform(x)
        residual = np.linalg.norm(x - pca.inverse_transform(z), axis=1)
        return np.column_stack([z, residual])

    f_ref, f_cur = features(held), features(cur)
    names = [f"pc{i + 1}" for i in range(k)] + ["reconstruction error"]
    tests = [stats.ks_2samp(f_ref[:, j], f_cur[:, j]) for j in range(k + 1)]
    d = np.array([r.statistic for r in tests])
    p_corr = np.minimum(np.array([r.pvalue for r in tests]) * (k + 1), 1.0)
    worst = int(np.argmin(p_corr))
    p_min = float(p_corr[worst])
    bins = psi_bin_count(len(held), len(cur), t)
    worst_psi = psi(f_ref[:, worst], f_cur[:, worst], bins, t.psi_epsilon)
    auc = domain_classifier_auc(f_ref, f_cur, seed=seed, folds=folds)
    separable, significant = auc > t.auc_fail, p_min < t.p_value
    level = "fail" if separable and significant else "warn" if separable or significant else "ok"
    order = np.argsort(p_corr, kind="stable")[:3]
    top = "; ".join(f"{names[j]} D={d[j]:.3f} p={p_corr[j]:.2g}" for j in order)
    explained = float(pca.explained_variance_ratio_.sum())
    detail = (f"domain-classifier AUC {auc:.3f} (fail above {t.auc_fail:g}); PCA fitted on "
              f"{len(fit)} of {len(ref)} reference rows, the other {len(held)} compared; {k} "
              f"components ({explained:.0%} of variance) + reconstruction error; "
              f"Bonferroni-corrected KS: {top}")
    return drift_frame([drift_row("input", feature, auc, p_min, worst_psi, len(held), len(cur),
                             level, detail)])


def embed_images(model_embed_fn: Callable[[Sequence[np.ndarray]], np.ndarray],
                 images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
    """Embeddings ``(n, d)`` of ``images``, calling ``model_embed_fn`` on batches of at most
    ``batch_size`` images (it must return one row per image)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not len(images):
        raise DriftInputError("no images to embed")
    parts = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        out = np.asarray(model_embed_fn(batch), dtype=np.float64)
        if out.ndim != 2 or out.shape[0] != len(batch):
            raise DriftInputError(f"embedding function returned shape {out.shape} for a batch of "
                                  f"{len(batch)} images; expected ({len(batch)}, d)")
        if parts and out.shape[1] != parts[0].shape[1]:
            raise DriftInputError(f"embedding width changed between batches: {parts[0].shape[1]} "
                                  f"then {out.shape[1]}")
        parts.append(out)
    return np.vstack(parts)


def colour_histogram_embedding(rgb_images: Sequence[np.ndarray], bins: int = 8) -> np.ndarray:
    """A model-free embedding ``(n, 3 * bins)``: each RGB channel's histogram over ``bins``
    equal-width bins of the 0-255 intensity, as shares of the frame's pixels (each channel's block
    sums to 1)."""
    if not 1 <= bins <= 256:
        raise ValueError(f"bins must be in 1..256, got {bins}")
    out = np.zeros((len(rgb_images), 3 * bins))
    offsets = np.arange(3) * bins
    for i, img in enumerate(rgb_images):
        a = np.asarray(img)
        if a.ndim != 3 or a.shape[2] != 3:
            raise DriftInputError(f"image {i} has shape {a.shape}; expected an RGB HxWx3 array")
        # uint8 intensity -> bin index, then shift each channel into its own block
        idx = (np.clip(a.reshape(-1, 3), 0, 255).astype(np.int64) * bins // 256) + offsets
        out[i] = np.bincount(idx.ravel(), minlength=3 * bins) / (a.shape[0] * a.shape[1])
    return out


__all__ = ["embedding_drift", "embed_images", "colour_histogram_embedding",
           "domain_classifier_auc"]
