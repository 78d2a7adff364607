"""The operational settings file as a Dagster resource, resolved once per run.

Inside a run, ``load()`` returns the settings as they were when the run started: the first step
of the run resolves the file (and its ``base`` chain) and writes the result, with its sha256, to
``<snapshot_dir>/<run id>.json`` and to the run's tags (``preflight/settings_sha256``,
``preflight/settings_file``); every later step of that run -- in this process or another, under
any executor that shares the home -- reads that snapshot. Editing the file mid-run therefore
changes nothing for the run in progress; the next run picks the edit up. Outside a run (sensors,
the CLI) ``load()`` reads the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from preflight.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    Settings,
    load_settings,
    preflight_home,
    settings_from_dict,
)

SETTINGS_TAG = "preflight/settings_sha256"
SETTINGS_FILE_TAG = "preflight/settings_file"


class SettingsResource(dg.ConfigurableResource):
    """Loads and validates the operational settings YAML (taxonomy, bars, costs, thresholds)."""

    config_path: str | None = None  # None: $PREFLIGHT_CONFIG or config/preflight.yaml
    snapshot_dir: str | None = None  # None: <home>/settings/runs

    _run_id: str | None = PrivateAttr(default=None)
    _instance: object | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._run_id = context.run_id
        self._instance = context.instance

    def load(self) -> Settings:
        """The run's snapshot inside a run; the file as it is now outside one.

        Inside a run a mistake in the file (``ConfigError``) fails the step with a
        ``dagster.Failure`` whose description is the error's one line, naming the key, so the
        run shows that line rather than a stack trace."""
        if not self._run_id:
            return load_settings(self.config_path)
        try:
            return settings_from_dict(self.snapshot()["settings"])
        except ConfigError as exc:
            raise settings_failure(exc, self.config_path) from None

    def snapshot(self) -> dict:
        """``{"settings", "sha256", "source"}`` of this run, written by the first step to ask."""
        path = self.snapshot_path(self._run_id or "")
        with _lock(path.with_suffix(".lock")):
            if path.is_file():
                return json.loads(path.read_text(encoding="utf-8"))
            settings = load_settings(self.config_path)
            resolved = settings.to_dict()
            text = json.dumps(resolved, sort_keys=True, default=str)
            doc = {"settings": resolved, "sha256": hashlib.sha256(text.encode()).hexdigest(),
                   "source": str(self.config_path or "default")}
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
            tmp.replace(path)
        if self._instance is not None:
            self._instance.add_run_tags(self._run_id, {  # type: ignore[attr-defined]
                SETTINGS_TAG: doc["sha256"], SETTINGS_FILE_TAG: doc["source"]})
        return doc

    def snapshot_path(self, run_id: str) -> Path:
        folder = (Path(self.snapshot_dir) if self.snapshot_dir
                  else preflight_home() / "settings" / "runs")
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{run_id}.json"


def settings_error_line(exc: ConfigError, config_path: str | None = None) -> str:
    """A mistake in the settings file as one line naming the file and the key."""
    from preflight import environment

    path = str(config_path or environment.config_file() or DEFAULT_CONFIG_PATH)
    text = " ".join(str(exc).split())
    return f"settings: {text}" if path in text else f"settings file {path}: {text}"


def settings_failure(exc: ConfigError, config_path: str | None = None) -> dg.Failure:
    """The step failure for a mistake in the settings file: its one line, no stack trace."""
    return dg.Failure(description=settings_error_line(exc, config_path), allow_retries=False)


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive lock across the processes of one machine (POSIX ``flock``)."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
