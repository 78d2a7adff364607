"""Progress of a long step (training, evaluation, stress, latency) with the time left.

:class:`Progress` counts ``done / total`` and estimates the time left from the rate so far. It
draws a tqdm bar in the terminal (``bar=True``) and gives a line such as
``evaluate yolov8n: 40/120 batches (33%), 1m05s elapsed, about 2m10s left`` to ``report`` (a
Dagster ``context.log.info``, a logger) at most every ``every_s`` seconds and at the end, so a
run log shows the same progress as the terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tqdm import tqdm

Report = Callable[[str], None]


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Progress:
    """``done / total`` with the estimated time left, for a terminal bar and a run log."""

    def __init__(self, total: int, desc: str, *, unit: str = "it", report: Report | None = None,
                 every_s: float = 30.0, bar: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit = max(0, int(total)), desc, unit
        self.report, self.every_s, self.clock = report, float(every_s), clock
        self.done = 0
        self.start = clock()
        self._last_report = self.start
        self._bar = tqdm(total=self.total, desc=desc, unit=unit, disable=not bar)

    def eta(self) -> float | None:
        """Seconds left at the rate so far (None before the first unit is done, or when the
        total is not known: 0)."""
        if self.done <= 0 or not self.total:
            return None
        elapsed = self.clock() - self.start
        return elapsed / self.done * max(0, self.total - self.done)

    def line(self) -> str:
        elapsed = self.clock() - self.start
        if not self.total:
            return f"{self.desc}: {self.done} {self.unit}, {format_seconds(elapsed)} elapsed"
        pct = f" ({100 * self.done / self.total:.0f}%)"
        eta = self.eta()
        left = ("done" if self.done >= self.total else
                f"about {format_seconds(eta)} left" if eta is not None else "estimating")
        return (f"{self.desc}: {self.done}/{self.total} {self.unit}{pct}, "
                f"{format_seconds(elapsed)} elapsed, {left}")

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        self._bar.update(n)
        now = self.clock()
        finished = bool(self.total) and self.done >= self.total
        if self.report is not None and (now - self._last_report >= self.every_s or finished):
            self._last_report = now
            self.report(self.line())

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
