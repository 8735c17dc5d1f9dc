"""The competitors: one class each, same protocol.

``prepare()`` does everything that must stay outside the timer (caching MLlib's RDD of
vectors, collecting the numpy array or, for sparse cells, the CSR matrix for scikit-learn,
building our estimator with its ``k x d`` initial centers ...); ``fit(max_iter)`` times exactly one
training call from the fixed initial centers ``C0`` (or, for the ``ml`` built-ins, which cannot
take initial centers, from ``initMode="random"`` with a fixed seed) and returns the seconds, the
centers and the number of iterations run; ``release()`` unpersists what ``prepare`` cached.

Also here: the whole default ``fit`` of ours and of the built-in ml ``KMeans``, and the
``transform`` throughput of both models.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from math import sqrt
from typing import TYPE_CHECKING, Any

import numpy as np
from pyspark import RDD
from pyspark.ml.clustering import KMeans as MLKMeans
from pyspark.ml.clustering import KMeansModel as MLKMeansModel
from pyspark.mllib.clustering import KMeans as MLlibKMeans
from pyspark.mllib.clustering import KMeansModel as MLlibKMeansModel
from pyspark.mllib.linalg import SparseVector as MLlibSparseVector
from pyspark.mllib.linalg import Vectors as MLlibVectors
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from benchmarks.datagen import BlobData, collect_numpy
from benchmarks.measure import timed_cpu
from benchmarks.textgen import TextData, collect_csr
from sparkml_lloyd import LloydKMeans, LloydKMeansModel

if TYPE_CHECKING:
    from sparkml_lloyd import IterationRecord
    from sparkml_lloyd._fit import IterationCallback


@dataclass
class FitOutcome:
    """One timed training run."""

    seconds: float
    centers: np.ndarray
    #: Iterations actually run (``None`` when the API does not say).
    num_iter: int | None
    #: CPU seconds of the whole process tree (driver, JVM, workers) during the call.
    cpu_seconds: float = 0.0
    #: Ours only: ``[seconds since the call started, "iteration N"]`` when the fit reported
    #: each iteration (its iteration callback), then ``[seconds, "returned"]``.
    trace: list[tuple[float, str]] | None = None


class Competitor(ABC):
    """A k-means implementation under test, bound to one cell's data."""

    #: Short name (a key of :data:`benchmarks.grid.COMPETITORS`).
    name: str = ""
    #: Does it start from ``C0`` (so its centers must equal ours)?
    from_c0: bool = True

    def __init__(self, data: BlobData | TextData, seed: int) -> None:
        self.data = data
        self.cell = data.cell
        self.seed = seed

    def prepare(self) -> None:
        """Untimed set-up (default: nothing)."""
        return None

    def release(self) -> None:
        """Undo :meth:`prepare` (default: nothing)."""
        return None

    @abstractmethod
    def _train(self, max_iter: int) -> Any:
        """The timed call; returns the trained model."""

    @abstractmethod
    def _outcome(self, model: Any) -> tuple[np.ndarray, int | None]:
        """Centers (k x d) and iterations run, read from the model outside the timer."""

    def fit(self, max_iter: int, on_iteration: IterationCallback | None = None) -> FitOutcome:
        """Train for (at most) ``max_iter`` iterations; time only the training call.

        ``on_iteration(record, centers)`` is called after every iteration by an
        implementation that reports its iterations as it runs (ours); the others ignore it.
        """
        seconds, cpu, model = timed_cpu(lambda: self._train(max_iter))
        centers, num_iter = self._outcome(model)
        return FitOutcome(seconds, np.asarray(centers, dtype=np.float64), num_iter, cpu)


class Ours(Competitor):
    """``LloydKMeans(k, initialCenters=C0, maxIter=m, tol=0).fit(df)``.

    The estimator is built once, outside the timer: its ``initialCenters`` Param holds
    ``C0`` as rows of Python floats, a conversion that takes seconds for ``k x d`` = 100 x
    2^18 (sparse cells) and is not part of a fit. The fit's iteration callback timestamps
    every iteration (no other instrumentation), which shows where a fit's time goes: set-up
    until the first iteration, each iteration, and what follows the last one.
    """

    name = "ours"

    def prepare(self) -> None:
        self.estimator = LloydKMeans(k=self.cell.k, initialCenters=self.data.c0, tol=0.0)

    def fit(self, max_iter: int, on_iteration: IterationCallback | None = None) -> FitOutcome:
        trace: list[tuple[float, str]] = []
        t0 = 0.0

        def stamp(record: IterationRecord, centers: np.ndarray) -> None:
            trace.append((time.perf_counter() - t0, f"iteration {record.iteration}"))
            if on_iteration is not None:
                on_iteration(record, centers)

        def train() -> LloydKMeansModel:
            nonlocal t0
            t0 = time.perf_counter()
            return self._train(max_iter, stamp)

        seconds, cpu, model = timed_cpu(train)
        centers, num_iter = self._outcome(model)
        return FitOutcome(seconds, centers, num_iter, cpu, [*trace, (seconds, "returned")])

    def _train(self, max_iter: int,
               on_iteration: IterationCallback | None = None) -> LloydKMeansModel:
        return self.estimator.setMaxIter(max_iter).setIterationCallback(
            on_iteration).fit(self.data.df)

    def _outcome(self, model: LloydKMeansModel) -> tuple[np.ndarray, int | None]:
        return np.array(model.clusterCenters()), model.summary.numIter


