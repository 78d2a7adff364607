"""The core's sub-commands of the `preflight` command, and the machinery that runs a set of them.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
heavy imports (torch, ultralytics, Dagster, MLflow) happen inside ``run`` so ``--help`` is instant.
The console script is :func:`pipeline.cli.main`: it adds the pipeline's sub-commands (``run``,
``demo``, ``ui``) to :data:`COMMANDS` and runs them all through :func:`main`, so the core never
names a module above it. ``python -m preflight.cli`` runs the core's sub-commands alone.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """One sub-command: the module that implements it, its one-line help, and whether it reads
    the settings file (then the file is validated before it starts, so a mistake in it is one
    line naming the key, exit status 2, never a traceback from deep in a run)."""

    module: str
    help: str
    reads_settings: bool = False


#: the core's sub-commands, in the order ``preflight --help`` lists them
COMMANDS: dict[str, Command] = {
    "synth": Command("preflight.synth.cli", "generate the embedded synthetic warehouse sample"),
    "evaluate": Command("preflight.metrics.cli",
                        "COCO-exact per-slice evaluation of a detector's results"),
    "zoo": Command("preflight.models.cli",
                   "build or list the demo model zoo (stand-in checkpoints)", reads_settings=True),
    "init": Command("preflight.init",
                    "write starter settings and candidates files for your own sample"),
    "runs": Command("preflight.runs_cli", "list the kept passes (run id, start, job, verdict)"),
    "compare": Command("preflight.compare_cli",
                       "per-slice metric deltas with intervals of two passes"),
}


def build_parser(commands: Mapping[str, Command] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preflight",
        description="Production validation for lightweight vision models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in commands.items():
        module = importlib.import_module(command.module)
        command_parser = sub.add_parser(name, help=command.help, description=command.help)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module, _reads_settings=command.reads_settings)
    return parser


def main(argv: list[str] | None = None, commands: Mapping[str, Command] = COMMANDS) -> int:
    """Parse ``argv`` against ``commands`` and run the chosen one; exit status 2 for a settings
    or data mistake (one line on stderr), 130 when interrupted."""
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("great_expectations", "alembic", "mlflow", "urllib3", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from preflight.config import ConfigError, load_settings
    from preflight.data.errors import PreflightDataError

    try:
        if args._reads_settings:
            load_settings()
        return int(args._module.run(args) or 0)
    except ConfigError as exc:
        print(f"preflight: settings: {exc}", file=sys.stderr)
        return 2
    except PreflightDataError as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
