"""Pass transport on classic Spark: how a pass function reaches every partition's blocks.

A *pass* is a module-level function ``fn(blocks, array, **kwargs)`` (those of
:mod:`sparkml_lloyd._passes`); :meth:`Passes.run` runs it on every partition's blocks and
returns the partitions' results in partition order. Nothing here knows what the functions
compute. Two transports, in layers (see docs/design.md):

* :class:`JobPerPass`: one Spark job per pass (broadcast the array, ``mapPartitions`` over
  the cached block handles, ``collect``); a partition whose blocks are not on its task's host
  is recomputed from the source lineage.
* :class:`ExecutorLoop`: one long Spark job whose tasks map their blocks once and answer
  every pass over a socket (:mod:`sparkml_lloyd._loop`); any trouble hands the rest of the fit
  to :class:`JobPerPass`. Same functions on the same blocks: the same bits.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import scipy.sparse as sp
from pyspark import RDD, SparkContext, TaskContext

from sparkml_lloyd import _blockstore as blockstore
from sparkml_lloyd import _loop
from sparkml_lloyd._fit import Passes

logger = logging.getLogger("sparkml_lloyd")

#: Spark conf keys of the executor loop (see docs/user-guide.md).
CONF_LOOP = "spark.sparkml_lloyd.executorLoop.enabled"
CONF_LOOP_TIMEOUT = "spark.sparkml_lloyd.executorLoop.connectTimeout"

Block = tuple[Any, "np.ndarray | None"]


def as_rows(centers: Any) -> Any:
    """A pass's array argument as it travels: contiguous float64, or a CSR matrix as it is;
    for :func:`~sparkml_lloyd._passes.many_pass`, its list of requests, each one's so."""
    if isinstance(centers, list):
        return [(fn, as_rows(c), kw) for fn, c, kw in centers]
    return centers if sp.issparse(centers) else np.ascontiguousarray(centers, dtype=np.float64)


@dataclass
class BlockSource:
    """The fit's data as Spark sees it: ``handles``, a cached RDD of ``(Handle, _)`` per
    block, and ``lineage``, the same partitions recomputed as ``(x, w)`` blocks."""

    handles: RDD
    lineage: RDD

    @property
    def sc(self) -> SparkContext:
        return self.handles.context


# --------------------------------------------------------------------------------------
# Executor side
# --------------------------------------------------------------------------------------

_MISS = "sparkml_lloyd:block-not-on-this-host"
_THREADPOOLS: Any = None


def _blas_threads() -> Any:
    """Limit BLAS to the task's cores: one Python worker per core must not oversubscribe."""
    global _THREADPOOLS
    if _THREADPOOLS is None:
        from threadpoolctl import ThreadpoolController

        _THREADPOOLS = ThreadpoolController()
    ctx = TaskContext.get()
    return _THREADPOOLS.limit(limits=ctx.cpus() if ctx else 1, user_api="blas")


def _open_blocks(items: Iterable[tuple]) -> list[Block] | None:
    """The partition's blocks mapped from this host, or None if any is not here. (A block
    without a handle had no valid row: nothing was written for it, nothing is missing.)"""
    blocks = []
    for handle, _ in items:
        if handle is None:
            continue
        block = blockstore.open_block(handle)
        if block is None:
            return None
        blocks.append(block)
    return blocks


def _task_on_handles(
    index: int, items: Iterable[tuple], fn: Callable[..., Any], centers_bc: Any,
    kwargs: dict[str, Any],
) -> Iterator[tuple[int, Any]]:
    blocks = _open_blocks(items)
    if blocks is None:
        yield index, _MISS
        return
    with _blas_threads():
        yield index, fn(blocks, centers_bc.value, **kwargs)


def _task_on_data(
    index: int, items: Iterable[tuple], fn: Callable[..., Any], centers_bc: Any,
    kwargs: dict[str, Any],
) -> Iterator[tuple[int, Any]]:
    with _blas_threads():
        yield index, fn(list(items), centers_bc.value, **kwargs)


def _task_loop(
    index: int, items: Iterable[tuple], address: tuple[str, int], token: str,
) -> Iterator[int]:
    """The executor loop's task: map the blocks once, then answer passes (see _loop). Each
    pass is a message ``(fn, centers, kwargs)``: a pass function (sent by reference, as
    pickle does with module-level functions) and its arguments."""
    blocks = _open_blocks(items)

    def compute(message: tuple[Callable[..., Any], np.ndarray, dict[str, Any]]) -> Any:
        fn, centers, kwargs = message
        with _blas_threads():
            return fn(blocks, centers, **kwargs)

    yield _loop.serve(address, token, index, compute if blocks is not None else None)


