"""Timing primitives: percentiles, device sync, single-stream and batched timing.

Percentiles are ``numpy.percentile(values, q, method="linear")`` (the default "type 7"
estimator: linear interpolation between the two nearest order statistics), in milliseconds.
Every timed call is bracketed by ``sync()`` so asynchronous devices (CUDA) are measured to
completion; on CPU the default sync is a no-op.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

PredictFn = Callable[[list[np.ndarray]], Any]
SyncFn = Callable[[], None]


class LatencyError(RuntimeError):
    """A latency measurement could not be made (bad model spec, subprocess failure, ...)."""


def percentiles(values_ms: Sequence[float] | np.ndarray, qs: Sequence[float] = (50, 95, 99)
                ) -> tuple[float, ...]:
    """``numpy.percentile(values, q, method="linear")`` for each ``q``; NaN for no values."""
    arr = np.asarray(values_ms, dtype=np.float64)
    if arr.size == 0:
        return tuple(float("nan") for _ in qs)
    return tuple(float(v) for v in np.percentile(arr, list(qs), method="linear"))


@contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` for the block and restored after it
    (``None`` / 0: left as it is, and torch is not imported). A measurement's own setting, so
    timing one model never changes the thread count of the process that asked for it."""
    if not threads:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _noop() -> None:
    return None


def default_sync() -> SyncFn:
    """``torch.cuda.synchronize`` when torch is already imported and CUDA is available, else a
    no-op. Never imports torch itself, so numpy-only models are not charged for it."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                return torch.cuda.synchronize
        except Exception:  # pragma: no cover - broken CUDA install: time on the host
            return _noop
    return _noop


def describe_device() -> str:
    """The CPU model and core count, plus the CUDA device when torch is loaded and sees one."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    text = f"cpu: {cpu} ({os.cpu_count()} logical cores)"
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                text += f"; cuda: {torch.cuda.get_device_name(0)}"
        except Exception:  # pragma: no cover
            pass
    return text


def time_single_stream(predict_fn: PredictFn, frame: np.ndarray, *, iterations: int,
                       warmup: int, sync: SyncFn | None = None) -> np.ndarray:
    """Latency in ms of ``iterations`` batch-1 calls ``predict_fn([frame])`` after ``warmup``
    untimed calls. Each call is timed on its own (single stream: the next query is issued when
    the previous one completes)."""
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    sync = sync or default_sync()
    for _ in range(max(0, warmup)):
        predict_fn([frame])
    sync()
    out = np.empty(iterations, dtype=np.float64)
    for i in range(iterations):
        sync()
        t0 = time.perf_counter_ns()
        predict_fn([frame])
        sync()
        out[i] = (time.perf_counter_ns() - t0) / 1e6
    return out


def time_batched(predict_fn: PredictFn, frame: np.ndarray, *, batch_size: int, repeats: int,
                 warmup: int = 2, sync: SyncFn | None = None) -> float:
    """Benchmark-style ms per image: total time of ``repeats`` calls on a batch of ``batch_size``
    copies of ``frame``, divided by ``repeats * batch_size`` (warm, batched)."""
    if batch_size < 1 or repeats < 1:
        raise ValueError("batch_size and repeats must be >= 1")
    sync = sync or default_sync()
    batch = [frame.copy() for _ in range(batch_size)]
    for _ in range(max(0, warmup)):
        predict_fn(batch)
    sync()
    t0 = time.perf_counter_ns()
    for _ in range(repeats):
        predict_fn(batch)
    sync()
    return (time.perf_counter_ns() - t0) / 1e6 / (repeats * batch_size)
