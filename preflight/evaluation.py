"""Evaluate one candidate on an ingested sample: predictions, the failure distribution, stress.

Framework-free glue between the ingested tables (docs/CONTRACTS.md), a model's ``predict`` and
the evaluation engine (:mod:`preflight.metrics`). Frames are read from disk in batches and
dropped after prediction, so memory stays flat as the evaluation set grows; only the (small)
prediction table is kept.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pandas as pd

from preflight.data.properties import BINS
from preflight.metrics.bootstrap_process import (
    BootstrapPool,
    BootstrapProcess,
    RemoteBootstraps,
    bootstrap_request,
)
from preflight.metrics.confusion import confusion_matrix
from preflight.metrics.cost import CostModel, expected_cost
from preflight.metrics.detection import evaluate_index, start_bootstraps
from preflight.metrics.errors import classify_detections, error_decomposition
from preflight.metrics.index import EvaluationIndex
from preflight.metrics.slices import OVERALL
from preflight.models.base import PRED_COLUMNS as _PRED
from preflight.progress import Progress, Report

if TYPE_CHECKING:  # the tiling types only for hints
    from preflight.models.tiling import TilingGain, TilingPlan

PRED_COLUMNS = list(_PRED)

log = logging.getLogger(__name__)

PredictFn = Callable[[list[np.ndarray]], Sequence[pd.DataFrame]]
GT_COLUMNS = ["image_id", "class_id", "class_name", "x", "y", "w", "h", "area", "iscrowd",
              "truncated", "occluded"]


class FrameReadError(RuntimeError):
    """A frame that passed validation could not be read at evaluation time."""


def read_rgb(path: str) -> np.ndarray:
    """An image file (a table's ``path``: any file name, see ``preflight.data.filenames``) as an
    RGB ``uint8`` array, decoded as ingestion decoded it."""
    from preflight.data.filenames import read_image_bgr

    bgr = read_image_bgr(path)
    if bgr is None:
        raise FrameReadError(f"cannot read image {path} (moved or corrupted after validation?)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def iter_frame_batches(images: pd.DataFrame, batch_size: int) -> Iterator[tuple[list, list]]:
    """``(image_ids, RGB frames)`` batches in table order; one batch in memory at a time."""
    ids = images["image_id"].tolist()
    paths = images["path"].tolist()
    for start in range(0, len(ids), batch_size):
        yield ids[start:start + batch_size], [read_rgb(p) for p in paths[start:start + batch_size]]


def predict_images(predict_fn: PredictFn, images: pd.DataFrame, *, batch_size: int = 16,
                   progress: bool = False, desc: str = "predict", overlap: bool = True,
                   report: Report | None = None) -> pd.DataFrame:
    """Run ``predict_fn`` over every image: ``image_id`` + ``PRED_COLUMNS``, original pixels.

    With ``overlap`` (the default) the host work runs beside the model: when ``predict_fn`` is a
    model's ``predict`` whose owner offers ``predict_stages()`` (ultralytics detectors), reading
    + pre-processing of the next batches and post-processing of the previous one run on two
    worker threads while this thread runs the forward; otherwise the next batch is read from
    disk while ``predict_fn`` runs. At most ``2`` batches wait on each side, so memory stays flat.
    ``progress``: a terminal bar; ``report``: progress lines with the time left (a run log).
    """
    from preflight.prediction import run_overlapped, stages_of

    ids, paths = images["image_id"].tolist(), images["path"].tolist()
    chunks = [(ids[s:s + batch_size], paths[s:s + batch_size])
              for s in range(0, len(ids), batch_size)]
    values: list[np.ndarray] = []
    owners: list[np.ndarray] = []

    def collect(batch_ids, preds) -> None:
        preds = list(preds)
        if len(preds) != len(batch_ids):
            raise ValueError(f"predict_fn returned {len(preds)} results for {len(batch_ids)} "
                             "frames")
        for image_id, pred in zip(batch_ids, preds, strict=True):
            if len(pred):  # one array per frame; a single DataFrame is built at the end
                values.append(pred if isinstance(pred, np.ndarray)       # staged: (n, 6) rows
                              else pred[PRED_COLUMNS].to_numpy(np.float64))
                owners.append(np.full(len(pred), image_id, dtype=object))

    with Progress(len(chunks), desc, unit="batches", report=report, bar=progress) as bar:
        if overlap:
            run_overlapped(stages_of(predict_fn), predict_fn, chunks, read_rgb, collect,
                           bar.update)
        else:
            for batch_ids, batch_paths in chunks:
                collect(batch_ids, predict_fn([read_rgb(p) for p in batch_paths]))
                bar.update(1)
    table = np.concatenate(values) if values else np.zeros((0, len(PRED_COLUMNS)))
    out = pd.DataFrame(table, columns=PRED_COLUMNS)
    out.insert(0, "image_id", np.concatenate(owners) if owners else np.array([], dtype=object))
    out["class_id"] = out["class_id"].astype(np.int64)
    return out


def ground_truth(boxes: pd.DataFrame) -> pd.DataFrame:
    """The boxes table in the evaluation engine's ground-truth shape."""
    gt = boxes.copy()
    for col, default in (("iscrowd", 0), ("truncated", False), ("occluded", 0.0)):
        if col not in gt.columns:
            gt[col] = default
    return gt[[c for c in GT_COLUMNS if c in gt.columns]].reset_index(drop=True)


#: Slices every sample gets: the pixel-derived bins of ``data.properties.BINS`` (per image) ...
PIXEL_SLICE_COLUMNS: tuple[str, ...] = tuple(col for col, _, _ in BINS.values())
#: ... and the object-size bins (per ground-truth box): in frame pixels and at the model input
#: (the latter two scale with the candidate's input size; ``input_px_bin`` is the measured size
#: distribution the decision holds against ``decision.small_object_px``).
OBJECT_SLICE_COLUMNS: tuple[str, ...] = ("size_bin", "input_size_bin", "input_px_bin")


def missing_slice_columns(slice_columns, images: pd.DataFrame) -> list[str]:
    """Configured metadata slice columns that the images table lacks (skipped in evaluation)."""
    return [c for c in slice_columns if c not in images.columns]


@dataclass(frozen=True)
class EvaluationSpec:
    """What to compute (the ``evaluation:`` settings plus the candidate's input size)."""

    slice_columns: tuple[str, ...]
    box_slice_columns: tuple[str, ...]
    operating_threshold: float = 0.25
    bootstrap: int = 200
    seed: int = 0
    min_images: int = 30
    min_boxes: int = 50
    model_input_size: int | None = None

    @classmethod
    def from_settings(cls, evaluation, model_input_size: int | None = None) -> EvaluationSpec:
        """The settings' slices plus the ones every sample has: the pixel-derived bins and
        the object-size bin (evaluated whatever the settings list)."""
        slices = tuple(dict.fromkeys([*evaluation.slice_columns, *PIXEL_SLICE_COLUMNS]))
        boxes = tuple(dict.fromkeys([*evaluation.box_slice_columns, *OBJECT_SLICE_COLUMNS]))
        return cls(slices, boxes,
                   evaluation.operating_threshold, evaluation.bootstrap, evaluation.seed,
                   evaluation.min_images, evaluation.min_boxes, model_input_size)


@dataclass(frozen=True)
class FailureDistribution:
    """Everything the evaluation engine says about one candidate on one image set."""

    metrics: pd.DataFrame      # the long table (per slice, with intervals and thin flags)
    errors: pd.DataFrame       # TIDE-style error types per slice
    confusion: pd.DataFrame    # long confusion table (overall and per slice)
    cost: pd.DataFrame         # expected daily cost per slice
    detections: pd.DataFrame   # per-detection error labels
    seconds: float
    #: slices bootstrapped in the helper process / in all (0 / n when no helper was used)
    bootstrap_slices: tuple[int, int] = (0, 0)


def failure_distribution(gt: pd.DataFrame, predictions: pd.DataFrame, images: pd.DataFrame,
                         spec: EvaluationSpec, cost: CostModel, class_names: dict[int, str], *,
                         helper: BootstrapProcess | None = None) -> FailureDistribution:
    """Match once, then every view of the failure distribution from the same index.

    ``helper``: a started :class:`~preflight.metrics.bootstrap_process.BootstrapProcess`; when it
    is ready, the slices' bootstraps run there, beside the other views (same table; see that
    module)."""
    t0 = time.perf_counter()
    slice_cols = [c for c in spec.slice_columns if c in images.columns]
    missing = sorted(set(spec.slice_columns) - set(slice_cols))
    if missing:  # reported once, as a warning on the validated sample (missing_slice_columns)
        log.debug("slice columns %s are not in the images table; skipped", missing)
    # object size at model input needs the input size and the frame sizes
    at_input = bool(spec.model_input_size) and {"width", "height"} <= set(images.columns)
    box_cols = [c for c in spec.box_slice_columns
                if c in gt.columns or c in ("size_bin", "occluded_bin")
                or (at_input and c in ("input_size_bin", "input_px_bin"))]
    imgs = images[["image_id", *slice_cols, *[c for c in ("width", "height")
                                               if c in images.columns]]]
    remote = (helper is not None and spec.bootstrap > 0
              and helper.submit(bootstrap_request(gt, predictions, imgs, class_names, slice_cols,
                                                  spec.bootstrap, spec.seed)))
    index = EvaluationIndex.build(gt, predictions, imgs, class_names=class_names)
    common = dict(min_images=spec.min_images, min_boxes=spec.min_boxes)
    threshold = spec.operating_threshold
    # The views are independent NumPy work (which releases the GIL): each slice's bootstrap and
    # the other views run on worker threads while this thread assembles the metrics table.
    # With a helper process the bootstraps run there and the views here, one after the other:
    # this process then keeps to one core and the helper has the other.
    workers = max(1, min(2, os.cpu_count() or 1))
    with (_Inline() if remote else
          ThreadPoolExecutor(workers, thread_name_prefix="preflight-metrics")) as pool:
        errors = pool.submit(error_decomposition, index, slice_columns=slice_cols,
                             operating_threshold=threshold, **common)   # the longest task
        shared = (RemoteBootstraps(helper, index, index.image_slices(slice_cols),
                                   spec.bootstrap, spec.seed) if remote else None)
        boots = (shared.tasks() if shared is not None else
                 start_bootstraps(index, slice_cols, spec.bootstrap, spec.seed, pool))
        confusion = pool.submit(confusion_matrix, index, slice_columns=slice_cols,
                                operating_threshold=threshold)
        daily = pool.submit(expected_cost, index, cost, slice_columns=slice_cols,
                            operating_threshold=threshold, **common)
        detections = pool.submit(classify_detections, index)
        metrics = evaluate_index(index, slice_columns=slice_cols, box_slice_columns=box_cols,
                                 operating_threshold=threshold, bootstrap=spec.bootstrap,
                                 seed=spec.seed, model_input_size=spec.model_input_size,
                                 bootstraps=boots, **common)
        n_boot = sum(b is not None for b in boots)
        return FailureDistribution(metrics, errors.result(), confusion.result(),
                                   daily.result(), detections.result(),
                                   time.perf_counter() - t0,
                                   (n_boot - shared.computed_here if shared else 0, n_boot))


class _Inline(Executor):
    """An executor that runs each task when it is submitted, on the calling thread."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered by result(), as a pool does
            future.set_exception(exc)
        return future


def mlflow_metric_names(metrics: pd.DataFrame) -> dict[str, float]:
    """``{metric}`` overall and ``{metric}.{slice_column}.{slice_value}`` per slice (sortable,
    filterable names such as ``AP50.brightness_bin.low``); non-finite values are dropped."""
    values = metrics["value"].astype(float)
    overall = metrics["slice_column"] == OVERALL
    names = np.where(overall, metrics["metric"],
                     metrics["metric"] + "." + metrics["slice_column"].astype(str) + "."
                     + metrics["slice_value"].astype(str))
    return {str(k): float(v) for k, v in zip(names, values, strict=True) if np.isfinite(v)}


def failing_slices(metrics: pd.DataFrame, metric: str = "recall", k: int = 10) -> pd.DataFrame:
    """The ``k`` worst slices on ``metric`` with evidence (non-thin first, then by value)."""
    rows = metrics[(metrics["metric"] == metric) & (metrics["slice_column"] != OVERALL)]
    rows = rows[np.isfinite(rows["value"].astype(float))]
    rows = rows.sort_values(["thin", "value"], ascending=[True, True])
    return rows[["slice_column", "slice_value", "metric", "value", "ci_low", "ci_high",
                 "n_images", "n_boxes", "thin"]].head(k).reset_index(drop=True)


def before_after(before: pd.DataFrame, after: pd.DataFrame, metric: str = "recall"
                 ) -> pd.DataFrame:
    """Per slice: ``metric`` in two evaluations (off-the-shelf and fine-tuned), with their
    intervals, the ``change`` and whether it is ``significant``: the two intervals are disjoint.
    Rows in one evaluation only are kept (NaN on the other side); worst ``before`` first."""
    cols = ["slice_column", "slice_value", "value", "ci_low", "ci_high", "thin"]
    b = before[before["metric"] == metric][cols]
    a = after[after["metric"] == metric][cols]
    table = b.merge(a, on=["slice_column", "slice_value"], suffixes=("_before", "_after"),
                    how="outer")
    table["change"] = table["value_after"] - table["value_before"]
    table["significant"] = ((table["ci_low_after"] > table["ci_high_before"])
                            | (table["ci_high_after"] < table["ci_low_before"]))
    return table.sort_values("value_before", na_position="last").reset_index(drop=True)


def worst_images(gt: pd.DataFrame, predictions: pd.DataFrame, detections: pd.DataFrame,
                 threshold: float, k: int = 6) -> list:
    """Image ids with the most errors at the operating point (missed boxes + false positives)."""
    errs = detections[(detections["score"] >= threshold) & (detections["error"] != "tp")] \
        if {"score", "error"} <= set(detections.columns) else detections.iloc[:0]
    fp_count = errs.groupby("image_id").size() if len(errs) else pd.Series(dtype=int)
    per_image = gt.groupby("image_id").size().rename("n_gt")
    found = (predictions[predictions["score"] >= threshold].groupby("image_id").size()
             .rename("n_dt"))
    table = pd.concat([per_image, found, fp_count.rename("n_err")], axis=1).fillna(0)
    table["score"] = (table["n_gt"] - table["n_dt"]).abs() + table["n_err"]
    return table.sort_values("score", ascending=False).head(k).index.tolist()


def stress_inputs(images: pd.DataFrame, gt: pd.DataFrame
                  ) -> Iterator[tuple[object, np.ndarray, np.ndarray, np.ndarray]]:
    """``(image_id, RGB frame, boxes xywh, class ids)`` for :func:`preflight.stress.stress_evaluate`
    (read lazily, one frame at a time)."""
    by_image = {k: v for k, v in gt.groupby("image_id")}
    empty = gt.iloc[:0]
    for image_id, path in zip(images["image_id"], images["path"], strict=True):
        boxes = by_image.get(image_id, empty)
        yield (image_id, read_rgb(path), boxes[["x", "y", "w", "h"]].to_numpy(np.float64),
               boxes["class_id"].to_numpy(np.int64))


def stratified_subset(images: pd.DataFrame, n: int, columns: Sequence[str], seed: int = 0
                      ) -> pd.DataFrame:
    """``n`` images spread over the values of ``columns`` (deterministic given ``seed``)."""
    if len(images) <= n:
        return images
    cols = [c for c in columns if c in images.columns]
    order = images.sample(frac=1.0, random_state=seed)
    if cols:
        order = order.assign(_rank=order.groupby(cols, dropna=False).cumcount())
        order = order.sort_values("_rank", kind="stable").drop(columns="_rank")
    return order.head(n).sort_values("image_id").reset_index(drop=True)


@dataclass(frozen=True)
class CandidateEvaluation:
    """A candidate's predictions on an image set and its failure distribution, plus the plots."""

    predictions: pd.DataFrame
    result: FailureDistribution
    plots: dict[str, str]
    predict_seconds: float
    n_images: int

    @property
    def metrics(self) -> pd.DataFrame:
        return self.result.metrics

    def overall(self, metric: str) -> float:
        m = self.result.metrics
        row = m[(m["slice_column"] == OVERALL) & (m["metric"] == metric)]
        return float(row["value"].iloc[0]) if len(row) else float("nan")

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"predictions": self.predictions, "metrics": self.result.metrics,
                "errors": self.result.errors, "confusion": self.result.confusion,
                "cost": self.result.cost}


