"""Spark Connect in front of the suite's standalone cluster: a lost executor mid-fit.

(Its own module: the cluster's tests share one test process, see tests/conftest.py.)
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests import connect_client as client
from tests.connect_server import ConnectServer
from tests.fits import staircase
from tests.helpers import relative_difference
from tests.procs import WARM_DAEMON_CONF, cpu_seconds, python_worker_pids


def _wait_until_python_runs(executors: list[int], timeout: float = 120.0) -> None:
    """Until every executor's Python worker has worked a second (reading its blocks or
    serving passes): past the tasks' start-up, which a loaded machine can stretch beyond
    the barrier job's first seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(any(cpu_seconds(p) >= 1.0 for p in python_worker_pids([e], kind="worker"))
               for e in executors):
            return
        time.sleep(0.2)
    raise TimeoutError("the barrier tasks' Python workers did not start working")


@pytest.mark.cluster
def test_an_executor_killed_mid_fit_gives_the_same_result(cluster):
    """A Connect server whose master is the standalone cluster: SIGKILL of one executor while
    the fit's barrier job runs; Spark reruns the stage and the fit returns what the
    undisturbed fit gives, computed by hand (tests/fits.py's staircase): 320 iterations, the
    320 light points in cluster 0 and the heavy point alone in cluster 1."""
    from tests.spark_cluster import executor_pids

    x, _ = staircase(320)
    light = x[:320]
    expected = {"centers": [[light.mean()], [x[-1]]], "cost": ((light - light.mean()) ** 2).sum()}
    # The executors' workers fork from tests/warm_daemon.py, as under every driver on the
    # cluster (tests.spark_cluster.session_conf).
    with ConnectServer(cluster.master_url, conf=WARM_DAEMON_CONF) as remote:
        app = remote.app_id()
        proc = client.start(remote.url, "long", "1e6")
        try:
            remote.running_barrier_job(app)
            victims = executor_pids(cluster, app)
            assert len(victims) == 2
            _wait_until_python_runs(victims)
            os.kill(victims[0], signal.SIGKILL)
            disturbed = client.result(proc)
        finally:
            proc.kill()
        stages = remote.rest(f"applications/{app}/stages")
    # the kill hit the fit: its barrier stage ran again
    assert any(s["attemptId"] >= 1 or s["numFailedTasks"] for s in stages), stages
    assert disturbed["numIter"] == 320
    assert relative_difference(disturbed["centers"], expected["centers"]) < 1e-12
    assert disturbed["cost"] == pytest.approx(expected["cost"], rel=1e-9)