# --------------------------------------------------------------------------------------
# Driver side
# --------------------------------------------------------------------------------------


class JobPerPass:
    """One Spark job per pass."""

    def __init__(self, source: BlockSource) -> None:
        self.source = source

    def run(self, fn: Callable[..., Any], centers: Any, **kwargs: Any) -> list[Any]:
        """Broadcast ``centers``, run ``fn`` on every partition's blocks, collect (in partition
        order), destroy the broadcast. A partition whose blocks are not on the task's host
        is recomputed from the lineage."""
        sc = self.source.sc
        bc = sc.broadcast(as_rows(centers))
        try:
            task = partial(_task_on_handles, fn=fn, centers_bc=bc, kwargs=kwargs)
            results = dict(self.source.handles.mapPartitionsWithIndex(task).collect())
            missing = sorted(i for i, r in results.items() if isinstance(r, str) and r == _MISS)
            if missing:
                logger.warning("recomputing %d partition(s) from the source: their blocks "
                               "were not on the task's host", len(missing))
                again = partial(_task_on_data, fn=fn, centers_bc=bc, kwargs=kwargs)
                rdd = self.source.lineage.mapPartitionsWithIndex(again)
                results.update(sc.runJob(rdd, lambda it: it, missing))
            return [results[i] for i in sorted(results)]
        finally:
            bc.destroy()

    def close(self) -> None:
        """Nothing to release: every pass cleans up after itself."""


class ExecutorLoop:
    """The passes in one long Spark job (see :mod:`sparkml_lloyd._loop`), when it can start,
    else and after any trouble with it, in ``fallback`` (one job per pass). :meth:`close` ends
    the loop's job."""

    #: Seconds a loop task may wait for a task slot before the fit gives up the loop (another
    #: job holds the cores, e.g. a parallel fit of a CrossValidator).
    STALL_SECONDS = 2.0

    def __init__(self, source: BlockSource, fallback: Passes, connect_timeout: float) -> None:
        self.source = source
        self.fallback = fallback
        self.coordinator: _loop.Coordinator | None = None
        self.thread: threading.Thread | None = None
        self.tag = f"sparkml_lloyd-loop-{uuid.uuid4().hex}"
        #: The exception that cancelled the loop's job, when someone cancelled it: the fit
        #: ends with it rather than going on with one job per pass.
        self.cancelled: BaseException | None = None
        self._pending_since: float | None = None
        self._start(connect_timeout)

    def _start(self, connect_timeout: float) -> None:
        from pyspark import InheritableThread

        sc = self.source.sc
        host = sc.getConf().get("spark.driver.host", "127.0.0.1")
        bind = sc.getConf().get("spark.driver.bindAddress", host)
        try:
            coordinator = _loop.Coordinator(
                self.source.handles.getNumPartitions(), bind, host, connect_timeout)
        except OSError as exc:
            logger.warning("executor loop not started (cannot listen on %s: %s); one Spark "
                           "job per pass", bind, exc)
            return
        task = partial(_task_loop, address=coordinator.address, token=coordinator.token)
        rdd = self.source.handles.mapPartitionsWithIndex(task)

        def job() -> None:
            sc.addJobTag(self.tag)
            try:
                rdd.collect()
            except Exception as exc:  # the socket side notices; the per-pass jobs redo it
                logger.debug("executor loop job ended with %s", exc)
                if self.coordinator is not None and is_cancellation(exc):
                    self.cancelled = exc  # by the user (cancelAllJobs, interruptAll...)
            finally:
                sc.removeJobTag(self.tag)

        self.coordinator = coordinator
        self.thread = InheritableThread(job, daemon=True)
        self.thread.start()
        try:
            coordinator.wait_for_tasks(problem=self._startup_problem)
        except _loop.LoopBroken as exc:
            self._fall_back(exc)

    def _job_problem(self) -> str | None:
        if self.thread is None or not self.thread.is_alive():
            return "the loop's Spark job ended"
        return None

    def _startup_problem(self) -> str | None:
        """The job ended, or some of its tasks have waited too long for a task slot."""
        problem = self._job_problem()
        if problem:
            return problem
        now = time.monotonic()
        if self._pending_since is not None and now - self._pending_since > self.STALL_SECONDS:
            return (f"some of its tasks found no free task slot for {self.STALL_SECONDS:g} s "
                    "(other jobs hold the cores)")
        if self._pending_tasks() > 0:
            self._pending_since = self._pending_since or now
        else:
            self._pending_since = None
        return None

    def _pending_tasks(self) -> int:
        """Tasks of the loop's job not yet started (waiting for a slot); 0 when Spark's status
        tracker cannot tell (then only the connect timeout ends a stalled start)."""
        sc = self.source.sc
        try:
            tracker = sc.statusTracker()
            pending = 0
            for job_id in sc._jsc.sc().statusTracker().getJobIdsForTag(self.tag):
                job = tracker.getJobInfo(job_id)
                for stage_id in job.stageIds if job else ():
                    stage = tracker.getStageInfo(stage_id)
                    if stage:
                        pending += (stage.numTasks - stage.numActiveTasks
                                    - stage.numCompletedTasks)
        except Exception as exc:  # py4j or a status API this Spark does not have
            logger.debug("cannot read the loop job's task status: %s", exc)
            return 0
        return pending

    def run(self, fn: Callable[..., Any], centers: Any, **kwargs: Any) -> list[Any]:
        """One pass of ``fn`` at ``centers``: every partition's result, in partition order."""
        centers = as_rows(centers)
        if self.cancelled is not None:  # the tasks may still answer: Spark only marks them
            self.close()
            raise self.cancelled
        if self.coordinator is not None:
            try:
                return self.coordinator.step((fn, centers, kwargs), problem=self._job_problem)
            except _loop.LoopBroken as exc:
                self._fall_back(exc)
        return self.fallback.run(fn, centers, **kwargs)

    def _fall_back(self, exc: Exception) -> None:
        """Go on with one job per pass; unless the loop's job was cancelled (its thread is
        given a moment to say so): then raise what cancelled it."""
        thread = self.thread
        if thread is not None:
            thread.join(timeout=CANCEL_WAIT_SECONDS)
        if self.cancelled is not None:
            self.close()
            raise self.cancelled
        logger.warning("executor loop stopped (%s); going on with one Spark job per pass", exc)
        self.close()

    def close(self) -> None:
        """Stop the loop's tasks and wait for its job to end (idempotent)."""
        coordinator, self.coordinator = self.coordinator, None
        thread, self.thread = self.thread, None
        if coordinator is None or thread is None:
            return
        coordinator.close()  # connected tasks return at once
        thread.join(timeout=2.0)
        if thread.is_alive():  # a task that never connected is still waiting for a slot
            self.source.sc.cancelJobsWithTag(self.tag)
            thread.join(timeout=30.0)


