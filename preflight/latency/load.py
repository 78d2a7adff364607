"""Co-tenant CPU load: background processes that keep cores busy while latency is measured.

The load runs in separate Python processes (``subprocess``, not ``multiprocessing``, so it also
works inside daemonic workers and needs no ``__main__`` guard). Each spins forever on one core:

* ``"matmul"``: a 192x192 float32 ``numpy.matmul`` into a fixed output buffer, BLAS limited to one
  thread -- competes for the core *and* for cache / memory bandwidth, like a second model;
* ``"python"``: a pure-Python integer loop -- competes for the core only.

:func:`cotenant_load` is a context manager; the processes are stopped (terminate, then kill) when
the block exits, also on exceptions and on KeyboardInterrupt.
"""

from __future__ import annotations

import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from preflight.environment import child_environment

_SPIN = {
    "matmul": (
        "import numpy as np\n"
        "rng = np.random.default_rng(0)\n"
        "a = rng.random((192, 192), dtype=np.float32)\n"
        "b = rng.random((192, 192), dtype=np.float32)\n"
        "c = np.empty_like(a)\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    np.matmul(a, b, out=c)\n"
    ),
    "python": (
        "x = 1\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    x = (x * 1103515245 + 12345) & 0x7FFFFFFF\n"
    ),
}
LOAD_KINDS: tuple[str, ...] = tuple(_SPIN)
_ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


@dataclass
class LoadHandle:
    """The running load processes (``pids`` for checks)."""

    processes: list[subprocess.Popen]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def alive(self) -> bool:
        return bool(self.processes) and all(p.poll() is None for p in self.processes)


def _stop(processes: list[subprocess.Popen], grace_s: float = 2.0) -> None:
    for p in processes:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in processes:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        finally:
            if p.stdout is not None:
                p.stdout.close()


@contextmanager
def cotenant_load(workers: int = 1, kind: str = "matmul", *, start_timeout_s: float = 30.0
                  ) -> Iterator[LoadHandle]:
    """Run ``workers`` busy processes of ``kind`` for the duration of the ``with`` block.

    Waits until every process reports it is spinning before yielding. ``workers=0`` yields an
    empty handle (no load).
    """
    if kind not in _SPIN:
        raise ValueError(f"unknown load kind {kind!r}; expected one of {list(LOAD_KINDS)}")
    if workers < 0:
        raise ValueError("workers must be >= 0")
    env = child_environment()
    env.update({k: "1" for k in _ONE_THREAD})
    processes: list[subprocess.Popen] = []
    try:
        for _ in range(workers):
            processes.append(subprocess.Popen(
                [sys.executable, "-c", _SPIN[kind]], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True))
        deadline = time.monotonic() + start_timeout_s
        for p in processes:
            assert p.stdout is not None
            ready, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = p.stdout.readline() if ready else ""
            if line.strip() != "ready":
                raise RuntimeError(f"co-tenant load process {p.pid} did not start within "
                                   f"{start_timeout_s:.0f} s (exit code {p.poll()})")
        yield LoadHandle(processes)
    finally:
        _stop(processes)
