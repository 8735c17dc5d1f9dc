"""Choosing k: the knee rule on hand-made curves, ``sweep`` on data with a known number of
groups (the walkthrough's: the knee at 3, the cost of k=3 equal to scikit-learn's, the
silhouette that of Spark's ClusteringEvaluator) and on data without groups (no clear knee),
the figure, and ``sparkml-lloyd sweep``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.linalg import Vectors
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import make_blobs

from sparkml_lloyd import LloydKMeans, knee, sweep
from tests.helpers import run_main

# -- the knee rule (no Spark) -----------------------------------------------------------------


def test_a_sharp_bend_is_the_knee():
    assert knee([2, 3, 4, 5, 6, 7], [500, 60, 50, 44, 40, 37]).k == 3
    # the bend need not be near the start of the range
    assert knee(range(2, 12), [90, 80, 71, 63, 56, 8, 7.6, 7.3, 7.1, 7.0]).k == 7


@pytest.mark.parametrize("costs", [
    [1 / k for k in range(2, 21)],                 # uniform data in 2-D: cost ~ 1/k
    [k ** -0.1 for k in range(2, 21)],             # in 20-D: a slow fall
    [100 - 3 * k for k in range(2, 21)],           # a straight line
], ids=["1/k", "k^-0.1", "line"])
def test_a_gentle_curve_has_no_knee(costs):
    verdict = knee(range(2, 21), costs)
    assert verdict.k is None
    assert verdict.reason.startswith("no clear knee")


def test_the_edges_and_degenerate_curves_say_why():
    assert knee([2, 3], [10.0, 1.0]).reason == "no knee: it takes at least 3 values of k"
    assert knee([2, 3, 4], [5.0, 5.0, 5.0]).reason == "no knee: the cost is the same for every k"
    # the sharpest fall is into the last k: it cannot be judged without a larger k
    assert knee([2, 3, 4, 5], [100.0, 99.0, 98.0, 1.0]).k is None
    with pytest.raises(ValueError, match="ks must increase"):
        knee([3, 2, 4], [1.0, 2.0, 3.0])


# -- sweep on Spark -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def walkthrough(spark):
    x, _ = make_blobs(n_samples=1500, random_state=8)
    df = spark.createDataFrame([(Vectors.dense(r),) for r in x], ["features"]).cache()
    df.count()
    yield x, df
    df.unpersist(blocking=True)  # gone before the next module measures


def test_the_walkthrough_data_has_its_knee_at_3(walkthrough):
    x, df = walkthrough
    result = sweep(df, range(2, 9), estimator=LloydKMeans(seed=1, maxIter=50))
    assert result.suggested_k == 3, result.knee
    assert [r.k for r in result.rows] == list(range(2, 9))
    row = {r.k: r for r in result.rows}
    sk = SkKMeans(n_clusters=3, n_init=10, random_state=0).fit(x)
    assert row[3].cost == pytest.approx(sk.inertia_, rel=1e-9)
    # the sample is every row (1,500 < 10,000): the silhouette is Spark's on the whole data
    assert result.sample_rows == 1500
    spark_score = ClusteringEvaluator().evaluate(result.models[3].transform(df))
    assert row[3].silhouette == pytest.approx(spark_score, rel=1e-12)
    assert max(result.rows, key=lambda r: r.silhouette).k == 3
    for r in result.rows:
        assert r.cost == pytest.approx(result.models[r.k].summary.trainingCost)
        assert r.iterations == result.models[r.k].summary.numIter


def test_data_without_groups_has_no_clear_knee(spark):
    x = np.random.default_rng(4).uniform(size=(2000, 3))
    df = spark.createDataFrame([(Vectors.dense(r),) for r in x], ["features"])
    jsc = spark.sparkContext._jsc.sc()
    before = jsc.getPersistentRDDs().size()
    result = sweep(df, range(2, 11), estimator=LloydKMeans(seed=2), silhouette_sample=500)
    assert jsc.getPersistentRDDs().size() == before  # the sample (and the fits' data) released
    assert result.suggested_k is None
    assert result.knee.reason.startswith("no clear knee"), result.knee
    assert 300 < result.sample_rows < 700  # a seeded Bernoulli sample of about 500 rows


def test_the_figure_and_the_table(walkthrough, tmp_path):
    _, df = walkthrough
    result = sweep(df, [2, 3, 4], estimator=LloydKMeans(seed=1))
    path = tmp_path / "sweep.png"
    result.plot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    table = result.to_pandas()
    assert list(table["k"]) == [2, 3, 4]
    assert list(table.columns) == ["k", "cost", "silhouette", "iterations", "converged",
                                   "seconds"]


@pytest.mark.parametrize("mode", ["skip", "keep"])
def test_invalid_rows_left_out_of_the_fit_are_left_out_of_the_silhouette(spark, mode):
    """The walkthrough's points plus a NaN row: with handleInvalid skip or keep the sweep
    scores the valid rows, as Spark's evaluator does on the points alone."""
    x, _ = make_blobs(n_samples=1500, random_state=8)
    rows = [(Vectors.dense(r),) for r in x] + [(Vectors.dense([np.nan, 1.0]),)]
    df = spark.createDataFrame(rows, ["features"])
    result = sweep(df, [2, 3, 4], estimator=LloydKMeans(seed=1, handleInvalid=mode))
    assert result.suggested_k == 3
    clean = spark.createDataFrame([(Vectors.dense(r),) for r in x], ["features"])
    expected = ClusteringEvaluator().evaluate(result.models[3].transform(clean))
    assert {r.k: r.silhouette for r in result.rows}[3] == pytest.approx(expected, rel=1e-12)
    assert result.sample_rows == 1500  # the NaN row is not scored


