"""Checks of a DataFrame's schema, made before any Spark job (fit and transform alike).

The rows themselves are judged by :mod:`sparkml_lloyd._rows`; here only what the schema
tells: the columns exist and have usable types, and a vector length declared by ML attribute
metadata matches the model's.
"""

from __future__ import annotations

from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkml_lloyd import _catalyst

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


#: Under Spark Connect, vectors of at most this many features are read densely (see
#: :func:`feature_columns`).
REMOTE_DENSE_MAX_D = 1024


def feature_columns(df: DataFrame, col: str, param: str = "featuresCol",
                    length: int | None = None) -> dict[str, Column]:
    """The features as the Arrow columns :func:`sparkml_lloyd._arrow.read_columns` reads, by
    name: ``f`` (the stored values) and, for a vector column, ``i`` (a sparse vector's
    indices, empty for a dense one) and ``s`` (its size, -1 for a dense one); or ``v``, the
    vector's raw storage struct.

    In classic Spark a vector column is read as its stored struct's fields (catalyst's
    ``UnwrapUDT``, no copy), so a sparse vector reaches Python as its non-zeros. (Spark's
    Arrow conversion of the UDT itself measured ~10x slower for dense vectors, because of
    their null ``indices``, and of a column of null arrays ~8x: hence the ``coalesce``.)
    Under Spark Connect catalyst is out of reach: vectors of at most
    :data:`REMOTE_DENSE_MAX_D` features come dense through ``vector_to_array``, the fastest
    route; longer ones as the raw struct ``v``, which keeps sparse rows sparse (measured on a
    local Connect server: 0.5 s for 1e5 rows of 2^18 features, 30 non-zeros, where
    ``vector_to_array`` would send 2 MB a row). The number of features is ``length`` when
    the caller knows it (a model's: a row of another length is invalid whichever route it
    takes), else the column's metadata, else its first row (one small query)."""
    if features_kind(df, col, param) == ARRAY:
        return {"f": F.col(col).cast(T.ArrayType(T.DoubleType())).alias("f")}
    if not _catalyst.available(df):
        if (length if length is not None else _remote_length(df, col)) <= REMOTE_DENSE_MAX_D:
            # vector_to_array raises on a null vector: keep null rows null for the row rule.
            return {"f": F.when(F.col(col).isNotNull(), vector_to_array(F.col(col), "float64"))
                    .alias("f")}
        return {"v": F.col(col).alias("v")}
    stored = _catalyst.Catalyst(df.sparkSession).unwrap_udt(F.col(col))
    return {"f": stored.getField("values").alias("f"),
            "i": F.coalesce(stored.getField("indices"), F.array().cast("array<int>")).alias("i"),
            "s": F.coalesce(stored.getField("size"), F.lit(-1)).alias("s")}


def _remote_length(df: DataFrame, col: str) -> int:
    """The vector length by the metadata, else by the first non-null row (one small query),
    else 0."""
    declared = declared_length(df, col)
    if declared is not None:
        return declared
    first = df.select(col).where(F.col(col).isNotNull()).limit(1).collect()
    return int(first[0][0].size) if first else 0


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
