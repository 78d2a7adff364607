"""Latency as production sees it: single stream, under load, cold start, server, vs benchmark.

Import-light on purpose (numpy only): the cold-start subprocess imports this package, and its
import time is charged to the model's cold start. pandas is imported only by
``LatencyReport.to_frame`` and torch only by the ``reference.tiny_convnet`` factory.
"""

from preflight.latency.coldstart import ColdStart, ModelSpec, cold_start
from preflight.latency.load import LOAD_KINDS, LoadHandle, cotenant_load
from preflight.latency.measure import LatencyConfig, LatencyReport, measure_latency
from preflight.latency.server import (
    RateSearch,
    ServerRun,
    find_max_rate,
    poisson_arrivals,
    simulate_server,
)
from preflight.latency.timing import (
    LatencyError,
    default_sync,
    describe_device,
    intra_op_threads,
    percentiles,
    time_batched,
    time_single_stream,
)

__all__ = [
    "LOAD_KINDS",
    "ColdStart",
    "LatencyConfig",
    "LatencyError",
    "LatencyReport",
    "LoadHandle",
    "ModelSpec",
    "RateSearch",
    "ServerRun",
    "cold_start",
    "cotenant_load",
    "default_sync",
    "describe_device",
    "find_max_rate",
    "intra_op_threads",
    "measure_latency",
    "percentiles",
    "poisson_arrivals",
    "simulate_server",
    "time_batched",
    "time_single_stream",
]
