"""An exclusive lock on a file across the processes of one machine (POSIX ``flock``), for the
few things several Preflight processes share: the zoo folder, the settings snapshot of a run, the
MLflow store's schema and a run's parent MLflow run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created, with its folder, when missing) for the
    ``with`` block. Without ``fcntl`` (not POSIX) it does not lock: one process at a time is
    then the user's to ensure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    with path.open("a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
