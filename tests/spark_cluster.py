"""Throw-away Spark standalone cluster for tests, and a driver in a child process.

Two roles:

* **Library** (imported by tests): :class:`StandaloneCluster` starts a real
  Spark standalone master and two single-core workers from the pip-installed
  pyspark, all bound to loopback; :func:`executor_pids` finds its executor
  JVMs (process inspection: :mod:`tests.procs`); :class:`DriverProcess` runs a
  PySpark *driver* in a child Python process (a test process can only host one
  ``SparkContext``, and the repo's test session already owns a local one) and
  exchanges line-delimited JSON "events" with it. The suite's one cluster is
  the ``cluster`` fixture of ``tests/conftest.py``.

* **Child side** (helpers for the driver modules that tests run in a
  :class:`DriverProcess`: ``python -m tests.test_cluster serve``, tests/long_fit_driver.py):
  :func:`claim_stdout_for_events`, :func:`build_session`, :func:`emit`,
  :func:`wait_for_executors` and :func:`failed_tasks`.

Linux only (uses ``prctl``).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import ctypes
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import psutil

from tests.procs import (
    FAST_JVM_OPTS,
    WARM_DAEMON_CONF,
    alive,
    cmdline,
    descendants,
    executors,
    group,
    kill_by_pid,
    pgid,
    process,
    pythonpath_with,
    signal_pid,
)

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

LOOPBACK = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
"""The repository root: driver children run there, with it on ``PYTHONPATH``."""
EVENT_PREFIX = "@@spark-cluster-event@@ "
"""Prefix of the stdout lines a driver child uses to report events."""

_PR_SET_PDEATHSIG = 1

class ClusterStartError(RuntimeError):
    """The standalone cluster did not come up; the message has the log tails."""


class DriverProcessError(RuntimeError):
    """A driver child failed, timed out or reported an ``error`` event."""


# --------------------------------------------------------------------------
# processes of the cluster
# --------------------------------------------------------------------------


def executor_pids(cluster: StandaloneCluster, app_id: str | None = None) -> list[int]:
    """PIDs of the executor JVMs currently running under *cluster*'s workers (with *app_id*,
    only those of that application: the cluster is shared by the tests' drivers, and one
    that has just ended may still have executors going)."""
    found = executors(cluster.worker_pids)
    cluster.note(found)
    if app_id is not None:
        found = [p for p in found if app_id in cmdline(p)]
    return [p.pid for p in found]


# --------------------------------------------------------------------------
# process plumbing
# --------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """Return *count* distinct currently-free TCP ports on 127.0.0.1.

    All sockets are held open until every port is chosen, so the ports are
    distinct; another process may still grab one before it is used (callers
    retry on that).
    """
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


# Resolved up front: the preexec_fn runs between fork and exec, where loading
# a library (dlopen) could deadlock in a multi-threaded parent.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """``preexec_fn``: get SIGTERM when the (forking thread of the) parent dies.

    Survives the ``exec`` of ``bash spark-class`` -> ``java``, so cluster JVMs
    do not outlive a test process that was SIGKILLed (atexit would not run).
    """
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _http_json(url: str, timeout: float = 2.0) -> Any:
    # No proxies: an http_proxy in the environment must not see loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


# --------------------------------------------------------------------------
# the cluster
# --------------------------------------------------------------------------

_LIVE_CLUSTERS: set[StandaloneCluster] = set()


@atexit.register
def _stop_live_clusters() -> None:
    for cluster in list(_LIVE_CLUSTERS):
        cluster.stop()


class StandaloneCluster:
    """A Spark standalone master + N single-core workers on 127.0.0.1.

    Usage::

        with StandaloneCluster() as cluster:
            run_something_against(cluster.master_url)

    ``start()`` blocks until all workers are registered ``ALIVE`` with the
    master. ``stop()`` kills everything the cluster started (daemons,
    executor JVMs, PySpark daemons/workers), then deletes the temp dir; it is
    idempotent and also runs from an ``atexit`` hook.
    """

    def __init__(
        self,
        num_workers: int = 2,
        *,
        worker_cores: int = 1,
        worker_memory: str = "1g",
        start_timeout: float = 90.0,
        term_grace: float = 5.0,
        start_attempts: int = 3,
    ) -> None:
        """Configure (but do not start) the cluster."""
        self.num_workers = num_workers
        self.worker_cores = worker_cores
        self.worker_memory = worker_memory
        self.start_timeout = start_timeout
        self.term_grace = term_grace
        self.start_attempts = start_attempts

        self.tmp_dir: Path | None = None
        self.master_port = 0
        self.master_webui_port = 0
        self.worker_ports: list[int] = []
        self.startup_seconds: float | None = None
        self.stopped_pids: list[int] = []
        """PIDs that ``stop()`` targeted (for leak assertions)."""

        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._log_files: list[IO[bytes]] = []
        self._known: dict[int, psutil.Process] = {}  # every process ever seen by us
        self._lock = threading.RLock()
        self._started = False
        self._stopped = False

    # -- properties ---------------------------------------------------------

    @property
    def master_url(self) -> str:
        """``spark://127.0.0.1:<port>`` of the running master."""
        if not self._started:
            raise RuntimeError("cluster is not started")
        return f"spark://{LOOPBACK}:{self.master_port}"

    @property
    def master_webui_url(self) -> str:
        """URL of the master's web UI (``/json/`` gives its state as JSON)."""
        return f"http://{LOOPBACK}:{self.master_webui_port}"

    @property
    def master_pid(self) -> int:
        """PID of the master JVM (``spark-class`` execs into ``java``)."""
        return self._procs["master"].pid

    @property
    def worker_pids(self) -> list[int]:
        """PIDs of the worker JVMs; executors are their children."""
        return [p.pid for name, p in self._procs.items() if name.startswith("worker")]

    @property
    def daemon_pids(self) -> list[int]:
        """PIDs of master and workers (each also leads its own process group)."""
        return [p.pid for p in self._procs.values()]

    @property
    def known_processes(self) -> list[psutil.Process]:
        """Every process the cluster has started or observed (live or not)."""
        return list(self._known.values())

    @property
    def known_pids(self) -> set[int]:
        """PIDs of :attr:`known_processes`."""
        return set(self._known)

    @property
    def log_dir(self) -> Path:
        """Directory holding ``master.log`` / ``worker-N.log``."""
        assert self.tmp_dir is not None
        return self.tmp_dir / "logs"

    # -- context manager ------------------------------------------------------

    def __enter__(self) -> StandaloneCluster:
        """Start the cluster."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the cluster, whether or not the body raised."""
        self.stop()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> StandaloneCluster:
        """Launch master and workers and wait until every worker is ALIVE.

        Retries with fresh ports if a daemon dies early (e.g. a port was
        taken between choosing it and binding it). Raises
        :class:`ClusterStartError` with log tails on failure; nothing is left
        running in that case.
        """
        if self._started or self._stopped:
            raise RuntimeError("a StandaloneCluster can only be started once")
        errors: list[str] = []
        t0 = time.monotonic()
        for attempt in range(1, self.start_attempts + 1):
            try:
                self._launch()
            except _EarlyExit as exc:
                errors.append(f"attempt {attempt}: {exc}")
                self._abort_start()
                if "Address already in use" in str(exc):
                    continue  # lost a port race: retry with fresh ports
                self._stopped = True
                raise ClusterStartError(str(exc)) from None
            except BaseException:
                self._abort_start()
                self._stopped = True
                raise
            self._started = True
            self.startup_seconds = time.monotonic() - t0
            return self
        self._stopped = True
        raise ClusterStartError("\n\n".join(errors))

    def stop(self) -> None:
        """Kill everything this cluster started and delete its temp dir.

        SIGTERM to every process group and every tracked/descendant PID, wait
        up to ``term_grace`` seconds, then SIGKILL what is left. Safe to call
        repeatedly, after a failed start and from ``atexit``.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            self.stopped_pids = self._kill_all()
        finally:
            self._cleanup_tmp()

    def note(self, procs: Iterable[psutil.Process]) -> None:
        """Remember *procs* as belonging to this cluster (``stop()`` kills them)."""
        for proc in procs:
            self._known.setdefault(proc.pid, proc)

    def leftover_pids(self) -> list[int]:
        """Known processes (started or observed) that are still alive."""
        return sorted(pid for pid, proc in self._known.items() if alive(proc))

    def log_tail(self, lines: int = 40) -> str:
        """Tails of the daemon logs and of any executor stderr files."""
        if self.tmp_dir is None or not self.tmp_dir.exists():
            return "<no logs: cluster temp dir is gone>"
        paths = sorted(self.log_dir.glob("*.log"))
        paths += sorted((self.tmp_dir / "work").glob("*/*/*/stderr"))
        return "\n".join(f"==> {p} <==\n{_tail(p, lines)}" for p in paths)

    # -- internals -------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        from pyspark.find_spark_home import _find_spark_home

        assert self.tmp_dir is not None
        env = dict(os.environ)
        scratch = str(self.tmp_dir / "tmp")
        # Executors inherit the workers' environment: keep every temp file
        # (JVM native-lib copies, block manager dirs, Python temp files)
        # inside the cluster dir, so stop() removes them even after SIGKILLs.
        java_tool_opts = f"{env.get('JAVA_TOOL_OPTIONS', '')} -Djava.io.tmpdir={scratch}"
        env.update(
            TMPDIR=scratch,
            JAVA_TOOL_OPTIONS=java_tool_opts.strip(),
            SPARK_LOCAL_DIRS=str(self.tmp_dir / "local"),
            SPARK_HOME=_find_spark_home(),
            SPARK_LOCAL_IP=LOOPBACK,
            SPARK_LOG_DIR=str(self.tmp_dir / "logs"),
            SPARK_WORKER_DIR=str(self.tmp_dir / "work"),
            SPARK_PID_DIR=str(self.tmp_dir / "pids"),
            # Empty conf dir: ignore any spark-env.sh / spark-defaults.conf.
            SPARK_CONF_DIR=str(self.tmp_dir / "conf"),
            PYSPARK_PYTHON=sys.executable,
            # The executors' Python workers fork from tests/warm_daemon.py (session_conf):
            # the repository root leads the PYTHONPATH they inherit from the workers.
            PYTHONPATH=pythonpath_with(str(ROOT)),
            # Fail (and retry with fresh ports) instead of silently moving to
            # port+1, which would make master_url lie; no REST server, it
            # would grab the fixed port 6066.
            SPARK_DAEMON_JAVA_OPTS=(
                f"-Dspark.port.maxRetries=0 -Dspark.master.rest.enabled=false {FAST_JVM_OPTS}"
            ),
        )
        # Never inherit these from the caller's environment.
        for var in ("SPARK_MASTER_HOST", "SPARK_MASTER_PORT", "SPARK_WORKER_PORT"):
            env.pop(var, None)
        return env

    def _launch(self) -> None:
        """Start the master, wait until it leads, then start the workers.

        Workers started together with the master register before it is
        elected leader, get ignored and only retry 5-15 s later; starting
        them afterwards saves ~10 s.
        """
        from pyspark.find_spark_home import _find_spark_home

        deadline = time.monotonic() + self.start_timeout
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="spark-standalone-"))
        for sub in ("logs", "work", "pids", "conf", "tmp", "local"):
            (self.tmp_dir / sub).mkdir()
        spark_class = str(Path(_find_spark_home()) / "bin" / "spark-class")
        ports = free_ports(2 + 2 * self.num_workers)
        self.master_port, self.master_webui_port = ports[0], ports[1]
        self.worker_ports = ports[2 : 2 + self.num_workers]
        worker_ui_ports = ports[2 + self.num_workers :]
        env = self._env()
        _LIVE_CLUSTERS.add(self)

        self._spawn(
            "master",
            [
                spark_class, "org.apache.spark.deploy.master.Master",
                "--host", LOOPBACK,
                "--port", str(self.master_port),
                "--webui-port", str(self.master_webui_port),
            ],
            env,
        )  # fmt: skip
        self._wait_for(self._master_ready, "master ALIVE", deadline)
        for i, (port, ui_port) in enumerate(zip(self.worker_ports, worker_ui_ports, strict=True)):
            work_dir = self.tmp_dir / "work" / f"worker-{i}"
            work_dir.mkdir()
            self._spawn(
                f"worker-{i}",
                [
                    spark_class, "org.apache.spark.deploy.worker.Worker",
                    f"spark://{LOOPBACK}:{self.master_port}",
                    "--host", LOOPBACK,
                    "--cores", str(self.worker_cores),
                    "--memory", self.worker_memory,
                    "--port", str(port),
                    "--webui-port", str(ui_port),
                    "--work-dir", str(work_dir),
                ],
                env,
            )  # fmt: skip
        self._wait_for(self._workers_ready, "all workers ALIVE", deadline)

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str]) -> None:
        assert self.tmp_dir is not None
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115
        self._log_files.append(log)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=self.tmp_dir,
            start_new_session=True,  # own session + process group (pgid == pid)
            preexec_fn=_die_with_parent,
        )
        self._procs[name] = proc
        started = process(proc.pid)
        if started is not None:
            self.note([started])

    def _master_state(self) -> dict[str, Any] | None:
        """The master's ``/json/`` state, or None while the UI is not up."""
        try:
            state = _http_json(f"{self.master_webui_url}/json/")
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def _master_log(self) -> str:
        return (self.log_dir / "master.log").read_text(errors="replace")

    def _master_ready(self) -> bool:
        state = self._master_state()
        if state is not None:
            return state.get("status") == "ALIVE"
        return "New state: ALIVE" in self._master_log()  # fallback: UI down

    def _workers_ready(self) -> bool:
        state = self._master_state()
        if state is not None:
            alive = {
                w.get("port")
                for w in state.get("workers", [])
                if w.get("state") == "ALIVE" and w.get("host") == LOOPBACK
            }
            return alive >= set(self.worker_ports)
        # Fallback (UI unreachable): the master logged every registration.
        log = self._master_log()
        return all(f"Registering worker {LOOPBACK}:{port} " in log for port in self.worker_ports)

    def _wait_for(self, ready: Callable[[], bool], what: str, deadline: float) -> None:
        """Poll *ready* until true; raise with log tails on exit or timeout."""
        while True:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise _EarlyExit(
                        f"{name} exited with code {proc.returncode} while waiting "
                        f"for {what}\n{self.log_tail()}"
                    )
            if ready():
                return
            if time.monotonic() > deadline:
                raise ClusterStartError(
                    f"timed out after {self.start_timeout:.0f}s waiting for {what} "
                    f"(master UI {self.master_webui_url}/json/)\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def _victims(self) -> dict[int, psutil.Process]:
        """Everything to kill: daemons, their descendants and known strays.

        Strays are processes that lost their parent (re-parented to PID 1)
        but are still recognisable: in one of our process groups, or with a
        working directory inside our temp dir (executors and their PySpark
        daemons run in ``work/worker-N/app-*/N``).
        """
        me = os.getpid()
        pgids = set(self.daemon_pids)
        tmp = str(self.tmp_dir) if self.tmp_dir is not None else None
        victims = {pid: p for pid, p in self._known.items() if alive(p)}
        for proc in psutil.process_iter():
            if proc.pid == me or proc.pid in victims or not alive(proc):
                continue
            if pgid(proc) in pgids:
                victims[proc.pid] = proc
            elif tmp is not None:
                with contextlib.suppress(psutil.Error):
                    cwd = proc.cwd()
                    if cwd == tmp or cwd.startswith(tmp + os.sep):
                        victims[proc.pid] = proc
        for proc in descendants(self.daemon_pids):
            victims.setdefault(proc.pid, proc)
        victims.pop(me, None)
        return victims

    def _kill_all(self) -> list[int]:
        """Terminate (then kill) all cluster processes, each by its PID; return the PIDs."""
        victims = self._victims()
        self.note(victims.values())
        for sig, grace in ((signal.SIGTERM, self.term_grace), (signal.SIGKILL, 5.0)):
            for proc in victims.values():
                signal_pid(proc, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                for child in self._procs.values():
                    child.poll()  # reap our direct children
                if not any(alive(p) for p in victims.values()):
                    break
                time.sleep(0.1)
            # Workers may have spawned something while shutting down.
            fresh = self._victims()
            self.note(fresh.values())
            victims.update(fresh)
        for child in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1.0)
        for log in self._log_files:
            log.close()
        self._log_files.clear()
        _LIVE_CLUSTERS.discard(self)
        return sorted(victims)

    def _cleanup_tmp(self) -> None:
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def _abort_start(self) -> None:
        self._kill_all()
        self._cleanup_tmp()
        self._procs = {}


class _EarlyExit(RuntimeError):
    """A daemon exited during start-up (retryable if it was a port clash)."""


# --------------------------------------------------------------------------
# driver child process (parent side)
# --------------------------------------------------------------------------


def driver_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a driver child: loopback only, this interpreter.

    ``PYSPARK_PYTHON`` matters: the *driver's* value decides which Python the
    executors launch (default ``python3`` from PATH, not this venv).
    ``PYSPARK_SUBMIT_ARGS`` is dropped: a ``--master local[...]`` in it would
    fight the cluster's master URL. The repository root leads ``PYTHONPATH``, so
    ``python -m tests.<module>`` works.
    """
    env = dict(os.environ)
    env.pop("PYSPARK_SUBMIT_ARGS", None)
    env.update(
        PYTHONPATH=pythonpath_with(str(ROOT)),
        SPARK_LOCAL_IP=LOOPBACK,
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        PYTHONUNBUFFERED="1",
    )
    if extra:
        env.update(extra)
    return env


class DriverProcess:
    """A Python child process acting as a Spark driver, streaming events.

    The child reports progress with :func:`emit` (stdout lines starting with
    :data:`EVENT_PREFIX`) and reads the lines the parent writes with :meth:`send`. The
    child gets its own process group; :meth:`close` kills the child, its py4j driver JVM
    and anything else in that group, each by its PID. It runs in :data:`ROOT` unless *cwd*
    says otherwise. The child's temp files (``TMPDIR``, ``java.io.tmpdir``) live in
    :attr:`scratch_dir`, removed by :meth:`close`; its stderr (Spark logs) goes to
    ``stderr.log`` there, and the tail is included in every :class:`DriverProcessError`.

    Example::

        with DriverProcess(["-m", "tests.test_cluster", "serve", cluster.master_url]) as drv:
            event = drv.wait_event("ready", timeout=120)
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        """Start ``sys.executable *argv`` (*env* defaults to :func:`driver_env`)."""
        self.scratch_dir = Path(tempfile.mkdtemp(prefix="spark-driver-"))
        self._stderr = open(self.scratch_dir / "stderr.log", "w+b")  # noqa: SIM115
        child_env = dict(env) if env is not None else driver_env()
        java_tool_opts = child_env.get("JAVA_TOOL_OPTIONS", "")
        child_env.update(
            TMPDIR=str(self.scratch_dir),
            JAVA_TOOL_OPTIONS=f"{java_tool_opts} -Djava.io.tmpdir={self.scratch_dir}".strip(),
        )
        self._closed = False
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stdout_lines: collections.deque[str] = collections.deque(maxlen=200)
        """Last non-event stdout lines of the child (diagnostics)."""
        self.received: dict[str, dict[str, Any]] = {}
        """The last payload :meth:`wait_event` returned for each event name."""
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=child_env,
            cwd=ROOT if cwd is None else cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith(EVENT_PREFIX):
                self._events.put(json.loads(line[len(EVENT_PREFIX) :]))
            else:
                self.stdout_lines.append(line)
        self._events.put(None)  # EOF

    def stderr_tail(self, lines: int = 60) -> str:
        """Last *lines* of the child's stderr."""
        if self._stderr.closed:
            return "<closed>"
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _fail(self, msg: str) -> DriverProcessError:
        return DriverProcessError(
            f"{msg}\n--- driver stdout ---\n"
            + "\n".join(self.stdout_lines)
            + f"\n--- driver stderr ---\n{self.stderr_tail()}"
        )

    def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        """Block until the child emits event *name*; return its payload.

        Raises :class:`DriverProcessError` on timeout, on child exit, or if
        the child emits an ``error`` event first.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._fail(f"timed out after {timeout}s waiting for {name!r}")
            try:
                event = self._events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event is None:
                self._events.put(None)  # keep EOF visible to later calls
                code = self.proc.wait()
                raise self._fail(f"driver exited ({code}) before event {name!r}")
            if event.get("event") == "error":
                raise self._fail(f"driver error:\n{event.get('traceback')}")
            if event.get("event") == name:
                self.received[name] = event
                return event

    def send(self, line: str) -> None:
        """Write one line to the child's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float) -> int:
        """Wait for the child to exit; return its exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self._fail(f"driver still running after {timeout}s") from None

    def close(self, grace: float = 5.0) -> None:
        """Kill the child and its process group (SIGTERM, then SIGKILL), each by PID;
        idempotent."""
        if self._closed:
            return
        self._closed = True
        # The py4j JVM may outlive its parent briefly: take the child's descendants and
        # whatever else is left in its process group.
        members = {p.pid: p for p in [*group(self.proc.pid), *descendants([self.proc.pid])]}
        child = process(self.proc.pid)
        if child is not None:
            members[child.pid] = child
        kill_by_pid(members.values(), grace)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._reader.join(timeout=5)
        self._stderr.close()
        shutil.rmtree(self.scratch_dir, ignore_errors=True)

    def __enter__(self) -> DriverProcess:
        """Return self."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Kill the child if still running."""
        self.close()


# --------------------------------------------------------------------------
# driver child process (child side)
# --------------------------------------------------------------------------


def session_conf(master_url: str, executors: int = 2) -> dict[str, str]:
    """Spark conf for a driver talking to a :class:`StandaloneCluster`.

    *executors* 1-core, 512 MiB executors (at most one per 1-core worker),
    everything on loopback, no UI, :data:`FAST_JVM_OPTS` for the driver
    and executor JVMs, and Python workers forked from :data:`WARM_DAEMON`.
    """
    return {
        "spark.master": master_url,
        "spark.driver.host": LOOPBACK,
        "spark.driver.bindAddress": LOOPBACK,
        "spark.ui.enabled": "false",
        "spark.executor.cores": "1",
        "spark.executor.memory": "512m",
        "spark.cores.max": str(executors),
        "spark.driver.extraJavaOptions": FAST_JVM_OPTS,
        "spark.executor.extraJavaOptions": FAST_JVM_OPTS,
        **WARM_DAEMON_CONF,
    }


def build_session(
    master_url: str,
    app_name: str = "spark-cluster-test",
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """Create the driver child's SparkSession: :func:`session_conf` + *conf*."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master_url).appName(app_name)
    for key, value in (session_conf(master_url) | dict(conf or {})).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


_event_channel: IO[str] | None = None


def claim_stdout_for_events() -> None:
    """Reserve the child's stdout for :func:`emit`; point fd 1 at stderr.

    Call first thing in a driver script (before the JVM starts, as it
    inherits fd 1), so that prints and JVM output cannot interleave with
    event lines.
    """
    global _event_channel
    if _event_channel is None:
        sys.stdout.flush()
        _event_channel = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)


def emit(event: str, **data: Any) -> None:
    """Report an event to the parent :class:`DriverProcess` (one stdout line)."""
    out = _event_channel if _event_channel is not None else sys.stdout
    out.write(EVENT_PREFIX + json.dumps({"event": event, **data}) + "\n")
    out.flush()


def wait_for_executors(sc: SparkContext, count: int, timeout: float = 90.0) -> None:
    """Block until *count* executors have registered with the driver."""
    deadline = time.monotonic() + timeout
    while True:
        # getExecutorMemoryStatus includes the driver's block manager.
        n = sc._jsc.sc().getExecutorMemoryStatus().size() - 1  # type: ignore[union-attr]
        if n >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {n}/{count} executors after {timeout}s")
        time.sleep(0.2)


def failed_tasks(sc: SparkContext, job_group: str) -> int:
    """Failed task attempts (e.g. lost with their executor) in *job_group*."""
    tracker = sc.statusTracker()
    failed = 0
    for job_id in tracker.getJobIdsForGroup(job_group):
        job = tracker.getJobInfo(job_id)
        for stage_id in job.stageIds if job is not None else ():
            stage = tracker.getStageInfo(stage_id)
            failed += stage.numFailedTasks if stage is not None else 0
    return failed
