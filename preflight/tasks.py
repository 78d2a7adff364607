"""The task registry: what ``detect`` and ``classify`` do differently, in one table.

The settings' ``task`` picks a row; the pipeline calls its functions, so an asset that reads a
sample or scores a model does not branch on the task. A row names functions as
``"module:function"`` (imported on use: reading the table imports neither torch nor timm):

* ``read_sample(path, settings) -> IngestResult``: a landed folder as the images / boxes /
  quarantine tables (a classification sample gets one whole-image box per image, so validation
  and everything after it read the same tables);
* ``evaluate(predict_fn, images, gt, spec, cost, class_names, **options) -> CandidateEvaluation``:
  predict the images and compute the failure distribution (``options``: fields of
  :class:`preflight.evaluation.EvaluationOptions`: ``plot_dir``, ``batch_size``, ``title``,
  ``recall_bar``, ``report``, ``bootstraps``; a task uses those that apply to it);
* ``stress_fns(predict_fn) -> (predict_fn, evaluate_fn)``: what the stress suite (which moves
  boxes through every corruption) runs and scores with (``evaluate_fn`` None: detection recall);
* ``fine_tune(model, images, boxes, settings, *, out_dir, work_dir, policy, report) ->
  TrainResult``: fine-tune a loaded model (any family of the task: it is called through the
  :class:`preflight.models.base.Model` protocol's ``train``) on pool rows, never evaluation
  rows; ``work_dir`` is for derived training data (e.g. a YOLO view of the pool);
* ``synthetic_sample(frames, settings, report) -> (path, note)``: the embedded synthetic sample
  (generated as detection frames) in the form the task's ``read_sample`` reads, e.g. object
  crops for classification.

``tiling`` says whether sliced inference (a remedy for small objects in a frame) applies to the
task's models: the pipeline builds the tiling assets only for such tasks.

Adding a task is one row here (plus its functions); adding a model family is one adapter
module plus its row in :data:`preflight.models.registry.FAMILIES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from preflight.registries import lookup, resolve


@dataclass(frozen=True)
class Task:
    """One row of :data:`TASKS`."""

    name: str
    read_sample: str
    evaluate: str
    stress_fns: str
    fine_tune: str
    synthetic_sample: str
    tiling: bool = False
    description: str = ""

    def call(self, what: str, *args: Any, **kwargs: Any) -> Any:
        return resolve(getattr(self, what))(*args, **kwargs)


#: task name (the settings' ``task``) -> its row
TASKS: dict[str, Task] = {
    "detect": Task("detect", read_sample="preflight.tasks:read_detection_sample",
                   evaluate="preflight.tasks:evaluate_detector",
                   stress_fns="preflight.tasks:detector_stress_fns",
                   fine_tune="preflight.tasks:fine_tune_detector",
                   synthetic_sample="preflight.tasks:synthetic_frames", tiling=True,
                   description="detectors scored on boxes (COCO-exact per slice)"),
    "classify": Task("classify", read_sample="preflight.tasks:read_classification_sample",
                     evaluate="preflight.tasks:evaluate_classifier",
                     stress_fns="preflight.tasks:classifier_stress_fns",
                     fine_tune="preflight.tasks:fine_tune_classifier",
                     synthetic_sample="preflight.tasks:synthetic_crops",
                     description="classifiers scored on object crops (top-1 per slice)"),
}


def task_of(name: str) -> Task:
    """The row of task ``name`` (a ValueError listing the known tasks otherwise)."""
    return lookup(TASKS, name, "task")


def read_detection_sample(path, settings):
    """A YOLO / COCO folder through :func:`preflight.data.ingest.ingest`."""
    from preflight.data.ingest import ingest

    data = settings.data
    return ingest(path, taxonomy=settings.taxonomy_obj, fmt=data.format,
                  metadata_path=data.metadata_path, eval_fraction=data.eval_fraction,
                  group_window_minutes=data.group_window_minutes,
                  near_duplicate_bits=data.near_duplicate_bits, strata=tuple(data.strata))


def read_classification_sample(path, settings):
    """An ImageFolder / labels.csv sample, with one whole-image box per image."""
    from preflight.classification import as_validation_images, whole_image_boxes
    from preflight.data.classification_sample import read_classification_sample as read
    from preflight.data.classification_sample import sample_stats
    from preflight.data.ingest import IngestResult

    data = settings.data
    images, quarantine = read(path, settings.taxonomy_obj, metadata_path=data.metadata_path,
                              eval_fraction=data.eval_fraction,
                              group_window_minutes=data.group_window_minutes,
                              strata=("label_name", *data.strata))
    images = as_validation_images(images)
    return IngestResult(images, whole_image_boxes(images), quarantine,
                        sample_stats(images, quarantine))


def evaluate_detector(predict_fn, images, gt, spec, cost, class_names, **options):
    from preflight.evaluation import EvaluationOptions, evaluate_candidate

    return evaluate_candidate(predict_fn, images, gt, spec, cost, class_names,
                              EvaluationOptions(**options))


def evaluate_classifier(predict_fn, images, gt, spec, cost, class_names, **options):
    """``gt`` is not needed: a classification image carries its label (``report``, the
    detector's progress callback, and ``bootstraps``, its interval process, have no counterpart
    here)."""
    from preflight.classification import evaluate_classifier as evaluate

    options.pop("report", None)
    options.pop("bootstraps", None)
    return evaluate(predict_fn, images, spec, cost, class_names, **options)


def detector_stress_fns(predict_fn):
    return predict_fn, None


def classifier_stress_fns(predict_fn):
    """A whole-frame box per crop, scored by top-1 accuracy."""
    from preflight.classification import accuracy_evaluate_fn, frame_predict_fn

    return frame_predict_fn(predict_fn), accuracy_evaluate_fn


def fine_tune_detector(model, images, boxes, settings, *, out_dir, work_dir, policy,
                       report=None):
    """Train on a YOLO view of the pool; a held-out part of it (whole near-duplicate groups)
    is the validation set. ``finetune.freeze`` leading layers are frozen."""
    from preflight.finetune import FINETUNE_VAL_FRACTION, write_yolo_view

    ft = settings.finetune
    view = write_yolo_view(images, boxes, settings.taxonomy_obj, work_dir, seed=ft.seed,
                           val_fraction=FINETUNE_VAL_FRACTION)
    return model.train(view, out_dir, epochs=ft.epochs, batch=ft.batch, freeze=ft.freeze,
                       seed=ft.seed, lr0=ft.lr0, augment=policy.hyp,
                       albumentations=policy.albumentations(), progress=False, report=report)


def fine_tune_classifier(model, images, boxes, settings, *, out_dir, work_dir, policy,
                         report=None):
    """Train on the pool's rows (each a labelled crop); the freeze mode is the candidate's
    (the adapter's default). ``boxes`` and ``work_dir`` are not needed."""
    from preflight.models.base import ModelError
    from preflight.progress import Progress

    if "split" in images.columns and (images["split"] == "eval").any():
        raise ModelError("refusing to train on evaluation-set images")
    ft = settings.finetune
    on_epoch_end = None
    if report is not None:
        bar = Progress(ft.epochs, f"training {model.name}", unit="epochs", report=report,
                       every_s=0.0)
        on_epoch_end = lambda epoch, row: bar.update(1)  # noqa: E731
    return model.train(images, out_dir, epochs=ft.epochs, batch=ft.batch, lr=ft.lr0 or 1e-3,
                       augment=policy.albumentations(), seed=ft.seed, on_epoch_end=on_epoch_end)


def synthetic_frames(frames, settings, report=None):
    """A detection task reads the generated frames as they are."""
    return frames, ""


def synthetic_crops(frames, settings, report=None):
    """Object crops of the generated frames (cut once, next to them; reused while present)."""
    from pathlib import Path

    from preflight.data.classification_sample import CROPS_SUMMARY, crops_from_detection_sample

    frames = Path(frames)
    crops = frames.with_name(frames.name + "_crops")
    if not (crops / CROPS_SUMMARY).is_file():
        summary = crops_from_detection_sample(frames, crops, taxonomy=settings.taxonomy_obj)
        if report is not None:
            report(f"cut {summary.n_crops} crops from {summary.n_frames} frames")
    return crops, "object crops"
