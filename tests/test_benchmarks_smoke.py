"""The benchmark suite's smoke grid runs end to end (in a subprocess, with its own Spark).

Checks the harness, not the performance: every competitor is in the result, the centers of
ours, MLlib, scikit-learn and the per-row walkthrough agree, and the page and plot are written
into a scratch directory (the real docs/benchmarks.md is left alone). The smoke grid has one
dense cell and one sparse cell (text-like documents): there the centers of ours, MLlib and
scikit-learn agree too, our CSR blocks take the data's non-zero storage, and the page has its
*Sparse features* section. The same run (``--backend both``) then measures the Connect cell
on a Spark Connect server it starts: one runner process and one page for both.

The runner is started as ``sparkml-lloyd bench`` starts it: ``python -m benchmarks.run`` in the
checkout root, with no PYTHONPATH (Spark's Python workers get the package's functions by
value).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import bench_smoke

ROOT = Path(__file__).resolve().parent.parent
COMPETITORS = {"ours", "mllib", "ml_row", "ml_block", "sklearn", "per_row"}
SPARSE_COMPETITORS = COMPETITORS - {"per_row"}
RUNNER = [sys.executable, "-m", "benchmarks.run"]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return (*bench_smoke(out, "--backend", "both"), out)


@pytest.mark.slow
def test_smoke_grid_runs_and_writes_a_record(smoke_run):
    proc, results, _ = smoke_run
    assert len(results) == 1, proc.stderr[-4000:]
    record = json.loads(results[0].read_text())
    assert proc.returncode == 0, record["cells"][0].get("traceback") or proc.stderr[-4000:]
    assert record["complete"] and record["smoke"]
    assert record["environment"]["git"]["commit"]
    assert record["environment"]["versions"]["pyspark"]
    cell, sparse, _connect = record["cells"]
    assert "nnz" not in cell and sparse["nnz"] == 20
    assert cell["backend"] == sparse["backend"] == "classic"
    assert cell["status"] == "ok", cell.get("traceback")
    assert set(cell["competitors"]) == COMPETITORS
    for res in cell["competitors"].values():
        assert len(res["t_m1"]) == len(res["t_m2"]) == record["settings"]["repeats"]
    assert cell["default_fit"]["ours"]["seconds"] > 0
    assert cell["transform"]["predictions_agree"]
    # the A/A control: a second copy of Spark's model, timed in the same interleaving
    again = cell["transform"]["builtin_again"]
    assert len(again["raw"]) == len(cell["transform"]["builtin"]["raw"]) and again["seconds"] > 0
    assert cell["transform"]["aa_ratio"] == again["seconds"] / cell["transform"]["builtin"][
        "seconds"]
    assert (cell["transform"]["ours_path"], cell["transform"]["ours_handle_invalid"]) == (
        "spark-scorer", "error")
    assert cell["leftover_cached_rdds"] == []
    # ours reported every iteration (its callback): the time split has all three parts
    ours = cell["competitors"]["ours"]
    assert [msg for _, msg in ours["trace_m2"][0]] == [
        *(f"iteration {i}" for i in range(1, ours["m2"] + 1)), "returned"]
    assert all(v is not None and v >= 0 for v in ours["time_split"].values())
    # the probed fit saw our blocks: one copy of the data in host files
    assert cell["memory"]["ours_cache_host_file_bytes"] >= cell["raw_bytes"]
    assert {t["id"] for t in record["targets"]} >= {"centers_agree", "transform"}


@pytest.mark.slow
def test_smoke_centers_agree(smoke_run):
    _, results, _ = smoke_run
    check = json.loads(results[0].read_text())["cells"][0]["centers_check"]
    assert check["passed"] is True
    assert check["max_rel_diff"] <= 1e-9
    assert set(check["ours_vs"]) == {"mllib", "sklearn", "per_row"}
    assert not any(it["converged_before_m2"] for it in check["iterations"].values())


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
    cell = record["cells"][-1]
    assert cell["backend"] == "connect" and cell["status"] == "ok", (
        cell.get("traceback") or proc.stderr[-4000:])
    assert record["connect_environment"]["spark_conf"]["spark.driver.memory"] == (
        record["environment"]["spark_conf"]["spark.driver.memory"])
    assert set(cell["competitors"]) == {"ours", "ml_row"}
    for res in cell["competitors"].values():
        assert res["num_iter"] == {str(res["m1"]): res["m1"], str(res["m2"]): res["m2"]}
    assert cell["transform"]["predictions_agree"] and (
        cell["transform"]["ours_path"] == "spark-scorer")
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
    # both Transform tables show the A/A control (classic above the Connect section)
    assert "| built-in again / built-in (A/A) |" in connect
    assert "| built-in again / built-in (A/A) |" in page[:page.index("## Spark Connect")]
    assert "Targets on Spark Connect: see [Spark Connect](#spark-connect)." in page


@pytest.mark.slow
def test_smoke_sparse_cell(smoke_run):
    """Sparse documents: every competitor but the (dense 2-D) walkthrough ran on the same
    cached SparseVectors; ours, MLlib and scikit-learn (on the collected CSR matrix) reached
    the same centers; our block files held the data's non-zero storage once."""
    _, results, _ = smoke_run
    record = json.loads(results[0].read_text())
    sparse = record["cells"][1]
    assert sparse["status"] == "ok", sparse.get("traceback")
    assert set(sparse["competitors"]) == SPARSE_COMPETITORS
    assert set(sparse["skipped_competitors"]) == {"per_row"}
    assert 18 <= sparse["data"]["nnz_per_row"] <= 22
    check = sparse["centers_check"]
    assert check["passed"] is True and check["max_rel_diff"] <= 1e-9
    assert set(check["ours_vs"]) == {"mllib", "sklearn"}
    assert not any(it["converged_before_m2"] for it in check["iterations"].values())
    memory = sparse["memory"]
    assert memory["nonzero_bytes"] == sparse["data"]["nonzero_bytes"]
    assert 1.0 <= memory["block_ratio"] <= 1.3, memory
    assert sparse["transform"]["predictions_agree"]
    assert sparse["default_fit"]["ours"]["seconds"] > 0
    verdicts = {t["id"]: t["status"] for t in record["targets"]}
    assert verdicts["sparse_centers_agree"] == "PASS"
    assert "sparse_block_memory" in verdicts and "sparse_transform" in verdicts


