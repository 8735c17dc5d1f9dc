"""LloydKMeansModel.transform on both paths, against independent oracles.

Small models assign with Spark's own LogisticRegressionModel (whose argmax is the nearest
center) in the JVM; large ones in an Arrow UDF, forced here by monkeypatching
``_predict.assigns_in_arrow``. The rows
here are valid but for null ones, which ``handleInvalid="keep"`` turns into null predictions
(tests/test_invalid_rows.py covers every kind of invalid row on every path).
The oracles are numpy on the centers directly: the argmin of ``sum((x - c)**2)`` (Euclidean)
and the argmax of ``x.c / (|x| |c|)`` (cosine).
"""

from __future__ import annotations

import copy
import pickle
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.linalg import DenseVector, SparseVector, VectorUDT
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkml_lloyd import LloydKMeansModel, _compat, _predict, _predict_spark
from tests.helpers import make_df
from tests.leaks import jobs_started

N, D, K = 40, 5, 4
NULL_ROWS = (0, 7, 19, 39)
KINDS = ("dense", "sparse", "array<double>", "array<float>")
DISTANCES = ("euclidean", "cosine")
PATHS = ("jvm", "arrow")
#: What Spark's KMeansModel.transform writes on its prediction column for K centers.
SPARK_PREDICTION_METADATA = {"ml_attr": {"num_vals": K, "type": "nominal"}}
#: How the JVM path's assignment reads in a physical plan: the class Spark's scorer (a UDF)
#: gives, minus one, on the ``CASE``'s last branch.
JVM_ASSIGNMENT = re.compile(
    r"ELSE cast\(greatest\(\(__sparkml_lloyd_scorer_class#\d+ - 1\.0\), 0\.0\)")


def oracle(X: np.ndarray, centers: np.ndarray, distance: str) -> np.ndarray:
    """The index of the nearest center for every row of X, computed the textbook way."""
    if distance == "cosine":
        sim = (X @ centers.T) / np.outer(np.linalg.norm(X, axis=1),
                                         np.linalg.norm(centers, axis=1))
        return sim.argmax(axis=1)
    return ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """Points around K directions at various scales, with about a third of their entries
    zero (so sparse vectors are really sparse), and centers along those directions that are
    not unit vectors (so cosine must normalise them). Every number is a float32, so
    array<float> holds exactly the same points; no row is all zeros."""
    rng = np.random.default_rng(17)
    directions = rng.normal(size=(K, D))
    centers = directions * rng.uniform(0.5, 3.0, size=(K, 1))
    X = directions[rng.integers(0, K, N)] * rng.uniform(0.5, 3.0, size=(N, 1))
    X = (X + 0.5 * rng.normal(size=(N, D))) * (rng.random((N, D)) < 0.6)
    X[:, 0] += 0.25
    return X.astype(np.float32).astype(np.float64), centers


def _value(x: np.ndarray, kind: str) -> Any:
    if kind == "dense":
        return DenseVector(x)
    if kind == "sparse":
        nz = np.flatnonzero(x)
        return SparseVector(len(x), nz.tolist(), x[nz].tolist())
    return [float(v) for v in x]


def _type(kind: str) -> T.DataType:
    if kind in ("dense", "sparse"):
        return VectorUDT()
    return T.ArrayType(T.FloatType() if kind == "array<float>" else T.DoubleType())


def features_df(spark: SparkSession, X: np.ndarray, kind: str) -> DataFrame:
    """Columns id, features (``None`` on NULL_ROWS), tag; in row order."""
    schema = T.StructType([
        T.StructField("id", T.IntegerType(), False),
        T.StructField("features", _type(kind)),
        T.StructField("tag", T.StringType()),
    ])
    rows = [(i, None if i in NULL_ROWS else _value(x, kind), f"row{i}") for i, x in enumerate(X)]
    return spark.createDataFrame(rows, schema)


