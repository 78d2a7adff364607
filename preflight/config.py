"""Operational settings: one YAML file, validated on load.

Every section is a frozen dataclass; unknown keys and bad values raise ``ConfigError`` with the
dotted path of the offending key, so a typo in ``config/preflight.yaml`` is caught before a run
starts rather than silently ignored.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from preflight.taxonomy import DEFAULT_CLASSES, Taxonomy

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "preflight.yaml"


class ConfigError(ValueError):
    """The settings file has an unknown key or a bad value."""


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
    group_window_minutes: float = 10.0
    synth: SynthSettings = field(default_factory=SynthSettings)

    def __post_init__(self) -> None:
        _check(self.format in ("auto", "yolo", "coco"), "data.format",
               f"must be auto, yolo or coco, got {self.format!r}")
        _check(0.0 < self.eval_fraction < 1.0, "data.eval_fraction", "must be in (0, 1)")
        _check(self.group_window_minutes >= 0, "data.group_window_minutes", "must be >= 0")


@dataclass(frozen=True)
class ValidationSettings:
    max_invalid_fraction: float = 0.2
    #: column -> allowed values (None: the column must exist, any value allowed).
    required_columns: dict[str, list[str] | None] = field(default_factory=lambda: {
        "camera": None,
        "shift": ["day", "night"],
        "lighting": ["bright", "normal", "dim"],
    })

    def __post_init__(self) -> None:
        _check(0.0 <= self.max_invalid_fraction <= 1.0, "validation.max_invalid_fraction",
               "must be in [0, 1]")


@dataclass(frozen=True)
class EvaluationSettings:
    operating_threshold: float = 0.25
    slice_columns: list[str] = field(default_factory=lambda: [
        "camera", "shift", "lighting", "blur", "lens", "week"])
    box_slice_columns: list[str] = field(default_factory=lambda: [
        "size_bin", "truncated", "occluded_bin"])
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
class ScheduleSettings:
    cron: str = "0 2 * * *"
    timezone: str = "UTC"


@dataclass(frozen=True)
class MlflowSettings:
    #: None: a local SQLite store under the project home. Any MLflow URI works (http://..., postgresql://...).
    tracking_uri: str | None = None
    artifact_location: str | None = None
    experiment: str = "preflight"


@dataclass(frozen=True)
class Settings:
    taxonomy: list[str] = field(default_factory=lambda: list(DEFAULT_CLASSES))
    data: DataSettings = field(default_factory=DataSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    cost: CostSettings = field(default_factory=CostSettings)
    bar: BarSettings = field(default_factory=BarSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)

    @property
    def taxonomy_obj(self) -> Taxonomy:
        return Taxonomy(tuple(self.taxonomy))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    unknown = sorted(set(raw) - known)
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
    path = Path(path or os.environ.get("PREFLIGHT_CONFIG") or DEFAULT_CONFIG_PATH)
    if not path.exists():
        raise ConfigError(f"settings file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return settings_from_dict(raw)


def settings_from_dict(raw: dict[str, Any]) -> Settings:
    """Validate an in-memory mapping the same way as a file (used by tests and overrides)."""
    settings = _build(Settings, raw, "")
    try:
        settings.taxonomy_obj  # noqa: B018 - validates names
    except ValueError as exc:
        raise ConfigError(f"taxonomy: {exc}") from exc
    return settings


def preflight_home() -> Path:
    """The project-local home for data, Dagster storage, MLflow store and the model zoo."""
    return Path(os.environ.get("PREFLIGHT_HOME") or Path.cwd() / ".preflight").resolve()
