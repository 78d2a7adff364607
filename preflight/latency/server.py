"""Server scenario: Poisson arrivals into a single-worker FIFO server, simulated in real time.

In the manner of MLPerf Inference LoadGen's Server scenario: queries arrive with exponential
inter-arrival times at a target rate (seeded, so every rate replays the same uniform draws); each
query is a batch-1 ``predict_fn([frame])`` call. With one worker and FIFO order the server starts
query *i* at ``max(arrival_i, completion_{i-1})``, so the loop sleeps until the next arrival when
idle and runs back-to-back when a queue has built up. Latency = completion - arrival (queueing +
service), measured on the wall clock.

:func:`find_max_rate` searches for the highest rate whose p99 latency meets a bound: between a
low rate and the saturation rate ``1 / mean service time`` (no higher rate is stable with one
worker), by bisection with a fixed number of steps. Every run is bounded by a query count and a
wall-clock budget, and stops early once enough queries have missed the bound that the p99 must
exceed it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from preflight.latency.timing import PredictFn, SyncFn, default_sync, percentiles


@dataclass(frozen=True)
class ServerRun:
    """One server-scenario run at ``rate_qps``."""

    rate_qps: float
    latencies_ms: np.ndarray = field(repr=False)  # completion - arrival (+ censored backlog)
    service_ms: np.ndarray = field(repr=False)  # predict_fn call alone, per completed query
    p50_ms: float
    p99_ms: float
    n_planned: int
    n_completed: int
    duration_s: float
    truncated: bool  # stopped by the wall-clock budget
    early_stopped: bool  # stopped because the p99 bound could no longer be met

    def meets(self, bound_ms: float) -> bool:
        return (not self.early_stopped) and self.n_completed > 0 and self.p99_ms <= bound_ms


def poisson_arrivals(rate_qps: float, n: int, seed: int) -> np.ndarray:
    """Arrival times (s, from 0) of ``n`` queries of a Poisson process at ``rate_qps``.

    Uses the same uniform draws for every rate (common random numbers), so runs at different
    rates differ only in the rate.
    """
    if rate_qps <= 0:
        raise ValueError("rate must be > 0")
    u = np.random.default_rng(seed).random(n)
    return np.cumsum(-np.log1p(-u) / rate_qps)


def _sleep_until(deadline: float) -> None:
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return
        if remaining > 0.002:
            time.sleep(remaining - 0.001)


def max_misses_before_failing(n: int, q: float = 99.0) -> int:
    """Smallest number of queries over the bound (out of ``n``) that forces the linear-method
    ``q``-th percentile over the bound."""
    return n - math.floor(q / 100.0 * (n - 1))


def simulate_server(predict_fn: PredictFn, frame: np.ndarray, rate_qps: float, *,
                    n_queries: int = 200, max_seconds: float = 20.0, seed: int = 0,
                    sync: SyncFn | None = None, stop_bound_ms: float | None = None) -> ServerRun:
    """Issue ``n_queries`` Poisson arrivals at ``rate_qps`` to a single FIFO worker.

    Stops issuing queries once ``max_seconds`` of wall time have passed (``truncated``), and, if
    ``stop_bound_ms`` is given, as soon as the p99 over all ``n_queries`` can no longer be at or
    under it (``early_stopped``). p50/p99 are over the completed queries plus, when truncated,
    the queries already waiting at the stop (counted with their wait so far).
    """
    if n_queries < 1:
        raise ValueError("n_queries must be >= 1")
    sync = sync or default_sync()
    arrivals = poisson_arrivals(rate_qps, n_queries, seed)
    allowed = max_misses_before_failing(n_queries)
    lat = np.empty(n_queries, dtype=np.float64)
    service = np.empty(n_queries, dtype=np.float64)
    done = misses = 0
    truncated = early = False
    start = time.perf_counter()
    for i, arrival in enumerate(arrivals):
        now = time.perf_counter() - start
        if now > max_seconds or arrival > max_seconds:
            truncated = True
            break
        if now < arrival:
            _sleep_until(start + arrival)
        t_begin = time.perf_counter()
        predict_fn([frame])
        sync()
        t_end = time.perf_counter()
        service[i] = (t_end - t_begin) * 1e3
        lat[i] = (t_end - start - arrival) * 1e3
        done += 1
        if stop_bound_ms is not None and lat[i] > stop_bound_ms:
            misses += 1
            if misses >= allowed:
                early = True
                break
    lat = lat[:done]
    if truncated:
        # queries that had arrived but were never served count with their wait so far (a lower
        # bound of their latency), so a backlog at the stop cannot flatter the tail
        stop = time.perf_counter() - start
        waiting = arrivals[done:][arrivals[done:] <= stop]
        lat = np.concatenate([lat, (stop - waiting) * 1e3])
    p50, p99 = percentiles(lat, (50, 99))
    return ServerRun(rate_qps=float(rate_qps), latencies_ms=lat, service_ms=service[:done],
                     p50_ms=p50, p99_ms=p99,
                     n_planned=n_queries, n_completed=done,
                     duration_s=time.perf_counter() - start, truncated=truncated,
                     early_stopped=early)


@dataclass(frozen=True)
class RateSearch:
    """Result of :func:`find_max_rate`; ``max_rate_qps`` is 0 when no tried rate met the bound."""

    max_rate_qps: float
    bound_ms: float
    saturation_rate_qps: float
    runs: tuple[ServerRun, ...]


def find_max_rate(predict_fn: PredictFn, frame: np.ndarray, bound_ms: float, *,
                  service_ms: float, steps: int = 6, n_queries: int = 200,
                  max_seconds: float = 20.0, seed: int = 0, sync: SyncFn | None = None,
                  low_fraction: float = 0.05) -> RateSearch:
    """Highest Poisson rate whose p99 latency is at or under ``bound_ms``.

    ``service_ms`` is the mean single-stream latency; the search interval is
    ``[low_fraction, 1] * 1000 / service_ms`` (utilisation 5 % .. 100 %). The low end is tried
    first (if it fails the bound cannot be met: 0 is returned), then the high end (returned if it
    passes), then ``steps`` bisection steps. The returned rate is one that was run and met the
    bound.
    """
    if bound_ms <= 0 or service_ms <= 0:
        raise ValueError("bound_ms and service_ms must be > 0")
    saturation = 1000.0 / service_ms
    runs: list[ServerRun] = []

    def passes(rate: float) -> bool:
        run = simulate_server(predict_fn, frame, rate, n_queries=n_queries,
                              max_seconds=max_seconds, seed=seed, sync=sync,
                              stop_bound_ms=bound_ms)
        runs.append(run)
        return run.meets(bound_ms)

    lo, hi = low_fraction * saturation, saturation
    if service_ms > bound_ms or not passes(lo):
        return RateSearch(0.0, bound_ms, saturation, tuple(runs))
    if passes(hi):
        return RateSearch(hi, bound_ms, saturation, tuple(runs))
    for _ in range(max(0, steps)):
        mid = 0.5 * (lo + hi)
        if passes(mid):
            lo = mid
        else:
            hi = mid
    return RateSearch(lo, bound_ms, saturation, tuple(runs))
