"""The standalone-cluster harness of ``tests/spark_cluster.py`` stops everything it started.

The cluster is the suite's one (the ``cluster`` fixture of tests/conftest.py). That its jobs
run (one executor on each worker, in the worker's process group) and survive a killed
executor is checked on the fits of tests/test_cluster.py, whose driver's application the
cluster already runs: no application of its own here (each costs a driver and two executor
JVMs).
"""

from __future__ import annotations

import pytest

from tests.procs import alive, descendants
from tests.spark_cluster import StandaloneCluster

pytestmark = pytest.mark.cluster


@pytest.mark.stops_cluster
def test_stop_leaves_nothing_behind(cluster: StandaloneCluster) -> None:
    """``stop()`` (idempotent) kills master, workers, executors, Python workers.

    It stops the suite's shared cluster, so it runs after every other test that uses the
    cluster (the ``stops_cluster`` marker, see tests/conftest.py); the fixture's own
    ``stop()`` is then a no-op.
    """
    tmp_dir = cluster.tmp_dir
    assert tmp_dir is not None
    cluster.note(descendants(cluster.daemon_pids))
    started = cluster.known_processes  # incl. executors seen earlier
    assert len(started) > len(cluster.daemon_pids)
    cluster.stop()
    cluster.stop()
    assert set(cluster.stopped_pids) >= set(cluster.daemon_pids)
    assert not [p for p in started if alive(p)]
    assert not cluster.leftover_pids()
    assert not tmp_dir.exists()
