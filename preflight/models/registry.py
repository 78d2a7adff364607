"""The model-family registry: a candidate's ``family`` -> the adapter that loads it.

A table, like ``BINS`` (``preflight/data/properties.py``) and ``SEVERITY_PARAMS``
(``preflight/stress/suite.py``). Every adapter implements :class:`preflight.models.base.Model`
(one protocol for detectors and classifiers); the pipeline finds it here by the candidate's
family, so no asset names a family or branches on one.

Adding a family is one new module (the adapter class and, for ``preflight init``, a checkpoint
inspector) plus one row in :data:`FAMILIES`::

    FAMILIES["tflite"] = ModelFamily(
        name="tflite", task="detect", adapter="preflight.models.tflite_adapter:TfliteDetector",
        inspect="preflight.models.tflite_adapter:inspect_checkpoint",
        candidate_keys=(), description="TensorFlow Lite interpreters of exported detectors")

The pipeline then loads, evaluates, stresses, times and fine-tunes its candidates through the
:class:`~preflight.models.base.Model` protocol (``train`` is called the way the family's task
does it, :mod:`preflight.tasks`); ``preflight init --weights`` recognises its checkpoints through
``inspect``. Exporting (``export:``) covers the families with a row in
:data:`preflight.models.export.SOURCE_EXPORTERS` (ultralytics and timm; their rows here say
``exportable``); :func:`~preflight.models.export.source_meta` refuses others with a reason.

The adapter is named as ``"module:Class"`` and imported only when a model of the family is
loaded, so reading a candidates file never imports torch, ultralytics or timm. The registry is the
bottom of the models package: it imports no other module of it (the candidates file checks its
families here, and :mod:`preflight.models.base` names the candidate a model is built from).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from preflight.registries import lookup, resolve

if TYPE_CHECKING:
    from pathlib import Path

#: What a family's models produce: ``detect`` (boxes per frame) or ``classify`` (class
#: probabilities per image). The settings' ``task`` must match the candidates' families.
TASKS: tuple[str, ...] = ("detect", "classify")


class FamilyError(ValueError):
    """A family name that is not registered, or a registry row that is malformed."""


@dataclass(frozen=True)
class ModelFamily:
    """One row of the registry.

    ``adapter``: ``"module:Class"`` of a class implementing :class:`~preflight.models.base.Model`;
    ``candidate_keys``: the extra candidates-file keys this family accepts (beyond the common
    ones); ``task``: what its models produce (one of :data:`TASKS`; None: each artefact says,
    e.g. an exported model's sidecar); ``runs_artefact``: its weights are an exported file the
    candidate names (never a ``zoo:`` stand-in); ``inspect``: ``"module:function"`` of
    ``function(path) -> CheckpointFacts | None`` (None: not this family's file), what
    ``preflight init`` reads from a checkpoint (families are tried in registry order);
    ``exportable``: its models can be exported to ONNX / OpenVINO (``export:``, through its row
    in :data:`preflight.models.export.SOURCE_EXPORTERS`), so ``preflight init`` lists them for
    export.
    """

    name: str
    task: str | None
    adapter: str
    candidate_keys: tuple[str, ...] = ()
    description: str = ""
    runs_artefact: bool = False
    inspect: str | None = None
    exportable: bool = False

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise FamilyError(f"family {self.name!r}: task must be one of {list(TASKS)}, "
                              f"got {self.task!r}")
        if self.adapter.count(":") != 1:
            raise FamilyError(f"family {self.name!r}: adapter must be 'module:Class', "
                              f"got {self.adapter!r}")
        if self.inspect is not None and self.inspect.count(":") != 1:
            raise FamilyError(f"family {self.name!r}: inspect must be 'module:function', "
                              f"got {self.inspect!r}")

    def load_adapter(self) -> type:
        """Import and return the adapter class, a :class:`~preflight.models.base.Model` (heavy
        imports happen here, not at lookup)."""
        module_name, class_name = self.adapter.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise FamilyError(f"family {self.name!r}: cannot import its adapter module "
                              f"{module_name!r} ({exc})") from exc
        try:
            return getattr(module, class_name)
        except AttributeError:
            raise FamilyError(f"family {self.name!r}: module {module_name!r} has no adapter "
                              f"class {class_name!r}") from None

    def inspect_checkpoint(self, path: Path) -> Any:
        """What the family's ``inspect`` reads from ``path``, a
        :class:`~preflight.models.base.CheckpointFacts` (None: not its file, or no inspector)."""
        if self.inspect is None:
            return None
        return resolve(self.inspect)(path)


#: family name -> its row. Candidates files name one of these in ``family``.
FAMILIES: dict[str, ModelFamily] = {
    "ultralytics": ModelFamily(
        name="ultralytics", task="detect",
        adapter="preflight.models.ultralytics_adapter:UltralyticsDetector",
        candidate_keys=("zoo_train",),
        inspect="preflight.models.ultralytics_adapter:inspect_checkpoint", exportable=True,
        description="ultralytics detectors (YOLOv8, RT-DETR, ...) from .pt checkpoints or YAMLs"),
    "timm": ModelFamily(
        name="timm", task="classify",
        adapter="preflight.models.timm_adapter:TimmClassifier",
        candidate_keys=("zoo_train", "freeze"),
        inspect="preflight.models.timm_adapter:inspect_checkpoint", exportable=True,
        description="timm image classifiers scored on object crops"),
    # exported artefacts (preflight.models.export): weights = the .onnx / .xml with its sidecar;
    # the sidecar says detector or classifier, and from_candidate loads the matching adapter
    "onnxruntime": ModelFamily(
        name="onnxruntime", task=None,
        adapter="preflight.models.exported:ExportedDetector", runs_artefact=True,
        description="ONNX Runtime sessions of exported detectors and classifiers"),
    "openvino": ModelFamily(
        name="openvino", task=None,
        adapter="preflight.models.exported:ExportedDetector", runs_artefact=True,
        description="OpenVINO IR of exported detectors and classifiers"),
}


def get_family(name: str) -> ModelFamily:
    """The registry row of ``name`` (a clear error listing the known families otherwise)."""
    return lookup(FAMILIES, name, "model family", FamilyError)


def register_family(family: ModelFamily, *, replace: bool = False) -> ModelFamily:
    """Add a row to :data:`FAMILIES` (``replace=True`` to overwrite an existing one)."""
    if family.name in FAMILIES and not replace:
        raise FamilyError(f"model family {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


def adapter_for(family: str) -> type:
    """The adapter class of ``family``, a :class:`~preflight.models.base.Model` (imported on
    first use)."""
    return get_family(family).load_adapter()
