"""Benchmark: Preflight's per-slice evaluation against pycocotools and the compiled COCO
evaluators (faster-coco-eval, hotcoco, ultrafast-pycocotools, vernier).

    .venv/bin/pip install -e ".[bench]"      # the compiled references (optional)
    .venv/bin/python benchmarks/metrics.py [--images 5000] [--slices 20] [--seed 0] [--repeat 5]
    .venv/bin/python benchmarks/metrics.py --memory          # + metrics-step peak at 5k / 20k

On one synthetic case (``--images`` images, 7 classes, ~8 boxes and ~16 detections per image,
slice columns with ``--slices`` values in all) it times, in one run:

* Preflight: overall + every image slice + the size bins (box slices), the full long table
  (12 COCO stats, per-class AP and the operating-point metrics for each), matching included,
  no bootstrap;
* pycocotools once per slice (``params.imgIds`` = the slice's images) and once overall;
* faster-coco-eval, hotcoco, ultrafast-pycocotools and vernier once overall each;
* Preflight again on one thread (for comparison: what the helper threads bring);

each run once untimed (warm-up), then ``--repeat`` times, interleaved (the machine may be
shared: every evaluator sees the same conditions). It prints the issue's table (evaluator |
what it computes | seconds: the best run's wall time, with the median and the CPU time of this
process, all threads) and the ratio of Preflight's time to the fastest reference's overall
pass, best-of-N wall (PASS below 1), median and CPU alongside. It checks that Preflight's twelve stats equal
pycocotools' overall and for every slice (1e-9). Loading the COCO objects (``COCO()`` +
``loadRes``) is excluded from the evaluation times, as is Preflight's one-off kernel compilation
(cached on disk). ``--memory`` runs the metrics step alone in a fresh process on 5,000 and
20,000 images with ~100 detections per image (as at conf 0.001) and reports its peak resident
memory (target: under 2 GB at 20k). Exit status 1 when the numbers disagree.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from preflight.metrics.coco import STAT_NAMES  # noqa: E402
from preflight.metrics.detection import evaluate_detections  # noqa: E402
from preflight.metrics.slices import OVERALL  # noqa: E402
from preflight.metrics.synthetic import (  # noqa: E402
    coco_objects,
    cocoeval_stats,
    large_case,
    to_coco,
)

TOL = 1e-9
REFERENCES = ("faster-coco-eval", "hotcoco", "ultrafast-pycocotools", "vernier")


def slice_levels(n_slices: int) -> dict[str, int]:
    """Split ``n_slices`` slice values over five columns (8/5/3/2/2 for 20)."""
    base = {"camera": 8, "week": 5, "lighting": 3, "shift": 2, "lens": 2}
    total = sum(base.values())
    levels = {k: max(1, round(v * n_slices / total)) for k, v in base.items()}
    levels["camera"] += n_slices - sum(levels.values())
    return {k: v for k, v in levels.items() if v > 0}


def _load(lib: str, dataset: dict, results: list):
    """The library's own COCO objects (or inputs) for ``dataset`` / ``results``."""
    if lib == "hotcoco":
        import hotcoco

        gt = hotcoco.COCO(copy.deepcopy(dataset))
        return gt, gt.loadRes(copy.deepcopy(results))
    if lib == "vernier":   # its native evaluator (faster than its pycocotools shim)
        from vernier.instance import CocoDataset

        return CocoDataset.from_json(json.dumps(dataset).encode()), json.dumps(results).encode()
    if lib == "faster-coco-eval":
        from faster_coco_eval import COCO
    elif lib == "ultrafast-pycocotools":
        from ultrafast_pycocotools.coco import COCO
    else:
        from pycocotools.coco import COCO
    return coco_objects(COCO, dataset, results)


def _evaluate(lib: str, coco_gt, coco_dt, img_ids=None) -> np.ndarray:
    if lib == "vernier":
        from vernier.instance import Bbox, Evaluator

        s = np.asarray(Evaluator(iou=Bbox(), parity_mode="strict").evaluate(coco_gt, coco_dt)
                       .stats[:12], dtype=np.float64)
        return np.where(s == -1, np.nan, s)
    if lib == "faster-coco-eval":
        from faster_coco_eval import COCOeval_faster as COCOeval
    elif lib == "hotcoco":
        from hotcoco import COCOeval
    elif lib == "ultrafast-pycocotools":
        from ultrafast_pycocotools.cocoeval import COCOeval
    else:
        from pycocotools.cocoeval import COCOeval
    return cocoeval_stats(COCOeval, coco_gt, coco_dt, img_ids)


