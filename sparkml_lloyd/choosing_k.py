"""Choosing k: fit a range of k in one call, with the elbow and the silhouette.

:func:`sweep` fits one :class:`~sparkml_lloyd.LloydKMeans` model per k with
``fitMultiple`` (the data prepared once, every model advancing in the same passes), then
scores each on one sample with Spark's ``ClusteringEvaluator`` (silhouette) and looks for a
knee in the cost curve (:func:`knee`). The rule says when there is no clear knee rather than
inventing one. See docs/choosing-k.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sparkml_lloyd import _rows

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from sparkml_lloyd.clustering import LloydKMeans, LloydKMeansModel

__all__ = ["Knee", "SweepResult", "SweepRow", "knee", "sweep"]

#: Rows of the sample the silhouette is computed on (all rows when the data has fewer).
SILHOUETTE_SAMPLE = 10_000
#: A knee is clear when the cost falls at least this many times faster into it than out of
#: it (:func:`knee`).
CLEAR_BEND = 10.0


@dataclass(frozen=True)
class Knee:
    """The knee rule's verdict: ``k`` (None when there is no clear knee) and why."""

    k: int | None
    reason: str


def knee(ks: Sequence[int], costs: Sequence[float]) -> Knee:
    """The knee of a cost curve, or None with the reason.

    Candidates are the k whose point lies at least half as far below the chord from the
    first to the last point as the farthest one (the Kneedle idea, on k and cost scaled to
    [0, 1]); of those, the one where the cost bends most: ``(cost[k-1] - cost[k]) /
    (cost[k] - cost[k+1])`` with the neighbouring k of the sweep. The knee is clear when that
    ratio is at least :data:`CLEAR_BEND`. Data without groups bends gently (a ratio of about
    1.3-4 in our checks: uniform and Gaussian data in 1 to 20 dimensions); well separated
    groups give 30 and more. The first and the last k cannot be a knee: widen the range.

    >>> knee([2, 3, 4, 5, 6], [100.0, 10.0, 9.0, 8.2, 7.5]).k
    3
    >>> smooth = knee([2, 3, 4, 5, 6], [1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 6])
    >>> smooth.k is None, smooth.reason.split(":")[0]
    (True, 'no clear knee')
    """
    ks = [int(k) for k in ks]
    c = np.asarray(costs, dtype=np.float64)
    if len(ks) != len(c) or len(ks) < 3:
        return Knee(None, "no knee: it takes at least 3 values of k")
    if list(ks) != sorted(set(ks)):
        raise ValueError(f"ks must increase: {ks}")
    if not np.all(np.isfinite(c)):
        return Knee(None, "no knee: a cost is not finite")
    span = c.max() - c.min()
    if span <= 0:
        return Knee(None, "no knee: the cost is the same for every k")
    x = (np.asarray(ks, dtype=np.float64) - ks[0]) / (ks[-1] - ks[0])
    below = (1.0 - x) - (c - c.min()) / span  # under the chord from (0, 1) to (1, 0)
    best: tuple[float, int] | None = None
    for i in range(1, len(ks) - 1):
        if below[i] < 0.5 * below.max():
            continue
        before, after = c[i - 1] - c[i], c[i] - c[i + 1]
        bend = before / after if after > 0 else np.inf if before > 0 else 0.0
        if best is None or bend > best[0]:
            best = (float(bend), i)
    if best is None or best[0] <= 0:
        return Knee(None, "no clear knee: the cost does not fall into any inner k")
    bend, i = best
    said = "without falling further after" if np.isinf(bend) else f"{bend:.3g}x faster " \
        "before than after"
    if bend >= CLEAR_BEND:
        return Knee(ks[i], f"knee at k={ks[i]}: the cost falls {said}")
    return Knee(None, f"no clear knee: the sharpest bend, at k={ks[i]}, falls {said} "
                f"(a clear knee: at least {CLEAR_BEND:g}x)")


@dataclass(frozen=True)
class SweepRow:
    """One k of a sweep: the final ``cost`` (the training cost, the elbow's y), the
    ``silhouette`` on the sweep's sample, ``iterations``, whether it
    ``converged``, and ``seconds``: the wall time of its iterations (passes it shared with
    the other models count in full for each)."""

    k: int
    cost: float
    silhouette: float
    iterations: int
    converged: bool
    seconds: float


