"""A local SparkSession on loopback, for the demo, the command line, tests and benchmarks.

Nothing here runs at import time; Spark starts only when :func:`local_session` is called.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from pyspark.sql import SparkSession

#: Settings for a quick, quiet session bound to 127.0.0.1.
QUIET_CONF: dict[str, str] = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "2",
}


class JavaNotFoundError(RuntimeError):
    """Spark needs a Java runtime (17 or newer) and none was found."""


def check_java() -> str:
    """Path of the ``java`` Spark will use; a plain error when there is none."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        raise JavaNotFoundError(
            "Java was not found: Spark needs Java 17 or newer. Install it (e.g. "
            "'apt-get install openjdk-17-jre-headless') or set JAVA_HOME, then run again."
        )
    try:
        subprocess.run([java, "-version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise JavaNotFoundError(f"'{java} -version' failed ({e}); Spark needs Java 17+.") from e
    return java


def local_session(
    master: str = "local[*]",
    app_name: str = "sparkml_lloyd",
    conf: dict[str, str] | None = None,
    log_level: str = "ERROR",
) -> SparkSession:
    """Get or create a SparkSession bound to loopback with quiet settings.

    ``master`` may also be a cluster URL (``spark://host:7077``); ``conf`` adds or overrides
    settings.
    """
    check_java()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers must run the interpreter that has this package and numpy/pyarrow.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in {**QUIET_CONF, **(conf or {})}.items():
        builder = builder.config(key, value)
    existing = SparkSession.getActiveSession()
    spark = builder.getOrCreate()
    if existing is None:  # don't change the log level of a session someone else made
        spark.sparkContext.setLogLevel(log_level)
    return spark
