"""The `preflight` console script: the core's sub-commands (:mod:`preflight.cli`) plus the
pipeline's -- ``run`` (the pass on the configured sample), ``demo`` (the pass on the embedded
sample) and ``ui`` (the Dagster and MLflow UIs). It lives here, above the core, because those three
start Dagster; the core's command machinery runs them all (``pyproject.toml``'s
``[project.scripts]`` names :func:`main`; ``python -m pipeline.cli`` is the same command).
"""

from __future__ import annotations

import sys

from preflight.cli import COMMANDS as CORE_COMMANDS
from preflight.cli import Command
from preflight.cli import main as run_command

#: the pipeline's sub-commands
PIPELINE_COMMANDS: dict[str, Command] = {
    "run": Command("pipeline.run", "run the whole pass on the configured sample (--config FILE)"),
    "demo": Command("pipeline.demo", "run the whole pipeline end to end on the embedded sample",
                    reads_settings=True),
    "ui": Command("pipeline.ui", "start the Dagster UI and the MLflow UI on 127.0.0.1",
                  reads_settings=True),
}
#: the order ``preflight --help`` lists them in: getting a sample and models ready, running a
#: pass, then the kept passes (a sub-command not named here comes last)
ORDER = ("synth", "evaluate", "zoo", "init", "run", "demo", "ui", "runs", "compare")
_ALL = {**CORE_COMMANDS, **PIPELINE_COMMANDS}
COMMANDS: dict[str, Command] = {name: _ALL[name] for name in
                                [*ORDER, *(n for n in _ALL if n not in ORDER)]}


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
