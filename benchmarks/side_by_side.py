"""Benchmark: the pass with two candidates side by side (multiprocess executor) against one
after the other (in-process executor), in one run of this script.

    .venv/bin/python benchmarks/side_by_side.py [--config config/preflight.yaml]
        [--candidates A,B] [--workdir DIR] [--max-concurrent 2]

Both passes use the same settings, the same two candidates (default: the first two of the
candidates file) and the same zoo stand-ins, built once beforehand into a shared folder and
copied into each pass's home (so stand-in training is not part of either time). Each pass runs
as ``dagster job execute`` in a fresh home and Dagster instance. It prints both wall times, the
time of each stage (the per-step durations from the run's event log) and the ratio side by side /
one after the other (the target: below 1).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _env(home: Path, config: Path, candidates: Path, executor: str, max_concurrent: int) -> dict:
    """The environment of one pass's ``dagster job execute`` (Preflight's variables documented in
    ``preflight.environment.ENVIRONMENT``)."""
    from preflight import environment

    inherited = environment.child_environment()
    env = {**inherited, "PREFLIGHT_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "PREFLIGHT_CONFIG": str(config), "PREFLIGHT_CANDIDATES": str(candidates),
           "PREFLIGHT_EXECUTOR": executor, "PREFLIGHT_MAX_CONCURRENT": str(max_concurrent),
           "YOLO_CONFIG_DIR": str(home / "ultralytics"), "YOLO_OFFLINE": "1",
           "MPLBACKEND": "Agg", "GX_ANALYTICS_ENABLED": "false",
           "DAGSTER_DISABLE_TELEMETRY": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), inherited.get("PYTHONPATH", "")])}
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    return env


def _two_candidates(names: str | None, config: Path, out: Path) -> tuple[Path, list[str]]:
    """A candidates file with the two compared candidates (names given, or the first two) of
    the candidates file the passes would use: ``PREFLIGHT_CANDIDATES``, else the settings'."""
    from preflight import environment
    from preflight.config import load_settings
    from preflight.models.candidates import DEFAULT_CANDIDATES_PATH

    src = Path(environment.candidates_file() or load_settings(config).candidates_file
               or DEFAULT_CANDIDATES_PATH)
    doc = yaml.safe_load(src.read_text("utf-8"))
    entries = doc["candidates"]
    if names:
        wanted = names.split(",")
        entries = [c for c in entries if c["name"] in wanted]
        missing = set(wanted) - {c["name"] for c in entries}
        if missing:
            raise SystemExit(f"candidates {sorted(missing)} are not in {src}")
    entries = entries[:2]
    if len(entries) < 2:
        raise SystemExit(f"{src} has fewer than two candidates")
    for c in entries:                 # relative arch / weights paths stay valid from here
        for key in ("arch", "weights"):
            value = c.get(key)
            if isinstance(value, str) and not value.startswith("zoo:") \
                    and (src.parent / value).exists():
                c[key] = str((src.parent / value).resolve())
    out.write_text(yaml.safe_dump({**doc, "candidates": entries}, sort_keys=False), "utf-8")
    return out, [c["name"] for c in entries]


def _stage_seconds(home: Path) -> dict[str, float]:
    """Per-step wall seconds of the (only) run in ``home``'s Dagster instance."""
    import dagster as dg

    from preflight import environment

    environment.use_dagster_home(home / "dagster")

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        if not runs:
            return {}
        starts, out = {}, {}
        for rec in instance.all_logs(runs[0].run_id):
            ev = rec.dagster_event
            if ev is None or not ev.step_key:
                continue
            if ev.event_type_value == "STEP_START":
                starts[ev.step_key] = rec.timestamp
            elif ev.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and \
                    ev.step_key in starts:
                out[ev.step_key] = rec.timestamp - starts[ev.step_key]
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(REPO / "config" / "preflight.yaml"))
    ap.add_argument("--candidates", default=None, help="two candidate names, comma-separated")
    ap.add_argument("--workdir", default=None, help="where the homes go (default: a temp dir)")
    ap.add_argument("--max-concurrent", type=int, default=2)
    args = ap.parse_args(argv)
    base = Path(args.workdir or tempfile.mkdtemp(prefix="preflight-side-by-side-")).resolve()
    base.mkdir(parents=True, exist_ok=True)
    config = Path(args.config).resolve()
    cand_file, names = _two_candidates(args.candidates, config, base / "candidates.yaml")
    print(f"candidates {names}; settings {config}; homes under {base}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    # the zoo stand-ins, built once (not timed) and copied into both homes
    shared = base / "shared"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.cli", "zoo", "build", "--quiet"],
                   env=_env(shared, config, cand_file, "in_process", 1), check=True, cwd=REPO)
    print(f"zoo stand-ins ready in {time.perf_counter() - t0:.0f} s (not counted)")

    walls: dict[str, float] = {}
    stages: dict[str, dict[str, float]] = {}
    for label, executor in (("one after the other (in_process)", "in_process"),
                            (f"side by side (multiprocess, {args.max_concurrent} at once)",
                             "multiprocess")):
        home = base / executor
        shutil.rmtree(home, ignore_errors=True)
        if (shared / "zoo").is_dir():
            shutil.copytree(shared / "zoo", home / "zoo")
        env = _env(home, config, cand_file, executor, args.max_concurrent)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dagster", "job", "execute", "-m",
                        "pipeline.definitions", "-j", "preflight_pass"], env=env, check=True,
                       cwd=REPO)
        walls[label] = time.perf_counter() - t0
        stages[label] = _stage_seconds(home)

    print()
    steps = sorted({s for v in stages.values() for s in v})
    labels = list(walls)
    print(f"{'step':48s}" + "".join(f"{lbl.split(' (')[0]:>22s}" for lbl in labels))
    for step in steps:
        print(f"{step:48s}" + "".join(f"{stages[lbl].get(step, float('nan')):22.1f}"
                                      for lbl in labels))
    print()
    for lbl, sec in walls.items():
        print(f"{lbl:52s}{sec:10.1f} s")
    serial, parallel = walls[labels[0]], walls[labels[1]]
    print(f"side by side / one after the other = {parallel / serial:.2f} (target: below 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
