"""``preflight compare RUN_A RUN_B``: per-slice deltas, with both runs' intervals, of every
metric table two kept passes share (run ids or unique prefixes, as ``preflight runs`` lists)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", help="the earlier run (id or unique prefix)")
    parser.add_argument("run_b", help="the later run (id or unique prefix)")
    parser.add_argument("--metric", action="append", dest="metrics",
                        help="only this metric (repeatable; default: all)")
    parser.add_argument("--significant", action="store_true",
                        help="only rows whose intervals are disjoint")
    parser.add_argument("--home", help="project home (default: $PREFLIGHT_HOME or ./.preflight)")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from preflight.config import preflight_home
    from preflight.runs import RunNotFoundError, compare_runs, find_run

    home = args.home or preflight_home()
    try:
        a, b = find_run(home, args.run_a), find_run(home, args.run_b)
    except RunNotFoundError as exc:
        print(f"preflight compare: {exc}", file=sys.stderr)
        return 2
    table = compare_runs(a, b, tuple(args.metrics) if args.metrics else None)
    if args.significant:
        table = table[table["significant"]]
    print(f"A = {a.run_id}  {a.verdict}")
    print(f"B = {b.run_id}  {b.verdict}")
    if table.empty:
        print("no per-slice metrics in common" + (" that changed significantly"
                                                   if args.significant else ""))
        return 0
    shown = pd.DataFrame({
        "table": table["table"], "slice": table["slice_column"] + "=" + table["slice_value"],
        "metric": table["metric"],
        "A": [_with_ci(v, lo, hi) for v, lo, hi in
              zip(table["value_a"], table["ci_low_a"], table["ci_high_a"], strict=True)],
        "B": [_with_ci(v, lo, hi) for v, lo, hi in
              zip(table["value_b"], table["ci_low_b"], table["ci_high_b"], strict=True)],
        "delta": table["delta"].map(lambda d: "" if pd.isna(d) else f"{d:+.3f}"),
        "disjoint": table["significant"].map(lambda s: "*" if s else "")})
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(shown.to_string(index=False))
    return 0


def _with_ci(value: float, low: float, high: float) -> str:
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"
