"""What a fit reports: one :class:`IterationRecord` per iteration, and the training summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from sparkml_lloyd._fit import FitResult


@dataclass(frozen=True)
class IterationRecord:
    """One Lloyd iteration: the assignment step, then the update of the centers.

    ``cost`` and ``clusterSizes`` are those of the assignment (to the centers *before* this
    iteration's update, so ``cost == costHistory[iteration - 1]``), ``maxMove`` is the largest
    distance a center moved in the update (Euclidean, or cosine distance under
    ``distanceMeasure="cosine"``), and ``seconds`` the wall-clock time of the iteration: its
    pass over the data and the update.
    """

    iteration: int
    cost: float
    maxMove: float
    clusterSizes: list[int]
    seconds: float

    def __str__(self) -> str:
        """The line people read: ``iteration 1: cost 18.4375, largest center move 0.197642,
        cluster sizes [8, 8, 8]`` (the logger's, the command line's and the demo's)."""
        return (f"iteration {self.iteration}: cost {self.cost:.6g}, largest center move "
                f"{self.maxMove:.6g}, cluster sizes {self.clusterSizes}")


class LloydKMeansSummary:
    """Training summary of a :class:`~sparkml_lloyd.LloydKMeansModel`: the fields of Spark's
    ``KMeansSummary``, plus ``costHistory``, ``iterations`` and ``converged``.

    ``trainingCost`` is measured against the *final* centers, so it equals the cost of
    ``model.transform`` on the training data. Spark's built-in reports the cost of its last
    assignment step, i.e. against the centers *before* the last update.
    """

    def __init__(
        self,
        predictions: DataFrame | Callable[[], DataFrame],
        predictionCol: str,
        featuresCol: str,
        k: int,
        numIter: int,
        trainingCost: float,
        clusterSizes: list[int],
        costHistory: list[float],
        iterations: list[IterationRecord],
        converged: bool,
    ) -> None:
        self._predictions = predictions
        self.predictionCol = predictionCol
        self.featuresCol = featuresCol
        self.k = k
        self.numIter = numIter
        self.trainingCost = trainingCost
        self.clusterSizes = clusterSizes
        #: ``costHistory[i]`` is the cost of the centers after ``i`` updates:
        #: ``[0]`` the initial centers, ``[-1]`` the final ones (``== trainingCost``).
        self.costHistory = costHistory
        #: One :class:`IterationRecord` per iteration, in order (``len == numIter``).
        self.iterations = iterations
        #: True when the fit stopped because no center moved more than ``tol``; False when
        #: it stopped at ``maxIter``.
        self.converged = converged

    @property
    def predictions(self) -> DataFrame:
        """The training data with the prediction column (``model.transform`` of it; given as
        a function, made on first use: a CrossValidator's models never need it)."""
        if callable(self._predictions):
            self._predictions = self._predictions()
        return self._predictions

    @property
    def cluster(self) -> DataFrame:
        """The predicted cluster of every training row."""
        return self.predictions.select(self.predictionCol)

    def __repr__(self) -> str:
        return (
            f"LloydKMeansSummary(k={self.k}, numIter={self.numIter}, "
            f"converged={self.converged}, trainingCost={self.trainingCost:.6g}, "
            f"clusterSizes={self.clusterSizes})"
        )


def of_fit(result: FitResult, predictions: Callable[[], DataFrame], predictionCol: str,
           featuresCol: str, k: int) -> LloydKMeansSummary:
    """The summary of a fit's result (``k`` the param, as Spark's summary has it);
    ``predictions`` makes the training predictions on first use."""
    return LloydKMeansSummary(
        predictions, predictionCol, featuresCol, k=k, numIter=result.num_iter,
        trainingCost=result.training_cost, clusterSizes=result.cluster_sizes,
        costHistory=result.cost_history, iterations=result.iterations,
        converged=result.converged)
