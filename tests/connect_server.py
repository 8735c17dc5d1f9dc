"""A Spark Connect server from the pip package, for the tests and the benchmark suite's Connect
section (``benchmarks/connect.py``): its own process, on 127.0.0.1 and a free port, its Python
workers on this interpreter, stopped by PID.

``<pyspark package>/sbin/spark-daemon.sh submit <the server class>`` (what
``start-connect-server.sh`` runs) starts the server as a daemon and writes
its PID to a file in ``SPARK_PID_DIR`` (a folder of our own); :meth:`ConnectServer.stop`
kills that PID and waits for it. Abandoned executions are interrupted quickly (a client
killed mid-fit leaves nothing running for long): a live client reattaches to its execution
every ``senderMaxStreamDuration`` (10 s); one that does not is ``detached`` and its
execution interrupted ``detachedTimeout`` (5 s, checked every 1 s) later.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.procs import pythonpath_with

#: Server settings of every test server (plus those :class:`ConnectServer` is given).
BASE_CONF = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.connect.grpc.binding.address": "127.0.0.1",
    "spark.connect.execute.reattachable.senderMaxStreamDuration": "10s",
    "spark.connect.execute.manager.detachedTimeout": "5s",
    "spark.connect.execute.manager.maintenanceInterval": "1s",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "2",  # as the classic sessions (sparkml_lloyd.session)
}


SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ConnectServer:
    """One Spark Connect server (``master``: ``local[2]`` or a standalone cluster's URL;
    ``pythonpath``: folders put first on the server's PYTHONPATH, which Spark passes on to
    the Python workers it starts)."""

    def __init__(self, master: str = "local[2]", conf: dict[str, str] | None = None,
                 pythonpath: list[str] | None = None) -> None:
        import pyspark

        self.master = master
        self.pythonpath = pythonpath_with(*(pythonpath or []))
        self.port = free_port()
        self.ui_port = free_port()
        self.home = Path(pyspark.__file__).resolve().parent
        self.conf = {**BASE_CONF, "spark.connect.grpc.binding.port": str(self.port),
                     "spark.ui.port": str(self.ui_port), **(conf or {})}
        self.dir = Path(tempfile.mkdtemp(prefix="sparkml_lloyd-connect-"))
        self.pid: int | None = None

    def running_barrier_job(self, app: str, timeout: float = 120.0) -> int:
        """The id of a running job of ``app`` once two of its tasks have run for a second (a
        fit's barrier job: the other queries of a fit take less)."""
        deadline = time.monotonic() + timeout
        seen: dict[int, float] = {}
        while time.monotonic() < deadline:
            for job in self.rest(f"applications/{app}/jobs?status=running"):
                if job["numActiveTasks"] >= 2:
                    since = seen.setdefault(job["jobId"], time.monotonic())
                    if time.monotonic() - since >= 1.0:
                        return int(job["jobId"])
            time.sleep(0.2)
        raise TimeoutError("the fit's barrier job did not start")

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        path = {"PYTHONPATH": self.pythonpath} if self.pythonpath else {}
        return {**os.environ, **path, "SPARK_HOME": str(self.home),
                "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1",
                "SPARK_LOG_DIR": str(self.dir),
                "SPARK_PID_DIR": str(self.dir), "SPARK_IDENT_STRING": f"test{self.port}",
                "SPARK_CONNECT_MODE": "0"}

    def start(self, timeout: float = 120.0) -> ConnectServer:
        # What sbin/start-connect-server.sh runs; pyspark 4.0's pip package ships the
        # server's jar and spark-daemon.sh but not that script.
        args = [str(self.home / "sbin" / "spark-daemon.sh"), "submit", SERVER_CLASS, "1",
                "--name", "Spark Connect server", "--master", self.master]
        for key, value in self.conf.items():
            args += ["--conf", f"{key}={value}"]
        subprocess.run(args, env=self.env(), check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid_files = list(self.dir.glob("*.pid"))
            if pid_files and self.pid is None:
                self.pid = int(pid_files[0].read_text().strip())
            if self.pid is not None and self._listening():
                return self
            time.sleep(0.5)
        log = "\n".join(p.read_text()[-3000:] for p in self.dir.glob("*.out"))
        self.stop()
        raise RuntimeError(f"the Spark Connect server did not start:\n{log}")

    def _listening(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def rest(self, path: str) -> Any:
        """The server's Spark UI REST API (``/api/v1/...``), parsed."""
        return rest(self.ui_port, path)

    def app_id(self) -> str:
        return str(self.rest("applications")[0]["id"])

    def stop(self) -> None:
        """Kill the server by its PID and wait for it (idempotent)."""
        if self.pid is not None:
            for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline and _alive(self.pid):
                    time.sleep(0.2)
                if not _alive(self.pid):
                    break
            self.pid = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> ConnectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rest(ui_port: int, path: str) -> Any:
    """The Spark UI REST API (``/api/v1/...``) on 127.0.0.1 and ``ui_port``, parsed."""
    import json

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{ui_port}/api/v1/{path}", timeout=10) as r:
        return json.loads(r.read())


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (gone, for our purposes)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
