"""The executor loop on a real local SparkSession: the same bits as one Spark job per pass, a
constant number of jobs however many iterations run, a clean fallback, nothing left behind.
(The socket protocol alone: tests/test_loop.py; a worker killed mid-loop: tests/test_cluster.py.)"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from pyspark.sql import SparkSession
from sklearn.datasets import make_blobs

from sparkml_lloyd import LloydKMeans
from sparkml_lloyd._transport import CONF_LOOP, CONF_LOOP_TIMEOUT
from tests.fits import STAIRCASE_PARAMS, frame
from tests.helpers import make_df


@contextmanager
def conf(spark: SparkSession, **values: str) -> Iterator[None]:
    """Set runtime conf keys (by their sparkml_lloyd names) for the block, then unset them."""
    keys = {"loop": CONF_LOOP, "timeout": CONF_LOOP_TIMEOUT}
    for name, value in values.items():
        spark.conf.set(keys[name], value)
    try:
        yield
    finally:
        for name in values:
            spark.conf.unset(keys[name])


@contextmanager
def counting_jobs(spark: SparkSession) -> Iterator[list[int]]:
    """The ids of the Spark jobs started inside the block (the loop's own job included: it
    inherits the caller's job group)."""
    sc = spark.sparkContext
    group = f"count-{uuid.uuid4().hex}"
    sc.setJobGroup(group, "counting jobs")
    ids: list[int] = []
    try:
        yield ids
    finally:
        ids.extend(sc.statusTracker().getJobIdsForGroup(group))
        sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
        sc.setLocalProperty("spark.job.description", None)  # type: ignore[arg-type]


def outcome(model: Any) -> tuple[Any, ...]:
    s = model.summary
    return (np.array(model.clusterCenters()).tobytes(), s.numIter, tuple(s.costHistory),
            tuple(s.clusterSizes))


@pytest.fixture(scope="module")
def blobs_df(spark):
    X, _ = make_blobs(n_samples=3000, centers=5, n_features=4, random_state=11)
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(X))
    return make_df(spark, X, weights=w, partitions=2).cache()


@pytest.mark.parametrize("params", [
    {"k": 5, "seed": 3, "maxIter": 25, "tol": 0.0},
    {"k": 5, "seed": 3, "maxIter": 25, "weightCol": "weight"},
    {"k": 4, "seed": 1, "maxIter": 15, "distanceMeasure": "cosine", "initMode": "random"},
])
def test_the_loop_gives_the_same_bits_as_one_job_per_pass(spark, blobs_df, params):
    with conf(spark, loop="true"):
        looped = outcome(LloydKMeans(**params).fit(blobs_df))
    with conf(spark, loop="false"):
        per_job = outcome(LloydKMeans(**params).fit(blobs_df))
    assert looped == per_job
    assert looped[1] > 1  # it iterated


def test_with_the_loop_the_number_of_jobs_does_not_grow_with_the_iterations(spark):
    """The staircase runs exactly maxIter iterations (one point moves per iteration)."""
    df = frame(spark, "staircase")
    jobs: dict[tuple[str, int], int] = {}
    for loop in ("true", "false"):
        for max_iter in (5, 40):
            params = {**STAIRCASE_PARAMS, "maxIter": max_iter}
            with conf(spark, loop=loop), counting_jobs(spark) as ids:
                model = LloydKMeans(**params).fit(df)
            assert model.summary.numIter == max_iter
            jobs[(loop, max_iter)] = len(ids)
    assert jobs[("true", 40)] == jobs[("true", 5)], jobs
    assert jobs[("false", 40)] - jobs[("false", 5)] == 35, jobs  # one job per iteration


def test_the_initialisation_passes_ride_the_loop_too(spark, blobs_df):
    """k-means|| makes 2 passes per initStep and one to weight the candidates: without the
    loop each is a Spark job; with it the fit takes as many jobs as one given its initial
    centers (no initialisation pass) or a random one (none here), with the same bits as
    without the loop."""
    LloydKMeans(k=5, maxIter=1).fit(blobs_df)  # the first fit on it also fills the cache
    jobs = {}
    for name, params in {"given": {"initialCenters": np.eye(5, 4)},
                         "k-means||": {"initSteps": 4},
                         "random": {"initMode": "random"}}.items():
        for loop in ("true", "false"):
            with conf(spark, loop=loop), counting_jobs(spark) as ids:
                fitted = outcome(LloydKMeans(k=5, seed=7, maxIter=3, **params).fit(blobs_df))
            jobs[(name, loop)] = len(ids)
            if loop == "true":
                looped = fitted
            else:
                assert fitted == looped, name
    assert jobs[("k-means||", "true")] == jobs[("given", "true")] == jobs[("random", "true")], jobs
    # one job per pass without the loop: the 2 x 4 + 1 initialisation passes and >= 1 more
    assert jobs[("k-means||", "false")] - jobs[("k-means||", "true")] >= 2 * 4 + 1, jobs


