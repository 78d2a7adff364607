"""Fine-tuning on the production pool: dataset views, the augmentation policy, nested subsets.

Framework-free. The fine-tuning pool is the ``finetune`` split of the validated tables; the
evaluation set is never written into a training view (:func:`write_yolo_view` refuses rows of
the ``eval`` split). The augmentation policy is chosen from the off-the-shelf failure analysis:
what each failing slice *measures* as (dark, low-contrast, blurry, colour-cast frames; objects
mostly occluded) maps to albumentations transforms (and ultralytics hyper-parameters) that
simulate it, so fine-tuning sees more of what the model fails on -- whatever the slice is named.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from preflight.data.filenames import fs_path
from preflight.data.properties import BINS
from preflight.metrics.slices import MOST_OCCLUDED, OVERALL
from preflight.taxonomy import Taxonomy


class FinetuneDataError(ValueError):
    """The fine-tuning pool cannot be turned into a training set."""


#: share of the fine-tuning pool held out (whole near-duplicate groups) to validate the training
FINETUNE_VAL_FRACTION = 0.15


def holdout_ids(images: pd.DataFrame, val_fraction: float, seed: int = 0) -> set:
    """Image ids held out of training for validation: about ``val_fraction`` of the pool, at
    least one image, never all of them; whole ``group_id`` groups (near-duplicate frames) when
    the table has them, so no frame's twin is trained on while it validates."""
    ids = images["image_id"].tolist()
    if val_fraction <= 0:
        return set()
    if len(ids) < 2:
        raise FinetuneDataError(f"the fine-tuning pool has {len(ids)} image(s): at least 2 are "
                                "needed (one is held out to validate the training)")
    groups = (images["group_id"].astype(str).tolist() if "group_id" in images.columns
              else [str(i) for i in ids])
    members: dict[str, list] = {}
    for image_id, group in zip(ids, groups, strict=True):
        members.setdefault(group, []).append(image_id)
    if len(members) < 2:                     # one group only: hold out single frames instead
        members = {str(i): [i] for i in ids}
    order = np.random.default_rng(seed).permutation(sorted(members))
    want = max(1, int(round(val_fraction * len(ids))))
    held: set = set()
    for group in order[:-1]:                 # the last group always stays in training
        if len(held) >= want:
            break
        held.update(members[group])
    return held


def write_yolo_view(images: pd.DataFrame, boxes: pd.DataFrame, taxonomy: Taxonomy,
                    out_dir: str | Path, *, val_fraction: float = FINETUNE_VAL_FRACTION,
                    seed: int = 0) -> Path:
    """A YOLO dataset (hard links to the frames, label files from ``boxes``) for ``images``;
    returns its ``data.yaml``. Class ids are the taxonomy's, so every operational class (also
    one the off-the-shelf model never saw) is learnable. ``val_fraction`` of the pool (see
    :func:`holdout_ids`) goes to ``images/val``, the validation set, and is not trained on
    (0: no validation set; training then validates on its own images)."""
    if "split" in images.columns and (images["split"] == "eval").any():
        raise FinetuneDataError("refusing to train on evaluation-set images (split == 'eval')")
    if images.empty:
        raise FinetuneDataError("the fine-tuning pool is empty")
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    by_image = {k: g for k, g in boxes.groupby("image_id")}
    ids = images["image_id"].tolist()
    val_ids = holdout_ids(images, val_fraction, seed)
    for image_id, path, width, height in zip(ids, images["path"], images["width"],
                                             images["height"], strict=True):
        part = "val" if image_id in val_ids else "train"
        src = Path(fs_path(path))  # a table's path: any file name (preflight.data.filenames)
        stem = str(image_id)
        dst = out / "images" / part / f"{stem}{src.suffix.lower()}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        label = out / "labels" / part / f"{stem}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(_yolo_lines(by_image.get(image_id), float(width), float(height)),
                         encoding="utf-8")
    data = {"path": str(out.resolve()), "train": "images/train",
            "val": "images/val" if val_ids else "images/train",
            "names": taxonomy.as_dict()}
    target = out / "data.yaml"
    target.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return target


def _yolo_lines(rows: pd.DataFrame | None, width: float, height: float) -> str:
    if rows is None or rows.empty:
        return ""
    cx = (rows["x"] + rows["w"] / 2) / width
    cy = (rows["y"] + rows["h"] / 2) / height
    w, h = rows["w"] / width, rows["h"] / height
    lines = [f"{int(c)} {a:.6f} {b:.6f} {d:.6f} {e:.6f}"
             for c, a, b, d, e in zip(rows["class_id"], cx, cy, w, h, strict=True)]
    return "\n".join(lines) + "\n"


