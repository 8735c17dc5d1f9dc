"""Timing, CPU time and process memory measurements; the agreement measure of centers.

* :func:`timed_cpu` -- wall-clock seconds of one call (``time.perf_counter``) and the CPU
  seconds of the whole process tree during it (:func:`tree_cpu_seconds`).
* :class:`MemorySampler` -- a background thread that samples, every ``interval`` seconds, the
  resident memory of the driver JVM, of this Python driver and of the Python workers (the
  JVM's descendant processes: ``pyspark.daemon`` and the workers it forks), and keeps the peak
  of each per *phase* (a label the runner sets: ``"ours"``, ``"mllib"`` ...). Workers forked
  from the daemon share pages, so their sum is given both as RSS (over-counts shared pages)
  and as PSS (shares split fairly, from ``/proc/PID/smaps_rollup``).
* :func:`relative_difference` -- how far two center sets are apart.

Processes are inspected with psutil, here only (:func:`process_tree`); what a competitor
caches is measured in :mod:`benchmarks.storage`.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psutil
from pyspark import SparkContext

T = TypeVar("T")


def relative_difference(a: Any, b: Any) -> float:
    """``max |a - b| / max |b|``: the scale-relative difference of two center sets (inf when
    their shapes differ). The benchmarks' and the tests' agreement measure."""
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


# --------------------------------------------------------------------------------------
# Processes (psutil)
# --------------------------------------------------------------------------------------

#: What psutil raises for a process that ended (or that we may not read) mid-scan: such a
#: process is skipped, as if it had ended just before the scan.
_GONE = (psutil.NoSuchProcess, psutil.AccessDenied)


def process_tree(root: int) -> list[psutil.Process]:
    """``root`` and all its live descendants (empty when ``root`` has ended)."""
    try:
        proc = psutil.Process(root)
        return [proc, *proc.children(recursive=True)]
    except _GONE:
        return []


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except _GONE:
        return []


def python_workers(jvm_pid: int) -> list[psutil.Process]:
    """The Python processes below the driver JVM: ``pyspark.daemon`` and the workers it
    forks (in local mode the JVM is also the executor)."""
    return [p for p in process_tree(jvm_pid)[1:] if "python" in " ".join(_cmdline(p))]


def rss_bytes(proc: psutil.Process) -> int:
    """Resident set size of a process, 0 when it has ended."""
    try:
        return int(proc.memory_info().rss)
    except _GONE:
        return 0


def pss_bytes(proc: psutil.Process) -> int:
    """Proportional set size (pages shared between processes split between them; psutil
    reads ``/proc/PID/smaps_rollup``), 0 when the process has ended."""
    try:
        return int(proc.memory_full_info().pss)
    except _GONE:
        return 0


def driver_jvm_pid(sc: SparkContext) -> int:
    """Process id of the driver JVM (asked from the JVM; else the ``java`` child of this one)."""
    try:
        return int(sc._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
    except Exception:
        for proc in process_tree(os.getpid())[1:]:
            argv = _cmdline(proc)
            if argv and "java" in argv[0]:
                return proc.pid
        raise RuntimeError("cannot find the driver JVM process") from None


# --------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------


def tree_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds (user + system) used so far by ``root`` (default: this process) and all
    its live descendants, including their reaped children (``cpu_times()``'s
    ``children_user`` and ``children_system``): the Python driver, the driver JVM it launched
    and the Python workers the JVM forked. Unlike wall time, this barely depends on what else
    the machine is running. A process that ends during the scan is left out."""
    total = 0.0
    for proc in process_tree(os.getpid() if root is None else root):
        try:
            t = proc.cpu_times()
        except _GONE:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def timed_cpu(fn: Callable[[], T]) -> tuple[float, float, T]:
    """Run ``fn()`` once; return (wall seconds, CPU seconds of the process tree, result).
    The CPU snapshots (a scan of the process tree) are taken outside the wall-clock
    timer."""
    c0 = tree_cpu_seconds()
    t0 = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - t0
    return wall, tree_cpu_seconds() - c0, result


def median(values: list[float]) -> float | None:
    """Median, or ``None`` for no values."""
    return float(statistics.median(values)) if values else None


# --------------------------------------------------------------------------------------
# Python workers
# --------------------------------------------------------------------------------------


