"""The classification task through the same validation pass as detection.

A classification sample (one label per image, e.g. object crops) is validated as one
whole-image box per image, so the label checks (class in the taxonomy, ids unique, images
decode, slice columns present) are the detection ones; a classifier is evaluated into the same
long metrics table (``recall``/``precision`` micro-averaged, which for single-label
classification equal top-1 accuracy, plus per-class rows with Wilson intervals, macro-F1 and
calibration), and stressed through the same suite with a whole-frame "detection" per image.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from preflight.evaluation import (
    CandidateEvaluation,
    EvaluationSpec,
    FailureDistribution,
    iter_frame_batches,
    read_rgb,
)
from preflight.metrics.cost import CostModel
from preflight.metrics.slices import LongTable, make_slices

ProbsFn = Callable[[list[np.ndarray]], np.ndarray]


def whole_image_boxes(images: pd.DataFrame) -> pd.DataFrame:
    """One box covering each image, of the image's label: the boxes table of a classification
    sample (what label validation and the stress suite's ground truth read)."""
    w = images["width"].astype(float).to_numpy()
    h = images["height"].astype(float).to_numpy()
    labels = images["label"].astype(np.int64).to_numpy()
    names = images["label_name"] if "label_name" in images.columns else labels.astype(str)
    source = images["source"] if "source" in images.columns else "images/" + images["file_name"]
    return pd.DataFrame({
        "image_id": images["image_id"].to_numpy(), "box_id": np.arange(len(images)),
        "file_name": images["file_name"].to_numpy(), "class_id": labels,
        "class_name": np.asarray(names), "x": 0.0, "y": 0.0, "w": w, "h": h, "area": w * h,
        "iscrowd": 0, "truncated": images.get("truncated", False),
        "occluded": images.get("occluded", 0.0),
        "size_bin": images.get("size_bin", "large"), "source": np.asarray(source),
        "line": pd.array([pd.NA] * len(images), dtype="Int64"),
        "source_box_id": np.arange(len(images))})


def as_validation_images(images: pd.DataFrame) -> pd.DataFrame:
    """The classification images table with the columns label validation expects (undecodable
    files were already quarantined when the sample was read)."""
    out = images.copy()
    if "decode_ok" not in out.columns:
        out["decode_ok"] = True
    if "source" not in out.columns:
        out["source"] = "images/" + out["file_name"].astype(str)
    return out


def predict_probs(probs_fn: ProbsFn, images: pd.DataFrame, *, batch_size: int = 32
                  ) -> np.ndarray:
    """``(n, K)`` class probabilities for every image, frames read in batches."""
    rows = [np.asarray(probs_fn(rgb), dtype=np.float64)
            for _, rgb in iter_frame_batches(images, batch_size)]
    return np.concatenate(rows) if rows else np.zeros((0, 0))


def predictions_table(images: pd.DataFrame, probs: np.ndarray,
                      class_names: dict[int, str]) -> pd.DataFrame:
    """``image_id, label, class_id (top-1), score, p.<class>...``."""
    table = pd.DataFrame({"image_id": images["image_id"].to_numpy(),
                          "label": images["label"].astype(np.int64).to_numpy(),
                          "class_id": probs.argmax(axis=1), "score": probs.max(axis=1)})
    for k in range(probs.shape[1]):
        table[f"p.{class_names.get(k, k)}"] = probs[:, k]
    return table


def classification_cost(images: pd.DataFrame, predictions: pd.DataFrame, cost: CostModel,
                        class_names: dict[int, str], slice_columns: Sequence[str],
                        min_images: int, min_boxes: int) -> pd.DataFrame:
    """Expected daily cost per slice: each wrong label is a missed object of the true class
    (its ``cost_per_missed_object``) plus an operator check of the wrong one."""
    wrong = (predictions["class_id"] != predictions["label"]).to_numpy()
    miss = np.array([cost.miss_cost(class_names.get(int(c), str(c)))
                     for c in predictions["label"]])
    fp_cost = cost.operator_minutes_per_false_positive * cost.cost_per_operator_minute
    table = LongTable()
    for s in make_slices(images.reset_index(drop=True), list(slice_columns)):
        n = int(s.mask.sum())
        rate = wrong[s.mask].mean() if n else np.nan
        daily_miss = (wrong[s.mask] * miss[s.mask]).mean() * cost.frames_per_day if n else np.nan
        daily_fp = rate * fp_cost * cost.frames_per_day if n else np.nan
        table.add(s.column, s.value, "error_rate", rate, n_images=n, n_boxes=n)
        table.add(s.column, s.value, "cost.fn_daily", daily_miss, n_images=n, n_boxes=n)
        table.add(s.column, s.value, "cost.fp_daily", daily_fp, n_images=n, n_boxes=n)
        table.add(s.column, s.value, "cost.daily", daily_miss + daily_fp, n_images=n, n_boxes=n)
    return table.frame(min_images, min_boxes)


def classification_metrics(images: pd.DataFrame, probs: np.ndarray, spec: EvaluationSpec,
                           class_names: dict[int, str], slice_columns: Sequence[str]
                           ) -> pd.DataFrame:
    """The long table of :func:`preflight.metrics.classification.evaluate_classification`, plus
    micro ``recall`` and ``precision`` rows (equal to top-1 accuracy for single-label data) so
    the decision rule's per-slice bar applies to classifiers as to detectors."""
    from preflight.metrics.classification import evaluate_classification

    table = evaluate_classification(images["label"].astype(np.int64).to_numpy(), probs=probs,
                                    images=images.reset_index(drop=True),
                                    slice_columns=list(slice_columns), class_names=class_names,
                                    bootstrap=spec.bootstrap, seed=spec.seed,
                                    min_images=spec.min_images, min_boxes=spec.min_boxes)
    accuracy = table[table["metric"] == "accuracy"]
    return pd.concat([table, accuracy.assign(metric="recall"),
                      accuracy.assign(metric="precision")], ignore_index=True)


def evaluate_classifier(probs_fn: ProbsFn, images: pd.DataFrame, spec: EvaluationSpec,
                        cost: CostModel, class_names: dict[int, str], *,
                        plot_dir: str | None = None, batch_size: int = 32, title: str = "",
                        recall_bar: float | None = None) -> CandidateEvaluation:
    """Predict every image and compute the classifier's failure distribution (and plots)."""
    from preflight.metrics.classification import classification_confusion

    t0 = time.perf_counter()
    probs = predict_probs(probs_fn, images, batch_size=batch_size)
    predict_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    slices = [c for c in dict.fromkeys((*spec.slice_columns, *spec.box_slice_columns))
              if c in images.columns]
    preds = predictions_table(images, probs, class_names)
    metrics = classification_metrics(images, probs, spec, class_names, slices)
    confusion = classification_confusion(images["label"].astype(np.int64).to_numpy(),
                                         probs=probs, images=images.reset_index(drop=True),
                                         slice_columns=slices, class_names=class_names)
    daily = classification_cost(images, preds, cost, class_names, slices, spec.min_images,
                                spec.min_boxes)
    errors = metrics.iloc[:0]
    result = FailureDistribution(metrics, errors, confusion, daily, preds,
                                 time.perf_counter() - t1)
    plots = (_plots(result, images, preds, class_names, plot_dir, title, recall_bar)
             if plot_dir else {})
    return CandidateEvaluation(preds, result, plots, predict_seconds, len(images))


def _plots(result: FailureDistribution, images: pd.DataFrame, preds: pd.DataFrame,
           class_names: dict[int, str], out_dir: str, title: str,
           recall_bar: float | None) -> dict[str, str]:
    from pathlib import Path

    import cv2

    from preflight.metrics.confusion import confusion_pivot
    from preflight.report.plots import confusion_chart, frame_grid, slice_chart

    out = Path(out_dir)
    plots = {
        "slices_recall": slice_chart(result.metrics, "recall", out / "slices_recall.png",
                                     title=f"{title}: top-1 accuracy by slice", bar=recall_bar),
        "confusion": confusion_chart(confusion_pivot(result.confusion), out / "confusion.png",
                                     title=f"{title}: confusion"),
    }
    wrong = preds[preds["class_id"] != preds["label"]].sort_values("score", ascending=False)
    by_id = images.set_index("image_id")
    frames = []
    for row in wrong.head(12).itertuples():
        crop = cv2.resize(read_rgb(by_id.loc[row.image_id, "path"]), (128, 128))
        text = f"{class_names.get(row.label)}->{class_names.get(row.class_id)} {row.score:.2f}"
        cv2.putText(crop, text[:24], (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 0, 0), 1)
        frames.append(crop)
    plots["worst_frames"] = frame_grid(frames, out / "worst_frames.png", columns=4)
    return {k: str(v) for k, v in plots.items()}


def frame_predict_fn(probs_fn: ProbsFn) -> Callable[[list[np.ndarray]], list[pd.DataFrame]]:
    """A classifier as a whole-frame detector (one box of its top-1 class per frame), so the
    stress suite, which moves boxes through every corruption, runs unchanged."""
    def predict(frames: list[np.ndarray]) -> list[pd.DataFrame]:
        probs = np.asarray(probs_fn(frames))
        return [pd.DataFrame({"class_id": [int(p.argmax())], "score": [float(p.max())],
                              "x": [0.0], "y": [0.0], "w": [float(f.shape[1])],
                              "h": [float(f.shape[0])]}) for f, p in zip(frames, probs,
                                                                         strict=True)]
    return predict


def accuracy_evaluate_fn(gt: pd.DataFrame, dt: pd.DataFrame, images: pd.DataFrame
                         ) -> dict[str, float]:
    """Top-1 accuracy of whole-frame predictions against whole-image labels (stress)."""
    truth = gt.drop_duplicates("image_id").set_index("image_id")["class_id"]
    top = dt.sort_values("score", ascending=False).drop_duplicates("image_id")
    pred = top.set_index("image_id")["class_id"].reindex(truth.index)
    accuracy = float((pred == truth).mean()) if len(truth) else float("nan")
    return {"accuracy": accuracy, "recall": accuracy}
