"""Process inspection (and killing by PID) for the tests, with psutil: the one copy.

A process is held as a :class:`psutil.Process`, which remembers its creation time: asking a
held process whether it is alive, or signalling it, never reaches an unrelated process that
was given the same PID later. Zombies (exited, not yet reaped) count as gone.

The executor-side lookup of a Python worker's JVM is the package's own
(``sparkml_lloyd._blockstore._jvm_pid``); the driver JVM of a session is
``tests.leaks.jvm_pid``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from typing import Literal

import psutil

#: JVM flags for every JVM the tests start: C1-only JIT, the serial GC, and no bytecode
#: verification of the jars' classes. The suite's Spark jobs are short; compiling with C2,
#: running parallel GC threads and verifying the ~10,000 classes a Spark JVM loads cost CPU
#: they never win back (a local session running the walkthrough's fits took ~20% less CPU
#: with the first two, ~10% less again without verification: 11-12.5 -> 10.2-10.4 CPU-s,
#: 30 Nov; the suite is CPU-bound on 2 cores). Results are the same: Java 17's floating
#: point is strict under either compiler, and verification only checks the jars' bytecode
#: (Spark's own, from the pip package). A JVM that lacks the diagnostic flag ignores it
#: (``IgnoreUnrecognizedVMOptions``). The benchmark suite's real runs use none of these.
FAST_JVM_OPTS = ("-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:+IgnoreUnrecognizedVMOptions "
                 "-XX:+UnlockDiagnosticVMOptions -XX:-BytecodeVerificationRemote")

#: What an executor JVM's command line contains (standalone and local-cluster executors).
EXECUTOR_MAIN = "org.apache.spark.executor.CoarseGrainedExecutorBackend"


def process(pid: int) -> psutil.Process | None:
    """The live process ``pid`` (None when there is none, or only a zombie)."""
    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return None
    return proc if alive(proc) else None


def alive(proc: psutil.Process) -> bool:
    """True while ``proc`` (this very process, not a later one with its PID) runs."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def descendants(roots: Iterable[int]) -> list[psutil.Process]:
    """The live descendants of the processes ``roots`` (roots excluded), by PID.

    A process whose parent died was re-parented (to PID 1) and is no longer found this way.
    """
    found: dict[int, psutil.Process] = {}
    roots = set(roots)
    for root in roots:
        try:
            children = psutil.Process(root).children(recursive=True)
        except psutil.Error:
            continue
        for child in children:
            if child.pid not in roots and alive(child):
                found[child.pid] = child
    return [found[pid] for pid in sorted(found)]


def cmdline(proc: psutil.Process) -> list[str]:
    """``proc``'s arguments (empty when it is gone or unreadable)."""
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def executors(roots: Iterable[int]) -> list[psutil.Process]:
    """The executor JVMs among the descendants of ``roots`` (e.g. a cluster's workers)."""
    return [p for p in descendants(roots) if EXECUTOR_MAIN in cmdline(p)]


#: The suite's worker daemon (tests/warm_daemon.py): the ``spark.python.daemon.module`` of
#: the local session, the Connect servers and the drivers on the standalone cluster.
WARM_DAEMON = "tests.warm_daemon"

#: The Spark conf that makes a session's Python workers fork from :data:`WARM_DAEMON` (its
#: folder must be on their PYTHONPATH: :func:`pythonpath_with`).
WARM_DAEMON_CONF = {"spark.python.daemon.module": WARM_DAEMON}


def pythonpath_with(*folders: str) -> str:
    """A PYTHONPATH of ``folders`` first, then this process's PYTHONPATH ("" if neither)."""
    inherited = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    return os.pathsep.join([*folders, *filter(None, inherited)])


#: Modules a PySpark worker daemon runs as (``spark.python.daemon.module``): PySpark's, and
#: the suite's.
DAEMON_MODULES = ("pyspark.daemon", WARM_DAEMON)


def _pyspark_role(proc: psutil.Process) -> str | None:
    """``"daemon"``, ``"module"`` or None, judged from the command line alone.

    The daemon runs as ``python -m pyspark.daemon pyspark.worker`` (or another of
    :data:`DAEMON_MODULES`) and the workers it forks inherit that command line; without the
    daemon (``spark.python.use.daemon=false``) workers run ``python -m pyspark.worker``.
    """
    argv = cmdline(proc)
    if any(module in argv for module in DAEMON_MODULES):
        return "daemon"
    if "pyspark.worker" in argv:
        return "module"
    return None


def python_worker_pids(
    roots: Iterable[int], kind: Literal["all", "daemon", "worker"] = "all"
) -> list[int]:
    """PIDs of the PySpark Python processes descending from ``roots`` (JVMs).

    ``kind="daemon"`` keeps the ``pyspark.daemon`` managers (children of an executor JVM);
    ``kind="worker"`` the processes that run tasks (forked by a daemon, or stand-alone
    ``pyspark.worker`` processes).
    """
    found = []
    for proc in descendants(roots):
        role = _pyspark_role(proc)
        if role is None:
            continue
        try:
            parent = proc.parent()
        except psutil.Error:
            continue
        is_worker = role == "module" or (parent is not None and _pyspark_role(parent) == "daemon")
        if kind == "all" or (kind == "worker") == is_worker:
            found.append(proc.pid)
    return found


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (0 when it is gone)."""
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


def cpu_seconds(pid: int) -> float:
    """CPU time ``pid`` has used (user + system, seconds; 0 when it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def mapped_files(pid: int) -> list[str]:
    """Paths of the files ``pid`` has mapped into memory (empty when it is gone)."""
    try:
        return [m.path for m in psutil.Process(pid).memory_maps(grouped=True)]
    except psutil.Error:
        return []


def pgid(proc: psutil.Process) -> int | None:
    """``proc``'s process group (None when it is gone)."""
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


def group(pgid_: int) -> list[psutil.Process]:
    """The live processes of process group ``pgid_``."""
    return [p for p in psutil.process_iter() if pgid(p) == pgid_ and alive(p)]


def signal_pid(proc: psutil.Process, sig: int) -> None:
    """Send ``sig`` to ``proc`` by its PID, unless it is gone (or its PID was recycled)."""
    with contextlib.suppress(psutil.Error):
        proc.send_signal(sig)


def kill_by_pid(procs: Iterable[psutil.Process], grace: float) -> None:
    """SIGTERM each of ``procs``, wait up to ``grace`` seconds, then SIGKILL what is left
    (and wait up to 5 s for it to go)."""
    procs = list(procs)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for proc in procs:
            signal_pid(proc, sig)
        deadline = time.monotonic() + wait
        while any(alive(p) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
