"""The MLflow tracker against a real tracking server (started on 127.0.0.1), not only SQLite:
the same resource the pipeline uses, configured with an http:// URI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port",
         str(port), "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=3):
                break
        except OSError:
            if proc.poll() is not None:
                raise AssertionError((root / "server.log").read_text()[-2000:]) from None
            time.sleep(1)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    log.close()


def test_tracker_records_runs_metrics_artifacts_and_registry(mlflow_server, tmp_path):
    from resources.tracking import MlflowTracker

    tracker = MlflowTracker(tracking_uri=mlflow_server, experiment="preflight-server-test")
    parent = tracker.parent_run("dagster-run-1", "preflight_pass")
    assert tracker.parent_run("dagster-run-1") == parent  # found again, not duplicated
    child = tracker.start_child(parent, "yolov8n/offtheshelf", {"preflight.stage": "offtheshelf"})
    tracker.log_params(child, {"input_size": 320})
    assert tracker.log_metrics(child, {"recall.lighting.dim": 0.42, "AP": float("nan")}) == 1
    artefact = tmp_path / "metrics.parquet"
    artefact.write_bytes(b"PAR1")
    tracker.log_artifact(child, artefact, "tables")
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"weights")
    version = tracker.register_model(child, weights, "preflight-server-test-model")
    tracker.finish(child)

    client = tracker.client()
    run = client.get_run(child)
    assert run.data.metrics == {"recall.lighting.dim": 0.42}
    assert run.data.params["input_size"] == "320"
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert [a.path for a in client.list_artifacts(child, "tables")] == ["tables/metrics.parquet"]
    alias = client.get_model_version_by_alias("preflight-server-test-model", "champion")
    assert alias.version == version
    assert tracker.run_url(child).startswith(mlflow_server)
