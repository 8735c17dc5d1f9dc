"""Without Java, both README commands stop with one plain line (no Spark is started)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def no_java_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "PYSPARK_PYTHON")}
    env["PATH"] = str(tmp_path)  # an empty folder: no java on PATH
    return env


def test_demo_command_says_java_is_missing(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sparkml_lloyd", "demo", "--out", str(tmp_path)],
                         cwd=REPO, env=no_java_env(tmp_path), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Java was not found" in lines[0] and "Java 17" in lines[0]


def test_test_command_says_java_is_missing(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_kernel.py"], cwd=REPO, env=no_java_env(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 3
    assert "Java was not found" in out.stdout + out.stderr
