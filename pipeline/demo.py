"""`preflight demo`: materialise the whole production-validation pass on the embedded sample.

The run goes into the project-local Dagster instance, so it shows up in the Dagster UI afterwards
with all its asset metadata and checks, and in MLflow under the configured experiment.
"""

from __future__ import annotations

import argparse
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", default="preflight_pass", help="the Dagster job to run")
    parser.add_argument("--log-level", default="INFO", help="Dagster console log level")


def run(args: argparse.Namespace) -> int:
    from pipeline.instance import prepare_dagster_home

    home = prepare_dagster_home()
    import dagster as dg

    from pipeline.definitions import defs
    from preflight.config import preflight_home
    from preflight.decide.export_evidence import EXPORTS_TITLE

    started = time.perf_counter()
    job = defs.resolve_job_def(args.job)
    print(f"Preflight demo: running job '{args.job}' (Dagster home {home})", flush=True)
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": args.log_level}}}},
        )
        summary = _materialisation_summary(instance, result.run_id)
    from pipeline.definitions import build_resources  # no daemon here: end the MLflow parent run

    build_resources()["tracker"].finish_parent(result.run_id,
                                               "success" if result.success else "failure")
    elapsed = time.perf_counter() - started
    print()
    print("=" * 78)
    print(f"Run {result.run_id} {'succeeded' if result.success else 'FAILED'} in {elapsed:.0f} s")
    for line in summary:
        print(line)
    from preflight.runs import run_dir

    home_dir = run_dir(preflight_home(), result.run_id)
    print()
    print(f"Results of this pass (Parquet tables, reports): {home_dir}")
    print("Earlier passes:     preflight runs;  preflight compare RUN_A RUN_B")
    print("Dagster UI:  make ui   (or: .venv/bin/preflight ui) -> http://127.0.0.1:3000")
    print("MLflow UI:   started by the same command          -> http://127.0.0.1:5000")
    report = home_dir / "reports" / "decision.md"
    if report.exists() and result.success:
        sections = report.read_text(encoding="utf-8").split("\n## ")
        print()
        print(sections[0].strip())
        for section in sections[1:]:
            if section.startswith("Candidates"):
                print("\n## " + section.strip())
                break
        for section in sections[1:]:  # what ships: each export's p99 against its FP32 source
            if section.startswith(EXPORTS_TITLE):
                print("\n## " + section.strip())
                break
        print()
        print(f"Decision report: {report.with_suffix('.html')} (and .md, .json)")
    print("=" * 78)
    return 0 if result.success else 1


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
