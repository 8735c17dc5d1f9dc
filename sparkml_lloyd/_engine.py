"""Spark plumbing for Lloyd's algorithm: all RDD, broadcast and Arrow code lives here.

Driver side:
    :func:`fit` validates the input schema, writes every partition's numpy block once to its
    host's shared memory in one pass (which also validates every row and draws the seeding
    sample) and caches only small handles (:class:`_Blocks`), then runs the initialisation's
    passes and the iterations in the executor loop (:class:`_Passes`: one long job whose tasks
    answer every pass over a socket; else one job per pass, where a pass that misses a block
    recomputes it from the source lineage), takes a final pass for the cost and sizes, and
    releases everything it cached, broadcast or wrote, on success or failure. See
    docs/design.md.

Executor side:
    module-level functions (``_prep_partition``, the ``*_pass`` functions, ``_task_*``)
    that receive plain arrays and call :mod:`sparkml_lloyd._kernel`. No closure captures an
    estimator or model.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel, TaskContext
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkml_lloyd import _blockstore as blockstore
from sparkml_lloyd import _kernel as K
from sparkml_lloyd import _loop

logger = logging.getLogger("sparkml_lloyd")

#: Rows per cached block: big enough for BLAS, small enough to pickle cheaply.
BLOCK_ROWS = 65536
#: ... and at most this many bytes of features per block.
BLOCK_BYTES = 32 << 20
#: Random streams of :func:`sparkml_lloyd._kernel.row_uniforms`.
_STREAM_SAMPLE = 0  # first center (k-means||) and the "random" init sample
_STREAM_TOPUP = 1_000_000  # extra distinct points when the sample has too few


# --------------------------------------------------------------------------------------
# Configuration and results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitConfig:
    """Validated parameters of one fit (see ``LloydKMeans``)."""

    k: int
    max_iter: int
    tol: float
    seed: int
    init_mode: str
    init_steps: int
    distance: str
    features_col: str
    weight_col: str | None
    initial_centers: np.ndarray | None


@dataclass
class FitResult:
    """What :func:`fit` returns to the estimator."""

    centers: np.ndarray
    num_iter: int
    cost_history: list[float]
    cluster_sizes: list[int]
    num_features: int
    num_rows: int
    training_cost: float = field(init=False)

    def __post_init__(self) -> None:
        self.training_cost = self.cost_history[-1]


# --------------------------------------------------------------------------------------
# Schema checks (no Spark job)
# --------------------------------------------------------------------------------------

_FEATURE_FIX = (
    "Use a vector column (pyspark.ml.linalg, e.g. from VectorAssembler) or an "
    "array<double>/array<float> column."
)


def features_kind(df: DataFrame, col: str, param: str = "featuresCol") -> str:
    """``"vector"`` or ``"array"``; a clear error for a missing or wrongly typed column."""
    if col not in df.columns:
        raise ValueError(
            f"{param}={col!r} is not a column of the DataFrame (columns: {df.columns}). "
            f"Set {param} to the column holding the feature vectors."
        )
    dtype = df.schema[col].dataType
    if isinstance(dtype, VectorUDT):
        return "vector"
    if isinstance(dtype, T.ArrayType) and isinstance(
        dtype.elementType, (T.DoubleType, T.FloatType)
    ):
        return "array"
    raise TypeError(
        f"{param}={col!r} has type {dtype.simpleString()}, which is not a feature vector. "
        + _FEATURE_FIX
    )


def check_weight_column(df: DataFrame, col: str) -> None:
    if col not in df.columns:
        raise ValueError(
            f"weightCol={col!r} is not a column of the DataFrame (columns: {df.columns}). "
            "Set weightCol to a numeric column, or clear it to weight every row 1."
        )
    dtype = df.schema[col].dataType
    if not isinstance(dtype, T.NumericType):
        raise TypeError(
            f"weightCol={col!r} has type {dtype.simpleString()}; weights must be numeric "
            "(cast the column to double)."
        )


def features_as_array(df: DataFrame, col: str, param: str = "featuresCol") -> Column:
    """The features column as ``array<double>`` (dense), for Arrow.

    (A vector column could also go to Arrow as its struct storage, but Spark's conversion of
    UDT values to Arrow measured ~10x slower than ``vector_to_array`` here.)"""
    if features_kind(df, col, param) == "vector":
        # vector_to_array raises (a Py4JJavaError) on a null vector: keep null rows null, so
        # that fit reports them and transform predicts null for them.
        return F.when(F.col(col).isNotNull(), vector_to_array(F.col(col), "float64"))
    return F.col(col).cast(T.ArrayType(T.DoubleType()))


# --------------------------------------------------------------------------------------
# Arrow -> numpy (executor side)
# --------------------------------------------------------------------------------------


def _np(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def arrow_to_matrix(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A ``list<double>`` Arrow array as a dense ``(rows, d)`` matrix.

    Returns the matrix of the non-null rows, a boolean mask of null rows, and the sorted
    distinct lengths seen among the non-null rows (more than one: the matrix is empty).
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    nulls = _np(arr.is_null())
    valid = arr.filter(pa.array(~nulls)) if nulls.any() else arr
    lengths = _np(valid.value_lengths())
    distinct = np.unique(lengths).tolist() if len(lengths) else []
    if len(distinct) > 1:
        return np.empty((0, 0)), nulls, distinct
    d = distinct[0] if distinct else 0
    values = _np(valid.flatten())
    # Null elements inside a vector come through as NaN and are reported as non-finite.
    return np.asarray(values, dtype=np.float64).reshape(len(valid), d), nulls, distinct


def _rows_hash(x: np.ndarray) -> np.ndarray:
    """A 64-bit hash of every row's exact bits: the row's identity for seeding."""
    bits = np.ascontiguousarray(x).view(np.uint64)
    h = np.full(x.shape[0], 0x243F6A8885A308D3, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(bits.shape[1]):
            h ^= bits[:, j]
            h *= np.uint64(0x9E3779B97F4A7C15)
            h ^= h >> np.uint64(29)
    return h


def _row_keys(x: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """Uniforms in [0, 1) fixed by the row's content, the seed and the stream."""
    return K.row_uniforms(seed, stream, _rows_hash(x))


