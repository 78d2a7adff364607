"""Random detection cases for tests and benchmarks, plus a silent pycocotools reference.

``random_case`` draws ground truth with every COCO edge the evaluator must get right: empty
images, images without detections, crowd boxes, all three size ranges (and boxes whose ``area``
field differs from ``w*h``), duplicated boxes (IoU ties), quantised scores (score ties), wrong
classes, duplicates and background detections. ``to_coco`` turns it into the COCO dicts
pycocotools reads, and ``pycocotools_stats`` runs pycocotools on it with its prints silenced
(``coco_objects`` / ``cocoeval_stats``: the same steps for any evaluator with pycocotools'
interface, as the metrics benchmark runs them).
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pandas as pd


def random_case(rng: np.random.Generator, n_images: int = 40, n_classes: int = 4,
                mean_gt: float = 4.0, crowd_rate: float = 0.05,
                score_decimals: int = 1) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(gt, dt, images)`` in Preflight's table formats, integer image ids (not contiguous)."""
    ids = rng.choice(np.arange(1, 20 * n_images + 1), size=n_images, replace=False)
    images = pd.DataFrame({
        "image_id": ids.astype(np.int64),
        "width": 640, "height": 480,
        "camera": rng.choice(["c0", "c1", "c2"], n_images),
        "shift": rng.choice(["a", "b"], n_images, p=[0.6, 0.4]),
        "lighting": rng.choice(["high", "mid", "low"], n_images),
    })
    gts, dts = [], []
    for img in ids:
        n_gt = rng.poisson(mean_gt) if rng.random() > 0.1 else 0
        side = np.exp(rng.uniform(np.log(6), np.log(260), size=(n_gt, 2)))
        x = rng.uniform(0, 600, n_gt)
        y = rng.uniform(0, 450, n_gt)
        box = np.column_stack([x, y, side])
        if n_gt and rng.random() < 0.5:
            box = np.round(box)
        cls = rng.integers(0, n_classes, n_gt)
        if n_gt > 1 and rng.random() < 0.2:      # an exact duplicate: IoU ties between gts
            box[-1] = box[0]
            cls[-1] = cls[0]
        area = box[:, 2] * box[:, 3] * np.where(rng.random(n_gt) < 0.2,
                                                rng.uniform(0.7, 1.3, n_gt), 1.0)
        crowd = (rng.random(n_gt) < crowd_rate).astype(np.int64)
        for j in range(n_gt):
            gts.append((img, int(cls[j]), *box[j], float(area[j]), int(crowd[j]),
                        bool(rng.random() < 0.2), float(rng.choice([0.0, 0.0, 0.3, 0.7]))))
        if rng.random() < 0.15:                 # an image without any detection
            continue
        for j in range(n_gt):
            for _ in range(rng.choice([0, 1, 1, 1, 2])):
                jit = box[j].copy()
                jit[:2] += rng.normal(0, 0.08, 2) * box[j, 2:]
                jit[2:] *= np.exp(rng.normal(0, 0.12, 2))
                c = int(cls[j]) if rng.random() > 0.15 else int(rng.integers(0, n_classes))
                dts.append((img, c, float(rng.uniform(0.05, 1.0)), *jit))
        for _ in range(rng.poisson(1.5)):       # background
            s = np.exp(rng.uniform(np.log(5), np.log(200), 2))
            dts.append((img, int(rng.integers(0, n_classes)), float(rng.uniform(0.0, 0.6)),
                        float(rng.uniform(0, 600)), float(rng.uniform(0, 450)), *s))
    gt = pd.DataFrame(gts, columns=["image_id", "class_id", "x", "y", "w", "h", "area",
                                    "iscrowd", "truncated", "occluded"])
    dt = pd.DataFrame(dts, columns=["image_id", "class_id", "score", "x", "y", "w", "h"])
    dt["score"] = dt["score"].round(score_decimals)
    dt = dt.sample(frac=1.0, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)
    return gt, dt, images


def to_coco(gt: pd.DataFrame, dt: pd.DataFrame, images: pd.DataFrame,
            n_classes: int | None = None) -> tuple[dict, list[dict]]:
    """COCO instances dict (annotation ids from 1) and a COCO results list."""
    k = n_classes if n_classes is not None else int(max(gt["class_id"].max(), dt["class_id"].max())) + 1
    dataset = {
        "images": [{"id": int(i), "width": 640, "height": 480} for i in images["image_id"]],
        "categories": [{"id": int(c), "name": f"c{c}"} for c in range(k)],
        "annotations": [
            {"id": n + 1, "image_id": int(r.image_id), "category_id": int(r.class_id),
             "bbox": [float(r.x), float(r.y), float(r.w), float(r.h)], "area": float(r.area),
             "iscrowd": int(r.iscrowd)}
            for n, r in enumerate(gt.itertuples(index=False))],
    }
    results = [{"image_id": int(r.image_id), "category_id": int(r.class_id),
                "bbox": [float(r.x), float(r.y), float(r.w), float(r.h)], "score": float(r.score)}
               for r in dt.itertuples(index=False)]
    return dataset, results


