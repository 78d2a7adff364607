"""`preflight demo`: materialise the whole production-validation pass on the embedded sample.

The run goes into the project-local Dagster instance, so it shows up in the Dagster UI afterwards
with all its asset metadata and checks, and in MLflow under the configured experiment.

The shipped settings compare two candidates (``config/candidates_demo.yaml``, about a quarter of
an hour on two CPU cores, zoo build included); ``--all-candidates`` runs the four of
``config/candidates.yaml``. The first useful result -- the first candidate's off-the-shelf
failure table -- is printed as soon as its evaluation is materialised, while the pass goes on.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", default="preflight_pass", help="the Dagster job to run")
    parser.add_argument("--log-level", default="INFO", help="Dagster console log level")
    parser.add_argument("--all-candidates", action="store_true",
                        help="compare every candidate of config/candidates.yaml (four; the "
                             "default settings compare the two of config/candidates_demo.yaml)")


def run(args: argparse.Namespace) -> int:
    from pipeline.instance import prepare_dagster_home

    if getattr(args, "all_candidates", False):  # before the definitions read the candidates
        _use_all_candidates()
    home = prepare_dagster_home()
    started = time.perf_counter()
    print(f"Preflight demo: running job '{args.job}' (Dagster home {home})", flush=True)
    result, summary = _execute(args.job, args.log_level, started)
    from pipeline.definitions import build_resources  # no daemon here: end the MLflow parent run

    build_resources()["tracker"].finish_parent(result.run_id,
                                               "success" if result.success else "failure")
    print()
    print("=" * 78)
    print(f"Run {result.run_id} {'succeeded' if result.success else 'FAILED'} in "
          f"{time.perf_counter() - started:.0f} s")
    for line in summary:
        print(line)
    _print_results(result.run_id, result.success)
    print("=" * 78)
    return 0 if result.success else 1


def _execute(job_name: str, log_level: str, started: float):
    """Run the job in this process against the project's Dagster instance, printing the first
    useful result as soon as it exists; the result and one summary line per asset."""
    import dagster as dg

    from pipeline.definitions import defs

    job = defs.resolve_job_def(job_name)
    run_id = str(uuid.uuid4())
    stop = threading.Event()
    with dg.DagsterInstance.get() as instance:
        # the watcher reads through this same instance: a second instance opened at the same
        # time on a new home would create (and stamp) the SQLite storage twice, and every later
        # `preflight ui` / run would then refuse it ("more than one head present")
        watcher = threading.Thread(target=_print_first_result,
                                   args=(instance, run_id, stop, started), daemon=True)
        watcher.start()
        try:
            result = job.execute_in_process(
                instance=instance, raise_on_error=False, run_id=run_id,
                run_config={"loggers": {"console": {"config": {"log_level": log_level}}}})
        finally:
            stop.set()
            watcher.join(timeout=10)
        return result, _materialisation_summary(instance, result.run_id)


def _print_results(run_id: str, success: bool) -> None:
    """Where this pass's results are, how to open the UIs, and (when it succeeded) the
    decision: its verdict, the candidates table and what ships."""
    from preflight.config import preflight_home
    from preflight.decide.export_evidence import EXPORTS_TITLE
    from preflight.runs import run_dir

    home_dir = run_dir(preflight_home(), run_id)
    print()
    print(f"Results of this pass (Parquet tables, reports): {home_dir}")
    print("Earlier passes:     preflight runs;  preflight compare RUN_A RUN_B")
    print("Dagster UI:  make ui   (or: .venv/bin/preflight ui) -> http://127.0.0.1:3000")
    print("MLflow UI:   started by the same command          -> http://127.0.0.1:5000")
    report = home_dir / "reports" / "decision.md"
    if not (report.exists() and success):
        return
    sections = report.read_text(encoding="utf-8").split("\n## ")
    print()
    print(sections[0].strip())
    for title in ("Candidates", EXPORTS_TITLE):  # what ships: each export's p99 vs its source
        shown = next((sec for sec in sections[1:] if sec.startswith(title)), None)
        if shown is not None:
            print("\n## " + shown.strip())
    print()
    print(f"Decision report: {report.with_suffix('.html')} (and .md, .json)")


def _use_all_candidates() -> None:
    """``--all-candidates``: the settings' candidates file is the shipped demo subset
    (``config/candidates_demo.yaml``) -> every candidate of ``config/candidates.yaml``, for this
    process and the step processes it starts; any other candidates file already is the list."""
    from preflight import environment
    from preflight.config import DEFAULT_CANDIDATES_PATH, DEMO_CANDIDATES_PATH, load_settings

    current = Path(environment.candidates_file() or load_settings().candidates_file).resolve()
    if current == DEMO_CANDIDATES_PATH.resolve():
        environment.use_candidates_file(DEFAULT_CANDIDATES_PATH)
        current = DEFAULT_CANDIDATES_PATH
    print(f"Preflight demo: every candidate of {current}", flush=True)


#: the first useful result: a candidate's off-the-shelf evaluation (its failure table)
FIRST_RESULT_ASSET = "offtheshelf_eval"


def _print_first_result(instance, run_id: str, stop: threading.Event, started: float,
                        every_s: float = 2.0) -> None:
    """Watch the run's event log (through the run's own ``instance``: this is a thread beside
    the run) and print the first off-the-shelf evaluation's headline and failure table once it
    is materialised -- minutes before the pass ends."""
    import dagster as dg

    try:
        while not stop.wait(every_s):
            records = instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
            for record in records:
                mat = record.event_log_entry.dagster_event.event_specific_data.materialization
                if mat.asset_key.path[-1] == FIRST_RESULT_ASSET:
                    print(first_result_text(mat, time.perf_counter() - started), flush=True)
                    return
    except Exception as exc:  # noqa: BLE001 - a display aid: never let it disturb the run
        print(f"(first result not shown: {exc})", flush=True)


def first_result_text(mat, elapsed_s: float) -> str:
    """The block printed for the first off-the-shelf evaluation: its headline numbers and its
    worst slices (the asset's ``top_failing_slices`` metadata)."""
    meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    numbers = ", ".join(f"{k} {meta[k]:.3f}" for k in ("AP50", "recall", "precision")
                        if isinstance(meta.get(k), int | float))
    name = "/".join(mat.asset_key.path[:-1])
    table = meta.get("top_failing_slices") or "(no failure table)"
    bar = "-" * 78
    return (f"\n{bar}\nFirst result after {elapsed_s:.0f} s: {name} off-the-shelf on the held-out "
            f"set: {numbers}\nWorst slices (recall, with intervals); the pass goes on:\n"
            f"{table}\n{bar}\n")


def _materialisation_summary(instance, run_id: str) -> list[str]:
    """One line per materialised asset with its headline numbers."""
    import dagster as dg

    lines = []
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    for record in records:
        mat = record.event_log_entry.dagster_event.event_specific_data.materialization
        numbers = {k: v.value for k, v in mat.metadata.items()
                   if isinstance(v, dg.IntMetadataValue | dg.FloatMetadataValue)}
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in list(numbers.items())[:6])
        lines.append(f"  {mat.asset_key.to_user_string():28s} {shown}")
    return lines
