"""What a competitor caches while it fits.

* :func:`cached_rdds` -- Spark's own storage info for persisted RDDs (``memSize + diskSize``
  per RDD).
* :func:`host_files` -- host files (``/dev/shm``, the temp dir) that processes have mapped or
  open: data a competitor keeps outside Spark's block manager (ours keeps its blocks there).
* :class:`CacheProbe` -- polls both while a call runs and keeps their peaks (and, apart, the
  peak of our own block files among the host files: what the sparse memory target judges).
* :class:`ConnectProbe` -- the same question on a Spark Connect server of this machine, where
  our blocks live in the memory of the fit's tasks: the growth of the server's Python workers,
  and Spark's storage info from the server's REST API.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import psutil
from pyspark import SparkContext

from benchmarks.measure import process_tree, pss_bytes, python_workers
from sparkml_lloyd._blockstore import PREFIX as BLOCK_PREFIX

if TYPE_CHECKING:
    import numpy as np

    from sparkml_lloyd import IterationRecord

T = TypeVar("T")


@dataclass(frozen=True)
class CachedRdd:
    """One persisted RDD as Spark's storage info reports it."""

    id: int
    name: str
    mem_bytes: int
    disk_bytes: int

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
        )
    return out


def new_cache_bytes(before: dict[int, CachedRdd], after: dict[int, CachedRdd]) -> int:
    """Bytes held by RDDs cached in ``after`` that were not cached in ``before``."""
    return sum(r.bytes for i, r in after.items() if i not in before)


#: Host-local storage a competitor may keep its data in, outside Spark's block manager.
HOST_FILE_ROOTS: tuple[str, ...] = ("/dev/shm", tempfile.gettempdir())


def _mapped_paths(pid: int) -> list[str]:
    """Paths of the files a process has mapped, from ``/proc/PID/maps``. (psutil's
    ``memory_maps()`` reads ``/proc/PID/smaps`` instead, the same mappings with their memory
    accounting: 29 ms per Python worker here against 2 ms, too slow for a 50 ms poll.)"""
    paths = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6:
                paths.append(parts[5].strip())
    return paths


