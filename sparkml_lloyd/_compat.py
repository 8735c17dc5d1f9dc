"""What differs between the supported pyspark lines (3.5 from 3.5.2, 4.0, 4.1 and newer), in
one place; every other module calls these and holds no version test.

* **The columnar UDF** of the Arrow transform path (:func:`arrow_udf`): pyspark 4.1+ has
  ``pyspark.sql.functions.arrow_udf``, which hands the UDF its Arrow arrays as they are; on
  3.5 and 4.0 a ``pandas_udf`` wraps the same function, converting each pandas Series back
  to the Arrow form (:func:`_arrow_of_series`), which costs a Python loop over the rows.
* **What pyspark's ML metadata I/O takes** (:func:`ml_io_context`): the session from 4.0
  (Connect has no SparkContext), the SparkContext on 3.5.
* **A DataFrame as an Arrow table** (:func:`to_arrow`, for tests and benchmarks):
  ``DataFrame.toArrow`` came with 4.0.
* **Spark Connect** (:func:`check_connect`, :func:`is_classic`): from 4.0, where
  ``pyspark.ml`` runs on Connect; a 4.0 server's ML helper hides why it failed
  (:func:`says_path_exists`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyspark
from pyspark.sql import types as T


def _line(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


#: The pyspark line installed, as ``(major, minor)``.
PYSPARK_LINE = _line(pyspark.__version__)

#: Whether ``pyspark.sql.functions.arrow_udf`` exists (pyspark 4.1 and newer).
HAS_ARROW_UDF = PYSPARK_LINE >= (4, 1)

#: From this many center values (k x d) on, ``transform`` in classic Spark runs the numpy
#: kernel in the columnar UDF rather than Spark's row-by-row JVM loop. With ``arrow_udf``
#: the kernel wins from 2500 (0.41x the built-in's time at k = d = 100, 1e6 rows); through
#: pandas (3.5, 4.0) it breaks even only at about 5000 (2e5 rows, local[2], the kernel's
#: time / the JVM path's: 1.5-2.4x at 50 x 50, 0.8-1.05x at 100 x 50, 0.8x at 100 x 100).
ARROW_MIN_CENTER_VALUES = 2500 if HAS_ARROW_UDF else 5000

#: With ``arrow_udf``, the kernel also takes over from this many centers on, given at least
#: :data:`ARROW_MIN_K_FEATURES` features: Spark's loop costs ~k x d a row, the UDF's
#: shipping ~d, so many centers of few features favour the kernel below 2500 values too.
#: Measured 30 Nov (1e6 blob rows, local[2], medians of 7 interleaved calls; the JVM path /
#: the kernel, as multiples of the built-in's time): d = 20: 1.02x / 0.71x at k = 100,
#: 1.00x / 0.87x at k = 75, 0.93x / 1.08x at k = 50 (5e5 rows); k = 100: 0.96x / 0.81x at
#: d = 5, 1.09x / 0.74x at d = 10; 0.99x / 0.81x at (d, k) = (10, 200); but 0.96x / 0.92x at
#: (3, 300) and 1.05x / 1.44x at (2, 500) (5e5 rows), and the JVM path stays ahead for few
#: centers of many features (1.20x / 1.54x at (100, 20), 1.04x / 1.18x at (50, 30); 5e5
#: rows).
#: None through pandas (not measured there).
ARROW_MIN_K = 75 if HAS_ARROW_UDF else None
ARROW_MIN_K_FEATURES = 5


def arrow_udf(fn: Callable[..., pa.Array], return_type: T.DataType) -> Any:
    """A vectorised UDF of ``fn``, which takes one ``pa.Array`` per input column (list, int
    or struct columns) and returns a ``pa.Array`` of ``return_type``: pyspark's own
    ``arrow_udf`` where it exists, else a ``pandas_udf`` converting each batch to and from
    Arrow around ``fn``. Both give ``fn`` the same arrays (nulls and all)."""
    if HAS_ARROW_UDF:
        from pyspark.sql.functions import arrow_udf as spark_arrow_udf

        return spark_arrow_udf(fn, return_type)

    from pyspark.sql.functions import pandas_udf

    def through_pandas(*series):  # type: ignore[no-untyped-def]
        # No annotations: pandas_udf would infer its kind from them; unannotated is scalar.
        out = fn(*(_arrow_of_series(s) for s in series))
        return out.to_pandas()  # int32 with nulls -> float64 with NaN -> null again in Spark

    return pandas_udf(through_pandas, return_type)  # type: ignore[call-overload]


def _arrow_of_series(s: Any) -> pa.Array:
    """The Arrow array a pandas_udf's input came from: a list column (a Series of numpy
    arrays, None for null) rebuilt from one concatenation instead of row by row (10x
    faster), a plain Series as is, a struct column (a DataFrame) field by field, a row
    whose fields are all null being a null row."""
    import pandas as pd

    if isinstance(s, pd.DataFrame):
        fields = [_arrow_of_series(s[c]) for c in s.columns]
        missing = np.logical_and.reduce([f.is_null().to_numpy(zero_copy_only=False)
                                         for f in fields])
        return pa.StructArray.from_arrays(fields, names=list(s.columns),
                                          mask=pa.array(missing))
    if s.dtype != object:
        return pa.Array.from_pandas(s)
    items = s.to_numpy()
    nulls = np.fromiter((v is None for v in items), dtype=bool, count=len(items))
    parts = [np.asarray(v) for v in items if v is not None]
    lengths = np.zeros(len(items), dtype=np.int64)
    lengths[~nulls] = [len(p) for p in parts]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = pa.array(np.concatenate(parts) if parts else np.empty(0))
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=pa.array(nulls))


#: Whether this package runs under Spark Connect: pyspark.ml on Connect (Spark's ML helper on
#: the server, which saves and loads) came with 4.0.
CONNECT_SUPPORTED = PYSPARK_LINE >= (4, 0)


def check_connect() -> None:
    """Raise where a Spark Connect session meets a pyspark line without ML on Connect."""
    if not CONNECT_SUPPORTED:
        raise RuntimeError(
            f"sparkml_lloyd on Spark Connect needs pyspark 4.0 or newer (pyspark.ml on "
            f"Connect came with 4.0); this is pyspark {pyspark.__version__}. Use a classic "
            "SparkSession (SparkSession.builder.master(...), or local_session()) or "
            "upgrade pyspark.")


def ml_io_context(spark: Any) -> Any:
    """What ``DefaultParamsWriter.saveMetadata`` and ``DefaultParamsReader.loadMetadata``
    take for ``spark`` (a SparkSession)."""
    return spark if PYSPARK_LINE >= (4, 0) else spark.sparkContext


def to_arrow(df: Any) -> pa.Table:
    """``df``'s rows as one Arrow table, collected to the driver (classic Spark on 3.5)."""
    if PYSPARK_LINE >= (4, 0):
        return df.toArrow()
    from pyspark.sql.pandas.types import to_arrow_schema

    return pa.Table.from_batches(df._collect_as_arrow(), schema=to_arrow_schema(df.schema))


