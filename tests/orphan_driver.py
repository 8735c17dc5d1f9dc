"""A driver that starts a long fit and waits to be killed, for tests/test_orphans.py:
``python -m tests.orphan_driver MASTER``. It prints ``jvm <pid>``, ``app <id>`` and then
``iteration <i>``
lines (flushed) while the fit runs 320 iterations on tests/fits.py's staircase."""

from __future__ import annotations

import sys

from sparkml_lloyd import LloydKMeans
from tests.fits import STAIRCASE_PARAMS, frame, staircase
from tests.leaks import jvm_pid
from tests.spark_cluster import build_session


def main(master: str) -> int:
    spark = build_session(master, "sparkml_lloyd-orphans")
    print(f"jvm {jvm_pid(spark)}\napp {spark.sparkContext.applicationId}", flush=True)
    df = frame(spark, "staircase", staircase(320, copies=20_000))
    est = LloydKMeans(**STAIRCASE_PARAMS)
    est.setIterationCallback(lambda r, c: print(f"iteration {r.iteration}", flush=True))
    est.fit(df)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
