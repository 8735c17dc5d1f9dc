"""The Spark session of one command: started on first use (never for ``--help`` or an
argument error), quiet unless ``--verbose``, stopped at the end if the command started it.

Where the session is made is :func:`_start`, the one place that knows how.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["CommandSession"]

APP_NAME = "sparkml-lloyd"

#: log4j2 configuration of a quiet run: Spark's JVM logs off. Failures still reach the
#: command as exceptions, reduced to one line; ``--verbose`` keeps Spark's own logging.
#: (At level ERROR a failed task prints its whole Java stack trace.) The PythonGatewayServer
#: logger is named so that Spark does not announce 'Setting default log level to "WARN"'.
_QUIET_LOG4J2 = """\
rootLogger.level = off
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %p %c{1}: %m%n
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = off
"""
#: Lines the JVM itself prints at start, dropped in a quiet run.
_JVM_NOISE = (b"WARNING: Using incubator modules",)


class CommandSession:
    """The session a command runs on: :meth:`get` starts it (or takes the active one, when
    ``main`` is called from Python), :meth:`stop` stops it if :meth:`get` started it."""

    def __init__(self, master: str, verbose: bool, remote: str | None = None) -> None:
        self.master = master
        self.verbose = verbose
        self.remote = remote
        self._session: SparkSession | None = None
        self._owned = False
        self._log_config: str | None = None

    def get(self) -> SparkSession:
        """The session, started on the first call."""
        if self._session is None:
            from pyspark.sql import SparkSession

            active = SparkSession.getActiveSession()
            if active is not None:  # used as it is, and left running
                self._session = active
            else:
                self._owned = True
                self._session = self._start()
        return self._session

    def _start(self) -> SparkSession:
        from sparkml_lloyd.session import local_session

        if self.remote is not None:  # a Spark Connect client: no JVM here to start or quiet
            from pyspark.sql import SparkSession

            return SparkSession.builder.remote(self.remote).getOrCreate()
        conf: dict[str, str] = {}
        if self.verbose:
            return local_session(self.master, app_name=APP_NAME, conf=conf, log_level="WARN")
        fd, self._log_config = tempfile.mkstemp(prefix="sparkml-lloyd-", suffix=".properties")
        with os.fdopen(fd, "w") as f:
            f.write(_QUIET_LOG4J2)
        conf["spark.driver.extraJavaOptions"] = (
            f"-Dlog4j2.configurationFile={Path(self._log_config).as_uri()}"
        )
        with _drop_jvm_noise():
            return local_session(self.master, app_name=APP_NAME, conf=conf, log_level="OFF")

    def stop(self) -> None:
        """Stop the session if this command started it; remove the quiet log configuration."""
        if self._session is not None and self._owned:
            with contextlib.suppress(Exception):
                self._session.stop()
        self._session = None
        self._owned = False
        if self._log_config:
            with contextlib.suppress(OSError):
                os.remove(self._log_config)
            self._log_config = None


@contextlib.contextmanager
def _drop_jvm_noise() -> Iterator[None]:
    """While the JVM starts, point stderr (fd 2, which it inherits) at a pipe that forwards
    every line except the JDK's own ``WARNING: Using incubator modules`` notice."""
    if os.name != "posix":
        yield
        return
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    real_stderr = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            for line in pipe:
                if not line.startswith(_JVM_NOISE):
                    os.write(real_stderr, line)

    threading.Thread(target=pump, name="sparkml-lloyd-stderr", daemon=True).start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real_stderr, 2)  # this process writes to the terminal again; the JVM keeps the pipe
