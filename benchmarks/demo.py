"""Benchmark: a first ``make demo`` from an empty home, timed stage by stage.

    .venv/bin/python benchmarks/demo.py                       # fresh temp home, shipped settings
    .venv/bin/python benchmarks/demo.py --home /tmp/pf-demo --config config/preflight.yaml
    .venv/bin/python benchmarks/demo.py --reuse-zoo .preflight/zoo   # the pass alone
    .venv/bin/python benchmarks/demo.py --config tests/fixtures/tiny/preflight.yaml  # test-sized
    .venv/bin/python benchmarks/demo.py --all-candidates      # every candidate (four)

It runs ``preflight demo`` (what ``make demo`` runs after the install) in a child process with
the environment the Makefile sets, ``PREFLIGHT_HOME`` = ``--home`` (must be empty or absent:
nothing cached, as on a fresh clone) and ``PREFLIGHT_CONFIG`` = ``--config``, its output
streamed through. ``--reuse-zoo DIR`` copies an already built zoo (``manifest.json`` and the
checkpoints) into the home first, so the zoo stage finds every stand-in up to date and the
timing is that of the pass alone. Afterwards it reads, from the run's Dagster instance (the
home's ``dagster`` folder), every step's start and end events, and from the zoo manifest the
training time of each stand-in built in this run, and prints:

* the wall time of the whole command (interpreter start and imports included) and the time
  from launch to the first off-the-shelf evaluation (the first useful result);
* one row per stand-in built (its training seconds, from the manifest) and per Dagster step:
  when it started and ended (seconds after launch), how long it ran and its status. Steps of
  one run may overlap (multiprocess executor): the table is in start order, and the sum of the
  step times is printed beside the wall time; with each step's CPU seconds (the demo
  process sampled every second from ``/proc``, Linux): a busy machine inflates the wall time
  much more than the CPU time;

and the two targets of a first demo: done within 15 minutes, first useful result within 5.
``--json PATH`` writes the same figures as JSON. Exit status: the demo's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: first useful result: the first candidate's off-the-shelf failure table
FIRST_RESULT_STEP = "offtheshelf_eval"
TARGET_TOTAL_S = 15 * 60
TARGET_FIRST_S = 5 * 60


def demo_environment(home: Path, config: Path | None) -> dict[str, str]:
    """The environment ``make demo`` gives ``preflight demo`` (see the Makefile), for ``home``."""
    env = dict(os.environ)
    env.update({"PREFLIGHT_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
                "YOLO_CONFIG_DIR": str(home / "ultralytics"), "YOLO_OFFLINE": "1",
                "MPLBACKEND": "Agg", "GX_ANALYTICS_ENABLED": "false",
                "DAGSTER_DISABLE_TELEMETRY": "1",
                "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
                    os.pathsep)})
    if config is not None:
        env["PREFLIGHT_CONFIG"] = str(config)
    else:
        env.pop("PREFLIGHT_CONFIG", None)
    env.pop("PREFLIGHT_CANDIDATES", None)
    return env


def prepare_home(home: Path, reuse_zoo: Path | None) -> None:
    """Check that ``home`` is empty (a first demo caches nothing) and create it; copy the zoo
    to reuse into it."""
    if home.exists() and any(home.iterdir()):
        raise SystemExit(f"--home {home} is not empty: a first demo starts from an empty home "
                         "(pass a new folder, or none for a temporary one)")
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    if reuse_zoo is not None:
        if not (reuse_zoo / "manifest.json").is_file():
            raise SystemExit(f"--reuse-zoo {reuse_zoo}: no manifest.json there (a zoo folder "
                             "is $PREFLIGHT_HOME/zoo after `preflight zoo build`)")
        shutil.copytree(reuse_zoo, home / "zoo", symlinks=False,
                        ignore=shutil.ignore_patterns("runs", "*.tmp"))


def _process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of process ``pid`` and its waited-for children (Linux
    ``/proc``; None elsewhere or once it has exited)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def run_demo(env: dict[str, str], log_path: Path, extra: list[str]
             ) -> tuple[int, float, float, float, list[tuple[float, float]]]:
    """``preflight demo`` in a child process, output streamed to the terminal and ``log_path``.
    Returns ``(exit status, launch time (epoch s), wall seconds, CPU seconds, CPU samples)``:
    the CPU time of the demo and its children (user + system), which a busy machine inflates
    much less than the wall time, and ``(epoch s, CPU s so far)`` sampled every second (Linux),
    from which each step's CPU time is read."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    samples: list[tuple[float, float]] = []
    cmd = [sys.executable, "-m", "pipeline.cli", "demo", *extra]
    launched = time.time()
    t0 = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                log.write(f"{time.perf_counter() - t0:9.1f}  {line}")

        def sample() -> None:
            while proc.poll() is None:
                cpu_now = _process_cpu_s(proc.pid)
                if cpu_now is not None:
                    samples.append((time.time(), cpu_now))
                time.sleep(1.0)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        reader.join()
        sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rc, launched, time.perf_counter() - t0, cpu, samples