def nested_subsets(images: pd.DataFrame, fractions: list[float], seed: int = 0
                   ) -> list[pd.DataFrame]:
    """Nested subsets of the pool (each contains the previous), whole near-duplicate groups at a
    time, in a seeded order: the x-axis of a learning curve."""
    group = images["group_id"] if "group_id" in images.columns else images["image_id"]
    keys = pd.Series([hashlib.sha1(f"{seed}:{g}".encode()).hexdigest() for g in group],
                     index=images.index)
    ordered = images.assign(_k=keys).sort_values(["_k", "image_id"]).drop(columns="_k")
    out = []
    for fraction in fractions:
        n = max(1, int(round(fraction * len(ordered))))
        out.append(ordered.head(n).reset_index(drop=True))
    return out


def learning_curve_points(pool: pd.DataFrame, boxes: pd.DataFrame, fractions: Sequence[float], *,
                          seed: int, full_pool_weights: str,
                          train: Callable[[pd.DataFrame, pd.DataFrame, int], str],
                          evaluate: Callable[[str], Any],
                          report: Callable[[str], None] | None = None
                          ) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """The points a learning curve is fitted to: the per-slice metrics of the model fine-tuned
    on each of the nested subsets of ``pool`` (:func:`nested_subsets`, one per fraction).

    ``train(images, boxes, percent) -> weights`` fine-tunes on one subset; the whole pool
    (fraction >= 1) reuses ``full_pool_weights`` instead of training again. ``evaluate(weights)``
    returns an evaluation with ``metrics`` (the per-slice table) and ``overall(metric)``. Returns
    the metrics of every subset, tagged with its size (``N_IMAGES_TRAIN``) and ``fraction``, and
    the subsets."""
    from preflight.decide.learning_curve import N_IMAGES_TRAIN  # the column the fit reads

    subsets = nested_subsets(pool, list(fractions), seed=seed)
    frames = []
    for fraction, subset in zip(fractions, subsets, strict=True):
        if fraction >= 1.0:
            weights = full_pool_weights
        else:
            weights = train(subset, boxes[boxes["image_id"].isin(subset["image_id"])],
                            int(round(100 * fraction)))
        ev = evaluate(weights)
        frames.append(ev.metrics.assign(**{N_IMAGES_TRAIN: len(subset)}, fraction=fraction))
        if report is not None:
            report(f"{len(subset)} images -> recall {ev.overall('recall'):.3f}")
    return pd.concat(frames, ignore_index=True), subsets


@dataclass(frozen=True)
class AugmentationPolicy:
    """What fine-tuning augments, and why (one reason per failing slice family)."""

    hyp: dict[str, Any] = field(default_factory=dict)
    transforms: tuple[tuple[str, dict[str, Any]], ...] = ()
    reasons: tuple[str, ...] = ()

    def albumentations(self) -> list:
        """The transforms as albumentations objects (for ultralytics' ``augmentations``)."""
        from preflight.environment import import_albumentations

        A = import_albumentations()
        return [getattr(A, name)(**kwargs) for name, kwargs in self.transforms]

    def describe(self) -> str:
        names = [n for n, _ in self.transforms] + [f"{k}={v}" for k, v in self.hyp.items()]
        return ", ".join(names) if names else "ultralytics defaults"


#: A measured property of the failing frames -> (albumentations transform, kwargs, ultralytics
#: hyper-parameters, reason). Keys are (pixel property of ``data.properties.BINS``, index of the
#: bin label that fails) or ("occluded_bin", the most-occluded label).
_RULES: dict[tuple[str, int | str], tuple[str, dict[str, Any], dict[str, Any], str]] = {
    ("brightness", 0): ("RandomBrightnessContrast",
                        {"brightness_limit": (-0.45, 0.1), "contrast_limit": (-0.3, 0.1), "p": 0.5},
                        {"hsv_v": 0.6},
                        "dark frames fail -> photometric (darkening) augmentation"),
    ("brightness", 2): ("RandomBrightnessContrast",
                        {"brightness_limit": (-0.1, 0.45), "contrast_limit": (-0.2, 0.2), "p": 0.5},
                        {"hsv_v": 0.6},
                        "over-exposed frames fail -> photometric (brightening) augmentation"),
    ("contrast", 0): ("RandomFog", {"fog_coef_range": (0.1, 0.4), "p": 0.3}, {},
                      "low-contrast (hazy, smeared) frames fail -> fog/haze augmentation"),
    ("sharpness", 0): ("MotionBlur", {"blur_limit": (3, 11), "p": 0.4}, {},
                       "blurry frames fail -> motion-blur augmentation"),
    ("colour_cast", 2): ("RGBShift",
                         {"r_shift_limit": 40, "g_shift_limit": 30, "b_shift_limit": 40, "p": 0.5},
                         {"hsv_h": 0.03},
                         "strongly colour-cast frames fail -> stronger colour-shift augmentation"),
    ("occluded_bin", MOST_OCCLUDED): (
        "CoarseDropout", {"num_holes_range": (1, 4), "hole_height_range": (0.05, 0.15),
                          "hole_width_range": (0.05, 0.15), "p": 0.4}, {},
        "objects more than half occluded fail -> cut-out augmentation"),
}
#: Dark frames carry sensor noise: a failing dark slice also gets noise.
_DARK_NOISE = ("GaussNoise", {"std_range": (0.03, 0.12), "p": 0.4})


