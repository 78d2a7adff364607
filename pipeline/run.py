"""`preflight run [--config FILE]`: the whole production-validation pass on the configured sample.

The same job `preflight demo` runs, on the sample, taxonomy and candidates your settings file
names (``preflight init`` writes a starter one). ``--config`` sets ``PREFLIGHT_CONFIG`` for the
run, so the Dagster definitions, the candidates and every asset read that file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help="settings file (default: $PREFLIGHT_CONFIG or config/preflight.yaml)")
    parser.add_argument("--job", default="preflight_pass", help="the Dagster job to run")
    parser.add_argument("--log-level", default="INFO", help="Dagster console log level")


def run(args: argparse.Namespace) -> int:
    from preflight.config import ConfigError, load_settings
    from preflight.models.candidates import CandidateError, load_candidates

    if args.config is not None:
        os.environ["PREFLIGHT_CONFIG"] = str(args.config.expanduser().resolve())
    try:  # fail before Dagster starts, with the file's own message
        settings = load_settings()
        taxonomy = settings.taxonomy_obj
        load_candidates(os.environ.get("PREFLIGHT_CANDIDATES") or settings.candidates_file,
                        taxonomy=taxonomy)
    except (ConfigError, CandidateError) as exc:
        print(f"preflight run: {exc}", file=sys.stderr)
        return 2
    sample = settings.data.landing_dir or "the embedded synthetic sample (data.landing_dir: null)"
    print(f"Preflight run: {len(taxonomy)} classes ({', '.join(taxonomy.names)}) on {sample}",
          flush=True)
    from pipeline import demo

    return demo.run(args)
