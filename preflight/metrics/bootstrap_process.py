"""The bootstrap intervals in a helper process beside the evaluation, on the spare core.

The image-level bootstrap (every slice x ``bootstrap`` resamples, each re-accumulated) is the
largest part of the failure distribution, and pure array work. NumPy releases the GIL inside
each operation, but its operations on cache-sized chunks are short, so two threads of one process
mostly hand the GIL to each other: measured 1.2x on the 2-core CI machine, where two processes
run side by side at 1.9x. So the bootstraps go to a helper process, which its caller owns:

* a :class:`BootstrapPool` (a context manager) holds at most one :class:`BootstrapProcess` and
  stops it when its ``with`` block ends; nothing here starts a process on its own, and nothing
  lives at module level. :func:`preflight.evaluation.evaluate_candidate` acquires the pool's
  process (given in its options) when its prediction loop starts, so the process's start (it
  imports NumPy, pandas and the metrics, and runs one small bootstrap so that its first real one
  is not slowed by first-call costs) runs while the forward keeps the model's core busy; later
  evaluations with the same pool find it ready (as a thread pool is started once).
* Once the predictions are in, the calling process sends the three tables; the helper rebuilds
  the same :class:`EvaluationIndex` (same code, same inputs) and bootstraps the slices first to
  last, sending each slice's stats as it finishes, while the calling process computes the point
  estimates, error types, confusion and cost. The resample weights are not sent: both sides draw
  them from the seed and the slice's name.
* Then the calling process takes the helper's slices as they arrive and computes the ones it
  still misses itself, last to first, until it has them all, and tells the helper to drop the
  rest of the job. Neither side waits while work is left, so a slow or busy helper costs nothing
  but the work it did not do. The metrics table is the same as in-process, value for value.

Nothing is lost when the helper cannot do its part: if it cannot start, is not ready when the
metrics start, is in use by another evaluation, dies or raises, the bootstraps run in the calling
process and a warning says why (a dead helper is started again on the pool's next
:meth:`~BootstrapPool.acquire`). A pool its caller forgot to close still ends with its caller:
the helper exits when its input closes.

Protocol: length-prefixed pickles on the helper's stdin and on a private duplicate of its stdout
(its own ``sys.stdout`` points at stderr, so a stray print cannot corrupt a message). The helper
sends one ready byte after its start; then per job ``("slice", job, i, stats)`` per slice and
``("done", job)``, or ``("error", job, traceback)``; a ``("cancel", job)`` from the caller ends
the job after the slice in progress.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import traceback
from collections import deque
from pathlib import Path
from typing import Any

from preflight.environment import child_environment

log = logging.getLogger(__name__)

READY = b"R"
_ROOT = str(Path(__file__).resolve().parents[2])
_LEN = struct.Struct("<Q")


class BootstrapProcessError(RuntimeError):
    """The helper process could not deliver a result."""


def _frame(obj) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(data)) + data


def _send(fd: int, data: bytes) -> None:
    """Write all of ``data`` (a pipe write may take part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _widen_pipe(fd: int, size: int = 1 << 20) -> None:
    """Let a side write all its messages without waiting for the other to read them (a pipe
    holds 64 KiB by default; Linux allows up to ``/proc/sys/fs/pipe-max-size``)."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except (ImportError, AttributeError, OSError):
        pass


class _Frames:
    """Length-prefixed pickles read from a file descriptor, without blocking when asked not to
    (``select`` on the descriptor and an own buffer: a buffered reader would hide bytes it has
    already read from ``select``)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = bytearray()
        self._start = 0
        self.ready_byte = False
        self.eof = False

    def fill(self, timeout: float | None) -> None:
        """Read what is there (waiting up to ``timeout``; None: until something comes)."""
        if self.eof:
            return
        readable, _, _ = select.select([self.fd], [], [], timeout)
        if readable:
            try:
                chunk = os.read(self.fd, 1 << 20)
            except OSError:
                chunk = b""
            if chunk:
                self._buf += chunk
            else:
                self.eof = True

    def take_ready(self) -> bool:
        if self._buf[:1] == READY:
            del self._buf[:1]
            self.ready_byte = True
        return self.ready_byte

    def frames(self) -> list:
        out = []
        while len(self._buf) - self._start >= _LEN.size:
            (n,) = _LEN.unpack_from(self._buf, self._start)
            end = self._start + _LEN.size + n
            if len(self._buf) < end:
                break
            out.append(pickle.loads(memoryview(self._buf)[self._start + _LEN.size:end]))
            self._start = end
        if self._start and self._start == len(self._buf):
            self._buf.clear()
            self._start = 0
        return out


class BootstrapProcess:
    """A started helper process (see the module docstring); one job at a time."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self._proc = proc
        self._in = _Frames(proc.stdout.fileno())
        self.owner_pid = os.getpid()
        self.in_use = False
        self._job = 0
        self._job_open = False
        self._closed = False

    @classmethod
    def start(cls) -> BootstrapProcess | None:
        """Start a helper (returns at once; it starts in the background), or None: on a
        non-POSIX system, or with a warning when no process can be started here."""
        if os.name != "posix":   # select() on pipes and F_SETPIPE_SZ are POSIX / Linux
            return None
        env = child_environment()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")     # the helper is one core's worth of work
        try:
            proc = subprocess.Popen([sys.executable, "-m", "preflight.metrics.bootstrap_process"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                    close_fds=True, bufsize=0)
        except OSError as exc:
            log.warning("cannot start the bootstrap helper process (%s); the intervals are "
                        "computed in this process", exc)
            return None
        _widen_pipe(proc.stdout.fileno())
        _widen_pipe(proc.stdin.fileno())
        return cls(proc)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return not self._closed and self._proc.poll() is None and not self._in.eof

    def ready(self, timeout: float = 0.0) -> bool:
        """Whether the helper has started (waits up to ``timeout`` seconds)."""
        if not self._in.ready_byte and self.alive:
            self._in.fill(timeout)
            self._in.take_ready()
        return self._in.ready_byte and self.alive

    def submit(self, request: dict[str, Any]) -> bool:
        """Send a job; False when the helper cannot take it (not ready, busy or gone)."""
        if self._job_open or not self.ready():
            return False
        self._job += 1
        try:
            _send(self._proc.stdin.fileno(), _frame(("job", self._job, request)))
        except (OSError, ValueError, pickle.PicklingError) as exc:
            log.warning("the bootstrap helper did not take the job (%s)", exc)
            self.close()
            return False
        self._job_open = True
        return True

    def poll(self, timeout: float = 0.0) -> list[tuple[int, Any]]:
        """``(slice index, stats)`` of the current job that arrived (waits up to ``timeout`` for
        the first bytes); :class:`BootstrapProcessError` when the helper failed or ended."""
        if not self._job_open:
            return []
        self._in.fill(timeout)
        out = []
        for message in self._in.frames():
            kind, job = message[0], message[1]
            if job != self._job:
                continue                      # the tail of a cancelled job
            if kind == "slice":
                out.append((message[2], message[3]))
            elif kind == "done":
                self._job_open = False
            elif kind == "error":
                self._job_open = False
                raise BootstrapProcessError(f"the helper process raised:\n{message[2]}")
        if not out and self._in.eof:
            code = self._proc.poll()
            self.close()
            raise BootstrapProcessError(f"the helper process ended (exit code {code})")
        return out

    def end_job(self) -> None:
        """The caller has what it needs: the helper drops the rest of the current job."""
        if self._job_open and self.alive:
            try:
                _send(self._proc.stdin.fileno(), _frame(("cancel", self._job)))
            except (OSError, ValueError):
                self.close()
        self._job_open = False

    def close(self) -> None:
        """Stop the helper now (only from the process that started it)."""
        if self._closed or self.owner_pid != os.getpid():
            return
        self._closed = True
        proc = self._proc
        if proc.poll() is None:
            proc.kill()
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        proc.wait()


# ----------------------------------------------------------------------------- the pool

#: the smallest evaluation set for which a pool's process is used by default (below it the
#: bootstraps take a few tens of milliseconds; the process's start costs about half a second of
#: CPU)
MIN_IMAGES = 100
#: how long :meth:`BootstrapPool.always` waits for the process's start
WAIT_S = 60.0


class BootstrapPool:
    """The caller's bootstrap process, one evaluation at a time; a context manager.

    ``with BootstrapPool() as pool: evaluate_candidate(..., EvaluationOptions(bootstraps=pool))``.
    The process starts on the first :meth:`acquire` (an evaluation acquires it as its
    prediction loop starts, so the start runs beside the forward), later evaluations in the
    ``with`` block reuse it, and it stops when the block ends. A pool that no evaluation found
    worth it never starts a process.

    When an evaluation uses it (:meth:`worth_it`): ``min_images``, the smallest set (a process
    costs more than the bootstraps of a small one), ``spare_core``, only on a machine with more
    than one core, and ``wait_s``, how long the metrics wait for a process that has not finished
    starting (0: compute in-process instead). :meth:`always` uses it for every evaluation with a
    bootstrap and waits for its start (tests, benchmarks).
    """

    def __init__(self, *, min_images: int = MIN_IMAGES, spare_core: bool = True,
                 wait_s: float = 0.0) -> None:
        self.min_images, self.spare_core, self.wait_s = int(min_images), spare_core, wait_s
        self._process: BootstrapProcess | None = None
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def always(cls) -> BootstrapPool:
        return cls(min_images=0, spare_core=False, wait_s=WAIT_S)

    def __enter__(self) -> BootstrapPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def worth_it(self, n_images: int, bootstrap: int) -> bool:
        """Whether an evaluation of ``n_images`` with ``bootstrap`` resamples uses the process."""
        return (bootstrap > 0 and n_images >= self.min_images
                and (not self.spare_core or (os.cpu_count() or 1) > 1))

    @property
    def process(self) -> BootstrapProcess | None:
        """The started process (None before the first :meth:`acquire`, or after :meth:`close`)."""
        return self._process

    def acquire(self) -> BootstrapProcess | None:
        """The process for one evaluation, started if there is none (or it died); None when
        another evaluation holds it or no process can be started. Give it back with
        :meth:`release`."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this BootstrapPool is closed (use it inside its with block)")
            process = self._process
            if process is not None and (process.owner_pid != os.getpid() or not process.alive):
                process = self._process = None      # a forked copy's, or gone
            if process is None:
                process = self._process = BootstrapProcess.start()
                if process is None:
                    return None
            if process.in_use:
                return None
            process.in_use = True
            return process

    def release(self, process: BootstrapProcess) -> None:
        """Give the process back (its job, if one is still open, is dropped)."""
        with self._lock:
            process.end_job()
            process.in_use = False

    def close(self) -> None:
        """Stop the process (a pool is not used after this)."""
        with self._lock:
            self._closed = True
            if self._process is not None:
                self._process.close()
            self._process = None