class MLlib(Competitor):
    """``pyspark.mllib.clustering.KMeans.train`` from ``KMeansModel(C0)``, ``epsilon=0``, on
    an RDD of MLlib vectors cached (and counted) outside the timer.

    The Python API does not report the number of iterations; the runner infers it from the
    centers agreeing with ours (see ``run.py``). On sparse cells ``C0`` goes in as the sparse
    documents it is (the same numbers; a few kB through py4j instead of ``k x d``).
    """

    name = "mllib"

    def prepare(self) -> None:
        self.rdd: RDD = self.data.df.rdd.map(lambda r: MLlibVectors.fromML(r.features)).cache()
        self.rdd.count()
        self.c0: list[Any] = list(self.data.c0)
        if isinstance(self.data, TextData):
            c0 = self.data.c0_sparse
            self.c0 = [MLlibSparseVector(self.cell.d, c0.indices[a:b], c0.data[a:b])
                       for a, b in zip(c0.indptr[:-1], c0.indptr[1:], strict=True)]

    def release(self) -> None:
        self.rdd.unpersist(blocking=True)

    def _train(self, max_iter: int) -> MLlibKMeansModel:
        return MLlibKMeans.train(
            self.rdd, self.cell.k, maxIterations=max_iter,
            initialModel=MLlibKMeansModel(self.c0), epsilon=0.0, seed=self.seed,
        )

    def _outcome(self, model: MLlibKMeansModel) -> tuple[np.ndarray, int | None]:
        return np.array([np.asarray(c) for c in model.clusterCenters]), None


class MLKMeansSolver(Competitor):
    """``pyspark.ml.clustering.KMeans(initMode="random", seed, tol=0, solver=...)``: the ml
    API cannot start from given centers, so its centers are not compared with ours; its
    per-iteration time still is, since initialisation cancels in ``T(m2) - T(m1)``."""

    from_c0 = False
    solver = "auto"

    def _train(self, max_iter: int) -> MLKMeansModel:
        return MLKMeans(
            k=self.cell.k, maxIter=max_iter, tol=0.0, initMode="random", seed=self.seed,
            solver=self.solver,
        ).fit(self.data.df)

    def _outcome(self, model: MLKMeansModel) -> tuple[np.ndarray, int | None]:
        return np.array(model.clusterCenters()), model.summary.numIter


class MLRow(MLKMeansSolver):
    name = "ml_row"
    solver = "row"


class MLBlock(MLKMeansSolver):
    name = "ml_block"
    solver = "block"


class Sklearn(Competitor):
    """scikit-learn's Lloyd on the collected array (sparse cells: CSR matrix, int32
    indices): the single-machine reference."""

    name = "sklearn"

    def prepare(self) -> None:
        from sklearn.cluster import KMeans  # imported here: scikit-learn is optional

        self.estimator = KMeans
        self.x: Any = (collect_csr(self.data.df, self.cell.d) if self.cell.sparse
                       else collect_numpy(self.data.df, self.cell.d))

    def release(self) -> None:
        del self.x

    def _train(self, max_iter: int) -> Any:
        return self.estimator(
            n_clusters=self.cell.k, init=self.data.c0, n_init=1, max_iter=max_iter, tol=0.0,
            algorithm="lloyd",
        ).fit(self.x)

    def _outcome(self, model: Any) -> tuple[np.ndarray, int | None]:
        return model.cluster_centers_, int(model.n_iter_)


# --------------------------------------------------------------------------------------
# The walkthrough's per-row approach (../shared/seed), in Python 3 syntax
# --------------------------------------------------------------------------------------


def cost_function(x: np.ndarray, y: np.ndarray) -> float:
    """The walkthrough's distance between two 2-D points."""
    return sqrt((x[0] - y[0]) ** 2 + (x[1] - y[1]) ** 2)


def assign(rdd: RDD, centroids: list[np.ndarray], k: int) -> RDD:
    """Per point: the distance to every centroid, then the index of the smallest."""
    d = rdd.map(lambda x: (x, [cost_function(x, centroids[i]) for i in range(k)]))
    return d.map(lambda xc: (xc[1].index(min(xc[1])), xc[0]))


