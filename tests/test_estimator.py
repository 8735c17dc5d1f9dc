"""LloydKMeans as a pyspark.ml citizen: params, inputs, model API, summary, clean-up."""

import itertools

import numpy as np
import pytest
from pyspark.ml.clustering import KMeans
from pyspark.ml.linalg import SparseVector, Vectors
from pyspark.sql import functions as F
from pyspark.sql import types as T
from sklearn.cluster import KMeans as SkKMeans

from sparkml_lloyd import LloydKMeans, LloydKMeansModel
from tests.helpers import blobs, make_df, relative_difference, sklearn_lloyd

SHARED_PARAMS = ["featuresCol", "predictionCol", "k", "maxIter", "tol", "initMode",
                 "initSteps", "distanceMeasure", "weightCol"]


@pytest.fixture(scope="module")
def four_blobs(spark):
    """900 points in 4 well separated blobs in 3-D, and their DataFrame."""
    X, _, df = blobs(spark, n_samples=900, centers=4, n_features=3, random_state=3)
    return X, df


def persistent_rdds(spark):
    return spark.sparkContext._jsc.getPersistentRDDs().size()


def test_params_and_defaults_match_the_builtin(spark):
    ours, builtin = LloydKMeans(), KMeans()
    for name in SHARED_PARAMS:
        assert ours.hasParam(name) and builtin.hasParam(name), name
        assert ours.getParam(name).doc == builtin.getParam(name).doc, name
        assert ours.hasDefault(name) == builtin.hasDefault(name), name
        if builtin.hasDefault(name):
            assert ours.getOrDefault(name) == builtin.getOrDefault(name), name
    assert ours.hasParam("seed") and isinstance(ours.getSeed(), int)
    assert LloydKMeans().getSeed() == ours.getSeed()  # stable across instances and processes
    assert "initialCenters" in ours.explainParams()


def test_constructor_setters_getters_and_copy():
    km = LloydKMeans(k=5, maxIter=3, tol=0.5, seed=9, initMode="random", initSteps=4,
                     distanceMeasure="cosine", weightCol="w", featuresCol="f",
                     predictionCol="p", initialCenters=[[1.0, 2.0]] * 5)
    assert (km.getK(), km.getMaxIter(), km.getTol(), km.getSeed(), km.getInitMode(),
            km.getInitSteps(), km.getDistanceMeasure(), km.getWeightCol(),
            km.getFeaturesCol(), km.getPredictionCol()) == (
        5, 3, 0.5, 9, "random", 4, "cosine", "w", "f", "p")
    assert km.getInitialCenters() == [[1.0, 2.0]] * 5
    assert km.setK(7) is km and km.getK() == 7
    assert km.setMaxIter(1).setTol(0.0).setSeed(1).setInitMode("k-means||").getSeed() == 1
    copy = km.copy({km.k: 3})
    assert copy.getK() == 3 and km.getK() == 7 and copy.uid == km.uid
    assert km.clearInitialCenters().getInitialCenters() is None
    km.setParams(k=4)
    assert km.getK() == 4 and km.getMaxIter() == 1


def test_transform_adds_an_integer_prediction_matching_sklearn(spark, four_blobs):
    X, df = four_blobs
    model = LloydKMeans(k=4, initialCenters=X[:4], maxIter=5, tol=0.0).fit(df)
    out = model.transform(df)
    assert out.schema["prediction"].dataType == T.IntegerType()
    assert out.columns == [*df.columns, "prediction"]
    sk = sklearn_lloyd(X, X[:4], 5)
    got = [r.prediction for r in out.orderBy("id").collect()]
    assert got == sk.predict(X).tolist()
    assert [model.predict(Vectors.dense(x)) for x in X[:20]] == sk.predict(X[:20]).tolist()
    assert model.numFeatures == 3
    assert all(isinstance(c, np.ndarray) for c in model.clusterCenters())


def test_summary_fields(four_blobs):
    X, df = four_blobs
    model = LloydKMeans(k=4, initialCenters=X[:4], maxIter=4, tol=0.0).fit(df)
    s = model.summary
    assert model.hasSummary and s.k == 4 and s.numIter == 4
    assert s.featuresCol == "features" and s.predictionCol == "prediction"
    assert sum(s.clusterSizes) == 900 and len(s.costHistory) == s.numIter + 1
    assert s.trainingCost == s.costHistory[-1]
    costs = s.costHistory
    assert all(a >= b for a, b in itertools.pairwise(costs))  # Lloyd never rises
    sizes = {r.prediction: r["count"] for r in s.cluster.groupBy("prediction").count().collect()}
    assert [sizes.get(j, 0) for j in range(4)] == s.clusterSizes
    # trainingCost is the cost of the final centers, i.e. of transform's assignment
    centers = np.array(model.clusterCenters())
    labels = [r.prediction for r in s.predictions.orderBy("id").collect()]
    assert s.trainingCost == pytest.approx(((X - centers[labels]) ** 2).sum(), rel=1e-9)
    assert not model.copy().hasSummary


