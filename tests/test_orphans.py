"""No orphans: when the process that owns a fit's block files dies, the files go within 60 s
without another fit being started (the watcher of sparkml_lloyd/_reaper.py; without it they
stayed until the next fit on that host)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from sparkml_lloyd._blockstore import block_files
from tests import long_fit_driver as long_fit


def seconds_until_gone(pids: set[int], limit: float = 60.0) -> float:
    """How long until no block file of these JVMs is left (fails after ``limit``)."""
    t0 = time.monotonic()
    while block_files(pids):
        assert time.monotonic() - t0 < limit, block_files(pids)
        time.sleep(0.5)
    return time.monotonic() - t0


def test_a_killed_local_driver_leaves_no_block_files():
    """kill -9 of the driver's Python in local mode (its JVM, the executor too, then ends)."""
    proc, jvm, _ = long_fit.start("local[2]")
    assert block_files({jvm})  # the fit holds its blocks
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    print(f"none left {seconds_until_gone({jvm}):.1f} s after the kill")


@pytest.mark.cluster
def test_a_killed_driver_or_executor_on_the_cluster_leaves_no_block_files(cluster):
    """Standalone cluster: kill -9 of one executor JVM mid-fit (its files go; the fit goes
    on), then of the driver (the executors end with the application, and their files go)."""
    from tests.spark_cluster import executor_pids

    proc, _, app = long_fit.start(cluster.master_url)
    try:
        executors = executor_pids(cluster, app)
        assert len(executors) == 2 and block_files(set(executors))
        os.kill(executors[0], signal.SIGKILL)
        print(f"executor: none left {seconds_until_gone({executors[0]}):.1f} s after the kill")
        executors = executor_pids(cluster, app)  # with the one that replaced it
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        print(f"driver: none left {seconds_until_gone(set(executors)):.1f} s after the kill")
    finally:
        proc.kill()
