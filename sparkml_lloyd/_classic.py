"""The fit on classic Spark: the DataFrame becomes host-local blocks, the driver runs.

:func:`fit` checks the schema (no job), runs the preparation pass (``mapInArrow`` over the
features, :mod:`sparkml_lloyd._prepare`: every partition's blocks are written once to its
host, the cached RDD holds small handles), raises for unusable data, opens the pass transport
(:mod:`sparkml_lloyd._transport`) and hands both to the fit driver (:mod:`sparkml_lloyd._fit`).
Whatever the fit cached, broadcast or wrote is released in a ``finally``, on success or
failure.
"""

from __future__ import annotations

import logging
import pickle
import socket
import uuid
from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any

import pyarrow as pa
from pyspark import StorageLevel, TaskContext
from pyspark.sql import DataFrame

from sparkml_lloyd import _blockstore as blockstore
from sparkml_lloyd import _fit, _memory, _prepare, _schema
from sparkml_lloyd._fit import Passes
from sparkml_lloyd._transport import BlockSource, open_passes, session_jobs

logger = logging.getLogger("sparkml_lloyd")


def _prepare_task(batches: Iterable[pa.RecordBatch], **prep: Any) -> Iterator[pa.RecordBatch]:
    """mapInArrow body on an executor: the partition's index from its task context."""
    ctx = TaskContext.get()
    yield from _prepare.prepare_partition(batches, ctx.partitionId() if ctx else 0, **prep)


def _unpickle(row: Any) -> tuple:
    return pickle.loads(row[0])


def _delete_partition_files(items: Iterable[tuple], fit_id: str) -> None:
    for handle, _ in items:
        if handle is not None:
            blockstore.delete(handle)
    blockstore.delete_fit(fit_id)


class Blocks:
    """A fit's data: cached handles to host-local blocks (:attr:`source`, with the lineage to
    rebuild any block). :meth:`release` deletes the files and unpersists the handles."""

    def __init__(self, df: DataFrame, **prep: Any) -> None:
        self.fit_id = uuid.uuid4().hex
        handles = df.mapInArrow(
            partial(_prepare_task, fit_id=self.fit_id, **prep), _prepare.OUTPUT_SCHEMA
        ).rdd.map(_unpickle)
        lineage = df.mapInArrow(
            partial(_prepare_task, fit_id=None, **prep), _prepare.OUTPUT_SCHEMA
        ).rdd.map(_unpickle)
        handles.persist(StorageLevel.MEMORY_ONLY)
        self.source = BlockSource(handles, lineage)
        self.materialized = False

    def findings(self) -> _prepare.Findings:
        """The preparation pass: writes every block to its host; the merged findings."""
        self.materialized = True
        return _prepare.Findings.merged(
            self.source.handles.map(lambda item: item[1]).collect())

    def release(self) -> None:
        """Delete the host-local files and unpersist the handles."""
        handles = self.source.handles
        try:
            if self.materialized:
                handles.foreachPartition(partial(_delete_partition_files, fit_id=self.fit_id))
        except Exception:  # the fit's own error (if any) matters more
            logger.warning("could not delete every block file of fit %s", self.fit_id)
        finally:
            blockstore.delete_fit(self.fit_id)  # the driver's host (all of it in local mode)
            handles.unpersist()


def task_slots(sc: Any) -> int:
    """Tasks that can run at once: the default parallelism (total cores) over
    ``spark.task.cpus``. The executor loop needs one slot per partition."""
    try:
        task_cpus = max(1, int(sc.getConf().get("spark.task.cpus", "1")))
    except ValueError:
        task_cpus = 1
    return max(1, sc.defaultParallelism // task_cpus)


def _check_memory(sc: Any, plan: _memory.Plan, hosts: _memory.Hosts | None) -> None:
    """:func:`sparkml_lloyd._memory.check` with the driver's and its JVM's figures."""
    try:
        runtime = sc._jvm.java.lang.Runtime.getRuntime()
        jvm: int | None = int(runtime.maxMemory() - runtime.totalMemory()
                              + runtime.freeMemory())
    except Exception:  # no figure to compare with
        jvm = None
    _memory.check(plan, _memory.available_bytes(), jvm, hosts, socket.gethostname())


def fit_many(df: DataFrame, cfgs: list[_fit.FitConfig],
             on_iteration: list[_fit.IterationCallback | None],
             ) -> list[_fit.FitResult | ValueError]:
    """Lloyd's k-means over ``df`` on classic Spark (see the module docstring): the fits of
    ``cfgs`` (sharing :func:`~sparkml_lloyd._fit.preparation_key`) from one preparation of
    the data, advancing in the same passes (:func:`sparkml_lloyd._fit.run_many`). A fit the
    data cannot serve gives its ``ValueError``; problems of the data itself raise."""
    cfg = cfgs[0]
    prep = _fit.shared_preparation(cfgs)
    source = _schema.fit_input(df, cfg.features_col, cfg.weight_col)
    sc = df.sparkSession.sparkContext
    slots = task_slots(sc)
    if source.rdd.getNumPartitions() > slots:
        source = source.coalesce(slots)
    partitions = source.rdd.getNumPartitions()
    known = [c.initial_centers.shape[1] for c in cfgs if c.initial_centers is not None]
    known_d = known[0] if known else _schema.declared_length(df, cfg.features_col)
    if known_d is not None:  # the driver's share, before any job
        _check_memory(sc, _fit.memory_plan_many(cfgs, known_d, partitions, None), None)
    data = Blocks(source, **prep)
    passes: Passes | None = None
    with session_jobs(sc, df.sparkSession):  # interruptAll() reaches the passes too
        try:
            found = data.findings()
            for c in cfgs:
                _fit.check_data(found, c)
            plan = _fit.memory_plan_many(cfgs, next(iter(found.lengths)), partitions, found)
            _check_memory(sc, plan, found.hosts)
            logger.info("block files of this fit: %s", found.hosts.describe())
            passes = open_passes(data.source, df.sparkSession.conf.get)
            return _fit.run_many(passes, found, cfgs, on_iteration)
        finally:
            if passes is not None:
                passes.close()
            data.release()