@dataclass(frozen=True)
class EvaluationOptions:
    """How one evaluation runs and what it draws (what it computes is the
    :class:`EvaluationSpec`).

    ``plot_dir``: draw the plots there (None: no plots), titled ``title``, the recall chart with
    ``recall_bar``; ``batch_size`` frames per ``predict_fn`` call; ``overlap``: see
    :func:`predict_images`; ``progress``: a terminal bar; ``report``: progress lines with the time
    left (a run log); ``bootstraps``: a :class:`~preflight.metrics.bootstrap_process.BootstrapPool`
    the caller holds open, whose process shares the bootstrap intervals when the pool finds the
    set worth it (None: every bootstrap in this process).
    """

    plot_dir: str | None = None
    title: str = ""
    recall_bar: float | None = None
    batch_size: int = 16
    overlap: bool = True
    progress: bool = False
    report: Report | None = None
    bootstraps: BootstrapPool | None = None


def evaluate_candidate(predict_fn: PredictFn, images: pd.DataFrame, gt: pd.DataFrame,
                       spec: EvaluationSpec, cost: CostModel, class_names: dict[int, str],
                       options: EvaluationOptions | None = None) -> CandidateEvaluation:
    """Predict every image, compute the failure distribution and (optionally) draw its plots:
    the per-slice recall and AP50 charts with intervals, the confusion matrix, the error-type
    breakdown and a grid of the worst frames with boxes drawn (see :class:`EvaluationOptions`).

    With a bootstrap pool in ``options`` the pool's process is acquired before the prediction
    loop (it starts beside it, the first time) and used only if it is ready when the metrics
    start (or within the pool's ``wait_s``).
    """
    opts = options or EvaluationOptions()
    t0 = time.perf_counter()
    pool = opts.bootstraps
    helper = (pool.acquire() if pool is not None and pool.worth_it(len(images), spec.bootstrap)
              else None)                        # starts beside the prediction loop
    try:
        predictions = predict_images(predict_fn, images, batch_size=opts.batch_size,
                                     progress=opts.progress, desc=opts.title or "predict",
                                     overlap=opts.overlap, report=opts.report)
        predict_seconds = time.perf_counter() - t0
        ready = helper is not None and helper.ready(timeout=pool.wait_s)
        if helper is not None and not ready:
            log.info("bootstrap process not ready when the metrics started; computing the "
                     "intervals in this process")
        result = failure_distribution(gt, predictions, images, spec, cost, class_names,
                                      helper=helper if ready else None)
    finally:
        if helper is not None:
            pool.release(helper)
    plots = (draw_evaluation_plots(result, predictions, images, gt, spec, class_names,
                                   opts.plot_dir, title=opts.title, recall_bar=opts.recall_bar)
             if opts.plot_dir else {})
    return CandidateEvaluation(predictions, result, plots, predict_seconds, len(images))


