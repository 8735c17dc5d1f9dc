"""LloydKMeans on a real Spark standalone cluster (a master and two 1-core workers on
loopback, started by the tests), including faults: an executor JVM or a Python worker killed
with SIGKILL in the middle of a fit.

The cluster is the suite's one (the ``cluster`` fixture of tests/conftest.py, shared with the
other modules of its scope there). The cluster-side driver runs in a child process (this
process already owns the suite's local SparkContext): ``python -m tests.test_cluster serve
MASTER_URL`` starts a SparkSession on the
cluster, reports ``ready``, then runs one JSON command per stdin line and reports the result
as an event (see :func:`serve`). The local references are computed in this process with the
``spark`` fixture (local[2,4]) on the same rows in the same two partitions, so the centers must
agree bit for bit (the fit is deterministic given the seed and the partitioning).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import SparkSession

from sparkml_lloyd import LloydKMeans, LloydKMeansModel
from sparkml_lloyd._blockstore import owner_pid
from sparkml_lloyd._transport import CONF_LOOP_TIMEOUT, ExecutorLoop
from tests.fits import STAIRCASE_PARAMS, STEPS, fit_result, frame
from tests.helpers import relative_difference
from tests.leaks import host_block_files
from tests.procs import alive, descendants, mapped_files, process, python_worker_pids
from tests.spark_cluster import (
    DriverProcess,
    StandaloneCluster,
    build_session,
    claim_stdout_for_events,
    emit,
    executor_pids,
    failed_tasks,
    wait_for_executors,
)

pytestmark = pytest.mark.cluster

DRIVER_TIMEOUT = 300.0
#: Iteration at which the fault tests kill something (the staircase fit runs STEPS): late, so
#: that few iterations run after it, each as one Spark job (the fallback is the same at any
#: iteration).
KILL_AT_ITERATION = STEPS - 5


# -- the child: a driver on the cluster ------------------------------------------------------


def pipeline() -> Pipeline:
    """VectorAssembler + LloydKMeans, as in the README."""
    return Pipeline(stages=[
        VectorAssembler(inputCols=["a", "b", "c"], outputCol="features"),
        LloydKMeans(k=4, seed=7),
    ])


class _IterationEvents(logging.Handler):
    """Reports chosen iterations of a running fit to the parent (as the fit's iteration
    callback), and counts the executor loop's fallbacks (warnings of the package logger)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.wanted: set[int] = set()
        self.loop_fallbacks = 0
        #: when set, the fit waits at a reported iteration until this file exists
        self.resume_file: str | None = None

    def on_iteration(self, record: Any, centers: Any) -> None:
        if record.iteration in self.wanted:
            emit("iteration", iteration=record.iteration, at=time.monotonic())
            deadline = time.monotonic() + 60
            while self.resume_file and not os.path.exists(self.resume_file):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.resume_file} did not appear")
                time.sleep(0.01)

    def emit(self, record: logging.LogRecord) -> None:
        if "executor loop stopped" in record.getMessage():
            self.loop_fallbacks += 1


def _run(spark: SparkSession, command: dict[str, Any], events: _IterationEvents) -> None:
    """Run one command (``fit`` or ``pipeline``) in its own job group; emit its result."""
    sc = spark.sparkContext
    wait_for_executors(sc, 2)
    tag = command.get("tag", command["cmd"])
    sc.setJobGroup(tag, tag)
    started = time.monotonic()
    if command["cmd"] == "fit":
        events.wanted = set(command.get("report", ()))
        events.loop_fallbacks = 0
        events.resume_file = command.get("resume_file")
        try:
            estimator = LloydKMeans(**command["params"]).setIterationCallback(
                events.on_iteration)
            model = estimator.fit(frame(spark, command["data"]))
        finally:
            events.wanted, events.resume_file = set(), None
        emit("fit", started=started, finished=time.monotonic(),
             failed_tasks=failed_tasks(sc, tag),
             jobs=len(sc.statusTracker().getJobIdsForGroup(tag)),
             loop_fallbacks=events.loop_fallbacks, **fit_result(model))
    elif command["cmd"] == "pipeline":
        model = pipeline().fit(frame(spark, "raw"))
        model.write().overwrite().save(command["path"])
        predictions = model.transform(frame(spark, "raw")).orderBy("id")
        emit("pipeline", predictions=[r.prediction for r in predictions.collect()],
             **fit_result(model.stages[-1]))
    else:
        raise ValueError(f"unknown command {command!r}")


