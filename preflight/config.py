"""Operational settings: one YAML file, validated on load.

Every section is a frozen dataclass; unknown keys and bad values raise ``ConfigError`` with the
dotted path of the offending key, so a typo in ``config/preflight.yaml`` is caught before a run
starts rather than silently ignored.

A key left out of a settings file takes its documented default, which is the value the shipped
``config/preflight.yaml`` states (a test loads an empty file and compares every key), except the
keys in ``DEMO_WORLD_KEYS``: those describe the embedded demo's world (its classes, its
candidates, its metadata columns), which the library must not know, so their code default is the
generic one (no per-class override, every candidate, ...).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from preflight.stages import FINE_TUNED_KEY, OFF_THE_SHELF_KEY
from preflight.taxonomy import Taxonomy

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "preflight.yaml"
DEFAULT_CANDIDATES_PATH = DEFAULT_CONFIG_PATH.with_name("candidates.yaml")
#: the shipped settings' candidates: the two light ones of candidates.yaml, so a first demo on
#: two CPU cores ends in about a quarter of an hour (``preflight demo --all-candidates``: all)
DEMO_CANDIDATES_PATH = DEFAULT_CONFIG_PATH.with_name("candidates_demo.yaml")


class ConfigError(ValueError):
    """The settings file has an unknown key or a bad value."""


#: keys whose shipped value describes the demo's world, and the generic default used instead
#: when a user's file leaves them out (``*`` stands for any class name in a per-class mapping)
DEMO_WORLD_KEYS: dict[str, str] = {
    "taxonomy": "the demo's classes; a user's file states its own",
    "validation.required_columns": "the demo's metadata columns and values",
    "evaluation.slice_columns": "the demo's metadata columns",
    "data.strata": "the demo's metadata columns the split is stratified by",
    "bar.min_recall.*": "per-class bars for the demo's classes (default: only 'default')",
    "bar.min_precision.*": "per-class bars for the demo's classes (default: only 'default')",
    "cost.cost_per_missed_object.*": "per-class costs of the demo's classes",
    "finetune.candidates": "the demo's candidate names (default []: every candidate)",
    "finetune.learning_curve_candidates": "the demo's candidate names (default []: none)",
    "export.candidates": "the demo's candidate names (default []: export nothing)",
    "decision.lookalike_pairs": "the demo's look-alike classes",
}

#: the stress corruptions run when ``stress.corruptions`` is left out: one to four
#: representative corruptions per family (the whole suite is 15 x 3 conditions: list [] for it)
DEFAULT_CORRUPTIONS: tuple[str, ...] = (
    "distribution_shift/colour_cast", "distribution_shift/sensor_noise",
    "distribution_shift/jpeg", "occlusion/cutout_all", "adversarial/motion_blur",
    "adversarial/dirty_lens", "adversarial/flicker", "adversarial/fog", "resolution/downscale")


@dataclass(frozen=True)
class SynthSettings:
    """The embedded synthetic production sample used when no landing folder is named."""

    profile: str = "production"
    n: int = 400
    weeks: int = 4
    seed: int = 0
    image_size: int = 320

    def __post_init__(self) -> None:
        _check(self.profile in ("production", "benchmark"), "data.synth.profile",
               f"must be 'production' or 'benchmark', got {self.profile!r}")
        _check(self.n > 0, "data.synth.n", "must be positive")
        _check(self.weeks >= 1, "data.synth.weeks", "must be at least 1")
        _check(32 <= self.image_size <= 4096, "data.synth.image_size", "must be in 32..4096")


@dataclass(frozen=True)
class DataSettings:
    landing_dir: str | None = None  # None: generate the embedded synthetic sample
    format: str = "auto"  # auto | yolo | coco
    metadata_path: str | None = None
    eval_fraction: float = 0.3
    #: frames of one camera captured within this many minutes are one near-duplicate group
    group_window_minutes: float = 10.0
    #: frames without a capture time whose 64-bit perceptual hashes differ in at most this many
    #: bits are one near-duplicate group (consecutive video frames); -1 turns it off
    near_duplicate_bits: int = 8
    #: metadata columns the fine-tune/eval split is stratified by (those present; [] or none
    #: present: the pixel brightness bin)
    strata: list[str] = field(default_factory=list)
    synth: SynthSettings = field(default_factory=SynthSettings)

    def __post_init__(self) -> None:
        _check(-1 <= self.near_duplicate_bits <= 64, "data.near_duplicate_bits",
               "must be in -1..64")
        _check(self.format in ("auto", "yolo", "coco"), "data.format",
               f"must be auto, yolo or coco, got {self.format!r}")
        _check(0.0 < self.eval_fraction < 1.0, "data.eval_fraction", "must be in (0, 1)")
        _check(self.group_window_minutes >= 0, "data.group_window_minutes", "must be >= 0")


@dataclass(frozen=True)
class ValidationSettings:
    max_invalid_fraction: float = 0.2
    #: metadata column -> allowed values (None: any value). A column listed here must be in the
    #: data: a sample without it fails validation. Empty (the default): no column is required.
    required_columns: dict[str, list[str] | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(0.0 <= self.max_invalid_fraction <= 1.0, "validation.max_invalid_fraction",
               "must be in [0, 1]")


@dataclass(frozen=True)
class EvaluationSettings:
    operating_threshold: float = 0.25
    #: metadata columns to slice the images by (those missing from the data are skipped with one
    #: warning; list a column under ``validation.required_columns`` to make its absence an
    #: error). The pixel-derived bins (brightness, contrast, sharpness, colour cast) are always
    #: sliced on as well.
    slice_columns: list[str] = field(default_factory=list)
    #: ``input_px_bin``: object side at model input (<8, 8-16, 16-32, 32-96, >=96 px), the
    #: measured size distribution the decision holds against ``decision.small_object_px``
    box_slice_columns: list[str] = field(default_factory=lambda: [
        "size_bin", "truncated", "occluded_bin", "input_px_bin"])
    bootstrap: int = 200
    min_images: int = 30
    min_boxes: int = 50
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        _check(0.0 < self.operating_threshold < 1.0, "evaluation.operating_threshold",
               "must be in (0, 1)")
        _check(self.bootstrap >= 0, "evaluation.bootstrap", "must be >= 0")
        _check(self.batch_size >= 1, "evaluation.batch_size", "must be >= 1")


@dataclass(frozen=True)
class CostSettings:
    operator_minutes_per_false_positive: float = 0.5
    cost_per_operator_minute: float = 1.0
    cost_per_missed_object: dict[str, float] = field(default_factory=lambda: {"default": 5.0})
    frames_per_day: int = 50_000


@dataclass(frozen=True)
class BarSettings:
    """The operational bar a candidate must clear at its operating point."""

    min_recall: dict[str, float] = field(default_factory=lambda: {"default": 0.6})
    min_precision: dict[str, float] = field(default_factory=lambda: {"default": 0.5})
    min_slice_recall: float = 0.5
    latency_budget_p99_ms: float = 250.0
    daily_cost_ceiling: float | None = None
    labelling_budget_images: int = 2000


@dataclass(frozen=True)
class ZooSettings:
    """How `preflight zoo build` makes the demo stand-ins (trained on the benchmark profile)."""

    n_images: int = 320
    image_size: int = 320
    epochs: int = 6
    batch: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.n_images >= 4, "zoo.n_images", "must be >= 4")
        _check(self.epochs >= 1, "zoo.epochs", "must be >= 1")
        _check(32 <= self.image_size <= 4096, "zoo.image_size", "must be in 32..4096")


@dataclass(frozen=True)
class StressSettings:
    """The edge-case stress suite (albumentations) run on a subset of the evaluation set."""

    severities: list[int] = field(default_factory=lambda: [1, 2, 3])
    #: corruptions to run, as ``family/corruption`` or ``family`` (empty: the whole suite)
    corruptions: list[str] = field(default_factory=lambda: list(DEFAULT_CORRUPTIONS))
    n_images: int = 12
    seed: int = 0
    #: family -> the severity production is expected to reach: corrupted recall below the bar
    #: at that severity keeps a model from shipping off-the-shelf
    expected_severity: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(all(1 <= s <= 5 for s in self.severities) and bool(self.severities),
               "stress.severities", "must be a non-empty list of severities in 1..5")
        _check(all(1 <= int(v) <= 5 for v in self.expected_severity.values()),
               "stress.expected_severity", "severities must be in 1..5")
        _check(self.n_images >= 1, "stress.n_images", "must be >= 1")


@dataclass(frozen=True)
class LatencySettings:
    """Latency as production sees it (batch 1, p99, co-tenant load, cold start, server)."""

    iterations: int = 30
    warmup: int = 5
    batch_size: int = 8
    load_workers: int = 1
    server_queries: int = 40
    server_max_seconds: float = 3.0
    #: rate-search steps for the highest Poisson rate that meets the latency bound
    search_steps: int = 3
    cold_start: bool = True
    device: str | None = None  # None: CUDA when present, else CPU
    #: CPU threads per inference stream while timing (None: the framework's default). One
    #: thread per stream is what a shared CPU box runs; more threads than free cores collapse
    #: under co-tenant load (measured: 3 ms idle -> 150-230 ms p99 for timm nets on 2 cores).
    threads: int | None = 1

    def __post_init__(self) -> None:
        _check(self.iterations >= 5, "latency.iterations", "must be >= 5")
        _check(self.warmup >= 0, "latency.warmup", "must be >= 0")


@dataclass(frozen=True)
class FinetuneSettings:
    """Fine-tuning on the production fine-tuning pool (never the evaluation set)."""

    #: candidates to fine-tune (empty: every candidate)
    candidates: list[str] = field(default_factory=list)
    epochs: int = 4
    batch: int = 16
    #: leading layers frozen: 0 trains everything, 10 freezes a YOLOv8 backbone (head only)
    freeze: int = 0
    lr0: float | None = None
    #: nested fractions of the pool for the learning curve (the last must be 1.0)
    learning_curve_fractions: list[float] = field(default_factory=lambda: [0.5, 1.0])
    #: candidates that get a learning curve (empty: none; "*" : all fine-tuned)
    learning_curve_candidates: list[str] = field(default_factory=list)
    seed: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "finetune.epochs", "must be >= 1")
        _check(self.batch >= 1, "finetune.batch", "must be >= 1")
        _check(self.freeze >= 0, "finetune.freeze", "must be >= 0")
        fr = self.learning_curve_fractions
        _check(bool(fr) and all(0 < f <= 1 for f in fr) and fr == sorted(fr) and fr[-1] == 1.0,
               "finetune.learning_curve_fractions",
               "must be increasing fractions in (0, 1] ending with 1.0")


#: the models of a candidate an export can start from (``export.stages``)
EXPORT_STAGES: tuple[str, ...] = (OFF_THE_SHELF_KEY, FINE_TUNED_KEY)


@dataclass(frozen=True)
class ExportSettings:
    """What ships: exported / INT8 artefacts of candidates, validated like any candidate.

    Each listed candidate's models at every ``stages`` entry -- the off-the-shelf model and, when
    the candidate is fine-tuned, its fine-tuned model -- are exported to every ``formats`` entry,
    ``<format>_<precision>`` with format ``onnx`` (ONNX Runtime) or ``openvino`` (OpenVINO IR)
    and precision ``fp32`` or ``int8``; INT8 is calibrated on ``calibration_frames`` frames of
    the fine-tuning pool (never the evaluation set), drawn with ``seed``.
    """

    #: candidates to export (empty: none)
    candidates: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=lambda: ["onnx_int8"])
    #: which of a candidate's models are exported: ``offtheshelf``, ``finetuned`` (the latter
    #: only for candidates that are fine-tuned)
    stages: list[str] = field(default_factory=lambda: list(EXPORT_STAGES))
    calibration_frames: int = 64
    seed: int = 0
    #: the runtime's intra-op threads (None: ``latency.threads``)
    threads: int | None = None
    #: paired bootstrap resamples (over frames) for the export-minus-source per-slice deltas
    bootstrap: int = 200

    def __post_init__(self) -> None:
        known = [f"{f}_{p}" for f in ("onnx", "openvino") for p in ("fp32", "int8")]
        bad = [f for f in self.formats if f not in known]
        _check(not bad, "export.formats", f"unknown format(s) {bad}; known: {known}")
        _check(len(set(self.formats)) == len(self.formats), "export.formats",
               "must not repeat a format")
        bad = [s for s in self.stages if s not in EXPORT_STAGES]
        _check(not bad, "export.stages", f"unknown stage(s) {bad}; known: {list(EXPORT_STAGES)}")
        _check(len(set(self.stages)) == len(self.stages), "export.stages",
               "must not repeat a stage")
        _check(self.calibration_frames >= 1, "export.calibration_frames", "must be >= 1")
        _check(self.threads is None or self.threads >= 1, "export.threads",
               "must be >= 1 or null")
        _check(self.bootstrap >= 0, "export.bootstrap", "must be >= 0")


@dataclass(frozen=True)
class TilingSettings:
    """Sliced inference for small objects (evaluated when small-object recall fails)."""

    enabled: bool = True
    #: tile side in frame pixels; None: half the candidate's input size (each tile is then seen
    #: magnified 2x at the model input, whatever the input size)
    tile: int | None = None
    overlap: float = 0.2
    #: evaluation frames with small objects that tiling is measured on (tiling multiplies the
    #: forward passes per frame, so a subset keeps the demo short)
    max_images: int = 20

    def __post_init__(self) -> None:
        _check(self.tile is None or self.tile >= 32, "tiling.tile", "must be >= 32 (or null)")
        _check(0 <= self.overlap < 0.9, "tiling.overlap", "must be in [0, 0.9)")

    def tile_for(self, input_size: int) -> int:
        """The tile side for a candidate of ``input_size`` (``tile``, or half the input)."""
        return int(self.tile) if self.tile is not None else max(32, int(input_size) // 2)


@dataclass(frozen=True)
class DecisionSettings:
    #: objects smaller than this (sqrt of area, pixels at model input) are architecture-bound
    small_object_px: float = 16.0
    #: a fine-tune "fixed" a slice when recall rose by at least this much
    min_improvement: float = 0.05
    #: a class pair is a look-alike when at least this share of one's boxes is detected as the
    #: other at the operating point (found from the confusion matrix)
    lookalike_share: float = 0.1
    #: slices (``column=value``) that must have enough evidence before anything ships
    critical_slices: list[str] = field(default_factory=list)
    #: how far a fine-tuned row's value moves between re-runs (training is not bit-reproducible
    #: across machines): rows whose interval widened by this reaches across the bar are "close"
    training_noise: float = 0.03
    #: a seed for a second fine-tuning run of each candidate with close rows (None: none is
    #: run): a close row is then routed only when both runs agree on its pass/fail
    second_seed: int | None = None
    #: a learning curve is saturated when doubling the data gains less than this
    saturation_tolerance: float = 0.01
    registered_model_name: str = "preflight-detector"
    #: an operator's override: this candidate goes into production (``champion``) although the
    #: verdict ships nothing; recorded as an override in the registry and the report
    ship_anyway: str | None = None
    #: pairs of operational classes that differ only by a small detail, stated by hand (the
    #: confusion matrix finds others); each pair names two taxonomy classes
    lookalike_pairs: list[list[str]] = field(default_factory=list)


@dataclass(frozen=True)
class DriftSettings:
    """Nightly drift re-evaluation of the champion (warn/fail levels)."""

    psi_warn: float = 0.1
    psi_fail: float = 0.25
    p_value: float = 0.01
    embedding_auc_fail: float = 0.75
    min_drop: float = 0.05
    #: a failing drift check requests the fine-tune / decision chain again
    retrigger_on_fail: bool = False

    def __post_init__(self) -> None:
        _check(0 < self.psi_warn <= self.psi_fail, "drift.psi_warn",
               "must be > 0 and <= drift.psi_fail")
        _check(0 < self.p_value < 1, "drift.p_value", "must be in (0, 1)")


@dataclass(frozen=True)
class LandingSettings:
    """Where labelled batches land after launch (one sub-folder per batch)."""

    dir: str | None = None  # None: <home>/landing/batches
    sensor_interval_seconds: int = 30

    def __post_init__(self) -> None:
        _check(self.sensor_interval_seconds >= 5, "landing.sensor_interval_seconds",
               "must be >= 5")


@dataclass(frozen=True)
class ScheduleSettings:
    cron: str = "0 2 * * *"
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        _check(len(self.cron.split()) == 5, "schedule.cron",
               f"must be a 5-field cron expression, got {self.cron!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"schedule.timezone: unknown time zone {self.timezone!r}") from None


@dataclass(frozen=True)
class MlflowSettings:
    #: None: a local SQLite store under the project home. Any MLflow URI works (http://..., postgresql://...).
    tracking_uri: str | None = None
    artifact_location: str | None = None
    experiment: str = "preflight"


@dataclass(frozen=True)
class Settings:
    #: the operational classes, in id order: the only class list (required for a run)
    taxonomy: list[str] = field(default_factory=list)
    data: DataSettings = field(default_factory=DataSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    cost: CostSettings = field(default_factory=CostSettings)
    bar: BarSettings = field(default_factory=BarSettings)
    zoo: ZooSettings = field(default_factory=ZooSettings)
    stress: StressSettings = field(default_factory=StressSettings)
    latency: LatencySettings = field(default_factory=LatencySettings)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    tiling: TilingSettings = field(default_factory=TilingSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    decision: DecisionSettings = field(default_factory=DecisionSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    landing: LandingSettings = field(default_factory=LandingSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)
    #: the candidates file (relative paths: to the settings file's folder, then the cwd)
    candidates_file: str | None = None
    #: detect (ultralytics detectors on boxes) or classify (timm classifiers on crops)
    task: str = "detect"
    #: another settings file this one overrides, key by key (relative to this file)
    base: str | None = None

    def __post_init__(self) -> None:
        _check(self.task in ("detect", "classify"), "task",
               f"must be 'detect' or 'classify', got {self.task!r}")

    @property
    def taxonomy_obj(self) -> Taxonomy:
        """The taxonomy with the stated look-alike pairs (a ``ConfigError`` when it is empty or
        a pair names a class outside it)."""
        try:
            return Taxonomy(tuple(self.taxonomy),
                            tuple(tuple(p) for p in self.decision.lookalike_pairs))
        except ValueError as exc:
            raise ConfigError(f"taxonomy: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def flat_keys(value: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a nested mapping under its dotted key: ``{"bar": {"min_recall":
    {"default": 0.6}}}`` -> ``{"bar.min_recall.default": 0.6}`` (lists stay values)."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flat_keys(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _build(cls: type, raw: Any, path: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'settings'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{path or 'settings'}: unknown key(s) {unknown}; allowed: {sorted(known)}")
    kwargs = {}
    for name, value in raw.items():
        key = f"{path}.{name}" if path else name
        kwargs[name] = _coerce(hints[name], value, key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path or 'settings'}: {exc}") from exc


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for candidate in inner:
            try:
                return _coerce(candidate, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    return value


def load_settings(path: str | Path | None = None) -> Settings:
    """Load and validate the settings YAML (default: ``$PREFLIGHT_CONFIG`` or config/preflight.yaml)."""
    from preflight import environment

    path = Path(path or environment.config_file() or DEFAULT_CONFIG_PATH)
    if not path.exists():
        raise ConfigError(f"settings file {path} does not exist")
    raw = _read_with_base(path, seen=())
    settings = settings_from_dict(raw)
    if settings.candidates_file is None:  # left out: the shipped settings' file, as documented
        settings = dataclasses.replace(settings, candidates_file=str(DEMO_CANDIDATES_PATH))
    elif not Path(settings.candidates_file).is_absolute():
        near = (path.parent / settings.candidates_file).resolve()
        if near.exists():
            settings = dataclasses.replace(settings, candidates_file=str(near))
    return settings


def _read_with_base(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """The YAML mapping of ``path``, merged over the file its ``base`` key names."""
    if path.resolve() in seen:
        raise ConfigError(f"{path}: 'base' settings files form a cycle")
    if not path.exists():
        raise ConfigError(f"settings file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_bytes().decode("utf-8-sig")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)  # PyYAML's message spans lines; say it in one
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise ConfigError(f"{path}: not valid YAML{where}: {what}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"settings file {path}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    parent = _read_with_base((path.parent / str(base)).resolve(), (*seen, path.resolve()))
    return _merge(parent, raw)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = (_merge(out[key], value) if isinstance(value, dict)
                    and isinstance(out.get(key), dict) else value)
    return out


def settings_from_dict(raw: dict[str, Any]) -> Settings:
    """Validate an in-memory mapping the same way as a file (used by tests and overrides)."""
    settings = _build(Settings, raw, "")
    if settings.taxonomy:  # an empty taxonomy is an error only when a run needs it
        settings.taxonomy_obj  # noqa: B018 - validates names and look-alike pairs
    return settings


def preflight_home() -> Path:
    """The project-local home for data, Dagster storage, MLflow store and the model zoo."""
    from preflight import environment

    return environment.home()


def resolve_taxonomy(taxonomy: Taxonomy | Sequence[str] | None = None) -> Taxonomy:
    """``taxonomy`` as a :class:`Taxonomy`: a list of names is wrapped; None is the settings'
    ``taxonomy`` (``$PREFLIGHT_CONFIG`` or the default settings file)."""
    if isinstance(taxonomy, Taxonomy):
        return taxonomy
    if taxonomy is not None:
        return Taxonomy(tuple(str(n) for n in taxonomy))
    return load_settings().taxonomy_obj
