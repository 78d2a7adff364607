"""``preflight runs``: every kept pass in the store, oldest first, with its verdict."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", help="project home (default: $PREFLIGHT_HOME or ./.preflight)")


def run(args: argparse.Namespace) -> int:
    from preflight.config import preflight_home
    from preflight.runs import list_runs

    home = args.home or preflight_home()
    runs = list_runs(home)
    if not runs:
        print(f"no runs kept in {home}", file=sys.stderr)
        return 1
    print(f"{'run':36s}  {'started (UTC)':19s}  {'job':18s}  verdict")
    for r in runs:
        print(f"{r.run_id:36s}  {r.started[:19]:19s}  {r.job:18s}  {r.verdict}")
    return 0
