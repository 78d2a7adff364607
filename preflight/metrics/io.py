"""Loaders for COCO files and slice tables, with errors a user can act on."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

BOX_EXTRA_KEYS = ("truncated", "occluded")


class MetricsInputError(ValueError):
    """An input file or table the evaluator cannot use (the message says why)."""


class CocoGroundTruth(NamedTuple):
    gt: pd.DataFrame
    images: pd.DataFrame
    class_names: dict[int, str]


def _read_json(path: str | Path, what: str) -> Any:
    p = Path(path)
    if not p.is_file():
        raise MetricsInputError(f"{what} file not found: {p}")
    try:
        with p.open("rb") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MetricsInputError(f"{what} file {p} is not valid JSON: {exc}") from None


def _bbox_array(entries: list, what: str) -> np.ndarray:
    try:
        arr = np.asarray([e["bbox"] for e in entries], dtype=np.float64).reshape(-1, 4)
    except (TypeError, ValueError):
        raise MetricsInputError(f"{what}: every bbox must be 4 numbers [x, y, w, h]") from None
    if len(arr) != len(entries):
        raise MetricsInputError(f"{what}: every bbox must be 4 numbers [x, y, w, h]")
    if arr.size and not np.isfinite(arr).all():
        raise MetricsInputError(f"{what}: a bbox has a non-finite value")
    return arr


def _missing_keys(entries: list, keys: tuple[str, ...], what: str) -> None:
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise MetricsInputError(f"{what}[{i}] is not an object")
        missing = [k for k in keys if k not in e]
        if missing:
            raise MetricsInputError(f"{what}[{i}] lacks key(s) {missing} (has {sorted(e)})")


def load_coco_gt(path: str | Path | dict) -> CocoGroundTruth:
    """COCO instances JSON -> ``(gt, images, class_names)``.

    ``gt``: ``ann_id, image_id, class_id, x, y, w, h, area, iscrowd`` (+ ``truncated``,
    ``occluded`` when the file has them); ``area`` as given (``w*h`` when absent), ``iscrowd``
    0 when absent. ``images``: ``image_id, file_name, width, height``.
    """
    data = path if isinstance(path, dict) else _read_json(path, "ground-truth")
    src = "ground truth" if isinstance(path, dict) else str(path)
    if not isinstance(data, dict):
        raise MetricsInputError(f"{src}: a COCO instances file is a JSON object, got "
                                f"{type(data).__name__} (is this a results list?)")
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise MetricsInputError(f"{src}: COCO instances file lacks key(s) {missing}")
    imgs, anns, cats = data["images"], data["annotations"], data["categories"]
    _missing_keys(imgs, ("id",), "images")
    _missing_keys(cats, ("id",), "categories")
    _missing_keys(anns, ("image_id", "category_id", "bbox"), "annotations")
    images = pd.DataFrame({
        "image_id": [i["id"] for i in imgs],
        "file_name": [i.get("file_name") for i in imgs],
        "width": [i.get("width", np.nan) for i in imgs],
        "height": [i.get("height", np.nan) for i in imgs]})
    if images["image_id"].duplicated().any():
        raise MetricsInputError(f"{src}: duplicate image ids, e.g. "
                                f"{images.loc[images['image_id'].duplicated(), 'image_id'].head(3).tolist()}")
    class_names = {int(c["id"]): str(c.get("name", c["id"])) for c in cats}
    box = _bbox_array(anns, "annotations")
    gt = pd.DataFrame({
        "ann_id": [a.get("id", i + 1) for i, a in enumerate(anns)],
        "image_id": [a["image_id"] for a in anns],
        "class_id": np.asarray([a["category_id"] for a in anns], dtype=np.int64),
        "x": box[:, 0], "y": box[:, 1], "w": box[:, 2], "h": box[:, 3],
        "area": [float(a["area"]) if a.get("area") is not None else w * h
                 for a, w, h in zip(anns, box[:, 2], box[:, 3], strict=True)],
        "iscrowd": np.asarray([int(bool(a.get("iscrowd", 0))) for a in anns], dtype=np.int64)})
    for key in BOX_EXTRA_KEYS:
        if any(key in a for a in anns):
            gt[key] = [a.get(key) for a in anns]
    unknown_img = ~gt["image_id"].isin(images["image_id"])
    if unknown_img.any():
        raise MetricsInputError(f"{src}: {int(unknown_img.sum())} annotation(s) reference image "
                                f"ids not in 'images', e.g. "
                                f"{gt.loc[unknown_img, 'image_id'].head(3).tolist()}")
    unknown_cat = ~gt["class_id"].isin(list(class_names))
    if unknown_cat.any():
        raise MetricsInputError(f"{src}: annotation category ids not in 'categories': "
                                f"{sorted(gt.loc[unknown_cat, 'class_id'].unique().tolist())[:5]}")
    return CocoGroundTruth(gt, images, class_names)


def load_coco_results(path: str | Path | list, *, image_ids=None,
                      class_ids=None) -> pd.DataFrame:
    """COCO results list (``image_id, category_id, bbox, score``) -> ``image_id, class_id,
    score, x, y, w, h``.

    ``image_ids``: the known images; a result on any other image is an error. ``class_ids``: the
    known categories; results of other categories are dropped with a warning (pycocotools
    ignores them too).
    """
    data = path if isinstance(path, list) else _read_json(path, "detections")
    src = "detections" if isinstance(path, list) else str(path)
    if isinstance(data, dict) and "annotations" in data:
        data = data["annotations"]
    if not isinstance(data, list):
        raise MetricsInputError(f"{src}: a COCO results file is a JSON list of "
                                "{image_id, category_id, bbox, score} objects")
    _missing_keys(data, ("image_id", "category_id", "bbox", "score"), "results")
    box = _bbox_array(data, "results")
    try:
        score = np.asarray([d["score"] for d in data], dtype=np.float64)
    except (TypeError, ValueError):
        raise MetricsInputError(f"{src}: every score must be a number") from None
    if score.size and not np.isfinite(score).all():
        raise MetricsInputError(f"{src}: a score is not a finite number")
    dt = pd.DataFrame({
        "image_id": [d["image_id"] for d in data],
        "class_id": np.asarray([d["category_id"] for d in data], dtype=np.int64),
        "score": score, "x": box[:, 0], "y": box[:, 1], "w": box[:, 2], "h": box[:, 3]})
    if image_ids is not None:
        unknown = ~dt["image_id"].isin(list(image_ids))
        if unknown.any():
            ex = pd.unique(dt.loc[unknown, "image_id"])[:5].tolist()
            raise MetricsInputError(
                f"{src}: {int(unknown.sum())} detection(s) on {len(pd.unique(dt.loc[unknown, 'image_id']))} "
                f"image id(s) that are not in the ground truth, e.g. {ex}")
    if class_ids is not None:
        unknown = ~dt["class_id"].isin(list(class_ids))
        if unknown.any():
            log.warning("%s: dropping %d detection(s) of categories not in the ground truth: %s",
                        src, int(unknown.sum()), sorted(dt.loc[unknown, "class_id"].unique())[:5])
            dt = dt[~unknown].reset_index(drop=True)
    return dt


def read_table(path: str | Path) -> pd.DataFrame:
    """A ``.csv`` or ``.parquet`` table."""
    p = Path(path)
    if not p.is_file():
        raise MetricsInputError(f"table not found: {p}")
    if p.suffix.lower() == ".csv":
        return pd.read_csv(p)
    if p.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(p)
    raise MetricsInputError(f"{p}: unsupported table format {p.suffix!r} (use .csv or .parquet)")


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise MetricsInputError(f"{p}: unsupported output format {p.suffix!r} (.csv or .parquet)")
    p.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        df.to_csv(p, index=False)
    else:
        df.to_parquet(p, index=False)
    return p


def attach_slices(images: pd.DataFrame, meta: pd.DataFrame, src: str = "slices") -> pd.DataFrame:
    """Join a slice table onto ``images`` by ``image_id`` (or ``file_name``), matching the id
    type of ``images``; unknown ids are dropped with a warning."""
    meta = meta.copy()
    if "image_id" in meta.columns:
        key = "image_id"
        if pd.api.types.is_integer_dtype(images["image_id"]) and \
                not pd.api.types.is_integer_dtype(meta["image_id"]):
            conv = pd.to_numeric(meta["image_id"], errors="coerce")
            if conv.isna().any() or (conv != conv.round()).any():
                raise MetricsInputError(f"{src}: image_id values are not the ground truth's "
                                        "integer ids")
            meta["image_id"] = conv.astype(np.int64)
        elif not pd.api.types.is_integer_dtype(images["image_id"]):
            meta["image_id"] = meta["image_id"].astype(str)
            images = images.assign(image_id=images["image_id"].astype(str))
    elif "file_name" in meta.columns and "file_name" in images.columns:
        key = "file_name"
    else:
        raise MetricsInputError(f"{src}: the slice table needs an 'image_id' (or 'file_name') "
                                f"column; it has {list(meta.columns)}")
    if meta[key].duplicated().any():
        raise MetricsInputError(f"{src}: duplicate {key} values, e.g. "
                                f"{meta.loc[meta[key].duplicated(), key].head(3).tolist()}")
    unknown = ~meta[key].isin(images[key])
    if unknown.any():
        log.warning("%s: %d row(s) with %s not in the ground truth are ignored", src,
                    int(unknown.sum()), key)
    drop = [c for c in meta.columns if c in images.columns and c != key]
    merged = images.merge(meta[~unknown].drop(columns=drop), on=key, how="left")
    missing = len(images) - int((~unknown).sum())
    if missing > 0:
        log.warning("%s: %d ground-truth image(s) have no slice row (they appear only in the "
                    "overall rows)", src, missing)
    return merged
