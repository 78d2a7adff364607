"""Every materialisation kept: the run-scoped store, atomic writes (a writer killed mid-table
leaves no partial table), listing and comparing passes, the decision -> monitoring lineage, and
the validation gate of landed batches. Pure tier: no training, no servers."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import project

from preflight.runs import (
    RunNotFoundError,
    compare_runs,
    find_run,
    list_runs,
    run_dir,
    write_parquet,
)
from resources import PreflightStore, SettingsResource

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "tiny"


# --------------------------------------------------------------------------- atomic writes

def test_a_failed_write_leaves_the_previous_table(tmp_path, monkeypatch):
    target = tmp_path / "tables" / "t.parquet"
    old = pd.DataFrame({"a": [1, 2, 3]})
    write_parquet(target, old)

    def half_then_crash(self, path, **kwargs):
        Path(path).write_bytes(b"PAR1" + b"\0" * 100)   # half a file on disk...
        raise OSError("disk full")                        # ...then the writer dies

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        write_parquet(target, pd.DataFrame({"a": [9] * 1000}))
    monkeypatch.undo()
    pd.testing.assert_frame_equal(pd.read_parquet(target), old)
    assert sorted(p.name for p in target.parent.iterdir()) == ["t.parquet"]  # no debris


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import pandas as pd
    from preflight.runs import write_parquet

    target, ready = Path(sys.argv[1]), Path(sys.argv[2])

    def slow_write(self, path, **kwargs):
        with open(path, "wb") as f:
            f.write(b"PAR1" + b"\\0" * 4096)   # the first part of the table is on disk
            f.flush()
        ready.write_text("writing")
        time.sleep(600)                      # killed here, mid-write

    pd.DataFrame.to_parquet = slow_write
    write_parquet(target, pd.DataFrame({"a": range(10)}))
""")


@pytest.mark.parametrize("earlier", [False, True])
def test_a_pass_killed_mid_write_leaves_no_partial_table(tmp_path, earlier):
    """SIGKILL (no cleanup runs) while a table is half written: the table's name shows the
    earlier version or nothing, never a partial file; the debris is a hidden temporary name."""
    target = tmp_path / "runs" / "r1" / "tables" / "metrics.parquet"
    if earlier:
        write_parquet(target, pd.DataFrame({"a": [1]}))
    ready = tmp_path / "ready"
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(target), str(ready)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 120        # waits for the event, not for a duration
        while not ready.exists():
            assert proc.poll() is None, "the writer exited before writing"
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    if earlier:
        pd.testing.assert_frame_equal(pd.read_parquet(target), pd.DataFrame({"a": [1]}))
    else:
        assert not target.exists()
    debris = [p.name for p in target.parent.iterdir() if p.name != "metrics.parquet"]
    assert debris and all(name.startswith(".tmp-metrics.parquet.") for name in debris)
    assert list(target.parent.glob("*.parquet")) == ([target] if earlier else [])


# --------------------------------------------------------------------------- run-scoped store

def _metrics(recall: float, low: float, high: float) -> pd.DataFrame:
    return pd.DataFrame({"slice_column": ["__all__", "camera"], "slice_value": ["__all__", "c"],
                         "metric": ["recall", "recall"], "value": [recall, recall - 0.1],
                         "ci_low": [low, low - 0.1], "ci_high": [high, high - 0.1]})


@dg.asset
def kept_metrics(context: dg.AssetExecutionContext, store: PreflightStore) -> str:
    recall = float(context.run.tags["recall"])
    return str(store.write_table("cand/offtheshelf/metrics",
                                 _metrics(recall, recall - 0.05, recall + 0.05)))