def serve(master_url: str) -> None:
    """Child main loop: one JSON command per stdin line until ``{"cmd": "stop"}``."""
    claim_stdout_for_events()
    spark = build_session(master_url, "sparkml_lloyd-cluster-tests")
    spark.sparkContext.setLogLevel("ERROR")
    events = _IterationEvents()
    logging.getLogger("sparkml_lloyd").addHandler(events)
    wait_for_executors(spark.sparkContext, 2)
    # These tests kill a process while the executor loop serves; on a loaded machine a
    # replacement executor's first Python worker can take longer than the loop's defaults
    # allow for its start (then the fit goes on with one job per pass and nothing serves).
    spark.conf.set(CONF_LOOP_TIMEOUT, "90")
    ExecutorLoop.STALL_SECONDS = 30.0
    emit("ready", pid=os.getpid(), app_id=spark.sparkContext.applicationId)
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "stop":
            break
        try:
            _run(spark, command, events)
        except Exception:  # report it; the parent's wait_event raises with the traceback
            emit("error", traceback=traceback.format_exc())
    spark.stop()
    emit("stopped")


# -- the parent: fixtures and tests ----------------------------------------------------------


@pytest.fixture(scope="module")
def driver(cluster: StandaloneCluster) -> Iterator[DriverProcess]:
    """The cluster-side driver (a child process), shared by the module's tests."""
    argv = ["-m", "tests.test_cluster", "serve", cluster.master_url]
    with DriverProcess(argv) as child:
        child.wait_event("ready", timeout=DRIVER_TIMEOUT)
        yield child
        child.send(json.dumps({"cmd": "stop"}))
        child.wait_event("stopped", timeout=120)
        assert child.wait(timeout=60) == 0


def _command(driver: DriverProcess, event: str, **command: Any) -> dict[str, Any]:
    """Send one command to the cluster's driver and wait for its result event."""
    driver.send(json.dumps(command))
    return driver.wait_event(event, timeout=DRIVER_TIMEOUT)


def _assert_no_block_files(cluster: StandaloneCluster) -> None:
    """No host-local block file of any executor this cluster ever ran is left."""
    executor_pids(cluster)  # note the current ones
    assert host_block_files(cluster.known_pids) == []


def _local(spark: SparkSession, params: dict[str, Any], data: str) -> dict[str, Any]:
    """The same fit on this process's local session."""
    return fit_result(LloydKMeans(**params).fit(frame(spark, data)))


def test_the_driver_has_one_executor_on_each_worker_in_its_process_group(
    cluster: StandaloneCluster, driver: DriverProcess
) -> None:
    """The harness's cluster as the fault tests rely on it: the driver's application runs on
    exactly one executor JVM per 1-core worker, each in its worker's process group (where
    the cluster's ``stop()`` reaches it)."""
    pids = executor_pids(cluster, driver.received["ready"]["app_id"])
    assert len(pids) == 2, cluster.log_tail()
    assert {os.getpgid(p) for p in pids} <= set(cluster.worker_pids)


@pytest.mark.parametrize("init_mode", ["k-means||", "random"])
def test_fit_on_the_cluster_gives_the_local_centers(
    spark: SparkSession, cluster: StandaloneCluster, driver: DriverProcess, init_mode: str
) -> None:
    """Same seed and partitioning: bit-identical centers, iterations and cost on the cluster
    and on local[2] (so certainly within 1e-9 relative). The executor loop ran without a
    fallback."""
    params = {"k": 4, "seed": 3, "initMode": init_mode, "maxIter": 30, "tol": 0.0}
    remote = _command(driver, "fit", cmd="fit", data="blobs", params=params, tag=init_mode)
    local = _local(spark, params, "blobs")
    assert remote["loop_fallbacks"] == 0
    assert relative_difference(remote["centers"], local["centers"]) <= 1e-9
    assert remote["centers"] == local["centers"]
    assert (remote["num_iter"], remote["cost"]) == (local["num_iter"], local["cost"])
    _assert_no_block_files(cluster)


def test_pipeline_saved_on_the_cluster_loads_and_transforms_locally(
    spark: SparkSession, driver: DriverProcess, tmp_path: Path
) -> None:
    """A Pipeline (VectorAssembler + LloydKMeans) fitted and saved by the cluster's driver
    loads in a fresh local session and predicts what the cluster predicted."""
    path = str(tmp_path / "pipeline")
    remote = _command(driver, "pipeline", cmd="pipeline", path=path)
    loaded = PipelineModel.load(path)
    stage = loaded.stages[-1]
    assert isinstance(stage, LloydKMeansModel)
    assert [c.tolist() for c in stage.clusterCenters()] == remote["centers"]
    local = loaded.transform(frame(spark, "raw")).orderBy("id")
    assert [r.prediction for r in local.collect()] == remote["predictions"]
    assert sorted(set(remote["predictions"])) == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def undisturbed(spark: SparkSession) -> dict[str, Any]:
    """The staircase fit without faults (local; equal to the cluster's, see above)."""
    result = _local(spark, STAIRCASE_PARAMS, "staircase")
    assert result["num_iter"] == STEPS  # one point changes cluster per iteration
    return result