@pytest.mark.slow
def test_smoke_writes_page_and_plot(smoke_run):
    _, results, out = smoke_run
    page = (out / "docs" / "benchmarks.md").read_text()
    assert "Smoke run" in page and "## Targets" in page and results[0].name in page
    assert "python -m benchmarks.run --grid smoke" in page  # the command, under Environment
    sparse = page[page.index("## Sparse features"):page.index("## Environment")]
    assert "(1e4, 2^14, 4, ~20 nnz)" in sparse and "### Sparse targets" in sparse
    assert "our block files / non-zero storage" in sparse and "JVM BLAS" in sparse
    assert "### Per-iteration time" in sparse and "### Transform" in sparse
    for png in ("benchmarks.png", "benchmarks_sparse.png"):
        assert (out / "docs" / "images" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_report_only_regenerates_the_page(smoke_run, tmp_path):
    _, results, out = smoke_run
    proc = subprocess.run(
        [*RUNNER, "--report-only", str(results[0]), "--docs-dir", str(tmp_path)],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "benchmarks.md").read_text() == (out / "docs" / "benchmarks.md").read_text()
    assert (tmp_path / "images" / "benchmarks.png").exists()


@pytest.mark.slow
def test_report_only_merges_runs_of_different_cells(smoke_run, tmp_path, capsys):
    """The full grid may be run in pieces: two results of different cells make one page
    listing both runs and every cell; a cell measured again is shown from the newer run and
    the older named; one run given twice, or runs whose settings differ, are refused with a
    message naming the cause. (The runner's ``main`` in this process: --report-only starts no
    Spark.)"""
    from benchmarks.run import main

    _, results, _ = smoke_run
    record = json.loads(results[0].read_text())
    other = json.loads(json.dumps(record))
    other["cells"] = other["cells"][:1]  # the dense cell, as another cell
    other["cells"][0].update(cell="3e4,2,3", n=30_000)
    other["settings"]["repeats"] = 2
    other["environment"]["machine"]["memory_bytes"] += 300_000  # MemTotal after a reboot
    second = tmp_path / "second.json"
    second.write_text(json.dumps(other))

    def report(*paths: Path) -> tuple[int, str]:
        status = main(["--report-only", *map(str, paths), "--docs-dir", str(tmp_path / "docs")])
        return status, capsys.readouterr().err

    status, err = report(results[0], second)
    assert status == 0, err[-4000:]
    page = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "merged from 2 runs" in page and results[0].name in page and "second.json" in page
    assert "(2e4, 2, 3)" in page and "(3e4, 2, 3)" in page
    assert "2 or 1 round(s)" in page  # the smoke page states rounds under Environment
    assert "code between the runs' commits: identical" in page

    status, err = report(results[0], results[0])
    assert status == 2 and "are the same run" in err
    # a cell measured again: the newer run's figures are shown, the older is named
    from benchmarks import record as R

    again = json.loads(json.dumps(record))
    again["created"] = "99991231T000000Z"
    again["cells"] = again["cells"][:1]
    again["cells"][0]["competitors"]["ours"]["per_iter"] = 123.0
    merged = R.merge([(results[0], record), (second, other), (tmp_path / "again.json", again)])
    # (the Connect cell of the same n, d, k stays apart from the classic one)
    assert [R.cell_id(c) for c in merged["cells"]] == [
        "2e4,2,3", "3e4,2,3", "1e4,2^14,4,20", "connect 2e4,2,3"]
    assert merged["cells"][0]["competitors"]["ours"]["per_iter"] == 123.0
    assert merged["superseded"] == [{"cell": "2e4,2,3", "result": R._display_path(results[0])}]
    assert [p["cells"] for p in merged["parts"]] == [
        ["1e4,2^14,4,20", "connect 2e4,2,3"], ["3e4,2,3"], ["2e4,2,3"]]
    from benchmarks import report as B

    assert "measured again in a newer run, shown from it: (2e4,2,3)" in B.render_markdown(merged)
    other["settings"]["seed"] += 1
    second.write_text(json.dumps(other))
    status, err = report(results[0], second)
    assert status == 2 and "differ in setting 'seed'" in err


def test_cheap_cells_run_more_iterations_unless_m2_is_given():
    from benchmarks import grid as G
    from benchmarks.run import build_settings, parse_args

    cheap, mid, big = G.Cell(10**6, 2, 3), G.Cell(10**6, 20, 20), G.Cell(10**6, 100, 100)
    assert G.iterations_for(cheap, 2, 6, longer=True) == (2, 52)
    assert G.iterations_for(mid, 2, 6, longer=True) == (2, 12)
    assert G.iterations_for(big, 2, 6, longer=True) == (2, 6)
    assert G.iterations_for(cheap, 2, 6, longer=False) == (2, 6)
    assert build_settings(parse_args(["--grid", "default"])).longer_runs
    assert not build_settings(parse_args(["--grid", "default", "--m2", "8"])).longer_runs
    assert not build_settings(parse_args(["--grid", "smoke"])).longer_runs


def test_the_cache_probe_sees_a_fit_shorter_than_its_poll(spark, monkeypatch):
    """A fit of ours at 1e4 rows ends long before a 100 s poll interval comes round: the
    probe still finds its block files (n x d x 8 bytes), by polling when the fit reports its
    first iteration (the probe's iteration callback); outside a probed call the callback does
    nothing. (Only our block files are counted here: earlier tests leave the workers other
    temp files open.)"""

    import numpy as np

    from benchmarks import storage
    from benchmarks.measure import driver_jvm_pid
    from benchmarks.storage import CacheProbe
    from sparkml_lloyd import IterationRecord, LloydKMeans
    from sparkml_lloyd._blockstore import owner_pid
    from tests.helpers import make_df

    every_file = storage.host_files
    monkeypatch.setattr(storage, "host_files", lambda procs: {
        path: size for path, size in every_file(procs).items()
        if owner_pid(path) is not None})

    X = np.random.default_rng(3).normal(size=(10_000, 2))
    df = make_df(spark, X)
    probe = CacheProbe(spark.sparkContext, driver_jvm_pid(spark.sparkContext), interval=100.0)
    probe.on_iteration(IterationRecord(1, 0.0, 0.0, [1], 0.0), np.zeros((1, 2)))  # not running
    assert probe.to_json()["peak_bytes"] == 0
    estimator = LloydKMeans(k=3, maxIter=2, initMode="random")
    probe.run(lambda: estimator.setIterationCallback(probe.on_iteration).fit(df))
    assert probe.peak_host_file_bytes == X.nbytes, probe.to_json()


def test_connect_settings():
    """``--backend connect`` takes the grid's Connect cells (dense only) and the competitors
    that exist on Connect; ``both`` keeps the classic cells too; the client process reads the
    settings back from their JSON unchanged."""
    from benchmarks import grid as G
    from benchmarks.run import build_settings, parse_args

    connect = build_settings(parse_args(["--grid", "default", "--backend", "connect"]))
    assert connect.cells == [] and connect.connect_cells == list(G.CONNECT_TARGET_CELLS)
    assert connect.connect_competitors == ["ours", "ml_row", "ml_block"]
    both = build_settings(parse_args(["--grid", "smoke", "--backend", "both"]))
    assert both.cells == G.grid_cells(G.GRIDS["smoke"], "both")
    assert both.connect_cells == [G.Cell(20_000, 2, 3)]
    assert both.connect_competitors == ["ours", "ml_row"]
    assert G.Settings.from_json(both.to_json()) == both
    assert build_settings(parse_args(["--grid", "smoke"])).connect_cells == []
    with pytest.raises(ValueError, match="dense cells only"):
        build_settings(parse_args(["--backend", "connect", "--cells", "1e5,2^18,20,30"]))
    with pytest.raises(ValueError, match="none of"):
        build_settings(parse_args(["--backend", "connect", "--competitors", "mllib,sklearn"]))


def test_the_per_row_floor_runs_only_where_it_finishes_in_minutes():
    from benchmarks import grid as G

    runs = [G.Cell(10**5, 2, 3), G.Cell(10**5, 2, 20), G.Cell(2 * 10**4, 2, 3)]
    skipped = [G.Cell(10**5, 2, 100), G.Cell(10**5, 20, 3), G.Cell(10**6, 2, 3)]
    assert [G.competitor_skip_reason("per_row", c) for c in runs] == [None] * 3
    assert all("k <= 20" in G.competitor_skip_reason("per_row", c) for c in skipped)
    assert G.competitor_skip_reason("ours", G.Cell(10**5, 2, 100)) is None


def test_sparse_cells_and_their_data_are_pure_functions_of_the_cell():
    """``n,d,k,nnz`` is a sparse cell; ``--features`` picks a grid's dense or sparse cells;
    a chunk of documents is the same every time it is drawn (any executor, any order),
    canonical CSR with ~nnz non-zeros a row and no row dense."""
    import numpy as np

    from benchmarks import grid as G
    from benchmarks import textgen
    from benchmarks.run import build_settings, parse_args

    (cell,) = G.parse_cells("1e5,2^18,20,30")
    assert cell == G.Cell(10**5, 2**18, 20, 30) and cell.sparse and cell.key == "1e5,2^18,20,30"
    assert G.iterations_for(cell, 2, 6, longer=True) == (2, 12)  # n*nnz*k = 6e7
    assert G.competitor_skip_reason("per_row", cell) and not G.competitor_skip_reason(
        "sklearn", cell)
    assert build_settings(parse_args(["--features", "sparse"])).cells == list(
        G.SPARSE_TARGET_CELLS)
    assert all(not c.sparse for c in build_settings(parse_args(["--features", "dense"])).cells)
    small = G.Cell(2000, 2**14, 4, 20)
    vocab = textgen.vocabulary(small, 7)
    a, b = (textgen.generate_chunk(small, 7, vocab, 3) for _ in range(2))
    assert (a != b).nnz == 0 and a.has_canonical_format and a.indices.dtype == np.int32
    assert 18 <= a.nnz / a.shape[0] <= 22 and a.shape[1] == 2**14
    assert (textgen.generate_chunk(small, 8, textgen.vocabulary(small, 8), 3) != a).nnz


def test_the_runner_is_a_module_not_a_script():
    """``python benchmarks/run.py`` stops at once and says how to run it."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--help"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "run it from the checkout root as 'python -m benchmarks.run" in proc.stderr


def test_the_pyspark_lines_section_shows_the_newest_run_of_each_version(tmp_path):
    """benchmarks/report_lines.py: one row per pyspark version (the newest record of each,
    versions in order), with that run's per-iteration figures and ratio."""
    import json

    from benchmarks import report_lines

    def record(version: str, ours: float, ratio: float) -> dict:
        return {"environment": {"versions": {"pyspark": version, "java": "17"},
                                "git": {"commit": "a" * 40}},
                "cells": [{"status": "ok", "best_builtin": "mllib",
                           "ratio_to_best_builtin": ratio,
                           "centers_check": {"max_rel_diff": 1e-15},
                           "competitors": {"ours": {"per_iter": ours},
                                           "mllib": {"per_iter": ours / ratio}}}]}

    for name, version, ours, ratio in [("20990101T000000Z", "4.0.5", 0.5, 0.9),
                                       ("20990102T000000Z", "4.0.5", 0.02, 0.2),
                                       ("20990101T000001Z", "3.5.9", 0.03, 0.3),
                                       ("20990101T000002Z", "4.10.0", 0.04, 0.4)]:
        (tmp_path / f"{name}.json").write_text(json.dumps(record(version, ours, ratio)))
    rows = [ln for ln in report_lines.section(report_lines.newest_per_version(tmp_path))
            if ln.startswith("| ") and ln[2].isdigit()]
    assert [r.split(" | ")[0] for r in rows] == ["| 3.5.9", "| 4.0.5", "| 4.10.0"]
    assert "0.20x (mllib)" in rows[1] and "0.0200" in rows[1]  # the newer 4.0.5 run
    assert report_lines.section([]) == []