def step_cpu(steps: list[dict], samples: list[tuple[float, float]]) -> None:
    """Each step's CPU seconds (``cpu_s``), interpolated from the demo process's samples (the
    in-process executor runs one step at a time in that process; None without samples)."""
    import numpy as np

    if len(samples) < 2:
        return
    t, c = np.array(samples).T
    for s in steps:
        if s["start"] and s["end"]:
            s["cpu_s"] = float(np.interp(s["end"], t, c) - np.interp(s["start"], t, c))


def step_timings(dagster_home: Path, since: float) -> tuple[list[dict], list[str]]:
    """Every step of the runs started after ``since`` (epoch s) in the Dagster instance at
    ``dagster_home``: ``{run_id, step, start, end, seconds, status}`` (times in epoch s), in
    start order; and the run ids."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    import dagster as dg

    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS,
             dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_SKIPPED}
    steps: dict[tuple[str, str], dict] = {}
    with dg.DagsterInstance.get() as instance:
        runs = [r for r in instance.get_run_records() if r.create_timestamp.timestamp() >= since]
        run_ids = [r.dagster_run.run_id for r in sorted(runs, key=lambda r: r.create_timestamp)]
        for run_id in run_ids:
            for entry in instance.all_logs(run_id, of_type=kinds):
                if not entry.step_key:
                    continue
                row = steps.setdefault((run_id, entry.step_key), {
                    "run_id": run_id, "step": entry.step_key, "start": None, "end": None,
                    "status": "started"})
                kind = entry.dagster_event.event_type
                if kind == dg.DagsterEventType.STEP_START:
                    row["start"] = entry.timestamp
                else:
                    row["end"] = entry.timestamp
                    row["status"] = {dg.DagsterEventType.STEP_SUCCESS: "ok",
                                     dg.DagsterEventType.STEP_FAILURE: "FAILED",
                                     dg.DagsterEventType.STEP_SKIPPED: "skipped"}[kind]
    out = []
    for row in steps.values():
        row["start"] = row["start"] if row["start"] is not None else row["end"]
        row["seconds"] = (row["end"] - row["start"]) if row["end"] and row["start"] else None
        out.append(row)
    return sorted(out, key=lambda r: (r["start"] or 0.0, r["step"])), run_ids


def zoo_builds(zoo_dir: Path, since: float) -> list[dict]:
    """The stand-ins built after ``since`` (epoch s; the manifest's ``built_at`` of each: the
    pass builds one per candidate, each its own step), with the training seconds and held-out
    mAP50 the manifest records for each, in build order."""
    from datetime import datetime

    path = zoo_dir / "manifest.json"
    if not path.is_file():
        return []
    manifest = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for name, entry in (manifest.get("models") or {}).items():
        try:
            built_at = datetime.fromisoformat(str(entry.get("built_at"))).timestamp()
        except ValueError:
            continue
        if built_at >= since - 1.0:  # built_at is to the second
            rows.append({"stand_in": name, "seconds": entry.get("seconds"), "built_at": built_at,
                         "heldout_map50": (entry.get("heldout_val") or {}).get("map50")})
    return sorted(rows, key=lambda r: r["built_at"])


def report(steps: list[dict], zoo: list[dict], launched: float, wall: float, rc: int,
           cpu: float | None = None) -> dict:
    """Print the stage table and the targets; return the figures."""
    def rel(t):
        return None if t is None else t - launched

    first = min((s["end"] for s in steps if s["end"] and s["status"] == "ok"
                 and s["step"].split(".")[-1].endswith(FIRST_RESULT_STEP)), default=None)
    print()
    print("=" * 78)
    print(f"first demo: exit status {rc}, {wall:.0f} s wall (launch to exit, imports included)"
          + ("" if cpu is None else f", {cpu:.0f} CPU s (user + system, children included; "
                                    f"{os.cpu_count()} cores here)"))
    print()
    if zoo:
        print(f"{'zoo stand-in built':40s}{'train s':>10s}{'held-out mAP50':>16s}")
        for z in zoo:
            sec = "" if z["seconds"] is None else f"{z['seconds']:.0f}"
            m = "" if z["heldout_map50"] is None else f"{z['heldout_map50']:.3f}"
            print(f"  {z['stand_in']:38s}{sec:>10s}{m:>16s}")
        print()
    else:
        print("zoo: nothing built (every stand-in up to date, or no zoo: candidates)")
        print()
    print(f"{'Dagster step':52s}{'start s':>8s}{'end s':>8s}{'seconds':>9s}{'CPU s':>8s}  status")
    for s in steps:
        start, end = rel(s["start"]), rel(s["end"])
        cpu_s = s.get("cpu_s")
        print(f"  {s['step'][:50]:50s}{start or 0:8.0f}"
              f"{'' if end is None else f'{end:.0f}':>8s}"
              f"{'' if s['seconds'] is None else format(s['seconds'], '.1f'):>9s}"
              f"{'' if cpu_s is None else format(cpu_s, '.0f'):>8s}  "
              f"{s['status']}")
    busy = sum(s["seconds"] or 0.0 for s in steps)
    run_start = min((s["start"] for s in steps if s["start"]), default=None)
    run_end = max((s["end"] for s in steps if s["end"]), default=None)
    print()
    print(f"steps: {len(steps)}, their times summed {busy:.0f} s; first step started at "
          f"{rel(run_start) or 0:.0f} s, last ended at {rel(run_end) or 0:.0f} s after launch")
    first_s = rel(first)
    print(f"first useful result (an off-the-shelf evaluation done): "
          f"{'never' if first_s is None else f'{first_s:.0f} s'} after launch "
          f"(target: within {TARGET_FIRST_S // 60} min: "
          f"{'met' if first_s is not None and first_s <= TARGET_FIRST_S else 'NOT met'})")
    print(f"whole demo: {wall:.0f} s (target: within {TARGET_TOTAL_S // 60} min: "
          f"{'met' if rc == 0 and wall <= TARGET_TOTAL_S else 'NOT met'})")
    print("=" * 78)
    return {"exit_status": rc, "wall_s": wall, "cpu_s": cpu, "first_result_s": first_s,
            "steps_busy_s": busy,
            "zoo": zoo, "steps": [{**s, "start_s": rel(s["start"]), "end_s": rel(s["end"])}
                                  for s in steps]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", type=Path, default=None,
                    help="PREFLIGHT_HOME for the demo: empty or absent (default: a new temp "
                         "folder, kept afterwards)")
    ap.add_argument("--config", type=Path, default=None,
                    help="settings YAML (PREFLIGHT_CONFIG; default: config/preflight.yaml)")
    ap.add_argument("--reuse-zoo", type=Path, default=None, metavar="PATH",
                    help="copy this built zoo folder into the home first (times the pass "
                         "without the zoo build)")
    ap.add_argument("--job", default=None, help="the Dagster job (default: preflight demo's)")
    ap.add_argument("--all-candidates", action="store_true",
                    help="preflight demo --all-candidates (the four of config/candidates.yaml)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    home = (args.home or Path(tempfile.mkdtemp(prefix="preflight-demo-"))).resolve()
    config = args.config.resolve() if args.config else None
    if config is not None and not config.is_file():
        raise SystemExit(f"--config {config}: no such file")
    prepare_home(home, args.reuse_zoo.resolve() if args.reuse_zoo else None)
    print(f"demo home: {home}" + (f" (zoo copied from {args.reuse_zoo})" if args.reuse_zoo
                                  else " (empty: the zoo is built)"), flush=True)
    env = demo_environment(home, config)
    extra = ["--job", args.job] if args.job else []
    extra += ["--all-candidates"] if args.all_candidates else []
    since = time.time() - 1.0
    rc, launched, wall, cpu, samples = run_demo(env, home / "demo_benchmark.log", extra)
    steps, _ = step_timings(home / "dagster", since)
    step_cpu(steps, samples)
    figures = report(steps, zoo_builds(home / "zoo", since), launched, wall, rc, cpu)
    figures.update({"home": str(home), "config": str(config or ""),
                    "reuse_zoo": str(args.reuse_zoo or "")})
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    print(f"log with times: {home / 'demo_benchmark.log'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
