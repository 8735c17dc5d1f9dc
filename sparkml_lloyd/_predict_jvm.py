"""Prediction in the JVM (classic Spark, py4j): Spark's own (mllib) KMeansModel holding our
centers, called row by row from the query's generated code.

Spark's ``KMeansModel.transform`` wraps the model's ``predict`` in a UDF. Ours calls the same
``predict`` (Spark's own assignment: its distance measure and center-distance bounds) through
catalyst's ``Invoke`` on a literal holding the model (:func:`assignment`), on every row's
features read as Spark's UDFs read them (:func:`vector_object`), and guards it with the row
rule of :mod:`sparkml_lloyd._rows` written as Spark Columns (:func:`row_rule`): ``CASE WHEN
<invalid> THEN NULL (or an error) ELSE predict(f) END``. No UDF, so whole-stage code
generation compiles the call and the rule into the projection: at (1e6, 20, 20) the whole
transform takes 0.99x the built-in's time in the benchmark, where Spark's UDF under the
former rule took 1.22-1.25x (docs/design.md). The ``CASE`` part is built once per session,
column and length (:class:`_Session`) and shared by every model; a transform is then one
``withColumn``: one query analysis, one py4j call, as the built-in's.

This relies on Spark internals (catalyst classes); where building the Column fails (another
Spark version), :meth:`JvmAssigner.prediction` returns None after one warning and the model
assigns with the Arrow UDF instead.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import numpy as np
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


#: Spark's (mllib) classes the generated code calls: the vector type that reads a vector
#: column's stored struct, its vectors, and the model whose ``predict`` assigns.
VECTOR_UDT = "org.apache.spark.mllib.linalg.VectorUDT"
VECTOR = "org.apache.spark.mllib.linalg.Vector"
MODEL = "org.apache.spark.mllib.clustering.KMeansModel"


def vector_object(catalyst: Catalyst, source: Column, kind: str, udt: Any) -> Any:
    """The expression of every row's features as Spark's mllib ``Vector`` object (dense or
    sparse, as stored): the column's stored struct read by Spark's ``VectorUDT`` (``udt``, a
    literal of one), as Spark's UDFs receive it (an ``array`` column becomes a dense vector
    first)."""
    from pyspark.ml.functions import array_to_vector

    if kind == _schema.ARRAY:
        source = array_to_vector(source.cast(T.ArrayType(T.DoubleType())))
    stored = catalyst.expression(F.unwrap_udt(source))
    return catalyst.invoke(udt, "deserialize", catalyst.object_type(VECTOR), stored)


def assignment(catalyst: Catalyst, mllib_model: Any, vector: Any) -> Column:
    """Spark's ``mllib_model.predict(vector)`` for every row: Spark's own assignment (its
    distance measure and center-distance bounds), called from the query's generated code."""
    model = catalyst.object_literal(mllib_model, MODEL)
    return catalyst.column(catalyst.invoke(model, "predict", catalyst.data_type("integer"),
                                           vector, nullable=False))


def row_rule(catalyst: Catalyst, source: Column, kind: str, d: int, cosine: bool,
             vector: Any) -> list[tuple[int, Column]]:
    """The row rule of :mod:`sparkml_lloyd._rows` as Spark Columns: ``(verdict, condition)``
    for every invalid kind, in :data:`~sparkml_lloyd._rows.ORDER` (each condition assumes the
    ones before it are false). A row is valid when none holds. ``vector``: the features as
    :func:`vector_object` gives them.

    A vector's length is read from its stored struct (no copy). Its values are judged as
    :func:`sparkml_lloyd._rows.judge` does: ``x . x`` (Spark's own ``dot`` on the vector
    object, one pass) is finite for every finite row but those whose squares overflow, and
    only rows where it is not finite get the exact check, ``array_max``/``array_min`` of the
    stored values (Spark orders NaN above every number; a sparse vector's implicit zeros are
    finite). An array column is judged by its values directly."""
    inf = float("inf")
    if kind == _schema.VECTOR:
        stored = F.unwrap_udt(source)
        values = stored.getField("values")
        length = F.when(stored.getField("type") == 1, F.size(values)).otherwise(
            stored.getField("size"))
        norm_sq = catalyst.column(catalyst.invoke(
            vector, "dot", catalyst.data_type("double"), vector, nullable=False))
        suspect, null_elements = ~(norm_sq < inf), F.lit(False)  # NaN is above inf in SQL
    else:
        values = source.cast(T.ArrayType(T.DoubleType()))
        length = F.size(values)
        null_elements = F.size(F.array_compact(values)) != length
        suspect = F.lit(True)
    non_finite = null_elements | (suspect & (
        (F.coalesce(F.array_max(values), F.lit(0.0)) >= inf)
        | (F.coalesce(F.array_min(values), F.lit(0.0)) <= -inf)))
    rule = [(_rows.NULL, source.isNull()), (_rows.WRONG_LENGTH, length != d),
            (_rows.NON_FINITE, non_finite)]
    if cosine:  # only finite rows get here: x . x is their squared norm
        if kind != _schema.VECTOR:
            norm_sq = F.aggregate(values, F.lit(0.0), lambda acc, v: acc + v * v)
        rule.append((_rows.ZERO_COSINE, norm_sq == 0.0))
    return rule


