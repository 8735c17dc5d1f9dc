"""The pyspark-line differences of ``sparkml_lloyd._compat``.

The pandas route of the columnar UDF (pyspark 3.5 and 4.0) must hand the kernel the very
arrays ``arrow_udf`` would: checked here without Spark against pyarrow's own ``to_pandas``
round trip, and in Spark on every line by forcing that route (on 3.5 and 4.0 it is the only
one), against the numpy oracle of tests/test_transform.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyspark
import pytest
from pyspark.ml.linalg import DenseVector

from sparkml_lloyd import LloydKMeansModel, _compat
from tests.test_transform import NULL_ROWS, features_df, oracle, physical_plan


@pytest.mark.parametrize("arrow", [
    pa.array([[1.0, 2.0], None, [], [3.5, float("nan"), -1.0]], pa.list_(pa.float64())),
    pa.array([None, None], pa.list_(pa.float64())),
    pa.array([[0, 4], [], None, [7]], pa.list_(pa.int32())),
    pa.array([], pa.list_(pa.float64())),
    pa.array([3, -1, 7], pa.int32()),
    pa.array([{"type": 1, "size": None, "indices": None, "values": [1.0, 2.0]},
              None,
              {"type": 0, "size": 5, "indices": [1, 3], "values": [4.0, 5.0]}],
             pa.struct([("type", pa.int8()), ("size", pa.int32()),
                        ("indices", pa.list_(pa.int32())), ("values", pa.list_(pa.float64()))])),
], ids=["doubles", "all-null", "ints", "empty", "int32", "vector-struct"])
def test_the_pandas_route_rebuilds_the_arrow_arrays(arrow):
    """What a pandas_udf receives (pyarrow's to_pandas of the column; a struct column as a
    DataFrame) comes back as the same values and nulls."""
    if pa.types.is_struct(arrow.type):
        series = pd.DataFrame({f.name: arrow.field(i).to_pandas()
                               for i, f in enumerate(arrow.type)})
        # pyspark hands a null struct row over as a row of nulls
        for name in series.columns:
            series.loc[np.asarray(arrow.is_null()), name] = None
    else:
        series = arrow.to_pandas()
    rebuilt = _compat._arrow_of_series(series)
    assert plain(rebuilt.to_pylist()) == plain(arrow.to_pylist())
    assert rebuilt.null_count == arrow.null_count


def plain(value: Any) -> Any:
    """Lists and dicts with NaN as a string (NaN != NaN) and numbers as floats."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, float) and np.isnan(value):
        return "nan"
    return float(value) if isinstance(value, int) else value


def test_the_line_is_the_installed_pyspark():
    from pyspark.sql import functions

    line, has_arrow_udf = _compat.PYSPARK_LINE, _compat.HAS_ARROW_UDF
    assert line == tuple(map(int, pyspark.__version__.split(".")[:2]))
    assert has_arrow_udf == hasattr(functions, "arrow_udf")
    threshold = _compat.ARROW_MIN_CENTER_VALUES
    assert threshold == (2500 if has_arrow_udf else 5000)
    min_k = _compat.ARROW_MIN_K
    assert min_k == (75 if has_arrow_udf else None)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("kind", ["dense", "sparse", "array<double>"])
def test_transform_through_pandas_gives_the_oracles_clusters(spark, monkeypatch, kind,
                                                              distance):
    """The pandas_udf route in Spark, with null rows kept as null predictions."""
    monkeypatch.setattr(_compat, "HAS_ARROW_UDF", False)
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(60, 100))  # 6000 center values: the columnar path everywhere
    X = centers[rng.integers(0, 60, 40)] + 0.1 * rng.normal(size=(40, 100))
    X *= rng.random(X.shape) < 0.7  # sparse vectors really sparse
    model = LloydKMeansModel(centers).setHandleInvalid("keep")
    model = model.copy({model.distanceMeasure: distance})
    out = model.transform(features_df(spark, X, kind))
    assert "ArrowEvalPython" in physical_plan(out)
    expected = oracle(X, centers, distance)
    assert [r.prediction for r in out.orderBy("id").collect()] == [
        None if i in NULL_ROWS else int(v) for i, v in enumerate(expected)]


def test_skip_through_pandas_drops_the_invalid_rows(spark, monkeypatch):
    monkeypatch.setattr(_compat, "HAS_ARROW_UDF", False)
    rng = np.random.default_rng(4)
    centers = rng.normal(size=(50, 100))
    X = rng.normal(size=(30, 100))
    X[5, 3] = np.nan
    df = spark.createDataFrame([(i, DenseVector(x)) for i, x in enumerate(X)], ["id", "features"])
    out = LloydKMeansModel(centers).setHandleInvalid("skip").transform(df)
    rows = out.orderBy("id").collect()
    keep = [i for i in range(30) if i != 5]
    assert [r.id for r in rows] == keep
    assert [r.prediction for r in rows] == oracle(X[keep], centers, "euclidean").tolist()


def test_a_connect_session_before_4_0_is_refused_with_the_classic_alternative(monkeypatch):
    """Every path asks ``_compat.is_classic`` which backend a session is: on 3.5 a Connect
    session is refused there, naming the classic session (a bare instance stands for one:
    a real 3.5 client would need a server to connect to)."""
    from pyspark.sql.connect.session import SparkSession as RemoteSession

    session = RemoteSession.__new__(RemoteSession)
    if _compat.PYSPARK_LINE >= (4, 0):
        assert _compat.is_classic(session) is False
        monkeypatch.setattr(_compat, "CONNECT_SUPPORTED", False)  # what 3.5 does
    with pytest.raises(RuntimeError, match=r"needs pyspark 4\.0 or newer .* Use a classic "
                                           r"SparkSession"):
        _compat.is_classic(session)


def test_what_a_connect_servers_ml_helper_error_says(monkeypatch):
    """handleOverwrite(path, False) raises when the path exists: with the server's words from
    4.1, as a bare InvocationTargetException from a 4.0 server (what test_connect met)."""
    exists = RuntimeError("(java.io.IOException) Path /x already exists. To overwrite it, ...")
    bare = RuntimeError("(java.lang.reflect.InvocationTargetException) ")
    other = RuntimeError("(org.apache.spark.SparkException) something else")
    for line, bare_means_exists in (((4, 0), True), ((4, 1), False), ((4, 3), False)):
        monkeypatch.setattr(_compat, "PYSPARK_LINE", line)
        assert _compat.says_path_exists(exists)
        assert _compat.says_path_exists(bare) is bare_means_exists
        assert not _compat.says_path_exists(other)