def says_path_exists(exc: BaseException) -> bool:
    """Whether ``exc``, raised by Spark's ML helper's ``handleOverwrite(path, False)`` on a
    Spark Connect server, means that ``path`` exists. From 4.1 the client gets the server's
    ``IOException`` ("Path ... already exists"); a 4.0 server sends only the reflection
    wrapper, ``java.lang.reflect.InvocationTargetException``, with no message, which is then
    read as "exists" (why it failed in the tests; any other failure there, such as no
    permission, reads the same: see the user guide's Spark Connect section)."""
    text = str(exc)
    return "already exists" in text or (
        PYSPARK_LINE < (4, 1) and "InvocationTargetException" in text)


def is_classic(spark: Any) -> bool:
    """Whether ``spark`` (a session, or a DataFrame's) is classic Spark, where py4j reaches a
    JVM, rather than a Spark Connect client (not pyspark's ``is_remote()``: that is true for
    the whole process once any Connect session exists, even for a classic session beside
    it). A Connect session on a pyspark line without ML on Connect (3.5) raises
    ``RuntimeError`` naming the classic alternative."""
    from pyspark.sql import DataFrame

    session = spark.sparkSession if isinstance(spark, DataFrame) else spark
    try:
        from pyspark.sql.connect.session import SparkSession as RemoteSession
    except Exception:  # no Connect client installed (its grpc packages): every session is classic
        return True
    if not isinstance(session, RemoteSession):
        return True
    check_connect()  # every path asks here first: one place to refuse Connect on 3.5
    return False