def _installed(lib: str) -> str | None:
    """None when ``lib`` imports, else why not."""
    module = {"faster-coco-eval": "faster_coco_eval", "hotcoco": "hotcoco",
              "ultrafast-pycocotools": "ultrafast_pycocotools", "vernier": "vernier"}[lib]
    try:
        __import__(module)
    except ImportError as exc:
        return f"not installed ({exc}); pip install -e '.[bench]'"
    return None


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


def _best_of(repeat: int, jobs: dict) -> dict[str, tuple[object, float, float, float]]:
    """Run every job once untimed (warm-up: compiled kernels loaded, lazy imports and caches
    filled -- the same for every evaluator), then ``repeat`` times, interleaved; ``{name:
    (result, best wall, median wall, best CPU)}`` (CPU time of this process, all threads:
    less sensitive to a shared machine)."""
    times: dict[str, list[float]] = {k: [] for k in jobs}
    cpu: dict[str, list[float]] = {k: [] for k in jobs}
    out: dict[str, object] = {}
    for fn in jobs.values():
        _quiet(fn)
    for _ in range(repeat):
        for name, fn in jobs.items():
            c0 = time.process_time()
            out[name], t = _timed(fn)
            cpu[name].append(time.process_time() - c0)
            times[name].append(t)
    return {k: (out[k], min(v), float(np.median(v)), min(cpu[k])) for k, v in times.items()}


def memory_peak(n_images: int, dets_per_image: int = 100, seed: int = 0) -> dict:
    """In this process: the metrics step (overall + slices + size bins, no bootstrap) on a
    case of ``n_images`` with ~``dets_per_image`` detections each; resident memory sampled
    every 2 ms (numba's arrays are outside tracemalloc)."""
    import threading

    import psutil

    levels = slice_levels(20)
    gt, dt, images = large_case(np.random.default_rng(seed), n_images, n_classes=7,
                                mean_background=dets_per_image - 8.0, slice_levels=levels)
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            done.wait(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    evaluate_detections(gt, dt, images, slice_columns=list(levels), box_slice_columns=["size_bin"])
    seconds = time.perf_counter() - t0
    done.set()
    thread.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    return {"images": n_images, "detections": len(dt), "boxes": len(gt), "seconds": seconds,
            "rss_before_mb": base / 2**20, "peak_rss_mb": peak[0] / 2**20,
            "step_peak_mb": (peak[0] - base) / 2**20}


def _memory_report() -> bool:
    import subprocess

    ok = True
    print()
    print("metrics step memory (fresh process each; ~100 detections per image)")
    print(f"{'images':>8s}{'detections':>12s}{'seconds':>9s}{'RSS before':>12s}"
          f"{'peak RSS':>10s}{'step peak':>11s}")
    for n in (5000, 20000):
        root = str(Path(__file__).resolve().parents[1])
        code = (f"import json, sys; sys.path.insert(0, {root!r}); from benchmarks.metrics "
                f"import memory_peak, _warm; _warm(); print(json.dumps(memory_peak({n})))")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        m = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"{m['images']:8d}{m['detections']:12d}{m['seconds']:9.2f}"
              f"{m['rss_before_mb']:10.0f}MB{m['peak_rss_mb']:8.0f}MB{m['step_peak_mb']:9.0f}MB")
        if n == 20000:
            ok = m["step_peak_mb"] < 2048
            print(f"target (metrics step peak under 2 GB at 20k images): "
                  f"{'met' if ok else 'NOT met'}")
    return ok


def preflight_phases(gt, dt, images, columns) -> dict[str, float]:
    """CPU seconds of each phase of ``evaluate_detections`` (what the timed runs do)."""
    from preflight.metrics import detection as det
    from preflight.metrics.index import EvaluationIndex, subset_labels
    from preflight.metrics.kernels import slice_npig
    from preflight.metrics.slices import LongTable, box_table, make_slices

    out: dict[str, float] = {}
    t = time.process_time()

    def tick(name: str) -> None:
        nonlocal t
        now = time.process_time()
        out[name] = now - t
        t = now

    index = EvaluationIndex.build(gt, dt, images)
    tick("index: sort, rank, match (every area and IoU threshold)")
    slices = index.image_slices(columns)
    masks = [sl.mask for sl in slices]
    labels = subset_labels(masks, index.n_images)
    tick("image slices")
    npig = slice_npig(labels, len(masks), index.gt_img, index.gt_cat, index.gt_ignore,
                      index.n_classes)
    stats, ap = index.slice_stats(masks, labels, npig)
    tick("COCO accumulation of every slice (12 stats, AP per class)")
    rates = det._rate_intervals(index, labels, len(masks), 0.25)
    points = det._slice_points(index, slices, labels, npig, 0.25, stats, ap, rates)
    tick("operating point: counts, clustered Wilson intervals")
    table = LongTable()
    for i, sl in enumerate(slices):
        det._image_slice_rows(index, sl, table, points[i], None)
    boxes = box_table(index.gt, ["size_bin"], index.images, None)
    det._box_slice_rows(index, make_slices(boxes, ["size_bin"], include_overall=False),
                        table, 0.25)
    table.frame(det.DEFAULT_MIN_IMAGES, det.DEFAULT_MIN_BOXES)
    tick("box slices (size bins) and the long table")
    return out


