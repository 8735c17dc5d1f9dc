"""Checks of a DataFrame's schema, made before any Spark job (fit and transform alike).

The rows themselves are judged by :mod:`sparkml_lloyd._rows`; here only what the schema
tells: the columns exist and have usable types, and a vector length declared by ML attribute
metadata matches the model's.
"""

from __future__ import annotations

from pyspark.ml.linalg import VectorUDT
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

VECTOR, ARRAY = "vector", "array"

_FEATURE_FIX = (
    "Use a vector column (pyspark.ml.linalg, e.g. from VectorAssembler) or an "
    "array<double>/array<float> column."
)


def features_kind(df: DataFrame, col: str, param: str = "featuresCol") -> str:
    """:data:`VECTOR` or :data:`ARRAY`; a clear error for a missing or wrongly typed column."""
    if col not in df.columns:
        raise ValueError(
            f"{param}={col!r} is not a column of the DataFrame (columns: {df.columns}). "
            f"Set {param} to the column holding the feature vectors."
        )
    dtype = df.schema[col].dataType
    if isinstance(dtype, VectorUDT):
        return VECTOR
    if isinstance(dtype, T.ArrayType) and isinstance(
        dtype.elementType, (T.DoubleType, T.FloatType)
    ):
        return ARRAY
    raise TypeError(
        f"{param}={col!r} has type {dtype.simpleString()}, which is not a feature vector. "
        + _FEATURE_FIX
    )


def check_weight_column(df: DataFrame, col: str) -> None:
    """The weight column exists and is numeric."""
    if col not in df.columns:
        raise ValueError(
            f"weightCol={col!r} is not a column of the DataFrame (columns: {df.columns}). "
            "Set weightCol to a numeric column, or clear it to weight every row 1."
        )
    dtype = df.schema[col].dataType
    if not isinstance(dtype, T.NumericType):
        raise TypeError(
            f"weightCol={col!r} has type {dtype.simpleString()}; weights must be numeric "
            "(cast the column to double)."
        )


def feature_columns(df: DataFrame, col: str, param: str = "featuresCol") -> dict[str, Column]:
    """The features as the Arrow columns :func:`sparkml_lloyd._arrow.read_columns` reads, by
    name: ``f`` (the stored values) and, for a vector column, ``i`` (a sparse vector's
    indices, empty for a dense one) and ``s`` (its size, -1 for a dense one).

    A vector column is read as its stored struct's fields (``unwrap_udt``, no copy; on
    classic Spark and Spark Connect alike), so a sparse vector reaches Python as its
    non-zeros. (Spark's Arrow conversion of the vector type itself measured ~10x slower for
    dense vectors, because of their null ``indices``, and of a column of null arrays ~8x:
    hence the ``coalesce``. ``vector_to_array``, which Connect clients used before, alone
    took 0.6x the built-in's whole transform at (1e6, 20, 20) and sends a sparse row whole.)
    """
    if features_kind(df, col, param) == ARRAY:
        return {"f": F.col(col).cast(T.ArrayType(T.DoubleType())).alias("f")}
    stored = F.unwrap_udt(F.col(col))
    return {"f": stored.getField("values").alias("f"),
            "i": F.coalesce(stored.getField("indices"), F.array().cast("array<int>")).alias("i"),
            "s": F.coalesce(stored.getField("size"), F.lit(-1)).alias("s")}


def fit_input(df: DataFrame, features_col: str, weight_col: str | None) -> DataFrame:
    """What a fit reads of ``df``: the features (as :func:`feature_columns` gives them) and,
    with ``weight_col``, the weights as ``w`` (double). Checks the schema first; no job."""
    cols = list(feature_columns(df, features_col).values())
    if weight_col:
        check_weight_column(df, weight_col)
        cols.append(F.col(weight_col).cast("double").alias("w"))
    return df.select(*cols)


def declared_length(df: DataFrame, col: str) -> int | None:
    """The vector length the column's ML attribute metadata declares (``VectorAssembler``
    and ``HashingTF`` outputs do), or None."""
    declared = df.schema[col].metadata.get("ml_attr", {}).get("num_attrs")
    return int(declared) if declared is not None else None


def check_prediction_input(df: DataFrame, features_col: str, num_features: int) -> str:
    """The checks every transform path makes without a Spark job; the column's kind.

    The column must exist and hold vectors or arrays (:func:`features_kind`), and when its ML
    attribute metadata declares a vector length (VectorAssembler's output does), that length
    must be the model's: a column of another length is an error of the column, whatever
    ``handleInvalid`` says. Without metadata, rows of another length are found by the row
    rule when an action runs.
    """
    kind = features_kind(df, features_col)
    declared = declared_length(df, features_col)
    if declared is not None and declared != num_features:
        raise ValueError(
            f"featuresCol={features_col!r} holds vectors of length {declared} (its ML "
            f"attribute metadata says so) but the model was fitted on {num_features} "
            "features; transform data with the same number of features."
        )
    return kind
