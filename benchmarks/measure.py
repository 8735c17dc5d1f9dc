"""Timing, process memory and Spark storage measurements.

* :func:`timed` -- wall-clock seconds of one call (``time.perf_counter``).
* :class:`MemorySampler` -- a background thread that samples, every ``interval`` seconds, the
  resident memory of the driver JVM, of this Python driver and of the Python workers (the
  JVM's descendant processes: ``pyspark.daemon`` and the workers it forks), and keeps the peak
  of each per *phase* (a label the runner sets: ``"ours"``, ``"mllib"`` ...). Workers forked
  from the daemon share pages, so their sum is given both as RSS (over-counts shared pages)
  and as PSS (shares split fairly, from ``/proc/PID/smaps_rollup``).
* :func:`cached_rdds` / :class:`CacheProbe` -- what a competitor caches: Spark's own storage
  info for persisted RDDs (``memSize`` + ``diskSize`` per RDD), plus host files (``/dev/shm``,
  temp dir) its Python workers have mapped or open.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

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


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Run ``fn()`` once; return (elapsed seconds, its result)."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds (user + system) used so far by ``root`` (default: this process) and all
    its live descendants, including their reaped children: the Python driver, the driver JVM
    it launched and the Python workers the JVM forked. Unlike wall time, this barely depends
    on what else the machine is running."""
    root = os.getpid() if root is None else root
    total = 0
    for pid in [root, *descendants(root)]:
        try:
            with open(f"/proc/{pid}/stat") as f:
                line = f.read()
        except OSError:
            continue
        fields = line[line.rfind(")") + 2 :].split()
        # fields[11:15] = utime, stime, cutime, cstime (stat fields 14-17)
        total += sum(int(x) for x in fields[11:15])
    return total / _TICKS


def timed_cpu(fn: Callable[[], T]) -> tuple[float, float, T]:
    """Run ``fn()`` once; return (wall seconds, CPU seconds of the process tree, result).
    The CPU snapshots (a scan of ``/proc``) are taken outside the wall-clock timer."""
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


# --------------------------------------------------------------------------------------
# Process memory via /proc
# --------------------------------------------------------------------------------------


