"""Same centers as independent implementations started from the same centers."""

import numpy as np
import pytest
from pyspark.mllib.clustering import KMeans as MLlibKMeans
from pyspark.mllib.clustering import KMeansModel as MLlibKMeansModel
from pyspark.mllib.linalg import Vectors as MLlibVectors
from sklearn.datasets import make_blobs

from sparkml_lloyd import LloydKMeans
from tests.helpers import make_df, relative_difference, sklearn_lloyd

CASES = [  # (n, d, k, centers_std, maxIter, random_state)
    (600, 2, 3, 1.5, 1, 0),
    (600, 2, 3, 3.0, 5, 1),
    (2000, 5, 4, 2.0, 20, 2),
    (1500, 20, 8, 4.0, 3, 3),
    (1000, 50, 40, 6.0, 10, 4),
]


def data(n, d, k, std, seed):
    X, _ = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=std, random_state=seed)
    rng = np.random.default_rng(seed)
    return X, X[rng.choice(n, size=k, replace=False)]


@pytest.mark.parametrize("n,d,k,std,max_iter,seed", CASES)
def test_same_centers_as_scikit_learn(spark, n, d, k, std, max_iter, seed):
    X, C0 = data(n, d, k, std, seed)
    ours = LloydKMeans(k=k, initialCenters=C0, maxIter=max_iter, tol=0.0).fit(make_df(spark, X))
    sk = sklearn_lloyd(X, C0, max_iter)
    assert relative_difference(ours.clusterCenters(), sk.cluster_centers_) <= 1e-9
    assert ours.summary.numIter == sk.n_iter_
    assert ours.summary.trainingCost == pytest.approx(sk.inertia_, rel=1e-9)


def test_weighted_data_gives_scikit_learn_sample_weight_result(spark):
    X, C0 = data(1500, 3, 4, 2.5, 11)
    w = np.random.default_rng(11).uniform(0.0, 5.0, size=len(X))
    df = make_df(spark, X, weights=w)
    ours = LloydKMeans(k=4, initialCenters=C0, maxIter=15, tol=0.0, weightCol="weight").fit(df)
    sk = sklearn_lloyd(X, C0, 15, sample_weight=w)
    assert relative_difference(ours.clusterCenters(), sk.cluster_centers_) <= 1e-9
    assert ours.summary.trainingCost == pytest.approx(sk.inertia_, rel=1e-9)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("max_iter,tol", [(1, 0.0), (4, 0.0), (30, 1e-4)])
def test_same_centers_as_spark_mllib(spark, distance, max_iter, tol):
    X, C0 = data(1200, 4, 5, 3.0, 7)
    X = X + 20.0  # keep away from the origin so cosine clusters are meaningful
    C0 = C0 + 20.0
    ours = LloydKMeans(k=5, initialCenters=C0, maxIter=max_iter, tol=tol,
                       distanceMeasure=distance).fit(make_df(spark, X))
    rdd = spark.sparkContext.parallelize([MLlibVectors.dense(r) for r in X], 2)
    mllib = MLlibKMeans.train(
        rdd, 5, maxIterations=max_iter, initialModel=MLlibKMeansModel(list(C0)),
        epsilon=tol, distanceMeasure=distance,
    )
    assert relative_difference(ours.clusterCenters(), mllib.clusterCenters) <= 1e-9


@pytest.mark.parametrize("partitions", [1, 2, 7])
def test_result_does_not_depend_on_partitioning(spark, partitions):
    X, C0 = data(3000, 3, 5, 2.0, 5)
    sk = sklearn_lloyd(X, C0, 10)
    df = make_df(spark, X, partitions=partitions)
    ours = LloydKMeans(k=5, initialCenters=C0, maxIter=10, tol=0.0).fit(df)
    assert relative_difference(ours.clusterCenters(), sk.cluster_centers_) <= 1e-9
    seeded = LloydKMeans(k=5, seed=3).fit(df)
    reference = LloydKMeans(k=5, seed=3).fit(make_df(spark, X))
    assert relative_difference(seeded.clusterCenters(), reference.clusterCenters()) <= 1e-9
