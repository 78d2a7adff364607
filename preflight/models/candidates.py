"""The candidates file: which models to compare, where their weights come from, and how their
label space maps onto the operational taxonomy.

```yaml
candidates:
  - name: yolov8n                  # unique; also the zoo checkpoint's file name
    family: ultralytics            # model family: a row of preflight.models.registry.FAMILIES
    weights: zoo:yolov8n           # zoo:<name> | a local .pt path | a hub name such as yolov8n.pt
    arch: yolov8n.yaml             # ultralytics model YAML used to build the zoo stand-in
    input_size: 320                # inference/training image size (multiple of 32)
    class_map: {car: vehicle, truck: vehicle, walker: pedestrian}  # model class -> operational
```

``class_map`` may map several model classes to one operational class; model classes it does not
name are dropped; operational classes nothing maps to have "no analog in pre-training".

Optional keys: ``description``, ``sha256`` (checked for local/hub weights), and per family (the
registry row's ``candidate_keys``) ``zoo_train`` (``epochs``/``lr0``/``batch`` overrides for the
zoo stand-in)
and, for ``timm`` classifiers, ``freeze`` (``head`` | ``deeper`` | ``none``: what fine-tuning
trains). A ``timm`` candidate's ``arch`` is the timm model name (``mobilenetv3_small_100``); its
weights may also be ``timm:<model name>`` (timm's pretrained hub weights; needs the network).
Relative ``arch``/``weights`` paths are resolved against the candidates file's folder first, then
the working directory. Validation is strict: unknown keys, unknown operational class names,
missing fields and duplicate keys are errors naming the file, the candidate and the key. The
operational class names are the settings' ``taxonomy`` (one class list everywhere).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from preflight.models.registry import FAMILIES, get_family
from preflight.taxonomy import Taxonomy

DEFAULT_CANDIDATES_PATH = Path(__file__).resolve().parents[2] / "config" / "candidates.yaml"

REQUIRED_KEYS: tuple[str, ...] = ("name", "family", "weights", "input_size", "class_map")
COMMON_OPTIONAL_KEYS: tuple[str, ...] = ("description", "sha256", "arch")
FREEZE_VALUES: tuple[str, ...] = ("head", "deeper", "none")
ZOO_TRAIN_KEYS: dict[str, type | tuple[type, ...]] = {"epochs": int, "lr0": (int, float), "batch": int}
ZOO_PREFIX = "zoo:"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class CandidateError(ValueError):
    """The candidates file is malformed (the message names the file, candidate and key)."""


@dataclass(frozen=True)
class Candidate:
    """One model to evaluate. ``class_map`` maps model class names to operational names."""

    name: str
    family: str
    weights: str
    input_size: int
    class_map: dict[str, str]
    arch: str | None = None
    description: str = ""
    sha256: str | None = None
    zoo_train: dict[str, Any] = field(default_factory=dict)
    freeze: str | None = None  # timm: fine-tuning default (head | deeper | none)
    source_dir: Path | None = None  # folder of the candidates file (resolves relative paths)

    @property
    def is_zoo(self) -> bool:
        return self.weights.startswith(ZOO_PREFIX)

    @property
    def zoo_name(self) -> str | None:
        return self.weights[len(ZOO_PREFIX):] if self.is_zoo else None

    @property
    def task(self) -> str | None:
        """``detect`` or ``classify`` (from the family; None: the artefact says)."""
        return get_family(self.family).task

    @property
    def model_classes(self) -> list[str]:
        """The label space a zoo stand-in is trained with: the class_map keys, in file order."""
        return list(self.class_map)

    def operational_ids(self, taxonomy: Taxonomy) -> dict[str, int]:
        """model class name -> operational class id."""
        return {m: taxonomy.id_of(op) for m, op in self.class_map.items()}

    def resolve_path(self, value: str) -> Path | None:
        """An existing file for ``value`` (absolute, or relative to the candidates file's folder,
        then the working directory); None when there is none."""
        p = Path(os.path.expanduser(value))
        options = [p] if p.is_absolute() else [
            *([self.source_dir / p] if self.source_dir else []), Path.cwd() / p]
        for option in options:
            if option.is_file():
                return option.resolve()
        return None

    def resolve_arch(self) -> str:
        """The model YAML: an absolute path when it is a local file, else the name as given
        (ultralytics resolves its own YAMLs such as ``yolov8n.yaml``)."""
        if not self.arch:
            raise CandidateError(f"candidate {self.name!r}: no 'arch' given (needed to build it)")
        local = self.resolve_path(self.arch)
        if local is not None:
            return str(local)
        if "/" in self.arch or os.sep in self.arch:
            raise CandidateError(
                f"candidate {self.name!r}: arch file {self.arch!r} not found "
                f"(looked relative to {self.source_dir} and {Path.cwd()})")
        return self.arch


def unmapped_classes(candidate: Candidate, taxonomy: Taxonomy) -> list[str]:
    """Operational classes no model class maps to: "no analog in pre-training" (taxonomy order)."""
    mapped = set(candidate.class_map.values())
    return [name for name in taxonomy.names if name not in mapped]


def _no_duplicates_loader() -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise CandidateError(
                    f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return Loader


def load_candidates(path: str | Path | None = None, *,
                    taxonomy: Taxonomy | None = None) -> list[Candidate]:
    """Read and validate a candidates YAML (default: ``$PREFLIGHT_CANDIDATES`` or
    ``config/candidates.yaml``) against ``taxonomy`` (default: the settings' taxonomy)."""
    if taxonomy is None:
        from preflight.config import load_settings

        taxonomy = load_settings().taxonomy_obj
    from preflight import environment

    path = Path(path or environment.candidates_file() or DEFAULT_CANDIDATES_PATH)
    return candidates_from_text(read_candidates_text(path), taxonomy=taxonomy, source=path)


def read_candidates_text(path: str | Path) -> str:
    """The text of a candidates file (a ``CandidateError`` naming it when it cannot be read)."""
    path = Path(path)
    if not path.is_file():
        raise CandidateError(f"candidates file {path} does not exist")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CandidateError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise CandidateError(f"candidates file {path}: cannot be read ({exc.strerror or exc})") \
            from None


def candidates_from_text(text: str, *, taxonomy: Taxonomy,
                         source: str | Path) -> list[Candidate]:
    """Validate the text of a candidates file read from ``source`` (relative paths in it resolve
    against ``source``'s folder): a file as read now, or a run's snapshot of it."""
    try:
        raw = yaml.load(text, Loader=_no_duplicates_loader())
    except CandidateError as exc:
        raise CandidateError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise CandidateError(f"{source}: not valid YAML: {exc}") from None
    return parse_candidates(raw, taxonomy=taxonomy, source=source)


def parse_candidates(raw: Any, *, taxonomy: Taxonomy,
                     source: str | Path | None = None) -> list[Candidate]:
    """Validate an in-memory candidates document (the parsed YAML)."""
    where = str(source) if source else "candidates"
    source_dir = Path(source).resolve().parent if source else None
    if not isinstance(raw, dict):
        raise CandidateError(f"{where}: expected a mapping with a 'candidates' list, "
                             f"got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"candidates", "version"})
    if unknown:
        raise CandidateError(f"{where}: unknown top-level key(s) {unknown}; "
                             "allowed: ['candidates', 'version']")
    if raw.get("version", 1) != 1:
        raise CandidateError(f"{where}: version {raw.get('version')!r} not supported (only 1)")
    items = raw.get("candidates")
    if not isinstance(items, list) or not items:
        raise CandidateError(f"{where}: 'candidates' must be a non-empty list")
    out: list[Candidate] = []
    for i, item in enumerate(items):
        cand = _parse_one(item, i, where, taxonomy, source_dir)
        if any(c.name == cand.name for c in out):
            raise CandidateError(f"{where}: candidates[{i}] ({cand.name}): duplicate name "
                                 f"{cand.name!r}")
        out.append(cand)
    return out


def _parse_one(item: Any, index: int, where: str, taxonomy: Taxonomy,
               source_dir: Path | None) -> Candidate:
    """One entry of the candidates file, checked key by key (the first mistake is raised as a
    :class:`CandidateError` naming the file, the entry and the key)."""
    label = f"{where}: candidates[{index}]"
    if not isinstance(item, dict):
        raise CandidateError(f"{label}: expected a mapping, got {type(item).__name__}")
    if isinstance(item.get("name"), str):
        label += f" ({item['name']})"

    def fail(message: str) -> NoReturn:
        raise CandidateError(f"{label}: {message}")

    _check_keys(item, fail)
    weights, arch = _check_weights(item, fail)
    size = item["input_size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 32 <= size <= 4096 or size % 32:
        fail(f"input_size must be an integer multiple of 32 in 32..4096, got {size!r}")
    freeze = item.get("freeze")
    if freeze is not None and freeze not in FREEZE_VALUES:
        fail(f"freeze must be one of {list(FREEZE_VALUES)}, got {freeze!r}")
    sha = item.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not _SHA_RE.match(sha.lower())):
        fail(f"sha256 must be 64 hex digits, got {sha!r}")
    description = item.get("description", "")
    if not isinstance(description, str):
        fail("description must be a string")
    class_map = _check_class_map(item["class_map"], taxonomy, fail)
    zoo_train = _check_zoo_train(item.get("zoo_train") or {}, fail)
    return Candidate(name=item["name"], family=item["family"], weights=weights, input_size=size,
                     class_map=class_map, arch=arch, description=description,
                     sha256=sha.lower() if sha else None, zoo_train=zoo_train,
                     freeze=freeze, source_dir=source_dir)


def _check_keys(item: dict, fail: Callable[[str], NoReturn]) -> None:
    """The required keys are there, the family is known, no key is unknown to it, and the name
    is a valid candidate name."""
    missing = [k for k in REQUIRED_KEYS if k not in item]
    if missing:
        fail(f"missing required key(s) {missing}")
    family = item["family"]
    if family not in FAMILIES:
        fail(f"unknown family {family!r}; known: {sorted(FAMILIES)}")
    allowed = {*REQUIRED_KEYS, *COMMON_OPTIONAL_KEYS, *FAMILIES[family].candidate_keys}
    unknown = sorted(set(item) - allowed)
    if unknown:
        fail(f"unknown key(s) {unknown}; allowed for family {family!r}: {sorted(allowed)}")
    name = item["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        fail(f"name must be 1-64 letters, digits, '_', '-' or '.', got {name!r}")


def _check_weights(item: dict, fail: Callable[[str], NoReturn]) -> tuple[str, str | None]:
    """``(weights, arch)``: where the weights come from and, for zoo weights, the architecture
    the stand-in is built from."""
    family, weights, arch = item["family"], item["weights"], item.get("arch")
    if not isinstance(weights, str) or not weights.strip():
        fail(f"weights must be a non-empty string, got {weights!r}")
    weights = weights.strip()
    zoo = weights.startswith(ZOO_PREFIX)
    if zoo and not _NAME_RE.match(weights[len(ZOO_PREFIX):]):
        fail(f"weights {weights!r}: 'zoo:' must be followed by a zoo model name")
    if arch is not None and (not isinstance(arch, str) or not arch.strip()):
        fail(f"arch must be a model YAML name or path, got {arch!r}")
    if zoo and FAMILIES[family].runs_artefact:
        fail(f"family {family!r} runs an exported artefact: weights must be its .onnx / .xml "
             f"path, not {weights!r}")
    if zoo and not arch:
        fail("zoo weights need 'arch' (the model YAML, or timm model name, the zoo stand-in is "
             "built from)")
    return weights, arch.strip() if arch else None


def _check_class_map(class_map: Any, taxonomy: Taxonomy,
                     fail: Callable[[str], NoReturn]) -> dict[str, str]:
    """Model class name -> operational class name, every target in the taxonomy (a model class
    mapped to null is named only to say it is dropped on purpose, and is left out)."""
    if not isinstance(class_map, dict) or not class_map:
        fail("class_map must be a non-empty mapping {model_class_name: operational_class_name}")
    bad_keys = [k for k in class_map if not isinstance(k, str) or not k]
    if bad_keys:
        fail(f"class_map keys must be model class names (strings), got {bad_keys}")
    class_map = {k: v for k, v in class_map.items() if v is not None}
    if not class_map:
        fail("class_map maps no model class to an operational class")
    unknown_ops = sorted({str(v) for v in class_map.values() if v not in taxonomy.names})
    if unknown_ops:
        fail(f"class_map maps to unknown operational class(es) {unknown_ops}; "
             f"the taxonomy is {list(taxonomy.names)}")
    return {str(k): str(v) for k, v in class_map.items()}


def _check_zoo_train(zoo_train: Any, fail: Callable[[str], NoReturn]) -> dict:
    """The stand-in's own training overrides (epochs, lr0, batch), each a positive number."""
    if not isinstance(zoo_train, dict):
        fail("zoo_train must be a mapping")
    for key, value in zoo_train.items():
        if key not in ZOO_TRAIN_KEYS:
            fail(f"zoo_train: unknown key {key!r}; allowed: {sorted(ZOO_TRAIN_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, ZOO_TRAIN_KEYS[key]) or value <= 0:
            fail(f"zoo_train.{key} must be a positive number, got {value!r}")
    return dict(zoo_train)


def get_candidate(candidates: list[Candidate], name: str) -> Candidate:
    for cand in candidates:
        if cand.name == name:
            return cand
    raise CandidateError(f"no candidate named {name!r}; known: {[c.name for c in candidates]}")
