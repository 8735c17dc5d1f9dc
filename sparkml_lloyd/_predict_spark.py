"""Prediction by one of Spark's own stages, on classic Spark and Spark Connect alike: a
``LogisticRegressionModel`` whose argmax is the nearest center, under the row rule.

Assigning to the nearest center is a linear argmax: the nearest center ``c_i`` to ``x``
maximises ``2 c_i . x - |c_i|^2`` (euclidean), or ``u_i . x`` for the unit centers ``u_i``
(cosine). A multinomial ``LogisticRegressionModel`` predicts exactly the argmax of such
margins (coefficients ``2 c_i`` and intercepts ``-|c_i|^2``; its softmax never changes the
order). Spark runs its ``transform`` in the JVM, with no Python worker, on classic Spark
(the model built through py4j) and on a Spark Connect server (the model written in Spark's
saved layout and loaded by Spark's reader on the server, once per model and session): there
the Arrow UDF took 1.4-2.1x the built-in's time at 20 features, this takes about what
Spark's ``KMeansModel.transform`` takes (docs/design.md).

The row rule (:mod:`sparkml_lloyd._rows`) is written around it as Spark Columns:

* a null row or one of another length never reaches the model (it gets a valid stand-in, and
  its verdict from its own test);
* class 0 is a **decoy** (coefficients 0, intercept ``-1e308``): a row with a NaN or an
  infinite value makes every margin NaN or infinite, and Spark's argmax, which starts from
  class 0 and moves only to a strictly larger margin, then stays on the decoy. A finite row
  reaches the decoy only when every margin overflows; so only rows predicted 0 get the exact
  check of their values (``array_max``/``array_min``), and a finite one among them gets
  cluster 0, as Spark's ``KMeansModel`` gives a row whose every distance is infinite;
* under cosine an all-zero row has every margin 0 and gets class 1 (the first center): only
  rows predicted 1 are checked for zeros.

Unlike Spark's own ``KMeansModel.predict`` (which falls back to exact distances when the
norm expansion would lose precision), the margins are the expanded form our kernel also uses
(:func:`sparkml_lloyd._kernel.nearest`): the same clusters but for points within rounding of
a tie.
"""

from __future__ import annotations

import uuid
import weakref
from typing import Any

import numpy as np
from pyspark.ml.classification import LogisticRegressionModel
from pyspark.ml.functions import array_to_vector
from pyspark.ml.linalg import DenseMatrix, DenseVector, MatrixUDT, VectorUDT
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkml_lloyd import _compat, _persistence, _rows, _schema
from sparkml_lloyd import _kernel as K

#: The decoy class's intercept: below every margin of a finite row that does not overflow.
DECOY = -1e308


def mllib_kmeans_model(
    sc: Any, centers: np.ndarray, distance: str, training_cost: float = 0.0, num_iter: int = 0
) -> Any:
    """Spark's ``org.apache.spark.mllib.clustering.KMeansModel`` (a py4j JavaObject) with
    exactly these centers, in a fixed number of py4j calls whatever ``k x d``.

    The centers cross as one pickled list of mllib DenseVectors (their raw float64 bytes),
    which Spark's own SerDe turns into a ``java.util.ArrayList`` of Vectors; the one-argument
    constructor takes that list, and its ``clusterCenters()`` is the ``Vector[]`` the full
    constructor (with the distance measure) needs.
    """
    from pyspark.mllib.linalg import DenseVector as MLlibDenseVector
    from pyspark.serializers import CPickleSerializer

    jvm = sc._jvm
    rows = [MLlibDenseVector(c) for c in np.asarray(centers, dtype=np.float64)]
    jlist = jvm.org.apache.spark.mllib.api.python.SerDe.loads(
        bytearray(CPickleSerializer().dumps(rows))
    )
    mllib = jvm.org.apache.spark.mllib.clustering.KMeansModel
    return mllib(mllib(jlist).clusterCenters(), distance, float(training_cost), int(num_iter))


def spark_kmeans_model(
    sc: Any, centers: np.ndarray, distance: str, training_cost: float, num_iter: int, uid: str
) -> Any:
    """The same centers as Spark's own ``pyspark.ml.clustering.KMeansModel`` (JVM-backed)."""
    from pyspark.ml.clustering import KMeansModel

    mllib_model = mllib_kmeans_model(sc, centers, distance, training_cost, num_iter)
    model = KMeansModel(sc._jvm.org.apache.spark.ml.clustering.KMeansModel(uid, mllib_model))
    model._resetUid(uid)
    model._transfer_params_from_java()
    return model


