"""``transform``: which path assigns, and what a model keeps between calls.

Two paths give the same verdicts (the row rule of :mod:`sparkml_lloyd._rows`, the
``handleInvalid`` Param) and, but for points within rounding of a tie, the same clusters:

* classic Spark (a py4j JVM) and a model below :func:`assigns_in_arrow`'s sizes: Spark's own
  KMeansModel's ``predict`` called from the query's generated code, under the row rule
  (:mod:`sparkml_lloyd._predict_jvm`);
* Spark Connect, large models, or where that Column cannot be built: the numpy kernel in an
  Arrow UDF
  (:mod:`sparkml_lloyd._predict_arrow`).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkml_lloyd import (
    _catalyst,
    _compat,
    _persistence,
    _predict_arrow,
    _predict_jvm,
    _rows,
    _schema,
)
from sparkml_lloyd import _kernel as K

#: From this many center values (k x d) on, ``transform`` runs the numpy kernel in an Arrow UDF
#: even where the JVM is reachable: Spark's model assigns row by row (k distance loops of d),
#: ours with BLAS, which at 1e6 x 100 rows and k = 100 took 0.41x the built-in's time where
#: the JVM path takes 1.0x; at k x d = 20 x 20 the JVM path is the faster (0.9x vs 1.1-1.4x).
#: 2500 with pyspark's ``arrow_udf`` (4.1+), 5000 through a pandas_udf (3.5, 4.0): see
#: :data:`sparkml_lloyd._compat.ARROW_MIN_CENTER_VALUES`. With ``arrow_udf`` also from
#: :data:`sparkml_lloyd._compat.ARROW_MIN_K` centers of at least 5 features on.
ARROW_MIN_CENTER_VALUES = _compat.ARROW_MIN_CENTER_VALUES


def assigns_in_arrow(k: int, d: int) -> bool:
    """Whether ``transform`` on classic Spark assigns a model of ``k`` centers of ``d``
    features with the numpy kernel in an Arrow UDF rather than Spark's ``predict`` in the
    JVM: ``k x d >=`` :data:`ARROW_MIN_CENTER_VALUES`, or (pyspark 4.1+) ``k >= 75`` with
    ``d >= 5`` (:data:`sparkml_lloyd._compat.ARROW_MIN_K`)."""
    many = _compat.ARROW_MIN_K is not None and k >= _compat.ARROW_MIN_K
    return k * d >= ARROW_MIN_CENTER_VALUES or (many and d >= _compat.ARROW_MIN_K_FEATURES)


def prediction_metadata(k: int) -> dict[str, Any]:
    """The ML attribute metadata Spark's KMeansModel gives its prediction column: a nominal
    attribute with ``k`` values (what ``StringIndexer``-style consumers read)."""
    return {"ml_attr": {"num_vals": int(k), "type": "nominal"}}


def on_jvm(df: DataFrame) -> bool:
    """Whether ``df`` lives in classic Spark, where py4j reaches the JVM (not Spark Connect)."""
    return _catalyst.available(df)


def spark_model(centers: np.ndarray, distance: str, uid: str, columns: dict[str, str],
                training_cost: float, num_iter: int) -> Any:
    """Spark's own ``pyspark.ml.clustering.KMeansModel`` with these centers, distance, uid and
    column params: built in the JVM (classic), or loaded by Spark's reader from what we write
    on the server (Connect)."""
    from pyspark.sql import SparkSession

    spark = SparkSession.active()
    params = {"k": len(centers), "distanceMeasure": distance, **columns}
    if not _catalyst.available(spark):
        return _persistence.spark_kmeans_model_via_save(spark, centers, params, uid)
    model = _predict_jvm.spark_kmeans_model(spark.sparkContext, centers, distance,
                                            training_cost, num_iter, uid)
    model._set(**params)
    model._transfer_params_to_java()
    return model


class Predictor:
    """What one model keeps to transform: Spark's mllib KMeansModel with its centers and the
    :class:`~sparkml_lloyd._predict_jvm.JvmAssigner` around it, built once per SparkContext,
    distance measure and centers array (py4j handles: a pickle drops them; a model's copies
    share them)."""

    def __init__(self) -> None:
        self._key: tuple[Any, str, np.ndarray] | None = None
        self._jvm: tuple[Any, _predict_jvm.JvmAssigner] | None = None

    def __reduce__(self) -> tuple[type[Predictor], tuple[()]]:
        return Predictor, ()  # py4j handles: a pickled model starts afresh

    def mllib_model(self, sc: Any, centers: np.ndarray, distance: str) -> Any:
        """Spark's mllib KMeansModel with ``centers`` (cached)."""
        key = self._key
        if not (key is not None and key[0]() is sc and key[1] == distance and key[2] is centers):
            jmodel = _predict_jvm.mllib_kmeans_model(sc, centers, distance)
            assigner = _predict_jvm.JvmAssigner(jmodel, centers, distance == K.COSINE)
            self._key, self._jvm = (weakref.ref(sc), distance, centers), (jmodel, assigner)
        assert self._jvm is not None
        return self._jvm[0]

    def transform(self, df: DataFrame, centers: np.ndarray, distance: str, features_col: str,
                  prediction_col: str, handle_invalid: str) -> DataFrame:
        """``df`` with ``prediction_col`` (IntegerType, replaced if present, with Spark's
        metadata); invalid rows per ``handle_invalid``."""
        kind = _schema.check_prediction_input(df, features_col, centers.shape[1])
        metadata = prediction_metadata(centers.shape[0])
        if on_jvm(df) and not assigns_in_arrow(*centers.shape):
            self.mllib_model(df.sparkSession.sparkContext, centers, distance)
            assert self._jvm is not None
            columns = self._jvm[1].prediction(df, features_col, kind, handle_invalid,
                                              prediction_col, metadata)
            if columns is not None:
                prediction, valid = columns
                if handle_invalid == _rows.SKIP:  # filter on the rule, not on the UDF's output
                    df = df.where(valid)
                return df.withColumn(prediction_col, prediction)
        col = _predict_arrow.prediction_column(df, features_col, centers, distance,
                                               handle_invalid)
        out = df.withColumn(prediction_col, col.alias(prediction_col, metadata=metadata))
        if handle_invalid == _rows.SKIP:
            out = out.where(F.col(prediction_col).isNotNull())
        return out