def test_bad_arguments_are_named(walkthrough):
    _, df = walkthrough
    with pytest.raises(ValueError, match="k: give values of at least 2"):
        sweep(df, [1, 2, 3])
    with pytest.raises(TypeError, match="estimator: a LloydKMeans"):
        sweep(df, [2, 3], estimator=object())  # type: ignore[arg-type]


def test_the_sweep_command(spark, tmp_path):
    x, _ = make_blobs(n_samples=1500, random_state=8)
    data = tmp_path / "walk.csv"
    pd.DataFrame(x, columns=["x", "y"]).to_csv(data, index=False)
    out = tmp_path / "out"
    result = run_main("sweep", data, "--k", "2:6", "--seed", "1", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "suggested k: 3" in result.stdout
    assert "knee at k=3" in result.stdout
    table = pd.read_csv(out / "sweep.csv")
    assert list(table["k"]) == [2, 3, 4, 5, 6]
    sk = SkKMeans(n_clusters=3, n_init=10, random_state=0).fit(x)
    assert table.set_index("k").loc[3, "cost"] == pytest.approx(sk.inertia_, rel=1e-9)
    assert (out / "sweep.png").stat().st_size > 10_000


def test_the_sweep_command_checks_k_before_spark(tmp_path):
    result = run_main("sweep", tmp_path / "x.csv", "--k", "1:5", "--out", tmp_path)
    assert result.returncode == 2
    assert "every k must be at least 2" in result.stderr


def test_the_benchmark_at_smoke_size(spark, tmp_path):
    """benchmarks/choosing_k.py's measurements on tiny data (CI runs benchmarks only at smoke
    size): every side ran every k, fitMultiple's models equal the single fits, and the page
    section shows the rows and verdicts."""
    import json

    from benchmarks import choosing_k, datagen, report_choosing_k
    from benchmarks.grid import Cell

    spec = {**choosing_k.SMOKE, "n": 4000, "max_iter": 3, "ks": [2, 3]}
    data = datagen.generate(spark, Cell(spec["n"], spec["d"], spec["groups"]), 42, 2)
    try:
        swept = choosing_k.sweep_rows(spark, data.df, spec, 42)
        cv = choosing_k.cv_rows(data.df, {**spec, "cv_ks": [3], "folds": 2}, 42)
    finally:
        data.unpersist()
    assert swept["centers_vs_single_fits"] <= 1e-12 and swept["same_iterations"]
    assert swept["ours_iterations"] == [3] * len(spec["ks"])  # tol=0: every fit runs maxIter
    assert swept["spark_iterations"] == [3] * len(spec["ks"])
    assert cv["ratio"] == cv["ours_seconds"] / cv["spark_kmeans_seconds"]
    assert len(cv["ours_metrics"]) == len(cv["spark_kmeans_metrics"]) == 1
    record = {"spec": spec, "sweep": swept, "cross_validator": cv, "environment": {
        "git": {"commit": "0" * 40}, "machine": {"cpu_model": "cpu", "nproc": 2},
        "versions": {"pyspark": "4"}, "jvm_blas": {"used": "JavaBLAS"}}}
    path = tmp_path / "choosing-k-20990101T000000Z.json"
    path.write_text(json.dumps(record))
    lines = report_choosing_k.section(report_choosing_k.newest(tmp_path))
    text = "\n".join(lines)
    assert "## Choosing k" in text and f"{swept['ratio_vs_spark']:.2f}x" in text
    assert report_choosing_k.render_plot((path, record), tmp_path / "plot.png").stat().st_size
