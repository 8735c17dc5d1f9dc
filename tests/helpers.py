"""Test helpers: DataFrames from numpy; the scale-relative difference (the benchmarks' own)."""

from __future__ import annotations

from benchmarks.measure import relative_difference

__all__ = ["make_df", "relative_difference"]


def make_df(spark, X, weights=None, vector=True, partitions=None, col="features"):
    """A DataFrame with the rows of ``X`` as a vector (or array<double>) column, in order."""
    import pandas as pd
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    pdf = pd.DataFrame({"id": range(len(X)), col: [list(map(float, r)) for r in X]})
    if weights is not None:
        pdf["weight"] = [float(w) for w in weights]
    df = spark.createDataFrame(pdf)
    if vector:
        df = df.withColumn(col, array_to_vector(F.col(col)))
    if partitions is not None:
        df = df.repartition(partitions)
    return df