def _read_kb(path: str, key: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process (``VmRSS``), or ``None`` when it is gone."""
    return _read_kb(f"/proc/{pid}/status", "VmRSS:")


def pss_bytes(pid: int) -> int | None:
    """Proportional set size (shared pages split between sharers), or ``None``."""
    return _read_kb(f"/proc/{pid}/smaps_rollup", "Pss:")


def _parent_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                line = f.read()
        except OSError:
            continue
        # comm may hold spaces and parentheses: the fields after the last ')' are fixed.
        rest = line[line.rfind(")") + 2 :].split()
        parents[int(entry)] = int(rest[1])
    return parents


def descendants(pid: int) -> list[int]:
    """All live descendant process ids of ``pid``."""
    children: dict[int, list[int]] = {}
    for child, parent in _parent_map().items():
        children.setdefault(parent, []).append(child)
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def driver_jvm_pid(sc: SparkContext) -> int:
    """Process id of the driver JVM (asked from the JVM; else the ``java`` child of this one)."""
    try:
        return int(sc._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
    except Exception:
        for pid in descendants(os.getpid()):
            if "java" in _cmdline(pid).split(" ")[0]:
                return pid
        raise RuntimeError("cannot find the driver JVM process") from None


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

    Use as a context manager; set :attr:`phase` to attribute samples to a phase. Reading
    ``/proc`` costs well under a millisecond per sample, so the default 0.2 s interval does
    not disturb the timings.
    """

    def __init__(self, jvm_pid: int, interval: float = 0.2) -> None:
        self.jvm_pid = jvm_pid
        self.interval = interval
        self.phase = "idle"
        self.peaks: dict[str, MemoryPeaks] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._lock = threading.Lock()

    def sample(self) -> None:
        """Take one sample now."""
        jvm = rss_bytes(self.jvm_pid) or 0
        py = rss_bytes(os.getpid()) or 0
        workers = [p for p in descendants(self.jvm_pid) if "python" in _cmdline(p)]
        w_rss = sum(rss_bytes(p) or 0 for p in workers)
        w_pss = sum(pss_bytes(p) or 0 for p in workers)
        with self._lock:
            self.peaks.setdefault(self.phase, MemoryPeaks()).update(
                jvm, py, w_rss, w_pss, len(workers)
            )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:  # a process vanished mid-read: skip this sample
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


# --------------------------------------------------------------------------------------
# Spark storage
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedRdd:
    """One persisted RDD as Spark's storage info reports it."""

    id: int
    name: str
    mem_bytes: int
    disk_bytes: int
    cached_partitions: int

    @property
    def bytes(self) -> int:
        return self.mem_bytes + self.disk_bytes


def cached_rdds(sc: SparkContext) -> dict[int, CachedRdd]:
    """Persisted RDDs that hold at least one cached partition, by RDD id."""
    infos = sc._jsc.sc().getRDDStorageInfo()  # type: ignore[union-attr]
    out = {}
    for info in infos:
        out[int(info.id())] = CachedRdd(
            int(info.id()), str(info.name()), int(info.memSize()), int(info.diskSize()),
            int(info.numCachedPartitions()),
        )
    return out


def new_cache_bytes(before: dict[int, CachedRdd], after: dict[int, CachedRdd]) -> int:
    """Bytes held by RDDs cached in ``after`` that were not cached in ``before``."""
    return sum(r.bytes for i, r in after.items() if i not in before)


#: Host-local storage a competitor may keep its data in, outside Spark's block manager.
HOST_FILE_ROOTS: tuple[str, ...] = ("/dev/shm", tempfile.gettempdir())


def host_files(pids: list[int], roots: tuple[str, ...] = HOST_FILE_ROOTS) -> dict[str, int]:
    """Regular files under ``roots`` that the processes ``pids`` have mapped or open, with
    their sizes: data a competitor keeps in host memory (``/dev/shm``) or on local disk outside
    Spark's storage. Spark's own scratch directories (``spark-*``) are left out: what Spark
    caches is counted from its storage info."""
    found: dict[str, int] = {}

    def consider(path: str) -> None:
        if path in found or not path.startswith(roots) or "/spark-" in path:
            return
        try:
            st = os.stat(path)
        except OSError:
            return
        if stat.S_ISREG(st.st_mode):
            found[path] = st.st_size

    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    parts = line.split(maxsplit=5)
                    if len(parts) == 6:
                        consider(parts[5].strip())
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    consider(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return found


class _FirstIteration(logging.Handler):
    """Calls ``action`` when a ``sparkml_lloyd`` fit logs its first iteration."""

    def __init__(self, action: Callable[[], None]) -> None:
        super().__init__(logging.INFO)
        self.action = action

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "iteration", None) == 1:
            self.action()


@contextlib.contextmanager
def _on_first_iteration(action: Callable[[], None]) -> Any:
    logger = logging.getLogger("sparkml_lloyd")
    level, propagate = logger.level, logger.propagate
    if not logger.isEnabledFor(logging.INFO):  # nothing printed that would not have been
        logger.setLevel(logging.INFO)
        logger.propagate = False
    handler = _FirstIteration(action)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


@dataclass
class CacheProbe:
    """Polls, while a call runs, (a) Spark's storage info for RDDs that were not cached when
    the probe started and (b) host files mapped or opened by the Python workers (see
    :func:`host_files`; a file once seen counts for as long as it exists); keeps the peak of
    each and of their sum.

    It calls into the JVM and scans ``/proc`` every ``interval`` seconds, so it is used only
    around an untimed warm-up fit (or, with warm-up off, the first ``maxIter = m1`` fit).
    A fit of ours can be shorter than one poll (1e5 rows take ~0.1 s), so it also polls once
    when our fit logs its first iteration (the ``sparkml_lloyd`` logger, raised to INFO and
    kept from propagating for the call if it was quieter): the blocks exist then.
    """

    sc: SparkContext
    jvm_pid: int
    interval: float = 0.05
    peak_bytes: int = 0
    peak_spark_bytes: int = 0
    peak_host_file_bytes: int = 0
    peak_rdds: list[CachedRdd] = field(default_factory=list)
    peak_files: int = 0

    def _poll_once(self, before: dict[int, CachedRdd], known: set[str]) -> None:
        try:
            now = cached_rdds(self.sc)
        except Exception:
            now = {}
        new = [r for i, r in now.items() if i not in before]
        spark_bytes = sum(r.bytes for r in new)
        # A worker maps a file only while its task runs; the file lives on between tasks.
        # So remember every file seen mapped, and count those that still exist.
        known.update(host_files(descendants(self.jvm_pid)))
        live = 0
        count = 0
        for path in list(known):
            try:
                live += os.stat(path).st_size
                count += 1
            except OSError:
                known.discard(path)
        if spark_bytes > self.peak_spark_bytes:
            self.peak_spark_bytes, self.peak_rdds = spark_bytes, new
        if live > self.peak_host_file_bytes:
            self.peak_host_file_bytes, self.peak_files = live, count
        self.peak_bytes = max(self.peak_bytes, spark_bytes + live)

    def run(self, fn: Callable[[], T]) -> T:
        before = cached_rdds(self.sc)
        known: set[str] = set()
        stop = threading.Event()
        lock = threading.Lock()

        def poll_once() -> None:
            with lock:
                self._poll_once(before, known)

        def poll() -> None:
            while True:
                poll_once()
                if stop.wait(self.interval):
                    return

        with _on_first_iteration(poll_once):
            thread = threading.Thread(target=poll, name="cache-probe", daemon=True)
            thread.start()
            try:
                return fn()
            finally:
                stop.set()
                thread.join()

    def to_json(self) -> dict[str, Any]:
        return {
            "peak_bytes": self.peak_bytes,
            "peak_spark_storage_bytes": self.peak_spark_bytes,
            "peak_host_file_bytes": self.peak_host_file_bytes,
            "host_files": self.peak_files,
            "spark_rdds": [r.name[:120] for r in self.peak_rdds],
        }
