"""The distributed path, run: a local Redis (Debian's ``redis-server``) and two dagster-celery
workers on 127.0.0.1 materialise a test-sized pass (ingestion, validation, the model zoo and the
candidate's evaluation steps) with ``PREFLIGHT_EXECUTOR=celery``; the steps land on both workers
and the stored results equal those of the same pass run in one process.

Everything listens on loopback only, on free ports; every process started here is stopped
(bounded waits). The zoo stand-in is trained once, by the in-process run, and reused (sha256
manifest) by the distributed one, so both evaluate the same weights.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import project

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "tiny"
GROUPS = ("ingestion", "validation", "models", "evaluation")
#: steps whose stored tables must be equal (latency is a timing, never equal run to run)
COMPARED = ("tiny/offtheshelf/metrics", "tiny/offtheshelf/stress")
START_TIMEOUT_S = 60
RUN_TIMEOUT_S = 900

pytestmark = [
    pytest.mark.server,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None,
                       reason="redis-server not installed (make test installs it with apt)"),
]


def celery_pass_job():
    """The test-sized pass as a job of its own (reconstructable: the workers load it from this
    module), on the executor ``PREFLIGHT_EXECUTOR`` names -- taken from the product's pass job,
    since ``pipeline.definitions`` is the one place that reads the variable."""
    import dagster as dg

    from pipeline.definitions import build_definitions

    defs = build_definitions()
    job = dg.define_asset_job("celery_test_pass", selection=dg.AssetSelection.groups(*GROUPS),
                              executor_def=defs.resolve_job_def("preflight_pass").executor_def)
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(
        "celery_test_pass")


@contextlib.contextmanager
def _loopback_project(home: Path, config: Path):
    """``conftest.project`` with the network guard relaxed to loopback: the broker is on
    127.0.0.1; any other address is refused."""
    import dagster as dg

    attempts: list[str] = []

    def guard(real):
        def call(*args, **kwargs):
            target = args[1] if real is _real_connect else args[0]
            host = target[0] if isinstance(target, tuple) else target
            if host != "127.0.0.1":
                attempts.append(repr(target))
                raise OSError(f"network access to {target!r} attempted (loopback only)")
            return real(*args, **kwargs)
        return call

    mp = pytest.MonkeyPatch()
    mp.setenv("PREFLIGHT_HOME", str(home))
    mp.setenv("PREFLIGHT_CONFIG", str(config))
    mp.setenv("YOLO_CONFIG_DIR", str(home / "ultralytics"))
    mp.setenv("YOLO_OFFLINE", "1")
    mp.delenv("PREFLIGHT_CANDIDATES", raising=False)
    mp.setattr(socket, "getaddrinfo", guard(socket.getaddrinfo))
    mp.setattr(socket, "create_connection", guard(socket.create_connection))
    mp.setattr(socket.socket, "connect", guard(_real_connect))
    (home / "dagster").mkdir(exist_ok=True)
    try:
        with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
            yield instance
        assert not attempts, f"the pass reached beyond loopback: {attempts}"
    finally:
        mp.undo()


_real_connect = socket.socket.connect


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} in {START_TIMEOUT_S}s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _tables(home: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for name in COMPARED:                 # one run per home: runs/<run_id>/tables/<name>
        paths = sorted(home.glob(f"runs/*/tables/{name}.parquet"))
        out[name] = pd.read_parquet(paths[-1]) if paths else None
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import dagster as dg

    # 1. the reference: the same pass in one process (trains the zoo stand-in)
    ref_home = tmp_path_factory.mktemp("inproc")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFLIGHT_EXECUTOR", "in_process")
        with project(ref_home, FIXTURES / "preflight.yaml") as instance:
            result = celery_pass_job().execute_in_process(instance=instance)
            assert result.success
    reference = _tables(ref_home)

    # 2. the distributed run, in another home with a copy of the built zoo
    home = tmp_path_factory.mktemp("celery")
    shutil.copytree(ref_home / "zoo", home / "zoo")
    port = _free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    backend = f"redis://127.0.0.1:{port}/1"
    procs: list[subprocess.Popen] = []
    logs = home / "logs"
    logs.mkdir()
    try:
        redis = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--protected-mode", "yes", "--dir", str(home)],
            stdout=open(logs / "redis.log", "w"), stderr=subprocess.STDOUT)
        procs.append(redis)
        _wait_for_port(port, redis, "redis-server")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PREFLIGHT_EXECUTOR", "celery")
            with _loopback_project(home, FIXTURES / "preflight.yaml") as instance:
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                    [str(REPO), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
                    "DAGSTER_HOME": str(home / "dagster")}
                workers = {}
                for name in ("w1", "w2"):
                    worker = subprocess.Popen(
                        [sys.executable, "-m", "celery", "-A", "dagster_celery.app", "-b", broker,
                         "--result-backend", backend, "worker", "--pool", "solo",
                         "--concurrency", "1", "--prefetch-multiplier", "1", "-Q", "dagster",
                         "-n", f"{name}@127.0.0.1", "--without-gossip", "--without-mingle",
                         "--without-heartbeat", "-l", "INFO"],
                        env=env, cwd=str(REPO), stdout=open(logs / f"{name}.log", "w"),
                        stderr=subprocess.STDOUT)
                    procs.append(worker)
                    workers[worker.pid] = name
                _wait_for_workers(broker, 2)
                job = dg.reconstructable(celery_pass_job)
                assert job.get_definition().executor_def.name == "celery", (
                    "PREFLIGHT_EXECUTOR=celery did not reach the pass job's executor")
                result = dg.execute_job(
                    job, instance=instance,
                    run_config={"execution": {"config": {"broker": broker, "backend": backend}}})
                records = instance.all_logs(result.run_id)
                assert result.success, _failures(records) + "\n" + _tail(logs)
    finally:
        for proc in reversed(procs):
            _stop(proc)
    step_pids = {r.dagster_event.step_key: r.dagster_event.pid for r in records
                 if r.dagster_event is not None and r.dagster_event.event_type_value == "STEP_START"}
    return {"reference": reference, "distributed": _tables(home), "step_pids": step_pids,
            "workers": workers}


def _wait_for_workers(broker: str, n: int) -> None:
    from celery import Celery

    app = Celery(broker=broker)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if len(replies) >= n:
            return
    raise TimeoutError(f"fewer than {n} celery workers answered in {START_TIMEOUT_S}s")


def _failures(records) -> str:
    """The run's failure events (step and run), each with its error: why the run failed."""
    out = []
    for r in records:
        event = r.dagster_event
        if event is None or not event.is_failure:
            continue
        error = getattr(event.event_specific_data, "error", None)
        out.append(f"--- {event.event_type_value} {event.step_key or ''}: {event.message or ''}\n"
                   + (error.to_string() if error is not None else ""))
    return "\n".join(out) or "no failure events recorded"


def _tail(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:]
                     for p in sorted(logs.glob("*.log")))


def test_steps_ran_on_both_workers(runs):
    on = {}
    for step, pid in runs["step_pids"].items():
        on.setdefault(runs["workers"].get(pid, f"pid {pid}"), []).append(step)
    assert set(on) == {"w1", "w2"}, on
    assert any(step.startswith("tiny") for steps in on.values() for step in steps)


def test_results_equal_the_in_process_run(runs):
    for name in COMPARED:
        ref, got = runs["reference"][name], runs["distributed"][name]
        assert ref is not None and got is not None, name
        assert list(ref.columns) == list(got.columns)
        pd.testing.assert_frame_equal(ref.select_dtypes(exclude="number"),
                                      got.select_dtypes(exclude="number"))
        np.testing.assert_allclose(ref.select_dtypes("number").to_numpy(float),
                                   got.select_dtypes("number").to_numpy(float),
                                   rtol=0, atol=1e-9, equal_nan=True)
