"""`preflight run [--config FILE]`: the whole production-validation pass on the configured sample.

The same job `preflight demo` runs, on the sample, taxonomy and candidates your settings file
names (``preflight init`` writes a starter one). ``--config`` becomes the settings file of
``preflight.environment`` (for this process and the step processes it starts), so the Dagster
definitions, the candidates and every asset read that file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help="settings file (default: $PREFLIGHT_CONFIG or config/preflight.yaml)")
    parser.add_argument("--job", default="preflight_pass", help="the Dagster job to run")
    parser.add_argument("--log-level", default="INFO", help="Dagster console log level")


def run(args: argparse.Namespace) -> int:
    from preflight import environment
    from preflight.config import ConfigError, load_settings
    from preflight.models.candidates import CandidateError, load_candidates

    if args.config is not None:
        environment.use_config_file(args.config)
    try:  # fail before Dagster starts, with the file's own message
        settings = load_settings()
        taxonomy = settings.taxonomy_obj
        load_candidates(environment.candidates_file() or settings.candidates_file,
                        taxonomy=taxonomy)
        environment.executor()
    except (ConfigError, CandidateError, environment.EnvironmentSettingError) as exc:
        print(f"preflight run: {exc}", file=sys.stderr)
        return 2
    sample = settings.data.landing_dir or "the embedded synthetic sample (data.landing_dir: null)"
    print(f"Preflight run: {len(taxonomy)} classes ({', '.join(taxonomy.names)}) on {sample}",
          flush=True)
    from pipeline import demo

    return demo.run(args)
