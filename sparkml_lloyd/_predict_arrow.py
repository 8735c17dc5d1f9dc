"""Prediction with the numpy kernel: one vector (``predict``) or an Arrow UDF (``transform``).

The Arrow UDF is the path under Spark Connect (no JVM to call) and for large models
(:func:`sparkml_lloyd._predict.assigns_in_arrow`: one BLAS product per batch beats Spark's
row-by-row loop); which UDF (pyspark's ``arrow_udf``, or a
``pandas_udf`` before 4.1) is :func:`sparkml_lloyd._compat.arrow_udf`'s choice. Both apply
the row rule of :mod:`sparkml_lloyd._rows` and the ``handleInvalid`` Param.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.ml.linalg import Vector
from pyspark.sql import Column, DataFrame
from pyspark.sql import types as T

from sparkml_lloyd import _arrow, _compat, _rows, _schema
from sparkml_lloyd import _kernel as K


def predict_one(value: Vector | Any, centers: np.ndarray, distance: str,
                handle_invalid: str) -> int | None:
    """The nearest center's index for one vector; an invalid vector raises under
    ``"error"`` and gives None otherwise (there is no row to drop)."""
    d = centers.shape[1]
    if value is None:
        kind: int = _rows.NULL
    else:
        x = value.toArray() if isinstance(value, Vector) else value
        x = np.asarray(x, dtype=np.float64).reshape(1, -1)
        kind = (_rows.WRONG_LENGTH if x.shape[1] != d
                else int(_rows.judge(x, distance == K.COSINE)[0]))
    if kind != _rows.VALID:
        if handle_invalid == _rows.ERROR:
            raise ValueError(_rows.message(kind, None, d))
        return None
    return int(K.nearest_labels(x, K.unit_centers(centers, distance), distance)[0])


def predict_arrow(columns: dict[str, pa.Array], centers: np.ndarray | K.Prepared,
                  distance: str, handle_invalid: str, features_col: str) -> pa.Array:
    """Cluster index (int32) for every row of the Arrow columns of
    :func:`sparkml_lloyd._schema.feature_columns`, by name; an invalid row raises under
    ``"error"`` and is null otherwise. ``centers`` as
    :func:`sparkml_lloyd._kernel.unit_centers` gives them, or prepared once for many
    batches (:class:`~sparkml_lloyd._kernel.Prepared`)."""
    d = K.prepare(centers).centers.shape[1]
    x, verdict, _ = _arrow.read_columns(columns, d, distance == K.COSINE)
    problem = _rows.first_problem(verdict)
    if problem is not None and handle_invalid == _rows.ERROR:
        raise ValueError(_rows.message(problem, features_col, d))
    labels = K.nearest_labels(x, centers, distance) if x.shape[0] else np.empty(0, np.int32)
    if problem is None:
        return pa.array(labels, pa.int32())
    invalid = verdict != _rows.VALID
    out = np.zeros(len(verdict), dtype=np.int32)
    out[~invalid] = labels
    return pa.array(out, pa.int32(), mask=invalid)


def prediction_column(df: DataFrame, features_col: str, centers: np.ndarray, distance: str,
                      handle_invalid: str) -> Column:
    """A Column of cluster indices computed by a vectorised Arrow UDF (null for invalid rows
    unless ``handle_invalid`` is ``"error"``). Call
    :func:`sparkml_lloyd._schema.check_prediction_input` first.

    Under ``"skip"`` the caller drops the null predictions; the UDF is then marked
    non-deterministic, so that Spark does not push that filter below the UDF and run it
    twice.
    """
    features = _schema.feature_columns(df, features_col)
    names = list(features)
    centers = K.unit_centers(centers, distance)

    prepared: list[K.Prepared] = []  # filled in the task: one Prepared for all its batches

    def predict(*columns: pa.Array) -> pa.Array:  # captures plain values only
        if not prepared:  # -2c and, for sparse batches, its d x k transpose: once a task
            prepared.append(K.Prepared(centers))
        return predict_arrow(dict(zip(names, columns, strict=True)), prepared[0], distance,
                             handle_invalid, features_col)

    udf = _compat.arrow_udf(predict, T.IntegerType())
    if handle_invalid == _rows.SKIP:
        udf = udf.asNondeterministic()
    return udf(*features.values())
