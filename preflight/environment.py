"""The process environment, read here and only here.

Preflight's own variables (``ENVIRONMENT``) are resolved by the functions below; the Dagster
definitions turn each one that is set into a Dagster ``EnvVar`` on the resource it configures
(``pipeline/definitions.py``), so a run's resources show where a value came from. The CLI
translates its flags into this module (``use_config_file``), never into a variable of its own.
Third-party libraries that are configured by environment variables get their defaults through
``library_default``, called where the library is first used, never at a module's import (e.g.
:func:`import_albumentations`, :func:`preflight.models.ultralytics_env.import_ultralytics`);
subprocesses inherit the environment through ``child_environment``.
``tests/test_environment.py`` checks that no other library module touches ``os.environ``, that no
module sets a default at import, and that albumentations is imported only here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

#: Preflight's environment variables and what each sets (an unset or empty one: the default)
ENVIRONMENT: dict[str, str] = {
    "PREFLIGHT_CONFIG": "the settings file (SettingsResource.config_path; default "
                        "config/preflight.yaml)",
    "PREFLIGHT_HOME": "the project home: tables, reports, zoo, MLflow store (PreflightStore.home; "
                      "default ./.preflight)",
    "PREFLIGHT_CANDIDATES": "a candidates file overriding the settings' (SettingsResource.candidates_file)",
    "PREFLIGHT_EXECUTOR": "the pass's executor: multiprocess (default), in_process, celery or k8s",
    "PREFLIGHT_MAX_CONCURRENT": "steps at once under the multiprocess executor (default 2)",
    "DAGSTER_HOME": "Dagster's instance folder (default <PREFLIGHT_HOME>/dagster)",
}
EXECUTORS: tuple[str, ...] = ("multiprocess", "in_process", "celery", "k8s")


class EnvironmentSettingError(ValueError):
    """A Preflight environment variable holds a value that cannot be used (one line)."""


def value(name: str) -> str | None:
    """The value of Preflight variable ``name``; None when unset or empty."""
    if name not in ENVIRONMENT:
        raise KeyError(f"{name} is not a Preflight environment variable ({sorted(ENVIRONMENT)})")
    return os.environ.get(name) or None


def config_file() -> str | None:
    """``PREFLIGHT_CONFIG``: the settings file the user named (None: the shipped one)."""
    return value("PREFLIGHT_CONFIG")


def home() -> Path:
    """``PREFLIGHT_HOME`` (default ``./.preflight``), absolute."""
    return Path(value("PREFLIGHT_HOME") or Path.cwd() / ".preflight").resolve()


def candidates_file() -> str | None:
    """``PREFLIGHT_CANDIDATES``: a candidates file that overrides the settings' one."""
    return value("PREFLIGHT_CANDIDATES")


@dataclass(frozen=True)
class ExecutorChoice:
    """The production-validation pass's executor and its step concurrency."""

    kind: str = "multiprocess"
    max_concurrent: int = 2


def executor() -> ExecutorChoice:
    """``PREFLIGHT_EXECUTOR`` / ``PREFLIGHT_MAX_CONCURRENT``, checked."""
    kind = value("PREFLIGHT_EXECUTOR") or ExecutorChoice.kind
    if kind not in EXECUTORS:
        raise EnvironmentSettingError(f"PREFLIGHT_EXECUTOR={kind!r}: use one of "
                                      f"{', '.join(EXECUTORS)}")
    raw = value("PREFLIGHT_MAX_CONCURRENT")
    try:
        limit = int(raw) if raw is not None else ExecutorChoice.max_concurrent
    except ValueError:
        limit = 0
    if limit < 1:
        raise EnvironmentSettingError(f"PREFLIGHT_MAX_CONCURRENT={raw!r}: a whole number >= 1")
    return ExecutorChoice(kind, limit)


def dagster_home(default: Path) -> Path:
    """``DAGSTER_HOME`` (else ``default``), absolute."""
    return Path(value("DAGSTER_HOME") or default).resolve()


def use_config_file(path: str | Path) -> None:
    """The CLI's ``--config``: the settings file for this process and the processes it starts
    (Dagster's step processes resolve it again from ``PREFLIGHT_CONFIG``)."""
    os.environ["PREFLIGHT_CONFIG"] = str(Path(path).expanduser().resolve())


def use_candidates_file(path: str | Path) -> None:
    """``PREFLIGHT_CANDIDATES`` for this process and the processes it starts (e.g. ``preflight
    demo --all-candidates``: Dagster's step processes read the candidates again)."""
    os.environ["PREFLIGHT_CANDIDATES"] = str(Path(path).expanduser().resolve())


def use_dagster_home(path: Path) -> None:
    """Point Dagster (this process and its children) at ``path``."""
    os.environ["DAGSTER_HOME"] = str(path)


def library_default(name: str, default: str) -> str:
    """A third-party library's environment variable (ultralytics, albumentations, great
    expectations read theirs at import): ``default`` unless the user set it; returns the value."""
    return os.environ.setdefault(name, default)


def import_albumentations() -> ModuleType:
    """albumentations, imported offline-safe: it asks PyPI for a newer version when it is first
    imported unless ``NO_ALBUMENTATIONS_UPDATE`` is set, so that is set first (unless the user
    set it). Every albumentations import in Preflight goes through here."""
    library_default("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations

    return albumentations


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment (or of ``base``) for a subprocess to start with."""
    return dict(os.environ if base is None else base)
