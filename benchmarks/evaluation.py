"""Benchmark: Preflight's evaluation of a candidate against the bare model forward passes.

    .venv/bin/python benchmarks/evaluation.py [--images 200] [--model yolov8n] [--imgsz 320]
                                              [--repeats 10] [--ref-repeats 3] [--profile]

On ``--images`` synthetic production frames (generated into a temp folder and ingested with
:func:`preflight.data.ingest.ingest`) it times, interleaved (A, B, B', A', A'', A, B, ...; the references only in the first repeats) in one run:

* (A) ``evaluate_candidate(detector.predict, ...)``, the full pipeline step: frames read from
  disk in batches of 16 and letterboxed on one worker thread, the forward on the calling thread,
  NMS and the prediction table on another worker (:mod:`preflight.prediction`), then the whole
  failure distribution (bootstrap intervals over every slice, error types, confusion, cost), the
  bootstraps shared with the helper process of a :class:`BootstrapPool` the benchmark holds
  open (:mod:`preflight.metrics.bootstrap_process`; the warm-up run starts it, as it sets up the
  predictor, and every timed run reuses it, as the evaluations in one ``with`` block do); no
  plots;
* (B) the bare forward of the module ultralytics' predictor runs (its own copy of the network:
  Conv+BN fused, channels_last on x86 CPUs) on letterboxed tensors stacked in memory beforehand,
  in batches of 16 under ``torch.inference_mode()``: no I/O, pre-processing, NMS or metrics;
* (B') the same on the unfused ``YOLO.model`` as loaded (reference only);
* (A') (A) with the sequential prediction loop (``overlap=False``: read, predict, next), to
  show what overlapping the host stages with the forward saves;
* (A'') (A) with every bootstrap in this process (no pool), to show what the helper process
  saves.

It prints the ratio A/B and the overhead (A-B)/B against the 15% target (PASS/FAIL) on the best
of ``--repeats`` runs of each (timeit's convention for a shared machine; medians and the
run-by-run ratios are printed too; the references run ``--ref-repeats`` times), a breakdown
of A (busy time of each host stage on its worker thread, the forward, the part of the loop not
hidden behind the forward, the metrics) and the memory of one evaluation on N and 2N images,
each in a fresh process: peak RSS growth and tracemalloc's peak, both also up to the start of
the metrics (frames are streamed in batches).

The model is the demo zoo's checkpoint when ``<PREFLIGHT_HOME or ./.preflight>/zoo/manifest.json``
lists it, else an untrained ``yolov8n.yaml`` with a 6-class head (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import preflight.evaluation as pe  # noqa: E402
from preflight.config import load_settings  # noqa: E402
from preflight.data.ingest import ingest  # noqa: E402
from preflight.metrics.bootstrap_process import BootstrapPool  # noqa: E402
from preflight.metrics.cost import CostModel  # noqa: E402
from preflight.models.ultralytics_adapter import UltralyticsDetector  # noqa: E402
from preflight.synth.generate import generate  # noqa: E402
from preflight.synth.scene import SYNTH_TAXONOMY  # noqa: E402

TARGET_OVERHEAD = 0.15
BATCH = 16
BENCHMARK_CLASSES = SYNTH_TAXONOMY.names[:-1]  # the benchmark profile has no drift class


# ----------------------------------------------------------------------------- model


@dataclass
class LoadedModel:
    detector: UltralyticsDetector
    description: str
    weights_file: str | None  # a checkpoint file a child process can load (None: untrained)


def load_model(name: str, imgsz: int, workdir: Path) -> LoadedModel:
    """The zoo checkpoint of candidate ``name`` if the manifest lists it, else an untrained one."""
    from preflight.models.candidates import get_candidate, load_candidates
    from preflight.models.zoo import Manifest, default_zoo_dir

    zoo_dir = default_zoo_dir()
    reason = f"{zoo_dir / 'manifest.json'} does not list {name!r}"
    if name in Manifest.load(zoo_dir).models:
        candidate = get_candidate(load_candidates(), name)
        try:
            det = UltralyticsDetector.from_candidate(candidate, zoo_dir,
                                                     taxonomy=SYNTH_TAXONOMY)
        except Exception as exc:  # noqa: BLE001 - e.g. a zoo build rewriting the checkpoint now
            reason = f"zoo checkpoint unusable ({type(exc).__name__}: {exc})"
        else:
            # A private copy for the memory probes (a running zoo build may rewrite the original).
            copy_path = workdir / f"{name}.pt"
            shutil.copyfile(det.weights, copy_path)
            det.input_size = imgsz
            return LoadedModel(det, f"zoo checkpoint {det.weights} (sha256 {det.sha256[:12]}..., "
                                    f"{det.weights_source})", str(copy_path))
    return LoadedModel(untrained_detector(imgsz), f"UNTRAINED yolov8n.yaml, 6-class head, "
                                                  f"torch seed 0 ({reason})", None)


def untrained_detector(imgsz: int) -> UltralyticsDetector:
    """``YOLO("yolov8n.yaml")`` with its head rebuilt for the 6 benchmark classes (the zoo
    stand-in's shape); random weights, so it emits many low-confidence boxes."""
    import torch

    from preflight.models.ultralytics_env import load_ultralytics_model, ultralytics_logging

    torch.manual_seed(0)
    yolo = load_ultralytics_model("yolov8n.yaml")
    from ultralytics.nn.tasks import DetectionModel

    with ultralytics_logging(progress=False):  # quiet "Overriding model.yaml nc=80 with nc=6"
        yolo.model = DetectionModel(copy.deepcopy(yolo.model.yaml), nc=len(BENCHMARK_CLASSES),
                                    verbose=False)
    yolo.model.names = dict(enumerate(BENCHMARK_CLASSES))
    return UltralyticsDetector(yolo, name="yolov8n-untrained", input_size=imgsz,
                               class_map={n: n for n in BENCHMARK_CLASSES}, weights="yolov8n.yaml",
                               taxonomy=SYNTH_TAXONOMY)


def child_detector(weights_file: str | None, imgsz: int) -> UltralyticsDetector:
    if weights_file is None:
        return untrained_detector(imgsz)
    return UltralyticsDetector.from_weights(weights_file, input_size=imgsz,
                                            class_map={n: n for n in BENCHMARK_CLASSES},
                                            taxonomy=SYNTH_TAXONOMY)


# ----------------------------------------------------------------------------- data


def make_sample(root: Path, n: int, imgsz: int, seed: int):
    """Generate ``n`` production frames under ``root`` and ingest them: (images, gt)."""
    with contextlib.redirect_stderr(io.StringIO()):
        generate(root, profile="production", n=n, seed=seed, image_size=imgsz)
    result = ingest(root, taxonomy=SYNTH_TAXONOMY)
    return result.images.reset_index(drop=True), pe.ground_truth(result.boxes)


def evaluation_setup(imgsz: int):
    cfg = load_settings()
    spec = replace(pe.EvaluationSpec.from_settings(cfg.evaluation, model_input_size=imgsz),
                   bootstrap=200)
    return spec, CostModel(**vars(cfg.cost)), cfg.taxonomy_obj.as_dict()


# ----------------------------------------------------------------------------- (A), instrumented


@dataclass
class Breakdown:
    """Where the seconds of one (A) run go (busy time of each stage, whichever thread ran it)."""

    read: float = 0.0           # cv2.imread + BGR->RGB (preflight.evaluation.read_rgb)
    prepare: float = 0.0        # letterbox, stack, to float tensor
    inference: float = 0.0      # the forward (ultralytics' predictor.inference)
    finish: float = 0.0         # NMS, boxes to original pixels, Results -> tables
    extra: dict = field(default_factory=dict)


class _TimedStages:
    def __init__(self, stages, b: Breakdown) -> None:
        self._s, self._b = stages, b

    def _timed(self, key, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        setattr(self._b, key, getattr(self._b, key) + time.perf_counter() - t0)
        return out

    def prepare(self, frames):
        return self._timed("prepare", self._s.prepare, frames)

    def infer(self, prepared):
        return self._timed("inference", self._s.infer, prepared)

    def finish(self, raw, prepared):
        return self._timed("finish", self._s.finish, raw, prepared)


class Instrumented:
    """Times the stages of (A) by wrapping ``read_rgb`` and the detector's ``predict_stages``
    (two perf_counter calls per frame / batch). In the sequential loop (``overlap=False``) the
    detector's ``predict`` runs as one call, timed as a whole."""

    def __init__(self, detector: UltralyticsDetector) -> None:
        self.detector = detector
        self.b = Breakdown()
        self._read_rgb = pe.read_rgb

    def __enter__(self) -> Instrumented:
        def read_rgb(path):
            t0 = time.perf_counter()
            out = self._read_rgb(path)
            self.b.read += time.perf_counter() - t0
            return out

        make = type(self.detector).predict_stages
        pe.read_rgb = read_rgb
        self.detector.predict_stages = lambda: _TimedStages(make(self.detector), self.b)
        return self

    def __exit__(self, *exc) -> None:
        pe.read_rgb = self._read_rgb
        del self.detector.predict_stages


def run_a(detector, images, gt, spec, cost, class_names, *, overlap: bool = True,
          bootstraps: BootstrapPool | None = None):
    with Instrumented(detector) as ins:
        t0 = time.perf_counter()
        f0 = minor_faults()
        ev = pe.evaluate_candidate(detector.predict, images, gt, spec, cost, class_names,
                                   pe.EvaluationOptions(batch_size=BATCH, overlap=overlap,
                                                        bootstraps=bootstraps))
        total = time.perf_counter() - t0
    b = ins.b
    b.extra = {"total": total, "predict_seconds": ev.predict_seconds,
               "faults": minor_faults() - f0,
               "metrics": ev.result.seconds, "n_predictions": len(ev.predictions),
               "bootstrap_slices": ev.result.bootstrap_slices,
               "n_at_threshold": int((ev.predictions["score"] >= spec.operating_threshold).sum())}
    return b


# ----------------------------------------------------------------------------- (B)


def stacked_batches(images, imgsz: int, stride: int) -> list:
    """Every frame decoded, letterboxed the way ultralytics' predictor does (``rect=False``:
    square ``imgsz``) and stacked into float tensors of ``BATCH`` frames, before any timing."""
    import torch
    from ultralytics.data.augment import LetterBox

    letterbox = LetterBox((imgsz, imgsz), auto=False, stride=stride)
    batches = []
    paths = images["path"].tolist()
    for start in range(0, len(paths), BATCH):
        bgr = [letterbox(image=np.ascontiguousarray(pe.read_rgb(p)[..., ::-1]))
               for p in paths[start:start + BATCH]]
        x = torch.from_numpy(np.stack(bgr)).permute(0, 3, 1, 2).contiguous().flip(1)
        batches.append(x.float().div_(255).contiguous())
    return batches


#: minor page faults of each timed (B) run (fresh pages the allocator asked the OS for)
B_FAULTS: list[int] = []


def run_b(module, batches) -> float:
    import torch

    with torch.inference_mode():
        f0 = minor_faults()
        t0 = time.perf_counter()
        for x in batches:
            module(x)
        seconds = time.perf_counter() - t0
    B_FAULTS.append(minor_faults() - f0)
    return seconds


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def steady_allocator() -> str | None:
    """Tell glibc's malloc to keep the memory it frees (``mallopt``: a fixed 32 MiB mmap
    threshold, a 1 GiB trim threshold), for this process: A and B alike.

    With glibc's defaults, whether a forward's activations (up to ~26 MB each at batch 16)
    come from memory the process already holds or from fresh pages depends on what else was
    allocated and freed before, so the same forward runs with 0 to 300,000 minor page faults
    and 0-25% slower from one timed run to the next (measured here): that, not the work, would
    decide the comparison. Returns a description, or None where it does not apply (not glibc)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    m_trim_threshold, m_mmap_threshold = -1, -3
    if mallopt(m_mmap_threshold, 32 << 20) != 1 or mallopt(m_trim_threshold, 1 << 30) != 1:
        return None
    return "glibc mallopt M_MMAP_THRESHOLD=32 MiB, M_TRIM_THRESHOLD=1 GiB (A and B alike)"


# ----------------------------------------------------------------------------- memory


class PeakRss:
    """Peak resident memory over a block: a 1 ms sampler, or ``ru_maxrss`` when the block set a
    new process maximum (exact)."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self._stop = threading.Event()
        self.before = self.peak = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.001)

    def __enter__(self) -> PeakRss:
        self._maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.before = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if maxrss > self._maxrss0:
            self.peak = max(self.peak, maxrss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.before) / 2**20


def memory_probe(data_dir: str, weights_file: str | None, imgsz: int) -> dict:
    """(child process) Memory of one evaluate_candidate on the sample in ``data_dir``, after a
    warm-up evaluation on 32 of its frames (imports, predictor setup): the peak RSS growth (what
    the OS sees, allocator caches included) and, on a second run, tracemalloc's peak of Python +
    NumPy allocations (decoded frames, tables and metric arrays; torch's own buffers excluded),
    each split at the start of the metrics."""
    import tracemalloc

    spec, cost, class_names = evaluation_setup(imgsz)
    detector = child_detector(weights_file, imgsz)
    result = ingest(data_dir, taxonomy=SYNTH_TAXONOMY)
    images, gt = result.images.reset_index(drop=True), pe.ground_truth(result.boxes)
    warm = images.head(32)
    pool = BootstrapPool()             # closed below, once its process's peak is read
    options = pe.EvaluationOptions(batch_size=BATCH, bootstraps=pool)
    pe.evaluate_candidate(detector.predict, warm, gt[gt["image_id"].isin(warm["image_id"])],
                          spec, cost, class_names, options)
    metrics_fn = pe.failure_distribution
    mark: dict[str, float] = {}

    def failure_distribution(*a, **kw):  # note the peak of the reading + prediction phase
        if tracemalloc.is_tracing():
            mark["traced_predict"] = tracemalloc.get_traced_memory()[1]
        else:
            mark["rss_predict"] = mem.peak
        return metrics_fn(*a, **kw)

    def evaluate():
        return pe.evaluate_candidate(detector.predict, images, gt, spec, cost, class_names,
                                     options)

    pe.failure_distribution = failure_distribution
    try:
        with PeakRss() as mem:
            ev = evaluate()
        tracemalloc.start()
        evaluate()
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        helper_peak_mb = _helper_peak_mb(pool)
    finally:
        pe.failure_distribution = metrics_fn
        pool.close()
    return {"n_images": len(images), "rss_before_mb": mem.before / 2**20,
            "helper_peak_mb": helper_peak_mb,
            "growth_mb": mem.growth_mb, "n_predictions": len(ev.predictions),
            "predict_growth_mb": (mark["rss_predict"] - mem.before) / 2**20,
            "traced_peak_mb": traced_peak / 2**20,
            "traced_predict_mb": mark["traced_predict"] / 2**20}


def _helper_peak_mb(pool: BootstrapPool) -> float:
    """Peak resident memory of the pool's bootstrap helper process (0: none ran)."""
    h = pool.process
    try:
        with open(f"/proc/{h.pid}/status") as f:
            line = next(x for x in f if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (AttributeError, OSError, StopIteration):
        return 0.0


def probe_in_child(data_dir: Path, weights_file: str | None, imgsz: int) -> dict:
    cmd = [sys.executable, __file__, "--memory-probe", str(data_dir), "--imgsz", str(imgsz)]
    if weights_file:
        cmd += ["--weights-file", weights_file]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory probe failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report


def _med(values) -> float:
    return float(np.median(np.asarray(values, dtype=float)))


def _profile(detector, images, gt, spec, cost, class_names, pool: BootstrapPool,
             top: int = 25) -> None:
    prof = cProfile.Profile()
    prof.enable()
    pe.evaluate_candidate(detector.predict, images, gt, spec, cost, class_names,
                          pe.EvaluationOptions(batch_size=BATCH, bootstraps=pool))
    prof.disable()
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(top)
        text = buf.getvalue()
        print(f"\ncProfile of one (A) run, top {top} by {key}:")
        print(text[text.find("   ncalls"):].rstrip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--model", default="yolov8n", help="zoo candidate name (else untrained)")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--repeats", type=int, default=10, help="runs of (A) and (B)")
    ap.add_argument("--ref-repeats", type=int, default=3,
                    help="runs of the references (B'), (A'), (A''), in the first repeats")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="also cProfile one (A) run")
    ap.add_argument("--skip-memory", action="store_true", help="skip the N / 2N memory probes")
    ap.add_argument("--default-malloc", action="store_true",
                    help="keep glibc's default malloc settings (see steady_allocator)")
    ap.add_argument("--memory-probe", help=argparse.SUPPRESS)
    ap.add_argument("--weights-file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.memory_probe:
        with contextlib.redirect_stdout(io.StringIO()):
            out = memory_probe(args.memory_probe, args.weights_file, args.imgsz)
        print(json.dumps(out))
        return 0

    import torch

    allocator = None if args.default_malloc else steady_allocator()
    n = args.images
    with (tempfile.TemporaryDirectory(prefix="preflight-bench-eval-") as tmp,
          BootstrapPool() as pool):       # the helper process of every (A) and (A') run
        tmp = Path(tmp)
        t0 = time.perf_counter()
        images, gt = make_sample(tmp / "n", n, args.imgsz, args.seed)
        t_data = time.perf_counter() - t0
        model = load_model(args.model, args.imgsz, tmp)
        det = model.detector
        spec, cost, class_names = evaluation_setup(args.imgsz)
        print(f"sample: {len(images)} production frames at {args.imgsz} px, {len(gt)} boxes "
              f"(generated + ingested in {t_data:.1f} s)")
        print(f"model: {model.description}")
        threads_before = torch.get_num_threads()

        # Warm-up (predictor setup, fusing, first-call costs), then the module it runs.
        warm = run_a(det, images, gt, spec, cost, class_names, bootstraps=pool)
        # ultralytics' select_device() calls torch.set_num_threads(cpu_count - 1) on CPU
        print(f"device: {det.device}, torch threads: {torch.get_num_threads()} for A and B "
              f"({threads_before} before ultralytics' first predict), cores: {os.cpu_count()}, "
              f"batch {BATCH}, bootstrap {spec.bootstrap}, slices {list(spec.slice_columns)}")
        print(f"allocator: {allocator or 'defaults'}")
        fused = det.model.predictor.model.model
        raw = copy.deepcopy(det.model.model).eval()
        batches = stacked_batches(images, args.imgsz, int(max(fused.stride.max(), 32)))
        run_b(fused, batches[:2])
        run_b(raw, batches[:2])

        a_runs, b_runs, b_raw_runs, seq_runs, local_runs, b_faults = [], [], [], [], [], []
        for rep in range(args.repeats):
            a_runs.append(run_a(det, images, gt, spec, cost, class_names, bootstraps=pool))
            b_runs.append(run_b(fused, batches))
            b_faults.append(B_FAULTS[-1])
            if rep < args.ref_repeats:
                b_raw_runs.append(run_b(raw, batches))
                seq_runs.append(run_a(det, images, gt, spec, cost, class_names, overlap=False,
                                      bootstraps=pool))
                local_runs.append(run_a(det, images, gt, spec, cost, class_names))

        a = _med([r.extra["total"] for r in a_runs])
        b = _med(b_runs)
        parts = {k: _med([getattr(r, k) for r in a_runs])
                 for k in ("read", "prepare", "inference", "finish")}
        predict_s = _med([r.extra["predict_seconds"] for r in a_runs])
        metrics_s = _med([r.extra["metrics"] for r in a_runs])
        local_metrics_s = _med([r.extra["metrics"] for r in local_runs])
        shares = [r.extra["bootstrap_slices"] for r in a_runs]
        host = parts["read"] + parts["prepare"] + parts["finish"]
        rows = [
            ("forward (this thread; the predictor's inference())", parts["inference"]),
            ("  worker: disk read + JPEG decode + BGR->RGB (read_rgb)", parts["read"]),
            ("  worker: pre-processing (checks, letterbox, stack, float)", parts["prepare"]),
            ("  worker: post-processing (NMS, original pixels, tables)", parts["finish"]),
            ("  host stages, sum of the three (overlapped with the forward)", host),
            ("prediction loop, wall time", predict_s),
            ("  of which not hidden behind the forward (loop - forward)",
             predict_s - parts["inference"]),
            ("metrics: failure_distribution (bootstrap, errors, confusion, cost)", metrics_s),
            (f"  slices bootstrapped by the helper process: "
             f"{', '.join(f'{h}/{n}' for h, n in shares)}", None),
            ("  the same in this process only (A'')", local_metrics_s),
            ("rest of evaluate_candidate", a - predict_s - metrics_s),
        ]
        n_pred = warm.extra["n_predictions"]
        n_thr = warm.extra["n_at_threshold"]

        totals = {"A": [r.extra["total"] for r in a_runs], "B": b_runs, "B'": b_raw_runs,
                  "A'": [r.extra["total"] for r in seq_runs],
                  "A''": [r.extra["total"] for r in local_runs]}
        best = {k: min(v) for k, v in totals.items()}
        print()
        print(f"{'interleaved runs':54s}{'runs':>5s}{'best s':>9s}{'median s':>10s}"
              f"{'ms/img':>9s}")
        for key, label in (("A", "(A) evaluate_candidate, full step"),
                           ("B", "(B) bare forward, fused module the predictor runs"),
                           ("B'", "(B') bare forward, unfused YOLO.model (reference)"),
                           ("A'", "(A') the same step, sequential loop (overlap=False)"),
                           ("A''", "(A'') the same step, no helper (no bootstrap pool)")):
            med = _med(totals[key])
            print(f"{label:54s}{len(totals[key]):5d}{best[key]:9.2f}{med:10.2f}"
                  f"{1e3 * med / n:9.2f}")
        print()
        print(f"breakdown of (A), medians{'':41s}{'seconds':>9s}{'% of B':>9s}")
        for label, v in rows:
            print(f"  {label:64s}" + ("" if v is None else f"{v:9.2f}{100 * v / b:8.1f}%"))
        print(f"  {'(forward inside A - B)':64s}"
              f"{parts['inference'] - b:9.2f}{100 * (parts['inference'] - b) / b:8.1f}%")
        print("  (each part is its median over the runs, so the parts need not sum to A)")
        print(f"predictions: {n_pred} ({n_pred / n:.1f} per image; {n_thr} at score >= "
              f"{spec.operating_threshold}), ground-truth boxes: {len(gt)}")
        print()
        overhead = (best["A"] - best["B"]) / best["B"]
        overhead_med = (a - b) / b
        pairs = [100 * (x - y) / y for x, y in zip(totals["A"], b_runs, strict=True)]
        print(f"(A)/(B), best of {args.repeats}             = {best['A'] / best['B']:8.2f}x")
        seq_overhead = (best["A'"] - best["B"]) / best["B"]
        local_overhead = (best["A''"] - best["B"]) / best["B"]
        print(f"pipeline overhead (A-B)/B, best = {100 * overhead:8.1f}%   (sequential loop A': "
              f"{100 * seq_overhead:.1f}%, no helper A'': {100 * local_overhead:.1f}%)")
        print(f"pipeline overhead, medians      = {100 * overhead_med:8.1f}%   (run by run: "
              f"{', '.join(f'{v:.1f}%' for v in pairs)})")
        print(f"target: overhead under {100 * TARGET_OVERHEAD:.0f}%, judged on the best runs: "
              f"{'PASS' if overhead < TARGET_OVERHEAD else 'FAIL'}")
        print("  (best-of-N is timeit's convention: on a shared machine the least disturbed run of "
              "each side is the\n   best estimate of its cost; the medians and run-by-run ratios "
              "show how much the machine moved)")
        per_run = {"A": [r.extra["total"] for r in a_runs],
                   "forward inside A": [r.inference for r in a_runs],
                   "metrics inside A": [r.extra["metrics"] for r in a_runs], "B": b_runs,
                   "A'": [r.extra["total"] for r in seq_runs],
                   "A''": [r.extra["total"] for r in local_runs]}
        print("  (per run, seconds -- " + "; ".join(
            f"{k}: {', '.join(f'{v:.2f}' for v in vs)}" for k, vs in per_run.items()) + ")")
        print("  (per run, minor page faults -- A: "
              + ", ".join(str(r.extra["faults"]) for r in a_runs)
              + "; B: " + ", ".join(str(f) for f in b_faults) + ")")

        if not args.skip_memory:
            make_sample(tmp / "2n", 2 * n, args.imgsz, args.seed)
            print()
            print("memory of one evaluate_candidate, fresh process each (after a 32-frame "
                  "warm-up):")
            print(f"  {'images':>8s}{'peak RSS growth':>18s}{'(to metrics start)':>20s}"
                  f"{'traced peak':>14s}{'(to metrics start)':>20s}{'predictions':>13s}")
            probes = [probe_in_child(tmp / "n", model.weights_file, args.imgsz),
                      probe_in_child(tmp / "2n", model.weights_file, args.imgsz)]
            for p in probes:
                print(f"  {p['n_images']:8d}{p['growth_mb']:15.1f} MB{p['predict_growth_mb']:17.1f}"
                      f" MB{p['traced_peak_mb']:11.1f} MB{p['traced_predict_mb']:17.1f} MB"
                      f"{p['n_predictions']:13d}")
            frame_mb = args.imgsz * args.imgsz * 3 / 2**20
            n0, n1 = probes
            per_pred = ((n1["traced_peak_mb"] - n0["traced_peak_mb"]) * 2**10
                        / max(n1["n_predictions"] - n0["n_predictions"], 1))
            print(f"  reading + predicting, traced peak 2N/N: "
                  f"{n1['traced_predict_mb'] / max(n0['traced_predict_mb'], 1e-9):.2f}x: frames are "
                  f"streamed (the whole set decoded would be {n * frame_mb:.0f} MB for N, "
                  f"{2 * n * frame_mb:.0f} MB for 2N)")
            print(f"  whole evaluation, traced peak 2N/N: "
                  f"{n1['traced_peak_mb'] / max(n0['traced_peak_mb'], 1e-9):.2f}x "
                  f"({per_pred:+.1f} KB per extra prediction; the metrics step holds arrays "
                  "sized by the predictions)")
            print("  traced = Python + NumPy allocations (tracemalloc), deterministic; RSS also "
                  "counts torch's buffers and allocator caches")
            print(f"  and moves by tens of MB run to run (RSS before: {n0['rss_before_mb']:.0f} / "
                  f"{n1['rss_before_mb']:.0f} MB).")
            print(f"  the bootstrap helper process (its own interpreter, NumPy, pandas and a copy of "
                  f"the tables): peak RSS {n0['helper_peak_mb']:.0f} MB for N, "
                  f"{n1['helper_peak_mb']:.0f} MB for 2N")

        if args.profile:
            _profile(det, images, gt, spec, cost, class_names, pool)
    return 0


if __name__ == "__main__":
    sys.exit(main())