def draw_evaluation_plots(result: FailureDistribution, predictions: pd.DataFrame,
                          images: pd.DataFrame, gt: pd.DataFrame, spec: EvaluationSpec,
                          class_names: dict[int, str], out_dir: str, *, title: str = "",
                          recall_bar: float | None = None) -> dict[str, str]:
    from pathlib import Path

    from preflight.metrics.confusion import confusion_pivot
    from preflight.report.plots import (
        bar_chart,
        confusion_chart,
        draw_frame,
        frame_grid,
        slice_chart,
    )

    out = Path(out_dir)
    plots = {
        "slices_recall": slice_chart(result.metrics, "recall", out / "slices_recall.png",
                                     title=f"{title}: recall at the operating point by slice",
                                     bar=recall_bar),
        "slices_AP50": slice_chart(result.metrics, "AP50", out / "slices_AP50.png",
                                   title=f"{title}: AP50 by slice"),
        "confusion": confusion_chart(confusion_pivot(result.confusion), out / "confusion.png",
                                     title=f"{title}: confusion at the operating point"),
    }
    err = result.errors
    gains = err[(err["slice_column"] == OVERALL) & err["metric"].str.startswith("dAP50.")]
    if len(gains):
        series = pd.Series(gains["value"].to_numpy(dtype=float),
                           index=gains["metric"].str.removeprefix("dAP50."))
        plots["error_types"] = bar_chart(series, out / "error_types.png",
                                         title=f"{title}: AP50 gained if each error type were fixed",
                                         xlabel="dAP50")
    worst = worst_images(gt, predictions, result.detections, spec.operating_threshold)
    by_id = images.set_index("image_id")
    names = [class_names[k] for k in sorted(class_names)]
    frames = [draw_frame(read_rgb(by_id.loc[i, "path"]), gt[gt["image_id"] == i],
                         predictions[predictions["image_id"] == i], names,
                         threshold=spec.operating_threshold, caption=str(i)[:10])
              for i in worst]
    plots["worst_frames"] = frame_grid(frames, out / "worst_frames.png")
    return {k: str(v) for k, v in plots.items()}


