"""PySpark's worker daemon, with the modules the suite's tasks use imported before it forks
workers (the ``spark.python.daemon.module`` of the local session, see tests/conftest.py,
and of the local Connect server of tests/test_connect.py).

Every Python worker is forked from the daemon; with ``pyspark.daemon`` itself each new worker
imports pandas, pyarrow, numpy and the package on its first task, about a second on a loaded
2-core machine, and Spark starts many workers in a run (a failed task's worker is not reused,
and a failing action is tried 4 times). Forked from this daemon they start with those
modules loaded. The daemon and the workers are PySpark's own code; the standalone cluster's
executors (tests/test_cluster.py) keep the plain daemon.
"""

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
    manager()
