"""One rule per row: every path gives the same verdict for the same invalid row.

Kinds of invalid rows (null, NaN, +-Inf, a null element inside an array, another number of
features, all zeros under cosine) x column types (dense and sparse vectors, arrays) x paths
(fit, ``predict``, ``transform`` in the JVM and in the Arrow UDF) x ``handleInvalid``
(``"error"`` raises naming the kind, ``"skip"`` drops the row, ``"keep"`` predicts null; fit
leaves the row out under both). The expected outcomes are written out by hand: the valid rows
go to center 0 and 1 (Euclidean: [1, 1] and [9, 9] to [0, 0] and [10, 10]; cosine: [1, 0.2]
and [0.2, 1] to [1, 0] and [0, 1]).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pyspark.errors import PySparkException
from pyspark.ml.linalg import DenseVector, SparseVector, VectorUDT
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkml_lloyd import LloydKMeans, LloydKMeansModel, _compat, _predict
from sparkml_lloyd._kernel import unit_centers
from sparkml_lloyd._schema import feature_columns
from tests.helpers import JVM_RAISED_ERROR

NAN, INF = float("nan"), float("inf")
CENTERS = {"euclidean": [[0.0, 0.0], [10.0, 10.0]], "cosine": [[1.0, 0.0], [0.0, 1.0]]}
VALID = {"euclidean": [[1.0, 1.0], [9.0, 9.0]], "cosine": [[1.0, 0.2], [0.2, 1.0]]}
COLUMNS = ("dense", "sparse", "array")
PATHS = ("jvm", "arrow")

#: (name, row as a list (None: a null row), distance, words of the message, columns it applies
#: to). The message words are those of sparkml_lloyd._rows.WHAT for one row.
INVALID = [
    ("null", None, "euclidean", "is null", COLUMNS),
    ("NaN", [NAN, 1.0], "euclidean", "has NaN, infinite or null values", COLUMNS),
    ("+Inf", [INF, 1.0], "euclidean", "has NaN, infinite or null values", COLUMNS),
    ("-Inf", [1.0, -INF], "euclidean", "has NaN, infinite or null values", COLUMNS),
    ("null element", [None, 1.0], "euclidean", "has NaN, infinite or null values", ("array",)),
    ("too short", [1.0], "euclidean", "does not have 2 features", COLUMNS),
    ("too long", [1.0, 0.0, 2.0], "euclidean", "does not have 2 features", COLUMNS),
    ("zero under cosine", [0.0, 0.0], "cosine", "is all zeros", COLUMNS),
]
CASES = [pytest.param(name, row, distance, words, column, id=f"{name}-{column}")
         for name, row, distance, words, columns in INVALID for column in columns]
#: A finite row whose squared norm overflows to Infinity: valid (its values are finite).
HUGE = [1e200, -1e200]


def value(row: list[float | None] | None, column: str) -> Any:
    if row is None:
        return None
    if column == "array":
        return row
    if column == "dense":
        return DenseVector(row)
    nz = [i for i, v in enumerate(row) if v != 0.0]
    return SparseVector(len(row), nz, [row[i] for i in nz])


def _key(row: list[float | None] | None) -> str:
    return repr(row)  # NaN != NaN, but its repr is the same


def rows_of(column: str) -> list[Any]:
    """Every row the tests put in a ``column`` DataFrame, once: the first valid row and pair
    of each distance, the invalid rows, then the second ones. Split in two partitions, each
    half holds valid rows, so every partition of a test's DataFrame does (as when each test
    made its DataFrame from its rows): a partition whose rows are all left out makes the fit
    recompute it from the source on every pass (correct, but slow)."""
    first, second = [], []
    for distance in ("euclidean", "cosine"):
        pairs = pairs_and_means(distance)[0]
        first += [VALID[distance][0], *pairs[:2]]
        second += [*pairs[2:], VALID[distance][1]]
    first.append(HUGE)
    invalid = [row for _, row, _, _, columns in INVALID if column in columns]
    return list({_key(r): r for r in [*first, *invalid, *second]}.values())


@pytest.fixture(scope="module")
def table(spark: SparkSession) -> Iterator[dict[str, DataFrame]]:
    """Per column type, every row of :func:`rows_of` with its ``key``, cached by one Spark
    action. The tests' DataFrames are taken from it (:func:`frame`), so their actions run in
    the JVM alone (a DataFrame made from Python rows sends them through a Python worker on
    every action, and a failing action is tried 4 times)."""
    tables = {}
    for column in COLUMNS:
        dtype = T.ArrayType(T.DoubleType()) if column == "array" else VectorUDT()
        schema = T.StructType([T.StructField("key", T.StringType()),
                               T.StructField("features", dtype)])
        data = [(_key(r), value(r, column)) for r in rows_of(column)]
        tables[column] = spark.createDataFrame(data, schema).cache()
        assert tables[column].count() == len(data)
    yield tables
    for df in tables.values():
        df.unpersist(blocking=True)


def frame(table: dict[str, DataFrame], rows: list[Any], column: str) -> DataFrame:
    """``id, features``: ``rows`` (each a row of :func:`rows_of`) as a ``column`` column,
    ``id`` their index in ``rows``."""
    keys = [_key(r) for r in rows]
    assert len(set(keys)) == len(keys), "a row twice"
    index = F.create_map(*[F.lit(v) for i, k in enumerate(keys) for v in (k, i)])[F.col("key")]
    return (table[column].where(F.col("key").isin(keys))
            .select(index.cast("int").alias("id"), "features"))


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "arrow":
        monkeypatch.setattr(_predict, "assigns_in_arrow", lambda k, d: True)
    return request.param


def model(distance: str, handle_invalid: str) -> LloydKMeansModel:
    m = LloydKMeansModel(CENTERS[distance]).setHandleInvalid(handle_invalid)
    return m.copy({m.distanceMeasure: distance})


def uses_arrow(df: DataFrame) -> bool:
    return "ArrowEvalPython" in df._jdf.queryExecution().executedPlan().toString()


def _assert_raises_at_the_action(out: DataFrame, words: str) -> None:
    with pytest.raises(JVM_RAISED_ERROR if not uses_arrow(out) else PySparkException,
                       match=f"A row of featuresCol='features' {words}") as e:
        out.collect()
    assert "handleInvalid='skip'" in str(e.value)


@pytest.mark.parametrize("name,row,distance,words,column", CASES)
def test_transform_in_the_jvm_raises_under_error(table, name, row, distance, words, column):
    df = frame(table, [VALID[distance][0], row, VALID[distance][1]], column)
    out = model(distance, "error").transform(df)
    assert not uses_arrow(out)
    _assert_raises_at_the_action(out, words)


@pytest.mark.parametrize("name,row,distance,words,column", CASES)
def test_the_arrow_udf_raises_under_error(table, name, row, distance, words, column):
    """The Arrow path's UDF body on the rows as Spark hands them over (a vector's stored
    fields, an array's cast): the same message. (Through Spark, a failing Python UDF costs
    seconds of task retries, so one case runs there, below.)"""
    from sparkml_lloyd._predict_arrow import predict_arrow

    df = frame(table, [VALID[distance][0], row, VALID[distance][1]], column)
    arrow = _compat.to_arrow(df.orderBy("id").select(*feature_columns(df, "features").values()))
    rows = {name: arrow.column(name) for name in arrow.column_names}
    centers = unit_centers(np.asarray(CENTERS[distance]), distance)
    with pytest.raises(ValueError, match=f"A row of featuresCol='features' {words}"):
        predict_arrow(rows, centers, distance, "error", "features")
    for mode in ("keep", "skip"):
        got = predict_arrow(rows, centers, distance, mode, "features").to_pylist()
        assert got == [0, None, 1]


def test_transform_with_the_arrow_udf_raises_under_error(table, monkeypatch):
    monkeypatch.setattr(_predict, "assigns_in_arrow", lambda k, d: True)
    df = frame(table, [VALID["euclidean"][0], [NAN, 1.0]], "sparse")
    out = model("euclidean", "error").transform(df)
    assert uses_arrow(out)
    _assert_raises_at_the_action(out, "has NaN, infinite or null values")


@pytest.mark.parametrize("mode", ["keep", "skip"])
@pytest.mark.parametrize("column", COLUMNS)
def test_transform_keeps_or_skips_every_invalid_row(table, path, column, mode):
    for distance in ("euclidean", "cosine"):
        invalid = [r for _, r, dist, _, cols in INVALID
                   if column in cols and dist in (distance, "euclidean")]
        rows = [VALID[distance][0], *invalid, VALID[distance][1]]
        out = model(distance, mode).transform(frame(table, rows, column))
        assert uses_arrow(out) == (path == "arrow")
        got = {r.id: r.prediction for r in out.collect()}
        last = len(rows) - 1
        if mode == "keep":
            assert got == {0: 0, last: 1, **{i: None for i in range(1, last)}}, distance
        else:
            assert got == {0: 0, last: 1}, distance


@pytest.mark.parametrize("column", COLUMNS)
def test_a_finite_row_whose_squares_overflow_is_valid_on_every_path(table, path, column):
    """``x . x`` of [1e200, -1e200] is Infinity, but every value is finite: the JVM rule's
    one-pass test only sends the row on to the exact test of its values (as
    ``_rows.judge`` does), so under ``"error"`` it gets a cluster on both paths, and from
    ``predict``, like the valid rows around it."""
    rows = [VALID["euclidean"][0], HUGE, VALID["euclidean"][1]]
    out = model("euclidean", "error").transform(frame(table, rows, column))
    assert uses_arrow(out) == (path == "arrow")
    got = {r.id: r.prediction for r in out.collect()}
    assert got[0] == 0 and got[2] == 1 and got[1] in (0, 1), got
    assert model("euclidean", "error").predict(value(HUGE, column)) in (0, 1)


@pytest.mark.parametrize("name,row,distance,words,column", CASES)
def test_predict_raises_or_gives_none(name, row, distance, words, column):
    vector = value(row, column)
    with pytest.raises(ValueError, match=f"The vector {words}"):
        model(distance, "error").predict(vector)
    for mode in ("keep", "skip"):
        assert model(distance, mode).predict(vector) is None
    good = value(VALID[distance][1], column)
    assert model(distance, "keep").predict(good) == 1


def unit(v: list[float]) -> np.ndarray:
    return np.asarray(v) / np.linalg.norm(v)


FIT_WORDS = {  # sparkml_lloyd._rows.WHAT for many rows
    "is null": "1 null rows",
    "has NaN, infinite or null values": "1 rows with NaN, infinite or null values",
    "is all zeros": "1 all-zero vectors",
}


def pairs_and_means(distance: str) -> tuple[list[list[float]], list[list[float]], Any]:
    """Two pairs of valid rows, the initial centers, and the fitted centers worked out by
    hand (cosine: the means of the unit rows, scaled to unit length)."""
    if distance == "euclidean":
        return ([[0.0, 1.0], [1.0, 0.0], [9.0, 10.0], [10.0, 9.0]], CENTERS[distance],
                [[0.5, 0.5], [9.5, 9.5]])
    pairs = [[1.0, 0.0], [1.0, 0.2], [0.0, 1.0], [0.2, 1.0]]
    return (pairs, [[1.0, 0.1], [0.1, 1.0]],
            [unit(unit(pairs[0]) + unit(pairs[1])), unit(unit(pairs[2]) + unit(pairs[3]))])


@pytest.mark.parametrize("name,row,distance,words,column", [
    c for c in CASES if "features" not in c.values[3]])
def test_fit_raises_under_error(table, name, row, distance, words, column):
    pairs, centers, _ = pairs_and_means(distance)
    df = frame(table, [*pairs[:2], row, *pairs[2:]], column)
    with pytest.raises(ValueError, match=f"featuresCol='features' has {FIT_WORDS[words]}"):
        LloydKMeans(k=2, initialCenters=centers, distanceMeasure=distance).fit(df)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("mode", ["skip", "keep"])
@pytest.mark.parametrize("column", COLUMNS)
def test_fit_leaves_every_invalid_row_out(table, column, mode, distance):
    """The valid pairs with every invalid kind in between: the fit on the four valid rows."""
    pairs, centers, expected = pairs_and_means(distance)
    invalid = [r for _, r, dist, words, cols in INVALID
               if column in cols and dist in (distance, "euclidean") and "features" not in words]
    df = frame(table, [*pairs[:2], *invalid, *pairs[2:]], column)
    fitted = LloydKMeans(k=2, initialCenters=centers, distanceMeasure=distance,
                         handleInvalid=mode).fit(df)
    assert fitted.summary.clusterSizes == [2, 2]
    np.testing.assert_allclose(fitted.clusterCenters(), expected, rtol=1e-14)
    predictions = {r.id: r.prediction for r in fitted.summary.predictions.collect()}
    last = len(invalid) + 3
    kept = {i: None for i in range(2, last - 1)} if mode == "keep" else {}
    assert predictions == {0: 0, 1: 0, last - 1: 1, last: 1, **kept}


@pytest.mark.parametrize("mode", ["error", "skip", "keep"])
def test_fit_on_rows_of_several_lengths_is_an_error_whatever_the_mode(table, mode):
    """No row is the wrong one when the data has two lengths: an error of the column."""
    df = frame(table, [[1.0, 1.0], [9.0, 9.0], [1.0, 0.0, 2.0]], "dense")
    with pytest.raises(ValueError, match=r"different lengths \[2, 3\]"):
        LloydKMeans(k=2, handleInvalid=mode).fit(df)


def test_a_partition_of_invalid_rows_only_is_empty_not_missing(spark, caplog):
    """Under "skip" a partition may keep no row: the executor loop runs on (no "blocks are
    not on its task's host" fallback) and the fit is the fit of the valid rows."""
    import logging

    rows = [[0.0, 1.0], [1.0, 0.0], [9.0, 10.0], [10.0, 9.0]] + [[NAN, 1.0]] * 4
    df = spark.createDataFrame([(DenseVector(r),) for r in rows], ["features"]).coalesce(2)
    assert df.rdd.getNumPartitions() == 2
    with caplog.at_level(logging.WARNING, logger="sparkml_lloyd"):
        fitted = LloydKMeans(k=2, initialCenters=CENTERS["euclidean"], handleInvalid="skip",
                             tol=0.0).fit(df)
    assert not [r for r in caplog.records if "executor loop stopped" in r.getMessage()]
    np.testing.assert_allclose(fitted.clusterCenters(), [[0.5, 0.5], [9.5, 9.5]], rtol=1e-15)