def stress_candidate(predict_fn: PredictFn, images: pd.DataFrame, gt: pd.DataFrame, suite,
                     *, operating_threshold: float, class_names: dict[int, str], seed: int = 0,
                     batch_size: int = 8, evaluate_fn=None, report: Report | None = None,
                     desc: str = "stress") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stress table (AP, AP50, recall per family/corruption/severity with rPC) and its
    per-family summary (mPC, rPC, worst condition). ``evaluate_fn(gt, dt, images) -> {metric:
    value}`` replaces the detection metrics (e.g. top-1 accuracy for a classifier).
    ``report``: progress lines with the time left (a run log)."""
    from preflight.metrics.detection import summary_metrics
    from preflight.stress import stress_evaluate, summarize_rpc

    def detection_metrics(g, d, imgs):
        return summary_metrics(g, d, imgs, operating_threshold=operating_threshold,
                               class_names=class_names)

    metrics = None if evaluate_fn else ["AP", "AP50", "recall", "precision"]
    table = stress_evaluate(predict_fn, stress_inputs(images, gt), evaluate_fn or detection_metrics,
                            suite, seed=seed, batch_size=batch_size, metrics=metrics,
                            n_images=len(images), report=report, desc=desc)
    return table, summarize_rpc(table)


@dataclass(frozen=True)
class TilingEvaluation:
    """Sliced inference measured for one candidate on the frames that hold small objects: what
    it recovers (``gain``: small-object recall full frame vs tiled) and what it costs (the
    single-stream p99 of one frame both ways, and the forward passes a tiled frame takes)."""

    gain: TilingGain
    tile: int
    overlap: float
    passes_per_frame: int
    p99_ms_full: float
    p99_ms_tiled: float
    n_frames: int

    @property
    def latency_ratio(self) -> float:
        return self.p99_ms_tiled / self.p99_ms_full

    def to_frame(self) -> pd.DataFrame:
        """The gain table (one row full frame, one tiled) with each side's p99 and passes."""
        return self.gain.to_frame().assign(p99_ms=[self.p99_ms_full, self.p99_ms_tiled],
                                           passes_per_frame=[1, self.passes_per_frame])


