"""Per-slice differences between two models scored on the *same* frames (an export and its FP32
source), with intervals from a paired bootstrap over frames.

Both models see the same frames and ground truth, so their recalls are correlated: one resample
of frames (multinomial counts, drawn once, seeded) is applied to both, and the interval is that of
the difference -- much tighter than two independent intervals, and what "did quantisation change
this slice" asks. A slice *changed* when the 95% interval of the difference excludes 0.

Units are ground-truth objects (detection: matched at IoU 0.5 by a detection scoring at least the
operating threshold, crowd/ignored boxes left out, as the recall rows of the metrics table) or
images (classification: top-1 correct). Slices are image slices (any ``slice_columns`` of the
images table) and, for detection, box slices (``box_slice_columns``, see
:func:`preflight.metrics.slices.box_table`); plus per-class recall overall.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from preflight.metrics.slices import OVERALL, box_table, class_metric, make_slices

DELTA_COLUMNS = ["slice_column", "slice_value", "metric", "n_images", "n_units", "source",
                 "export", "delta", "delta_ci_low", "delta_ci_high", "export_ci_low",
                 "export_ci_high", "changed", "export_status"]


def paired_deltas(unit_image: np.ndarray, hit_source: np.ndarray, hit_export: np.ndarray,
                  n_images: int, slices: Sequence[tuple[str, str, str, np.ndarray]], *,
                  bootstrap: int = 200, seed: int = 0, bar: float | None = None,
                  alpha: float = 0.05) -> pd.DataFrame:
    """One row per ``(column, value, metric, unit_mask)`` slice: both rates, their difference
    (export - source) and paired percentile intervals; ``export_status`` holds the export's
    interval against ``bar`` (``fail``: below it for sure; ``pass``; ``not enough evidence``)."""
    unit_image = np.asarray(unit_image, dtype=np.int64)
    a = np.asarray(hit_source, dtype=np.float64)
    b = np.asarray(hit_export, dtype=np.float64)
    if not (len(unit_image) == len(a) == len(b)):
        raise ValueError("unit_image, hit_source and hit_export must have one entry per unit")
    rng = np.random.default_rng(seed)
    # (B, n_images) frame counts: one draw for every slice and both models
    weights = (rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=bootstrap)
               .astype(np.float64) if bootstrap and n_images else np.zeros((0, n_images)))
    lo_q, hi_q = 100 * alpha / 2, 100 * (1 - alpha / 2)
    rows = []
    for column, value, metric, mask in slices:
        mask = np.asarray(mask, dtype=bool)
        img = unit_image[mask]
        n = int(mask.sum())
        pos = np.bincount(img, minlength=n_images).astype(np.float64)
        ha = np.bincount(img, weights=a[mask], minlength=n_images)
        hb = np.bincount(img, weights=b[mask], minlength=n_images)
        ra = ha.sum() / n if n else np.nan
        rb = hb.sum() / n if n else np.nan
        d_lo = d_hi = e_lo = e_hi = np.nan
        if n and len(weights):
            den = weights @ pos
            ok = den > 0
            rb_boot = (weights @ hb)[ok] / den[ok]
            diff = rb_boot - (weights @ ha)[ok] / den[ok]
            if len(diff):
                d_lo, d_hi = np.percentile(diff, [lo_q, hi_q])
                e_lo, e_hi = np.percentile(rb_boot, [lo_q, hi_q])
        changed = bool(np.isfinite(d_lo) and (d_lo > 0 or d_hi < 0))
        status = "not enough evidence"
        if bar is not None and np.isfinite(e_lo):
            status = "fail" if e_hi < bar else "pass" if e_lo >= bar else status
        rows.append((column, value, metric, int(len(np.unique(img))), n, ra, rb, rb - ra,
                     d_lo, d_hi, e_lo, e_hi, changed, status))
    return pd.DataFrame(rows, columns=DELTA_COLUMNS)


def detection_deltas(gt: pd.DataFrame, images: pd.DataFrame, source: pd.DataFrame,
                     export: pd.DataFrame, *, slice_columns: Sequence[str],
                     box_slice_columns: Sequence[str] = (), operating_threshold: float = 0.25,
                     model_input_size: int | None = None,
                     class_names: dict[int, str] | None = None, bootstrap: int = 200,
                     seed: int = 0, bar: float | None = None) -> pd.DataFrame:
    """Recall per slice of two detectors' predictions on the same frames (see the module)."""
    from preflight.metrics.index import EvaluationIndex

    ia = EvaluationIndex.build(gt, source, images, class_names=class_names)
    ib = EvaluationIndex.build(gt, export, images, class_names=class_names)
    ok = ~ia.gt_ignore[ia.params.area_index("all")]
    hit_a = ia.gt_detected(operating_threshold)[ok]
    hit_b = ib.gt_detected(operating_threshold)[ok]
    unit_image = ia.gt_img[ok]
    slices: list[tuple[str, str, str, np.ndarray]] = []
    for s in make_slices(ia.images, list(slice_columns)):
        slices.append((s.column, s.value, "recall", s.mask[unit_image]))
    if box_slice_columns:
        boxes = box_table(ia.gt, list(box_slice_columns), ia.images, model_input_size)
        for s in make_slices(boxes, list(box_slice_columns), include_overall=False,
                             what="ground-truth"):
            slices.append((s.column, s.value, "recall", s.mask[ok]))
    cats = ia.gt_cat[ok]
    for c, name in enumerate(ia.class_names):
        if (cats == c).any():
            slices.append((OVERALL, OVERALL, class_metric("recall", name), cats == c))
    return paired_deltas(unit_image, hit_a, hit_b, ia.n_images, slices, bootstrap=bootstrap,
                         seed=seed, bar=bar)


