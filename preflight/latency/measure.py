"""Latency as production sees it, for one candidate, on this machine.

:func:`measure_latency` times the whole ``predict_fn`` (pre-processing, model, NMS) on one raw
frame and returns a :class:`LatencyReport`. In order, on the same machine and in one run:

1. **benchmark**: warm, batched (``batch_size`` copies of the frame), idle machine -- ms per image
   = total time / images (what a model card or leaderboard quotes);
2. **single stream**: batch-1 latency p50/p95/p99 over ``iterations`` calls after ``warmup``;
3. **server**: Poisson arrivals at ``target_rate_qps`` (default: half the saturation rate
   ``1000 / mean single-stream ms``) into one FIFO worker -> p50/p99 of completion - arrival;
   then the highest rate whose p99 meets ``latency_bound_ms`` (bisection, LoadGen-style);
4. **under load**: single stream again while ``load_workers`` co-tenant processes keep cores busy
   (stopped afterwards, always);
5. **cold start**: a fresh Python process imports, loads and predicts one frame (needs a
   :class:`ModelSpec`; NaN when only a callable is given).

``production_p99_ms`` is the under-load p99 (the single-stream p99 when ``load_workers == 0``);
``gap_ratio = production_p99_ms / benchmark_ms_per_image`` -- how much worse production's tail is
than the benchmark number. Percentiles: ``numpy.percentile(..., method="linear")``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from preflight.latency.coldstart import ModelSpec, cold_start
from preflight.latency.load import LOAD_KINDS, cotenant_load
from preflight.latency.server import find_max_rate, simulate_server
from preflight.latency.timing import (
    PredictFn,
    SyncFn,
    default_sync,
    describe_device,
    intra_op_threads,
    percentiles,
    time_batched,
    time_single_stream,
)
from preflight.progress import Progress, Report


@dataclass(frozen=True)
class LatencyConfig:
    """Knobs of :func:`measure_latency` (defaults suit a CPU edge model of ~10-200 ms)."""

    warmup: int = 10
    iterations: int = 100
    load_workers: int = 1
    load_kind: str = "matmul"
    batch_size: int = 8
    benchmark_repeats: int = 5
    target_rate_qps: float | None = None  # None: 50 % of the saturation rate
    latency_bound_ms: float = 250.0
    server_queries: int = 200
    server_max_seconds: float = 20.0
    search_steps: int = 6
    cold_start: bool = True
    cold_start_timeout_s: float = 300.0
    seed: int = 0
    threads: int | None = None  # torch intra-op threads while measuring (None: as they are)

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 0:
            raise ValueError("threads must be >= 0 (0 or None: torch's own setting)")
        if self.iterations < 1 or self.warmup < 0:
            raise ValueError("iterations must be >= 1 and warmup >= 0")
        if self.load_kind not in LOAD_KINDS:
            raise ValueError(f"load_kind must be one of {list(LOAD_KINDS)}")
        if self.latency_bound_ms <= 0:
            raise ValueError("latency_bound_ms must be > 0")
        if self.target_rate_qps is not None and self.target_rate_qps <= 0:
            raise ValueError("target_rate_qps must be > 0")


@dataclass(frozen=True)
class LatencyReport:
    """All latency numbers for one candidate (milliseconds unless the name says ``_s``/``qps``)."""

    device: str
    n_iterations: int
    warmup: int
    # single stream, batch 1, idle machine
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    # single stream under co-tenant CPU load
    load_p50_ms: float
    load_p95_ms: float
    load_p99_ms: float
    load_workers: int
    load_kind: str
    # cold start (fresh process -> first result) and the child's split of it
    cold_start_s: float
    cold_import_s: float
    cold_load_s: float
    cold_first_predict_s: float
    # server scenario (Poisson arrivals, single FIFO worker)
    server_target_rate_qps: float
    server_p50_ms: float
    server_p99_ms: float
    server_n_queries: int
    latency_bound_ms: float
    max_rate_meeting_bound_qps: float
    saturation_rate_qps: float
    # benchmark-style (warm, batched, idle) vs production-style
    benchmark_ms_per_image: float
    batch_size: int
    production_p99_ms: float
    gap_ratio: float

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)

    def to_frame(self):
        """One-row ``pandas.DataFrame`` with a column per field."""
        import pandas as pd

        return pd.DataFrame([self.to_dict()], columns=[f.name for f in fields(self)])


def measure_latency(model: ModelSpec | PredictFn, frame: np.ndarray,
                    config: LatencyConfig | None = None, *, spec: ModelSpec | None = None,
                    sync: SyncFn | None = None, device: str | None = None,
                    report: Report | None = None, desc: str = "latency") -> LatencyReport:
    """Measure one candidate on ``frame`` (a raw RGB ``uint8`` frame as the camera gives it).

    ``model`` is a :class:`ModelSpec` (built in this process for the warm timings and in a fresh
    subprocess for the cold start) or a ready ``predict_fn`` (pass ``spec=`` too to get a cold
    start). ``sync`` is called around every timed call (default: ``torch.cuda.synchronize`` when
    CUDA is present, else nothing); ``device`` overrides the description of the hardware.
    ``report``: a progress line with the time left after each measurement phase (a run log).
    ``config.threads``: torch's intra-op threads for the in-process timings, restored after.
    """
    cfg = config or LatencyConfig()
    with intra_op_threads(cfg.threads):
        return _measure(model, frame, cfg, spec=spec, sync=sync, device=device, report=report,
                        desc=desc)


def _predictor(model: ModelSpec | PredictFn, spec: ModelSpec | None
               ) -> tuple[PredictFn, ModelSpec | None]:
    """The ``predict_fn`` to time (a :class:`ModelSpec` built here) and the spec of the cold
    start (``spec``, else the model's own when it is one)."""
    if isinstance(model, ModelSpec):
        return model.build(), spec or model
    if callable(model):
        return model, spec
    raise TypeError("model must be a ModelSpec or a predict_fn callable")


def _loaded_percentiles(predict_fn: PredictFn, frame: np.ndarray, cfg: LatencyConfig,
                        sync: SyncFn, bar: Progress) -> tuple[float, float, float]:
    """p50 / p95 / p99 of single-stream latency beside ``cfg.load_workers`` co-tenant
    workers; NaN when there are none."""
    if cfg.load_workers <= 0:
        return float("nan"), float("nan"), float("nan")
    with cotenant_load(cfg.load_workers, cfg.load_kind):
        loaded = time_single_stream(predict_fn, frame, iterations=cfg.iterations,
                                    warmup=min(cfg.warmup, 3), sync=sync)
    lp50, lp95, lp99 = percentiles(loaded)
    bar.update(1)
    return lp50, lp95, lp99


def _measure(model: ModelSpec | PredictFn, frame: np.ndarray, cfg: LatencyConfig, *,
             spec: ModelSpec | None, sync: SyncFn | None, device: str | None,
             report: Report | None, desc: str) -> LatencyReport:
    """:func:`measure_latency`'s phases in order: batched throughput, single stream, the
    simulated server and its highest rate within the bound, co-tenant load, cold start."""
    predict_fn, spec = _predictor(model, spec)
    sync = sync or default_sync()
    frame = np.ascontiguousarray(frame)
    phases = 4 + (cfg.load_workers > 0) + bool(cfg.cold_start and spec is not None)
    bar = Progress(phases, desc, unit="phases", report=report, every_s=0.0)

    bench = time_batched(predict_fn, frame, batch_size=cfg.batch_size,
                         repeats=cfg.benchmark_repeats, warmup=max(1, min(cfg.warmup, 3)),
                         sync=sync)
    bar.update(1)
    single = time_single_stream(predict_fn, frame, iterations=cfg.iterations, warmup=cfg.warmup,
                                sync=sync)
    bar.update(1)
    p50, p95, p99 = percentiles(single)
    mean_ms = float(single.mean())

    saturation = 1000.0 / mean_ms
    target = cfg.target_rate_qps or 0.5 * saturation
    server = simulate_server(predict_fn, frame, target, n_queries=cfg.server_queries,
                             max_seconds=cfg.server_max_seconds, seed=cfg.seed, sync=sync)
    bar.update(1)
    search = find_max_rate(predict_fn, frame, cfg.latency_bound_ms, service_ms=mean_ms,
                           steps=cfg.search_steps, n_queries=cfg.server_queries,
                           max_seconds=cfg.server_max_seconds, seed=cfg.seed, sync=sync)
    bar.update(1)

    lp50, lp95, lp99 = _loaded_percentiles(predict_fn, frame, cfg, sync, bar)
    production = lp99 if cfg.load_workers > 0 else p99

    nan = float("nan")
    cold = (cold_start(spec, frame, timeout_s=cfg.cold_start_timeout_s)
            if cfg.cold_start and spec is not None else None)
    if cold is not None:
        bar.update(1)
    bar.close()
    return LatencyReport(
        device=device or describe_device(),
        n_iterations=cfg.iterations, warmup=cfg.warmup,
        p50_ms=p50, p95_ms=p95, p99_ms=p99, mean_ms=mean_ms,
        load_p50_ms=lp50, load_p95_ms=lp95, load_p99_ms=lp99,
        load_workers=cfg.load_workers, load_kind=cfg.load_kind,
        cold_start_s=cold.total_s if cold else nan,
        cold_import_s=cold.import_s if cold else nan,
        cold_load_s=cold.load_s if cold else nan,
        cold_first_predict_s=cold.first_predict_s if cold else nan,
        server_target_rate_qps=float(target), server_p50_ms=server.p50_ms,
        server_p99_ms=server.p99_ms, server_n_queries=server.n_completed,
        latency_bound_ms=cfg.latency_bound_ms, max_rate_meeting_bound_qps=search.max_rate_qps,
        saturation_rate_qps=saturation,
        benchmark_ms_per_image=bench, batch_size=cfg.batch_size,
        production_p99_ms=production,
        gap_ratio=production / bench if bench > 0 and math.isfinite(production) else nan,
    )
