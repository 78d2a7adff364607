"""`preflight init`: starter settings and candidates files for a user's own sample.

It inspects a YOLO or COCO folder (and checkpoints, if given) and writes:

* ``preflight.yaml`` -- the taxonomy from the sample's class names (in its id order), the folder
  and format, the slice columns found in its metadata table (if any), no required column;
* ``candidates.yaml`` -- one candidate per checkpoint, with a ``class_map`` proposed by matching
  the checkpoint's class names to the taxonomy: exactly, then case-, separator- and
  plural-insensitively (``Crates`` -> ``crate``). Model classes that match nothing are listed in a
  comment (they are dropped); taxonomy classes nothing maps to have no analog in pre-training.

Nothing is guessed silently: the command prints what it found and what to check by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

#: Metadata columns that identify a frame or time it rather than slice it.
_ID_COLUMNS = {"image_id", "file_name", "path", "source", "captured_at", "timestamp"}
_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")


class InitError(ValueError):
    """The folder or a checkpoint cannot be inspected (the message says what to fix)."""


@dataclass(frozen=True)
class SampleInfo:
    """What ``init`` found in a sample folder."""

    root: Path
    format: str
    class_names: tuple[str, ...]
    n_images: int
    metadata_path: Path | None = None
    metadata_columns: tuple[str, ...] = ()
    has_capture_time: bool = False


@dataclass(frozen=True)
class CheckpointInfo:
    """What ``init`` found in a checkpoint: its family, class names and input size."""

    path: Path
    family: str
    class_names: tuple[str, ...]
    input_size: int
    arch: str | None = None


@dataclass(frozen=True)
class ClassMapProposal:
    """A proposed ``class_map`` plus what it leaves out."""

    class_map: dict[str, str]
    unmatched_model_classes: tuple[str, ...]
    no_analog: tuple[str, ...]
    fuzzy: dict[str, str] = field(default_factory=dict)  # matched only case/plural-insensitively


# ------------------------------------------------------------------------------ inspection
def inspect_sample(data_dir: str | Path, fmt: str = "auto") -> SampleInfo:
    """Format, class names (id order), image count and metadata columns of a sample folder."""
    from preflight.data.formats import detect_format
    from preflight.data.ingest import find_metadata

    root = Path(data_dir).expanduser().resolve()
    if not root.is_dir():
        raise InitError(f"{root} is not a folder")
    kind, json_path, data, records = detect_format(root, fmt)
    if kind == "coco":
        if not isinstance(data, dict):
            reason = records[0].reason if records else "no COCO annotations file"
            raise InitError(f"{root}: {reason}")
        cats = sorted((c for c in data.get("categories") or [] if isinstance(c, dict)
                       and "id" in c and "name" in c), key=lambda c: int(c["id"]))
        names = tuple(str(c["name"]) for c in cats)
        n_images = len(data.get("images") or [])
    else:
        names = _yolo_names(root)
        n_images = sum(1 for p in (root / "images").rglob("*") if p.is_file())
    if not names:
        raise InitError(f"{root}: no class names found (COCO 'categories' or YOLO data.yaml "
                        "'names'); the taxonomy is taken from them")
    if len(set(names)) != len(names):
        raise InitError(f"{root}: class names repeat {list(names)}; make them unique")
    meta_path = find_metadata(root)
    columns: tuple[str, ...] = ()
    has_time = False
    if meta_path is not None:
        table = _read_table(meta_path)
        has_time = "captured_at" in table.columns
        columns = tuple(c for c in map(str, table.columns) if c not in _ID_COLUMNS
                        and 1 < table[c].nunique(dropna=True) <= 50)
    return SampleInfo(root, kind, names, n_images, meta_path, columns, has_time)


def _yolo_names(root: Path) -> tuple[str, ...]:
    path = root / "data.yaml"
    if not path.is_file():
        raise InitError(f"{root}: a YOLO folder needs data.yaml with the class 'names' "
                        "(the taxonomy is taken from them)")
    try:
        names = (yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}).get("names")
    except (yaml.YAMLError, AttributeError) as exc:
        raise InitError(f"{path}: cannot read class names ({exc})") from None
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names, key=int)]
    if not isinstance(names, list):
        raise InitError(f"{path}: 'names' must be a list or an id -> name mapping")
    return tuple(str(n) for n in names)


def _read_table(path: Path):
    import pandas as pd

    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Family, class names and input size of a checkpoint: the first family of the model-family
    registry whose ``inspect`` recognises the file (e.g. an ultralytics ``.pt``: its ``names``
    and training ``imgsz``; a Preflight timm checkpoint: its class names, input size, model)."""
    from preflight.models.registry import FAMILIES

    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise InitError(f"checkpoint {p} does not exist")
    tried = []
    for family in FAMILIES.values():
        if family.inspect is None:
            continue
        tried.append(family.name)
        facts = family.inspect_checkpoint(p)
        if facts is not None:
            return CheckpointInfo(p, family.name, facts.class_names,
                                  _multiple_of_32(facts.input_size), facts.arch)
    raise InitError(f"checkpoint {p}: not a checkpoint of any registered model family (tried "
                    f"{', '.join(tried)}); write its entry in candidates.yaml by hand (family, "
                    "weights, input_size, class_map)")