class _Session:
    """What every model's transform on one session shares (built once, not per model: each
    Column function is a py4j call): the catalyst calls, the features as vector objects per
    (column, kind), and the row rule for each (column, kind, length, distance, mode)."""

    def __init__(self, spark: Any) -> None:
        self.catalyst = Catalyst(spark)
        self._udt: Any = None
        self._vectors: dict[tuple[str, str], Any] = {}
        self._guards: dict[tuple[Any, ...], tuple[Column, Column]] = {}

    def vector(self, features_col: str, kind: str) -> Any:
        """:func:`vector_object` of the column."""
        key = (features_col, kind)
        if key not in self._vectors:
            if self._udt is None:
                self._udt = self.catalyst.object_literal(
                    self.catalyst.jvm.org.apache.spark.mllib.linalg.VectorUDT(), VECTOR_UDT)
            self._vectors[key] = vector_object(self.catalyst, F.col(features_col), kind,
                                               self._udt)
        return self._vectors[key]

    def guard(self, features_col: str, kind: str, d: int, cosine: bool,
              handle_invalid: str) -> tuple[Column, Column]:
        """``(cases, valid)``: ``cases.otherwise(assign)`` is the prediction of a model
        whose assignment is ``assign`` (an invalid row's is null, or raises under
        ``"error"``, in the rule's order); ``valid`` the rule's "row is valid"."""
        key = (features_col, kind, d, cosine, handle_invalid)
        if key not in self._guards:
            rule = row_rule(self.catalyst, F.col(features_col), kind, d, cosine,
                            self.vector(features_col, kind))
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

    def __init__(self, mllib_model: Any, centers: np.ndarray, cosine: bool) -> None:
        self.mllib_model, self.cosine = mllib_model, cosine
        self.k, self.d = centers.shape
        self._failed = False  # the Column could not be built: the Arrow UDF assigns
        self._columns: dict[tuple[str, ...], tuple[Column, Column] | None] = {}

    def prediction(self, df: DataFrame, features_col: str, kind: str, handle_invalid: str,
                   prediction_col: str, metadata: dict[str, Any]) -> tuple[Column, Column] | None:
        """``(prediction, valid)`` for ``df``: the prediction Column aliased
        ``prediction_col`` with ``metadata`` (null for an invalid row, which raises under
        ``"error"``), and the rule's "row is valid" Column. ``kind`` is what
        :func:`sparkml_lloyd._schema.check_prediction_input` returned. ``None`` when the
        Column cannot be built."""
        key = (features_col, kind, handle_invalid, prediction_col)
        if key not in self._columns:
            self._columns[key] = self._build(df.sparkSession, features_col, kind,
                                             handle_invalid, prediction_col, metadata)
        return self._columns[key]

    def _build(self, spark: Any, features_col: str, kind: str, handle_invalid: str,
               prediction_col: str, metadata: dict[str, Any]) -> tuple[Column, Column] | None:
        if self._failed:
            return None
        try:
            shared = _shared(spark)
            assign = assignment(shared.catalyst, self.mllib_model,
                                shared.vector(features_col, kind))
            cases, valid = shared.guard(features_col, kind, self.d, self.cosine,
                                        handle_invalid)
            return cases.otherwise(assign).alias(prediction_col, metadata=metadata), valid
        except Exception as exc:  # a py4j error (other internals): not worth a failure
            logger.warning("transform: Spark's KMeansModel could not be called from the "
                           "query (%s); assigning with the Arrow UDF instead.", exc)
            self._failed = True
            return None
