"""``transform``: which path assigns, and what a model keeps between calls.

Two paths give the same verdicts (the row rule of :mod:`sparkml_lloyd._rows`, the
``handleInvalid`` Param) and, but for points within rounding of a tie, the same clusters,
on classic Spark and Spark Connect alike:

* a model below :func:`assigns_in_arrow`'s sizes: Spark's own ``LogisticRegressionModel``,
  whose argmax is the nearest center, under the row rule, in the JVM
  (:mod:`sparkml_lloyd._predict_spark`);
* large models, or where Spark's model cannot be built: the numpy kernel in an Arrow UDF
  (:mod:`sparkml_lloyd._predict_arrow`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkml_lloyd import (
    _compat,
    _persistence,
    _predict_arrow,
    _predict_spark,
    _rows,
    _schema,
)

logger = logging.getLogger("sparkml_lloyd")

#: From this many center values (k x d) on, ``transform`` runs the numpy kernel in an Arrow UDF
#: rather than Spark's scorer: Spark's model assigns row by row (k margins of d terms), ours
#: with BLAS, which at 1e6 x 100 rows and k = 100 took 0.41x the built-in's time where the
#: JVM path took 1.0x; at k x d = 20 x 20 the JVM path is the faster (0.9x vs 1.1-1.4x).
#: (Measured on 30 Nov with Spark's KMeansModel ``predict`` as the JVM path, whose row loop
#: costs what the scorer's does.) 2500 with pyspark's ``arrow_udf`` (4.1+), 5000 through a
#: pandas_udf (3.5, 4.0): see :data:`sparkml_lloyd._compat.ARROW_MIN_CENTER_VALUES`. With
#: ``arrow_udf`` also from :data:`sparkml_lloyd._compat.ARROW_MIN_K` centers of at least 5
#: features on.
ARROW_MIN_CENTER_VALUES = _compat.ARROW_MIN_CENTER_VALUES


def assigns_in_arrow(k: int, d: int) -> bool:
    """Whether ``transform`` assigns a model of ``k`` centers of ``d`` features with the
    numpy kernel in an Arrow UDF rather than Spark's scorer in the JVM: ``k x d >=``
    :data:`ARROW_MIN_CENTER_VALUES`, or (pyspark 4.1+) ``k >= 75`` with ``d >= 5``
    (:data:`sparkml_lloyd._compat.ARROW_MIN_K`)."""
    many = _compat.ARROW_MIN_K is not None and k >= _compat.ARROW_MIN_K
    return k * d >= ARROW_MIN_CENTER_VALUES or (many and d >= _compat.ARROW_MIN_K_FEATURES)


def prediction_metadata(k: int) -> dict[str, Any]:
    """The ML attribute metadata Spark's KMeansModel gives its prediction column: a nominal
    attribute with ``k`` values (what ``StringIndexer``-style consumers read)."""
    return {"ml_attr": {"num_vals": int(k), "type": "nominal"}}


def spark_model(centers: np.ndarray, distance: str, uid: str, columns: dict[str, str],
                training_cost: float, num_iter: int) -> Any:
    """Spark's own ``pyspark.ml.clustering.KMeansModel`` with these centers, distance, uid and
    column params: built in the JVM (classic), or loaded by Spark's reader from what we write
    on the server (Connect)."""
    from pyspark.sql import SparkSession

    spark = SparkSession.active()
    params = {"k": len(centers), "distanceMeasure": distance, **columns}
    if not _compat.is_classic(spark):
        return _persistence.spark_kmeans_model_via_save(spark, centers, params, uid)
    model = _predict_spark.spark_kmeans_model(spark.sparkContext, centers, distance,
                                              training_cost, num_iter, uid)
    model._set(**params)
    model._transfer_params_to_java()
    return model


class Predictor:
    """What one model keeps to transform: the
    :class:`~sparkml_lloyd._predict_spark.SparkAssigner` of its centers and distance measure
    (Spark's scorer per session inside; a pickle drops it, a model's copies share it)."""

    def __init__(self) -> None:
        self._key: tuple[str, np.ndarray] | None = None
        self._assigner: _predict_spark.SparkAssigner | None = None
        self._failed = False  # Spark's scorer could not be built: the Arrow UDF assigns

    def __reduce__(self) -> tuple[type[Predictor], tuple[()]]:
        return Predictor, ()  # py4j handles and server models: a pickled model starts afresh

    def assigner(self, centers: np.ndarray, distance: str) -> _predict_spark.SparkAssigner:
        """The assigner of ``centers`` (cached while the centers array and distance stay)."""
        key = self._key
        if self._assigner is None or key is None or key[0] != distance or key[1] is not centers:
            self._key = (distance, centers)
            self._assigner = _predict_spark.SparkAssigner(centers, distance)
        return self._assigner

    def transform(self, df: DataFrame, centers: np.ndarray, distance: str, features_col: str,
                  prediction_col: str, handle_invalid: str) -> DataFrame:
        """``df`` with ``prediction_col`` (IntegerType, replaced if present, with Spark's
        metadata); invalid rows per ``handle_invalid``."""
        kind = _schema.check_prediction_input(df, features_col, centers.shape[1])
        metadata = prediction_metadata(centers.shape[0])
        if not (self._failed or assigns_in_arrow(*centers.shape)):
            assigner = self.assigner(centers, distance)
            try:
                assigner.scorer(df.sparkSession)
            except Exception as exc:  # py4j, or the server's file system: not worth a failure
                logger.warning("transform: Spark's model could not be built (%s); assigning "
                               "with the Arrow UDF instead.", exc)
                self._failed = True
            else:
                return assigner.transform(df, features_col, kind, handle_invalid,
                                          prediction_col, metadata)
        col = _predict_arrow.prediction_column(df, features_col, centers, distance,
                                               handle_invalid)
        out = df.withColumn(prediction_col, col.alias(prediction_col, metadata=metadata))
        if handle_invalid == _rows.SKIP:
            out = out.where(F.col(prediction_col).isNotNull())
        return out
