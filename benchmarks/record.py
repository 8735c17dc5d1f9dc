"""The result record: environment facts, and reading/writing the JSON file.

A record is a plain dict (JSON): ``settings``, ``environment``, ``cells`` (one dict per cell,
with every figure and the raw per-repeat times), ``targets`` (filled by
:func:`benchmarks.report.evaluate_targets`) and ``total_seconds``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

SCHEMA_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parent.parent


def git_state(root: Path = REPO_ROOT) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                 timeout=30, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """nproc, total memory and CPU model (from ``/proc``)."""
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       None)
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("MemTotal:"))
    except (OSError, StopIteration):
        pass
    return {
        "nproc": os.cpu_count(),
        "memory_bytes": mem,
        "cpu_model": cpu,
        "platform": platform.platform(),
    }


def environment(spark: SparkSession) -> dict[str, Any]:
    """Versions, git state, machine and the effective Spark conf of this run."""
    jvm = spark.sparkContext._jvm
    java = None
    if jvm is not None:
        java = str(jvm.java.lang.System.getProperty("java.version"))
    conf = dict(sorted(spark.sparkContext.getConf().getAll()))
    for secret_like in [k for k in conf if "secret" in k.lower() or "password" in k.lower()]:
        conf.pop(secret_like)
    return {
        "git": git_state(),
        "versions": {
            "python": platform.python_version(),
            "pyspark": _version("pyspark"),
            "spark": spark.version,
            "java": java,
            "numpy": _version("numpy"),
            "pyarrow": _version("pyarrow"),
            "pandas": _version("pandas"),
            "scikit-learn": _version("scikit-learn"),
            "sparkml-lloyd": _version("sparkml-lloyd"),
        },
        "machine": machine(),
        "spark_conf": conf,
        "python_executable": sys.executable,
        "env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                           "OMP_NUM_THREADS", "SPARK_LOCAL_IP")
                if k in os.environ},
    }


def timestamp() -> str:
    """UTC timestamp for file names: ``20250101T120000Z``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def write_json(record: dict[str, Any], path: Path) -> Path:
    """Write atomically (``.tmp`` then rename), so a killed run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def read_json(path: Path) -> dict[str, Any]:
    record = json.loads(Path(path).read_text())
    if record.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"{path}: not a benchmark record of schema {SCHEMA_VERSION}")
    return record


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