def failing_properties(failing: pd.DataFrame, images: pd.DataFrame | None = None
                       ) -> list[tuple[str, int | str, str]]:
    """What the failing slices *measure* as: ``(property, failing bin index, slice)`` triples.

    A pixel-bin slice (``brightness_bin=low``) is its own property. Any other image slice (a
    metadata column of whatever name) is measured: the median of each pixel property over its
    frames, binned with the fixed ``BINS``; a property whose bin is at an extreme (e.g. dark)
    while the whole sample's median is not counts. Nothing depends on the slice's name.
    """
    out: list[tuple[str, int | str, str]] = []
    bin_of = {col: (prop, labels) for prop, (col, _, labels) in BINS.items()}
    overall = ({p: _bin_index(images[p].median(), p) for p in BINS if p in images.columns}
               if images is not None and len(images) else {})
    for column, value in zip(failing.get("slice_column", []), failing.get("slice_value", []),
                             strict=True):
        where = f"{column}={value}"
        if column in bin_of:
            prop, labels = bin_of[column]
            if str(value) in labels:
                out.append((prop, labels.index(str(value)), where))
        elif column == "occluded_bin":
            out.append((column, str(value), where))
        elif images is not None and column in images.columns:
            frames = images[images[column].astype(str) == str(value)]
            for prop in overall:
                idx = _bin_index(frames[prop].median(), prop) if len(frames) else None
                if idx is not None and idx != 1 and idx != overall[prop]:
                    out.append((prop, idx, where))
    return out


def _bin_index(value: Any, prop: str) -> int | None:
    _, (lo, hi), _ = BINS[prop]
    v = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    if pd.isna(v):
        return None
    return 0 if v < lo else (1 if v < hi else 2)


def augmentation_policy(failing: pd.DataFrame, images: pd.DataFrame | None = None
                        ) -> AugmentationPolicy:
    """The policy for the failing slices (``slice_column, slice_value`` rows of the off-the-shelf
    long table that fail the bar), chosen from what those slices measure as
    (:func:`failing_properties`; ``images``: the ingested images table with the pixel
    properties). Colour casts and JPEG artefacts are always mildly simulated: production cameras
    have both and public pre-training data rarely does."""
    transforms: dict[str, dict[str, Any]] = {
        "ImageCompression": {"quality_range": (30, 90), "p": 0.3},
        "RGBShift": {"r_shift_limit": 25, "g_shift_limit": 15, "b_shift_limit": 25, "p": 0.3},
    }
    hyp: dict[str, Any] = {}
    reasons = ["production frames carry colour casts and JPEG artefacts -> mild colour-shift "
               "and compression augmentation"]
    for prop, idx, where in failing_properties(failing, images):
        rule = _RULES.get((prop, idx))
        if rule is None:
            continue
        name, kwargs, extra, reason = rule
        transforms[name] = kwargs  # a failure-driven setting wins over the mild default
        if (prop, idx) == ("brightness", 0):
            transforms.setdefault(*_DARK_NOISE)
        hyp.update(extra)
        text = f"{reason} ({where})"
        if not any(r.startswith(reason) for r in reasons):
            reasons.append(text)
    return AugmentationPolicy(hyp=hyp, transforms=tuple(transforms.items()),
                              reasons=tuple(reasons))


def failing_rows(metrics: pd.DataFrame, threshold: float, metric: str = "recall") -> pd.DataFrame:
    """Slices whose ``metric`` interval lies wholly below ``threshold`` (evidence of failure)."""
    rows = metrics[(metrics["metric"] == metric) & (metrics["slice_column"] != OVERALL)
                   & ~metrics["thin"].astype(bool)]
    return rows[rows["ci_high"].astype(float) < threshold]
