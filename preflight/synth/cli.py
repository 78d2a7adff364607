"""``preflight synth``: generate the embedded synthetic warehouse sample.

    preflight synth --profile production --n 500 --weeks 4 --out DIR [--seed S]
                    [--image-size 320] [--week N] [--batch-id ID] [--no-progress]

Writes the sample layout of docs/CONTRACTS.md into DIR (``manifest.json`` and ``_COMPLETE``
last) and prints a one-line summary. Heavy imports (OpenCV, pandas) happen inside :func:`run`.
"""

from __future__ import annotations

import argparse
import sys

from preflight.config import SynthSettings

_DEFAULTS = SynthSettings()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=["production", "benchmark"],
                        default=_DEFAULTS.profile,
                        help=f"benchmark: clean public-data stand-in; production: edge cases and "
                             f"drift (default {_DEFAULTS.profile})")
    parser.add_argument("--n", type=int, default=_DEFAULTS.n,
                        help=f"number of images (default {_DEFAULTS.n})")
    parser.add_argument("--weeks", type=int, default=_DEFAULTS.weeks,
                        help=f"spread the images over weeks 1..WEEKS (default {_DEFAULTS.weeks})")
    parser.add_argument("--week", type=int, default=None,
                        help="generate one weekly batch: every image in week N (overrides --weeks)")
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed,
                        help=f"random seed (default {_DEFAULTS.seed})")
    parser.add_argument("--image-size", type=int, default=_DEFAULTS.image_size,
                        help=f"square image side in px (default {_DEFAULTS.image_size})")
    parser.add_argument("--batch-id", default=None,
                        help="put this id in the file names instead of the seed")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (created; a previous synthetic sample is replaced)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from preflight.synth.generate import generate

    try:
        summary = generate(args.out, profile=args.profile, n=args.n, weeks=args.weeks,
                           seed=args.seed, image_size=args.image_size, week=args.week,
                           progress=not args.no_progress, batch_id=args.batch_id)
    except (ValueError, FileExistsError) as exc:
        print(f"preflight synth: {exc}", file=sys.stderr)
        return 2
    print(f"{summary.n_images} images, {summary.n_boxes} boxes in {summary.seconds:.1f} s "
          f"({summary.images_per_second:.0f} images/s), profile {summary.profile}, "
          f"week(s) {','.join(map(str, summary.weeks))} -> {summary.out_dir}")
    return 0