@dataclass
class SweepResult:
    """What :func:`sweep` found: a row per k, the models, the knee, and ``sample_rows``, the
    rows the silhouettes scored (the sample's valid rows)."""

    rows: list[SweepRow]
    models: dict[int, LloydKMeansModel] = field(repr=False)
    knee: Knee
    sample_rows: int
    seconds: float

    @property
    def suggested_k(self) -> int | None:
        """The knee's k, or None when the cost curve has no clear knee."""
        return self.knee.k

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (one row per k)."""
        import pandas as pd

        return pd.DataFrame([r.__dict__ for r in self.rows])

    def plot(self, path: str) -> None:
        """A PNG at ``path``: cost (left axis) and silhouette (right axis) against k, the
        knee marked. Needs matplotlib (the ``demo`` extra)."""
        from sparkml_lloyd.demo import require_plotting

        figure_cls, canvas_cls, _ = require_plotting()
        fig = figure_cls(figsize=(7, 4), dpi=110)
        canvas_cls(fig)
        ax = fig.add_subplot(1, 1, 1)
        ks = [r.k for r in self.rows]
        ax.plot(ks, [r.cost for r in self.rows], "o-", color="tab:blue", label="cost")
        ax.set_xlabel("k")
        ax.set_ylabel("cost (sum of squared distances)", color="tab:blue")
        ax.set_xticks(ks)
        right = ax.twinx()
        right.plot(ks, [r.silhouette for r in self.rows], "s--", color="tab:orange",
                   label="silhouette")
        right.set_ylabel(f"silhouette ({self.sample_rows:,} rows)", color="tab:orange")
        if self.knee.k is not None:
            ax.axvline(self.knee.k, color="tab:red", linestyle=":", label="knee")
        ax.set_title(self.knee.reason, fontsize=9)
        fig.tight_layout()
        fig.savefig(path)


def _sample(dataset: DataFrame, size: int, seed: int) -> tuple[DataFrame, int, bool]:
    """About ``size`` rows of ``dataset`` (a seeded Bernoulli sample; all rows when it has
    no more), its count, and whether the sample is cached here (to be unpersisted): every k
    is scored on it."""
    total = dataset.count()
    if total <= size:
        return dataset, total, False
    sample = dataset.sample(fraction=size / total, seed=seed).persist()
    return sample, sample.count(), True


def sweep(dataset: DataFrame, k: Iterable[int] = range(2, 11), *,
          estimator: LloydKMeans | None = None,
          silhouette_sample: int = SILHOUETTE_SAMPLE) -> SweepResult:
    """Fit one model per ``k`` (in the same passes over the data), score each, find the knee.

    ``estimator`` carries every other param (featuresCol, seed, maxIter, distanceMeasure,
    weightCol...); the default is ``LloydKMeans()``. The silhouette is Spark's
    ``ClusteringEvaluator`` (squared Euclidean, or cosine under ``distanceMeasure="cosine"``)
    on one seeded sample of about ``silhouette_sample`` rows (all rows when there are fewer),
    the same rows for every k; rows the fit left out (``handleInvalid``) are left out there.

    >>> from pyspark.ml.linalg import Vectors
    >>> from sparkml_lloyd import sweep
    >>> rows = [(Vectors.dense([x + d]),) for x in (0.0, 10.0, 20.0) for d in (0.0, 0.1, 0.2)]
    >>> result = sweep(spark.createDataFrame(rows, ["features"]), k=[2, 3, 4, 5])
    >>> result.suggested_k
    3
    >>> [r.k for r in result.rows if r.silhouette > 0.99]  # the best-separated k
    [3]
    """
    from pyspark.ml.evaluation import ClusteringEvaluator

    from sparkml_lloyd.clustering import LloydKMeans

    ks = sorted({int(v) for v in k})
    if len(ks) < 1 or ks[0] < 2:
        raise ValueError(f"k: give values of at least 2 (for example range(2, 21)); got {ks}")
    estimator = estimator if estimator is not None else LloydKMeans()
    if not isinstance(estimator, LloydKMeans):
        raise TypeError(f"estimator: a LloydKMeans, not {type(estimator).__name__}")
    if silhouette_sample < 2:
        raise ValueError(f"silhouette_sample: at least 2 rows; got {silhouette_sample}")
    started = time.perf_counter()
    models = dict(estimator.fitMultiple(dataset, [{estimator.k: v} for v in ks]))
    by_k = {ks[i]: m for i, m in models.items()}
    evaluator = ClusteringEvaluator(
        featuresCol=estimator.getFeaturesCol(),
        distanceMeasure="cosine" if estimator.getDistanceMeasure() == "cosine"
        else "squaredEuclidean")
    if estimator.isDefined(estimator.weightCol) and estimator.getWeightCol():
        evaluator.setWeightCol(estimator.getWeightCol())
    sample, sample_rows, cached = _sample(dataset, silhouette_sample, estimator.getSeed())
    rows = []
    try:
        if estimator.getHandleInvalid() != _rows.ERROR:  # the rows scored, not the sample's
            sample_rows = by_k[ks[0]].copy({by_k[ks[0]].handleInvalid: _rows.SKIP}).transform(
                sample).count()
        for v in ks:
            model, summary = by_k[v], by_k[v].summary
            evaluator.setPredictionCol(model.getPredictionCol())
            # the rows the fit used: invalid ones (handleInvalid "skip" or "keep") left out
            scorer = model.copy({model.handleInvalid: _rows.SKIP})
            rows.append(SweepRow(k=v, cost=summary.trainingCost,
                                 silhouette=evaluator.evaluate(scorer.transform(sample)),
                                 iterations=summary.numIter, converged=summary.converged,
                                 seconds=sum(r.seconds for r in summary.iterations)))
    finally:
        if cached:
            sample.unpersist(blocking=True)  # gone when sweep returns
    return SweepResult(rows=rows, models=by_k, knee=knee(ks, [r.cost for r in rows]),
                       sample_rows=sample_rows, seconds=time.perf_counter() - started)