def _lowest_keys(x: np.ndarray, keys: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` rows with the smallest keys (ascending)."""
    idx = np.argpartition(keys, m)[:m] if len(keys) > m else np.arange(len(keys))
    idx = idx[np.argsort(keys[idx], kind="stable")]
    return x[idx].copy(), keys[idx].copy()


@dataclass
class _Diag:
    """Per-block findings of the preparation pass; merged on the driver."""

    rows: int = 0
    nulls: int = 0
    nonfinite: int = 0
    zero_norm: int = 0
    lengths: set[int] = field(default_factory=set)
    w_null: int = 0
    w_negative: int = 0
    w_nonfinite: int = 0
    w_sum: float = 0.0
    sample_x: list[np.ndarray] = field(default_factory=list)
    sample_keys: list[np.ndarray] = field(default_factory=list)

    def add(self, other: _Diag) -> None:
        for name in ("rows", "nulls", "nonfinite", "zero_norm", "w_null", "w_negative",
                     "w_nonfinite", "w_sum"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.lengths |= other.lengths
        self.sample_x += other.sample_x
        self.sample_keys += other.sample_keys


def _prep_partition(
    batches: Iterable[pa.RecordBatch],
    has_weight: bool,
    cosine: bool,
    seed: int,
    sample_size: int,
    fit_id: str | None,
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: the Arrow batches of one partition -> blocks, one output row each.

    With ``fit_id`` (the fit's first pass) every valid block is written to host-local storage
    and the row holds ``(Handle, _Diag)``; without it (the lineage path, used on a miss) the
    row holds the block itself, ``(x, w)``.
    """
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    ctx = TaskContext.get()
    partition = ctx.partitionId() if ctx else 0
    if fit_id is not None:
        blockstore.sweep_orphans()

    def flush() -> pa.RecordBatch:
        table = pa.Table.from_batches(pending)
        x, nulls, lengths = arrow_to_matrix(table.column("f"))
        diag = _Diag(nulls=int(nulls.sum()), lengths=set(lengths))
        w = None
        if has_weight:
            wcol = table.column("w").combine_chunks()
            wnull = _np(wcol.is_null())
            diag.w_null = int((wnull & ~nulls).sum())
            w = np.asarray(_np(wcol.fill_null(0.0)), dtype=np.float64)
            w = w[~nulls]
        if len(lengths) <= 1 and x.shape[0]:
            finite = np.isfinite(x).all(axis=1)
            diag.nonfinite = int((~finite).sum())
            if cosine:
                diag.zero_norm = int((K.row_norms_sq(x) == 0.0).sum())
                x = K.normalize_rows(x)
            if w is not None:
                diag.w_negative = int((w < 0).sum())
                diag.w_nonfinite = int((~np.isfinite(w)).sum())
                diag.w_sum = float(w[np.isfinite(w)].sum())
            else:
                diag.w_sum = float(x.shape[0])
            diag.rows = x.shape[0]
            if fit_id is not None and diag.nonfinite == 0 and diag.zero_norm == 0:
                # The seeding sample is needed once, not on the lineage (miss) path.
                eligible = x if w is None else x[w > 0]
                sx, sk = _lowest_keys(eligible, _row_keys(eligible, seed, _STREAM_SAMPLE),
                                      sample_size)
                diag.sample_x, diag.sample_keys = [sx], [sk]
        if fit_id is None:
            payload: tuple = (x, w)
        else:
            valid = len(lengths) <= 1 and x.shape[0] > 0
            handle = blockstore.write(fit_id, partition, x, w) if valid else None
            payload = (handle, diag)
        blob = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        return pa.RecordBatch.from_arrays([pa.array([blob], pa.binary())], ["blob"])

    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        pending_rows += batch.num_rows
        if pending_rows >= BLOCK_ROWS or sum(b.nbytes for b in pending) >= BLOCK_BYTES:
            yield flush()
            pending, pending_rows = [], 0
    if pending:
        yield flush()


def _unpickle(row: Any) -> tuple:
    return pickle.loads(row[0])


# --------------------------------------------------------------------------------------
# Passes over the blocks (executor side). Each takes the partition's blocks as a list of
# (x, w) and the broadcast centers' value, and returns one small picklable result.
# --------------------------------------------------------------------------------------

Block = tuple[np.ndarray, "np.ndarray | None"]


def _stats_pass(
    blocks: list[Block], centers: np.ndarray, distance: str, backwards: bool = False
) -> K.BlockStats:
    """Partial statistics of a partition. ``backwards`` visits the blocks last to first: a
    fit alternates the direction every iteration, so the blocks a pass read last, still in
    the CPU's cache, are the first the next pass reads (a partition larger than the cache,
    read in the same order every time, would find none of its blocks there). The parts are
    merged in block order either way: same bits in both directions."""
    parts = [K.block_stats(x, w, centers, distance)
             for x, w in (blocks[::-1] if backwards else blocks)]
    if backwards:
        parts.reverse()
    return K.merge_stats(parts, centers.shape[0], centers.shape[1])


def _cost_pass(blocks: list[Block], centers: np.ndarray, distance: str) -> float:
    total = 0.0
    for x, w in blocks:
        _, dist = K.nearest(x, centers, distance)
        total += float(dist.sum() if w is None else dist @ w)
    return total


def _sample_pass(
    blocks: list[Block], centers: np.ndarray, distance: str, seed: int, stream: int,
    factor: float,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """k-means|| step: keep each row with probability min(1, factor * w * cost)."""
    out = []
    for x, w in blocks:
        _, dist = K.nearest(x, centers, distance)
        p = dist * factor if w is None else dist * w * factor
        keys = _row_keys(x, seed, stream)
        keep = keys < p
        if keep.any():
            out.append((x[keep], keys[keep]))
    return out


def _topup_pass(
    blocks: list[Block], centers: np.ndarray, distance: str, seed: int, m: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows not equal to any current center (distance > 0, weight > 0), lowest keys first."""
    out = []
    for x, w in blocks:
        _, dist = K.nearest(x, centers, distance)
        far = dist > 0 if w is None else (dist > 0) & (w > 0)
        if far.any():
            xs = x[far]
            out.append(_lowest_keys(xs, _row_keys(xs, seed, _STREAM_TOPUP), m))
    return out


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
    """The partition's blocks mapped from this host, or None if any is not here."""
    blocks = []
    for handle, _ in items:
        block = blockstore.open_block(handle) if handle is not None else None
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
    pass is a message ``(fn, centers, kwargs)``: one of the ``*_pass`` functions above (sent
    by reference, as pickle does with module-level functions) and its arguments."""
    blocks = _open_blocks(items)

    def compute(message: tuple[Callable[..., Any], np.ndarray, dict[str, Any]]) -> Any:
        fn, centers, kwargs = message
        with _blas_threads():
            return fn(blocks, centers, **kwargs)

    yield _loop.serve(address, token, index, compute if blocks is not None else None)


def _delete_partition_files(items: Iterable[tuple], fit_id: str) -> None:
    for handle, _ in items:
        if handle is not None:
            blockstore.delete(handle)
    blockstore.delete_fit(fit_id)


# --------------------------------------------------------------------------------------
# Driver side
# --------------------------------------------------------------------------------------


class _Blocks:
    """The fit's data: cached handles to host-local blocks, plus the lineage to rebuild any
    block from the source. Everything is released by :meth:`release`."""

    def __init__(self, source: DataFrame, **prep: Any) -> None:
        self.spark = source.sparkSession
        self.sc = self.spark.sparkContext
        self.fit_id = uuid.uuid4().hex
        self.handles = source.mapInArrow(
            partial(_prep_partition, fit_id=self.fit_id, **prep), "blob binary"
        ).rdd.map(_unpickle)
        self.lineage = source.mapInArrow(
            partial(_prep_partition, fit_id=None, **prep), "blob binary"
        ).rdd.map(_unpickle)
        self.handles.persist(StorageLevel.MEMORY_ONLY)
        self.materialized = False
        self.misses = 0

    def diagnostics(self) -> list[_Diag]:
        """The first pass: writes every block to its host, returns the per-block findings."""
        self.materialized = True
        return self.handles.map(lambda item: item[1]).collect()

    def run(self, fn: Callable[..., Any], centers: np.ndarray, **kwargs: Any) -> list[Any]:
        """One pass: broadcast ``centers``, run ``fn`` on every partition's blocks, collect
        (in partition order), destroy the broadcast. A partition whose blocks are not on the
        task's host is recomputed from the lineage."""
        bc = self.sc.broadcast(np.ascontiguousarray(centers, dtype=np.float64))
        try:
            task = partial(_task_on_handles, fn=fn, centers_bc=bc, kwargs=kwargs)
            results = dict(self.handles.mapPartitionsWithIndex(task).collect())
            missing = sorted(i for i, r in results.items() if isinstance(r, str) and r == _MISS)
            if missing:
                self.misses += len(missing)
                logger.warning("recomputing %d partition(s) from the source: their blocks "
                               "were not on the task's host", len(missing))
                again = partial(_task_on_data, fn=fn, centers_bc=bc, kwargs=kwargs)
                rdd = self.lineage.mapPartitionsWithIndex(again)
                results.update(self.sc.runJob(rdd, lambda it: it, missing))
            return [results[i] for i in sorted(results)]
        finally:
            bc.destroy()

    def release(self) -> None:
        """Delete the host-local files and unpersist the handles."""
        try:
            if self.materialized:
                self.handles.foreachPartition(
                    partial(_delete_partition_files, fit_id=self.fit_id))
        except Exception:  # the fit's own error (if any) matters more
            logger.warning("could not delete every block file of fit %s", self.fit_id)
        finally:
            blockstore.delete_fit(self.fit_id)  # the driver's host (all of it in local mode)
            self.handles.unpersist()


#: Spark conf keys of the executor loop (see docs/user-guide.md).
CONF_LOOP = "spark.sparkml_lloyd.executorLoop.enabled"
CONF_LOOP_TIMEOUT = "spark.sparkml_lloyd.executorLoop.connectTimeout"


class _Passes:
    """The passes of a fit over its blocks: the initialisation's and every iteration's.

    Runs them in the executor loop (one long Spark job whose tasks answer every pass over a
    socket, see :mod:`sparkml_lloyd._loop`) when it can, else as one Spark job per pass
    (:meth:`_Blocks.run`). Any trouble with the loop moves to jobs for the rest of the fit;
    both give the same bits. :meth:`close` ends the loop's job.
    """

    #: Seconds a loop task may wait for a task slot before the fit gives up the loop (another
    #: job holds the cores, e.g. a parallel fit of a CrossValidator).
    STALL_SECONDS = 2.0

    def __init__(self, data: _Blocks) -> None:
        self.data = data
        self.coordinator: _loop.Coordinator | None = None
        self.thread: threading.Thread | None = None
        self.tag = f"sparkml_lloyd-loop-{uuid.uuid4().hex}"
        self._pending_since: float | None = None
        conf = data.spark.conf
        if conf.get(CONF_LOOP, "true").strip().lower() == "true":
            self._start(float(conf.get(CONF_LOOP_TIMEOUT, "10")))

    def _start(self, connect_timeout: float) -> None:
        from pyspark import InheritableThread

        sc = self.data.sc
        host = sc.getConf().get("spark.driver.host", "127.0.0.1")
        bind = sc.getConf().get("spark.driver.bindAddress", host)
        try:
            coordinator = _loop.Coordinator(
                self.data.handles.getNumPartitions(), bind, host, connect_timeout)
        except OSError as exc:
            logger.warning("executor loop not started (cannot listen on %s: %s); one Spark "
                           "job per pass", bind, exc)
            return
        task = partial(_task_loop, address=coordinator.address, token=coordinator.token)
        rdd = self.data.handles.mapPartitionsWithIndex(task)

        def job() -> None:
            sc.addJobTag(self.tag)
            try:
                rdd.collect()
            except Exception as exc:  # the socket side notices; the per-pass jobs redo it
                logger.debug("executor loop job ended with %s", exc)
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
        sc = self.data.sc
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

    def run(self, fn: Callable[..., Any], centers: np.ndarray, **kwargs: Any) -> list[Any]:
        """One pass of ``fn`` (a module-level ``*_pass`` function) at ``centers``: every
        partition's result, in partition order."""
        centers = np.ascontiguousarray(centers, dtype=np.float64)
        if self.coordinator is not None:
            try:
                return self.coordinator.step((fn, centers, kwargs), problem=self._job_problem)
            except _loop.LoopBroken as exc:
                self._fall_back(exc)
        return self.data.run(fn, centers, **kwargs)

    def _fall_back(self, exc: Exception) -> None:
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
            self.data.sc.cancelJobsWithTag(self.tag)
            thread.join(timeout=30.0)


def _merge_diagnostics(diags: list[_Diag]) -> _Diag:
    total = _Diag()
    for d in diags:
        total.add(d)
    return total


def _raise_for_data(diag: _Diag, cfg: FitConfig) -> None:
    col, wcol = cfg.features_col, cfg.weight_col
    if diag.nulls:
        raise ValueError(
            f"featuresCol={col!r} has {diag.nulls} null rows. Drop them "
            f"(df.dropna(subset=[{col!r}])) or fill them before fitting."
        )
    if len(diag.lengths) > 1:
        raise ValueError(
            f"featuresCol={col!r} holds vectors of different lengths {sorted(diag.lengths)}; "
            "every row must have the same number of features."
        )
    if diag.rows == 0:
        raise ValueError(
            "The DataFrame has no rows: there is nothing to cluster. Check the filters "
            "or the input path upstream."
        )
    if diag.lengths == {0}:
        raise ValueError(f"featuresCol={col!r} holds empty vectors (0 features).")
    if diag.nonfinite:
        raise ValueError(
            f"featuresCol={col!r} has {diag.nonfinite} rows with NaN, infinite or null values "
            "(a null inside an array counts as NaN). Drop or impute them (e.g. "
            "pyspark.ml.feature.Imputer) before fitting."
        )
    if diag.zero_norm:
        raise ValueError(
            f"featuresCol={col!r} has {diag.zero_norm} all-zero vectors, for which the cosine "
            "distance is undefined. Drop them or use distanceMeasure='euclidean'."
        )
    if wcol:
        if diag.w_null:
            raise ValueError(
                f"weightCol={wcol!r} has {diag.w_null} null values. Fill them (e.g. with 1.0) "
                "or drop those rows."
            )
        if diag.w_nonfinite:
            raise ValueError(
                f"weightCol={wcol!r} has {diag.w_nonfinite} NaN or infinite values; weights "
                "must be finite numbers >= 0."
            )
        if diag.w_negative:
            raise ValueError(
                f"weightCol={wcol!r} has {diag.w_negative} negative values; weights must be "
                ">= 0."
            )
        if diag.w_sum <= 0:
            raise ValueError(
                f"weightCol={wcol!r} is zero for every row; at least one weight must be > 0."
            )


def _distinct_rows(x: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows ordered by key (first occurrence kept)."""
    order = np.argsort(keys, kind="stable")
    x, keys = x[order], keys[order]
    _, first = np.unique(x, axis=0, return_index=True)
    first.sort()
    return x[first], keys[first]


def _too_few_distinct(found: int, k: int) -> ValueError:
    return ValueError(
        f"The data has only {found} distinct points (rows with weight > 0), fewer than "
        f"k={k}. Lower k to at most {found}."
    )


def _fill_to_k(passes: _Passes, centers: np.ndarray, cfg: FitConfig) -> np.ndarray:
    """Add distinct data points (lowest keys first) until there are k centers."""
    while centers.shape[0] < cfg.k:
        found = [f for part in passes.run(_topup_pass, centers, distance=cfg.distance,
                                          seed=cfg.seed, m=cfg.k) for f in part]
        if not found:
            raise _too_few_distinct(centers.shape[0], cfg.k)
        x, _keys = _distinct_rows(np.vstack([f[0] for f in found]),
                                 np.concatenate([f[1] for f in found]))
        centers = np.vstack([centers, x[: cfg.k - centers.shape[0]]])
    return centers


def _init_random(
    passes: _Passes, diag: _Diag, cfg: FitConfig
) -> np.ndarray:
    """k distinct points with the smallest content keys: a uniform sample, seeded."""
    x, _ = _distinct_rows(np.vstack(diag.sample_x), np.concatenate(diag.sample_keys))
    return _fill_to_k(passes, x[: cfg.k], cfg)


def _init_kmeans_parallel(
    passes: _Passes, diag: _Diag, cfg: FitConfig
) -> np.ndarray:
    """k-means|| (Bahmani et al.) as in Spark: a random first center, ``initSteps`` rounds
    sampling about 2k points with probability proportional to weight x cost, then weighted
    k-means++ and 30 local Lloyd iterations on the candidates."""
    sx, sk = np.vstack(diag.sample_x), np.concatenate(diag.sample_keys)
    candidates = sx[[int(np.argmin(sk))]]
    for step in range(cfg.init_steps):
        total = sum(passes.run(_cost_pass, candidates, distance=cfg.distance))
        if total <= 0:
            break
        chosen = [c for part in passes.run(_sample_pass, candidates, distance=cfg.distance,
                                           seed=cfg.seed, stream=step + 1,
                                           factor=2.0 * cfg.k / total) for c in part]
        if chosen:
            new, _ = _distinct_rows(np.vstack([c[0] for c in chosen]),
                                    np.concatenate([c[1] for c in chosen]))
            candidates = np.vstack([candidates, new])
    candidates = np.unique(candidates, axis=0)  # sorted: independent of partition order
    if candidates.shape[0] <= cfg.k:
        return _fill_to_k(passes, candidates, cfg)
    stats = K.merge_stats(
        passes.run(_stats_pass, candidates, distance=cfg.distance),
        candidates.shape[0], candidates.shape[1],
    )
    weights = stats.weights
    keep = weights > 0
    candidates, weights = candidates[keep], weights[keep]
    if candidates.shape[0] <= cfg.k:
        return _fill_to_k(passes, candidates, cfg)
    rng = np.random.default_rng(cfg.seed & 0xFFFFFFFFFFFFFFFF)
    start = K.kmeans_plus_plus(candidates, weights, cfg.k, rng, cfg.distance)
    centers, _ = K.lloyd(candidates, start, 30, 0.0, weights, cfg.distance)
    return centers


def _log_iteration(it: int, stats: K.BlockStats, moves: np.ndarray, centers: np.ndarray) -> None:
    logger.info(
        "iteration %d: cost %.6g, largest center move %.6g, cluster sizes %s",
        it, stats.cost, float(moves.max()), stats.counts.tolist(),
        extra={"iteration": it, "cost": stats.cost, "max_move": float(moves.max()),
               "cluster_sizes": stats.counts.tolist(), "centers": centers.copy()},
    )


def _task_slots(sc: Any) -> int:
    """Tasks that can run at once: the default parallelism (total cores) over
    ``spark.task.cpus``. The executor loop needs one slot per partition."""
    try:
        task_cpus = max(1, int(sc.getConf().get("spark.task.cpus", "1")))
    except ValueError:
        task_cpus = 1
    return max(1, sc.defaultParallelism // task_cpus)


def fit(df: DataFrame, cfg: FitConfig) -> FitResult:
    """Lloyd's k-means over ``df``; see the module docstring."""
    cosine = cfg.distance == K.COSINE
    cols = [features_as_array(df, cfg.features_col).alias("f")]
    if cfg.weight_col:
        check_weight_column(df, cfg.weight_col)
        cols.append(F.col(cfg.weight_col).cast("double").alias("w"))
    source = df.select(*cols)
    sc = df.sparkSession.sparkContext
    slots = _task_slots(sc)
    if source.rdd.getNumPartitions() > slots:
        source = source.coalesce(slots)
    data = _Blocks(source, has_weight=bool(cfg.weight_col), cosine=cosine, seed=cfg.seed,
                   sample_size=cfg.k)
    passes: _Passes | None = None
    try:
        diag = _merge_diagnostics(data.diagnostics())
        _raise_for_data(diag, cfg)
        d = next(iter(diag.lengths))
        _check_initial_centers(cfg, d)
        passes = _Passes(data)
        centers = _initial_centers(passes, diag, cfg)
        stats = K.merge_stats(passes.run(_stats_pass, centers, distance=cfg.distance), cfg.k, d)
        cost_history = [stats.cost]
        it = 0
        while it < cfg.max_iter:
            new, moves = K.update_centers(centers, stats, cfg.distance)
            it += 1
            _log_iteration(it, stats, moves, new)
            if not np.any(moves > 0):
                # Nothing moved: the pass just made already measured these centers.
                cost_history.append(stats.cost)
                break
            centers = new
            # This pass measures the new centers (the cost and sizes of what transform assigns) and
            # gives the sums for the next update.
            stats = K.merge_stats(passes.run(_stats_pass, centers, distance=cfg.distance,
                                             backwards=it % 2 == 1), cfg.k, d)
            cost_history.append(stats.cost)
            if np.all(moves <= cfg.tol):
                break
        logger.info("finished after %d iterations: cost %.6g, cluster sizes %s",
                    it, stats.cost, stats.counts.tolist())
        return FitResult(centers=centers, num_iter=it, cost_history=cost_history,
                         cluster_sizes=stats.counts.tolist(), num_features=d,
                         num_rows=diag.rows)
    finally:
        if passes is not None:
            passes.close()
        data.release()


def _check_initial_centers(cfg: FitConfig, d: int) -> None:
    """Given initialCenters must have the data's number of features (checked before the
    passes start)."""
    c = cfg.initial_centers
    if c is not None and c.shape[1] != d:
        raise ValueError(
            f"initialCenters has {c.shape[1]} columns but the vectors in "
            f"featuresCol={cfg.features_col!r} have {d} features; give centers of {d} "
            "numbers each."
        )


def _initial_centers(passes: _Passes, diag: _Diag, cfg: FitConfig) -> np.ndarray:
    if cfg.initial_centers is not None:
        c = cfg.initial_centers
        return K.normalize_rows(c) if cfg.distance == K.COSINE else c.copy()
    if cfg.init_mode == "random":
        return _init_random(passes, diag, cfg)
    return _init_kmeans_parallel(passes, diag, cfg)


# --------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------
#
# Two paths (see docs/design.md, "Transform"): in classic Spark the assignment runs in the JVM,
# by the UDF of Spark's own KMeansModel holding our centers, guarded for nulls, in one Column
# (:class:`JvmAssigner`); under Spark Connect, where no JVM is reachable, and for large
# models, an Arrow UDF runs the numpy kernel (:func:`prediction_column`).


def check_prediction_input(df: DataFrame, features_col: str, num_features: int) -> str:
    """The checks both transform paths make without a Spark job; returns the column's kind.

    The column must exist and hold vectors or arrays (:func:`features_kind`), and when its ML
    attribute metadata declares a vector length (VectorAssembler's output does), that length
    must be the model's. Without metadata a wrong length is found only at the action.
    """
    kind = features_kind(df, features_col)
    declared = df.schema[features_col].metadata.get("ml_attr", {}).get("num_attrs")
    if declared is not None and declared != num_features:
        raise ValueError(
            f"featuresCol={features_col!r} holds vectors of length {declared} (its ML "
            f"attribute metadata says so) but the model was fitted on {num_features} "
            "features; transform data with the same number of features."
        )
    return kind


#: From this many center values (k x d) on, ``transform`` runs the numpy kernel in an Arrow UDF
#: even where the JVM is reachable: Spark's model assigns row by row (k distance loops of d),
#: ours with BLAS, which at 1e6 x 100 rows and k = 100 took 0.41x the built-in's time where
#: the JVM path takes 1.0x; at k x d = 20 x 20 the JVM path is the faster (0.9x vs 1.1-1.4x).
ARROW_MIN_CENTER_VALUES = 2500


def use_arrow_path(centers: np.ndarray) -> bool:
    """Whether ``transform`` with these centers runs the Arrow UDF (else the JVM model)."""
    return not jvm_reachable() or centers.size >= ARROW_MIN_CENTER_VALUES


def jvm_reachable() -> bool:
    """Whether ``transform`` can run in the JVM: classic Spark (py4j), not Spark Connect.

    Also the switch the tests flip to run the Arrow path in a classic session."""
    from pyspark.sql.utils import is_remote

    return not is_remote()


def unit_centers(centers: np.ndarray, distance: str) -> np.ndarray:
    """The centers as the numpy kernel needs them: unit rows for the cosine measure.

    Fitted cosine centers are unit vectors already; a model built by hand from other centers
    then assigns by the true cosine, as Spark does."""
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    return K.normalize_rows(centers) if distance == K.COSINE else centers


def predict_arrow(arr: pa.Array, centers: np.ndarray, distance: str) -> pa.Array:
    """Cluster index (int32) for every row of a ``list<double>`` Arrow array; null stays null."""
    x, nulls, lengths = arrow_to_matrix(arr)
    d = centers.shape[1]
    bad = [n for n in lengths if n != d]
    if bad:
        raise ValueError(
            f"The features have length {bad[0]} but the model was fitted on {d} features; "
            "transform data with the same number of features."
        )
    if np.isnan(x).any():  # as Spark's model: NaN is an error, an infinity gets a cluster
        raise ValueError(
            "The features contain NaN values (or null elements inside a vector); no cluster "
            "is nearest to them: drop or impute those rows before transform."
        )
    if distance == K.COSINE and x.shape[0] and not K.row_norms_sq(x).all():
        raise ValueError(
            "The cosine distance is not defined for an all-zero vector; drop those rows "
            "before transform or use distanceMeasure='euclidean'."
        )
    labels, _ = K.nearest(x, centers, distance) if x.shape[0] else (np.empty(0, np.int32), None)
    if not nulls.any():
        return pa.array(labels, pa.int32())
    out = np.zeros(len(nulls), dtype=np.int32)
    out[~nulls] = labels
    return pa.array(out, pa.int32(), mask=nulls)


def prediction_column(df: DataFrame, features_col: str, centers: np.ndarray,
                      distance: str) -> Column:
    """A Column of cluster indices computed by a vectorised Arrow UDF (the Spark Connect path).

    Call :func:`check_prediction_input` first: a vector length that differs from the model's
    fails there, eagerly, when the column's ML attribute metadata declares it; otherwise it
    fails at the action, inside the UDF (a PythonException whose message names both lengths).
    """
    from pyspark.sql.functions import arrow_udf

    features = features_as_array(df, features_col)
    centers = unit_centers(centers, distance)

    def predict(arr: pa.Array) -> pa.Array:  # captures plain arrays only
        return predict_arrow(arr, centers, distance)

    return arrow_udf(predict, T.IntegerType())(features)


def mllib_kmeans_model(
    sc: Any, centers: np.ndarray, distance: str, training_cost: float = 0.0, num_iter: int = 0
) -> Any:
    """Spark's ``org.apache.spark.mllib.clustering.KMeansModel`` (a py4j JavaObject) with
    exactly these centers, in a fixed number of py4j calls whatever ``k x d``.

    The centers cross as one pickled list of mllib DenseVectors (their raw float64 bytes),
    which Spark's own SerDe turns into a ``java.util.ArrayList`` of Vectors; the one-argument
    constructor takes that list, and its ``clusterCenters()`` is the ``Vector[]`` the full
    constructor (with the distance measure) needs.
    """
    from pyspark.mllib.linalg import DenseVector as MLlibDenseVector
    from pyspark.serializers import CPickleSerializer

    jvm = sc._jvm
    rows = [MLlibDenseVector(c) for c in np.asarray(centers, dtype=np.float64)]
    jlist = jvm.org.apache.spark.mllib.api.python.SerDe.loads(
        bytearray(CPickleSerializer().dumps(rows))
    )
    mllib = jvm.org.apache.spark.mllib.clustering.KMeansModel
    return mllib(mllib(jlist).clusterCenters(), distance, float(training_cost), int(num_iter))


def prediction_metadata(k: int) -> dict[str, Any]:
    """The ML attribute metadata Spark's KMeansModel gives its prediction column: a nominal
    attribute with ``k`` values (what ``StringIndexer``-style consumers read)."""
    return {"ml_attr": {"num_vals": int(k), "type": "nominal"}}


class JvmAssigner:
    """Assigns in the JVM with Spark's own KMeansModel holding our centers (``mllib_model``,
    from :func:`mllib_kmeans_model`), keeping our behaviour around it, in one Column.

    Spark's model builds its assignment UDF inside ``transform`` and exposes none, so the UDF
    is taken, once per assigner, from the analysed plan of Spark's ``transform`` on an empty
    DataFrame (:func:`spark_prediction_udf`) and set on the user's features column. The
    prediction is then ``CASE WHEN f IS NOT NULL THEN UDF(f) END`` (arrays enter as
    ``array_to_vector(cast(f))``), with Spark's metadata: null rows get null where Spark's
    model would raise; ``CASE WHEN`` is how Spark's docs say to keep a null from a UDF (its
    branches are evaluated only when taken), and for a column whose schema rules out nulls the
    optimizer removes it, leaving the built-in's plan. A ``transform`` is then one
    ``withColumn``: one query analysis, one py4j call, as the built-in's.

    The UDF is read from Spark's internals (the catalyst plan); where it is not the expected
    ``Project [..., ScalaUDF(features) AS prediction]`` (another Spark version),
    :meth:`prediction` returns ``None`` and the model assigns with the Arrow UDF instead,
    after one warning.
    """

    def __init__(self, mllib_model: Any, uid: str, k: int) -> None:
        self.mllib_model, self.uid, self.k = mllib_model, uid, k
        self._udf: Any = None  # Spark's ScalaUDF, or False when it could not be taken
        self._columns: dict[tuple[str, str, str], Column | None] = {}

    def prediction(self, df: DataFrame, features_col: str, kind: str,
                   prediction_col: str) -> Column | None:
        """The prediction Column (aliased ``prediction_col``, with Spark's metadata) for
        ``df``, built once per column names and kind; ``kind`` is what
        :func:`check_prediction_input` returned. ``None`` when Spark's UDF is unavailable."""
        key = (features_col, kind, prediction_col)
        if key not in self._columns:
            self._columns[key] = self._build(df.sparkSession, features_col, kind,
                                             prediction_col)
        return self._columns[key]

    def _build(self, spark: Any, features_col: str, kind: str,
               prediction_col: str) -> Column | None:
        if self._udf is False:
            return None
        try:
            if self._udf is None:
                self._udf = spark_prediction_udf(spark, self.mllib_model, self.uid)
            return self._guarded(spark, features_col, kind, prediction_col)
        except Exception as exc:  # a py4j error or another plan: not worth a failure
            logger.warning("transform: Spark's KMeansModel UDF could not be used (%s); "
                           "assigning with the Arrow UDF instead.", exc)
            self._udf = False
            return None

    def _guarded(self, spark: Any, features_col: str, kind: str,
                 prediction_col: str) -> Column:
        from pyspark.ml.functions import array_to_vector

        jvm = spark.sparkContext._jvm
        source = F.col(features_col)
        features = (array_to_vector(source.cast(T.ArrayType(T.DoubleType())))
                    if kind == "array" else source)
        convert = jvm.org.apache.spark.sql.classic.ExpressionUtils
        assign = self._udf.withNewChildren(
            jvm.PythonUtils.toSeq([convert.expression(features._jc)]))
        return F.when(source.isNotNull(), Column(convert.column(assign))).alias(
            prediction_col, metadata=prediction_metadata(self.k))


def spark_prediction_udf(spark: Any, mllib_model: Any, uid: str) -> Any:
    """The ``ScalaUDF`` expression (a py4j handle) with which Spark's ml KMeansModel around
    ``mllib_model`` assigns: the last item of the analysed plan of its ``transform`` of an
    empty DataFrame, ``Project [features, UDF(features) AS prediction]``. Raises
    ``RuntimeError`` when the plan has another shape."""
    jmodel = spark.sparkContext._jvm.org.apache.spark.ml.clustering.KMeansModel(
        uid, mllib_model)
    jmodel.setFeaturesCol("features").setPredictionCol("prediction")
    empty = spark.createDataFrame([], T.StructType([T.StructField("features", VectorUDT())]))
    plan = jmodel.transform(empty._jdf).queryExecution().analyzed()
    if plan.getClass().getSimpleName() == "Project":
        items = plan.projectList()
        last = items.apply(items.size() - 1)
        if last.getClass().getSimpleName() == "Alias":
            udf = last.child()
            if udf.getClass().getSimpleName() == "ScalaUDF" and udf.children().size() == 1:
                return udf
    raise RuntimeError(f"unexpected plan of KMeansModel.transform: {plan.toString()!r}")


def spark_kmeans_model(
    centers: np.ndarray, distance: str, training_cost: float, num_iter: int, uid: str
) -> Any:
    """The same centers as Spark's own ``pyspark.ml.clustering.KMeansModel`` (JVM-backed)."""
    from pyspark.ml.clustering import KMeansModel
    from pyspark.sql import SparkSession

    sc = SparkSession.active().sparkContext
    mllib_model = mllib_kmeans_model(sc, centers, distance, training_cost, num_iter)
    model = KMeansModel(sc._jvm.org.apache.spark.ml.clustering.KMeansModel(uid, mllib_model))
    model._resetUid(uid)
    model._transfer_params_from_java()
    return model
