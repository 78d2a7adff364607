"""Benchmark: Preflight's per-slice evaluation against pycocotools and faster-coco-eval.

    .venv/bin/python benchmarks/metrics.py [--images 5000] [--slices 20] [--seed 0]

On one synthetic case (``--images`` images, 7 classes, ~8 boxes and ~16 detections per image,
slice columns with ``--slices`` values in all) it times, in one run:

* Preflight: overall + every slice (the full long table: 12 COCO stats, per-class AP and the
  operating-point metrics for each), matching included;
* pycocotools once per slice (``params.imgIds`` = the slice's images) and once overall;
* faster-coco-eval once overall;

and checks that Preflight's twelve stats equal pycocotools' overall and for every slice (1e-4).
Loading the COCO objects (``COCO()`` + ``loadRes``) is timed separately and excluded from the
evaluation times. Exit status 1 when the numbers disagree.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from preflight.metrics.coco import STAT_NAMES  # noqa: E402
from preflight.metrics.detection import evaluate_detections  # noqa: E402
from preflight.metrics.synthetic import large_case, to_coco  # noqa: E402

TOL = 1e-4


def slice_levels(n_slices: int) -> dict[str, int]:
    """Split ``n_slices`` slice values over five columns (8/5/3/2/2 for 20)."""
    base = {"camera": 8, "week": 5, "lighting": 3, "shift": 2, "lens": 2}
    total = sum(base.values())
    levels = {k: max(1, round(v * n_slices / total)) for k, v in base.items()}
    levels["camera"] += n_slices - sum(levels.values())
    return {k: v for k, v in levels.items() if v > 0}


def _load(lib: str, dataset: dict, results: list):
    if lib == "faster":
        from faster_coco_eval import COCO
    else:
        from pycocotools.coco import COCO
    gt = COCO()
    gt.dataset = copy.deepcopy(dataset)
    gt.createIndex()
    return gt, gt.loadRes(copy.deepcopy(results))


def _evaluate(lib: str, coco_gt, coco_dt, img_ids=None) -> np.ndarray:
    if lib == "faster":
        from faster_coco_eval import COCOeval_faster as COCOeval
    else:
        from pycocotools.cocoeval import COCOeval
    ev = COCOeval(coco_gt, coco_dt, "bbox")
    if img_ids is not None:
        ev.params.imgIds = sorted(int(i) for i in img_ids)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    s = np.asarray(ev.stats[:12], dtype=np.float64)
    return np.where(s == -1, np.nan, s)


def _quiet(fn, *args, **kw):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kw)


def _timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = _quiet(fn, *args, **kw)
    return out, time.perf_counter() - t0


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    if (np.isnan(a) != np.isnan(b)).any():
        return float("inf")
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.max(np.abs(a - b)[both])) if both.any() else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--slices", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-per-slice", action="store_true",
                    help="do not run pycocotools once per slice (the slow part)")
    args = ap.parse_args(argv)

    levels = slice_levels(args.slices)
    gt, dt, images = large_case(np.random.default_rng(args.seed), args.images, n_classes=7,
                                slice_levels=levels)
    columns = list(levels)
    slices = [(c, v, images.loc[images[c] == v, "image_id"].to_numpy())
              for c in columns for v in sorted(images[c].unique())]
    print(f"case: {len(images)} images, {len(gt)} boxes, {len(dt)} detections, 7 classes, "
          f"{len(slices)} slices over {columns}")

    table, t_pf = _timed(evaluate_detections, gt, dt, images, slice_columns=columns)
    stats = table[table["metric"].isin(STAT_NAMES)].pivot_table(
        index=["slice_column", "slice_value"], columns="metric", values="value",
        dropna=False)[list(STAT_NAMES)]

    dataset, results = to_coco(gt, dt, images, 7)
    (pc_gt, pc_dt), t_load = _timed(_load, "pycocotools", dataset, results)
    ref_all, t_pc_all = _timed(_evaluate, "pycocotools", pc_gt, pc_dt)
    (f_gt, f_dt), t_fload = _timed(_load, "faster", dataset, results)
    ref_fast, t_fast = _timed(_evaluate, "faster", f_gt, f_dt)

    worst = _diff(stats.loc[("__all__", "__all__")].to_numpy(), ref_all)
    t_pc_slices = float("nan")
    if not args.skip_per_slice:
        t_pc_slices = 0.0
        for c, v, ids in slices:
            ref, dt_s = _timed(_evaluate, "pycocotools", pc_gt, pc_dt, ids)
            t_pc_slices += dt_s
            worst = max(worst, _diff(stats.loc[(c, v)].to_numpy(), ref))

    print()
    print(f"{'':46s}{'seconds':>10s}")
    print(f"{'Preflight overall + all ' + str(len(slices)) + ' slices':46s}{t_pf:10.2f}")
    print(f"{'pycocotools once per slice (' + str(len(slices)) + ' runs)':46s}{t_pc_slices:10.2f}")
    print(f"{'pycocotools overall once':46s}{t_pc_all:10.2f}")
    print(f"{'faster-coco-eval overall once':46s}{t_fast:10.2f}")
    print(f"{'  (COCO loading, not counted: pycocotools':46s}{t_load:10.2f}")
    print(f"{'   faster-coco-eval)':46s}{t_fload:10.2f}")
    print()
    print(f"pycocotools overall / Preflight overall+slices          = {t_pc_all / t_pf:8.1f}x")
    print(f"pycocotools (overall + per slice) / Preflight           = "
          f"{(t_pc_all + t_pc_slices) / t_pf:8.1f}x")
    print(f"faster-coco-eval overall / Preflight overall+slices     = {t_fast / t_pf:8.2f}x")
    print()
    print("overall stats   " + " ".join(f"{n:>9s}" for n in STAT_NAMES))
    print("  Preflight     " + " ".join(f"{v:9.4f}" for v in stats.loc[("__all__", "__all__")]))
    print("  pycocotools   " + " ".join(f"{v:9.4f}" for v in ref_all))
    print("  faster-coco   " + " ".join(f"{v:9.4f}" for v in ref_fast))
    scope = "overall" if args.skip_per_slice else f"overall and {len(slices)} slices"
    ok = worst <= TOL
    print(f"max |Preflight - pycocotools| over {scope}: {worst:.2e} "
          f"({'OK' if ok else 'MISMATCH'}, tolerance {TOL:g})")
    target = t_pf < t_pc_all
    print(f"target (Preflight overall + slices faster than pycocotools overall alone): "
          f"{'met' if target else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
