"""The bootstrap process: same tables as in-process, reuse, failures, cancelled jobs, and a pool
that owns its process (started on first use, stopped with its ``with`` block)."""

from __future__ import annotations

import logging
import os
import signal

import cv2
import numpy as np
import pandas as pd
import pytest

import preflight.evaluation as pe
from preflight.metrics import bootstrap_process as helpers
from preflight.metrics.cost import CostModel
from preflight.metrics.synthetic import random_case

SLICES = ("camera", "shift", "lighting")


def _case(seed: int, n_images: int = 90):
    gt, dt, images = random_case(np.random.default_rng(seed), n_images=n_images, n_classes=4)
    gt = gt.assign(class_name=gt["class_id"].map(lambda c: f"c{c}"))
    names = {c: f"c{c}" for c in range(4)}
    spec = pe.EvaluationSpec(SLICES, (), operating_threshold=0.3, bootstrap=60, seed=3,
                             min_images=5, min_boxes=5)
    return gt, dt, images, names, spec


def _tables(fd: pe.FailureDistribution) -> dict[str, pd.DataFrame]:
    return {k: getattr(fd, k) for k in ("metrics", "errors", "confusion", "cost", "detections")}


def _assert_same(got: pe.FailureDistribution, ref: pe.FailureDistribution) -> None:
    for name, table in _tables(ref).items():
        pd.testing.assert_frame_equal(_tables(got)[name], table, check_exact=True, obj=name)


@pytest.fixture(scope="module")
def pool():
    with helpers.BootstrapPool() as bootstraps:
        yield bootstraps


@pytest.fixture()
def helper(pool):
    h = pool.acquire()
    assert h is not None and h.ready(timeout=60), "the helper process did not start"
    try:
        yield h
    finally:
        pool.release(h)


def test_helper_gives_the_in_process_tables_value_for_value(helper):
    gt, dt, images, names, spec = _case(0)
    ref = pe.failure_distribution(gt, dt, images, spec, CostModel(), names)
    got = pe.failure_distribution(gt, dt, images, spec, CostModel(), names, helper=helper)
    _assert_same(got, ref)
    assert ref.metrics["ci_low"].notna().any()
    # a second evaluation on the same helper (other data) is not mixed with the first
    gt2, dt2, images2, names2, spec2 = _case(1, n_images=70)
    ref2 = pe.failure_distribution(gt2, dt2, images2, spec2, CostModel(), names2)
    _assert_same(pe.failure_distribution(gt2, dt2, images2, spec2, CostModel(), names2,
                                         helper=helper), ref2)


def test_one_helper_per_pool_reused_and_held_by_one_evaluation(pool, helper):
    assert pool.acquire() is None          # held: a second evaluation computes in-process
    pid = helper.pid
    pool.release(helper)
    again = pool.acquire()
    try:
        assert again is helper and again.pid == pid
    finally:
        pool.release(again)
    helper.in_use = True                      # the fixture releases it


def test_helper_answers_the_slices_of_the_job_and_drops_a_cancelled_one(helper):
    gt, dt, images, names, spec = _case(2, n_images=60)
    request = helpers.bootstrap_request(gt, dt, images, names, list(SLICES), 40, 1)
    expected = dict(helpers.answer(request))
    assert helper.submit(request)
    helper.end_job()                          # cancelled at once: its slices must not leak
    other = helpers.bootstrap_request(gt, dt, images, names, ["camera"], 40, 9)
    assert helper.submit(other)
    got: dict = {}
    while helper._job_open:
        got.update(helper.poll(timeout=5.0))
    want = dict(helpers.answer(other))
    assert sorted(got) == sorted(want)
    for i in want:
        np.testing.assert_array_equal(got[i], want[i])
    assert not np.array_equal(want[0], expected[0])   # other seed: a leak would show


def test_helper_error_is_reported_and_the_helper_keeps_serving(helper, caplog):
    assert helper.submit({"gt": None})        # the helper cannot build an index from this
    with pytest.raises(helpers.BootstrapProcessError, match="raised"):
        for _ in range(200):
            helper.poll(timeout=0.5)
    gt, dt, images, names, spec = _case(3, n_images=50)
    ref = pe.failure_distribution(gt, dt, images, spec, CostModel(), names)
    _assert_same(pe.failure_distribution(gt, dt, images, spec, CostModel(), names,
                                         helper=helper), ref)


def test_a_helper_that_dies_loses_nothing(pool, helper, caplog):
    gt, dt, images, names, spec = _case(4)
    ref = pe.failure_distribution(gt, dt, images, spec, CostModel(), names)
    os.kill(helper.pid, signal.SIGKILL)
    helper._proc.wait()
    with caplog.at_level(logging.WARNING, logger="preflight.metrics.bootstrap_process"):
        got = pe.failure_distribution(gt, dt, images, spec, CostModel(), names, helper=helper)
    _assert_same(got, ref)
    # the next evaluation gets a new helper
    pool.release(helper)
    fresh = pool.acquire()
    try:
        assert fresh is not None and fresh.pid != helper.pid and fresh.ready(timeout=60)
        _assert_same(pe.failure_distribution(gt, dt, images, spec, CostModel(), names,
                                             helper=fresh), ref)
    finally:
        pool.release(fresh)
    helper.in_use = True


def test_evaluate_candidate_with_the_helper_equals_without(tmp_path):
    """The whole step, frames on disk and a model function, with and without the helper."""
    gt, dt, images, names, spec = _case(5, n_images=40)
    paths, shade = [], {}
    for pos, image_id in enumerate(images["image_id"]):
        path = tmp_path / f"{image_id}.png"
        cv2.imwrite(str(path), np.full((24, 32, 3), 5 * pos + 3, np.uint8))
        paths.append(str(path))
        shade[5 * pos + 3] = dt[dt["image_id"] == image_id].drop(columns="image_id")
    images = images.assign(path=paths)

    def predict(frames):  # the detections recorded for each frame
        return [shade[int(f[0, 0, 0])] for f in frames]

    with helpers.BootstrapPool.always() as always, helpers.BootstrapPool() as by_default:
        runs = [pe.evaluate_candidate(predict, images, gt, spec, CostModel(), names,
                                      pe.EvaluationOptions(batch_size=8, bootstraps=pool))
                for pool in (None, always, by_default)]
    for run in runs[1:]:
        pd.testing.assert_frame_equal(run.predictions, runs[0].predictions)
        _assert_same(run.result, runs[0].result)


def test_the_caller_owns_the_process():
    """Nothing starts before an evaluation asks; the process stops with the pool's block."""
    with helpers.BootstrapPool() as pool:
        assert pool.process is None
        h = pool.acquire()
        assert h is not None and h.ready(timeout=60)
        pool.release(h)
        proc = h._proc
    assert proc.poll() is not None and pool.process is None
    with pytest.raises(RuntimeError, match="closed"):
        pool.acquire()
