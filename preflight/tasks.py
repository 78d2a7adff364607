"""The task registry: what ``detect`` and ``classify`` do differently, in one table.

The settings' ``task`` picks a row; the pipeline calls its functions, so an asset that reads a
sample or scores a model does not branch on the task. A row names functions as
``"module:function"`` (imported on use: reading the table imports neither torch nor timm):

* ``read_sample(path, settings) -> IngestResult``: a landed folder as the images / boxes /
  quarantine tables (a classification sample gets one whole-image box per image, so validation
  and everything after it read the same tables);
* ``evaluate(predict_fn, images, gt, spec, cost, class_names, **kwargs) -> CandidateEvaluation``:
  predict the images and compute the failure distribution (``kwargs``: ``plot_dir``,
  ``batch_size``, ``title``, ``recall_bar``, ``report``);
* ``stress_fns(predict_fn) -> (predict_fn, evaluate_fn)``: what the stress suite (which moves
  boxes through every corruption) runs and scores with (``evaluate_fn`` None: detection recall).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Task:
    """One row of :data:`TASKS`."""

    name: str
    read_sample: str
    evaluate: str
    stress_fns: str
    description: str = ""

    def call(self, what: str, *args: Any, **kwargs: Any) -> Any:
        module_name, function = getattr(self, what).split(":")
        return getattr(importlib.import_module(module_name), function)(*args, **kwargs)


#: task name (the settings' ``task``) -> its row
TASKS: dict[str, Task] = {
    "detect": Task("detect", read_sample="preflight.tasks:read_detection_sample",
                   evaluate="preflight.tasks:evaluate_detector",
                   stress_fns="preflight.tasks:detector_stress_fns",
                   description="detectors scored on boxes (COCO-exact per slice)"),
    "classify": Task("classify", read_sample="preflight.tasks:read_classification_sample",
                     evaluate="preflight.tasks:evaluate_classifier",
                     stress_fns="preflight.tasks:classifier_stress_fns",
                     description="classifiers scored on object crops (top-1 per slice)"),
}


def task_of(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}") from None


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
    from preflight.data.classify import read_classification_sample as read
    from preflight.data.classify import sample_stats
    from preflight.data.ingest import IngestResult

    data = settings.data
    images, quarantine = read(path, settings.taxonomy_obj, metadata_path=data.metadata_path,
                              eval_fraction=data.eval_fraction,
                              group_window_minutes=data.group_window_minutes,
                              strata=("label_name", *data.strata))
    images = as_validation_images(images)
    return IngestResult(images, whole_image_boxes(images), quarantine,
                        sample_stats(images, quarantine))


def evaluate_detector(predict_fn, images, gt, spec, cost, class_names, **kwargs):
    from preflight.evaluation import evaluate_candidate

    return evaluate_candidate(predict_fn, images, gt, spec, cost, class_names, **kwargs)


def evaluate_classifier(predict_fn, images, gt, spec, cost, class_names, **kwargs):
    """``gt`` is not needed: a classification image carries its label (``report``, the
    detector's progress callback, has no counterpart here)."""
    from preflight.classification import evaluate_classifier as evaluate

    kwargs.pop("report", None)
    return evaluate(predict_fn, images, spec, cost, class_names, **kwargs)


def detector_stress_fns(predict_fn):
    return predict_fn, None


def classifier_stress_fns(predict_fn):
    """A whole-frame box per crop, scored by top-1 accuracy."""
    from preflight.classification import accuracy_evaluate_fn, frame_predict_fn

    return frame_predict_fn(predict_fn), accuracy_evaluate_fn