def recalculate_centroids(assignments: RDD, k: int) -> list[np.ndarray]:
    """One filter pass per cluster, then ``sum() / count()``: two jobs per cluster."""
    new_centroids = []
    for i in range(k):
        a = assignments.filter(lambda ax, i=i: ax[0] == i).map(lambda ax: ax[1])
        new_centroids.append(a.sum() / a.count())
    return new_centroids


def walkthrough_iterations(rdd: RDD, centroids: list[np.ndarray], k: int,
                           iterations: int) -> list[np.ndarray]:
    """``iterations`` rounds of the walkthrough's ``iteration(rdd, centroids)``."""
    for _ in range(iterations):
        centroids = recalculate_centroids(assign(rdd, centroids, k), k)
    return centroids


class PerRow(Competitor):
    """The walkthrough: an RDD of numpy points, Python distances per point, and one filter
    pass per cluster for the means. Fixed iteration count (it has no convergence test)."""

    name = "per_row"

    def prepare(self) -> None:
        if self.cell.d != 2:
            raise ValueError("the walkthrough's per-row code is written for 2-D points")
        self.rdd: RDD = self.data.df.rdd.map(lambda r: r.features.toArray()).cache()
        self.rdd.count()

    def release(self) -> None:
        self.rdd.unpersist(blocking=True)

    def _train(self, max_iter: int) -> tuple[list[np.ndarray], int]:
        """The centroids after ``max_iter`` rounds, and that number: every round runs."""
        return walkthrough_iterations(self.rdd, list(self.data.c0), self.cell.k,
                                      max_iter), max_iter

    def _outcome(self, model: tuple[list[np.ndarray], int]) -> tuple[np.ndarray, int | None]:
        centroids, iterations = model
        return np.array(centroids), iterations


COMPETITOR_CLASSES: dict[str, type[Competitor]] = {
    c.name: c for c in (Ours, MLlib, MLRow, MLBlock, Sklearn, PerRow)
}


# --------------------------------------------------------------------------------------
# Whole default fit, and transform
# --------------------------------------------------------------------------------------


@dataclass
class DefaultFit:
    """One whole ``fit`` with default settings."""

    seconds: float
    cpu_seconds: float
    num_iter: int
    training_cost: float
    model: Any


def default_fit_ours(df: DataFrame, k: int, seed: int) -> DefaultFit:
    """``LloydKMeans(k=k, seed=seed).fit(df)``: k-means||, maxIter=20, tol=1e-4."""
    seconds, cpu, model = timed_cpu(lambda: LloydKMeans(k=k, seed=seed).fit(df))
    return DefaultFit(seconds, cpu, model.summary.numIter, model.summary.trainingCost, model)


def default_fit_builtin(df: DataFrame, k: int, seed: int) -> DefaultFit:
    """``pyspark.ml.clustering.KMeans(k=k, seed=seed).fit(df)`` with every other default."""
    seconds, cpu, model = timed_cpu(lambda: MLKMeans(k=k, seed=seed).fit(df))
    return DefaultFit(seconds, cpu, model.summary.numIter, model.summary.trainingCost, model)


def time_transform(model: Any, df: DataFrame) -> tuple[float, float, int]:
    """Wall and CPU seconds of ``model.transform(df).agg(sum(prediction))``, and that sum."""
    seconds, cpu, rows = timed_cpu(
        lambda: model.transform(df).agg(F.sum("prediction")).collect()
    )
    return seconds, cpu, int(rows[0][0])


def transform_path(model: LloydKMeansModel, df: DataFrame) -> str:
    """Which path our ``model.transform(df)`` takes, read from Spark's plan (one query
    analysis, untimed; classic and Connect alike): ``"arrow"`` when a Python UDF evaluates
    it (the numpy kernel in an Arrow UDF), ``"spark-scorer"`` when Spark's own
    LogisticRegressionModel scores the rows under the row rule (since 1 Dec 2026). Older
    records also have ``"jvm-predict"`` (Spark's KMeansModel ``predict`` called from the
    generated code, 30 Nov-1 Dec 2026) and ``"jvm"`` (Spark's KMeansModel UDF)."""
    import contextlib
    import io

    from sparkml_lloyd import _predict_spark

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        model.transform(df).explain(True)
    plan = text.getvalue()
    if "EvalPython" in plan:
        return "arrow"
    return "spark-scorer" if _predict_spark.CLASS in plan else "unknown"


def same_centers_model(builtin: MLKMeansModel) -> LloydKMeansModel:
    """Our model with exactly the built-in model's centers (for a like-for-like transform)."""
    return LloydKMeansModel([np.asarray(c) for c in builtin.clusterCenters()])
