"""A new MLflow sqlite store opened by several processes at once (parallel steps under the
multiprocess executor, steps on several celery workers): each process's first connection would
create the schema ("table ... already exists"); ``MlflowTracker.client`` lets one process at a
time do it, so every process gets a working client on the same experiment."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

PROCESSES = 4


def _open_together(home: str, barrier) -> str:
    import os

    os.environ["PREFLIGHT_HOME"] = home
    import mlflow  # noqa: F401  -- imported before the barrier: the processes connect together

    from resources import MlflowTracker

    barrier.wait(timeout=120)
    return MlflowTracker().experiment_id()


def test_processes_opening_a_new_store_together_all_succeed(tmp_path):
    home = tmp_path / "home"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(PROCESSES)
        with ProcessPoolExecutor(PROCESSES, mp_context=ctx) as pool:
            ids = list(pool.map(_open_together, [str(home)] * PROCESSES,
                                [barrier] * PROCESSES, timeout=300))
    assert len(set(ids)) == 1, ids
    assert (home / "mlflow" / "mlflow.db").is_file()
