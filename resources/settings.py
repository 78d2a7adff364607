"""The operational settings file as a Dagster resource, resolved once per run.

Inside a run, ``load()`` returns the settings as they were when the run started: the first step
of the run resolves the file (and its ``base`` chain) and writes the result, with its sha256, to
``<snapshot_dir>/<run id>.json`` and to the run's tags (``preflight/settings_sha256``,
``preflight/settings_file``); every later step of that run -- in this process or another, under
any executor that shares the home -- reads that snapshot. The same snapshot holds the text of
the candidates file (``candidates()``; its sha256 in the tag ``preflight/candidates_sha256``), so
the taxonomy and the candidates a run's models are mapped with are the ones its first step saw.
Editing either file mid-run therefore changes nothing for the run in progress; the next run picks
the edit up. Outside a run (sensors, the CLI) ``load()`` and ``candidates()`` read the files.
"""

from __future__ import annotations

import hashlib
import json
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
from preflight.filelock import file_lock
from preflight.models.candidates import (
    DEFAULT_CANDIDATES_PATH,
    Candidate,
    CandidateError,
    candidates_from_text,
    load_candidates,
    read_candidates_text,
)

SETTINGS_TAG = "preflight/settings_sha256"
SETTINGS_FILE_TAG = "preflight/settings_file"
CANDIDATES_TAG = "preflight/candidates_sha256"


class RunBoundResource(dg.ConfigurableResource):
    """A resource that knows the run it serves: the run id and the Dagster instance, set when a
    step of the run sets the resource up (none outside a run)."""

    _run_id: str | None = PrivateAttr(default=None)
    _instance: object | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._run_id = context.run_id
        self._instance = context.instance

    def bind_like(self, other: RunBoundResource) -> None:
        """Serve the run ``other`` serves (a resource made inside another one's step)."""
        self._run_id, self._instance = other._run_id, other._instance


class SettingsResource(RunBoundResource):
    """Loads and validates the operational settings YAML (taxonomy, bars, costs, thresholds)."""

    config_path: str | None = None  # None: $PREFLIGHT_CONFIG or config/preflight.yaml
    candidates_file: str | None = None  # None: the settings' (EnvVar PREFLIGHT_CANDIDATES if set)
    snapshot_dir: str | None = None  # None: <home>/settings/runs

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

    def candidates(self) -> list[Candidate]:
        """The candidates, validated against the taxonomy: the run's snapshot of the candidates
        file inside a run; the file as it is now outside one (a ``CandidateError`` naming the
        file, candidate and key when it is wrong)."""
        if not self._run_id:
            settings = load_settings(self.config_path)
            return load_candidates(self.candidates_file or settings.candidates_file,
                                   taxonomy=settings.taxonomy_obj)
        settings = self.load()
        snapshot = self.snapshot()["candidates"]
        if snapshot["text"] is None:  # unreadable when the run started: the same one line
            raise CandidateError(snapshot["error"])
        return candidates_from_text(snapshot["text"], taxonomy=settings.taxonomy_obj,
                                    source=snapshot["path"])

    def snapshot(self) -> dict:
        """``{"settings", "sha256", "source", "candidates"}`` of this run, written by the first
        step to ask; ``candidates`` is ``{"path", "text", "sha256", "error"}`` of the candidates
        file (``text`` None and ``error`` its one line when it could not be read)."""
        path = self.snapshot_path(self._run_id or "")
        with file_lock(path.with_suffix(".lock")):
            if path.is_file():
                return json.loads(path.read_text(encoding="utf-8"))
            settings = load_settings(self.config_path)
            resolved = settings.to_dict()
            text = json.dumps(resolved, sort_keys=True, default=str)
            doc = {"settings": resolved, "sha256": hashlib.sha256(text.encode()).hexdigest(),
                   "source": str(self.config_path or "default"),
                   "candidates": _candidates_snapshot(self.candidates_file
                                                      or settings.candidates_file)}
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
            tmp.replace(path)
        if self._instance is not None:
            tags = {SETTINGS_TAG: doc["sha256"], SETTINGS_FILE_TAG: doc["source"]}
            if doc["candidates"]["sha256"]:
                tags[CANDIDATES_TAG] = doc["candidates"]["sha256"]
            self._instance.add_run_tags(self._run_id, tags)  # type: ignore[attr-defined]
        return doc

    def snapshot_path(self, run_id: str) -> Path:
        folder = (Path(self.snapshot_dir) if self.snapshot_dir
                  else preflight_home() / "settings" / "runs")
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{run_id}.json"


def _candidates_snapshot(path: str | None) -> dict:
    """The candidates file as a run's snapshot holds it: its path as named, its text and sha256."""
    where = str(path or DEFAULT_CANDIDATES_PATH)
    try:
        text = read_candidates_text(where)
    except CandidateError as exc:  # reported by the step that needs the candidates
        return {"path": where, "text": None, "sha256": None, "error": str(exc)}
    return {"path": where, "text": text, "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "error": None}


def settings_error_line(exc: ConfigError, config_path: str | None = None) -> str:
    """A mistake in the settings file as one line naming the file and the key."""
    from preflight import environment

    path = str(config_path or environment.config_file() or DEFAULT_CONFIG_PATH)
    text = " ".join(str(exc).split())
    return f"settings: {text}" if path in text else f"settings file {path}: {text}"


def settings_failure(exc: ConfigError, config_path: str | None = None) -> dg.Failure:
    """The step failure for a mistake in the settings file: its one line, no stack trace."""
    return dg.Failure(description=settings_error_line(exc, config_path), allow_retries=False)
