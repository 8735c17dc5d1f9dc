"""Data and fit helpers shared by the cluster, fault and executor-loop tests.

Both datasets are built the same way in every process (the suite's and a cluster driver
child), in :data:`PARTITIONS` slices, so fits on them can be compared bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from sparkml_lloyd import LloydKMeansModel

PARTITIONS = 2
#: Iterations of the staircase fit (``staircase(STEPS)``, see :data:`STAIRCASE_PARAMS`).
STEPS = 60

STAIRCASE_PARAMS: dict[str, Any] = {
    "k": 2, "weightCol": "weight", "initialCenters": [[0.0], [1000.0]], "maxIter": 500,
    "tol": 0.0,
}


def blob_rows() -> list[tuple[int, list[float]]]:
    """600 points around 4 centers in 3-D (fixed seed)."""
    rng = np.random.default_rng(11)
    means = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 1.0], [0.0, 7.0, -1.0], [5.0, 6.0, 5.0]])
    x = np.vstack([m + rng.normal(size=(150, 3)) for m in means])
    return [(i, [float(v) for v in row]) for i, row in enumerate(x)]


def staircase(
    n: int, far: float = 1000.0, heavy: float = 1e9, copies: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """1-D weighted points on which Lloyd (k=2, centers starting at 0 and ``far``, tol=0)
    moves exactly one point from cluster 2 to cluster 1 per iteration: n iterations.

    Point m (m >= 2) lies halfway between the boundaries (mean of cluster 1 + mean of
    cluster 2) / 2 when cluster 1 holds m - 1 and m points; a point of weight ``heavy`` at
    ``far`` keeps cluster 2's mean almost fixed. The exact mean of cluster 2 depends on the
    later points, so the construction is repeated until it is self-consistent. Consecutive
    points are > 0.05 apart for n <= 320, far above rounding, so every partitioning and
    summation order takes the same steps. The heavy point may be split into ``copies`` rows
    of weight ``heavy / copies`` (the same clusters, more data).
    """

    def build(mean2: Any) -> np.ndarray:
        x = [0.0]

        def boundary(m: int) -> float:
            return (float(np.mean(x[:m])) + mean2(m)) / 2

        x.append(boundary(1) / 2)
        for m in range(2, n):
            low, high = boundary(m - 1), boundary(m)
            x.append(low + 0.5 * (high - low))
        return np.array(x)

    x = build(lambda m: far)
    for _ in range(5):
        x = build(lambda m, x=x: (heavy * far + x[m:].sum()) / (heavy + len(x) - m))
    weights = np.append(np.ones(n), np.full(copies, heavy / copies))
    return np.append(x, np.full(copies, far)), weights


def frame(
    spark: SparkSession, name: str, points: tuple[np.ndarray, np.ndarray] | None = None
) -> DataFrame:
    """The named dataset as ``id, features (vector)[, weight]`` in PARTITIONS slices
    (``points``: the staircase's points and weights, instead of ``staircase(STEPS)``).

    ``"blobs"``: :func:`blob_rows`; ``"staircase"``: :func:`staircase`; ``"raw"``: the blobs
    as plain columns ``a, b, c``, for a VectorAssembler."""
    schema = [T.StructField("id", T.LongType()), T.StructField("features", VectorUDT())]
    if name == "blobs":
        rows: list[tuple[Any, ...]] = [(i, Vectors.dense(v)) for i, v in blob_rows()]
    elif name == "staircase":
        x, w = points if points is not None else staircase(STEPS)
        rows = [(i, Vectors.dense([x[i]]), float(w[i])) for i in range(len(x))]
        schema.append(T.StructField("weight", T.DoubleType()))
    elif name == "raw":
        rows = [(i, *v) for i, v in blob_rows()]
        schema = [T.StructField("id", T.LongType())] + [
            T.StructField(c, T.DoubleType()) for c in "abc"
        ]
    else:
        raise ValueError(name)
    rdd = spark.sparkContext.parallelize(rows, PARTITIONS)
    return spark.createDataFrame(rdd, T.StructType(schema))


def fit_result(model: LloydKMeansModel) -> dict[str, Any]:
    """What a fit is compared by: its centers, iteration count and cost."""
    return {
        "centers": [c.tolist() for c in model.clusterCenters()],
        "num_iter": model.summary.numIter,
        "cost": model.summary.trainingCost,
    }