def test_when_the_tasks_cannot_all_connect_the_fit_falls_back_and_says_so(
    spark, blobs_df, caplog
):
    params = {"k": 5, "seed": 3, "maxIter": 10, "tol": 0.0}
    with conf(spark, loop="false"):
        expected = outcome(LloydKMeans(**params).fit(blobs_df))
    with caplog.at_level(logging.WARNING, logger="sparkml_lloyd"), \
            conf(spark, loop="true", timeout="0"):
        got = outcome(LloydKMeans(**params).fit(blobs_df))
    assert got == expected
    assert any("executor loop stopped" in r.getMessage()
               and "one Spark job per pass" in r.getMessage() for r in caplog.records)


def test_a_driver_that_cannot_listen_falls_back(spark, blobs_df, caplog, monkeypatch):
    from sparkml_lloyd import _loop

    params = {"k": 5, "seed": 3, "maxIter": 10, "tol": 0.0}
    with conf(spark, loop="false"):
        expected = outcome(LloydKMeans(**params).fit(blobs_df))

    def cannot_listen(*args: Any, **kwargs: Any) -> Any:
        raise OSError("Address family not supported by protocol")

    monkeypatch.setattr(_loop, "Coordinator", cannot_listen)
    with caplog.at_level(logging.WARNING, logger="sparkml_lloyd"):
        assert outcome(LloydKMeans(**params).fit(blobs_df)) == expected
    assert any("executor loop not started" in r.getMessage() for r in caplog.records)


def test_a_status_tracker_that_fails_does_not_fail_the_fit(spark, blobs_df, monkeypatch):
    """The loop watches its tasks through Spark's status tracker while they connect; if that
    call fails, the loop still runs (ending in as few jobs) and the fit is the same."""
    from pyspark import SparkContext

    params = {"k": 5, "seed": 3, "maxIter": 10, "tol": 0.0}
    with conf(spark, loop="false"):
        expected = outcome(LloydKMeans(**params).fit(blobs_df))
    with counting_jobs(spark) as looped_jobs:
        LloydKMeans(**params).fit(blobs_df)
    asked = []

    def broken(self: Any) -> Any:
        asked.append(1)
        raise RuntimeError("no status tracker here")

    monkeypatch.setattr(SparkContext, "statusTracker", broken)
    with counting_jobs(spark) as jobs:
        try:
            got = outcome(LloydKMeans(**params).fit(blobs_df))
        finally:
            monkeypatch.undo()  # counting_jobs asks the tracker itself
    assert got == expected and asked
    assert len(jobs) == len(looped_jobs) < params["maxIter"], (jobs, looped_jobs)


def test_nothing_of_the_loop_outlives_the_fit(spark, blobs_df):
    """When the fit returns, the loop's job has ended and its thread is gone. (Spark's status
    tracker hears of a job's end from its listener bus, a moment after the job's action
    returns: on a loaded machine a little later, so it is given a few seconds.)"""
    before = set(threading.enumerate())
    LloydKMeans(k=5, seed=3, maxIter=10).fit(blobs_df)
    assert set(threading.enumerate()) <= before
    tracker = spark.sparkContext.statusTracker()
    deadline = time.monotonic() + 10.0
    while tracker.getActiveJobsIds() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tracker.getActiveJobsIds() == []


def test_partitions_are_capped_at_the_task_slots():
    """Cores over spark.task.cpus: with more partitions than slots the loop's tasks could not
    all run at once."""
    from types import SimpleNamespace

    from sparkml_lloyd._classic import task_slots

    def sc(parallelism: int, task_cpus: str | None) -> Any:
        conf = {} if task_cpus is None else {"spark.task.cpus": task_cpus}
        return SimpleNamespace(defaultParallelism=parallelism,
                               getConf=lambda: SimpleNamespace(get=conf.get))

    assert task_slots(sc(8, None)) == 8
    assert task_slots(sc(8, "2")) == 4
    assert task_slots(sc(2, "4")) == 1


def test_a_pass_read_backwards_gives_the_same_bits(monkeypatch):
    """A fit reads a partition's blocks last to first every other iteration (the blocks still
    in cache come first); the parts are merged in block order, so the statistics are the
    same bits either way."""
    from sparkml_lloyd import _kernel as K
    from sparkml_lloyd import _passes

    rng = np.random.default_rng(9)
    blocks = [(rng.normal(size=(rows, 4)) * 10.0**e, rng.uniform(0.1, 2.0, rows))
              for e, rows in enumerate([700, 3, 250, 1000, 64])]
    centers = rng.normal(size=(5, 4))
    seen: list[int] = []
    block_stats = K.block_stats

    def recording(x: np.ndarray, *args: Any) -> K.BlockStats:
        seen.append(x.shape[0])
        return block_stats(x, *args)

    monkeypatch.setattr(K, "block_stats", recording)
    forwards = _passes.stats_pass(blocks, centers, K.EUCLIDEAN)
    backwards = _passes.stats_pass(blocks, centers, K.EUCLIDEAN, backwards=True)
    assert seen == [700, 3, 250, 1000, 64, 64, 1000, 250, 3, 700]
    for a, b in zip(forwards, backwards, strict=True):
        np.testing.assert_array_equal(a, b)
    summed_backwards = K.merge_stats(
        [block_stats(x, w, centers, K.EUCLIDEAN) for x, w in blocks[::-1]], 5, 4)
    assert not np.array_equal(summed_backwards.sums, forwards.sums)  # order matters
