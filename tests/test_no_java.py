"""Without Java, both README commands stop with one plain line (no Spark is started); the
tests that need no Spark (the kernel, the executor loop's protocol, the block store) still
run and pass."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The test modules that need neither Java nor Spark.
WITHOUT_SPARK = ["tests/test_kernel.py", "tests/test_loop.py", "tests/test_blockstore.py"]


def no_java_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "PYSPARK_PYTHON")}
    env["PATH"] = str(tmp_path)  # an empty folder: no java on PATH
    return env


def pytest_without_java(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *args], cwd=REPO, env=no_java_env(tmp_path), capture_output=True,
                          text=True, timeout=300)


def test_demo_command_says_java_is_missing(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sparkml_lloyd", "demo", "--out", str(tmp_path)],
                         cwd=REPO, env=no_java_env(tmp_path), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Java was not found" in lines[0] and "Java 17" in lines[0]


def test_the_tests_without_spark_pass_without_java(tmp_path):
    out = pytest_without_java(tmp_path, *WITHOUT_SPARK)
    assert out.returncode == 0, out.stdout + out.stderr
    assert " passed" in out.stdout and "Java was not found" not in out.stdout + out.stderr


def test_test_command_says_java_is_missing(tmp_path):
    """A run that selects a test needing Spark stops before running any test, with the
    one-line message (exit code 3)."""
    out = pytest_without_java(tmp_path, "tests/test_kernel.py", "tests/test_oracles.py")
    assert out.returncode == 3, out.stdout + out.stderr
    said = [line for line in (out.stdout + out.stderr).splitlines()
            if "Java was not found" in line]
    assert len(said) == 1 and "Java 17" in said[0], said
    assert " passed" not in out.stdout
