"""Prediction in the JVM (classic Spark, py4j): Spark's own KMeansModel holding our centers.

Spark's ``KMeansModel`` builds its assignment UDF inside ``transform`` and exposes none, so
:class:`JvmAssigner` takes it, once per model, from the analysed plan of Spark's
``transform`` of an empty DataFrame (:func:`spark_prediction_udf`), sets it on the user's
features column, and guards it with the row rule of :mod:`sparkml_lloyd._rows` written as a
Spark Column (:func:`row_rule`): ``CASE WHEN <invalid> THEN NULL (or an error) ELSE UDF(f)
END``, the ``CASE`` part built once per session, column and length (:class:`_Session`) and
shared by every model. A transform is then one ``withColumn``: one query analysis, one py4j
call, as the built-in's.

This relies on Spark internals (catalyst classes); where they are not as expected
(another Spark version), :meth:`JvmAssigner.prediction` returns None after one warning and
the model assigns with the Arrow UDF instead.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import numpy as np
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkml_lloyd import _rows, _schema
from sparkml_lloyd._catalyst import Catalyst

logger = logging.getLogger("sparkml_lloyd")


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


def spark_prediction_udf(spark: Any, mllib_model: Any, uid: str) -> Any:
    """The ``ScalaUDF`` expression (a py4j handle) with which Spark's ml KMeansModel around
    ``mllib_model`` assigns: the last item of the analysed plan of its ``transform`` of an
    empty DataFrame, ``Project [features, UDF(features) AS prediction]``. Raises
    ``RuntimeError`` when the plan has another shape."""
    jmodel = spark.sparkContext._jvm.org.apache.spark.ml.clustering.KMeansModel(
        uid, mllib_model)
    jmodel.setFeaturesCol("features").setPredictionCol("prediction")
    plan = jmodel.transform(_shared(spark).empty_features(spark)).queryExecution().analyzed()
    if plan.getClass().getSimpleName() == "Project":
        items = plan.projectList()
        last = items.apply(items.size() - 1)
        if last.getClass().getSimpleName() == "Alias":
            udf = last.child()
            if udf.getClass().getSimpleName() == "ScalaUDF" and udf.children().size() == 1:
                return udf
    raise RuntimeError(f"unexpected plan of KMeansModel.transform: {plan.toString()!r}")


def row_rule(catalyst: Catalyst, source: Column, kind: str, d: int,
             cosine: bool) -> list[tuple[int, Column]]:
    """The row rule of :mod:`sparkml_lloyd._rows` as Spark Columns: ``(verdict, condition)``
    for every invalid kind, in :data:`~sparkml_lloyd._rows.ORDER` (each condition assumes the
    ones before it are false). A row is valid when none holds.

    Works on the stored values without copying a vector: ``array_max``/``array_min`` find NaN
    (Spark orders it above every number) and infinities; a sparse vector's implicit zeros are
    finite and its length is its ``size``."""
    if kind == _schema.VECTOR:
        stored = catalyst.unwrap_udt(source)
        values = stored.getField("values")
        length = F.when(stored.getField("type") == 1, F.size(values)).otherwise(
            stored.getField("size"))
        null_elements = F.lit(False)
    else:
        values = source.cast(T.ArrayType(T.DoubleType()))
        length = F.size(values)
        null_elements = F.size(F.array_compact(values)) != length
    inf = float("inf")
    non_finite = (null_elements | (F.coalesce(F.array_max(values), F.lit(0.0)) >= inf)
                  | (F.coalesce(F.array_min(values), F.lit(0.0)) <= -inf))
    rule = [(_rows.NULL, source.isNull()), (_rows.WRONG_LENGTH, length != d),
            (_rows.NON_FINITE, non_finite)]
    if cosine:
        norm_sq = F.aggregate(values, F.lit(0.0), lambda acc, v: acc + v * v)
        rule.append((_rows.ZERO_COSINE, norm_sq == 0.0))
    return rule


class _Session:
    """What every model's transform on one session shares (built once, not per model: each
    Column function is a py4j call): the catalyst calls, an empty DataFrame of vectors, and
    the row rule around Spark's UDF for each (column, kind, length, distance, mode)."""

    def __init__(self, spark: Any) -> None:
        self.catalyst = Catalyst(spark)
        self._empty: Any = None
        self._guards: dict[tuple[Any, ...], tuple[Column, Column]] = {}

    def empty_features(self, spark: Any) -> Any:
        """An empty DataFrame (its JVM handle) of one vector column, ``features``."""
        if self._empty is None:
            schema = T.StructType([T.StructField("features", VectorUDT())])
            self._empty = spark.createDataFrame([], schema)._jdf
        return self._empty

    def guard(self, features_col: str, kind: str, d: int, cosine: bool,
              handle_invalid: str) -> tuple[Column, Column]:
        """``(cases, valid)``: ``cases.otherwise(assign)`` is the prediction of a model
        whose assignment is ``assign`` (an invalid row's is null, or raises under
        ``"error"``, in the rule's order); ``valid`` the rule's "row is valid"."""
        key = (features_col, kind, d, cosine, handle_invalid)
        if key not in self._guards:
            rule = row_rule(self.catalyst, F.col(features_col), kind, d, cosine)
            invalid = rule[0][1]
            for _, condition in rule[1:]:
                invalid = invalid | condition
            if handle_invalid == _rows.ERROR:  # one error, its message the first kind found
                message = None
                for verdict, condition in rule:
                    text = F.lit(_rows.message(verdict, features_col, d))
                    message = (F.when(condition, text) if message is None
                               else message.when(condition, text))
                cases = F.when(invalid, F.raise_error(message))
            else:
                cases = F.when(invalid, F.lit(None).cast(T.IntegerType()))
            self._guards[key] = cases, ~invalid
        return self._guards[key]


