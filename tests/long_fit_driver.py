"""A driver running a long fit, to be killed or interrupted by tests/test_orphans.py and
tests/test_interrupts.py: ``python -m tests.long_fit_driver MASTER``. It prints ``jvm <pid>``,
``app <id>``, then ``iteration <i>`` lines (flushed) while the fit runs 320 iterations on
tests/fits.py's staircase. On Ctrl-C (``KeyboardInterrupt``) it prints ``interrupted``, then
fits again and prints ``refit <numIter> <footprint before> <footprint after>``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sparkml_lloyd import LloydKMeans
from tests.fits import STAIRCASE_PARAMS, frame, staircase
from tests.leaks import footprint, footprint_after, jvm_pid
from tests.spark_cluster import build_session

STEPS = 320
ROOT = Path(__file__).resolve().parents[1]


def start(master: str) -> tuple[subprocess.Popen[str], int, str]:
    """The driver child, once its fit has run a few iterations; its JVM's pid, its app id."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.long_fit_driver", master],
                            cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    jvm, app = None, ""
    for line in proc.stdout:
        if line.startswith("jvm "):
            jvm = int(line.split()[1])
        if line.startswith("app "):
            app = line.split()[1]
        if line.startswith("iteration 3"):
            break
    assert jvm is not None and proc.poll() is None, "the driver did not start its fit"
    return proc, jvm, app


def main(master: str) -> int:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers on this interpreter
    spark = build_session(master, "sparkml_lloyd-long-fit")
    print(f"jvm {jvm_pid(spark)}\napp {spark.sparkContext.applicationId}", flush=True)
    df = frame(spark, "staircase", staircase(STEPS, copies=20_000)).cache()
    df.count()
    before = footprint(spark)
    est = LloydKMeans(**STAIRCASE_PARAMS)
    est.setIterationCallback(lambda r, c: print(f"iteration {r.iteration}", flush=True))
    try:
        est.fit(df)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        after = footprint_after(spark, before)
        model = LloydKMeans(**STAIRCASE_PARAMS).fit(df)
        print(f"refit {model.summary.numIter} {before} {after}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
