"""The host-local block store inside fits on Spark: blocks lost mid-fit are recomputed from
the lineage (the oracle's result all the same), and a fit leaves no block file behind.
(The block store on its own, without Spark: tests/test_blockstore.py.)"""

import logging
import os

import pytest

from sparkml_lloyd import LloydKMeans, _transport
from sparkml_lloyd._transport import CONF_LOOP
from tests.helpers import blobs, relative_difference, sklearn_lloyd
from tests.leaks import host_block_files, jvm_pid

MAX_ITER = 5


def jvm_files(spark):
    """Block files written by the executors of this test session's JVM (others may run)."""
    return host_block_files({jvm_pid(spark)})


@pytest.fixture(scope="module")
def data(spark):
    """1200 points in 4 overlapping blobs, the first 4 as the initial centers, and the
    oracle's fit from them."""
    points = blobs(spark, n_samples=1200, centers=4, n_features=3, cluster_std=3.0,
                   random_state=6)
    return points, sklearn_lloyd(points.X, points.X[:4], MAX_ITER)


def test_fit_recomputes_lost_blocks_from_the_lineage(spark, data, caplog):
    """One Spark job per pass (executor loop off): delete every block file after an
    iteration (the next-to-last: each pass that recomputes costs seconds); the passes after
    it miss, recompute those partitions from the source, and the result is still the
    oracle's."""
    (X, _, df), sk = data
    spark.conf.set(CONF_LOOP, "false")

    def delete_blocks(record, centers):
        if record.iteration == MAX_ITER - 1:
            for path in jvm_files(spark):
                os.unlink(path)

    estimator = LloydKMeans(k=4, initialCenters=X[:4], maxIter=MAX_ITER, tol=0.0)
    try:
        with caplog.at_level(logging.INFO, logger="sparkml_lloyd"):
            model = estimator.setIterationCallback(delete_blocks).fit(df)
    finally:
        spark.conf.unset(CONF_LOOP)
    assert any("recomputing" in r.getMessage() for r in caplog.records)
    assert relative_difference(model.clusterCenters(), sk.cluster_centers_) <= 1e-9
    assert model.summary.numIter == sk.n_iter_


def test_blocks_missing_when_the_loop_starts_send_the_fit_to_the_lineage(
    spark, data, caplog, monkeypatch
):
    """Block files gone before the executor loop starts: its tasks report the miss, the fit
    falls back to one job per pass, those recompute from the source: the oracle's result."""
    (X, _, df), sk = data
    start = _transport.ExecutorLoop._start

    def delete_then_start(self, *args):
        for path in jvm_files(spark):
            os.unlink(path)
        return start(self, *args)

    monkeypatch.setattr(_transport.ExecutorLoop, "_start", delete_then_start)
    with caplog.at_level(logging.INFO, logger="sparkml_lloyd"):
        model = LloydKMeans(k=4, initialCenters=X[:4], maxIter=MAX_ITER, tol=0.0).fit(df)
    messages = [r.getMessage() for r in caplog.records]
    assert any("executor loop stopped" in m and "blocks are not on its task's host" in m
               for m in messages), messages
    assert any("recomputing" in m for m in messages)
    assert relative_difference(model.clusterCenters(), sk.cluster_centers_) <= 1e-9
    assert jvm_files(spark) == []


def test_a_fit_leaves_no_block_files(spark):
    X = blobs(spark, n_samples=300, random_state=1)
    LloydKMeans(k=3, seed=2).fit(X.df)
    assert jvm_files(spark) == []


def test_the_fit_logs_where_its_blocks_are_and_how_big(spark, data, caplog):
    """One INFO line: each host's block bytes (1200 x 3 float64 here) and the private
    directory they are in."""
    import socket

    (X, _, df), _ = data
    with caplog.at_level(logging.INFO, logger="sparkml_lloyd"):
        LloydKMeans(k=4, initialCenters=X[:4], maxIter=1).fit(df)
    said = [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("block files of this fit: ")]
    assert said == [f"block files of this fit: {socket.gethostname()}: "
                    f"{X.size * 8 / 1024:.1f} KiB in /dev/shm/sparkml_lloyd-{os.getuid()}"]
