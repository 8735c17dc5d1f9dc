"""Host-local block storage: round trip, misses, clean-up; and the fit's fallback on a miss."""

import logging
import os
import subprocess
import sys

import numpy as np
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import make_blobs

from sparkml_lloyd import LloydKMeans, _transport
from sparkml_lloyd import _blockstore as bs
from sparkml_lloyd._transport import CONF_LOOP
from tests.helpers import make_df, relative_difference


def jvm_files(spark):
    """Block files written by the executors of this test session's JVM (others may run)."""
    return bs.block_files({spark.sparkContext._jvm.ProcessHandle.current().pid()})


def test_write_open_delete_round_trip():
    x = np.arange(12.0).reshape(4, 3)
    w = np.array([1.0, 0.0, 2.0, 3.0])
    h = bs.write("roundtrip0", 3, x, w)
    got_x, got_w = bs.open_block(h)
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_w, w)
    assert not got_x.flags.writeable  # tasks cannot corrupt the shared copy
    bs.delete(h)
    assert bs.open_block(h) is None and not os.path.exists(h.x_path)


def test_a_block_of_another_host_or_a_deleted_file_is_a_miss():
    h = bs.write("miss0", 0, np.ones((2, 2)), None)
    assert bs.open_block(bs.Handle("elsewhere", h.x_path, None, 2, 2)) is None
    assert bs.delete_fit("miss0") == 1
    assert bs.open_block(h) is None


def test_files_of_a_dead_jvm_are_swept():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = os.path.join(bs.storage_dir(), f"{bs.PREFIX}orphan0-{dead.pid}-p0-abcd-x.bin")
    np.ones(3).tofile(path)
    live = bs.write("live0", 0, np.ones((1, 1)), None)  # this process's parent is alive
    bs.sweep_orphans()
    assert not os.path.exists(path)
    assert os.path.exists(live.x_path)
    bs.delete(live)


def test_fit_recomputes_lost_blocks_from_the_lineage(spark, caplog):
    """One Spark job per pass (executor loop off): delete every block file after the first
    iteration; the remaining passes miss, recompute those partitions from the source, and the
    result is still the oracle's."""
    X, _ = make_blobs(n_samples=1200, centers=4, n_features=3, cluster_std=3.0, random_state=6)
    C0 = X[:4]
    spark.conf.set(CONF_LOOP, "false")

    def delete_blocks(record, centers):
        if record.iteration == 1:
            for path in jvm_files(spark):
                os.unlink(path)

    estimator = LloydKMeans(k=4, initialCenters=C0, maxIter=5, tol=0.0)
    try:
        with caplog.at_level(logging.INFO, logger="sparkml_lloyd"):
            model = estimator.setIterationCallback(delete_blocks).fit(make_df(spark, X))
    finally:
        spark.conf.unset(CONF_LOOP)
    assert any("recomputing" in r.getMessage() for r in caplog.records)
    sk = SkKMeans(n_clusters=4, init=C0, n_init=1, max_iter=5, tol=0.0,
                  algorithm="lloyd").fit(X)
    assert relative_difference(model.clusterCenters(), sk.cluster_centers_) <= 1e-9
    assert model.summary.numIter == sk.n_iter_


def test_blocks_missing_when_the_loop_starts_send_the_fit_to_the_lineage(
    spark, caplog, monkeypatch
):
    """Block files gone before the executor loop starts: its tasks report the miss, the fit
    falls back to one job per pass, those recompute from the source: the oracle's result."""
    X, _ = make_blobs(n_samples=1200, centers=4, n_features=3, cluster_std=3.0, random_state=6)
    C0 = X[:4]
    start = _transport.ExecutorLoop._start

    def delete_then_start(self, *args):
        for path in jvm_files(spark):
            os.unlink(path)
        return start(self, *args)

    monkeypatch.setattr(_transport.ExecutorLoop, "_start", delete_then_start)
    with caplog.at_level(logging.INFO, logger="sparkml_lloyd"):
        model = LloydKMeans(k=4, initialCenters=C0, maxIter=5, tol=0.0).fit(make_df(spark, X))
    messages = [r.getMessage() for r in caplog.records]
    assert any("executor loop stopped" in m and "blocks are not on its task's host" in m
               for m in messages), messages
    assert any("recomputing" in m for m in messages)
    sk = SkKMeans(n_clusters=4, init=C0, n_init=1, max_iter=5, tol=0.0,
                  algorithm="lloyd").fit(X)
    assert relative_difference(model.clusterCenters(), sk.cluster_centers_) <= 1e-9
    assert jvm_files(spark) == []


def test_a_fit_leaves_no_block_files(spark):
    X, _ = make_blobs(n_samples=300, random_state=1)
    LloydKMeans(k=3, seed=2).fit(make_df(spark, X))
    assert jvm_files(spark) == []