#: Per session (weakly: an entry goes with its session, which it does not reference).
_SESSIONS: weakref.WeakKeyDictionary[Any, _Session] = weakref.WeakKeyDictionary()


def _shared(spark: Any) -> _Session:
    held = _SESSIONS.get(spark)
    if held is None:
        held = _SESSIONS[spark] = _Session(spark)
    return held


class JvmAssigner:
    """Assigns in the JVM with Spark's own KMeansModel holding our centers (``mllib_model``,
    from :func:`mllib_kmeans_model`), under the row rule, in one Column (see the module
    docstring). Each Column is built once (every Column function is a py4j call: built per
    transform they would cost more than the query analysis; the row rule's, once per
    session)."""

    def __init__(self, mllib_model: Any, uid: str, centers: np.ndarray, cosine: bool) -> None:
        self.mllib_model, self.uid, self.cosine = mllib_model, uid, cosine
        self.k, self.d = centers.shape
        self._udf: Any = None  # Spark's ScalaUDF, or False when it could not be taken
        self._columns: dict[tuple[str, ...], tuple[Column, Column] | None] = {}

    def prediction(self, df: DataFrame, features_col: str, kind: str, handle_invalid: str,
                   prediction_col: str, metadata: dict[str, Any]) -> tuple[Column, Column] | None:
        """``(prediction, valid)`` for ``df``: the prediction Column aliased
        ``prediction_col`` with ``metadata`` (null for an invalid row, which raises under
        ``"error"``), and the rule's "row is valid" Column. ``kind`` is what
        :func:`sparkml_lloyd._schema.check_prediction_input` returned. ``None`` when Spark's
        UDF is unavailable."""
        key = (features_col, kind, handle_invalid, prediction_col)
        if key not in self._columns:
            self._columns[key] = self._build(df.sparkSession, features_col, kind,
                                             handle_invalid, prediction_col, metadata)
        return self._columns[key]

    def _build(self, spark: Any, features_col: str, kind: str, handle_invalid: str,
               prediction_col: str, metadata: dict[str, Any]) -> tuple[Column, Column] | None:
        if self._udf is False:
            return None
        try:
            if self._udf is None:
                self._udf = spark_prediction_udf(spark, self.mllib_model, self.uid)
            prediction, valid = self._guarded(spark, features_col, kind, handle_invalid)
            return prediction.alias(prediction_col, metadata=metadata), valid
        except Exception as exc:  # a py4j error or another plan: not worth a failure
            logger.warning("transform: Spark's KMeansModel UDF could not be used (%s); "
                           "assigning with the Arrow UDF instead.", exc)
            self._udf = False
            return None

    def _guarded(self, spark: Any, features_col: str, kind: str,
                 handle_invalid: str) -> tuple[Column, Column]:
        from pyspark.ml.functions import array_to_vector

        shared = _shared(spark)
        catalyst = shared.catalyst
        source = F.col(features_col)
        features = (array_to_vector(source.cast(T.ArrayType(T.DoubleType())))
                    if kind == _schema.ARRAY else source)
        assign = catalyst.column(self._udf.withNewChildren(
            catalyst.jvm.PythonUtils.toSeq([catalyst.expression(features)])))
        cases, valid = shared.guard(features_col, kind, self.d, self.cosine, handle_invalid)
        return cases.otherwise(assign), valid