def _bootstrap_report(gt, dt, images, columns, n_resamples: int) -> None:
    """Wall and CPU time of ``n_resamples`` bootstrap resamples of every slice (the quick stats
    the intervals need), compiled kernel vs NumPy, interleaved, best of 2; max difference."""
    from preflight.metrics.detection import slice_resamples
    from preflight.metrics.index import EvaluationIndex

    index = EvaluationIndex.build(gt, dt, images)
    slices = index.image_slices(columns)
    draws = [(s.mask, slice_resamples(s, n_resamples, 0)) for s in slices]

    def run(compiled: bool):
        return [index.bootstrap_stats(m, W, compiled=compiled) for m, W in draws]

    index.bootstrap_stats(slices[0].mask, draws[0][1][:2])      # warm-up (kernel cache load)
    best = _best_of(2, {"compiled": lambda: run(True), "numpy": lambda: run(False)})
    worst = max(_diff(a, b) for a, b in zip(best["compiled"][0], best["numpy"][0], strict=True))
    print()
    print(f"bootstrap: {n_resamples} resamples of each of {len(slices)} slices "
          f"(AP, AP50, AP75, AR100, AP per class)")
    print(f"{'':30s}{'best s':>8s}{'best CPU s':>11s}")
    for name in ("numpy", "compiled"):
        print(f"  {name:28s}{best[name][1]:8.2f}{best[name][3]:11.2f}")
    print(f"  NumPy / compiled: {best['numpy'][1] / best['compiled'][1]:.1f}x wall, "
          f"{best['numpy'][3] / best['compiled'][3]:.1f}x CPU; max difference {worst:.1e}")