def coco_objects(coco_cls, dataset: dict, results: list[dict]):
    """Ground truth and results as ``coco_cls`` objects (pycocotools' ``COCO`` or a class with its
    interface), built from copies of ``dataset`` / ``results``."""
    coco_gt = coco_cls()
    coco_gt.dataset = copy.deepcopy(dataset)
    coco_gt.createIndex()
    return coco_gt, coco_gt.loadRes(copy.deepcopy(results))


def cocoeval_stats(cocoeval_cls, coco_gt, coco_dt, img_ids=None, cat_ids=None) -> np.ndarray:
    """The twelve box stats (-1 replaced by NaN) of ``cocoeval_cls`` (pycocotools' ``COCOeval``
    or a class with its interface); ``img_ids`` / ``cat_ids`` restrict images / categories."""
    ev = cocoeval_cls(coco_gt, coco_dt, "bbox")
    if img_ids is not None:
        ev.params.imgIds = sorted(int(i) for i in img_ids)
    if cat_ids is not None:
        ev.params.catIds = sorted(int(i) for i in cat_ids)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    stats = np.asarray(ev.stats[:12], dtype=np.float64)
    return np.where(stats == -1, np.nan, stats)


def pycocotools_stats(dataset: dict, results: list[dict], img_ids=None,
                      faster: bool = False, cat_ids=None) -> np.ndarray:
    """pycocotools' twelve stats (-1 replaced by NaN), silenced; ``img_ids`` / ``cat_ids``
    restrict images / categories.

    ``faster=True`` runs faster-coco-eval's compiled evaluator instead."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if faster:
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster as COCOeval
        else:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
        coco_gt, coco_dt = coco_objects(COCO, dataset, results)
        return cocoeval_stats(COCOeval, coco_gt, coco_dt, img_ids, cat_ids)


SLICE_LEVELS = {"camera": 8, "week": 5, "lighting": 3, "shift": 2, "lens": 2}


def large_case(rng: np.random.Generator, n_images: int = 5000, n_classes: int = 7,
               mean_gt: float = 8.0, mean_background: float = 8.0,
               slice_levels: dict[str, int] | None = None
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A vectorised benchmark-sized case: ``(gt, dt, images)`` with integer image ids and slice
    columns (default 8 + 5 + 3 + 2 + 2 = 20 slice values)."""
    levels = SLICE_LEVELS if slice_levels is None else slice_levels
    ids = np.arange(1, n_images + 1, dtype=np.int64)
    images = pd.DataFrame({"image_id": ids, "width": 640, "height": 480})
    for col, k in levels.items():
        images[col] = np.array([f"{col}{i}" for i in range(k)])[rng.integers(0, k, n_images)]
    n_gt = rng.poisson(mean_gt, n_images)
    g_img = np.repeat(ids, n_gt)
    G = len(g_img)
    side = np.exp(rng.uniform(np.log(8), np.log(300), size=(G, 2)))
    g_box = np.column_stack([rng.uniform(0, 600, G), rng.uniform(0, 450, G), side])
    g_cls = rng.integers(0, n_classes, G)
    gt = pd.DataFrame({"image_id": g_img, "class_id": g_cls, "x": g_box[:, 0], "y": g_box[:, 1],
                       "w": g_box[:, 2], "h": g_box[:, 3], "area": side[:, 0] * side[:, 1],
                       "iscrowd": (rng.random(G) < 0.01).astype(np.int64)})
    copies = rng.choice([0, 1, 1, 1, 2], size=G)
    src = np.repeat(np.arange(G), copies)
    D1 = len(src)
    jit = g_box[src].copy()
    jit[:, :2] += rng.normal(0, 0.1, (D1, 2)) * g_box[src, 2:]
    jit[:, 2:] *= np.exp(rng.normal(0, 0.15, (D1, 2)))
    cls = np.where(rng.random(D1) < 0.1, rng.integers(0, n_classes, D1), g_cls[src])
    n_bg = rng.poisson(mean_background, n_images)
    b_img = np.repeat(ids, n_bg)
    B = len(b_img)
    b_side = np.exp(rng.uniform(np.log(6), np.log(200), size=(B, 2)))
    dt = pd.DataFrame({
        "image_id": np.concatenate([g_img[src], b_img]),
        "class_id": np.concatenate([cls, rng.integers(0, n_classes, B)]),
        "score": np.round(np.concatenate([rng.beta(5, 2, D1), rng.beta(1, 4, B)]), 3),
        "x": np.concatenate([jit[:, 0], rng.uniform(0, 600, B)]),
        "y": np.concatenate([jit[:, 1], rng.uniform(0, 450, B)]),
        "w": np.concatenate([jit[:, 2], b_side[:, 0]]),
        "h": np.concatenate([jit[:, 3], b_side[:, 1]])})
    dt = dt.iloc[rng.permutation(len(dt))].reset_index(drop=True)
    return gt, dt, images