# ----------------------------------------------------------------------------- the caller's side


class RemoteBootstraps:
    """The per-slice bootstrap tasks of :func:`preflight.metrics.detection.start_bootstraps`,
    shared with a helper that was sent the same tables: ``tasks()`` gives one object with
    ``result()`` per slice (None where no bootstrap runs, as in-process). A ``result()`` that
    is not in yet takes the helper's slices that arrived, else computes the last slice still
    missing here, until its own is in (see the module docstring)."""

    def __init__(self, helper: BootstrapProcess, index, slices: list, bootstrap: int,
                 seed: int) -> None:
        self._helper, self._index, self._slices = helper, index, slices
        self._bootstrap, self._seed = bootstrap, seed
        self._lock = threading.Lock()
        from preflight.metrics.detection import has_bootstrap

        self._todo = [i for i, s in enumerate(slices) if has_bootstrap(s, bootstrap)]
        self._have: dict[int, Any] = {}
        self._failed = False
        self.computed_here = 0

    def tasks(self) -> list:
        todo = set(self._todo)
        return [_RemoteTask(self, i) if i in todo else None for i in range(len(self._slices))]

    def get(self, i: int):
        while not self.step(i):
            pass
        return self._have[i]

    def done(self, i: int) -> bool:
        """Whether slice ``i`` is in (after taking what arrived; never blocks)."""
        with self._lock:
            if i not in self._have:
                self._take()
            return i in self._have

    def step(self, i: int) -> bool:
        """One unit of work toward slice ``i``: take what arrived, else compute the last slice
        still missing here. True when ``i`` is in."""
        with self._lock:
            if i not in self._have:
                self._take()
                if i not in self._have:
                    self._compute([j for j in self._todo if j not in self._have][-1])
            if len(self._have) == len(self._todo):
                self._helper.end_job()
            return i in self._have

    def _take(self) -> None:
        from preflight.metrics.detection import slice_resamples

        if self._failed:
            return
        try:
            arrived = self._helper.poll(0.0)
        except BootstrapProcessError as exc:
            self._failed = True
            log.warning("bootstrap helper: %s; the rest of the intervals are computed in this "
                        "process", exc)
            return
        for i, stats in arrived:
            if i not in self._have:
                self._have[i] = (slice_resamples(self._slices[i], self._bootstrap, self._seed),
                                 stats)

    def _compute(self, i: int) -> None:
        from preflight.metrics.detection import _bootstrap_slice

        self._have[i] = _bootstrap_slice(self._index, self._slices[i], self._bootstrap,
                                         self._seed)
        self.computed_here += 1