def test_array_columns_and_sparse_vectors_give_the_same_centers(spark, four_blobs):
    X, df = four_blobs
    est = LloydKMeans(k=4, initialCenters=X[:4], maxIter=6, tol=0.0)
    reference = np.array(est.fit(df).clusterCenters())
    arrays = make_df(spark, X, vector=False)
    floats = arrays.withColumn("features", F.col("features").cast("array<float>"))
    sparse = spark.createDataFrame(
        [(i, SparseVector(3, {j: float(v) for j, v in enumerate(x) if j != 1})
          if i % 2 else Vectors.dense(x)) for i, x in enumerate(X)], ["id", "features"])
    assert relative_difference(est.fit(arrays).clusterCenters(), reference) <= 1e-12
    X32 = X.astype(np.float32).astype(np.float64)
    sk32 = sklearn_lloyd(X32, X32[:4], 6)
    ours32 = LloydKMeans(k=4, initialCenters=X32[:4], maxIter=6, tol=0.0).fit(floats)
    assert relative_difference(ours32.clusterCenters(), sk32.cluster_centers_) <= 1e-9
    Xs = X.copy()
    Xs[1::2, 1] = 0.0  # what the sparse rows hold
    sks = sklearn_lloyd(Xs, Xs[:4], 6)
    ours_s = LloydKMeans(k=4, initialCenters=Xs[:4], maxIter=6, tol=0.0).fit(sparse)
    assert relative_difference(ours_s.clusterCenters(), sks.cluster_centers_) <= 1e-9


def test_an_empty_cluster_keeps_its_center(spark):
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [10.0, 10.0], [10.0, 11.0]])
    far = [100.0, -100.0]
    model = LloydKMeans(k=3, initialCenters=[[0.0, 0.0], [10.0, 10.0], far], maxIter=5,
                        tol=0.0).fit(make_df(spark, X))
    centers = model.clusterCenters()
    np.testing.assert_allclose(centers[0], [1 / 3, 1 / 3])
    np.testing.assert_allclose(centers[1], [10.0, 10.5])
    assert centers[2].tolist() == far
    assert model.summary.clusterSizes == [3, 2, 0]


@pytest.mark.parametrize("init_mode", ["k-means||", "random"])
def test_seeded_init_is_reproducible_and_finds_the_blobs(spark, four_blobs, init_mode):
    X, df = four_blobs
    fit = lambda seed: LloydKMeans(k=4, seed=seed, initMode=init_mode).fit(df)  # noqa: E731
    a, b, c = fit(11), fit(11), fit(12)
    assert np.array_equal(np.array(a.clusterCenters()), np.array(b.clusterCenters()))
    assert a.summary.numIter == b.summary.numIter
    # different seed: different start (cost history differs) ...
    assert a.summary.costHistory[0] != c.summary.costHistory[0]
    assert a.summary.trainingCost < a.summary.costHistory[0]
    if init_mode == "k-means||":  # well separated blobs: k-means|| lands on the optimum
        best = SkKMeans(n_clusters=4, n_init=10, random_state=0).fit(X).inertia_
        assert a.summary.trainingCost == pytest.approx(best, rel=1e-6)


def test_fit_releases_everything_it_cached(spark, four_blobs):
    _X, df = four_blobs
    before = persistent_rdds(spark)
    LloydKMeans(k=4, seed=1).fit(df)
    assert persistent_rdds(spark) == before
    with pytest.raises(ValueError, match="initialCenters has 2 columns"):
        LloydKMeans(k=2, initialCenters=[[0.0, 0.0], [1.0, 1.0]]).fit(df)
    assert persistent_rdds(spark) == before


def test_null_features_give_a_null_prediction_under_keep(spark):
    model = LloydKMeansModel([[0.0, 0.0], [5.0, 5.0]]).setHandleInvalid("keep")
    schema = "id int, features array<double>"
    df = spark.createDataFrame([(0, [4.0, 4.0]), (1, None), (2, [0.5, 0.0])], schema)
    assert [r.prediction for r in model.transform(df).orderBy("id").collect()] == [1, None, 0]


def test_cosine_distance_matches_sklearn_on_normalised_data(spark):
    X, _, df = blobs(spark, n_samples=800, centers=3, n_features=4, random_state=5,
                     center_box=(1, 20))
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    ours = LloydKMeans(k=3, initialCenters=X[:3], maxIter=1, tol=0.0,
                       distanceMeasure="cosine").fit(df)
    # one cosine iteration = one Euclidean iteration on unit vectors, then normalise
    sk = sklearn_lloyd(Xn, Xn[:3], 1)
    expected = sk.cluster_centers_ / np.linalg.norm(sk.cluster_centers_, axis=1, keepdims=True)
    assert relative_difference(ours.clusterCenters(), expected) <= 1e-9


def test_to_spark_model_is_the_builtin_with_the_same_centers(tmp_path, spark, four_blobs):
    from pyspark.ml.clustering import KMeansModel

    X, df = four_blobs
    model = LloydKMeans(k=4, initialCenters=X[:4], maxIter=5, tol=0.0).fit(df)
    builtin = model.toSparkModel()
    assert isinstance(builtin, KMeansModel)
    np.testing.assert_array_equal(np.array(builtin.clusterCenters()),
                                  np.array(model.clusterCenters()))
    assert builtin.getFeaturesCol() == "features" and builtin.getK() == 4
    ours = [r.prediction for r in model.transform(df).orderBy("id").collect()]
    theirs = [r.prediction for r in builtin.transform(df).orderBy("id").collect()]
    assert ours == theirs
    builtin.write().overwrite().save(str(tmp_path / "spark-kmeans"))
    reloaded = KMeansModel.load(str(tmp_path / "spark-kmeans"))
    np.testing.assert_array_equal(np.array(reloaded.clusterCenters()),
                                  np.array(model.clusterCenters()))
