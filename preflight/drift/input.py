"""Input drift: does this batch of frames look like the reference evaluation set?

Every drift check in ``preflight.drift`` returns rows of one table (``DRIFT_COLUMNS``):
``kind`` (``input`` | ``prediction`` | ``performance``), ``feature``, ``statistic``, ``p_value``,
``psi``, ``reference_n``, ``current_n``, ``level`` (``ok`` | ``warn`` | ``fail``) and ``detail`` (a
sentence naming the test and what moved).

Numeric features (the pixel properties of ``preflight.data.properties`` and any numeric column
asked for) get the two-sample Kolmogorov-Smirnov test (``statistic`` = KS D) and the Population
Stability Index over reference-quantile bins. Categorical features (the slice mix: shift,
lighting, camera...) get a chi-square test of the 2 x K count table (``statistic`` = chi²) and the
PSI over categories.

The level of a feature (:func:`psi_level`) needs both size and evidence to fail:

* ``fail`` when ``psi >= psi_fail`` **and** ``p < p_value`` (a large shift that is not noise);
* ``warn`` when ``psi >= psi_warn`` (a visible shift, or a large one the test cannot confirm);
* ``ok`` otherwise -- including a significant p-value with a small PSI (with enough frames any
  tiny shift is significant; it is reported in ``detail`` but not raised).

Fewer than ``min_samples`` values on either side is ``ok`` with a ``not enough evidence`` detail.

Frames come in bursts (a camera's near-duplicate frames seconds apart share shift, lighting and
colour cast) and detections come in images, so values are not independent and the classical
p-values call chance differences significant (a 40-frame week-1 batch "fails" against another
week-1 batch). Given group ids (``group_column``: ingestion's ``group_id`` for frames, the image
for detections), the evidence is counted in groups: ``min_samples`` applies to groups and the
p-value comes from a permutation test that reassigns whole groups between the two sides
(``permutations``, seeded). The statistic, the PSI and the shares stay per value.

PSI = sum over bins of ``(c - r) * ln(c / r)`` with ``r``, ``c`` the reference and current shares
of a bin, each floored at ``psi_epsilon`` so that an empty bin does not give an infinite index.
Under no drift PSI is about ``(bins - 1) * (1/n_ref + 1/n_cur)`` from sampling noise alone, so the
number of quantile bins is reduced for small batches (at least ``psi_min_per_bin`` values -- or
groups, when grouped -- of the smaller sample per bin, between 2 and ``psi_bins``); otherwise a 40-frame batch would reach the
warn threshold by chance. Bins are right-closed on the reference quantiles, so a reference that
is a point mass only separates values above it from values at or below it (KS still sees both).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from preflight.data.properties import PROPERTY_COLUMNS

DRIFT_COLUMNS: list[str] = ["kind", "feature", "statistic", "p_value", "psi", "reference_n",
                            "current_n", "level", "detail"]
LEVELS: tuple[str, ...] = ("ok", "warn", "fail")
#: Slice-mix columns compared by default when both frames have them.
DEFAULT_CATEGORICAL: tuple[str, ...] = ("site", "camera", "shift", "lighting", "blur", "lens")
NOT_ENOUGH = "not enough evidence"


class DriftInputError(ValueError):
    """Inputs that a drift check cannot compare (missing column, wrong shape)."""


@dataclass(frozen=True)
class DriftThresholds:
    """Where drift becomes a warning or a failure (see the module doc for the rule)."""

    psi_warn: float = 0.1
    psi_fail: float = 0.25
    p_value: float = 0.01
    #: at most this many reference-quantile bins for a numeric PSI ...
    psi_bins: int = 10
    #: ... and at least this many values of the smaller sample per bin (noise control)
    psi_min_per_bin: int = 50
    psi_epsilon: float = 1e-4
    #: group permutations behind a p-value when the values are clustered (bursts, images)
    permutations: int = 999
    #: fewer values (or groups, when grouped) than this on either side -> "not enough evidence" (level ok)
    min_samples: int = 20
    #: embedding drift: the domain classifier's cross-validated AUC that, with a significant
    #: (Bonferroni-corrected) component KS test, fails the embedding
    auc_fail: float = 0.75
    #: performance drift: the smallest drop of a metric (absolute, e.g. 0.05 = 5 points) worth
    #: calling; a fail also needs disjoint intervals
    min_drop: float = 0.05

    @classmethod
    def from_settings(cls, drift) -> DriftThresholds:
        """The thresholds of the settings' ``drift`` section (the rest keep their defaults)."""
        return cls(psi_warn=drift.psi_warn, psi_fail=drift.psi_fail, p_value=drift.p_value,
                   auc_fail=drift.embedding_auc_fail, min_drop=drift.min_drop)

    def __post_init__(self) -> None:
        if not 0 <= self.psi_warn <= self.psi_fail:
            raise ValueError(f"need 0 <= psi_warn <= psi_fail, got {self.psi_warn}, "
                             f"{self.psi_fail}")
        if not 0 < self.p_value < 1:
            raise ValueError(f"p_value must be in (0, 1), got {self.p_value}")
        if self.psi_bins < 2 or self.psi_min_per_bin < 1:
            raise ValueError("psi_bins must be >= 2 and psi_min_per_bin >= 1")
        if not 0 < self.psi_epsilon < 0.5:
            raise ValueError(f"psi_epsilon must be in (0, 0.5), got {self.psi_epsilon}")
        if not 0.5 <= self.auc_fail <= 1:
            raise ValueError(f"auc_fail must be in [0.5, 1], got {self.auc_fail}")
        if self.min_drop < 0 or self.min_samples < 1 or self.permutations < 99:
            raise ValueError("min_drop must be >= 0, min_samples >= 1 and permutations >= 99")


