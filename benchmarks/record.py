"""The result record: environment facts, and reading/writing the JSON file.

A record is a plain dict (JSON): ``settings``, ``environment``, ``cells`` (one dict per cell,
with every figure and the raw per-repeat times), ``targets`` (filled by
:func:`benchmarks.report.evaluate_targets`) and ``total_seconds``.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
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


def jvm_blas(spark: SparkSession) -> dict[str, str | None]:
    """The BLAS Spark's ML code uses in the JVM (netlib's ``dev.ludovic.netlib``): the native
    one when it loads (``native``, else ``None``), and the Java one (``java``, e.g.
    ``VectorBLAS`` on the JDK's vector API); ``used`` is what Spark takes for level-3 calls
    (its ``nativeBLAS``, falling back to the Java one)."""
    blas = spark.sparkContext._jvm.dev.ludovic.netlib.blas  # type: ignore[union-attr]

    def name(instance: Callable[[], Any]) -> str | None:
        try:
            return str(instance().getClass().getSimpleName())
        except Exception:  # py4j: "Unable to load native implementation"
            return None

    native = name(blas.NativeBLAS.getInstance)
    java = name(blas.JavaBLAS.getInstance)
    return {"native": native, "java": java, "used": native or java}


def environment(spark: SparkSession) -> dict[str, Any]:
    """Versions, git state, machine and the effective Spark conf of this run."""
    jvm = spark.sparkContext._jvm
    java = None
    if jvm is not None:
        java = str(jvm.java.lang.System.getProperty("java.version"))
    return environment_of(spark.version, java, dict(spark.sparkContext.getConf().getAll()),
                          jvm_blas(spark))


def environment_of(spark_version: str, java: str | None, spark_conf: dict[str, str],
                   blas: dict[str, str | None] | None) -> dict[str, Any]:
    """:func:`environment` from its Spark facts (a Spark Connect client reads them from the
    server's REST API; it has no JVM of its own)."""
    conf = dict(sorted(spark_conf.items()))
    for secret_like in [k for k in conf if "secret" in k.lower() or "password" in k.lower()]:
        conf.pop(secret_like)
    return {
        "git": git_state(),
        "versions": {
            "python": platform.python_version(),
            "pyspark": _version("pyspark"),
            "spark": spark_version,
            "java": java,
            "numpy": _version("numpy"),
            "pyarrow": _version("pyarrow"),
            "pandas": _version("pandas"),
            "scikit-learn": _version("scikit-learn"),
            "sparkml-lloyd": _version("sparkml-lloyd"),
        },
        "machine": machine(),
        "spark_conf": conf,
        **({"jvm_blas": blas} if blas else {}),
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


#: Settings that must agree between the parts of a merged record (they shape every figure);
#: grid, cells and repeats may differ.
_MERGE_SAME_SETTINGS = ("master", "partitions", "m1", "m2", "per_row_m1", "per_row_m2",
                        "warmup", "driver_memory", "seed", "smoke", "max_nd", "longer_runs")
_MERGE_SAME_VERSIONS = ("python", "pyspark", "java", "numpy", "pyarrow", "scikit-learn")
_MERGE_SAME_MACHINE = ("nproc", "memory_bytes", "cpu_model")


def _same(key: str, a: Any, b: Any) -> bool:
    """Do two runs agree on ``key``? The machine's total memory within 1%: the kernel's
    ``MemTotal`` moves by a few hundred kB from one boot to the next."""
    if key == "memory_bytes" and a and b:
        return abs(a - b) <= 0.01 * max(a, b)
    return bool(a == b)


def merge(parts: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """One record from runs of different cells on one machine (the full grid in pieces, or
    some cells measured again).

    The runs must agree on the machine, the versions and every setting that shapes a figure
    (:data:`_MERGE_SAME_SETTINGS`); each cell keeps its own rounds. A cell measured by
    several runs is taken from the newest; the others' are listed in ``superseded``.
    ``parts`` of the result lists every run (file, commit, rounds, the cells taken from it)
    and ``code_changes`` the files of ``sparkml_lloyd/`` and ``benchmarks/*.py`` that differ
    between consecutive runs' commits (``None`` when git cannot tell), so the page can say
    what changed in between. Targets are not evaluated here.

    Raises:
        ValueError: fewer than two parts, one run given twice, or runs that disagree.
    """
    if len(parts) < 2:
        raise ValueError("merge needs at least two result files")
    (first_path, first), rest = parts[0], parts[1:]
    taken: dict[str, tuple[str, Path, dict[str, Any]]] = {}  # cell -> (created, file, cell)
    superseded: list[dict[str, str]] = []
    for path, rec in parts:
        created = rec.get("created", "")
        for cell in rec.get("cells", []):
            key = cell_id(cell)
            if key not in taken:
                taken[key] = (created, path, cell)
                continue
            other_created, other_path, _ = taken[key]
            if other_created == created:
                raise ValueError(f"{other_path.name} and {path.name} are the same run "
                                 f"(created {created}): pass each run once")
            old_path = other_path if created > other_created else path
            superseded.append({"cell": key, "result": _display_path(old_path)})
            if created > other_created:
                taken[key] = (created, path, cell)
    for path, rec in rest:
        for group, keys, a, b in (
            ("setting", _MERGE_SAME_SETTINGS, first["settings"], rec["settings"]),
            ("version", _MERGE_SAME_VERSIONS, first["environment"]["versions"],
             rec["environment"]["versions"]),
            ("machine", _MERGE_SAME_MACHINE, first["environment"]["machine"],
             rec["environment"]["machine"]),
        ):
            for key in keys:
                if not _same(key, a.get(key), b.get(key)):
                    raise ValueError(f"{first_path.name} and {path.name} differ in {group} "
                                     f"{key!r} ({a.get(key)!r} vs {b.get(key)!r}): their "
                                     "figures are not comparable on one page")
    cells = sorted((c for _, _, c in taken.values()),
                   key=lambda c: (c.get("backend") == "connect", c.get("nnz") or 0, c["n"],
                                 c["d"], c["k"]))
    settings = dict(first["settings"])
    settings["grid"] = "+".join(dict.fromkeys(rec["settings"]["grid"] for _, rec in parts))
    settings["cells"] = [cell_id(c) for c in cells]
    settings["repeats"] = sorted({rec["settings"]["repeats"] for _, rec in parts}, reverse=True)
    commits = [rec["environment"].get("git", {}).get("commit") for _, rec in parts]
    environment = dict(first["environment"])
    # older runs did not record the JVM's BLAS: take it from a run that did (same machine)
    blas = [rec["environment"]["jvm_blas"] for _, rec in parts
            if rec["environment"].get("jvm_blas")]
    if blas and "jvm_blas" not in environment:
        environment["jvm_blas"] = blas[-1]
    memory: dict[str, Any] = {}
    for _, rec in parts:
        for key, value in (rec.get("memory_overall") or {}).items():
            if isinstance(value, (int, float)):
                memory[key] = max(memory.get(key, value), value)
    return {
        "schema": SCHEMA_VERSION,
        "created": max(rec.get("created", "") for _, rec in parts),
        "command": "python -m benchmarks.run --report-only "
                   + " ".join(_display_path(p) for p, _ in parts),
        "smoke": first.get("smoke", False),
        "complete": all(rec.get("complete", False) for _, rec in parts),
        "settings": settings,
        "environment": environment,
        "cells": cells,
        "total_seconds": sum(rec.get("total_seconds", 0) for _, rec in parts),
        "memory_overall": memory,
        **({"connect_environment": connect[-1]} if (connect := [
            rec["connect_environment"] for _, rec in parts if rec.get("connect_environment")])
           else {}),
        "parts": [
            {
                "result": _display_path(path),
                "created": rec.get("created"),
                "command": rec.get("command"),
                "commit": rec["environment"].get("git", {}).get("commit"),
                "dirty": rec["environment"].get("git", {}).get("dirty"),
                "grid": rec["settings"]["grid"],
                "repeats": rec["settings"]["repeats"],
                "cells": [cell_id(c) for c in cells if taken[cell_id(c)][1] == path],
                "complete": rec.get("complete", False),
                "total_seconds": rec.get("total_seconds"),
            }
            for path, rec in parts
        ],
        "superseded": superseded,
        "code_changes": code_changes(commits),
    }


def cell_id(cell: dict[str, Any]) -> str:
    """A cell's name in a record: its key (``"1e6,20,20"``), prefixed ``"connect "`` when it
    was measured on a Spark Connect server (the same cell measured classic is another)."""
    return ("connect " if cell.get("backend") == "connect" else "") + cell["cell"]


def code_changes(commits: list[str | None], root: Path = REPO_ROOT) -> list[str] | None:
    """Files of the package and the benchmark code that differ between consecutive
    ``commits`` (sorted), or ``None`` when a commit is unknown or git cannot tell."""
    if any(c is None for c in commits):
        return None
    changed: set[str] = set()
    for a, b in itertools.pairwise(commits):
        try:
            out = subprocess.run(
                ["git", "diff", "--name-only", a, b, "--", "sparkml_lloyd", "benchmarks/*.py"],
                cwd=root, capture_output=True, text=True, timeout=30, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        changed.update(filter(None, out.stdout.splitlines()))
    return sorted(changed)


def _display_path(path: Path) -> str:
    """``path`` relative to the repository when inside it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
