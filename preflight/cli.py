"""The `preflight` command: one entry point, one sub-command per job.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
heavy imports (torch, ultralytics, Dagster, MLflow) happen inside ``run`` so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("preflight.synth.cli", "generate the embedded synthetic warehouse sample"),
    "evaluate": ("preflight.metrics.cli", "COCO-exact per-slice evaluation of a detector's results"),
    "zoo": ("preflight.models.cli", "build or list the demo model zoo (stand-in checkpoints)"),
    "init": ("preflight.init", "write starter settings and candidates files for your own sample"),
    "run": ("pipeline.run", "run the whole pass on the configured sample (--config FILE)"),
    "demo": ("pipeline.demo", "run the whole pipeline end to end on the embedded sample"),
    "ui": ("pipeline.ui", "start the Dagster UI and the MLflow UI on 127.0.0.1"),
    "runs": ("preflight.runs_cli", "list the kept passes (run id, start, job, verdict)"),
    "compare": ("preflight.compare_cli", "per-slice metric deltas with intervals of two passes"),
}
#: sub-commands that read the settings file: it is validated before they start, so a mistake in
#: it is one line naming the key (exit status 2), never a traceback from deep in a run
READS_SETTINGS = frozenset({"zoo", "demo", "ui"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preflight",
        description="Production validation for lightweight vision models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("great_expectations", "alembic", "mlflow", "urllib3", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from preflight.config import ConfigError, load_settings
    from preflight.data.errors import PreflightDataError

    try:
        if args.command in READS_SETTINGS:
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