def test_the_cluster_fit_iterates_in_the_executor_loop(
    cluster: StandaloneCluster, driver: DriverProcess, undisturbed: dict[str, Any]
) -> None:
    """The executors (separate JVMs) reach the driver's loop: STEPS iterations take a handful
    of Spark jobs (preparation, the loop, clean-up), not one per iteration; same result as
    local[2]."""
    event = _command(driver, "fit", cmd="fit", data="staircase", params=STAIRCASE_PARAMS,
                     tag="loop")
    assert event["loop_fallbacks"] == 0
    assert event["num_iter"] == STEPS and event["jobs"] <= 5, event
    assert event["centers"] == undisturbed["centers"]
    _assert_no_block_files(cluster)


def _kill_during_fit(
    cluster: StandaloneCluster, driver: DriverProcess, choose: Any, tmp_path: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the staircase fit on the cluster; the driver holds still at iteration
    KILL_AT_ITERATION (the executor loop's tasks are running, waiting for the next pass)
    while this process SIGKILLs the process ``choose(cluster, app_id)`` returns (one of the
    driver's application), waits until it and its descendants are gone (an executor's Python
    workers outlive it by up to a second: they die when their daemon sees the JVM go; resumed
    before that, the fit could finish its last passes on an orphaned worker), then lets the
    fit go on. Returns (fit event, kill record)."""
    killed: dict[str, Any] = {}
    resume = tmp_path / "resume"
    driver.send(json.dumps({"cmd": "fit", "data": "staircase", "params": STAIRCASE_PARAMS,
                            "report": [KILL_AT_ITERATION], "tag": "faults",
                            "resume_file": str(resume)}))
    driver.wait_event("iteration", timeout=DRIVER_TIMEOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pid = choose(cluster, driver.received["ready"]["app_id"])
            victim = process(pid) if pid is not None else None
            if victim is not None:
                doomed = [victim, *descendants([pid])]
                killed.update(pid=pid, status=victim.status(), at=time.monotonic())
                victim.send_signal(signal.SIGKILL)
                while any(alive(p) for p in doomed) and time.monotonic() < deadline:
                    time.sleep(0.01)
                break
            time.sleep(0.005)
    finally:
        resume.touch()
    event = driver.wait_event("fit", timeout=DRIVER_TIMEOUT)
    assert "pid" in killed, f"nothing was killed; the fit: {event}"
    assert process(killed["pid"]) is None
    return event, killed


def test_fit_survives_the_loss_of_an_executor(
    cluster: StandaloneCluster, driver: DriverProcess, undisturbed: dict[str, Any],
    tmp_path: Path,
) -> None:
    """SIGKILL one executor JVM mid-fit: its cached blocks and running tasks are lost, Spark
    recomputes them from the lineage and retries; the fit ends with the same centers and
    iteration count as the undisturbed run."""
    event, killed = _kill_during_fit(
        cluster, driver, lambda c, app: next(iter(executor_pids(c, app)), None), tmp_path
    )
    print(f"killed executor {killed}; fit: {event['finished'] - event['started']:.1f} s, "
          f"{event['failed_tasks']} failed tasks")
    assert event["failed_tasks"] >= 1, (killed, event)  # the kill cost a running task
    assert event["centers"] == undisturbed["centers"]
    assert (event["num_iter"], event["cost"]) == (undisturbed["num_iter"], undisturbed["cost"])
    assert event["loop_fallbacks"] == 1  # the kill broke the executor loop; jobs took over
    _assert_no_block_files(cluster)


def _a_python_worker(cluster: StandaloneCluster, app_id: str) -> int | None:
    """A Python worker of an executor that runs an executor loop's task: the one that has a
    block file of the fit mapped (the loop's task keeps its blocks mapped while it serves;
    an idle worker, e.g. the one that wrote the blocks, does not)."""
    for pid in python_worker_pids(executor_pids(cluster, app_id), kind="worker"):
        if any(owner_pid(path) is not None for path in mapped_files(pid)):
            return pid
    return None


def test_fit_survives_the_loss_of_a_python_worker(
    cluster: StandaloneCluster, driver: DriverProcess, undisturbed: dict[str, Any],
    tmp_path: Path,
) -> None:
    """SIGKILL a Python worker while it runs a task (the executor loop's): the task fails,
    Spark retries it, the fit goes on with one job per pass and ends with the same centers
    and iteration count as the undisturbed run."""
    event, killed = _kill_during_fit(cluster, driver, _a_python_worker, tmp_path)
    print(f"killed Python worker {killed}; fit: {event['finished'] - event['started']:.1f} s, "
          f"{event['failed_tasks']} failed tasks")
    assert event["failed_tasks"] >= 1, (killed, event)
    assert event["centers"] == undisturbed["centers"]
    assert (event["num_iter"], event["cost"]) == (undisturbed["num_iter"], undisturbed["cost"])
    assert event["loop_fallbacks"] == 1  # the kill broke the executor loop; jobs took over
    _assert_no_block_files(cluster)


if __name__ == "__main__":  # the child: python -m tests.test_cluster serve MASTER_URL
    if sys.argv[1:2] != ["serve"] or len(sys.argv) != 3:
        sys.exit("usage: python -m tests.test_cluster serve MASTER_URL")
    serve(sys.argv[2])