def expected_df(spark: SparkSession, df: DataFrame, labels: np.ndarray,
                column: str = "prediction") -> DataFrame:
    """``df`` with ``column`` = labels (null on NULL_ROWS) appended, built without the model;
    the column carries the metadata Spark's KMeansModel gives it (K nominal values)."""
    schema = T.StructType([*df.schema.fields, T.StructField(column, T.IntegerType(), True,
                                                            SPARK_PREDICTION_METADATA)])
    rows = [(*row, None if i in NULL_ROWS else int(labels[i]))
            for i, row in enumerate(df.collect())]
    return spark.createDataFrame(rows, schema)


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on the JVM path or, with the JVM switched off, the Arrow path."""
    if request.param == "arrow":
        monkeypatch.setattr(_predict, "assigns_in_arrow", lambda k, d: True)
    return request.param


def keeping(centers: Any) -> LloydKMeansModel:
    """A model that predicts null for the null rows of :func:`features_df`."""
    return LloydKMeansModel(centers).setHandleInvalid("keep")


def with_distance(model: LloydKMeansModel, distance: str) -> LloydKMeansModel:
    return model.copy({model.distanceMeasure: distance})


def physical_plan(df: DataFrame) -> str:
    return df._jdf.queryExecution().executedPlan().toString()


# -- predictions ---------------------------------------------------------------------------


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("kind", KINDS)
def test_predictions_equal_the_oracle(spark, data, kind, distance, path):
    """Every input type and distance, nulls mixed in: null -> null, the other rows get the
    oracle's cluster, row order and the other columns are unchanged, nothing else added."""
    X, centers = data
    df = features_df(spark, X, kind)
    out = with_distance(keeping(centers), distance).transform(df)
    assert out.columns == ["id", "features", "tag", "prediction"]
    assert out.schema["prediction"].dataType == T.IntegerType()
    assert_df_equality(out, expected_df(spark, df, oracle(X, centers, distance)))
    python_udf = "ArrowEvalPython" in physical_plan(out)
    assert python_udf == (path == "arrow")