def _touch_batches(batches: Any) -> Any:
    import numpy  # noqa: F401  (load what the competitors' workers need)
    import pyarrow  # noqa: F401

    import sparkml_lloyd  # noqa: F401

    yield from batches


def _touch_row(row: Any) -> int:
    import numpy  # noqa: F401

    import sparkml_lloyd  # noqa: F401

    return 0


def keep_python_workers_warm(spark: Any, partitions: int) -> None:
    """Run a tiny job shaped like a fit's first pass (one task per partition, an Arrow stage
    feeding an RDD stage: two Python workers per task) whose functions import numpy, pyarrow
    and sparkml_lloyd.

    Spark kills a Python worker after 60 s idle; the next fit then re-forks workers and
    re-imports its modules, seconds of CPU that would land in whichever timer comes first
    (measured: ~5-7 CPU s for our fit at 1e6 x 20). Called before every timed call, so every
    timer measures warm workers, and the difference T(m2) - T(m1) stays clean.
    """
    (
        spark.range(0, partitions, 1, numPartitions=partitions)
        .mapInArrow(_touch_batches, "id long")
        .rdd.map(_touch_row)
        .collect()
    )


def keep_connect_workers_warm(spark: Any, partitions: int) -> None:
    """:func:`keep_python_workers_warm` on a Spark Connect session, which has no RDDs: one
    Arrow stage (a fit there is one ``mapInArrow`` job, one Python worker per task)."""
    spark.range(0, partitions, 1, numPartitions=partitions).mapInArrow(
        _touch_batches, "id long").collect()


# --------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------


@dataclass
class MemoryPeaks:
    """Peak bytes seen in one phase."""

    driver_jvm_rss: int = 0
    driver_python_rss: int = 0
    workers_rss: int = 0
    workers_pss: int = 0
    workers_max_count: int = 0
    samples: int = 0

    def update(self, jvm: int, py: int, w_rss: int, w_pss: int, count: int) -> None:
        self.driver_jvm_rss = max(self.driver_jvm_rss, jvm)
        self.driver_python_rss = max(self.driver_python_rss, py)
        self.workers_rss = max(self.workers_rss, w_rss)
        self.workers_pss = max(self.workers_pss, w_pss)
        self.workers_max_count = max(self.workers_max_count, count)
        self.samples += 1


class MemorySampler:
    """Samples driver JVM, Python driver and Python worker memory in a background thread.

    Use as a context manager; set :attr:`phase` to attribute samples to a phase. A sample
    (the process table, then each worker's ``smaps_rollup``) takes about 4 ms with four
    workers here, so the default 0.2 s interval hardly disturbs the timings.
    """

    def __init__(self, jvm_pid: int, interval: float = 0.2) -> None:
        self.jvm_pid = jvm_pid
        self._jvm = psutil.Process(jvm_pid)
        self._driver = psutil.Process()
        self.interval = interval
        self.phase = "idle"
        self.peaks: dict[str, MemoryPeaks] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._lock = threading.Lock()

    def sample(self) -> None:
        """Take one sample now."""
        jvm = rss_bytes(self._jvm)
        py = rss_bytes(self._driver)
        workers = python_workers(self.jvm_pid)
        w_rss = sum(rss_bytes(p) for p in workers)
        w_pss = sum(pss_bytes(p) for p in workers)
        with self._lock:
            self.peaks.setdefault(self.phase, MemoryPeaks()).update(
                jvm, py, w_rss, w_pss, len(workers)
            )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:  # whatever one sample met, keep sampling
                continue

    def set_phase(self, phase: str) -> None:
        """Attribute the following samples to ``phase`` (one sample is taken right away)."""
        with self._lock:
            self.phase = phase
        self.sample()

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        """Peaks per phase and overall, as plain dicts."""
        with self._lock:
            phases = {name: vars(p).copy() for name, p in self.peaks.items()}
        overall = MemoryPeaks()
        for p in self.peaks.values():
            overall.update(p.driver_jvm_rss, p.driver_python_rss, p.workers_rss,
                           p.workers_pss, p.workers_max_count)
        overall.samples = sum(p.samples for p in self.peaks.values())
        return {"overall": vars(overall), "phases": phases}
