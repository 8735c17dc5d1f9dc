"""The few catalyst (Spark SQL internals) calls the package makes, through py4j: classic
Spark only. Spark Connect has no JVM in the client: callers check :func:`available` first.
(Not pyspark's ``is_remote()``: that is true for the whole process once any Connect session
exists, even for a classic session beside it.)

* a Column <-> its catalyst expression (how differs between pyspark 3.5 and 4:
  :func:`sparkml_lloyd._compat.column_converter`);
* a vector column as its stored struct, without a copy (catalyst's ``UnwrapUDT``).
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession

from sparkml_lloyd import _compat


def available(spark: SparkSession | DataFrame) -> bool:
    """Whether ``spark`` (a session, or a DataFrame's) is classic Spark, where py4j reaches a
    JVM, rather than a Spark Connect client. A Connect session on a pyspark line without ML
    on Connect (3.5) raises ``RuntimeError`` naming the classic alternative."""
    session = spark.sparkSession if isinstance(spark, DataFrame) else spark
    try:
        from pyspark.sql.connect.session import SparkSession as RemoteSession
    except Exception:  # no Connect client installed (its grpc packages): every session is classic
        return True
    if not isinstance(session, RemoteSession):
        return True
    _compat.check_connect()  # every path asks here first: one place to refuse Connect on 3.5
    return False


class Catalyst:
    """Catalyst calls on the JVM of ``spark``."""

    def __init__(self, spark: SparkSession) -> None:
        self.jvm = spark.sparkContext._jvm
        self._expression, self._column = _compat.column_converter(self.jvm)

    def expression(self, col: Column) -> Any:
        return self._expression(col._jc)

    def column(self, expression: Any) -> Column:
        return Column(self._column(expression))

    def unwrap_udt(self, col: Column) -> Column:
        """A vector column as its storage struct ``(type, size, indices, values)``: type 1 is
        dense (``values`` holds every feature, ``size`` and ``indices`` are null), 0 sparse
        (``size`` features, the non-zero ``values`` at ``indices``). No copy: catalyst's
        ``UnwrapUDT`` only changes the type."""
        unwrap = self.jvm.org.apache.spark.sql.catalyst.expressions.UnwrapUDT
        return self.column(unwrap(self.expression(col)))
