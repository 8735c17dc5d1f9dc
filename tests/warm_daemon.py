"""PySpark's worker daemon, with the modules the suite's tasks use imported before it forks
workers, and those objects frozen out of the garbage collector's reach. It is the
``spark.python.daemon.module`` of the local session (tests/conftest.py), of the local Connect
server of tests/test_connect.py, and of every driver on the standalone cluster
(:func:`tests.spark_cluster.session_conf`, and the Connect server of
tests/test_connect_cluster.py), whose executors find it on their workers' PYTHONPATH.

Every Python worker is forked from the daemon; with ``pyspark.daemon`` itself each new worker
imports pandas, pyarrow, numpy and the package on its first task, about a second on a loaded
2-core machine, and Spark starts many workers in a run (a failed task's worker is not reused,
and a failing action is tried 4 times). Forked from this daemon they start with those
modules loaded.

After every task a reused worker runs a full ``gc.collect()`` (pyspark/daemon.py). With these
modules loaded that walks ~95,000 objects, 50-130 ms, and in a forked worker it also writes
to every page that holds one, so the worker copies them from the daemon. A fit takes a few
tasks a worker: a fit of the walkthrough's 1,500 points cost ~0.95 CPU-s, 0.38 of them in
these collections. ``gc.freeze()`` before forking, as Python's documentation of ``gc.freeze``
advises, leaves the daemon's objects out of every collection: 0.6 CPU-s a fit, and the whole
suite ~900 -> ~710 CPU-s (30 Nov). Objects the tasks make are collected as before.

The daemon and the workers are PySpark's own code. The subprocesses that start a Spark of their
own through the package (the console script and ``python -m sparkml_lloyd`` of
tests/test_cli.py and tests/test_demo.py, the benchmark runner) keep the plain
``pyspark.daemon``, as a user's Spark does.
"""

import gc

import numpy  # noqa: F401
import pandas  # noqa: F401
import pyarrow  # noqa: F401
import pyspark.sql.pandas.serializers
import pyspark.worker  # noqa: F401
from pyspark.daemon import manager

import sparkml_lloyd._barrier
import sparkml_lloyd._classic
import sparkml_lloyd._predict_arrow  # noqa: F401

if __name__ == "__main__":
    gc.freeze()  # the objects above stay out of the collections after each task
    manager()
