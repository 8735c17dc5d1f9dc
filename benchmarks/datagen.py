"""Synthetic Gaussian blobs, generated on the executors and cached as a ``features`` column.

The data of a cell is a pure function of ``(seed, n, d, k)``: rows come in fixed chunks (a
multiple of 16 chunks, so any 1, 2, 4, 8 or 16 partitions split them evenly), and chunk ``i``
is drawn by ``numpy.random.default_rng([seed, n, d, k, i])``. The driver sends only the ``k x d``
blob centers; the rows are drawn inside ``mapInArrow`` from ``spark.range(num_chunks)``, so
nothing of size ``n`` ever leaves the driver.

Overlap. Blob centers are ``N(0, s^2/d)`` per coordinate with ``s =`` :data:`CENTER_SPREAD` and
the blobs are unit Gaussians, so any two centers are about ``s * sqrt(2)`` (about 1.4) standard
deviations apart whatever ``d`` is: the blobs overlap heavily, and Lloyd's algorithm from ``k``
data points needs many iterations before nothing moves (scikit-learn, seed 42: 78 at
(n, d, k) = (1e5, 2, 3), 89 at (1e6, 2, 3), 743 at (1e5, 20, 20); with ``s = 3`` it was 15, 16
and 33), more than the benchmark's ``m2`` (see ``LONGER_RUNS`` in benchmarks/grid.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from benchmarks.grid import Cell

#: Rows per generated chunk at most (memory per Arrow batch: CHUNK_ROWS * d * 8 bytes).
CHUNK_ROWS = 32768
#: The number of chunks is a multiple of this, so common partition counts split evenly.
CHUNK_MULTIPLE = 16
#: Spread of the blob centers, in blob standard deviations (see the module docstring).
CENTER_SPREAD = 1.0


def blob_centers(cell: Cell, seed: int) -> np.ndarray:
    """The ``k x d`` true blob centers of a cell."""
    rng = np.random.default_rng([seed, cell.d, cell.k, 0xB10B])
    return rng.standard_normal((cell.k, cell.d)) * (CENTER_SPREAD / math.sqrt(cell.d))


def num_chunks(n: int) -> int:
    """How many chunks the ``n`` rows are drawn in (a multiple of :data:`CHUNK_MULTIPLE`)."""
    per = CHUNK_ROWS * CHUNK_MULTIPLE
    return CHUNK_MULTIPLE * max(1, -(-n // per))


def chunk_bounds(n: int, chunks: int, i: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of chunk ``i``."""
    return i * n // chunks, (i + 1) * n // chunks


def generate_chunk(cell: Cell, seed: int, centers: np.ndarray, i: int) -> np.ndarray:
    """The rows of chunk ``i`` as a C-contiguous ``(rows, d)`` float64 matrix."""
    chunks = num_chunks(cell.n)
    start, stop = chunk_bounds(cell.n, chunks, i)
    rng = np.random.default_rng([seed, cell.n, cell.d, cell.k, i])
    labels = rng.integers(0, cell.k, size=stop - start)
    x = rng.standard_normal((stop - start, cell.d))
    x += centers[labels]
    return x


def initial_centers(cell: Cell, seed: int) -> np.ndarray:
    """``C0``: the first ``k`` rows of the data (as in the walkthrough), computed on the driver."""
    return generate_chunk(cell, seed, blob_centers(cell, seed), 0)[: cell.k].copy()


def _matrix_to_batch(x: np.ndarray) -> pa.RecordBatch:
    rows, d = x.shape
    offsets = pa.array(np.arange(0, (rows + 1) * d, d, dtype=np.int32))
    values = pa.array(np.ascontiguousarray(x).ravel())
    return pa.RecordBatch.from_arrays([pa.ListArray.from_arrays(offsets, values)], ["features"])


def _generate_partition(
    batches: Iterator[pa.RecordBatch], cell: Cell, seed: int, centers: np.ndarray
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: chunk ids in, one Arrow batch of rows per chunk out."""
    for batch in batches:
        for i in batch.column(0).to_numpy(zero_copy_only=False):
            yield _matrix_to_batch(generate_chunk(cell, seed, centers, int(i)))


@dataclass
class BlobData:
    """A generated, cached and counted cell."""

    cell: Cell
    df: DataFrame
    #: The initial centers every C0-started competitor is given.
    c0: np.ndarray
    #: Seconds to generate, cache and count it.
    seconds: float

    def unpersist(self) -> None:
        self.df.unpersist(blocking=True)


def generate(spark: SparkSession, cell: Cell, seed: int, partitions: int) -> BlobData:
    """Generate the cell on the executors, cache it, count it (the count is checked)."""
    t0 = time.perf_counter()
    centers = blob_centers(cell, seed)
    body = partial(_generate_partition, cell=cell, seed=seed, centers=centers)
    df = (
        spark.range(0, num_chunks(cell.n), 1, numPartitions=partitions)
        .mapInArrow(body, "features array<double>")
        .select(array_to_vector(F.col("features")).alias("features"))
        .cache()
    )
    rows = df.count()
    if rows != cell.n:
        df.unpersist()
        raise RuntimeError(f"generated {rows} rows for {cell}, expected {cell.n}")
    return BlobData(cell, df, initial_centers(cell, seed), time.perf_counter() - t0)


def collect_numpy(df: DataFrame, d: int) -> np.ndarray:
    """The ``features`` column as an ``(n, d)`` float64 matrix on the driver (via Arrow)."""
    from sparkml_lloyd._compat import to_arrow  # DataFrame.toArrow is pyspark 4 only

    table = to_arrow(df.select(vector_to_array(F.col("features"), "float64").alias("f")))
    col = table.column("f").combine_chunks()
    return np.asarray(col.flatten().to_numpy(zero_copy_only=False)).reshape(len(col), d)
