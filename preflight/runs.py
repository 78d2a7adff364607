"""Every pass kept: the run-scoped layout of the store, atomic writes, and comparing two passes.

Each Dagster run writes its tables and artefacts under ``<home>/runs/<run_id>/`` (``tables/``,
``reports/``, ``training/``, ...) next to a ``run.json`` (run id, job, start time), so a new pass
never replaces an earlier one: any two passes can be listed and compared after the fact. Every
file is written to a temporary name in its folder and renamed into place (``os.replace`` is atomic
on one filesystem), so a crash mid-write leaves the previous state, never half a table.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

RUNS_DIR = "runs"
RUN_RECORD = "run.json"
#: the per-slice columns a comparison joins on and carries
SLICE_KEYS = ["table", "slice_column", "slice_value", "metric"]


class RunNotFoundError(LookupError):
    """A run id (or prefix) that names no stored pass, or more than one."""


def atomic_write(target: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``target``, then rename it to ``target``.

    Readers see the old file or the complete new one; if ``write`` raises (or the process dies),
    the temporary file is removed (or left under a hidden ``.tmp-`` name no reader lists)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".tmp-{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        with suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return target


def write_parquet(target: str | Path, table: pd.DataFrame) -> Path:
    return atomic_write(target, lambda tmp: table.to_parquet(tmp, index=False))


def write_text(target: str | Path, text: str) -> Path:
    return atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_npy(target: str | Path, array) -> Path:
    import numpy as np

    def save(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file object: np.save would append ".npy" to a name
            np.save(f, array)
    return atomic_write(target, save)


def run_dir(home: str | Path, run_id: str) -> Path:
    return Path(home) / RUNS_DIR / run_id


@dataclass(frozen=True)
class StoredRun:
    """One kept pass: its folder, record and (for a production-validation pass) its verdict."""

    run_id: str
    job: str
    started: str
    folder: Path

    @property
    def decision(self) -> dict | None:
        path = self.folder / "reports" / "decision.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    @property
    def verdict(self) -> str:
        decision = self.decision
        if decision is None:
            return "-"
        o = decision.get("overall", {})
        return f"{o.get('verdict')}: {o.get('candidate')} ({o.get('stage')})"


def list_runs(home: str | Path) -> list[StoredRun]:
    """Every kept run in the store, oldest first (start time, then id)."""
    runs = []
    root = Path(home) / RUNS_DIR
    for record in (root.glob(f"*/{RUN_RECORD}") if root.is_dir() else []):
        meta = json.loads(record.read_text(encoding="utf-8"))
        runs.append(StoredRun(str(meta["run_id"]), str(meta.get("job", "")),
                              str(meta.get("started", "")), record.parent))
    return sorted(runs, key=lambda r: (r.started, r.run_id))


def find_run(home: str | Path, run_id: str) -> StoredRun:
    """The kept run whose id is or starts with ``run_id``."""
    hits = [r for r in list_runs(home) if r.run_id.startswith(run_id)]
    if len(hits) != 1:
        known = ", ".join(r.run_id[:8] for r in list_runs(home)) or "none"
        raise RunNotFoundError(f"run {run_id!r} {'is ambiguous' if hits else 'not found'} in "
                               f"{Path(home) / RUNS_DIR} (kept runs: {known})")
    return hits[0]


def metric_tables(run: StoredRun) -> pd.DataFrame:
    """All per-slice metric tables of a run, long, with ``table`` naming each (e.g.
    ``yolov8n/offtheshelf``)."""
    tables_dir = run.folder / "tables"
    frames = []
    for path in sorted(tables_dir.rglob("metrics.parquet")):
        frame = pd.read_parquet(path)
        if {"slice_column", "slice_value", "metric", "value"} <= set(frame.columns):
            frames.append(frame.assign(table=path.parent.relative_to(tables_dir).as_posix()))
    if not frames:
        return pd.DataFrame(columns=[*SLICE_KEYS, "value", "ci_low", "ci_high"])
    out = pd.concat(frames, ignore_index=True)
    out["slice_value"] = out["slice_value"].astype(str)
    return out


def compare_runs(a: StoredRun, b: StoredRun, metrics: tuple[str, ...] | None = None
                 ) -> pd.DataFrame:
    """Per table, slice and metric: the value and interval in each run, the change ``b - a``,
    and whether the intervals are disjoint (``significant``)."""
    cols = [*SLICE_KEYS, "value", "ci_low", "ci_high"]
    ta, tb = metric_tables(a), metric_tables(b)
    for t in (ta, tb):
        for c in ("ci_low", "ci_high"):
            if c not in t.columns:
                t[c] = float("nan")
    if metrics:
        ta, tb = ta[ta["metric"].isin(metrics)], tb[tb["metric"].isin(metrics)]
    table = ta[cols].merge(tb[cols], on=SLICE_KEYS, how="outer", suffixes=("_a", "_b"))
    table["delta"] = table["value_b"] - table["value_a"]
    table["significant"] = ((table["ci_low_b"] > table["ci_high_a"])
                            | (table["ci_high_b"] < table["ci_low_a"]))
    return table.sort_values(SLICE_KEYS).reset_index(drop=True)
