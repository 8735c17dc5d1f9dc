"""``LloydKMeans.fitMultiple``: one preparation, every model in the same passes, each model
what ``fit(dataset, paramMap)`` gives; pyspark's contract (CrossValidator, threads, a list of
param maps); a model the data cannot serve fails alone. The centers of the fits from given
initial centers are also checked against scikit-learn's Lloyd (an independent oracle)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.linalg import Vectors
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import make_blobs

from sparkml_lloyd import LloydKMeans
from tests.helpers import relative_difference

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def points() -> np.ndarray:
    x, _ = make_blobs(n_samples=3000, centers=5, n_features=4, random_state=11)
    return np.vstack([x, x[:300], x[:300]])  # copies of rows: the seeding sample counts rows once


@pytest.fixture(scope="module")
def df(spark, points):
    frame = spark.createDataFrame([(Vectors.dense(r),) for r in points], ["features"])
    frame = frame.repartition(3).cache()
    frame.count()
    yield frame
    frame.unpersist(blocking=True)  # gone before the next module measures


def _same(a, b) -> None:
    assert relative_difference(np.array(a.clusterCenters()), np.array(b.clusterCenters())) <= 1e-12
    sa, sb = a.summary, b.summary
    assert (sa.numIter, sa.converged) == (sb.numIter, sb.converged)
    assert sa.clusterSizes == sb.clusterSizes
    assert sa.costHistory == pytest.approx(sb.costHistory, rel=1e-12)
    assert [r.clusterSizes for r in sa.iterations] == [r.clusterSizes for r in sb.iterations]


def test_every_model_equals_its_own_fit(spark, df, points):
    """A mix of every kind of param (k, initMode, tol, maxIter, seed, distance, initial
    centers): each model of fitMultiple equals fit(dataset, paramMap); the initial-center
    models equal scikit-learn's Lloyd too."""
    km = LloydKMeans(seed=3, maxIter=40)
    start = points[[0, 1000, 2000]]
    maps = [{km.k: k} for k in (2, 3, 5, 8)] + [
        {km.k: 4, km.initMode: "random"}, {km.k: 6, km.initMode: "random", km.seed: 9},
        {km.k: 5, km.tol: 0.5}, {km.k: 7, km.maxIter: 2},
        {km.k: 5, km.distanceMeasure: "cosine"},
        {km.k: 3, km.initialCenters: start.tolist(), km.tol: 0.0},
    ]
    models = dict(km.fitMultiple(df, maps))
    assert sorted(models) == list(range(len(maps)))
    for i, m in enumerate(maps):
        _same(models[i], km.fit(df, m))
        assert models[i].getK() == m[km.k]
    sk = SkKMeans(n_clusters=3, init=start, n_init=1, algorithm="lloyd", tol=0.0,
                  max_iter=40).fit(points)
    assert relative_difference(np.array(models[9].clusterCenters()), sk.cluster_centers_) < 1e-12


def test_the_data_is_prepared_once_and_the_passes_are_shared(spark, df):
    """Eight k's in one fitMultiple run about as many Spark jobs as one fit (one preparation
    pass, one executor loop), not eight times as many."""
    sc = spark.sparkContext
    km = LloydKMeans(seed=1, maxIter=10)

    def jobs(group: str, run) -> list[str]:
        sc.setJobGroup(group, group)
        try:
            run()
        finally:
            sc.setLocalProperty("spark.jobGroup.id", None)
        tracker = sc.statusTracker()
        return [stage.name for job in tracker.getJobIdsForGroup(group)
                for stage in map(tracker.getStageInfo, tracker.getJobInfo(job).stageIds)
                if stage]

    one = jobs("one fit", lambda: LloydKMeans(seed=1, maxIter=10, k=5).fit(df))
    many = jobs("eight fits", lambda: list(km.fitMultiple(df, [{km.k: k} for k in range(2, 10)])))
    assert len(many) <= len(one), "\n".join(many)