def _multiple_of_32(size: int) -> int:
    return int(min(4096, max(32, -(-int(size) // 32) * 32)))


# ------------------------------------------------------------------------------ matching
def _forms(name: str) -> set[str]:
    """Case-, separator- and plural-insensitive forms of a class name."""
    n = re.sub(r"[\s\-]+", "_", name.strip().lower())
    forms = {n}
    if n.endswith("ies") and len(n) > 4:
        forms.add(n[:-3] + "y")
    if n.endswith("es") and len(n) > 3:
        forms.add(n[:-2])
    if n.endswith("s") and len(n) > 2:
        forms.add(n[:-1])
    return forms


def propose_class_map(model_classes: list[str] | tuple[str, ...],
                      taxonomy: list[str] | tuple[str, ...]) -> ClassMapProposal:
    """model class -> operational class by exact name, then by case/plural-insensitive form.
    Several model classes may map to one operational class (e.g. ``Car`` and ``cars``)."""
    class_map: dict[str, str] = {}
    fuzzy: dict[str, str] = {}
    forms = {op: _forms(op) for op in taxonomy}
    for model_name in model_classes:
        if model_name in taxonomy:
            class_map[model_name] = model_name
            continue
        mine = _forms(model_name)
        hits = [op for op in taxonomy if forms[op] & mine]
        if len(hits) == 1:
            class_map[model_name] = fuzzy[model_name] = hits[0]
    unmatched = tuple(m for m in model_classes if m not in class_map)
    covered = set(class_map.values())
    return ClassMapProposal(class_map, unmatched, tuple(op for op in taxonomy if op not in covered),
                            fuzzy)


# ------------------------------------------------------------------------------ writing
#: The starter settings file ``preflight init`` writes (YAML with comments), filled in by
#: :func:`settings_document`.
SETTINGS_TEMPLATE = """# Preflight settings written by `preflight init` -- check the lines marked CHECK.
# Every key is documented in README.md ("Your own data"); unknown keys are errors.

# The operational classes, in id order (from the sample's class names). CHECK: the names your
# reports and bars use; class ids in the labels follow this order.
taxonomy: {taxonomy}

data:
  landing_dir: {root}
  format: {format}
  metadata_path: {meta}
  eval_fraction: 0.3          # share of the sample held out for evaluation (never trained on)
  group_window_minutes: 10    # frames of one camera this close in capture time: one group
  near_duplicate_bits: 8      # without capture time: perceptual hashes this close (of 64 bits)
  strata: []                  # metadata columns to stratify the split by (e.g. [site])

validation:
  max_invalid_fraction: 0.2
  required_columns: {{}}      # column: [allowed values] or null -- its absence is then an error

evaluation:
  operating_threshold: 0.25
  # Metadata columns to slice by (found in the metadata table). Pixel-derived slices
  # (brightness, contrast, sharpness, colour cast) and object size are always evaluated.
  slice_columns: {slices}
  box_slice_columns: [size_bin, truncated, occluded_bin, input_px_bin]
  bootstrap: 200
  min_images: 30
  min_boxes: 50

bar:                          # CHECK: what "good enough" means for your deployment
  min_recall: {{default: 0.6}}      # per class: {{default: 0.6, <class>: 0.8}}
  min_precision: {{default: 0.5}}
  min_slice_recall: 0.5
  latency_budget_p99_ms: 250
  labelling_budget_images: 2000

cost:                         # CHECK: what an error costs you
  operator_minutes_per_false_positive: 0.5
  cost_per_operator_minute: 1.0
  cost_per_missed_object: {{default: 5.0}}
  frames_per_day: 50000

decision:
  lookalike_pairs: []         # pairs of classes that differ only by a small detail
  registered_model_name: preflight-model

finetune:
  # nested-subset fine-tunes (25/50/100% of the pool) per candidate: a row that still fails
  # after fine-tuning is routed by its learning curve (data-solvable within the labelling
  # budget, or levelling off: a model change); [] = none (such rows stay unresolved)
  learning_curve_candidates: {curves}

export:
  # what ships: each listed candidate's off-the-shelf and fine-tuned models exported and
  # validated like any candidate (per-slice deltas to the FP32 source, latency on the runtime)
  candidates: {exports}
  formats: [onnx_fp32, onnx_int8]   # also openvino_fp32, openvino_int8

candidates_file: {candidates_file}
"""


def settings_document(sample: SampleInfo, candidates_file: str = "candidates.yaml",
                      candidates: Sequence[tuple[str, str]] = ()) -> str:
    """The starter settings file (YAML with comments). ``candidates``: ``(name, family)`` of
    the candidates init writes: each gets a learning curve (the evidence that routes a row that
    still fails after fine-tuning) and, when its family can be exported, ONNX FP32 and INT8
    exports validated like any candidate (what usually ships)."""
    from preflight.models.registry import FAMILIES

    names = [name for name, _ in candidates]
    exportable = [name for name, family in candidates
                  if family in FAMILIES and FAMILIES[family].exportable]
    curves = yaml.safe_dump(names, default_flow_style=True).strip()
    exports = yaml.safe_dump(exportable, default_flow_style=True).strip()
    taxonomy = yaml.safe_dump(list(sample.class_names), default_flow_style=True).strip()
    slices = yaml.safe_dump(list(sample.metadata_columns), default_flow_style=True).strip()
    meta = json.dumps(str(sample.metadata_path)) if sample.metadata_path else "null"
    return SETTINGS_TEMPLATE.format(
        taxonomy=taxonomy, root=json.dumps(str(sample.root)), format=sample.format, meta=meta,
        slices=slices, curves=curves, exports=exports, candidates_file=candidates_file)


def candidates_document(checkpoints: list[CheckpointInfo], taxonomy: tuple[str, ...]) -> str:
    """The starter candidates file: one candidate per checkpoint, class_map proposed."""
    lines = ["# Preflight candidates written by `preflight init` -- CHECK every class_map.",
             "# class_map: model class -> operational class (several may map to one); model",
             "# classes not listed are dropped; operational classes nothing maps to have no",
             "# analog in pre-training (fine-tuning learns them from your sample).", "",
             "version: 1", "", "candidates:"]
    for ck, name in zip(checkpoints, candidate_names(checkpoints), strict=True):
        proposal = propose_class_map(ck.class_names, taxonomy)
        lines += [f"  - name: {name}", f"    family: {ck.family}",
                  f"    weights: {json.dumps(str(ck.path))}",
                  f"    input_size: {ck.input_size}"]
        if ck.arch:  # the file alone cannot rebuild the network (e.g. a timm model name)
            lines.append(f"    arch: {ck.arch}")
        if proposal.unmatched_model_classes:
            shown = list(proposal.unmatched_model_classes)
            text = ", ".join(shown[:40]) + (f", ... ({len(shown)} in all)" if len(shown) > 40
                                            else "")
            lines.append(f"    # unmatched model classes (dropped unless you map them): {text}")
        if proposal.fuzzy:
            lines.append("    # matched by case/plural only: " + ", ".join(
                f"{m} -> {o}" for m, o in proposal.fuzzy.items()))
        if proposal.no_analog:
            lines.append("    # no analog in pre-training: " + ", ".join(proposal.no_analog))
        if proposal.class_map:
            lines.append("    class_map:")
            lines += [f"      {json.dumps(m)}: {json.dumps(o)}"
                      for m, o in proposal.class_map.items()]
        else:
            lines.append("    class_map: {}   # CHECK: no class matched; map at least one")
    return "\n".join(lines) + "\n"


def candidate_names(checkpoints: Sequence[CheckpointInfo]) -> list[str]:
    """One candidate name per checkpoint, from its file name: unique, and valid for the
    candidates file (starts with a letter or digit; letters, digits, ``_.-``; at most 64)."""
    used: set[str] = set()
    names = []
    for ck in checkpoints:
        base = _NAME_RE.sub("-", ck.path.stem).strip("-._")[:60] or "model"
        name, i = base, 2
        while name in used:
            name, i = f"{base}-{i}", i + 1
        used.add(name)
        names.append(name)
    return names


# ------------------------------------------------------------------------------ the command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path,
                        help="your sample: a YOLO (images/, labels/, data.yaml) or COCO "
                             "(annotations.json) folder, optional metadata.csv/.parquet")
    parser.add_argument("--weights", type=Path, nargs="*", default=[],
                        help="checkpoints to compare (ultralytics .pt or Preflight timm .pt)")
    parser.add_argument("--format", default="auto", choices=("auto", "yolo", "coco"))
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder for preflight.yaml and candidates.yaml (default: here)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")


def run(args: argparse.Namespace) -> int:
    out = args.out.expanduser().resolve()
    settings_path, candidates_path = out / "preflight.yaml", out / "candidates.yaml"
    existing = [p for p in (settings_path, candidates_path) if p.exists()]
    if existing and not args.force:
        print(f"preflight init: {', '.join(map(str, existing))} exist(s); pass --force to "
              "overwrite", file=sys.stderr)
        return 2
    try:
        sample = inspect_sample(args.data, args.format)
        checkpoints = [inspect_checkpoint(w) for w in args.weights]
    except InitError as exc:
        print(f"preflight init: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    named = [(name, ck.family) for ck, name in zip(checkpoints, candidate_names(checkpoints),
                                                   strict=True)]
    settings_path.write_text(settings_document(sample, candidates=named), encoding="utf-8")
    if checkpoints:
        candidates_path.write_text(candidates_document(checkpoints, sample.class_names),
                                   encoding="utf-8")
    print(report(sample, checkpoints, settings_path, candidates_path if checkpoints else None))
    return 0


def report(sample: SampleInfo, checkpoints: list[CheckpointInfo], settings_path: Path,
           candidates_path: Path | None) -> str:
    """What init found and what to check, as printed."""
    lines = [f"Sample {sample.root}: {sample.format}, {sample.n_images} images, "
             f"{len(sample.class_names)} classes: {', '.join(sample.class_names)}"]
    if sample.metadata_path:
        lines.append(f"  metadata {sample.metadata_path.name}: slice columns "
                     f"{', '.join(sample.metadata_columns) or 'none'}; capture time "
                     f"{'yes' if sample.has_capture_time else 'no'}")
    else:
        lines.append("  no metadata table: slices come from the pixels (brightness, contrast, "
                     "sharpness, colour cast) and object sizes; near-duplicates by perceptual "
                     "hash")
    for ck in checkpoints:
        p = propose_class_map(ck.class_names, sample.class_names)
        lines.append(f"Checkpoint {ck.path.name}: {ck.family}, {len(ck.class_names)} classes, "
                     f"input size {ck.input_size}; mapped {len(p.class_map)}"
                     + (f" ({len(p.fuzzy)} by case/plural)" if p.fuzzy else "")
                     + f", unmatched {len(p.unmatched_model_classes)}"
                     + (f" ({_shown(p.unmatched_model_classes)})"
                        if p.unmatched_model_classes else ""))
        if p.no_analog:
            lines.append(f"  no analog in pre-training: {', '.join(p.no_analog)}")
    lines += [f"Wrote {settings_path}" + (f" and {candidates_path}" if candidates_path else ""),
              "Check before running:",
              "  - taxonomy: the class names and their order",
              "  - bar and cost: your recall/precision bars, latency budget, cost of errors"]
    if candidates_path:
        lines.append("  - class_map of each candidate: map model classes the matcher missed "
                     "(e.g. a synonym), unmap wrong matches")
    else:
        lines.append(f"  - no --weights given: write {settings_path.parent / 'candidates.yaml'} "
                     "(see config/candidates.yaml for the format) before running")
    lines.append(f"Then: {_program()} run --config {settings_path}")
    return "\n".join(lines)


def _shown(names, limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit
                                       else "")


def _program() -> str:
    """The command as the user typed it (``.venv/bin/preflight``), else ``preflight``."""
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 if Path(argv0).name == "preflight" else "preflight"


__all__ = ["CheckpointInfo", "ClassMapProposal", "InitError", "SampleInfo", "add_arguments",
           "candidates_document", "inspect_checkpoint", "inspect_sample", "propose_class_map",
           "run", "settings_document"]