#: How long a broken loop waits for its job's thread to tell a cancellation from other trouble.
CANCEL_WAIT_SECONDS = 2.0


def is_cancellation(exc: BaseException) -> bool:
    """Whether a Spark job failed because it was cancelled (``SparkContext.cancelAllJobs``,
    ``cancelJobGroup``, ``cancelJobsWithTag``, ``SparkSession.interruptAll`` ...): Spark's
    message is ``Job N cancelled ...``."""
    return "cancelled" in str(exc).lower()


@contextmanager
def session_jobs(sc: SparkContext, session: Any) -> Iterator[None]:
    """Tag the Spark jobs this thread (and the threads it starts) runs with ``session``'s
    job tag, so that ``SparkSession.interruptAll()`` cancels them as it does the session's
    SQL queries (classic Spark 4+; Spark adds that tag to SQL executions only, not to RDD
    jobs such as the passes)."""
    try:
        tag = str(session._jsparkSession.sessionJobTag())
    except Exception:  # Spark 3.5 (interruptAll is Connect's there), or no JVM session
        tag = None
    added = tag is not None and tag not in sc.getJobTags()
    if added:
        sc.addJobTag(tag)
    try:
        yield
    finally:
        if added:
            sc.removeJobTag(tag)


def open_passes(source: BlockSource, conf: Callable[[str, str], str]) -> Passes:
    """The fastest transport ``conf`` (the session's ``spark.conf.get``) allows: the executor
    loop over one job per pass, or, with ``spark.sparkml_lloyd.executorLoop.enabled=false``,
    one job per pass alone."""
    jobs = JobPerPass(source)
    if conf(CONF_LOOP, "true").strip().lower() != "true":
        return jobs
    return ExecutorLoop(source, jobs, float(conf(CONF_LOOP_TIMEOUT, "10")))