def test_crossvalidator_gets_the_single_fits_metrics(spark, df):
    """CrossValidator (which calls fitMultiple) gives the metrics of fitting and evaluating
    every fold by hand; parallelism=2 (next() from two threads) gives the same."""
    km = LloydKMeans(seed=5, maxIter=20)
    grid = ParamGridBuilder().addGrid(km.k, [3, 5, 6]).build()
    evaluator = ClusteringEvaluator()
    results = []
    for parallelism in (1, 2):
        cv = CrossValidator(estimator=km, estimatorParamMaps=grid, evaluator=evaluator,
                            numFolds=2, seed=7, parallelism=parallelism)
        results.append(cv.fit(df))
    by_hand = []
    folds = CrossValidator(estimator=km, estimatorParamMaps=grid, evaluator=evaluator,
                           numFolds=2, seed=7)._kFold(df)
    for params in grid:
        scores = [evaluator.evaluate(km.fit(train, params).transform(test))
                  for train, test in folds]
        by_hand.append(np.mean(scores))
    for cv_model in results:
        assert cv_model.avgMetrics == pytest.approx(by_hand, rel=1e-12)
    assert results[0].bestModel.getK() == grid[int(np.argmax(by_hand))][km.k]


def test_fit_with_a_list_of_param_maps_and_a_shared_iterator(df):
    """fit(dataset, [maps]) returns the models in order; one iterator shared by threads
    hands out every index once."""
    km = LloydKMeans(seed=2, maxIter=5)
    maps = [{km.k: k} for k in (2, 3, 4, 5, 6, 7)]
    models = km.fit(df, maps)
    assert [m.getK() for m in models] == [2, 3, 4, 5, 6, 7]
    shared = km.fitMultiple(df, maps)
    seen: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        for index, _model in shared:
            with lock:
                seen.append(index)

    threads = [threading.Thread(target=take) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(6))


def test_a_model_the_data_cannot_serve_fails_alone(spark):
    """Four distinct points: k=2 and k=3 fit, k=6 raises its own ValueError at its turn."""
    rows = [(Vectors.dense([float(v)]),) for v in (0, 1, 5, 9) * 3]
    frame = spark.createDataFrame(rows, ["features"])
    km = LloydKMeans(seed=1)
    it = km.fitMultiple(frame, [{km.k: 2}, {km.k: 6}, {km.k: 3}])
    assert next(it)[0] == 0
    with pytest.raises(ValueError, match=r"only 4 distinct points.*k=6"):
        next(it)
    index, model = next(it)
    assert index == 2 and len(model.clusterCenters()) == 3


def test_param_maps_are_checked_before_any_job(spark):
    km = LloydKMeans()
    frame = spark.createDataFrame([(Vectors.dense([0.0]),)], ["features"])
    with pytest.raises(ValueError, match="k=1 is not allowed"):
        km.fitMultiple(frame, [{km.k: 3}, {km.k: 1}])


def test_models_too_large_together_are_a_clear_error_naming_them_all(spark):
    """Two models of k = 30 and 20 on 2^30 declared features hold 50 centers together
    (400 GiB): one ValueError naming both, before any job; the session lives on."""
    from pyspark.ml.feature import HashingTF, Tokenizer

    docs = spark.createDataFrame([("spark sparse text",), ("sparse vectors",)], ["text"])
    words = Tokenizer(inputCol="text", outputCol="words").transform(docs)
    hashed = HashingTF(inputCol="words", outputCol="features", numFeatures=2**30).transform(words)
    km = LloydKMeans()
    with pytest.raises(ValueError, match=r"the 2 models' 50 centers in all of 1073741824 "
                       r"features take 400.0 GiB.*fewer param maps or smaller k values"):
        next(km.fitMultiple(hashed, [{km.k: 30}, {km.k: 20}]))
    assert spark.range(3).count() == 3
