"""The prediction loop with the host work overlapped with the model's forward passes.

A detector's ``predict`` is three stages: host pre-processing (read, decode, letterbox, to a
tensor), the forward, and host post-processing (NMS, boxes back to original pixels, tables).
Run one after the other, the host stages add their whole time to the forward's. Here the
forward runs on the calling thread while one worker thread prepares the next batches and another
finishes the previous one -- what a data loader with workers does in training. ``torch`` and
OpenCV release the GIL in their kernels, so on a machine with a spare core (ultralytics runs
CPU inference on ``cores - 1`` threads) or with the forward on a GPU the host stages mostly
disappear from the wall time. Results and their order are the same as the sequential loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

#: batches prepared ahead of the forward / waiting to be finished
DEPTH = 2


class PredictStages(Protocol):
    def prepare(self, frames: list[np.ndarray]) -> Any: ...

    def infer(self, prepared: Any) -> Any: ...

    def finish(self, raw: Any, prepared: Any) -> list: ...


def stages_of(predict_fn: Callable) -> PredictStages | None:
    """The stages of ``predict_fn`` when it is a model's ``predict`` (or the model itself) and
    the model offers ``predict_stages()``; else None (``predict_fn`` is called as it is)."""
    owner = getattr(predict_fn, "__self__", predict_fn)
    name = getattr(predict_fn, "__name__", "__call__")
    make = getattr(owner, "predict_stages", None)
    if make is None or name not in ("predict", "__call__"):
        return None
    return make()


def run_overlapped(stages: PredictStages | None, predict_fn: Callable,
                   chunks: Sequence[tuple[list, list]], read: Callable[[str], np.ndarray],
                   collect: Callable[[list, list], None],
                   advance: Callable[[int], Any] = lambda n: None) -> None:
    """For each ``(ids, paths)`` chunk, in order: ``collect(ids, predictions)``.

    With ``stages``: read + ``prepare`` on one worker, ``infer`` here, ``finish`` + ``collect`` on
    another worker. Without: reading on a worker, ``predict_fn`` + ``collect`` here. An error in
    any stage (e.g. an unreadable frame) is raised here, after the workers stop.
    """
    todo = iter(chunks)
    with ThreadPoolExecutor(1, thread_name_prefix="preflight-prepare") as prep, \
            ThreadPoolExecutor(1, thread_name_prefix="preflight-finish") as post:
        if stages is None:
            def load(paths):
                return [read(p) for p in paths]
        else:
            def load(paths):
                return stages.prepare([read(p) for p in paths])

        ahead: deque = deque()
        behind: deque = deque()

        def submit_next() -> None:
            nxt = next(todo, None)
            if nxt is not None:
                ahead.append((nxt[0], prep.submit(load, nxt[1])))

        def finish(ids, raw, prepared) -> None:
            collect(ids, stages.finish(raw, prepared))

        for _ in range(DEPTH):
            submit_next()
        while ahead:
            ids, future = ahead.popleft()
            loaded = future.result()
            submit_next()
            if stages is None:
                collect(ids, predict_fn(loaded))
                advance(1)
                continue
            raw = stages.infer(loaded)
            behind.append(post.submit(finish, ids, raw, loaded))
            while len(behind) > DEPTH or (behind and behind[0].done()):
                behind.popleft().result()
                advance(1)
        while behind:
            behind.popleft().result()
            advance(1)
