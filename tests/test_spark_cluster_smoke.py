"""Smoke tests for the standalone-cluster harness in ``tests/spark_cluster.py``.

The cluster is the suite's one (the ``cluster`` fixture of tests/conftest.py). The drivers
run in child processes (:class:`spark_cluster.DriverProcess`): this pytest process already
owns the suite's local SparkContext and cannot host a second one.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.procs import alive, descendants, process, python_worker_pids
from tests.spark_cluster import DRIVER_MODULE, DriverProcess, StandaloneCluster, executor_pids

pytestmark = pytest.mark.cluster

DRIVER_TIMEOUT = 180.0


def test_sum_on_cluster(cluster: StandaloneCluster) -> None:
    """A job runs on the cluster, on exactly one executor per worker."""
    with DriverProcess(["-m", DRIVER_MODULE, "sum", cluster.master_url]) as driver:
        event = driver.wait_event("sum", timeout=DRIVER_TIMEOUT)
        assert event["value"] == event["expected"] == sum(x * x for x in range(1000))
        # The driver holds its session open until we send "continue".
        pids = executor_pids(cluster, app_id=event["app_id"])
        assert len(pids) == 2, cluster.log_tail()
        assert {os.getpgid(p) for p in pids} <= set(cluster.worker_pids)
        driver.send("continue")
        driver.wait_event("stopped", timeout=60)
        assert driver.wait(timeout=60) == 0


def test_job_survives_executor_kill(cluster: StandaloneCluster, tmp_path: Path) -> None:
    """SIGKILL one executor mid-job: Spark reschedules, the answer is right. (The job's tasks
    wait for a file that this test creates after the kill.)"""
    killed: dict[str, float] = {}
    gate = tmp_path / "gate"

    def kill_busy_executor(app_id: str) -> None:
        # Wait until an executor is running a Python task (JVM + daemon start-up varies on a
        # loaded box), kill it, then let the job go on.
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline and not gate.exists():
                for pid in executor_pids(cluster, app_id):
                    executor = process(pid)
                    if executor is not None and python_worker_pids([pid], kind="worker"):
                        executor.send_signal(signal.SIGKILL)
                        killed.update(pid=pid, at=time.monotonic())
                        return
                time.sleep(0.1)
        finally:
            gate.touch()

    argv = ["-m", DRIVER_MODULE, "slow", cluster.master_url, "--gate", str(gate)]
    with DriverProcess(argv) as driver:
        app_id = driver.wait_event("slow_start", timeout=DRIVER_TIMEOUT)["app_id"]
        killer = threading.Thread(target=kill_busy_executor, args=(app_id,))
        killer.start()
        try:
            event = driver.wait_event("slow", timeout=DRIVER_TIMEOUT)
        finally:
            gate.touch()
            killer.join()
        done_at = time.monotonic()
        assert "pid" in killed, "no executor ran a Python task to kill"
        assert killed["at"] < done_at
        assert event["value"] == event["expected"]
        assert event["failed_tasks"] >= 1  # the kill really cost a running task
        assert process(int(killed["pid"])) is None
        driver.wait_event("stopped", timeout=60)
        assert driver.wait(timeout=60) == 0


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