def margins(centers: np.ndarray, distance: str) -> tuple[np.ndarray, np.ndarray]:
    """``(coefficients, intercepts)`` of ``k + 1`` classes: class 0 the decoy, class ``i + 1``
    center ``i``, whose margin ``coefficients[i + 1] . x + intercepts[i + 1]`` is largest
    for the nearest center."""
    k, d = centers.shape
    if distance == K.COSINE:
        coefficients, intercepts = K.unit_centers(centers, distance), np.zeros(k)
    else:
        coefficients, intercepts = 2.0 * centers, -np.einsum("ij,ij->i", centers, centers)
    return (np.vstack([np.zeros((1, d)), coefficients]),
            np.concatenate([[DECOY], intercepts]))


def _data_row(coefficients: np.ndarray, intercepts: np.ndarray) -> tuple[Any, ...]:
    """Spark's saved ``data`` row of a multinomial LogisticRegressionModel."""
    rows, d = coefficients.shape
    return (rows, d, DenseVector(intercepts),
            DenseMatrix(rows, d, coefficients.T.ravel().tolist()), True)


_DATA_SCHEMA = T.StructType([
    T.StructField("numClasses", T.IntegerType()), T.StructField("numFeatures", T.IntegerType()),
    T.StructField("interceptVector", VectorUDT()),
    T.StructField("coefficientMatrix", MatrixUDT()),
    T.StructField("isMultinomial", T.BooleanType())])


def spark_scorer(spark: Any, centers: np.ndarray, distance: str, features_col: str,
                 raw_col: str) -> Any:
    """Spark's ``LogisticRegressionModel`` of :func:`margins` reading ``features_col`` into
    ``raw_col`` (its class, a double) and nothing else: built through py4j on classic
    Spark (a py4j JavaObject), loaded on the server under Spark Connect (a pyspark
    model)."""
    coefficients, intercepts = margins(centers, distance)
    uid = f"LloydKMeansScorer_{uuid.uuid4().hex[:12]}"
    params = {"featuresCol": features_col, "predictionCol": raw_col,
              "probabilityCol": "", "rawPredictionCol": ""}
    if not _compat.is_classic(spark):
        return _persistence.spark_model_via_save(
            spark, LogisticRegressionModel, uid, params,
            lambda path: spark.createDataFrame(
                [_data_row(coefficients, intercepts)], _DATA_SCHEMA).coalesce(1).write.parquet(
                    path))
    from pyspark.ml.common import _py2java

    sc = spark.sparkContext
    _, _, vector, matrix, _ = _data_row(coefficients, intercepts)
    model = sc._jvm.org.apache.spark.ml.classification.LogisticRegressionModel(
        uid, _py2java(sc, matrix), _py2java(sc, vector), len(intercepts), True)
    return (model.setFeaturesCol(features_col).setPredictionCol(raw_col)
            .setProbabilityCol("").setRawPredictionCol(""))


def _stored(source: Column, kind: str) -> tuple[Column, Column]:
    """``(values, length)`` of every row: a vector's stored values (``unwrap_udt``, no copy;
    a sparse one's non-zeros) and its size, or an array's values as doubles and its size."""
    if kind == _schema.VECTOR:
        stored = F.unwrap_udt(source)
        values = stored.getField("values")
        return values, F.when(stored.getField("type") == 1, F.size(values)).otherwise(
            stored.getField("size"))
    values = source.cast(T.ArrayType(T.DoubleType()))
    return values, F.size(values)


def row_rule(source: Column, kind: str, d: int, cosine: bool, contains_null: bool,
             raw: Column) -> list[tuple[int, Column]]:
    """The row rule of :mod:`sparkml_lloyd._rows` as Spark Columns: ``(verdict, condition)``
    for every invalid kind, in :data:`~sparkml_lloyd._rows.ORDER` (each condition assumes
    the ones before it are false); a row is valid when none holds. ``raw``: the scorer's
    class (see the module docstring); ``contains_null``: whether an array column's type
    allows null elements."""
    inf = float("inf")
    values, length = _stored(source, kind)
    largest = F.coalesce(F.array_max(values), F.lit(0.0))  # NaN is above inf in SQL
    smallest = F.coalesce(F.array_min(values), F.lit(0.0))  # a sparse row's zeros: finite
    non_finite = (raw == 0.0) & ((largest >= inf) | (smallest <= -inf))
    if contains_null:  # a null inside an array counts as NaN
        non_finite = (F.size(F.array_compact(values)) != length) | non_finite
    rule = [(_rows.NULL, source.isNull()), (_rows.WRONG_LENGTH, length != d),
            (_rows.NON_FINITE, non_finite)]
    if cosine:  # an all-zero row has every margin 0: the first center's class
        rule.append((_rows.ZERO_COSINE, (raw == 1.0) & (largest == 0.0) & (smallest == 0.0)))
    return rule


def scorer_input(source: Column, kind: str, d: int, contains_null: bool) -> Column:
    """The features as the scorer reads them: a vector, the zero vector in place of a row
    that is null, of another length or (arrays) with a null element, which the row rule
    judges by itself."""
    values, length = _stored(source, kind)
    vector = source if kind == _schema.VECTOR else array_to_vector(values)
    unusable = source.isNull() | (length != d)
    if kind == _schema.ARRAY and contains_null:
        unusable = unusable | (F.size(F.array_compact(values)) != length)
    return F.when(unusable, array_to_vector(F.array_repeat(F.lit(0.0), d))).otherwise(vector)