def classification_deltas(images: pd.DataFrame, correct_source: np.ndarray,
                          correct_export: np.ndarray, *, slice_columns: Sequence[str],
                          bootstrap: int = 200, seed: int = 0,
                          bar: float | None = None) -> pd.DataFrame:
    """Top-1 accuracy per image slice of two classifiers on the same crops (rows of
    ``images``), as ``metric == "recall"`` rows (the bar's metric for classifiers)."""
    table = images.reset_index(drop=True)
    n = len(table)
    slices = [(s.column, s.value, "recall", s.mask)
              for s in make_slices(table, list(slice_columns))]
    return paired_deltas(np.arange(n), correct_source, correct_export, n, slices,
                         bootstrap=bootstrap, seed=seed, bar=bar)


def prediction_deltas(task: str, gt: pd.DataFrame, images: pd.DataFrame,
                      source: pd.DataFrame, export: pd.DataFrame, *,
                      slice_columns: Sequence[str], box_slice_columns: Sequence[str] = (),
                      operating_threshold: float = 0.25, model_input_size: int | None = None,
                      class_names: dict[int, str] | None = None, bootstrap: int = 200,
                      seed: int = 0) -> pd.DataFrame:
    """:func:`detection_deltas` (``task == "detect"``) or :func:`classification_deltas` from
    two stored predictions tables of the same evaluation images (classifier tables carry
    ``image_id, class_id, label``; crop-level slice columns count as image slices)."""
    if task == "detect":
        return detection_deltas(gt, images, source, export, slice_columns=slice_columns,
                                box_slice_columns=box_slice_columns,
                                operating_threshold=operating_threshold,
                                model_input_size=model_input_size, class_names=class_names,
                                bootstrap=bootstrap, seed=seed)
    table = images.reset_index(drop=True)

    def correct(preds: pd.DataFrame) -> np.ndarray:
        by_id = preds.drop_duplicates("image_id").set_index("image_id")
        missing = ~table["image_id"].isin(by_id.index)
        if missing.any():
            raise ValueError(f"{int(missing.sum())} evaluation image(s) have no prediction, "
                             f"e.g. {table.loc[missing, 'image_id'].iloc[0]!r}")
        rows = by_id.loc[table["image_id"]]
        return (rows["class_id"].to_numpy() == rows["label"].to_numpy())

    columns = [c for c in (*slice_columns, *box_slice_columns) if c in table.columns]
    return classification_deltas(table, correct(source), correct(export), slice_columns=columns,
                                 bootstrap=bootstrap, seed=seed)