class _RemoteTask:
    def __init__(self, owner: RemoteBootstraps, i: int) -> None:
        self._owner, self._i = owner, i

    def result(self):
        return self._owner.get(self._i)

    def done(self) -> bool:
        return self._owner.done(self._i)

    def step(self) -> None:
        self._owner.step(self._i)


def bootstrap_request(gt, dt, images, class_names, slice_columns, bootstrap: int,
                      seed: int) -> dict[str, Any]:
    """What the helper needs to rebuild the index and bootstrap its slices."""
    return {"gt": gt, "dt": dt, "images": images, "class_names": dict(class_names or {}),
            "slice_columns": list(slice_columns), "bootstrap": int(bootstrap), "seed": int(seed)}


# ----------------------------------------------------------------------------- the helper's side


def answer(request: dict[str, Any]):
    """``(i, stats)`` for every slice with a bootstrap, in slice order (the slices and tasks of
    :func:`preflight.metrics.detection.start_bootstraps`; ``stats`` without the weights)."""
    from preflight.metrics.detection import _bootstrap_slice, has_bootstrap
    from preflight.metrics.index import EvaluationIndex

    index = EvaluationIndex.build(request["gt"], request["dt"], request["images"],
                                  class_names=request["class_names"] or None)
    bootstrap, seed = request["bootstrap"], request["seed"]
    for i, s in enumerate(index.image_slices(request["slice_columns"])):
        if has_bootstrap(s, bootstrap):
            yield i, _bootstrap_slice(index, s, bootstrap, seed)[1]


