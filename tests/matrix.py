"""The version matrix: the package on every supported pyspark line, each in its own venv.

    python -m tests.matrix                    # every line: tests + cross-version persistence
    python -m tests.matrix --lines 3.5 4.0    # those lines' tests (the newest still takes part
                                              # in the persistence exchange)

Each line gets a venv under ``.matrix/<line>/`` (gitignored) with this checkout installed
editable with its ``dev`` extra and the line's pins (:data:`LINES`); a venv is reused while its
pins and ``pyproject.toml`` are unchanged, so a rerun only runs tests. On each line the
:data:`MATRIX_TESTS` run (oracles, persistence, both transform paths and the row rule, the
error contract, the estimator's params, fitMultiple and choosing k, the command line, the
demo); the full suite stays on
the newest line (``.ci/run``). Then every line saves models (:mod:`tests.cross_version`) and
every other line loads them and checks them against the saved centers.

Exit status 0 when every step passed; a table of the results at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / ".matrix"

#: pip requirements of each line, besides ``-e .[dev]``. "newest" is what the README's dev
#: install resolves to. The 3.5 venv keeps the numpy, pandas and pyarrow of 3.5's time
#: (1.26, 2.2, 17: what clusters on 3.5 run; pyspark 3.5 does not support pandas 3); numpy 2
#: or a newer pyarrow with pyspark 3.5 is not what this matrix tests.
LINES: dict[str, list[str]] = {
    # the oldest release the package declares (pyproject.toml: pyspark>=3.5.2)
    "3.5.2": ["pyspark==3.5.2", "numpy<2", "pandas<2.3", "pyarrow<18"],
    "3.5": ["pyspark==3.5.9", "numpy<2", "pandas<2.3", "pyarrow<18"],
    "4.0": ["pyspark==4.0.5"],
    "newest": [],
}

#: The tests run on every line.
MATRIX_TESTS = [
    "tests/test_compat.py",
    "tests/test_oracles.py",
    "tests/test_persistence.py",
    "tests/test_transform.py",
    "tests/test_invalid_rows.py",
    "tests/test_errors.py",
    "tests/test_estimator.py",
    "tests/test_fit_multiple.py",
    "tests/test_choosing_k.py",
    "tests/test_cli.py",
    "tests/test_demo.py",
]

#: Tests of :data:`MATRIX_TESTS` not run on a line, and why.
DESELECT: dict[str, dict[str, str]] = {
    "3.5": {
        # docs/reliability.md's error table is the newest line's messages; on 3.5 an action
        # that the row rule fails raises a Py4JJavaError with the message in its text
        # (test_error checks those cases on 3.5 too), not pyspark 4's SparkRuntimeException.
        "tests/test_errors.py::test_reliability_doc_lists_every_error": "the doc is 4.x's",
    },
}
DESELECT["3.5.2"] = DESELECT["3.5"]


def venv_python(line: str) -> Path:
    return HOME / line / "bin" / "python"


def ensure_venv(line: str) -> Path:
    """The line's venv, built or rebuilt when its pins or pyproject.toml changed."""
    pins = LINES[line]
    stamp = hashlib.sha256(json.dumps(
        [pins, (ROOT / "pyproject.toml").read_text()]).encode()).hexdigest()
    folder = HOME / line
    stamp_file = folder / ".matrix-stamp"
    python = venv_python(line)
    if python.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return python
    print(f"[{line}] building {folder} ({' '.join(pins) or 'the dev install'})", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[dev]",
                          *pins], cwd=ROOT, capture_output=True, text=True)
    if pip.returncode:
        sys.exit(f"[{line}] pip install failed:\n{pip.stdout}{pip.stderr}")
    stamp_file.write_text(stamp)
    return python


def pyspark_version(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import pyspark; print(pyspark.__version__)"],
                          check=True, capture_output=True, text=True).stdout.strip()


def run_tests(line: str, python: Path, extra: list[str]) -> dict[str, int]:
    """The matrix tests on one line; counts by outcome (from pytest's JUnit XML)."""
    report = HOME / line / "junit.xml"
    print(f"[{line}] pytest {' '.join(MATRIX_TESTS)}", flush=True)
    deselect = [f"--deselect={test}" for test in DESELECT.get(line, {})]
    subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={report}", *deselect, *extra, *MATRIX_TESTS],
                   cwd=ROOT, check=False)
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total = int(suite.get("tests", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skipped = int(suite.get("skipped", 0))
    return {"passed": total - failed - skipped, "failed": failed, "skipped": skipped,
            "deselected": len(deselect)}


def cross_version(pythons: dict[str, Path], scratch: Path) -> dict[tuple[str, str], bool]:
    """Every line saves (:mod:`tests.cross_version`); every other line loads and checks."""
    results = {}
    for line, python in pythons.items():
        saved = scratch / line
        ok = subprocess.run([str(python), "-m", "tests.cross_version", "save", str(saved)],
                            cwd=ROOT, check=False).returncode == 0
        for other, other_python in pythons.items():
            if other == line:
                continue
            results[(line, other)] = ok and subprocess.run(
                [str(other_python), "-m", "tests.cross_version", "load", str(saved)],
                cwd=ROOT, check=False).returncode == 0
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.matrix", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", nargs="+", choices=list(LINES), default=list(LINES),
                        help="the lines whose tests run (default: all)")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    pythons = {line: ensure_venv(line) for line in LINES}
    versions = {line: pyspark_version(python) for line, python in pythons.items()}
    counts = {line: run_tests(line, pythons[line], args.pytest_args) for line in args.lines}
    with tempfile.TemporaryDirectory(prefix="sparkml_lloyd-matrix-") as scratch:
        exchange = cross_version(pythons, Path(scratch))
    print(f"\nversion matrix ({time.monotonic() - start:.0f} s)")
    for line in LINES:
        tests = counts.get(line)
        summary = (", ".join(f"{v} {k}" for k, v in tests.items()) if tests
                   else "tests not run here")
        print(f"  pyspark {versions[line]:<8} ({line}): {summary}")
    for (saver, loader), ok in exchange.items():
        print(f"  saved on {versions[saver]}, loaded on {versions[loader]}: "
              f"{'ok' if ok else 'FAILED'}")
    failed = any(c["failed"] for c in counts.values()) or not all(exchange.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
