"""`preflight demo`: the first result it prints while the pass goes on, ``--all-candidates``
(the full candidates file instead of the demo's two), and the whole command end to end on the
test-sized settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from preflight import environment
from preflight.config import DEFAULT_CANDIDATES_PATH, DEMO_CANDIDATES_PATH

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "fixtures" / "tiny" / "preflight.yaml"


def test_first_result_shows_the_candidate_its_numbers_and_its_failure_table():
    from pipeline.demo import first_result_text

    table = "| slice | recall |\n|---|---|\n| lighting=dim | 0.41 |"
    mat = dg.AssetMaterialization(asset_key=["cand_a", "offtheshelf_eval"], metadata={
        "AP50": 0.61, "recall": 0.55, "precision": 0.7,
        "top_failing_slices": dg.MetadataValue.md(table)})
    text = first_result_text(mat, 123.4)
    assert "after 123 s" in text and "cand_a off-the-shelf" in text
    assert "AP50 0.610" in text and "recall 0.550" in text and table in text


def test_all_candidates_swaps_only_the_demo_subset(monkeypatch, tmp_path):
    from pipeline.demo import _use_all_candidates

    monkeypatch.delenv("PREFLIGHT_CANDIDATES", raising=False)
    monkeypatch.delenv("PREFLIGHT_CONFIG", raising=False)  # the shipped settings: the demo's two
    _use_all_candidates()
    assert environment.candidates_file() == str(DEFAULT_CANDIDATES_PATH.resolve())
    assert DEMO_CANDIDATES_PATH.is_file()

    own = tmp_path / "mine.yaml"  # a file of one's own already is the list: left as it is
    own.write_text("version: 1\ncandidates: []\n")
    monkeypatch.setenv("PREFLIGHT_CANDIDATES", str(own))
    _use_all_candidates()
    assert environment.candidates_file() == str(own)


# What `make demo` runs (`preflight demo`), end to end on the test-sized settings in a new home,
# with dagster.DagsterInstance.get wrapped to record the threads that open an instance.
_DEMO_DRIVER = """
import sys, threading
import dagster as dg
opened = []
get = dg.DagsterInstance.get
def recording_get(*args, **kwargs):
    opened.append(threading.current_thread().name)
    return get(*args, **kwargs)
dg.DagsterInstance.get = staticmethod(recording_get)
from pipeline.cli import main
rc = main(["demo", "--log-level", "WARNING"])
print("INSTANCES OPENED BY:", sorted(set(opened)))
sys.exit(rc)
"""


@pytest.mark.slow
def test_demo_end_to_end_prints_the_first_result_and_leaves_a_usable_instance(tmp_path):
    """A first `preflight demo` in a new home runs the pass, prints the first candidate's
    failure table before the end and the decision at the end, opens its Dagster instance from
    one thread only, and leaves storage that the next command (`preflight ui`, a second run) can
    open: every SQLite store stamped with one schema revision (two instances created at once on
    a new home used to stamp the run storage twice, and every later open then failed)."""
    import sqlite3

    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "PREFLIGHT_CANDIDATES"}
    env.update(PREFLIGHT_HOME=str(home), DAGSTER_HOME=str(home / "dagster"),
               PREFLIGHT_CONFIG=str(TINY), YOLO_CONFIG_DIR=str(home / "ultralytics"),
               YOLO_OFFLINE="1", MPLBACKEND="Agg", GX_ANALYTICS_ENABLED="false",
               DAGSTER_DISABLE_TELEMETRY="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", _DEMO_DRIVER], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, f"{out.stdout[-4000:]}\n{out.stderr[-6000:]}"
    first = out.stdout.find("First result after")
    assert 0 <= first < out.stdout.find("Decision report:"), out.stdout[-4000:]
    assert "INSTANCES OPENED BY: ['MainThread']" in out.stdout
    stores = sorted((home / "dagster").rglob("*.db"))
    assert stores
    for db in stores:
        with sqlite3.connect(db) as conn:
            revisions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        assert len(revisions) == 1, f"{db}: {revisions}"
    from dagster._core.instance.ref import InstanceRef

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home / "dagster"))) as inst:
        assert len(inst.get_run_records()) == 1