def _warm_up() -> None:
    """The imports and one small bootstrap: a fresh process runs its first index build and
    bootstrap several times slower than later ones (lazy imports, first-call set-up, memory not
    yet mapped)."""
    import numpy as np

    from preflight.metrics.synthetic import random_case

    gt, dt, images = random_case(np.random.default_rng(0), n_images=120, n_classes=6)
    for _ in answer(bootstrap_request(gt, dt, images, {}, ["camera", "shift", "lighting"], 200,
                                      0)):
        pass


def _serve(inbox: _Frames, out: int) -> None:
    """Answer jobs until the input closes."""
    queue: deque = deque()

    def cancelled(job: int) -> bool:
        inbox.fill(0.0)
        queue.extend(inbox.frames())
        hit = any(m[0] == "cancel" and m[1] == job for m in queue)
        kept = [m for m in queue if m[0] != "cancel"]
        queue.clear()
        queue.extend(kept)
        return hit

    while True:
        while not queue:
            if inbox.eof:
                return
            inbox.fill(None)
            queue.extend(inbox.frames())
        message = queue.popleft()
        if message[0] != "job":
            continue                                   # a cancel for a job already done
        job, request = message[1], message[2]
        try:
            for i, stats in answer(request):
                _send(out, _frame(("slice", job, i, stats)))
                if cancelled(job):
                    break
            else:
                _send(out, _frame(("done", job)))
        except Exception:  # noqa: BLE001 - every failure goes back to the caller
            _send(out, _frame(("error", job, traceback.format_exc())))


def main() -> int:
    out = os.dup(1)
    os.dup2(2, 1)                     # stray prints go to stderr, never into a message
    sys.stdout = sys.stderr
    try:
        _warm_up()
        _send(out, READY)
        _serve(_Frames(sys.stdin.fileno()), out)
    except (BrokenPipeError, ConnectionError):
        pass                          # the caller is gone: so is the need for an answer
    os._exit(0)  # the input closed: nothing left to do, skip the interpreter's teardown


if __name__ == "__main__":
    sys.exit(main())
