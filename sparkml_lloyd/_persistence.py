"""Saving and loading stages: Spark's on-disk layout, written atomically, read with checks.

Layout (as Spark's own ``KMeansModel``)::

    path/metadata/   one JSON line: class, uid, params, defaults (DefaultParamsWriter)
    path/data/       models only: Parquet, one row (clusterIdx int, clusterCenter vector) a center

A save writes everything into a hidden sibling folder first and renames it into place only when
it is complete, so an interrupted save never leaves a folder that loads, and ``overwrite()``
swaps the old folder out only after the new one is whole.
"""

from __future__ import annotations

import posixpath
import re
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any, Generic, TypeVar

import numpy as np
from pyspark.ml.linalg import DenseVector, VectorUDT
from pyspark.ml.param import Params
from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReader, MLWriter
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from sparkml_lloyd import _compat

S = TypeVar("S", bound=Params)


class PathExistsError(FileExistsError, ValueError):
    """``save`` to an existing path without ``overwrite()``; nothing was written."""


class StageNotFoundError(FileNotFoundError, ValueError):
    """``load`` of a path that does not exist."""


class _FileSystem:
    """The Hadoop FileSystem behind a path (local, HDFS, S3 ...), through the JVM."""

    can_rename = True

    def __init__(self, spark: SparkSession, path: str) -> None:
        jvm = spark.sparkContext._jvm
        self._Path = jvm.org.apache.hadoop.fs.Path
        self._fs = self._Path(path).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def exists(self, path: str) -> bool:
        return bool(self._fs.exists(self._Path(path)))

    def delete(self, path: str) -> None:
        self._fs.delete(self._Path(path), True)

    def rename(self, src: str, dst: str) -> None:
        if not self._fs.rename(self._Path(src), self._Path(dst)):
            raise OSError(f"Could not rename {src!r} to {dst!r}.")

    def siblings(self, path: str, tag: str) -> list[str]:
        """The hidden siblings :func:`_sibling` named for ``path`` and ``tag`` that exist,
        oldest first (none when the folder cannot be listed)."""
        head, tail = posixpath.split(path.rstrip("/"))
        escape = partial(_GLOB_SPECIAL.sub, r"\\\1")
        pattern = posixpath.join(escape(head), f".{escape(tail)}.{tag}-*")
        try:
            statuses = self._fs.globStatus(self._Path(pattern))
        except Exception:  # a py4j error: no permission to list, ...
            return []
        found = sorted((s.getModificationTime(), s.getPath().getName()) for s in statuses or [])
        return [posixpath.join(head, name) for _, name in found]


class _RemoteFileSystem:
    """The server's file system as a Spark Connect client reaches it: Spark's own ML helper on
    the server (``ConnectHelper.handleOverwrite``, what Spark's stages use to save) tells
    whether a path exists and deletes it; nothing renames, so a save there cannot be atomic
    (see :meth:`AtomicWriter.save`)."""

    can_rename = False

    @staticmethod
    def _handle_overwrite(path: str, overwrite: bool) -> None:
        from pyspark.ml.util import ML_CONNECT_HELPER_ID
        from pyspark.ml.wrapper import JavaWrapper

        JavaWrapper(java_obj=ML_CONNECT_HELPER_ID)._call_java("handleOverwrite", path, overwrite)

    def exists(self, path: str) -> bool:
        try:
            self._handle_overwrite(path, False)
        except Exception as exc:  # the server's IOException: "Path ... already exists"
            if _compat.says_path_exists(exc):
                return True
            raise
        return False

    def delete(self, path: str) -> None:
        self._handle_overwrite(path, True)

    def siblings(self, path: str, tag: str) -> list[str]:
        return []


def _filesystem(spark: SparkSession, path: str) -> Any:
    """The file system behind ``path``: through the JVM in classic Spark, through Spark's ML
    helper on the server under Spark Connect."""
    return _FileSystem(spark, path) if _compat.is_classic(spark) else _RemoteFileSystem()


#: Characters a Hadoop glob pattern treats specially (escaped with a backslash).
_GLOB_SPECIAL = re.compile(r"([\\{}\[\]*?^])")


def _sibling(path: str, tag: str) -> str:
    path = path.rstrip("/")
    head, tail = posixpath.split(path)
    return posixpath.join(head, f".{tail}.{tag}-{uuid.uuid4().hex[:12]}")


