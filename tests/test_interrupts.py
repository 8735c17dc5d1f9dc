"""A fit stopped from outside: ``SparkContext.cancelAllJobs()`` or
``SparkSession.interruptAll()`` from another thread, Ctrl-C in the driver. Each stops the fit
within 10 s with the exception that says so, releases everything the fit held, and leaves
the session usable: the next fit gives the hand-computed result (tests/fits.py's staircase).
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

from sparkml_lloyd import LloydKMeans
from tests import long_fit_driver as long_fit
from tests.fits import STAIRCASE_PARAMS, frame, staircase
from tests.leaks import footprint, footprint_after

STEPS = 300


@pytest.mark.parametrize("how", ["cancelAllJobs", "interruptAll"])
def test_a_fit_cancelled_from_another_thread_stops(spark, how):
    df = frame(spark, "staircase", points=staircase(STEPS))
    before = footprint(spark)
    est = LloydKMeans(**STAIRCASE_PARAMS)
    going = threading.Event()
    est.setIterationCallback(lambda r, c: going.set() if r.iteration >= 5 else None)
    outcome: dict[str, object] = {}

    def fit() -> None:
        try:
            outcome["model"] = est.fit(df)
        except Exception as e:  # what the user's thread would see
            outcome["error"], outcome["at"] = e, time.monotonic()

    thread = threading.Thread(target=fit)
    thread.start()
    assert going.wait(120), "the fit did not start iterating"
    called = time.monotonic()
    if how == "cancelAllJobs":
        spark.sparkContext.cancelAllJobs()
    else:
        spark.interruptAll()
    thread.join(60)
    assert not thread.is_alive() and "model" not in outcome, "the fit went on"
    print(f"{how}: the fit raised {outcome['at'] - called:.1f} s after the call")
    assert outcome["at"] - called < 10.0
    assert "cancelled" in str(outcome["error"]).lower(), outcome["error"]
    assert footprint_after(spark, before) == before
    model = LloydKMeans(**STAIRCASE_PARAMS).fit(df)
    assert model.summary.numIter == STEPS


def test_ctrl_c_stops_a_fit_and_the_session_goes_on():
    """SIGINT to a driver at iteration 3: KeyboardInterrupt within 10 s, the fit's footprint
    gone, and a fit on the same session then runs to the staircase's 320 iterations."""
    proc, _, _ = long_fit.start("local[2]")
    try:
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("interrupted"):
                print(f"KeyboardInterrupt {time.monotonic() - sent:.1f} s after SIGINT")
                assert time.monotonic() - sent < 10.0
            if line.startswith("refit"):
                break
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert "interrupted" in lines, lines
    refit = next(line for line in lines if line.startswith("refit")).split(" ", 2)
    assert refit[1] == str(long_fit.STEPS)
    before, after = refit[2].split(") ")
    assert before + ")" == after, "the interrupted fit left something behind"
