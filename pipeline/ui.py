"""`preflight ui`: the Dagster UI (with its daemon, for the schedule and sensor) and the MLflow UI."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

from preflight.environment import child_environment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--dagster-port", type=int, default=3000)
    parser.add_argument("--mlflow-port", type=int, default=5000)
    parser.add_argument("--no-mlflow", action="store_true", help="start only the Dagster UI")


def run(args: argparse.Namespace) -> int:
    from pipeline.instance import REPO_ROOT, prepare_dagster_home
    from resources.tracking import MlflowTracker

    home = prepare_dagster_home()
    bindir = Path(sys.executable).parent
    procs: list[subprocess.Popen] = []
    env = child_environment()
    if not args.no_mlflow:
        tracker = MlflowTracker()
        procs.append(subprocess.Popen([
            str(bindir / "mlflow"), "ui", "--host", args.host, "--port", str(args.mlflow_port),
            "--backend-store-uri", tracker.resolved_tracking_uri(),
            "--default-artifact-root", tracker.resolved_artifact_location()], env=env))
        print(f"MLflow UI:  http://{args.host}:{args.mlflow_port}")
    procs.append(subprocess.Popen([
        str(bindir / "dagster"), "dev", "-h", args.host, "-p", str(args.dagster_port),
        "-w", str(REPO_ROOT / "workspace.yaml")], cwd=REPO_ROOT, env=env))
    print(f"Dagster UI: http://{args.host}:{args.dagster_port}  (home: {home})")
    print("Press Ctrl-C to stop both.")
    try:
        for proc in procs:
            proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0