#: The temporary columns of a transform: the features as the scorer reads them, its class.
FEATURES, CLASS = "__sparkml_lloyd_scorer_features", "__sparkml_lloyd_scorer_class"


class _Columns:
    """The Columns of every transform on one session, built once per column, kind, length,
    distance, mode, prediction column and k, and shared by every model (each Column function
    is ~10 py4j calls here: built per transform they would cost more than the query
    analysis). ``(input, kept, prediction)``: the scorer's input, the filter of ``"skip"``
    (the rule's "row is valid", led by an always-true nondeterministic test, so that Spark
    does not push the filter below the scorer and score every row twice) and the prediction
    (a null for an invalid row, or an error under ``"error"``, in the rule's order), aliased
    with Spark's metadata."""

    def __init__(self) -> None:
        self._built: dict[tuple[Any, ...], tuple[Column, Column, Column]] = {}

    def get(self, features_col: str, kind: str, d: int, cosine: bool, contains_null: bool,
            handle_invalid: str, prediction_col: str, metadata: dict[str, Any]
            ) -> tuple[Column, Column, Column]:
        key = (features_col, kind, d, cosine, contains_null, handle_invalid, prediction_col,
               repr(metadata))
        if key not in self._built:
            source, raw = F.col(features_col), F.col(CLASS)
            rule = row_rule(source, kind, d, cosine, contains_null, raw)
            invalid = rule[0][1]
            for _, condition in rule[1:]:
                invalid = invalid | condition
            cases: Any = F
            for verdict, condition in rule:
                outcome = (F.raise_error(F.lit(_rows.message(verdict, features_col, d)))
                           if handle_invalid == _rows.ERROR else F.lit(None))
                cases = cases.when(condition, outcome.cast(T.IntegerType()))
            prediction = cases.otherwise(F.greatest(raw - 1.0, F.lit(0.0)).cast(T.IntegerType()))
            # Spark pushes a filter's deterministic leading conjuncts only
            kept = (F.spark_partition_id() >= 0) & ~invalid
            self._built[key] = (scorer_input(source, kind, d, contains_null), kept,
                                prediction.alias(prediction_col, metadata=metadata))
        return self._built[key]


#: Per session (weakly: an entry goes with its session, which it does not reference).
_SESSIONS: weakref.WeakKeyDictionary[Any, _Columns] = weakref.WeakKeyDictionary()


class SparkAssigner:
    """Assigns with Spark's ``LogisticRegressionModel`` of :func:`margins` under the row rule
    (see the module docstring). The scorer is built once per session (classic: ~20 py4j
    calls; Connect: a model loaded on the server, ~0.8 s) and kept while the session lives;
    the Columns around it are the session's (:class:`_Columns`)."""

    def __init__(self, centers: np.ndarray, distance: str) -> None:
        self.centers, self.distance = centers, distance
        self._scorers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    def scorer(self, spark: Any) -> Any:
        """The scorer on ``spark``'s session (built on the first call)."""
        held = self._scorers.get(spark)
        if held is None:
            held = self._scorers[spark] = spark_scorer(
                spark, self.centers, self.distance, FEATURES, CLASS)
        return held

    def transform(self, df: DataFrame, features_col: str, kind: str, handle_invalid: str,
                  prediction_col: str, metadata: dict[str, Any]) -> DataFrame:
        """``df`` with ``prediction_col`` (IntegerType, replaced if present, with
        ``metadata``): invalid rows raise, are dropped or get null, per ``handle_invalid``.
        ``kind`` is what :func:`sparkml_lloyd._schema.check_prediction_input` returned."""
        spark = df.sparkSession
        dtype = df.schema[features_col].dataType
        columns = _SESSIONS.get(spark)
        if columns is None:
            columns = _SESSIONS[spark] = _Columns()
        scorer_in, kept, prediction = columns.get(
            features_col, kind, self.centers.shape[1], self.distance == K.COSINE,
            kind == _schema.ARRAY and dtype.containsNull, handle_invalid, prediction_col,
            metadata)
        scored = _apply(self.scorer(spark), df.withColumn(FEATURES, scorer_in))
        if handle_invalid == _rows.SKIP:
            scored = scored.where(kept)
        return scored.withColumn(prediction_col, prediction).drop(FEATURES, CLASS)


def _apply(scorer: Any, df: DataFrame) -> DataFrame:
    """``scorer.transform(df)``: the JVM model's own (one py4j call) or the pyspark model's."""
    if isinstance(scorer, LogisticRegressionModel):
        return scorer.transform(df)
    return type(df)(scorer.transform(df._jdf), df.sparkSession)