def test_each_run_writes_its_own_folder_and_both_stay_comparable(tmp_path, capsys):
    from preflight.cli import main

    home = tmp_path / "home"
    store = PreflightStore(home=str(home))
    with dg.instance_for_test() as instance:
        first = dg.materialize([kept_metrics], resources={"store": store}, instance=instance,
                               tags={"recall": "0.5"})
        second = dg.materialize([kept_metrics], resources={"store": store}, instance=instance,
                                tags={"recall": "0.8"})
    paths = [Path(r.output_for_node("kept_metrics")) for r in (first, second)]
    assert paths[0] == run_dir(home, first.run_id) / "tables/cand/offtheshelf/metrics.parquet"
    assert paths[0] != paths[1] and all(p.is_file() for p in paths)   # nothing overwritten
    assert pd.read_parquet(paths[0])["value"].iloc[0] == 0.5

    runs = list_runs(home)
    assert [r.run_id for r in runs] == [first.run_id, second.run_id]
    record = json.loads((run_dir(home, first.run_id) / "run.json").read_text())
    assert record["job"] == "__ephemeral_asset_job__" and record["started"]
    table = compare_runs(find_run(home, first.run_id[:8]), find_run(home, second.run_id[:8]))
    overall = table[table["slice_column"] == "__all__"].iloc[0]
    assert overall["table"] == "cand/offtheshelf"
    assert overall["delta"] == pytest.approx(0.3)
    assert overall["significant"]            # [0.45, 0.55] and [0.75, 0.85] are disjoint
    with pytest.raises(RunNotFoundError, match="not found"):
        find_run(home, "nosuchrun")

    assert main(["runs", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert first.run_id in out and second.run_id in out
    assert main(["compare", first.run_id[:8], second.run_id[:8], "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "0.500 [0.450, 0.550]" in out and "0.800 [0.750, 0.850]" in out and "+0.300" in out
    assert main(["compare", "nosuchrun", second.run_id, "--home", str(home)]) == 2


def test_the_store_outside_a_run_has_no_run_folder(tmp_path):
    with pytest.raises(RuntimeError, match="not bound to a run"):
        PreflightStore(home=str(tmp_path)).write_table("x", pd.DataFrame({"a": [1]}))


# --------------------------------------------------------------------------- lineage

def test_monitoring_depends_on_the_decision_in_the_graph(tmp_path):
    """The decision -> monitoring edge is in ``Definitions`` (the lineage view), so the champion
    and its pinned reference reach monitoring as an input, not through a file read by path."""
    with project(tmp_path, FIXTURES / "preflight.yaml"):
        from pipeline.definitions import build_definitions

        graph = build_definitions().resolve_asset_graph()
    decision = dg.AssetKey("decision")
    for key in ("batch_champion_eval", "drift_report"):
        assert decision in graph.get(dg.AssetKey(key)).parent_keys, key
    assert dg.AssetKey("batch_labels") in graph.get(dg.AssetKey("batch_champion_eval")).parent_keys
    checks = {c.name for c in graph.asset_check_keys if c.asset_key == dg.AssetKey("batch_labels")}
    assert {"invalid_fraction_within_limit", "images_decode", "classes_in_taxonomy"} <= checks


# --------------------------------------------------------------------------- landed batch gate

def _landed(root: Path, name: str, seed: int, broken: int) -> Path:
    from preflight.synth.generate import generate

    out = root / name
    generate(out, profile="production", n=10, week=1, seed=seed, image_size=96, batch_id=name)
    for image in sorted((out / "images").iterdir())[:broken]:
        image.write_bytes(b"not a jpeg\n")
    return out


def test_a_landed_batch_over_the_invalid_limit_fails_naming_the_reasons(tmp_path):
    from assets.monitoring import batch_labels, evaluated_batches
    from preflight.synth.scene import SYNTH_TAXONOMY

    landing = tmp_path / "landing"
    _landed(landing, "good", seed=1, broken=0)
    _landed(landing, "bad", seed=2, broken=5)
    config = tmp_path / "preflight.yaml"
    config.write_text(yaml.safe_dump({"landing": {"dir": str(landing)},
                                      "taxonomy": list(SYNTH_TAXONOMY.names),
                                      "validation": {"max_invalid_fraction": 0.2}}))
    home = tmp_path / "home"
    resources = {"settings": SettingsResource(config_path=str(config)),
                 "store": PreflightStore(home=str(home))}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("landed_batches", ["good", "bad"])
        good = dg.materialize([batch_labels], partition_key="good", resources=resources,
                              instance=instance)
        assert good.success
        checks = {c.check_name: c.passed for c in good.get_asset_check_evaluations()}
        assert checks["invalid_fraction_within_limit"] and checks["images_decode"]

        bad = dg.materialize([batch_labels], partition_key="bad", resources=resources,
                             instance=instance, raise_on_error=False)
        assert not bad.success and not bad.get_asset_materialization_events()
        failure = next(e for e in bad.all_events if e.is_step_failure)
        user = failure.event_specific_data.user_failure_data
        assert "landed batch bad" in user.description and "Worst reasons" in user.description
        assert "undecodable_image" in user.description
        # nothing lost: the quarantine is kept in the failed run's folder, with reasons
        quarantine = pd.read_parquet(run_dir(home, bad.run_id) / "tables/batches/bad/quarantine.parquet")
        assert (quarantine["reason_code"] == "undecodable_image").sum() == 5
        # never evaluated, so never in the drift statistics
        assert "bad" not in evaluated_batches(instance)
        assert "bad" not in instance.get_materialized_partitions(batch_labels.key)
    assert np.isfinite(len(quarantine))


def test_a_decision_that_ships_nothing_leaves_the_champion_and_its_reference_watched():
    """The decision records the champion in production as metadata; a later decision that
    ships nothing hands monitoring that champion (and the reference pinned when it shipped)."""
    from assets.decision import in_production

    shipped = {"candidate": "m", "reference_images": "/store/runs/r1/tables/ref.parquet"}

    @dg.asset(name="decision")
    def first_decision() -> dg.Output[dict]:
        return dg.Output({}, metadata={"in_production": dg.MetadataValue.json(shipped)})

    with dg.instance_for_test() as instance:
        assert in_production(instance, dg.AssetKey("decision")) == {}
        assert dg.materialize([first_decision], instance=instance).success
        assert in_production(instance, dg.AssetKey("decision")) == shipped