def _warm() -> None:
    """Compile (or load from the disk cache) Preflight's kernels outside the timings."""
    gt, dt, images = large_case(np.random.default_rng(1), 20, n_classes=3,
                                slice_levels={"a": 2})
    evaluate_detections(gt, dt, images, slice_columns=["a"], box_slice_columns=["size_bin"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--slices", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5,
                    help="runs per evaluator (interleaved); the best is reported")
    ap.add_argument("--skip-per-slice", action="store_true",
                    help="do not run pycocotools once per slice (the slow part)")
    ap.add_argument("--bootstrap", type=int, default=0, metavar="B",
                    help="also time B bootstrap resamples of every slice: the compiled kernel "
                         "against the NumPy implementation")
    ap.add_argument("--memory", action="store_true",
                    help="also report the metrics step's peak memory at 5k and 20k images")
    args = ap.parse_args(argv)

    levels = slice_levels(args.slices)
    gt, dt, images = large_case(np.random.default_rng(args.seed), args.images, n_classes=7,
                                slice_levels=levels)
    columns = list(levels)
    slices = [(c, v, images.loc[images[c] == v, "image_id"].to_numpy())
              for c in columns for v in sorted(images[c].unique())]
    print(f"case: {len(images)} images, {len(gt)} boxes, {len(dt)} detections, 7 classes, "
          f"{len(slices)} slices over {columns} + size bins; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    _, t_warm = _timed(_warm)

    dataset, results = to_coco(gt, dt, images, 7)
    loaded, t_load, missing = {}, {}, {}
    for lib in ("pycocotools",) + REFERENCES:
        why = None if lib == "pycocotools" else _installed(lib)
        if why:
            missing[lib] = why
            continue
        loaded[lib], t_load[lib] = _timed(_load, lib, dataset, results)

    def preflight():
        return evaluate_detections(gt, dt, images, slice_columns=columns,
                                   box_slice_columns=["size_bin"])

    def preflight_one_thread():
        from preflight.metrics import kernels

        threads = kernels.n_threads
        kernels.n_threads = lambda: 1
        try:
            return preflight()
        finally:
            kernels.n_threads = threads

    jobs = {"Preflight": preflight, "Preflight, one thread": preflight_one_thread}
    for lib in REFERENCES:
        if lib in loaded:
            jobs[lib] = (lambda lib=lib: _evaluate(lib, *loaded[lib]))
    load = os.getloadavg()
    best = _best_of(args.repeat, jobs)
    ref_all, t_pc_all = _timed(_evaluate, "pycocotools", *loaded["pycocotools"])
    table = best["Preflight"][0]
    stats = table[table["metric"].isin(STAT_NAMES)].pivot_table(
        index=["slice_column", "slice_value"], columns="metric", values="value",
        dropna=False)[list(STAT_NAMES)]

    worst = _diff(stats.loc[(OVERALL, OVERALL)].to_numpy(), ref_all)
    for lib in REFERENCES:
        if lib in best:
            worst_ref = _diff(np.asarray(best[lib][0]), ref_all)
            if worst_ref > 1e-6:
                print(f"note: {lib} differs from pycocotools by {worst_ref:.1e}")
    t_pc_slices = float("nan")
    if not args.skip_per_slice:
        t_pc_slices = 0.0
        for c, v, ids in slices:
            ref, dt_s = _timed(_evaluate, "pycocotools", *loaded["pycocotools"], ids)
            t_pc_slices += dt_s
            worst = max(worst, _diff(stats.loc[(c, v)].to_numpy(), ref))

    n = len(slices)
    n_bins = int((table["slice_column"] == "size_bin").groupby(table["slice_value"]).any().sum())
    load_after = os.getloadavg()
    t_pf = best["Preflight"][1]
    refs = {lib: best[lib][1] for lib in REFERENCES if lib in best}
    fastest = min(refs, key=refs.get) if refs else None
    print()
    print(f"each evaluator ran once untimed (warm-up), then {args.repeat} timed runs, "
          f"interleaved (every evaluator sees the same machine); seconds: the best run's wall "
          f"time; CPU: this process's CPU time, all threads (least over the runs); load average "
          f"{load[0]:.1f} before, {load_after[0]:.1f} after (1 min)")
    print()
    what_pf = (f"overall + {n} image slices + {n_bins} size bins (12 stats, AP per class, "
               f"operating point; no bootstrap)")
    print("| evaluator | what it computes | seconds | median s | CPU s |")
    print("|---|---|---|---|---|")
    for name, what in (("Preflight", what_pf),
                       ("Preflight, one thread", "the same on one thread (for comparison)")):
        b_ = best[name]
        print(f"| {name} | {what} | {b_[1]:.3f} | {b_[2]:.3f} | {b_[3]:.3f} |")
    for lib in sorted(REFERENCES, key=lambda x: refs.get(x, float("inf"))):
        if lib in best:
            print(f"| {lib} | overall once | {best[lib][1]:.3f} | {best[lib][2]:.3f} | "
                  f"{best[lib][3]:.3f} |")
        else:
            print(f"| {lib} | overall once | {missing[lib]} | | |")
    print(f"| pycocotools | overall once (one run) | {t_pc_all:.2f} | | |")
    if not args.skip_per_slice:
        print(f"| pycocotools | once per image slice ({n} runs) | {t_pc_slices:.2f} | | |")
    print()
    print(f"not counted: COCO loading (pycocotools {t_load['pycocotools']:.2f} s), Preflight's "
          f"kernel compile / cache load, once ({t_warm:.2f} s)")
    print()
    print("Preflight's time by phase (one more run, CPU s of this process):")
    for name, sec in preflight_phases(gt, dt, images, columns).items():
        print(f"  {name:60s}{sec:8.3f}")
    print()
    print(f"pycocotools overall / Preflight overall+slices          = {t_pc_all / t_pf:8.1f}x")
    if not args.skip_per_slice:
        print(f"pycocotools (overall + per slice) / Preflight           = "
              f"{(t_pc_all + t_pc_slices) / t_pf:8.1f}x")
    print()
    print("overall stats   " + " ".join(f"{n:>9s}" for n in STAT_NAMES))
    print("  Preflight     " + " ".join(f"{v:9.4f}" for v in stats.loc[(OVERALL, OVERALL)]))
    print("  pycocotools   " + " ".join(f"{v:9.4f}" for v in ref_all))
    scope = "overall" if args.skip_per_slice else f"overall and {n} slices"
    ok = worst <= TOL
    print(f"max |Preflight - pycocotools| over {scope}: {worst:.2e} "
          f"({'OK' if ok else 'MISMATCH'}, tolerance {TOL:g})")
    if fastest:
        ref = best[fastest]
        ratio = t_pf / ref[1]
        print(f"ratio Preflight / fastest evaluator's overall pass ({fastest}): {ratio:.2f} "
              f"best-of-{args.repeat} wall, {best['Preflight'][2] / ref[2]:.2f} median wall, "
              f"{best['Preflight'][3] / ref[3]:.2f} CPU -> {'PASS' if ratio < 1 else 'FAIL'} "
              f"(target: below 1, best-of-{args.repeat} wall)")
    if args.bootstrap:
        _bootstrap_report(gt, dt, images, columns, args.bootstrap)
    if args.memory:
        _memory_report()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
