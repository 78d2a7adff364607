"""Model specs and cold start: process start to first result, in a fresh Python process.

A :class:`ModelSpec` names a *factory* importable as ``"package.module:function"`` plus keyword
arguments; calling it returns a ``predict_fn(list[np.ndarray]) -> list[predictions]``. The spec
is small and picklable, so the same model can be built in this process (for warm timings) and in
a fresh subprocess (for the cold start).

:func:`cold_start` spawns ``python -m preflight.latency._coldstart_child``, sends it the spec and one
frame (pickled on stdin), and measures wall time from just before the spawn until its result line
is read: interpreter start + imports + model load + the first ``predict_fn([frame])`` (synced).
The child also reports its own split (import / load / first predict, from its own start).
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from preflight.environment import child_environment
from preflight.latency.timing import LatencyError, PredictFn

MARKER = "PREFLIGHT_COLDSTART "


@dataclass(frozen=True)
class ModelSpec:
    """``factory`` is ``"module:function"``; ``function(**kwargs)`` returns a ``predict_fn``."""

    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        module, sep, func = self.factory.partition(":")
        if not sep or not module or not func:
            raise ValueError(f"factory must look like 'package.module:function', got {self.factory!r}")

    def load_factory(self):
        module, _, func = self.factory.partition(":")
        try:
            obj = importlib.import_module(module)
        except ImportError as exc:
            raise LatencyError(f"cannot import model factory module {module!r}: {exc}") from exc
        for part in func.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise LatencyError(f"{module!r} has no attribute {func!r}") from None
        return obj

    def build(self) -> PredictFn:
        predict_fn = self.load_factory()(**self.kwargs)
        if not callable(predict_fn):
            raise LatencyError(f"factory {self.factory} returned {type(predict_fn).__name__}, "
                               "not a callable predict_fn")
        return predict_fn


@dataclass(frozen=True)
class ColdStart:
    """Wall seconds from spawn to first result, and the child's own split of that time."""

    total_s: float
    import_s: float  # child start -> factory imported (includes the model's library imports)
    load_s: float  # factory call (weights, graph build)
    first_predict_s: float  # first predict_fn([frame]) incl. sync


def _repo_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def cold_start(spec: ModelSpec, frame: np.ndarray, *, timeout_s: float = 300.0,
               env: dict[str, str] | None = None) -> ColdStart:
    """Spawn a fresh interpreter that imports, builds and runs ``spec`` once on ``frame``."""
    payload = pickle.dumps({"spec": spec, "frame": np.ascontiguousarray(frame)})
    child_env = child_environment(env)
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (_repo_root(), child_env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryFile() as stdin_file, tempfile.TemporaryFile() as err_file:
        stdin_file.write(payload)
        stdin_file.seek(0)
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "preflight.latency._coldstart_child"],
                                stdin=stdin_file, stdout=subprocess.PIPE, stderr=err_file,
                                env=child_env, text=True)
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        result: dict[str, Any] | None = None
        total = float("nan")
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith(MARKER):
                    total = time.perf_counter() - t0
                    result = json.loads(line[len(MARKER):])
                    break
            proc.stdout.close()
            proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if result is None or "error" in result:
            err_file.seek(0)
            tail = err_file.read().decode("utf-8", "replace")[-2000:]
            why = result["error"] if result else (
                f"timed out after {timeout_s:.0f} s" if proc.returncode == -9
                else f"exit code {proc.returncode}")
            raise LatencyError(f"cold start of {spec.factory} failed: {why}\n{tail}".rstrip())
    return ColdStart(total_s=total, import_s=result["import_s"], load_s=result["load_s"],
                     first_predict_s=result["first_predict_s"])