def psi_level(psi: float, p_value: float, thresholds: DriftThresholds) -> str:
    """``fail`` when ``psi >= psi_fail`` and ``p < p_value``; ``warn`` when ``psi >= psi_warn``."""
    if not np.isfinite(psi):
        return "ok"
    if psi >= thresholds.psi_fail and p_value < thresholds.p_value:
        return "fail"
    if psi >= thresholds.psi_warn:
        return "warn"
    return "ok"


def psi_from_shares(reference: np.ndarray, current: np.ndarray, epsilon: float = 1e-4) -> float:
    """PSI of two share vectors over the same bins (shares floored at ``epsilon``)."""
    r = np.maximum(np.asarray(reference, dtype=np.float64), epsilon)
    c = np.maximum(np.asarray(current, dtype=np.float64), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges: the reference's ``k / bins`` quantiles, duplicates (ties) merged."""
    qs = np.quantile(np.asarray(reference, dtype=np.float64), np.arange(1, bins) / bins)
    return np.unique(qs)


def psi(reference, current, bins: int = 10, epsilon: float = 1e-4) -> float:
    """PSI of a numeric feature over ``bins`` right-closed reference-quantile bins."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if not len(ref) or not len(cur):
        return float("nan")
    edges = quantile_edges(ref, bins)
    k = len(edges) + 1
    r = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=k) / len(ref)
    c = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=k) / len(cur)
    return psi_from_shares(r, c, epsilon)


def psi_bin_count(n_reference: int, n_current: int, thresholds: DriftThresholds) -> int:
    """Bins for a numeric PSI: ``psi_bins``, fewer for small samples (never fewer than 2)."""
    by_size = min(n_reference, n_current) // thresholds.psi_min_per_bin
    return int(min(thresholds.psi_bins, max(2, by_size)))


def psi_noise_floor(bins: int, n_reference: int, n_current: int) -> float:
    """The PSI expected from sampling noise alone (no drift)."""
    return (bins - 1) * (1.0 / max(n_reference, 1) + 1.0 / max(n_current, 1))


def drift_row(kind: str, feature: str, statistic: float, p_value: float, psi_value: float,
              reference_n: int, current_n: int, level: str, detail: str) -> dict:
    """One row of the drift table as a dict (``DRIFT_COLUMNS``)."""
    return {"kind": kind, "feature": feature, "statistic": float(statistic),
            "p_value": float(p_value), "psi": float(psi_value), "reference_n": int(reference_n),
            "current_n": int(current_n), "level": level, "detail": detail}


def judged_row(kind: str, feature: str, statistic: float, p_value: float, psi_value: float,
               reference_n: int, current_n: int, thresholds: DriftThresholds,
               detail: str) -> dict:
    """A tested feature's row: its level by :func:`psi_level`; an ``ok`` whose test is
    significant anyway says so (``; significant but small``) after ``detail``."""
    level = psi_level(psi_value, p_value, thresholds)
    if level == "ok" and p_value < thresholds.p_value:
        detail += "; significant but small"
    return drift_row(kind, feature, statistic, p_value, psi_value, reference_n, current_n, level,
                     detail)


def not_enough_row(kind: str, feature: str, reference_n: int, current_n: int,
                   thresholds: DriftThresholds, what: str = "values",
                   groups: tuple[int, int] | None = None) -> dict:
    """An ``ok`` row saying the sample is too small to judge (``groups``: the evidence was
    counted in groups, these many per side)."""
    counted = f"{reference_n} reference and {current_n} current {what}"
    if groups is not None:
        counted = f"{groups[0]} reference and {groups[1]} current groups ({counted})"
    return drift_row(kind, feature, np.nan, np.nan, np.nan, reference_n, current_n, "ok",
                     f"{NOT_ENOUGH}: {counted} (need {thresholds.min_samples} each)")


# --- clustered samples ------------------------------------------------------------------------
# Frames come in bursts (near-duplicates sharing shift, lighting, colour cast) and detections come
# in images; KS and chi-square assume independent values and, on clustered data, call chance
# differences significant. With groups given, the p-value is a permutation test that reassigns
# whole groups between the two sides (the statistic itself is still computed on the values).

def _group_codes(ref_groups, cur_groups, n_ref: int, n_cur: int) -> tuple[np.ndarray, int, int]:
    """Cluster index per value (reference clusters first), and the cluster count per side. A
    missing group id makes the value its own cluster; ids are never shared across sides."""
    codes, sizes = [], []
    offset = 0
    for groups, n in ((ref_groups, n_ref), (cur_groups, n_cur)):
        g = pd.Series(np.asarray(groups, dtype=object).ravel())
        if len(g) != n:
            raise DriftInputError(f"{len(g)} group ids for {n} values")
        g = g.where(g.notna(), pd.Series([f"__row{i}" for i in range(n)], dtype=object))
        c = pd.factorize(g.astype(str))[0]
        codes.append(c + offset)
        sizes.append(int(c.max()) + 1 if n else 0)
        offset += sizes[-1]
    return np.concatenate(codes), sizes[0], sizes[1]


def _ks_statistics(sorted_is_current: np.ndarray, run_ends: np.ndarray) -> np.ndarray:
    """KS D per row of a ``(b, n)`` side mask over the pooled values in sorted order."""
    n_cur = sorted_is_current.sum(axis=1, keepdims=True)
    n_ref = sorted_is_current.shape[1] - n_cur
    cdf_cur = np.cumsum(sorted_is_current, axis=1)[:, run_ends] / n_cur
    cdf_ref = np.cumsum(~sorted_is_current, axis=1)[:, run_ends] / n_ref
    return np.abs(cdf_cur - cdf_ref).max(axis=1)


def _pearson_chi2(cur_counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Pearson chi² (no continuity correction) of 2 x K tables given current counts ``(b, K)``
    and the pooled counts ``(K,)``."""
    ref_counts = totals - cur_counts
    n = totals.sum()
    n_cur = cur_counts.sum(axis=1, keepdims=True)
    e_cur = n_cur * totals / n
    e_ref = (n - n_cur) * totals / n
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = (cur_counts - e_cur) ** 2 / e_cur + (ref_counts - e_ref) ** 2 / e_ref
    return np.nansum(terms, axis=1)


def _group_masks(n_ref_groups: int, n_cur_groups: int, permutations: int,
                 rng: np.random.Generator, block: int = 256):
    """Yield ``(b, G)`` masks of the groups put on the current side by random reassignments of
    whole groups that keep the number of groups per side."""
    g = n_ref_groups + n_cur_groups
    for start in range(0, permutations, block):
        b = min(block, permutations - start)
        yield rng.random((b, g)).argsort(axis=1) < n_cur_groups


def _permutation_p(observed: float, null_stats: Iterable[np.ndarray], permutations: int) -> float:
    exceed = sum(int((s >= observed - 1e-12).sum()) for s in null_stats)
    return (1 + exceed) / (1 + permutations)


def _block(n: int) -> int:
    return max(1, min(256, 2_000_000 // max(n, 1)))


def ks_permutation_p(reference: np.ndarray, current: np.ndarray, reference_groups,
                     current_groups, *, permutations: int = 999, seed: int = 0) -> float:
    """p-value of the KS D by permuting whole groups between the sides."""
    values = np.concatenate([reference, current])
    codes, g_ref, g_cur = _group_codes(reference_groups, current_groups, len(reference),
                                       len(current))
    order = np.argsort(values, kind="stable")
    v = values[order]
    run_ends = np.flatnonzero(np.r_[v[1:] != v[:-1], True])  # ECDFs are compared after ties
    observed_mask = (np.arange(len(values)) >= len(reference))[order][None, :]
    observed = float(_ks_statistics(observed_mask, run_ends)[0])
    rng = np.random.default_rng(seed)
    sorted_codes = codes[order]
    null = (_ks_statistics(gm[:, sorted_codes], run_ends)
            for gm in _group_masks(g_ref, g_cur, permutations, rng, _block(len(v))))
    return _permutation_p(observed, null, permutations)


def chi2_permutation_p(reference_codes: np.ndarray, current_codes: np.ndarray, n_categories: int,
                       reference_groups, current_groups, *, permutations: int = 999,
                       seed: int = 0) -> float:
    """p-value of the Pearson chi² of the category mix by permuting whole groups."""
    cats = np.concatenate([reference_codes, current_codes])
    codes, g_ref, g_cur = _group_codes(reference_groups, current_groups, len(reference_codes),
                                       len(current_codes))
    # category counts per group: a permutation's current counts are a sum over its groups
    per_group = np.zeros((g_ref + g_cur, n_categories))
    np.add.at(per_group, (codes, cats), 1.0)
    totals = per_group.sum(axis=0)
    observed = float(_pearson_chi2(per_group[g_ref:].sum(axis=0)[None, :], totals)[0])
    rng = np.random.default_rng(seed)
    null = (_pearson_chi2(np.asarray(gc, dtype=np.float64) @ per_group, totals)
            for gc in _group_masks(g_ref, g_cur, permutations, rng))
    return _permutation_p(observed, null, permutations)


def _clustered(groups) -> bool:
    if groups is None:
        return False
    g = pd.Series(np.asarray(groups, dtype=object).ravel()).dropna()
    return len(g) > g.nunique()


def _values_and_groups(values, groups) -> tuple[np.ndarray, np.ndarray | None]:
    v = pd.to_numeric(pd.Series(np.asarray(values).ravel()), errors="coerce")
    keep = v.notna().to_numpy()
    g = None if groups is None else np.asarray(groups, dtype=object).ravel()[keep]
    return v.to_numpy(np.float64)[keep], g


def _n_groups(groups, n: int) -> int:
    if groups is None:
        return n
    g = pd.Series(np.asarray(groups, dtype=object).ravel())
    return int(g.dropna().nunique() + g.isna().sum())


def numeric_drift(reference, current, feature: str, *, kind: str = "input",
                  thresholds: DriftThresholds | None = None, reference_groups=None,
                  current_groups=None, seed: int = 0) -> dict:
    """One drift row for a numeric feature: KS test plus quantile-bin PSI (NaNs dropped).

    With group ids (one per value, e.g. the burst a frame belongs to) on both sides, the evidence
    is counted in groups: ``min_samples`` applies to groups and, when some group holds several
    values, the KS p-value comes from permuting whole groups (``permutations``, seeded).
    """
    t = thresholds or DriftThresholds()
    grouped = reference_groups is not None and current_groups is not None
    ref_v, ref_g = _values_and_groups(reference, reference_groups if grouped else None)
    cur_v, cur_g = _values_and_groups(current, current_groups if grouped else None)
    n_ref, n_cur = _n_groups(ref_g, len(ref_v)), _n_groups(cur_g, len(cur_v))
    if min(n_ref, n_cur) < t.min_samples:
        return not_enough_row(kind, feature, len(ref_v), len(cur_v), t,
                              groups=(n_ref, n_cur) if grouped else None)
    ks = stats.ks_2samp(ref_v, cur_v)
    p = float(ks.pvalue)
    how = ""
    if grouped and (_clustered(ref_g) or _clustered(cur_g)):
        p = ks_permutation_p(ref_v, cur_v, ref_g, cur_g, permutations=t.permutations, seed=seed)
        how = f" (permuting {n_ref}+{n_cur} groups)"
    bins = psi_bin_count(n_ref, n_cur, t)
    value = psi(ref_v, cur_v, bins, t.psi_epsilon)
    detail = (f"KS D={ks.statistic:.3f} p={p:.2g}{how}; PSI {value:.3f} over {bins} "
              f"reference-quantile bins (noise floor ~{psi_noise_floor(bins, n_ref, n_cur):.3f});"
              f" median {np.median(ref_v):.4g} -> {np.median(cur_v):.4g}")
    return judged_row(kind, feature, ks.statistic, p, value, len(ref_v), len(cur_v), t, detail)


def category_counts(reference, current) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Categories (union, sorted as strings; missing dropped) and the counts on each side."""
    ref = pd.Series(np.asarray(reference, dtype=object).ravel()).dropna().astype(str)
    cur = pd.Series(np.asarray(current, dtype=object).ravel()).dropna().astype(str)
    cats = sorted(set(ref) | set(cur))
    r = ref.value_counts().reindex(cats, fill_value=0).to_numpy(np.int64)
    c = cur.value_counts().reindex(cats, fill_value=0).to_numpy(np.int64)
    return cats, r, c


def category_psi(reference, current, epsilon: float = 1e-4) -> float:
    """PSI over categories (the union of both sides; shares floored at ``epsilon``)."""
    _, r, c = category_counts(reference, current)
    if not r.sum() or not c.sum():
        return float("nan")
    return psi_from_shares(r / r.sum(), c / c.sum(), epsilon)


def _share_changes(cats: Sequence[str], r: np.ndarray, c: np.ndarray, top: int = 3) -> str:
    rs, cs = r / max(r.sum(), 1), c / max(c.sum(), 1)
    order = np.argsort(-np.abs(cs - rs), kind="stable")[:top]
    return ", ".join(f"{cats[i]} {rs[i]:.0%} -> {cs[i]:.0%}" for i in order)


def categorical_drift(reference, current, feature: str, *, kind: str = "input",
                      thresholds: DriftThresholds | None = None, what: str = "values",
                      reference_groups=None, current_groups=None, seed: int = 0) -> dict:
    """One drift row for a categorical feature: chi-square test of the mix plus category PSI.

    Group ids work as for :func:`numeric_drift` (the chi-square p-value then comes from
    permuting whole groups).
    """
    t = thresholds or DriftThresholds()
    grouped = reference_groups is not None and current_groups is not None
    ref_s = pd.Series(np.asarray(reference, dtype=object).ravel())
    cur_s = pd.Series(np.asarray(current, dtype=object).ravel())
    ref_keep, cur_keep = ref_s.notna().to_numpy(), cur_s.notna().to_numpy()
    cats, r, c = category_counts(ref_s[ref_keep], cur_s[cur_keep])
    ref_g = np.asarray(reference_groups, dtype=object).ravel()[ref_keep] if grouped else None
    cur_g = np.asarray(current_groups, dtype=object).ravel()[cur_keep] if grouped else None
    n_ref, n_cur = _n_groups(ref_g, int(r.sum())), _n_groups(cur_g, int(c.sum()))
    if min(n_ref, n_cur) < t.min_samples:
        return not_enough_row(kind, feature, int(r.sum()), int(c.sum()), t, what,
                              groups=(n_ref, n_cur) if grouped else None)
    how = ""
    if len(cats) < 2:
        chi2, p, dof = 0.0, 1.0, 0
    else:
        res = stats.chi2_contingency(np.vstack([r, c]))
        chi2, p, dof = float(res.statistic), float(res.pvalue), int(res.dof)
        if grouped and (_clustered(ref_g) or _clustered(cur_g)):
            index = {k: i for i, k in enumerate(cats)}
            p = chi2_permutation_p(ref_s[ref_keep].astype(str).map(index).to_numpy(),
                                   cur_s[cur_keep].astype(str).map(index).to_numpy(), len(cats),
                                   ref_g, cur_g, permutations=t.permutations, seed=seed)
            how = f" (permuting {n_ref}+{n_cur} groups)"
    value = psi_from_shares(r / r.sum(), c / c.sum(), t.psi_epsilon)
    detail = (f"chi2={chi2:.3g} dof={dof} p={p:.2g}{how}; PSI {value:.3f} over {len(cats)} "
              f"categories (noise floor ~{psi_noise_floor(len(cats), n_ref, n_cur):.3f}); "
              f"share {_share_changes(cats, r, c)}")
    return judged_row(kind, feature, chi2, p, value, int(r.sum()), int(c.sum()), t, detail)


def drift_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """The drift table (``DRIFT_COLUMNS``) from row dicts, with stable dtypes."""
    df = pd.DataFrame(list(rows), columns=DRIFT_COLUMNS)
    return df.astype({"kind": str, "feature": str, "statistic": np.float64,
                      "p_value": np.float64, "psi": np.float64, "reference_n": np.int64,
                      "current_n": np.int64, "level": str, "detail": str})


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def input_drift(reference: pd.DataFrame, current: pd.DataFrame, *,
                numeric_columns: Sequence[str] | None = None,
                categorical_columns: Sequence[str] | None = None,
                group_column: str | None = "group_id", seed: int = 0,
                thresholds: DriftThresholds | None = None) -> pd.DataFrame:
    """Drift of a batch's image table against the reference evaluation set's.

    ``numeric_columns`` defaults to the pixel properties (brightness, contrast, sharpness,
    colour_cast) and ``categorical_columns`` to the slice-mix columns (site, camera, shift,
    lighting, blur, lens), each only where both tables have it; a column named explicitly must be
    in both. A "numeric" column holding booleans or strings is compared as a category mix.
    When both tables have ``group_column`` (ingestion's near-duplicate bursts), evidence is
    counted in groups and p-values come from permuting whole groups (seeded by ``seed``);
    without it every frame counts as independent.
    """
    t = thresholds or DriftThresholds()
    both = [c for c in reference.columns if c in set(current.columns)]
    if numeric_columns is None:
        numeric_columns = [c for c in PROPERTY_COLUMNS if c in both]
    if categorical_columns is None:
        categorical_columns = [c for c in DEFAULT_CATEGORICAL if c in both]
    asked = list(dict.fromkeys([*numeric_columns, *categorical_columns]))
    missing = {name: [c for c in asked if c not in frame.columns]
               for name, frame in (("reference", reference), ("current", current))}
    if any(missing.values()):
        raise DriftInputError(
            "; ".join(f"{name} table has no column(s) {cols}" for name, cols in missing.items()
                      if cols) + f" (available in both: {both})")
    grouped = group_column is not None and group_column in both
    groups = {"reference_groups": reference[group_column] if grouped else None,
              "current_groups": current[group_column] if grouped else None}
    rows = []
    for col in numeric_columns:
        if _is_numeric(reference[col]) and _is_numeric(current[col]):
            rows.append(numeric_drift(reference[col], current[col], col, thresholds=t, seed=seed,
                                      **groups))
        else:
            rows.append(categorical_drift(reference[col], current[col], col, thresholds=t,
                                          seed=seed, **groups))
    for col in categorical_columns:
        if col not in numeric_columns:
            rows.append(categorical_drift(reference[col], current[col], col, thresholds=t,
                                          seed=seed, **groups))
    return drift_frame(rows)
