"""The few catalyst (Spark SQL internals) calls the package makes, through py4j: classic
Spark only. Spark Connect has no JVM in the client: callers check :func:`available` first.
(Not pyspark's ``is_remote()``: that is true for the whole process once any Connect session
exists, even for a classic session beside it.)

* a Column <-> its catalyst expression (how differs between pyspark 3.5 and 4:
  :func:`sparkml_lloyd._compat.column_converter`);
* a JVM method called row by row from the generated code of a query (catalyst's ``Invoke``,
  as Spark's own encoders call methods), on a literal that holds a JVM object.
"""

from __future__ import annotations

import json
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
        self._types: dict[str, Any] = {}  # JVM DataTypes, by JSON or class name

    def expression(self, col: Column) -> Any:
        return self._expression(col._jc)

    def column(self, expression: Any) -> Column:
        return Column(self._column(expression))

    def data_type(self, name: str) -> Any:
        """The JVM ``DataType`` of a simple type name (``"integer"``, ``"double"``)."""
        if name not in self._types:
            self._types[name] = self.jvm.org.apache.spark.sql.types.DataType.fromJson(
                json.dumps(name))
        return self._types[name]

    def object_type(self, class_name: str) -> Any:
        """Catalyst's ``ObjectType`` of a JVM class: a value that is a Java object."""
        if class_name not in self._types:
            cls = self.jvm.org.apache.spark.util.Utils.classForName(class_name, True, False)
            self._types[class_name] = self.jvm.org.apache.spark.sql.types.ObjectType(cls)
        return self._types[class_name]

    def object_literal(self, obj: Any, class_name: str) -> Any:
        """A literal expression holding the JVM object ``obj`` (a py4j handle) as a
        ``class_name``. It travels with the plan to the executors: ``obj`` must be
        serialisable."""
        literal = self.jvm.org.apache.spark.sql.catalyst.expressions.Literal
        return literal(obj, self.object_type(class_name))

    def invoke(self, target: Any, method: str, data_type: Any, *args: Any,
               nullable: bool = True) -> Any:
        """``target.method(*args)`` for every row (expressions in, an expression of JVM type
        ``data_type`` out), compiled into the query's generated code: no UDF. A null target
        or argument gives null without a call; ``nullable=False`` for a primitive result."""
        invoke = self.jvm.org.apache.spark.sql.catalyst.expressions.objects.Invoke
        seq = self.jvm.PythonUtils.toSeq
        return invoke(target, method, data_type, seq(list(args)), seq([]), True, nullable,
                      True)