def test_the_oracle_data_has_no_near_ties(data):
    """Guard the guard: no point is within 1e-9 of a tie, so any correct code agrees."""
    X, centers = data
    d2 = np.sort(((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2), axis=1)
    cos = np.sort((X @ centers.T) / np.outer(np.linalg.norm(X, axis=1),
                                             np.linalg.norm(centers, axis=1)), axis=1)
    assert (d2[:, 1] - d2[:, 0]).min() > 1e-9 and (cos[:, -1] - cos[:, -2]).min() > 1e-9
    assert len(set(oracle(X, centers, "euclidean"))) == len(set(oracle(X, centers, "cosine"))) == K
    # cosine differs from Euclidean, and from the kernel's argmin on centers left unnormalised
    assert (oracle(X, centers, "euclidean") != oracle(X, centers, "cosine")).sum() > N // 10
    raw = (np.sum(centers**2, axis=1) - 2 * X @ centers.T).argmin(axis=1)
    assert (raw != oracle(X, centers, "cosine")).sum() > N // 10
    assert (X == 0).mean() > 0.25


def test_a_non_nullable_column(spark, data, path):
    """A column that cannot hold nulls: on the JVM path Spark's optimizer removes the null
    test from the row rule."""
    X, centers = data
    schema = T.StructType([T.StructField("features", VectorUDT(), False)])
    df = spark.createDataFrame([(DenseVector(x),) for x in X], schema)
    out = LloydKMeansModel(centers).transform(df)
    assert [r.prediction for r in out.collect()] == oracle(X, centers, "euclidean").tolist()
    assert out.columns == ["features", "prediction"]
    if path == "jvm":
        plan = physical_plan(out)
        assert "isnull(features" not in plan and JVM_ASSIGNMENT.search(plan), plan
        nullable = features_df(spark, X, "dense")
        assert "isnull(features" in physical_plan(keeping(centers).transform(nullable))


def test_with_column_semantics(spark, data, path):
    """An existing predictionCol is replaced in place (as withColumn does), also when it is
    the features column itself; other columns are kept."""
    X, centers = data
    labels = oracle(X, centers, "euclidean").tolist()
    df = make_df(spark, X).withColumn("prediction", F.lit("old")).withColumn(
        "__sparkml_lloyd_prediction", F.lit(1))
    out = LloydKMeansModel(centers).transform(df)
    assert out.columns == ["id", "features", "prediction", "__sparkml_lloyd_prediction"]
    assert out.schema["prediction"].dataType == T.IntegerType()
    assert [r.prediction for r in out.orderBy("id").collect()] == labels
    assert {r["__sparkml_lloyd_prediction"] for r in out.collect()} == {1}

    over = LloydKMeansModel(centers).setPredictionCol("features").transform(make_df(spark, X))
    assert over.columns == ["id", "features"]
    assert [r.features for r in over.orderBy("id").collect()] == labels


def test_other_columns_pass_through_whatever_their_names(spark, data, path):
    """Column names with dots, backticks, newlines, duplicates (after a join) and names like
    our temporaries' come out as they went in, in order, with the prediction appended."""
    X, centers = data
    base = make_df(spark, X).select(
        "id", "features", F.col("id").alias("a.b"), F.lit("t").alias("x`y"),
        F.lit(2).alias("new\nline"), F.lit(3).alias("__sparkml_lloyd_features_0"))
    df = base.join(spark.range(N).select(F.col("id").alias("id")), "id").select(
        "*", F.col("`a.b`").alias("id"))
    names = ["id", "features", "a.b", "x`y", "new\nline", "__sparkml_lloyd_features_0", "id"]
    assert df.columns == names
    out = LloydKMeansModel(centers).transform(df)
    assert out.columns == [*names, "prediction"]
    rows = sorted(out.collect(), key=lambda r: r[0])
    assert [r[-1] for r in rows] == oracle(X, centers, "euclidean").tolist()
    assert {(r[3], r[4], r[5]) for r in rows} == {("t", 2, 3)}
    assert all(r[0] == r[2] == r[6] for r in rows)


def test_the_prediction_column_carries_sparks_metadata(spark, data, path):
    """The built-in's prediction column says it holds k nominal values; so does ours."""
    X, centers = data
    df = make_df(spark, X)
    builtin = LloydKMeansModel(centers).toSparkModel().transform(df).schema["prediction"]
    ours = LloydKMeansModel(centers).transform(df).schema["prediction"]
    assert ours.metadata == builtin.metadata == SPARK_PREDICTION_METADATA
    assert ours.dataType == builtin.dataType == T.IntegerType()


# -- errors --------------------------------------------------------------------------------


def test_a_wrong_length_declared_by_metadata_fails_at_transform(spark, path):
    """VectorAssembler records the vector length: transform itself raises, before any job."""
    raw = spark.createDataFrame([(1.0, 2.0, 3.0)], ["a", "b", "c"])
    df = VectorAssembler(inputCols=["a", "b", "c"], outputCol="features").transform(raw)
    model = LloydKMeansModel([[0.0, 0.0], [1.0, 1.0]])
    jobs = jobs_started(spark)
    with pytest.raises(ValueError, match=r"length 3 \(its ML attribute metadata says so\)"):
        model.transform(df)
    assert jobs_started(spark) == jobs
    two = VectorAssembler(inputCols=["a", "b"], outputCol="features").transform(raw)
    assert model.transform(two).collect()[0].prediction == 1




# -- Spark's scorer: cheap to build, cached ---------------------------------------------


class _CallCounter:
    """Counts the commands py4j sends to the JVM (but not the garbage-collection notices,
    which come whenever Python happens to free a JVM handle)."""

    def __init__(self, spark: SparkSession, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        client = spark.sparkContext._gateway._gateway_client
        send = client.send_command

        def counting(command: str, *args: Any, **kwargs: Any) -> Any:
            if not command.startswith("m\n"):
                self.calls += 1
            return send(command, *args, **kwargs)

        monkeypatch.setattr(client, "send_command", counting)

    def of(self, action: Any) -> int:
        """The number of calls ``action()`` makes."""
        before = self.calls
        action()
        return self.calls - before


@pytest.fixture
def py4j_calls(spark, monkeypatch) -> Iterator[_CallCounter]:
    yield _CallCounter(spark, monkeypatch)


@pytest.fixture(scope="module")
def big() -> tuple[np.ndarray, np.ndarray]:
    """100 centers of 100 features, and points near some of them."""
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(100, 100))
    X = centers[rng.integers(0, 100, size=30)] + 0.1 * rng.normal(size=(30, 100))
    return X, centers


def test_a_100x100_model_builds_in_few_py4j_calls(spark, big, py4j_calls, monkeypatch):
    """Building Spark's scorer takes as many py4j calls for 100 x 100 centers as for 2 x 2
    (a builder sending one number per call would take 10,000), in the first transform (which
    builds it) and in toSparkModel(); a second transform reuses the scorer and takes fewer,
    as many as the built-in's."""
    # 100 x 100 would take the Arrow path (see the next test); this one is about the JVM's
    monkeypatch.setattr(_predict, "assigns_in_arrow", lambda k, d: False)
    X, centers = big
    # Column names no other test uses: the Columns around the scorer are the session's, per
    # column and length, so both first transforms below build them
    df, small_df = (make_df(spark, X[:, :d]).withColumnRenamed("features", f"py4j_{d}")
                    for d in (100, 2))
    model, small = (LloydKMeansModel(c).setFeaturesCol(f"py4j_{len(c[0])}")
                    for c in (centers, centers[:2, :2]))
    out = None

    def transform() -> None:
        nonlocal out
        out = model.transform(df)

    first = py4j_calls.of(transform)
    assert first <= py4j_calls.of(lambda: small.transform(small_df)) + 2, first
    again = py4j_calls.of(lambda: model.transform(df))
    assert again < first
    assert [r.prediction for r in out.orderBy("id").collect()] == oracle(
        X, centers, "euclidean").tolist()

    builtins = []
    calls = py4j_calls.of(lambda: builtins.append(model.toSparkModel()))
    assert calls <= py4j_calls.of(small.toSparkModel) + 2, calls
    np.testing.assert_array_equal(np.array(builtins[0].clusterCenters()), centers)
    builtin = builtins[0]
    builtin.transform(df)
    assert again <= py4j_calls.of(lambda: builtin.transform(df)), again


def test_the_jvm_path_is_sparks_scorer_under_the_row_rule(spark, data):
    """The plan: Spark's scorer (a UDF in the JVM, no Python) on the features, a stand-in
    vector for null rows and rows of another length, then ``CASE WHEN`` the row rule holds:
    the exact check of the stored values only where the scorer gave its decoy class 0; each
    row scored once, also under ``"skip"``."""
    X, centers = data
    df = features_df(spark, X, "dense")
    plan = physical_plan(keeping(centers).transform(df))
    assert "CASE WHEN isnull(features#" in plan and JVM_ASSIGNMENT.search(plan), plan
    assert re.search(r"\(__sparkml_lloyd_scorer_class#\d+ = 0\.0\) AND \(\(coalesce\(array_max\("
                     r"unwrap_udt\(features#", plan), plan
    assert "UDF(CASE WHEN (isnull(features#" in plan, plan
    assert "EvalPython" not in plan, plan
    # "skip" filters on the rule, which reads the scorer's class: Spark must not push that
    # filter below the scorer and score every row twice (it did over cached data)
    cached = features_df(spark, X, "dense").cache()
    try:
        skipping = physical_plan(keeping(centers).setHandleInvalid("skip").transform(cached))
    finally:
        cached.unpersist(blocking=True)
    # (Spark 3.5 and 4.0 still push it into the cached scan: twice there, noted in the docs)
    expected = 1 if _compat.PYSPARK_LINE >= (4, 1) else 3
    assert skipping.count("UDF(CASE WHEN (isnull(features#") == expected, skipping


def test_where_sparks_scorer_cannot_be_built_the_model_assigns_with_the_arrow_udf(
        spark, data, monkeypatch, caplog):
    """Spark's scorer is built through py4j (classic) or loaded on the server (Connect); if
    that fails (another Spark version, a read-only file system), transform warns once and
    runs the numpy kernel instead, with the same results."""
    X, centers = data

    def unavailable(*args: Any) -> Any:
        raise RuntimeError("no such constructor")

    monkeypatch.setattr(_predict_spark, "spark_scorer", unavailable)
    model = keeping(centers)
    df = features_df(spark, X, "dense")
    with caplog.at_level("WARNING", logger="sparkml_lloyd"):
        out = model.transform(df)
        model.transform(df)
    assert [r.message for r in caplog.records if "Arrow UDF instead" in r.message] == [
        "transform: Spark's model could not be built (no such constructor); assigning with "
        "the Arrow UDF instead."]
    assert "ArrowEvalPython" in physical_plan(out)
    assert out.schema["prediction"].metadata == SPARK_PREDICTION_METADATA
    assert [r.prediction for r in out.collect()] == [
        None if i in NULL_ROWS else int(v)
        for i, v in enumerate(oracle(X, centers, "euclidean"))]


def test_large_models_assign_in_an_arrow_udf_small_ones_in_the_jvm(spark, big, data):
    """k x d >= ARROW_MIN_CENTER_VALUES, or (arrow_udf, pyspark 4.1+) k >= 75 centers of at
    least 5 features: BLAS in a Python worker beats Spark's row loop."""
    X, centers = big
    assert centers.size >= _predict.ARROW_MIN_CENTER_VALUES
    many = centers[:, :10]  # 100 x 10: 1,000 values
    Xs, small = data
    assert small.size < _predict.ARROW_MIN_CENTER_VALUES and len(small) < 75
    for points, model_centers, arrow in [
            (X, centers, True), (X[:, :10], many, _compat.HAS_ARROW_UDF),
            (Xs, small, False)]:
        out = LloydKMeansModel(model_centers).transform(make_df(spark, points))
        assert ("ArrowEvalPython" in physical_plan(out)) == arrow, model_centers.shape
        assert [r.prediction for r in out.orderBy("id").collect()] == oracle(
            points, model_centers, "euclidean").tolist()


@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """The distance measure of every scorer built during the test."""
    made: list[str] = []
    build = _predict_spark.spark_scorer

    def spy(spark: Any, centers: np.ndarray, distance: str, *args: Any) -> Any:
        made.append(distance)
        return build(spark, centers, distance, *args)

    monkeypatch.setattr(_predict_spark, "spark_scorer", spy)
    return made


def test_the_scorer_is_cached_and_follows_the_column_params(spark, data, builds):
    X, centers = data
    df = features_df(spark, X, "dense")
    labels = oracle(X, centers, "euclidean")
    model = keeping(centers)
    assert_df_equality(model.transform(df), expected_df(spark, df, labels))
    assert_df_equality(model.transform(df), expected_df(spark, df, labels))
    assert builds == ["euclidean"]

    model.setPredictionCol("cluster")
    assert_df_equality(model.transform(df), expected_df(spark, df, labels, "cluster"))
    moved = df.withColumnRenamed("features", "points")
    model.setFeaturesCol("points")
    assert_df_equality(model.transform(moved), expected_df(spark, moved, labels, "cluster"))
    params = {model.predictionCol: "p"}
    assert model.transform(moved, params).columns == ["id", "points", "tag", "p"]
    assert builds == ["euclidean"]  # transform(df, params) runs on a copy: it shares it
    assert model.getPredictionCol() == "cluster"


def test_a_copy_builds_a_scorer_only_for_other_params(spark, data, builds):
    """copy() may change the distance measure: the copy builds a scorer for its own params;
    a copy with the same params (a CrossValidator's, one per fold) shares the model's."""
    X, centers = data
    df = features_df(spark, X, "sparse")
    model = keeping(centers)
    model.transform(df).collect()
    cosine = with_distance(model, "cosine")
    assert_df_equality(cosine.transform(df),
                       expected_df(spark, df, oracle(X, centers, "cosine")))
    plain = model.copy()
    plain.transform(df).collect()
    assert builds == ["euclidean", "cosine", "euclidean"]
    model.transform(df).collect()  # the same params: nothing to build
    model.copy({model.predictionCol: "p"}).transform(df).collect()
    assert len(builds) == 3
    # the cached scorer is not part of a copy or a pickle
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert other._predictor._assigner is None
        np.testing.assert_array_equal(other.clusterCenters(), centers)


def test_another_session_builds_again(spark, data, builds):
    """The scorer belongs to the session it was built on (a new session is another object:
    simulated here, a new session would stop the shared test session's context)."""

    class OtherSession:
        sparkContext = spark.sparkContext

    centers = data[1]
    assigner = LloydKMeansModel(centers)._predictor.assigner(centers, "euclidean")
    mine = assigner.scorer(spark)
    other = OtherSession()
    assert assigner.scorer(other) is not mine
    assert assigner.scorer(other) is assigner.scorer(other)
    assert assigner.scorer(spark) is mine
    assert len(builds) == 2