def _missing(name: str, path: str, replaced: list[str]) -> str:
    """The message of loading a path that does not exist; ``replaced`` are the folders that
    interrupted ``overwrite()`` saves moved aside, oldest first."""
    head = f"Cannot load {name}: {path!r} does not exist. "
    if not replaced:
        return head + "Give the path that was passed to save()."
    older = f" ({len(replaced) - 1} older such folders exist too.)" if len(replaced) > 1 else ""
    return head + (
        "An overwrite() save to it was interrupted between its two renames; the stage saved "
        f"there before is in {replaced[-1]!r}: rename that folder to the path and load "
        f"again.{older}"
    )


class AtomicWriter(MLWriter):
    """Writes metadata (and, through ``write_data``, a model's data) to a temporary folder,
    then renames it into place."""

    def __init__(
        self,
        instance: Params,
        write_data: Callable[[Any, str, SparkSession], None] | None = None,
        extra_metadata: Callable[[Any], dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.instance = instance
        self._write_data = write_data
        self._extra_metadata = extra_metadata

    def saveImpl(self, path: str) -> None:
        """The data (models only), then the metadata: a folder without its metadata is not a
        stage, so whatever an interrupted save leaves does not load."""
        if self._write_data is not None:
            self._write_data(self.instance, posixpath.join(path, "data"), self.sparkSession)
        extra = self._extra_metadata(self.instance) if self._extra_metadata else None
        DefaultParamsWriter.saveMetadata(self.instance, path,
                                         _compat.ml_io_context(self.sparkSession), extra)

    def save(self, path: str) -> None:
        """Save to ``path``; an existing ``path`` needs ``overwrite()`` and is replaced whole.

        Under Spark Connect nothing can rename on the server: the old folder is deleted
        first and the new one written in place (data, then metadata), as Spark's own stages
        do there."""
        if not isinstance(path, str):
            raise TypeError(f"path must be a string, got {type(path).__name__}.")
        fs = _filesystem(self.sparkSession, path)
        exists = fs.exists(path)
        if exists and not self.shouldOverwrite:
            raise PathExistsError(
                f"Path {path!r} already exists; nothing was written. Use "
                "write().overwrite().save(path) to replace it."
            )
        if not fs.can_rename:
            if exists:
                fs.delete(path)
            self.saveImpl(path)
            return
        tmp = _sibling(path, "saving")
        try:
            self.saveImpl(tmp)
            if exists:
                old = _sibling(path, "replaced")
                fs.rename(path, old)
                try:
                    fs.rename(tmp, path)
                except BaseException:
                    fs.rename(old, path)
                    raise
                fs.delete(old)
            else:
                fs.rename(tmp, path)
        finally:
            if fs.exists(tmp):
                fs.delete(tmp)


class CheckedReader(MLReader[S], Generic[S]):
    """Loads a stage saved by :class:`AtomicWriter`, with a clear error for anything else."""

    def __init__(
        self,
        cls: type[S],
        read_data: Callable[[S, str, SparkSession, dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__()
        self.cls = cls
        self._read_data = read_data

    def load(self, path: str) -> S:
        """Load the stage saved at ``path``; a ``ValueError`` naming the path and the fix when
        ``path`` does not hold a complete saved stage of this class."""
        if not isinstance(path, str):
            raise TypeError(f"path must be a string, got {type(path).__name__}.")
        spark = self.sparkSession
        name = self.cls.__name__
        fs = _filesystem(spark, path)
        if not fs.exists(path):
            raise StageNotFoundError(_missing(name, path, fs.siblings(path, "replaced")))
        if not fs.exists(posixpath.join(path, "metadata")):
            raise ValueError(
                f"Cannot load {name}: {path!r} is not a saved Spark ML stage (it has no "
                "metadata folder). Give the folder that save() wrote."
            )
        try:
            metadata = DefaultParamsReader.loadMetadata(path, _compat.ml_io_context(spark))
        except Exception as e:  # an emptied, truncated or corrupted metadata file
            raise ValueError(
                f"Cannot load {name}: the metadata under {path!r} is unreadable "
                f"({type(e).__name__}); the saved stage is incomplete. Save it again."
            ) from None
        expected = f"{self.cls.__module__}.{name}"
        if metadata.get("class") != expected:
            raise ValueError(
                f"Cannot load {name}: {path!r} holds a saved {metadata.get('class')}, not a "
                f"{expected}. Load it with that class's load()."
            )
        instance = self.cls()
        instance._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(instance, metadata)
        if self._read_data is not None:
            data = posixpath.join(path, "data")
            if not fs.exists(data):
                raise ValueError(
                    f"Cannot load {name}: {path!r} is incomplete (its data folder is missing). "
                    "Save the model again."
                )
            self._read_data(instance, data, spark, metadata)
        return instance


# --------------------------------------------------------------------------------------
# A model's centers under path/data (Spark's KMeansModel layout)
# --------------------------------------------------------------------------------------

_CENTERS_SCHEMA = T.StructType(
    [T.StructField("clusterIdx", T.IntegerType()), T.StructField("clusterCenter", VectorUDT())]
)


def write_centers(centers: np.ndarray, path: str, spark: SparkSession) -> None:
    """One Parquet file, a row ``(clusterIdx, clusterCenter)`` per center."""
    rows = [(i, DenseVector(c)) for i, c in enumerate(centers)]
    spark.createDataFrame(rows, _CENTERS_SCHEMA).coalesce(1).write.parquet(path)


def read_centers(path: str, spark: SparkSession, metadata: dict[str, Any],
                 name: str = "LloydKMeansModel") -> np.ndarray:
    """The centers :func:`write_centers` wrote, checked against the metadata's
    ``numClusters`` and ``numFeatures``: a ``ValueError`` for an incomplete or inconsistent
    folder."""
    try:
        rows = spark.read.parquet(path).collect()
    except Exception as e:  # an emptied or corrupted data folder
        raise ValueError(
            f"Cannot load {name}: the data under {path!r} is unreadable "
            f"({type(e).__name__}). Save the model again."
        ) from None
    expected = metadata.get("numClusters")
    rows = sorted(rows, key=lambda r: r.clusterIdx)
    if not rows or (expected is not None and len(rows) != expected) or [
        r.clusterIdx for r in rows
    ] != list(range(len(rows))):
        raise ValueError(
            f"Cannot load {name}: {path!r} holds {len(rows)} centers but the "
            f"metadata says {expected}; the saved model is incomplete. Save it again."
        )
    lengths = {r.clusterCenter.size for r in rows}
    features = metadata.get("numFeatures")
    if len(lengths) != 1 or (features is not None and lengths != {features}):
        raise ValueError(
            f"Cannot load {name}: {path!r} holds centers of length(s) "
            f"{sorted(lengths)} but the metadata says numFeatures={features}; the saved "
            "model is inconsistent. Save it again."
        )
    return np.array([r.clusterCenter.toArray() for r in rows])


def spark_kmeans_model_via_save(spark: SparkSession, centers: np.ndarray,
                                params: dict[str, Any], uid: str) -> Any:
    """Spark's own ``KMeansModel`` with these centers where no JVM is at hand (Spark
    Connect): :func:`spark_model_via_save` with the same ``data`` Parquet as ours."""
    from pyspark.ml.clustering import KMeansModel

    return spark_model_via_save(spark, KMeansModel, uid, params,
                                lambda path: write_centers(centers, path, spark))


def spark_model_via_save(spark: SparkSession, cls: Any, uid: str, params: dict[str, Any],
                         write_data: Callable[[str], None]) -> Any:
    """A model of Spark's own class ``cls`` (a ``pyspark.ml`` model class whose JVM class
    has the same name under ``org.apache.spark``) built where no JVM is at hand (Spark
    Connect): written in that model's saved layout (metadata naming its JVM class, and
    ``write_data(path)`` writing its ``data`` Parquet) to a scratch folder of the server's
    default file system, loaded by Spark's own reader, and the folder deleted."""
    import json
    import time

    path = f"sparkml_lloyd-spark-model-{uuid.uuid4().hex}"
    fs = _filesystem(spark, path)
    jvm_class = "org.apache.spark." + cls.__module__.split(".", 1)[1] + "." + cls.__name__
    metadata = {"class": jvm_class, "timestamp": int(time.time() * 1000),
                "sparkVersion": spark.version, "uid": uid, "paramMap": params,
                "defaultParamMap": {}}
    try:
        write_data(posixpath.join(path, "data"))
        spark.createDataFrame([(json.dumps(metadata),)], ["value"]).coalesce(1).write.text(
            posixpath.join(path, "metadata"))
        return cls.load(path)
    finally:
        fs.delete(path)


def model_writer(model: Params, centers: np.ndarray) -> AtomicWriter:
    """The writer of a model with these centers: its params, and the centers under ``data``
    with ``numFeatures`` and ``numClusters`` in the metadata."""
    return AtomicWriter(
        model, write_data=lambda _, path, spark: write_centers(centers, path, spark),
        extra_metadata=lambda _: {"numFeatures": centers.shape[1], "numClusters": len(centers)})


def model_reader(cls: type[S]) -> CheckedReader[S]:
    """The reader of a model class whose instances keep their centers as ``_centers``."""
    def read_data(model: S, path: str, spark: SparkSession, metadata: dict[str, Any]) -> None:
        model._centers = read_centers(path, spark, metadata, cls.__name__)  # type: ignore[attr-defined]

    return CheckedReader(cls, read_data=read_data)
