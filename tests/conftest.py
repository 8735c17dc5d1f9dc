"""The suite's Spark: one local SparkSession, and one standalone cluster, each started only
when a selected test needs it and shared by all that do.

Without Java, the tests that need neither (the kernel, the executor loop's protocol, the
block store...) still run; a run that selects a test needing Spark stops before running
anything, with the one-line "Java was not found" message.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pyspark.sql import SparkSession

from sparkml_lloyd.session import JavaNotFoundError, check_java, local_session

if TYPE_CHECKING:
    from tests.spark_cluster import StandaloneCluster

ROOT = Path(__file__).resolve().parents[1]
#: Fixtures that start a JVM.
NEEDS_JAVA = ("spark", "cluster")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist starts its workers
def pytest_configure(config: pytest.Config) -> None:
    """Every JVM the run starts through ``spark-submit`` (the local session, Connect
    servers, the drivers of subprocesses, xdist workers inheriting this environment) gets
    :data:`tests.procs.FAST_JVM_OPTS` by ``SPARK_SUBMIT_OPTS``. Without Java, no xdist
    workers: the run collects here and stops with the one-line message below (or runs the
    tests that need no Spark)."""
    from tests.procs import FAST_JVM_OPTS

    opts = os.environ.get("SPARK_SUBMIT_OPTS", "")
    if FAST_JVM_OPTS not in opts:
        os.environ["SPARK_SUBMIT_OPTS"] = f"{opts} {FAST_JVM_OPTS}".strip()
    if getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput"):
        try:
            check_java()
        except JavaNotFoundError:
            config.option.dist, config.option.numprocesses, config.option.tx = "no", None, []


#: Test modules that use the standalone cluster: they run in one test process, one after
#: another, so one cluster serves them all.
CLUSTER_MODULES = ("tests/test_cluster.py", "tests/test_connect_cluster.py",
                   "tests/test_orphans.py", "tests/test_spark_cluster_stop.py")

#: Rough seconds of the scopes that take 10 s or more in a whole run (30 Nov, 2 cores), for
#: the order in which the test processes take them only: longest first, then the others by
#: number of tests (pytest-xdist's own order), so that the test processes end together (the
#: short ones come last and fill the gaps). By number of tests alone the cluster's modules
#: came late and one process ended ~30 s after the other.
SECONDS = {"cluster": 140, "tests/test_connect.py": 120, "tests/test_benchmarks_smoke.py": 90,
           "tests/test_invalid_rows.py": 34, "tests/test_docs_examples.py": 34,
           "tests/test_cli.py": 33, "tests/test_choosing_k.py": 28, "tests/test_sparse.py": 24,
           "tests/test_executor_loop.py": 22, "tests/test_fit_multiple.py": 20,
           "tests/test_errors.py": 18, "tests/test_interrupts.py": 17,
           "tests/test_oracles.py": 16, "tests/test_faults.py": 13,
           "tests/test_transform.py": 12, "tests/test_persistence.py": 11,
           "tests/test_no_java.py": 10}


def scope(nodeid: str) -> str:
    """The unit a test process takes at once: the test's module, or ``"cluster"``."""
    module = nodeid.split("::", 1)[0]
    return "cluster" if module in CLUSTER_MODULES else module


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Stop at once without Java if a selected test needs Spark. Order: the scopes by
    :data:`SECONDS`, then by number of tests, each scope's tests together in their order,
    and the test that stops the shared cluster after every other of its scope (every test
    that uses the cluster is in it).

    Under pytest-xdist (``-n 2``, the default in pyproject.toml) a scope's tests stay on one
    worker, so its module fixtures (a Connect server, a benchmark run) start once, and the
    standalone cluster's modules share one worker: one cluster a run (see below)."""
    if any(name in getattr(item, "fixturenames", ()) for item in items for name in NEEDS_JAVA):
        try:
            check_java()
        except JavaNotFoundError as e:
            pytest.exit(str(e), returncode=3)
    scopes = {item.nodeid: scope(item.nodeid) for item in items}
    sizes, first = Counter(scopes.values()), {}
    for i, name in enumerate(scopes.values()):
        first.setdefault(name, i)

    def key(item: pytest.Item) -> tuple[int, int, int, bool]:
        name = scopes[item.nodeid]
        stops = item.get_closest_marker("stops_cluster") is not None
        return -SECONDS.get(name, 0), -sizes[name], first[name], stops

    items.sort(key=key)  # stable: each scope's tests keep their order


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's ``loadscope`` by :func:`scope` (its ``xdist_group`` marks do nothing
    under pytest 9: it renames node ids that pytest 9 no longer reads), the scopes handed out
    in the order of :func:`pytest_collection_modifyitems`."""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # keep the collection's order of scopes

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope(nodeid)

    return ByModule(config, log)


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """local[2,4]: two cores, and a failed task is retried (plain local[N] never retries).
    Python workers fork from tests/warm_daemon.py (the repository root goes on the JVM's
    PYTHONPATH, which Spark passes on to them)."""
    from tests.procs import WARM_DAEMON_CONF, pythonpath_with

    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", pythonpath_with(str(ROOT)))
        session = local_session("local[2,4]", app_name="sparkml_lloyd-tests",
                                conf=WARM_DAEMON_CONF)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def cluster() -> Iterator[StandaloneCluster]:
    """A Spark standalone master and two 1-core workers on 127.0.0.1 (startup ~10 s), shared
    by every test that needs a cluster. Each test's driver is its own application, so the
    workers start fresh executors for it; one killed by a test is replaced. At the end every
    process of the cluster is killed by its PID (the ``stops_cluster`` test does it earlier
    and checks that nothing is left)."""
    from tests.spark_cluster import StandaloneCluster

    with StandaloneCluster(num_workers=2) as shared:
        yield shared
    assert not shared.leftover_pids(), "processes of the standalone cluster outlived it"