def host_files(procs: list[psutil.Process],
               roots: tuple[str, ...] = HOST_FILE_ROOTS) -> dict[str, int]:
    """Regular files under ``roots`` that the processes ``procs`` have mapped or open, with
    their sizes: data a competitor keeps in host memory (``/dev/shm``) or on local disk outside
    Spark's storage. Spark's own scratch directories (``spark-*``) are left out: what Spark
    caches is counted from its storage info. A process that ends during the scan is
    skipped."""
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

    for proc in procs:
        try:
            for path in _mapped_paths(proc.pid):
                consider(path)
            for open_file in proc.open_files():
                consider(open_file.path)
        except (OSError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def while_polling(poll: Callable[[], None], interval: float, fn: Callable[[], T]) -> T:
    """Call ``fn()`` while a thread calls ``poll()`` every ``interval`` seconds (once right
    away); the thread has ended when this returns."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            poll()
            if stop.wait(interval):
                return

    thread = threading.Thread(target=loop, name="cache-probe", daemon=True)
    thread.start()
    try:
        return fn()
    finally:
        stop.set()
        thread.join()


@dataclass
class CacheProbe:
    """Polls, while a call runs, (a) Spark's storage info for RDDs that were not cached when
    the probe started and (b) host files mapped or opened by the driver JVM's descendants
    (the Python workers; see :func:`host_files`; a file once seen counts for as long as it
    exists); keeps the peak of each and of their sum.

    It calls into the JVM and scans the processes every ``interval`` seconds, so it is used
    only around an untimed warm-up fit (or, with warm-up off, the first ``maxIter = m1`` fit).
    A fit of ours can be shorter than one poll (1e5 rows take ~0.1 s), so the probe also
    polls once when that fit reports its first iteration: :meth:`on_iteration` is an
    iteration callback for ``LloydKMeans.setIterationCallback`` (the blocks exist then).
    """

    sc: SparkContext
    jvm_pid: int
    interval: float = 0.05
    peak_bytes: int = 0
    peak_spark_bytes: int = 0
    peak_host_file_bytes: int = 0
    peak_rdds: list[CachedRdd] = field(default_factory=list)
    peak_files: int = 0
    #: peak bytes of our block files (``sparkml_lloyd-*`` among the host files)
    peak_block_file_bytes: int = 0
    #: RDDs cached before :meth:`run` started, and every host file seen during it;
    #: ``None`` outside :meth:`run`.
    _before: dict[int, CachedRdd] | None = field(default=None, init=False, repr=False)
    _known: set[str] = field(default_factory=set, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _poll(self) -> None:
        with self._lock:
            if self._before is None:  # not running
                return
            try:
                now = cached_rdds(self.sc)
            except Exception:
                now = {}
            new = [r for i, r in now.items() if i not in self._before]
            spark_bytes = sum(r.bytes for r in new)
            # A worker maps a file only while its task runs; the file lives on between tasks.
            # So remember every file seen mapped, and count those that still exist.
            self._known.update(host_files(process_tree(self.jvm_pid)[1:]))
            live = 0
            count = 0
            blocks = 0
            for path in list(self._known):
                try:
                    size = os.stat(path).st_size
                except OSError:
                    self._known.discard(path)
                    continue
                live += size
                count += 1
                if os.path.basename(path).startswith(BLOCK_PREFIX):
                    blocks += size
            self.peak_block_file_bytes = max(self.peak_block_file_bytes, blocks)
            if spark_bytes > self.peak_spark_bytes:
                self.peak_spark_bytes, self.peak_rdds = spark_bytes, new
            if live > self.peak_host_file_bytes:
                self.peak_host_file_bytes, self.peak_files = live, count
            self.peak_bytes = max(self.peak_bytes, spark_bytes + live)

    def on_iteration(self, record: IterationRecord, centers: np.ndarray) -> None:
        """Iteration callback: poll once at a fit's first iteration (while :meth:`run` runs;
        any other time it does nothing)."""
        if record.iteration == 1:
            self._poll()

    def run(self, fn: Callable[[], T]) -> T:
        """Call ``fn()`` while polling every ``interval`` seconds (once right away)."""
        with self._lock:
            self._before, self._known = cached_rdds(self.sc), set()
        try:
            return while_polling(self._poll, self.interval, fn)
        finally:
            with self._lock:
                self._before = None

    def to_json(self) -> dict[str, Any]:
        """The peaks, as the result record stores them."""
        return {
            "peak_bytes": self.peak_bytes,
            "peak_spark_storage_bytes": self.peak_spark_bytes,
            "peak_host_file_bytes": self.peak_host_file_bytes,
            "host_files": self.peak_files,
            "peak_block_file_bytes": self.peak_block_file_bytes,
            "spark_rdds": [r.name[:120] for r in self.peak_rdds],
        }


@dataclass
class ConnectProbe:
    """Polls, while a call runs against a Spark Connect server on this machine, (a) the summed
    proportional set size of the server's Python workers (:func:`benchmarks.measure.
    python_workers` of the server's JVM) and (b) the bytes of RDDs the server caches that were
    not cached when the probe started (``storage()``: RDD id -> bytes, from the server's REST
    API); keeps the peak of each, the workers' as growth over their size when the probe
    started.

    Under Connect our fit keeps its blocks in the memory of its barrier tasks' Python workers
    (nothing in Spark's storage, no files), so the workers' growth is what it caches, plus
    whatever else those processes hold meanwhile (Arrow batches being read, the numpy
    kernel's buffers); a freed allocation a worker keeps does not show as growth.
    """

    jvm_pid: int
    storage: Callable[[], dict[int, int]]
    interval: float = 0.05
    baseline_workers_bytes: int = 0
    peak_workers_growth_bytes: int = 0
    peak_spark_bytes: int = 0
    polls: int = 0

    def _workers(self) -> int:
        return sum(pss_bytes(p) for p in python_workers(self.jvm_pid))

    def run(self, fn: Callable[[], T]) -> T:
        """Call ``fn()`` while polling every ``interval`` seconds (once right away)."""
        before = self.storage()
        self.baseline_workers_bytes = self._workers()

        def poll() -> None:
            growth = self._workers() - self.baseline_workers_bytes
            try:
                now = self.storage()
            except Exception:  # the REST API did not answer this once
                now = {}
            spark = sum(b for i, b in now.items() if i not in before)
            self.peak_workers_growth_bytes = max(self.peak_workers_growth_bytes, growth)
            self.peak_spark_bytes = max(self.peak_spark_bytes, spark)
            self.polls += 1

        return while_polling(poll, self.interval, fn)

    def to_json(self) -> dict[str, Any]:
        """The peaks, as the result record stores them."""
        return {
            "peak_workers_growth_bytes": self.peak_workers_growth_bytes,
            "workers_baseline_bytes": self.baseline_workers_bytes,
            "peak_spark_storage_bytes": self.peak_spark_bytes,
            "polls": self.polls,
        }
