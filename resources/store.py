"""Where Preflight keeps its tables, checkpoints and reports (a project-local folder by default).

Everything a run writes lands under ``<home>/runs/<run_id>/`` (see :mod:`preflight.runs`): no
pass overwrites another's tables, and every file is written atomically (temporary file, then
rename). Only inputs shared across runs (the landing folder, the generated sample) live outside.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr

from preflight.config import preflight_home
from preflight.runs import RUN_RECORD, run_dir, write_parquet, write_text


class PreflightStore(dg.ConfigurableResource):
    """A folder tree of Parquet tables and files; swap `home` for a mounted volume in deployment."""

    home: str | None = None  # None: $PREFLIGHT_HOME or ./.preflight
    _run_id: str | None = PrivateAttr(default=None)
    _root_run_id: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Bind the store to the run it serves and record the run (once, atomically)."""
        run = context.dagster_run
        if run is None:
            return
        self._run_id = run.run_id
        self._root_run_id = run.root_run_id or run.run_id  # re-executions share their root's
        record = run_dir(self.root, run.run_id) / RUN_RECORD
        if not record.is_file():
            write_text(record, json.dumps({
                "run_id": run.run_id, "job": run.job_name,
                "started": datetime.now(UTC).isoformat(timespec="microseconds")}))

    @property
    def root(self) -> Path:
        root = Path(self.home).resolve() if self.home else preflight_home()
        root.mkdir(parents=True, exist_ok=True)
        return root

    @property
    def run_id(self) -> str:
        if self._run_id is None:
            raise RuntimeError("this store is not bound to a run: run-scoped paths exist only "
                               "inside a Dagster run")
        return self._run_id

    def path(self, *parts: str) -> Path:
        """A path under the store shared by every run (landing folders, the generated sample);
        its parent folder exists."""
        target = self.root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def run_path(self, *parts: str) -> Path:
        """A path under this run's folder (reports, plots, training runs); its parent exists."""
        target = run_dir(self.root, self.run_id).joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def resume_path(self, *parts: str) -> Path:
        """A path under the folder of the run this one re-executes (its own when it is no
        re-execution): where interrupted work, such as training, continues. Its parent exists."""
        self.run_id  # noqa: B018 - bound to a run, or the same error as run_path
        target = run_dir(self.root, str(self._root_run_id)).joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def table_path(self, name: str) -> Path:
        return run_dir(self.root, self.run_id) / "tables" / f"{name}.parquet"

    def write_table(self, name: str, table: pd.DataFrame) -> Path:
        """Write `table` as `runs/<run_id>/tables/<name>.parquet` atomically; returns the path."""
        return write_parquet(self.table_path(name), table)

    def write_text(self, *parts: str, text: str) -> Path:
        """Write a text file under this run's folder atomically; returns the path."""
        return write_text(self.run_path(*parts), text)
