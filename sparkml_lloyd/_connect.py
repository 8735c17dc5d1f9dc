"""The fit under Spark Connect (the client side): one query, a barrier job does the rest.

There is no SparkContext, RDD, broadcast or JVM in a Connect client, and the client may be
far from the cluster. :func:`fit` checks the schema, reads the number of task slots with one
small query (a barrier stage must fit in them), and runs the fit as one
``mapInArrow(..., barrier=True)`` job (:mod:`sparkml_lloyd._barrier`) on the input coalesced
to that many partitions, or, where Spark refuses a barrier stage on that input (a union, a
coalesce that merges partitions, a limit: SPARK-24820), repartitioned to them (a shuffle);
nothing persists between queries and nothing is written to the hosts' disks: the blocks live
in the tasks' memory for the job's duration and go with it (on success, failure,
cancellation, or when the server interrupts the query of a client that went away).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkml_lloyd import _barrier, _fit, _schema


def task_slots(spark: SparkSession) -> int:
    """Tasks the cluster runs at once: the partitions of ``spark.range`` without a count,
    which Spark sizes to its default parallelism (all executor cores). Assumes one core a
    task (``spark.task.cpus`` is not readable from a Connect client)."""
    ids = spark.range(0, 1 << 16).select(F.spark_partition_id().alias("p")).distinct()
    return max(1, ids.count())


def fit_many(df: DataFrame, cfgs: list[_fit.FitConfig],
             on_iteration: list[_fit.IterationCallback | None],
             ) -> list[_fit.FitResult | ValueError]:
    """Lloyd's k-means over ``df`` on a Spark Connect session (see the module docstring):
    the fits of ``cfgs`` (sharing :func:`~sparkml_lloyd._fit.preparation_key`) in the same
    barrier job and the same passes; a fit the data cannot serve gives its ``ValueError``.
    Each ``on_iteration`` runs after the job, once per iteration, with the recorded centers:
    the fit runs on the executors, which cannot call back a client."""
    cfg = cfgs[0]
    source = _schema.fit_input(df, cfg.features_col, cfg.weight_col)
    slots = task_slots(df.sparkSession)
    record = any(cb is not None for cb in on_iteration)
    task = partial(_barrier.fit_task, cfgs=cfgs, record_centers=record)

    def run(rows: DataFrame) -> list[Any]:
        # The barrier stage ends in a (tiny) shuffle: Spark reruns a failed barrier
        # ShuffleMapStage whole (a lost executor), where a failed barrier ResultStage would
        # abort the query.
        fitted = rows.mapInArrow(task, _barrier.RESULT_SCHEMA, barrier=True)
        return fitted.repartition(1).collect()

    try:
        rows = run(source.coalesce(slots))
    except Exception as exc:
        if "Barrier execution mode does not allow" not in str(exc):
            raise
        # A barrier stage takes no union, coalesce or limit of its input (SPARK-24820): Spark
        # says so before running a task. Then the fit reads the rows after a shuffle.
        rows = run(source.repartition(slots))
    kind, payload = _barrier.decode(rows)
    if kind == "error":
        raise ValueError(payload)
    results: list[_fit.FitResult | ValueError] = []
    for (result, centers), callback in zip(payload, on_iteration, strict=True):
        if isinstance(result, str):
            results.append(ValueError(result))
            continue
        if callback is not None:
            for record, c in zip(result.iterations, centers, strict=True):
                callback(record, c)
        results.append(result)
    return results
