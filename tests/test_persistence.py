"""Save/load of estimator, model and Pipelines; CrossValidator with ClusteringEvaluator."""

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

from sparkml_lloyd import LloydKMeans, LloydKMeansModel
from tests.helpers import blobs


@pytest.fixture(scope="module")
def three_blobs(spark):
    """600 points in 3 blobs in 2-D, and their DataFrame."""
    X, _, df = blobs(spark, n_samples=600, centers=3, n_features=2, random_state=4)
    return X, df


@pytest.fixture(scope="module")
def model(three_blobs):
    X, df = three_blobs
    return LloydKMeans(k=3, initialCenters=X[:3], maxIter=10, tol=0.0).fit(df)


def test_estimator_round_trip(tmp_path, spark):  # saving needs a SparkSession
    km = LloydKMeans(k=4, maxIter=7, tol=0.25, seed=5, initMode="random",
                     distanceMeasure="cosine", initialCenters=[[1.0, 2.0]] * 4)
    path = str(tmp_path / "est")
    km.save(path)
    loaded = LloydKMeans.load(path)
    assert loaded.uid == km.uid
    assert loaded.extractParamMap() == {loaded.getParam(p.name): v
                                        for p, v in km.extractParamMap().items()}
    assert not loaded.isSet(loaded.weightCol)


def test_model_round_trip(tmp_path, three_blobs, model):
    _, df = three_blobs
    path = str(tmp_path / "model")
    model.write().save(path)
    loaded = LloydKMeansModel.load(path)
    assert loaded.uid == model.uid and not loaded.hasSummary
    np.testing.assert_array_equal(np.array(loaded.clusterCenters()),
                                  np.array(model.clusterCenters()))
    assert loaded.getMaxIter() == 10 and loaded.getK() == 3
    assert_df_equality(loaded.transform(df), model.transform(df), ignore_row_order=True)


def test_overwrite_replaces_and_plain_save_refuses(tmp_path, three_blobs, model):
    X, df = three_blobs
    path = str(tmp_path / "m")
    model.save(path)
    other = LloydKMeans(k=2, initialCenters=X[:2], maxIter=1).fit(df)
    with pytest.raises(FileExistsError, match="already exists"):
        other.save(path)
    assert LloydKMeansModel.load(path).getK() == 3  # untouched
    other.write().overwrite().save(path)
    assert LloydKMeansModel.load(path).getK() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary leftovers


def test_pipeline_with_assembler_saves_and_loads(tmp_path, spark, three_blobs):
    X, _ = three_blobs
    raw = spark.createDataFrame([(float(a), float(b)) for a, b in X], ["a", "b"])
    pipeline = Pipeline(stages=[
        VectorAssembler(inputCols=["a", "b"], outputCol="features"),
        LloydKMeans(k=3, initialCenters=X[:3], maxIter=10, tol=0.0),
    ])
    pipeline.write().overwrite().save(str(tmp_path / "pipeline"))
    loaded_pipeline = Pipeline.load(str(tmp_path / "pipeline"))
    assert isinstance(loaded_pipeline.getStages()[1], LloydKMeans)
    fitted = loaded_pipeline.fit(raw)
    fitted.write().overwrite().save(str(tmp_path / "fitted"))
    reloaded = PipelineModel.load(str(tmp_path / "fitted"))
    assert isinstance(reloaded.stages[1], LloydKMeansModel)
    assert_df_equality(reloaded.transform(raw), fitted.transform(raw), ignore_row_order=True)


def test_cross_validator_with_clustering_evaluator(spark):
    df = blobs(spark, n_samples=600, centers=[[0, 0], [12, 0], [0, 12]], random_state=4).df
    km = LloydKMeans(seed=1, maxIter=10)
    grid = ParamGridBuilder().addGrid(km.k, [2, 3, 5]).build()
    cv = CrossValidator(estimator=km, estimatorParamMaps=grid,
                        evaluator=ClusteringEvaluator(), numFolds=2, seed=1)
    cv_model = cv.fit(df)
    assert len(cv_model.avgMetrics) == 3
    # three well separated blobs: k=3 has the best silhouette
    assert int(np.argmax(cv_model.avgMetrics)) == 1
    assert cv_model.bestModel.getK() == 3
