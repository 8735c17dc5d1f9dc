"""The command line's input and output: the format of a path (CSV or Parquet), checks made
before Spark starts, reading, and writing (a local ``.csv`` output is one file)."""

from __future__ import annotations

import contextlib
import contextvars
import glob
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sparkml_lloyd.cli.errors import CliError, UsageError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["check_absent", "check_input", "format_of", "is_local", "local_path", "read",
           "write"]

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


#: True while the paths are a Spark Connect server's (``--remote``): none is local then.
_ON_SERVER: contextvars.ContextVar[bool] = contextvars.ContextVar("on_server", default=False)


@contextlib.contextmanager
def server_paths(remote: bool) -> Iterator[None]:
    """Within it, with ``remote``, every path is the server's: nothing is checked or written
    on this machine's file system."""
    token = _ON_SERVER.set(remote)
    try:
        yield
    finally:
        _ON_SERVER.reset(token)


def is_local(path: str) -> bool:
    """Whether ``path`` is on this machine's file system (no URI scheme, or ``file:``, and no
    Spark Connect server in between)."""
    if _ON_SERVER.get():
        return False
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", path)
    return scheme is None or len(scheme.group(1)) == 1 or scheme.group(1).lower() == "file"


def local_path(path: str) -> str:
    """``path`` without a ``file:`` scheme."""
    return re.sub(r"^file:(//)?", "", path) if path.lower().startswith("file:") else path


def format_of(path: str, role: str) -> str:
    """``"csv"`` or ``"parquet"`` from the extension (or, for a local folder, its files); a
    :class:`UsageError` naming ``role`` when it cannot be told."""
    name = path.rstrip("/").lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    folder = local_path(path)
    if is_local(path) and os.path.isdir(folder):
        files = os.listdir(folder)
        if any(f.endswith(".parquet") for f in files):
            return "parquet"
        if any(f.endswith(".csv") for f in files):
            return "csv"
    raise UsageError(
        f"cannot tell the format of {role} {path!r}: name it *.csv (CSV with a header line) "
        "or *.parquet (Parquet file or folder)"
    )


def check_input(path: str) -> str:
    """The format of an input that exists (checked when it is local)."""
    if is_local(path) and not os.path.exists(local_path(path)):
        raise CliError(f"input {path!r} does not exist")
    return format_of(path, "input")


def check_absent(path: str, overwrite: bool, what: str) -> None:
    """A :class:`CliError` when a local ``path`` exists and ``overwrite`` is off."""
    if not overwrite and is_local(path) and os.path.exists(local_path(path)):
        raise CliError(f"{what} {path!r} already exists; add --overwrite to replace it")


def read(spark: SparkSession, path: str, fmt: str) -> DataFrame:
    """A CSV file with a header line (column types inferred), or Parquet."""
    if fmt == "csv":
        return spark.read.csv(path, header=True, inferSchema=True)
    return spark.read.parquet(path)


def write(df: DataFrame, path: str, overwrite: bool) -> str:
    """Write ``df`` as CSV (one file with a header, when local) or Parquet; what was written,
    in words."""
    fmt = format_of(path, "output")
    mode = "overwrite" if overwrite else "error"
    if fmt == "parquet":
        df.write.mode(mode).parquet(path)
        return "a Parquet folder"
    if not is_local(path):
        df.coalesce(1).write.mode(mode).csv(path, header=True)
        return "a CSV folder with one part file"
    target = os.path.abspath(local_path(path))
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(target)}.writing-{uuid.uuid4().hex[:12]}")
    try:
        df.coalesce(1).write.csv(tmp, header=True)
        parts = sorted(glob.glob(os.path.join(tmp, "part-*")))
        if parts:
            part = parts[0]
        else:  # no rows: Spark may write no part file at all
            part = os.path.join(tmp, "empty.csv")
            with open(part, "w", encoding="utf-8") as f:
                f.write(",".join(df.columns) + "\n")
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.replace(part, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return "one CSV file with a header"