def evaluate_tiling(predict_fn: PredictFn, plan: TilingPlan, images: pd.DataFrame, gt: pd.DataFrame,
                    full_predictions: pd.DataFrame, cfg, *, model_input_size: int
                    ) -> TilingEvaluation:
    """Tile ``predict_fn`` as the settings say (``cfg``: the run's settings -- the ``tiling``,
    ``evaluation`` and ``latency`` sections and the taxonomy) and measure it on a stratified
    subset of the frames ``plan`` (:func:`preflight.models.tiling.plan_tiling`) found small
    objects in: recall against the full-frame ``full_predictions`` on the same frames, and the
    single-stream latency of both on one frame."""
    from preflight.latency import percentiles, time_single_stream
    from preflight.models.tiling import TiledPredictor, tiling_gain

    tile = cfg.tiling.tile_for(model_input_size)  # half the input size unless set
    tiled = TiledPredictor(predict_fn, tile=tile, overlap=cfg.tiling.overlap)
    frames = stratified_subset(images[images["image_id"].isin(plan.small_image_ids)],
                               cfg.tiling.max_images, cfg.evaluation.slice_columns,
                               cfg.evaluation.seed)
    gt = gt[gt["image_id"].isin(frames["image_id"])]
    full = full_predictions[full_predictions["image_id"].isin(frames["image_id"])]
    tiled_dt = predict_images(tiled, frames, batch_size=cfg.evaluation.batch_size)
    gain = tiling_gain(gt, full, tiled_dt, frames,
                       operating_threshold=cfg.evaluation.operating_threshold,
                       class_names=cfg.taxonomy_obj.as_dict(), size_column=plan.size_column,
                       model_input_size=model_input_size)
    frame = read_rgb(frames["path"].iloc[0])
    n = max(5, cfg.latency.iterations // 3)
    plain_ms = percentiles(time_single_stream(predict_fn, frame, iterations=n, warmup=2))
    tiled_ms = percentiles(time_single_stream(tiled, frame, iterations=n, warmup=2))
    h, w = frame.shape[:2]
    return TilingEvaluation(gain=gain, tile=tile, overlap=cfg.tiling.overlap,
                            passes_per_frame=tiled.passes_per_frame(h, w),
                            p99_ms_full=plain_ms[2], p99_ms_tiled=tiled_ms[2],
                            n_frames=len(frames))


def embed_frames(embed_fn: Callable[[list[np.ndarray]], np.ndarray], images: pd.DataFrame, *,
                 batch_size: int = 16) -> np.ndarray:
    """``(n, d)`` embeddings of every image, read from disk in batches (memory stays flat)."""
    rows = [np.asarray(embed_fn(rgb), dtype=np.float32)
            for _, rgb in iter_frame_batches(images, batch_size)]
    return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
