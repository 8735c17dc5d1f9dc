"""What a fit can leave behind on the driver, counted for leak assertions.

A fit caches an RDD, broadcasts the centers once per pass and (with the host-local block store)
writes one file per block; all of it must be gone when ``fit`` returns or raises. These helpers
count each kind of resource of one local SparkSession:

* ``persistent_rdds``: ``sc._jsc.getPersistentRDDs()`` (RDDs marked cached);
* ``rdd_blocks`` / ``broadcast_blocks``: block ids held by the driver JVM's BlockManager (in
  local mode also the executor's; a :class:`Footprint` counts the RDD blocks of RDDs still
  persisted, as an unpersisted RDD's blocks are deleted asynchronously). Broadcast blocks
  include the task binaries Spark broadcasts for every job, which its ContextCleaner frees
  only after a JVM garbage collection; compare them only after :func:`collect_jvm_garbage`;
* ``python_broadcasts``: files in the SparkContext's temp dir; PySpark writes one per live
  ``sc.broadcast`` and deletes it in ``destroy()``/``unpersist()``;
* ``host_block_files``: files of :mod:`sparkml_lloyd._blockstore` written by this JVM's
  Python workers (other processes on the machine may run fits of their own at the same time).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession


def jvm_pid(spark: SparkSession) -> int:
    """PID of the session's JVM (in local mode also the executor)."""
    return int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())


def _block_manager(spark: SparkSession) -> Any:
    # py4j cannot call methods of SparkEnv itself (reflecting over its methods needs a
    # protobuf class that pyspark does not ship), so read the field through java.lang.reflect.
    sc = spark.sparkContext
    env_class = sc._jvm.java.lang.Class.forName("org.apache.spark.SparkEnv")
    field = env_class.getDeclaredField("blockManager")
    field.setAccessible(True)
    return field.get(sc._jsc.sc().env())


def block_ids(spark: SparkSession) -> list[str]:
    """Ids of the blocks the driver's BlockManager holds (``rdd_3_0``, ``broadcast_7_piece0``)."""
    entries = _block_manager(spark).blockInfoManager().entries()
    ids = []
    while entries.hasNext():
        ids.append(str(entries.next()._1().toString()))
    return sorted(ids)


def python_broadcasts(spark: SparkSession) -> int:
    """Live PySpark broadcasts created by this driver (one temp file each)."""
    temp_dir = spark.sparkContext._temp_dir
    return len(os.listdir(temp_dir)) if os.path.isdir(temp_dir) else 0


def host_block_files(pids: set[int]) -> list[str]:
    """Files of the host-local block store whose writer's JVM is one of ``pids``."""
    from sparkml_lloyd import _blockstore

    return _blockstore.block_files(pids)


def collect_jvm_garbage(spark: SparkSession, settle: float = 0.5) -> None:
    """``System.gc()``, then give the ContextCleaner time to free what became unreachable."""
    spark.sparkContext._jvm.java.lang.System.gc()
    time.sleep(settle)


def jvm_heap_used_mb(spark: SparkSession) -> float:
    """Heap in use by the driver JVM, in MiB (call after :func:`collect_jvm_garbage`)."""
    runtime = spark.sparkContext._jvm.java.lang.Runtime.getRuntime()
    return (runtime.totalMemory() - runtime.freeMemory()) / 2**20


@dataclass(frozen=True)
class Footprint:
    """Counts of everything a fit may cache, broadcast or write (see the module docstring)."""

    persistent_rdds: int
    rdd_blocks: int
    python_broadcasts: int
    host_block_files: int


def footprint(spark: SparkSession) -> Footprint:
    """The session's current :class:`Footprint` (local mode: driver == executor). The blocks
    of an RDD already unpersisted are not counted: Spark deletes them asynchronously, so
    they are on their way out, and a count taken just after a fit released its RDDs would
    depend on how far the deletion got (an RDD left persisted is counted, with its
    blocks)."""
    persistent = spark.sparkContext._jsc.getPersistentRDDs()
    kept = {str(rdd_id) for rdd_id in persistent}
    return Footprint(
        persistent_rdds=len(kept),
        rdd_blocks=sum(1 for b in block_ids(spark)
                       if b.startswith("rdd_") and b.split("_")[1] in kept),
        python_broadcasts=python_broadcasts(spark),
        host_block_files=len(host_block_files({jvm_pid(spark)})),
    )


def footprint_after(spark: SparkSession, expected: Footprint, timeout: float = 10.0) -> Footprint:
    """The footprint once it equals ``expected``, or after ``timeout`` seconds.

    ``unpersist()`` removes an RDD from the persistent set at once but deletes its blocks
    asynchronously, so a just-released fit may take a moment to reach ``expected``.
    """
    deadline = time.monotonic() + timeout
    while True:
        now = footprint(spark)
        if now == expected or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def jobs_started(spark: SparkSession) -> int:
    """How many Spark jobs this SparkContext has started so far (the DAGScheduler's counter)."""
    counter = spark.sparkContext._jsc.sc().dagScheduler().nextJobId()
    return int(counter.get() if hasattr(counter, "get") else counter)
