"""The benchmark suite's smoke grid on Spark Connect (``--backend connect``), in a run of its
own (so that it and tests/test_benchmarks_smoke.py's run go to different test processes).
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import bench_smoke


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return (*bench_smoke(out, "--backend", "connect"), out)


@pytest.mark.slow
def test_smoke_connect_cell(smoke_run):
    """On a Spark Connect server started for the run, with the classic run's driver memory,
    a client process fitted ours and Spark's ml KMeans on the same cached data (every fit ran
    its m1 and m2 iterations), transformed with the same centers (same predictions; ours
    through its Arrow UDF; an Arrow UDF returning zeros timed beside them), probed what
    ours holds in the server's Python workers, and timed each step of our Connect fit; the
    page has the *Spark Connect* section with its targets, not judged on smoke data."""
    from benchmarks.connect import result_bytes

    proc, results, out = smoke_run
    record = json.loads(results[0].read_text())
    cell = record["cells"][0]
    assert cell["backend"] == "connect" and cell["status"] == "ok", (
        cell.get("traceback") or proc.stderr[-4000:])
    assert record["connect_environment"]["spark_conf"]["spark.driver.memory"] == (
        record["environment"]["spark_conf"]["spark.driver.memory"])
    assert set(cell["competitors"]) == {"ours", "ml_row"}
    for res in cell["competitors"].values():
        assert res["num_iter"] == {str(res["m1"]): res["m1"], str(res["m2"]): res["m2"]}
    assert cell["transform"]["predictions_agree"] and cell["transform"]["ours_path"] == "arrow"
    # the floor of the Arrow route was timed beside them: it predicted 0 for every row
    floor = cell["transform"]["floor"]
    assert floor["prediction_sum"] == 0 and len(floor["raw"]) == len(
        cell["transform"]["ours"]["raw"])
    assert cell["default_fit"]["cost_ratio"] == pytest.approx(1.0, abs=0.05)
    costs = cell["costs"]
    assert costs["task_slots"] == 2 and costs["calls"] == 2
    assert min(costs["slots"], costs["query"], costs["barrier_job"]) > 0
    assert costs["gathers"] == 1 and costs["rendezvous"] > 0  # an allGather costs something
    assert costs["result_bytes"] == result_bytes(cell["k"], cell["d"],
                                                 cell["competitors"]["ours"]["m2"])
    probe = cell["memory"]["cache_by_competitor"]["ours"]
    assert probe["polls"] >= 1 and probe["workers_baseline_bytes"] > 0
    verdicts = {t["id"]: t["status"] for t in record["targets"]}
    assert verdicts["connect_default_fit"] == verdicts["connect_transform"] == (
        "not judged (smoke run)")
    page = (out / "docs" / "benchmarks.md").read_text()
    connect = page[page.index("## Spark Connect"):page.index("## Environment")]
    for heading in ("### Connect targets", "### What each choice cost",
                    "### Cached data on Connect", "### Transform"):
        assert heading in connect
    assert "| Arrow UDF returning 0 / built-in |" in connect
    assert "Targets on Spark Connect: see [Spark Connect](#spark-connect)." in page
