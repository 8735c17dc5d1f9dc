"""Test helpers: DataFrames from numpy, blobs, the scikit-learn oracle, and the
scale-relative difference (the benchmarks' own).

Nothing here starts Spark or imports scikit-learn at import time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from py4j.protocol import Py4JJavaError
from pyspark.errors.exceptions.captured import SparkRuntimeException

from benchmarks.measure import relative_difference
from sparkml_lloyd import _compat

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from sklearn.cluster import KMeans

__all__ = ["JVM_RAISED_ERROR", "Blobs", "blobs", "make_df", "relative_difference",
           "sklearn_lloyd"]

#: What an action raises when the row rule's ``raise_error`` fires in the JVM (transform of
#: an invalid row, classic Spark): pyspark 4 captures it as a ``SparkRuntimeException``
#: (``[USER_RAISED_EXCEPTION] <our message>``); 3.5 leaves Spark's ``SparkException`` a
#: ``Py4JJavaError``, whose text holds our message.
JVM_RAISED_ERROR: type[Exception] = (SparkRuntimeException if _compat.PYSPARK_LINE >= (4, 0)
                                     else Py4JJavaError)


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


class Blobs(NamedTuple):
    """Points of :func:`sklearn.datasets.make_blobs`, their blob, and the DataFrame of the
    points (:func:`make_df`)."""

    X: np.ndarray
    y: np.ndarray
    df: DataFrame


def blobs(spark: SparkSession, **make_blobs: Any) -> Blobs:
    """``make_blobs(**make_blobs)`` and its DataFrame."""
    from sklearn.datasets import make_blobs as sklearn_make_blobs

    X, y = sklearn_make_blobs(**make_blobs)
    return Blobs(X, y, make_df(spark, X))


def sklearn_lloyd(
    X: np.ndarray, initial_centers: np.ndarray, max_iter: int,
    sample_weight: np.ndarray | None = None,
) -> KMeans:
    """The oracle: scikit-learn's Lloyd from ``initial_centers``, exactly ``max_iter``
    iterations at most (``tol=0``: it stops early only when no point changes cluster)."""
    from sklearn.cluster import KMeans

    k = len(initial_centers)
    return KMeans(n_clusters=k, init=initial_centers, n_init=1, max_iter=max_iter, tol=0.0,
                  algorithm="lloyd").fit(X, sample_weight=sample_weight)


ROOT = Path(__file__).resolve().parents[1]


def bench_smoke(out: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[Path]]:
    """``python -m benchmarks.run --grid smoke ARGS`` as ``sparkml-lloyd bench`` starts it (in
    the checkout root, no PYTHONPATH: Spark's Python workers get the package's functions by
    value), writing into ``out``; the process and the result files it wrote."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--grid", "smoke", *args,
         "--out-dir", str(out / "results"), "--docs-dir", str(out / "docs")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )
    return proc, sorted((out / "results").glob("*.json"))


class Result:
    """Exit status and output of one command."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.returncode, self.stdout, self.stderr = code, out, err


def run_main(*args: Any) -> Result:
    """``sparkml_lloyd.cli.main(args)`` in this process, its output captured."""
    import contextlib
    import io

    from sparkml_lloyd import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as e:  # argparse: --help, a usage error
            code = e.code
    return Result(code, out.getvalue(), err.getvalue())
