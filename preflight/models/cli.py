"""``preflight zoo build`` / ``preflight zoo list``: the demo model zoo.

The zoo lives in ``$PREFLIGHT_HOME/zoo`` (default ``./.preflight/zoo``). Heavy imports
(torch, ultralytics) happen inside :func:`run`, so ``preflight --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys

from preflight import environment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--zoo", metavar="DIR", default=None,
                        help="zoo folder (default: $PREFLIGHT_HOME/zoo, i.e. ./.preflight/zoo)")
    common.add_argument("--candidates", metavar="YAML", default=None,
                        help="candidates file (default: config/candidates.yaml)")

    build = sub.add_parser("build", parents=[common], help="train the demo stand-in checkpoints",
                           description="Train each zoo: candidate briefly on the clean synthetic "
                                       "benchmark profile; cached by sha256 and settings.")
    build.add_argument("--force", action="store_true", help="retrain even if up to date")
    build.add_argument("--epochs", type=int, default=None,
                       help="training epochs (default: the settings' zoo section)")
    build.add_argument("--n-images", type=int, default=None,
                       help="benchmark images to generate (default: the settings' zoo section)")
    build.add_argument("--image-size", type=int, default=None,
                       help="image and training size in px (default: the settings' zoo section)")
    build.add_argument("--batch", type=int, default=None,
                       help="training batch size (default: the settings' zoo section)")
    build.add_argument("--seed", type=int, default=None,
                       help="data and training seed (default: the settings' zoo section)")
    build.add_argument("--device", default=None,
                       help="cpu, cuda:0, ... (default: cuda when available, else cpu)")
    build.add_argument("--data", metavar="DIR", default=None,
                       help="train on this YOLO dataset instead of generating the benchmark profile")
    build.add_argument("--only", metavar="NAME", nargs="+", default=None,
                       help="build only these candidates")
    build.add_argument("--quiet", action="store_true", help="no ultralytics progress output")

    listing = sub.add_parser("list", parents=[common], help="show the zoo manifest")
    listing.add_argument("--json", action="store_true", help="print the raw manifest")


def _fmt_row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def _list(args: argparse.Namespace) -> int:
    from preflight.config import resolve_taxonomy
    from preflight.models.candidates import load_candidates, unmapped_classes
    from preflight.models.zoo import Manifest, default_zoo_dir

    zoo_dir = args.zoo or default_zoo_dir()
    manifest = Manifest.load(zoo_dir)
    if args.json:
        print(json.dumps({"zoo_dir": str(zoo_dir), "models": manifest.models,
                          "last_build": manifest.last_build}, indent=2, default=str))
        return 0
    candidates = load_candidates(args.candidates)
    header = ["name", "arch", "sha256", "MB", "epochs", "imgsz", "mAP50*", "train s", "built"]
    rows = []
    for name, entry in sorted(manifest.models.items()):
        train = entry.get("train", {})
        val = entry.get("heldout_val", {})
        rows.append([name, str(entry.get("arch")), entry["sha256"][:12],
                     f"{entry.get('size_bytes', 0) / 1e6:.1f}", str(train.get("epochs", "")),
                     str(train.get("imgsz", train.get("input_size", ""))), _heldout(val),
                     f"{entry.get('seconds', 0):.0f}", str(entry.get("built_at", ""))])
    print(f"zoo: {zoo_dir}")
    if rows:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        print(_fmt_row(header, widths))
        for row in rows:
            print(_fmt_row(row, widths))
        print("* mAP50 on the held-out clean benchmark images (ultralytics val); classifiers: "
              "top-1 accuracy on held-out benchmark crops (acc)")
    else:
        print("(empty: run `preflight zoo build`)")
    taxonomy = resolve_taxonomy()
    for cand in candidates:
        missing = unmapped_classes(cand, taxonomy)
        built = cand.zoo_name in manifest.models if cand.is_zoo else None
        state = {True: "built", False: "NOT BUILT", None: f"weights {cand.weights}"}[built]
        print(f"candidate {cand.name}: {state}; no analog in pre-training: "
              f"{', '.join(missing) if missing else 'none'}")
    return 0


def _heldout(val: dict) -> str:
    """The held-out number of a zoo entry: detector mAP50, or classifier accuracy."""
    if "map50" in val:
        return f"{val['map50']:.3f}"
    if "accuracy" in val:
        return f"acc {val['accuracy']:.3f}"
    return "-"


def _build(args: argparse.Namespace) -> int:
    import logging
    import time

    from preflight.config import load_settings
    from preflight.models.candidates import load_candidates
    from preflight.models.zoo import ZooBuild, build_zoo, default_zoo_dir

    logging.getLogger("preflight").setLevel(logging.INFO)
    settings = load_settings()
    cfg = settings.zoo
    candidates = load_candidates(args.candidates or environment.candidates_file()
                                 or settings.candidates_file)
    t0 = time.perf_counter()
    build = ZooBuild.of(cfg, n_images=args.n_images, image_size=args.image_size,
                        epochs=args.epochs, seed=args.seed, batch=args.batch, device=args.device,
                        progress=not args.quiet)
    manifest = build_zoo(args.zoo or default_zoo_dir(), candidates, build, data_dir=args.data,
                         force=args.force, only=args.only)
    last = manifest.last_build
    print(f"zoo {manifest.zoo_dir}: built {last.get('built') or 'nothing'}, "
          f"cached {last.get('cached') or 'nothing'} in {time.perf_counter() - t0:.0f} s")
    for name in last.get("built", []) + last.get("cached", []):
        entry = manifest.models[name]
        val = entry.get("heldout_val", {})
        held = (f"accuracy {val.get('accuracy', float('nan')):.3f}" if entry.get("family") == "timm"
                else f"mAP50 {val.get('map50', float('nan')):.3f}")
        print(f"  {name}: sha256 {entry['sha256'][:12]}  held-out {held}")
    return 0


def run(args: argparse.Namespace) -> int:
    from preflight.models.base import ModelError
    from preflight.models.candidates import CandidateError

    try:
        return _build(args) if args.zoo_command == "build" else _list(args)
    except (CandidateError, ModelError) as exc:
        print(f"preflight zoo: {exc}", file=sys.stderr)
        return 2
